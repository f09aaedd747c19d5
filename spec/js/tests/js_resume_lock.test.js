// The JS writer against the Python one: it resumes files lossfmt.LossWriter made (spec §1.4: ids 0 and 1
// let either implementation continue the other's run), refuses files it could not keep, and shares the
// one-writer-per-file lock (§1.5) with Python writers.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import {
  Dictionary, Float64, Int8, Int32, Int64, RecordBatch, RecordBatchStreamWriter, Schema, Table, TimestampMicrosecond,
  Utf8, makeData, makeVector, vectorFromArray,
} from 'apache-arrow';
import { MAGIC } from '../framing.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LossWriter } from '../writer.js';
import { WriterBusyError } from '../lock.js';
import { readFile, LossFormatError } from '../reader.js';
import { assertRows } from './expect.js';
import { HELPER, PYTHON, pyhelper, tempDir } from './helpers.js';

let dir;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'lossfmt-js-resume-'));
  pyhelper('make', dir);
});
after(() => rmSync(dir, { recursive: true, force: true }));

const T0 = 1_800_000_000_000_000;
const ADDED = [[100, 'loss', 0.125, 4, 3, T0, 'mean'], [100, 'js/new', 2.5, 2, null, T0 + 1, 'sum']];

for (const name of ['closed', 'live', 'torn', 'resumed_live']) {
  test(`the JS writer resumes the Python writer's ${name} file; both readers see every event`, async (t) => {
    const path = join(tempDir(t), `${name}.arrow`);
    copyFileSync(join(dir, `${name}.arrow`), path);
    const before = pyhelper('read', path).rows;
    const w = await LossWriter.open(path, { meta: { resumed_by: 'js' } });
    for (const [i, [step, tag, value, count, epoch, wallTime, reduction]] of ADDED.entries()) {
      w.add(step, value, { tag, count, epoch, wallTime, reduction });
      if (i === 0) w.flush();
    }
    w.close();
    const want = [...before, ...ADDED];
    const py = pyhelper('read', path);
    assertRows(py.rows, want, `lossfmt.read after the JS writer resumed ${name}`);
    assert.ok(py.verified >= 1, 'the compacted file carries checksums google-crc32c confirms');
    const js = readFile(path);
    assert.equal(js.closed, true);
    assertRows(js.rows, want, 'the JS reader');
    assert.equal(js.meta.resumed_by, 'js');
    assert.equal(js.meta.lr, 0.01);
    assert.equal(js.runId, readFile(join(dir, `${name}.arrow`)).runId, 'run_id kept');
  });
}

test('the JS writer refuses, untouched, a file with a column it does not know; the JS reader ignores it', async (t) => {
  const path = join(tempDir(t), 'extra.arrow');
  const rows = pyhelper('extra', path).rows;
  assertRows(readFile(path).rows, rows, 'the JS reader on a file with an extra column');
  const bytes = readFileSync(path);
  await assert.rejects(LossWriter.open(path), (e) => e instanceof LossFormatError && /note/.test(e.message));
  assert.deepEqual(readFileSync(path), bytes, 'the file was modified');
});

test('the JS writer refuses, untouched, a file that is not lossfmt', async (t) => {
  const path = join(tempDir(t), 'foreign.arrow');
  const bytes = Buffer.from('not an arrow file at all');
  writeFileSync(path, bytes);
  await assert.rejects(LossWriter.open(path), LossFormatError);
  assert.deepEqual(readFileSync(path), bytes);
});

test('while a JS writer has a file open, a Python writer and a second JS writer get WriterBusyError', async (t) => {
  const path = join(tempDir(t), 'locked.arrow');
  const w = await LossWriter.open(path);
  w.add(1, 1.0, { wallTime: T0 });
  w.flush();
  const busy = pyhelper('busy', path);
  assert.equal(busy.busy, true);
  assert.match(busy.message, /locked\.arrow/);
  await assert.rejects(LossWriter.open(path), WriterBusyError);
  w.close();
  assert.deepEqual(pyhelper('busy', path), { busy: false });
  assertRows(readFile(path).rows, [[1, 'loss', 1, 1, null, T0, 'mean']]);
});

test('while a Python writer has a file open, the JS writer gets WriterBusyError and leaves it alone', async (t) => {
  const path = join(tempDir(t), 'py_locked.arrow');
  const holder = spawn(PYTHON, [HELPER, 'hold', path], { stdio: ['pipe', 'pipe', 'inherit'] });
  await new Promise((resolve, reject) => {
    holder.stdout.once('data', resolve);
    holder.on('exit', (code) => reject(new Error(`python holder exited ${code}`)));
  });
  holder.removeAllListeners('exit');
  const bytes = readFileSync(path);
  await assert.rejects(LossWriter.open(path), WriterBusyError);
  assert.deepEqual(readFileSync(path), bytes);
  const exited = new Promise((resolve) => holder.on('exit', resolve));
  holder.stdin.end();
  assert.equal(await exited, 0);
});

test('the JS writer resumes a file whose dictionary ids are not 0 and 1, keeping the ids it declares', async (t) => {
  const path = join(tempDir(t), 'ids.arrow');
  const table = new Table({
    step: vectorFromArray([1n], new Int64()),
    tag: vectorFromArray(['loss'], new Dictionary(new Utf8(), new Int32(), 7)),
    value: vectorFromArray([0.5], new Float64()),
    count: vectorFromArray([2n], new Int64()),
    epoch: vectorFromArray([null], new Int64()),
    wall_time: makeVector(makeData({ type: new TimestampMicrosecond('UTC'), length: 1, data: BigInt64Array.of(BigInt(T0)) })),
    reduction: vectorFromArray(['sum'], new Dictionary(new Utf8(), new Int8(), 3)),
  });
  const schema = new Schema(table.schema.fields, new Map([['lossfmt.version', '1'], ['lossfmt.run', 'ids']]));
  const stream = RecordBatchStreamWriter.writeAll(new Table(schema, table.batches.map((b) => new RecordBatch(schema, b.data)))).toUint8Array(true);
  writeFileSync(path, Buffer.concat([MAGIC, stream]));
  const w = await LossWriter.open(path);
  w.add(2, 0.25, { tag: 'other', wallTime: T0 + 1 });
  w.close();
  const want = [[1, 'loss', 0.5, 2, null, T0, 'sum'], [2, 'other', 0.25, 1, null, T0 + 1, 'mean']];
  assertRows(pyhelper('read', path).rows, want, 'lossfmt.read');
  const got = readFile(path);
  assertRows(got.rows, want, 'JS reader');
  assert.deepEqual(got.schema.fields.filter((f) => f.type.dictionary).map((f) => f.type.id), [7, 3]);
});
