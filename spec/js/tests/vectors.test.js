// (a) The JS reader against every conformance vector in spec/vectors/ (spec/FORMAT.md §8): the expected rows,
// metadata, `end` and closed state, or the expected error.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readFile, LossFormatError } from '../reader.js';
import { assertRows } from './expect.js';

const VECTORS = process.env.LOSSFMT_VECTORS ?? fileURLToPath(new URL('../../vectors/', import.meta.url));
const names = readdirSync(VECTORS).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5)).sort();

test('the vectors directory has vectors', () => {
  assert.ok(names.length >= 4, `only ${names.length} vectors in ${VECTORS}`);
});

for (const name of names) {
  test(`vector ${name}`, () => {
    const expected = JSON.parse(readFileSync(join(VECTORS, `${name}.json`), 'utf8'));
    const path = join(VECTORS, `${name}.arrow`);
    const error = expected.error ?? expected.expected_error;
    if (error !== undefined) {
      assert.throws(() => readFile(path), (e) => {
        assert.ok(e instanceof LossFormatError, `expected a LossFormatError, got ${e}`);
        checkError(e, error);
        return true;
      });
      return;
    }
    const got = readFile(path);
    assertRows(got.rows, expected.rows, name);
    if ('end' in expected) assert.equal(got.end, expected.end, `${name}: end`);
    if ('closed' in expected) assert.equal(got.closed, expected.closed, `${name}: closed`);
    const md = expected.metadata ?? {};
    if ('run' in md) assert.equal(got.run, md.run);
    if ('run_id' in md) assert.equal(got.runId, md.run_id);
    if ('meta' in md) assert.deepEqual(got.meta, md.meta);
  });
}

/** The expected error: {offset} is the byte offset of the message the error names (null for a file-level
 * error). The wording is each implementation's own, so only the offset is compared. */
function checkError(e, error) {
  if (error !== null && typeof error === 'object' && 'offset' in error) {
    assert.equal(e.offset ?? null, error.offset, `error offset (${e.message})`);
  }
}
