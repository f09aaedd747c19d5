// (b) Files the JS writer makes, read by the Python reader (lossfmt.read), drawn by lossview, resumed by
// lossfmt.LossWriter; and the JS writer's own guarantees (layout, checksums, torn tail vs corruption).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Schema as FbSchema } from 'apache-arrow/fb/schema';
import { RecordBatch as FbRecordBatch } from 'apache-arrow/fb/record-batch';
import { DictionaryBatch as FbDictionaryBatch } from 'apache-arrow/fb/dictionary-batch';
import { CompressionType, Dictionary, Field, Int32, Int8, MetadataVersion, Schema, Utf8 } from 'apache-arrow';
import { Footer, FileBlock } from 'apache-arrow/ipc/metadata/file';
import { LossWriter, closedFileBytes, makeSchema } from '../writer.js';
import { readFile, readBytes, LossFormatError } from '../reader.js';
import { MAGIC, readMessage } from '../framing.js';
import { assertRows, jsonValue } from './expect.js';
import { PYTHON, pyhelper, python, tempDir } from './helpers.js';

const T0 = 1_700_000_000_000_000;
// Events as [step, tag, value, count, epoch, wall_time, reduction]; one inner list per flush.
const FLUSHES = [
  [[0, 'loss', 2.5, 32, 0, T0, 'mean'], [0, 'val/loss', 2.75, 100, 0, T0 + 1, 'mean'], [1, 'loss', 2.25, 32, 0, T0 + 2, 'mean']],
  [[2, 'loss', 'NaN', 32, 0, T0 + 3, 'mean'], [3, 'loss', 'Infinity', 16, null, T0 + 4, 'mean']],
  [[2, 'loss', 1.75, 32, 1, T0 + 5, 'mean'], [3, 'mse', 12.0, 4, 1, T0 + 6, 'sum'], [4, 'loss', '-Infinity', 1, null, T0 + 7, 'mean']],
  [[4, 'loss', -0.0, 8, 1, T0 + 8, 'mean'], [5, 'acc', 0.5, 8, 1, T0 + 9, 'mean']],
];
const ROWS = FLUSHES.flat();
const RESUME = [[6, 'loss', 0.125, 8, 2, 'mean'], [6, 'py/new', 3.0, 2, 2, 'sum']];

async function writeJs(path, flushes, { close }) {
  const w = await LossWriter.open(path, { meta: { lr: 0.01, note: 'js' } });
  for (const flush of flushes) {
    for (const [step, tag, value, count, epoch, wallTime, reduction] of flush) {
      w.add(step, jsonValue(value), { tag, count, epoch, wallTime, reduction });
    }
    w.flush();
  }
  if (close) w.close();
  return w;
}

/** A JS writer in its own process, killed with SIGKILL once every flush has returned. */
async function writeJsKilled(path, flushes) {
  const child = spawn(process.execPath, [fileURLToPath(new URL('./js_child.js', import.meta.url)), path], { stdio: ['pipe', 'pipe', 'inherit'] });
  child.stdin.end(JSON.stringify(flushes, (_k, v) => (Object.is(v, -0) ? '-0' : v)));
  let seen = 0;
  let out = '';
  await new Promise((resolve, reject) => {
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (s) => {
      out += s; // a line may arrive in pieces
      seen = out.split('\n').filter((l) => l === 'flushed').length;
      if (seen === flushes.length) resolve();
    });
    child.on('exit', (code) => reject(new Error(`JS writer exited ${code} after ${seen} flushes`)));
  });
  child.removeAllListeners('exit');
  const exited = new Promise((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
  child.kill('SIGKILL');
  assert.equal(await exited, 'SIGKILL');
}

function messages(bytes) {
  const out = [];
  for (let at = MAGIC.length; ;) {
    const m = readMessage(bytes, at, 'test');
    if (m.eos || m.torn) return out;
    out.push(m);
    at = m.end;
  }
}

function checkPython(path, rows, batches) {
  const got = pyhelper('read', path);
  assertRows(got.rows, rows, `lossfmt.read(${path})`);
  assert.equal(got.verified, batches, 'record batches whose CRC-32C google-crc32c confirms');
}

function checkLossview(path, dir) {
  const png = join(dir, 'out.png');
  python(['-m', 'lossview', path, '-o', png]);
  assert.ok(existsSync(png), 'lossview wrote no image');
  assert.deepEqual([...readFileSync(png).subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47], 'not a PNG');
}

/** Resumes `path` with lossfmt.LossWriter, then checks both readers see the JS rows plus the new ones. */
function checkResume(path, rows) {
  const resumed = pyhelper('resume', path, JSON.stringify(RESUME));
  const want = [...rows, ...RESUME.map(([s, t, v, c, e, r], i) => [s, t, v, c, e, resumed.rows[rows.length + i][5], r])];
  assertRows(resumed.rows, want, 'lossfmt.read after the Python writer resumed');
  const js = readFile(path);
  assert.equal(js.closed, true);
  assertRows(js.rows, want, 'the JS reader after the Python writer resumed');
}

test('a closed JS file reads in Python, draws in lossview and resumes with LossWriter', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'js_closed.arrow');
  await writeJs(path, FLUSHES, { close: true });
  checkPython(path, ROWS, 1);
  checkLossview(path, dir);
  checkResume(path, ROWS);
});

test('a live JS file killed with SIGKILL reads in Python, draws in lossview and resumes with LossWriter', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'js_live.arrow');
  await writeJsKilled(path, FLUSHES);
  assert.equal(readFile(path).closed, false);
  checkPython(path, ROWS, FLUSHES.length);
  checkLossview(path, dir);
  checkResume(path, ROWS);
});

/** The v1 schema with dictionary ids `tagId` and `reductionId` (spec §1.1: any ids, the schema says which). */
function schemaWithIds(tagId, reductionId) {
  const base = makeSchema('ids');
  const fields = base.fields.map((f) => {
    if (f.name === 'tag') return new Field('tag', new Dictionary(new Utf8(), new Int32(), tagId), false);
    if (f.name === 'reduction') return new Field('reduction', new Dictionary(new Utf8(), new Int8(), reductionId), false);
    return f;
  });
  return new Schema(fields, base.metadata);
}

function declaredIds(path) {
  const schema = messages(readFileSync(path))[0].fb.header(new FbSchema());
  const ids = {};
  for (let i = 0; i < schema.fieldsLength(); i++) {
    const f = schema.fields(i);
    if (f.dictionary()) ids[f.name()] = Number(f.dictionary().id());
  }
  return ids;
}

for (const [tagId, reductionId] of [[5, 3], [1, 0]]) {
  test(`a file with dictionary ids ${tagId} and ${reductionId} resumes with LossWriter, closed or live (JS-resumed, killed)`, async (t) => {
    const dir = tempDir(t);
    const closed = join(dir, 'ids_closed.arrow');
    writeFileSync(closed, closedFileBytes(schemaWithIds(tagId, reductionId), FLUSHES[0]));
    assert.deepEqual(declaredIds(closed), { tag: tagId, reduction: reductionId });
    checkPython(closed, FLUSHES[0], 1);
    checkResume(closed, FLUSHES[0]);

    const live = join(dir, 'ids_live.arrow');
    writeFileSync(live, closedFileBytes(schemaWithIds(tagId, reductionId), FLUSHES[0]));
    await writeJsKilled(live, FLUSHES.slice(1)); // the JS writer resumes it, keeping the file's ids
    assert.deepEqual(declaredIds(live), { tag: tagId, reduction: reductionId });
    checkPython(live, ROWS, FLUSHES.length);
    checkResume(live, ROWS);
  });
}

test('a JS file whose last flush is torn reads as the flushes before it, in Python and JS', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'js_torn.arrow');
  await writeJsKilled(path, FLUSHES);
  const bytes = readFileSync(path);
  const last = messages(bytes).at(-1);
  writeFileSync(path, bytes.subarray(0, last.end - 5));
  const rows = FLUSHES.slice(0, -1).flat();
  checkPython(path, rows, FLUSHES.length - 1);
  assertRows(readFile(path).rows, rows, 'JS reader');
  checkResume(path, rows);
});

test('fewer than 8 trailing bytes are a torn tail only if they start like a message (FF FF FF FF), else corruption', async (t) => {
  const path = join(tempDir(t), 'short_tail.arrow');
  await writeJsKilled(path, FLUSHES);
  const bytes = new Uint8Array(readFileSync(path));
  const rows = FLUSHES.flat();
  for (const tail of [[0xff], [0xff, 0xff, 0xff, 0xff, 0x10]]) {
    assertRows(readBytes(new Uint8Array([...bytes, ...tail]), 'short_tail.arrow').rows, rows, `tail ${tail}`);
  }
  for (const tail of [[0, 0, 0, 0], [0x61, 0x62, 0x63], [0xff, 0x00]]) {
    assert.throws(
      () => readBytes(new Uint8Array([...bytes, ...tail]), 'short_tail.arrow'),
      (e) => e instanceof LossFormatError && e.offset === bytes.length && /continuation marker/.test(e.message),
      `tail ${tail}`,
    );
  }
});

test('a closed JS file: schema message at offset 8, dictionary ids 0 and 1, ZSTD bodies, one dictionary each', async (t) => {
  const path = join(tempDir(t), 'layout.arrow');
  await writeJs(path, FLUSHES, { close: true });
  const bytes = readFileSync(path);
  const all = messages(bytes);
  assert.equal(all[0].offset, 8);
  assert.equal(all[0].type, 'schema');
  const schema = all[0].fb.header(new FbSchema());
  const ids = {};
  for (let i = 0; i < schema.fieldsLength(); i++) {
    const f = schema.fields(i);
    if (f.dictionary()) ids[f.name()] = Number(f.dictionary().id());
  }
  assert.deepEqual(ids, { tag: 0, reduction: 1 });
  const meta = Object.fromEntries(Array.from({ length: schema.customMetadataLength() }, (_, i) => [schema.customMetadata(i).key(), schema.customMetadata(i).value()]));
  assert.equal(meta['lossfmt.checksum'], 'crc32c');
  assert.equal(meta['lossfmt.version'], '1');
  assert.match(meta['lossfmt.run_id'], /^[0-9a-f]{32}$/);
  assert.deepEqual(all.slice(1).map((m) => m.type), ['dictionary', 'dictionary', 'record batch']);
  for (const m of all.slice(1)) {
    const rb = m.type === 'dictionary' ? m.fb.header(new FbDictionaryBatch()).data() : m.fb.header(new FbRecordBatch());
    assert.equal(rb.compression().codec(), CompressionType.ZSTD);
    for (let i = 0; i < rb.buffersLength(); i++) assert.equal(Number(rb.buffers(i).offset()) % 8, 0, 'buffer offset not 8-aligned');
  }
  assert.equal(JSON.parse(pyarrowFileRows(path)).num_rows, ROWS.length, 'pyarrow reads it as an Arrow IPC file');
});

function pyarrowFileRows(path) {
  return python(['-c', 'import sys, json, pyarrow as pa; t = pa.ipc.open_file(sys.argv[1]).read_all(); print(json.dumps({"num_rows": t.num_rows}))', path]);
}

test('a live JS file writes a dictionary only when it changed: both in full first, then tag deltas of new tags only', async (t) => {
  const path = join(tempDir(t), 'live.arrow');
  const w = await writeJs(path, FLUSHES, { close: false });
  const kinds = messages(readFileSync(path)).map((m) => {
    if (m.type !== 'dictionary') return m.type;
    const d = m.fb.header(new FbDictionaryBatch());
    return `${d.isDelta() ? 'delta' : 'full'}${Number(d.id())}:${Number(d.data().length())}`;
  });
  // Flush 1 has tags loss, val/loss; flush 3 adds mse; flush 4 adds acc.
  assert.deepEqual(kinds, ['schema', 'full0:2', 'full1:2', 'record batch', 'record batch', 'delta0:1', 'record batch', 'delta0:1', 'record batch']);
  w.close();
});

test('every cut of a live JS file reads as a prefix of whole flushes; end never passes the cut', async (t) => {
  const path = join(tempDir(t), 'cut.arrow');
  await writeJs(path, FLUSHES, { close: false });
  const bytes = new Uint8Array(readFileSync(path));
  const header = messages(bytes)[0].end;
  const sizes = [0, ...FLUSHES.map((f) => f.length)].map((_, i, a) => a.slice(0, i + 1).reduce((x, y) => x + y, 0));
  for (let cut = header; cut <= bytes.length; cut++) {
    const got = readBytes(bytes.subarray(0, cut), 'cut');
    assert.ok(sizes.includes(got.rows.length), `cut at ${cut}: ${got.rows.length} rows is not a whole number of flushes`);
    assertRows(got.rows, ROWS.slice(0, got.rows.length), `cut at ${cut}`);
    assert.ok(got.end <= cut);
  }
  assert.equal(readBytes(bytes, 'whole').rows.length, ROWS.length);
});

test('a changed byte in a complete record batch is a LossFormatError naming that message, not a torn tail', async (t) => {
  const path = join(tempDir(t), 'flip.arrow');
  await writeJs(path, FLUSHES, { close: false });
  const bytes = new Uint8Array(readFileSync(path));
  const batches = messages(bytes).filter((m) => m.type === 'record batch');
  for (const m of batches) {
    for (const at of [m.end - 1, m.metaEnd + 9]) {
      const bad = bytes.slice();
      bad[at] ^= 0x01;
      assert.throws(() => readBytes(bad, 'flip.arrow'), (e) => e instanceof LossFormatError && e.offset === m.offset && /flip\.arrow/.test(e.message), `byte ${at} of the batch at ${m.offset}`);
    }
  }
});

test('a changed byte in the schema message is a LossFormatError at byte 8 (its lossfmt.schema_crc32c)', async (t) => {
  const path = join(tempDir(t), 'flipme.arrow');
  await writeJs(path, FLUSHES, { close: true });
  const bytes = new Uint8Array(readFileSync(path));
  const at = Buffer.from(bytes).indexOf('flipme'); // the run name, in the schema's metadata
  assert.ok(at > 8 && at < messages(bytes)[0].end);
  bytes[at] ^= 0x02;
  assert.throws(() => readBytes(bytes, 'schema.arrow'), (e) => e instanceof LossFormatError && e.offset === 8);
});

test('the JS writer refuses bad input at the call and add() after close()', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'bad.arrow');
  const w = await LossWriter.open(path);
  assert.throws(() => w.add(1.5, 1), TypeError);
  assert.throws(() => w.add(1, '1'), TypeError);
  assert.throws(() => w.add(1, 1, { tag: '' }), TypeError);
  assert.throws(() => w.add(1, 1, { count: 0 }), TypeError);
  assert.throws(() => w.add(1, 1, { reduction: 'max' }), RangeError);
  w.add(1, 1, { wallTime: T0 });
  w.close();
  assert.throws(() => w.add(2, 2), /after close/);
  assertRows(readFile(path).rows, [[1, 'loss', 1, 1, null, T0, 'mean']]);
});

test('an empty closed JS file reads as no rows in both readers', async (t) => {
  const path = join(tempDir(t), 'empty.arrow');
  (await LossWriter.open(path)).close();
  const js = readFile(path);
  assert.equal(js.closed, true);
  assert.equal(js.rows.length, 0);
  assert.deepEqual(pyhelper('read', path).rows, []);
});

test('the Python given as PYTHON imports lossfmt, lossview and google_crc32c', () => {
  const out = python(['-c', 'import lossfmt, lossview, google_crc32c, sys; print(sys.executable)']);
  assert.ok(out.trim().length > 0, `PYTHON=${PYTHON} printed nothing`);
});

test('a closed JS file with a damaged footer is a LossFormatError, never read as a live file', async (t) => {
  const path = join(tempDir(t), 'footer.arrow');
  await writeJs(path, FLUSHES, { close: true });
  const bytes = new Uint8Array(readFileSync(path));
  const view = (b) => new DataView(b.buffer, b.byteOffset, b.byteLength);
  const footerLength = view(bytes).getInt32(bytes.length - 10, true);
  const wrongLength = bytes.slice();
  view(wrongLength).setInt32(bytes.length - 10, footerLength - 8, true);
  assert.throws(() => readBytes(wrongLength, 'footer.arrow'), (e) => e instanceof LossFormatError && /footer length/.test(e.message));
  // The last block's offset (the footer's int64s, each followed by the block's lengths) moved by 8 bytes.
  const last = messages(bytes).at(-1);
  const start = bytes.length - 10 - footerLength;
  const moved = bytes.slice();
  let patched = 0;
  for (let at = start; at + 8 <= bytes.length - 10; at += 8) {
    if (view(moved).getBigInt64(at, true) === BigInt(last.offset)) {
      view(moved).setBigInt64(at, BigInt(last.offset + 8), true);
      patched++;
    }
  }
  assert.equal(patched, 1);
  assert.throws(() => readBytes(moved, 'footer.arrow'), (e) => e instanceof LossFormatError && /blocks do not match/.test(e.message));
  const noEos = concatBytes(bytes.subarray(0, last.end), bytes.subarray(last.end + 8));
  assert.throws(() => readBytes(noEos, 'footer.arrow'), LossFormatError);
});

function concatBytes(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const EOS_BYTES = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);

test('an empty closed file with a dictionary message per id reads as no rows, end at its EOS', async (t) => {
  const path = join(tempDir(t), 'dicts.arrow');
  await writeJs(path, FLUSHES, { close: true });
  const bytes = new Uint8Array(readFileSync(path));
  const all = messages(bytes);
  const kept = all.filter((m) => m.type !== 'record batch'); // schema and the two dictionaries
  const stream = concatBytes(MAGIC, ...kept.map((m) => bytes.subarray(m.offset, m.end)), EOS_BYTES);
  const blocks = kept.slice(1).map((m) => new FileBlock(m.metaEnd - m.offset, m.end - m.metaEnd, m.offset));
  const schema = readFile(path).schema;
  const footer = Footer.encode(new Footer(schema, MetadataVersion.V5, [], blocks));
  const length = new Uint8Array(4);
  new DataView(length.buffer).setInt32(0, footer.length, true);
  const file = concatBytes(stream, footer, length, MAGIC.subarray(0, 6));
  const got = readBytes(file, 'dicts.arrow');
  assert.equal(got.closed, true);
  assert.deepEqual(got.rows, []);
  assert.equal(got.end, stream.length - 8);
  // Resumed, its dictionaries no batch follows are dropped (the resume point is after the schema): they
  // were kept, and the appended batch's checksum span then began before them.
  const resumed = join(tempDir(t), 'resumed.arrow');
  writeFileSync(resumed, file);
  const w = await LossWriter.open(resumed);
  w.add(7, 1.5, { tag: 'new', wallTime: T0 });
  w.close();
  assert.deepEqual(readFile(resumed).rows.map((r) => [r[0], r[1]]), [[7, 'new']]);
  assert.deepEqual(pyhelper('read', resumed).rows.map((r) => [r[0], r[1]]), [[7, 'new']]);
});

test('a file with a column twice is refused, naming it, not read through one of the two', (t) => {
  const path = join(tempDir(t), 'twice.arrow');
  python(['-c', [
    'import sys, pyarrow as pa',
    'from lossfmt import schema',
    'sch = schema.make_schema("run")',
    'doubled = pa.schema([*sch, sch.field("step")], metadata=sch.metadata)',
    'with pa.ipc.new_file(sys.argv[1], doubled): pass',
  ].join('\n'), path]);
  assert.throws(() => readFile(path), (e) => e instanceof LossFormatError && /column "step" is there 2 times/.test(e.message));
});

test('malformed run information reads as missing: an empty run name is the file name, an empty meta is {}', (t) => {
  const path = join(tempDir(t), 'odd.arrow');
  python(['-c', [
    'import sys, pyarrow as pa',
    'from lossfmt import schema',
    'sch = schema.make_schema("run")',
    'md = {**sch.metadata, b"lossfmt.run": b"", b"lossfmt.pid": b"abc", b"lossfmt.meta": b""}',
    'for k in (b"lossfmt.checksum", b"lossfmt.schema_crc32c"): md.pop(k, None)',
    'odd = sch.with_metadata(md)',
    'with pa.ipc.new_file(sys.argv[1], odd): pass',
  ].join('\n'), path]);
  const got = readFile(path);
  assert.equal(got.run, 'odd');
  assert.deepEqual(got.meta, {});
  assert.equal(got.rows.length, 0);
});

test('a torn tail whose last bytes point at EOS-like bytes without a footer is a torn tail, not a closed file', async (t) => {
  const path = join(tempDir(t), 'eos_like.arrow');
  await writeJsKilled(path, FLUSHES);
  const live = new Uint8Array(readFileSync(path));
  const junk = new Uint8Array(20).fill(0x11);
  const head = new Uint8Array(8);
  new DataView(head.buffer).setInt32(0, -1, true);
  new DataView(head.buffer).setInt32(4, 200, true); // a message of 200 bytes of metadata, cut short
  const pointer = new Uint8Array(4);
  new DataView(pointer.buffer).setInt32(0, junk.length, true);
  const file = concatBytes(live, head, new Uint8Array(16), EOS_BYTES, junk, pointer, MAGIC.subarray(0, 6));
  const got = readBytes(file, 'eos_like.arrow');
  assert.equal(got.closed, false);
  assert.equal(got.end, live.length);
  assertRows(got.rows, FLUSHES.flat(), 'JS reader');
});
