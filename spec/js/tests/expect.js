// Comparing what the JS reader returns with the expected rows of a conformance JSON (spec/FORMAT.md §8).

import assert from 'node:assert/strict';

const SPECIAL = { NaN: NaN, Infinity: Infinity, '-Infinity': -Infinity };

/** A JSON value as the reader returns it: "NaN"/"Infinity"/"-Infinity" for the non-finite doubles. */
export function jsonValue(v) {
  return typeof v === 'string' && v in SPECIAL ? SPECIAL[v] : v;
}

/** Asserts `rows` equal `expected` exactly: same order, -0.0 distinct from 0.0, NaN equal to NaN. */
export function assertRows(rows, expected, what = 'rows') {
  assert.equal(rows.length, expected.length, `${what}: ${rows.length} rows, expected ${expected.length}`);
  rows.forEach((row, i) => {
    const want = expected[i].map((v, j) => (j === 2 ? jsonValue(v) : v));
    row = row.map((v, j) => (j === 2 ? jsonValue(v) : v));
    assert.equal(row.length, want.length, `${what}[${i}] has ${row.length} fields`);
    row.forEach((got, j) => {
      assert.ok(Object.is(got, want[j]), `${what}[${i}][${j}]: got ${String(got)}, expected ${String(want[j])} (row ${JSON.stringify(row, big)})`);
    });
  });
}

function big(_k, v) {
  return typeof v === 'bigint' ? v.toString() : v;
}
