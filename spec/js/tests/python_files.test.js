// (a) The JS reader against files the Python writer (lossfmt.LossWriter) makes during the run: closed, live
// (a real SIGKILL), torn, resumed, resumed-then-killed (two streams); and files pyarrow writes by itself from
// the closed one: LZ4 and uncompressed bodies, delta dictionaries, a header-only live file, EOS without a
// footer, minimal metadata.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CompressionType } from 'apache-arrow';
import { RecordBatch as FbRecordBatch } from 'apache-arrow/fb/record-batch';
import { readFile, readBytes, LossFormatError } from '../reader.js';
import { CODECS } from '../codecs.js';
import { MAGIC, readMessage } from '../framing.js';
import { jsonValue } from './expect.js';
import { pyhelper, python, tempDir } from './helpers.js';

let dir;
let made;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'lossfmt-js-py-'));
  made = pyhelper('make', dir).made;
});
after(() => rmSync(dir, { recursive: true, force: true }));

// Each file and the run it belongs to (the copies pyarrow writes keep the closed file's metadata, except
// `minimal`, which has only lossfmt.version: its run name is the file name, its meta empty).
const RUNS = {
  closed: 'closed', live: 'live', torn: 'live', resumed: 'resumed', resumed_live: 'resumed', recompacted: 'recompacted',
  closed_lz4: 'closed', closed_uncompressed: 'closed', delta: 'closed', eos_no_footer: 'closed',
  header_only: 'closed', minimal: 'minimal',
};
const NAMES = Object.keys(RUNS);

test('the Python helper made every kind of file', () => {
  assert.deepEqual(made, [...NAMES].sort());
});

test('a closed file with one record batch of 200,000 events reads whole (no RangeError from the call stack)', (t) => {
  const path = join(tempDir(t), 'big.arrow');
  const n = 200_000;
  python(['-c', `import lossfmt, pyarrow.ipc as ipc, sys
with lossfmt.LossWriter(sys.argv[1]) as w:
    for i in range(${n}): w.add(i, i / 2)
assert [ipc.open_file(sys.argv[1]).get_batch(0).num_rows] == [${n}], "not one batch"`, path]);
  const got = readFile(path);
  assert.equal(got.closed, true);
  assert.equal(got.rows.length, n);
  assert.deepEqual([got.rows[n - 1][0], got.rows[n - 1][2]], [n - 1, (n - 1) / 2]);
});

for (const name of NAMES) {
  test(`the JS reader returns every logged event of the Python writer's ${name} file`, () => {
    const expected = JSON.parse(readFileSync(join(dir, `${name}.json`), 'utf8'));
    const got = readFile(join(dir, `${name}.arrow`));
    assert.equal(got.closed, expected.closed);
    assert.equal(got.rows.length, expected.rows.length);
    got.rows.forEach((row, i) => {
      const want = expected.rows[i];
      const [low, high] = Array.isArray(want[5]) ? want[5] : [want[5], want[5]]; // bounds, or exact for pyarrow copies
      assert.ok(low <= row[5] && row[5] <= high, `row ${i}: wall_time ${row[5]} outside [${low}, ${high}]`);
      const fields = [0, 1, 2, 3, 4, 6];
      for (const j of fields) {
        const w = j === 2 ? jsonValue(want[j]) : want[j];
        assert.ok(Object.is(row[j], w), `${name} row ${i} field ${j}: ${row[j]} != ${w}`);
      }
    });
    assert.deepEqual(got.meta, name === 'minimal' ? {} : { lr: 0.01, seed: 7, big: Infinity });
    assert.equal(got.run, RUNS[name]);
  });
}

test('the torn file is the live file minus its cut last batch, and ends where that batch began', () => {
  const live = readFile(join(dir, 'live.arrow'));
  const torn = readFile(join(dir, 'torn.arrow'));
  assert.deepEqual(torn.rows.map(String), live.rows.slice(0, torn.rows.length).map(String));
  assert.ok(torn.end < live.end);
});

test('a header-only file ends after its schema; EOS without a footer ends the content but is not closed', () => {
  const header = join(dir, 'header_only.arrow');
  assert.equal(readFile(header).end, readFileSync(header).length);
  const eos = join(dir, 'eos_no_footer.arrow');
  const got = readFile(eos);
  assert.equal(got.closed, false);
  assert.equal(got.end, readFileSync(eos).length - 8, 'end is the offset of the EOS marker');
});

function batchMessages(bytes) {
  const out = [];
  for (let at = MAGIC.length; ;) {
    const m = readMessage(bytes, at, 'test');
    if (m.eos || m.torn) return out;
    if (m.type === 'record batch') out.push(m);
    at = m.end;
  }
}

test('a codec the reader lacks is an error naming it, never a torn tail or zero rows', () => {
  const path = join(dir, 'closed_lz4.arrow');
  const lz4 = CODECS[CompressionType.LZ4_FRAME];
  delete CODECS[CompressionType.LZ4_FRAME];
  try {
    assert.throws(() => readFile(path), (e) => e instanceof LossFormatError && /LZ4_FRAME/.test(e.message) && e.offset > 8);
  } finally {
    CODECS[CompressionType.LZ4_FRAME] = lz4;
  }
  assert.ok(readFile(path).rows.length > 0);
});

test('without checksums, a complete batch that does not decompress or validate is an error at its offset', () => {
  // The LZ4 copy: a changed byte inside a compressed buffer of the (only, complete) record batch.
  const lz4 = new Uint8Array(readFileSync(join(dir, 'closed_lz4.arrow')));
  const [batch] = batchMessages(lz4);
  const broken = lz4.slice();
  broken[batch.end - 16] ^= 0xff;
  assert.throws(() => readBytes(broken, 'lz4.arrow'), (e) => e instanceof LossFormatError && e.offset === batch.offset);
  // The uncompressed copy: a tag index outside the dictionary (buffer 3: step validity, step, tag validity, tag).
  const plain = new Uint8Array(readFileSync(join(dir, 'closed_uncompressed.arrow')));
  const [m] = batchMessages(plain);
  const tagIndices = Number(m.fb.header(new FbRecordBatch()).buffers(3).offset());
  const bad = plain.slice();
  new DataView(bad.buffer).setInt32(m.metaEnd + tagIndices, 99, true);
  assert.throws(() => readBytes(bad, 'plain.arrow'), (e) => e instanceof LossFormatError && e.offset === m.offset && /index 99/.test(e.message));
});

test('a file of another format version is refused with an error naming the version', () => {
  const bytes = new Uint8Array(readFileSync(join(dir, 'closed_uncompressed.arrow')));
  const text = Buffer.from(bytes);
  // lossfmt.version's value "1": every flatbuffer string "1" (length 1, NUL after) becomes "2".
  const key = text.indexOf('lossfmt.version\0');
  const one = Buffer.from([1, 0, 0, 0, 0x31, 0]);
  const hits = [];
  for (let at = text.indexOf(one); at >= 0; at = text.indexOf(one, at + 1)) hits.push(at);
  assert.ok(key > 0 && hits.length >= 1, 'the version value was not found');
  const bad = bytes.slice();
  for (const at of hits) bad[at + 4] = 0x32; // "2"
  assert.throws(() => readBytes(bad, 'v2.arrow'), (e) => e instanceof LossFormatError && /version 2 is not supported/.test(e.message));
});

test('a field node whose length differs from the batch length is an error at that batch (layout, section 1.7)', () => {
  const plain = new Uint8Array(readFileSync(join(dir, 'closed_uncompressed.arrow')));
  const [m] = batchMessages(plain);
  const rb = m.fb.header(new FbRecordBatch());
  const node = rb.nodes(2); // the value column
  const bad = plain.slice();
  new DataView(bad.buffer).setBigInt64(m.metaStart + node.bb_pos, node.length() - 1n, true);
  assert.throws(() => readBytes(bad, 'nodes.arrow'), (e) => e instanceof LossFormatError && e.offset === m.offset && /values for \d+ rows/.test(e.message));
});
