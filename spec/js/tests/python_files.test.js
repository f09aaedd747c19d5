// (a) The JS reader against files the Python writer (lossfmt.LossWriter) makes during the run: closed, live
// (a real SIGKILL), torn, resumed, resumed-then-killed (two streams); and files pyarrow writes by itself from
// the closed one: LZ4 and uncompressed bodies, delta dictionaries, a header-only live file, EOS without a
// footer, minimal metadata.

import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { readFile } from '../reader.js';
import { jsonValue } from './expect.js';
import { pyhelper } from './helpers.js';

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
  closed: 'closed', live: 'live', torn: 'live', resumed: 'resumed', resumed_live: 'resumed',
  closed_lz4: 'closed', closed_uncompressed: 'closed', delta: 'closed', eos_no_footer: 'closed',
  header_only: 'closed', minimal: 'minimal',
};
const NAMES = Object.keys(RUNS);

test('the Python helper made every kind of file', () => {
  assert.deepEqual(made, [...NAMES].sort());
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
