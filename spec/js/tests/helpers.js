// Shared by the tests: temporary directories and the Python helper (pyhelper.py) run as a real subprocess.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The Python with lossfmt installed: $PYTHON (CI passes its venv's), else python3 on PATH. */
export const PYTHON = process.env.PYTHON || 'python3';
export const HELPER = fileURLToPath(new URL('../pyhelper.py', import.meta.url));

/** Runs `PYTHON args...` with `input` on stdin; throws with its stderr unless it exits 0. */
export function python(args, input = '') {
  const r = spawnSync(PYTHON, args, { input, encoding: 'utf8', timeout: 120_000 });
  if (r.error) throw new Error(`cannot run ${PYTHON} (set PYTHON to a python with lossfmt installed): ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${PYTHON} ${args.join(' ')} exited ${r.status}:\n${r.stderr}`);
  return r.stdout;
}

/** pyhelper.py COMMAND PATH, its JSON answer. */
export function pyhelper(command, path, input = '') {
  return JSON.parse(python([HELPER, command, path], input));
}

/** A fresh temporary directory, removed when `t` (a node:test context) ends. */
export function tempDir(t) {
  const dir = mkdtempSync(join(tmpdir(), 'lossfmt-js-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
