// Damaged files (spec/FORMAT.md §1.2, §1.3, §1.7): a flipped bit anywhere in a closed file reads as the
// original rows or as LossFormatError, quickly; a damaged footer is corruption; a body length its buffers
// contradict is corruption even at the end of a live file.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readBytes, readFile, LossFormatError } from '../reader.js';
import { python, tempDir } from './helpers.js';
import { readMessage } from '../framing.js';

const READER = fileURLToPath(new URL('../reader.js', import.meta.url));

/** A closed file of three events written by lossfmt.LossWriter. */
function closedFile(dir) {
  const path = join(dir, 'run.arrow');
  python(['-c', `import lossfmt\nwith lossfmt.LossWriter(${JSON.stringify(path)}) as w:\n    for i in range(3): w.add(i, 1.0 / (i + 1))`]);
  return path;
}

function footerStart(bytes) {
  return bytes.length - 10 - new DataView(bytes.buffer, bytes.byteOffset).getInt32(bytes.length - 10, true);
}

test('a_bit_flip_anywhere_in_a_closed_file_is_the_original_rows_or_an_error_and_never_a_hang', (t) => {
  // The JS reader followed damaged flatbuffer vector lengths without bounds checks: it looped or allocated
  // for billions of elements (>60 s, 11 GB) where Python reported corruption at once.
  const dir = tempDir(t);
  const path = closedFile(dir);
  const child = `
    import { readFileSync, writeFileSync } from 'node:fs';
    import { readBytes, LossFormatError } from ${JSON.stringify(READER)};
    const orig = new Uint8Array(readFileSync(${JSON.stringify(path)}));
    const want = JSON.stringify(readBytes(orig).rows);
    const bad = [];
    for (let i = 0; i < orig.length; i++) {
      const x = orig.slice(); x[i] ^= 1;
      const t0 = Date.now();
      let verdict = 'error';
      try { verdict = JSON.stringify(readBytes(x).rows) === want ? 'same' : 'different rows'; }
      catch (e) { if (!(e instanceof LossFormatError)) verdict = 'threw ' + e.name + ': ' + e.message; }
      const ms = Date.now() - t0;
      if (verdict !== 'same' && verdict !== 'error' || ms > 1000) bad.push({ byte: i, verdict, ms });
    }
    writeFileSync(process.argv[1], JSON.stringify(bad));`;
  const out = join(dir, 'bad.json');
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', child, out], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.error, undefined, `the sweep did not finish in 60 s: ${r.error?.message}`);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(readFileSync(out, 'utf8')), []);
});

test('a_closed_file_whose_footer_has_a_flipped_bit_is_corrupt_where_python_says_so', (t) => {
  // The JS reader read the footer leniently (an odd vtable size, a misaligned version field) and returned the
  // rows of closed files that lossfmt.read and pyarrow refuse as damaged (§1.2: damage in a closed file is
  // corruption).
  const dir = tempDir(t);
  const path = closedFile(dir);
  const orig = new Uint8Array(readFileSync(path));
  const fs = footerStart(orig);
  const x = orig.slice();
  x[fs + 4] ^= 1;
  writeFileSync(join(dir, 'flip4.arrow'), x);
  assert.throws(() => readFile(join(dir, 'flip4.arrow')), LossFormatError);
  // Every bit of the footer: both readers refuse the same files. Python read files with a footer version
  // other than V5, footer dictionary ids other than the stream's and an unknown float precision (pyarrow
  // lets all three through); JS read a footer with a zero offset, a KeyValue without its key or a
  // DictionaryEncoding without its index type (pyarrow refuses those).
  // A second file with a run name, metadata and two tags: a footer KeyValue whose key repeats another key
  // (pyarrow keeps the first value, JS the last) or that lost its value read in Python only.
  const rich = join(dir, 'rich.arrow');
  python(['-c', `import lossfmt\nwith lossfmt.LossWriter(${JSON.stringify(rich)}, run='abc', meta={'lr': 0.1}) as w:\n    for i in range(20): w.add(i, float(i), tag='loss' if i % 2 else 'val/loss', count=4)`]);
  for (const file of [path, rich]) {
    const bytes = new Uint8Array(readFileSync(file));
    const start = footerStart(bytes);
    const flipped = join(dir, 'flipped.arrow');
    const py = JSON.parse(python(['-c', `import json, sys, lossfmt
data, start, path = open(sys.argv[1], "rb").read(), int(sys.argv[2]), sys.argv[3]
out = []
for bit in range(8 * start, 8 * (len(data) - 10)):
    x = bytearray(data)
    x[bit // 8] ^= 1 << (bit % 8)
    open(path, "wb").write(x)
    try: lossfmt.read(path); out.append("ok")
    except lossfmt.LossFormatError: out.append("error")
print(json.dumps(out))`, file, String(start), flipped]));
    const js = [];
    for (let bit = 8 * start; bit < 8 * (bytes.length - 10); bit++) {
      const y = bytes.slice();
      y[bit >> 3] ^= 1 << (bit & 7);
      try { readBytes(y, 'flipped.arrow'); js.push('ok'); } catch (e) { if (e instanceof LossFormatError) js.push('error'); else throw e; }
    }
    assert.equal(py.length, js.length);
    const differ = py.map((v, i) => [`byte ${(i >> 3)} bit ${i & 7}`, v, js[i]]).filter(([, a, b]) => a !== b);
    assert.deepEqual(differ, [], `${file}: footer byte and bit, python, js`);
  }
});

test('a_live_files_last_batch_whose_body_length_its_buffers_contradict_is_corrupt', (t) => {
  // The JS reader took a last batch whose bodyLength was raised by 64 (running past the end) for a torn tail
  // and returned the rows before it; §1.7.2's check comes first (the buffers end 64+ bytes before the body).
  const dir = tempDir(t);
  const path = join(dir, 'live.arrow');
  // A live file (the writer never closes it: os._exit) with two flushes.
  python(['-c', `import os, lossfmt\nw = lossfmt.LossWriter(${JSON.stringify(path)})\nw.add(0, 1.0); w.flush(); w.add(1, 2.0); w.flush()\nos._exit(0)`]);
  const bytes = new Uint8Array(readFileSync(path));
  assert.equal(readFile(path).rows.length, 2);
  // The last message's bodyLength: the Message table's field 3 (int64).
  let at = 8;
  let last = null;
  for (;;) {
    const m = readMessage(bytes, at, path);
    if (m.torn || m.eos || m.end >= bytes.length) { last = m.torn ? null : m; break; }
    at = m.end;
  }
  const fb = last.fb;
  const slot = fb.bb.__offset(fb.bb_pos, 10);
  const pos = last.metaStart + fb.bb_pos + slot;
  const dv = new DataView(bytes.buffer, bytes.byteOffset);
  dv.setBigInt64(pos, dv.getBigInt64(pos, true) + 64n, true);
  writeFileSync(path, bytes);
  assert.throws(() => readFile(path), (e) => e instanceof LossFormatError && /body length \d+ does not match its buffers/.test(e.message) && e.offset === last.offset);
});
