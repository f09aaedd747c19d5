// A JS writer process for the crash tests: `node js_child.js PATH` logs the flushes given as JSON on stdin
// (each event [step, tag, value, count, epoch, wall_time, reduction]; value as in the vectors' JSON,
// or "-0" for -0.0, which JSON.stringify would turn into 0), prints "flushed" after each flush(),
// then waits to be killed (SIGKILL): the file stays exactly as flushed.

import { readFileSync } from 'node:fs';
import { LossWriter } from '../writer.js';
import { jsonValue } from './expect.js';

const w = await LossWriter.open(process.argv[2], { meta: { lr: 0.01, note: 'js' } });
for (const flush of JSON.parse(readFileSync(0, 'utf8'))) {
  for (const [step, tag, value, count, epoch, wallTime, reduction] of flush) {
    w.add(step, value === '-0' ? -0 : jsonValue(value), { tag, count, epoch, wallTime, reduction });
  }
  w.flush();
  process.stdout.write('flushed\n');
}
setInterval(() => {}, 1 << 30);
