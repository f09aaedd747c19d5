// The one-writer-per-file lock (spec/FORMAT.md §1.5): an exclusive flock(2) on the file, held while a writer
// is open. node has no flock, so a child process of util-linux' flock(1) holds it: it takes the lock, says
// "locked", and keeps it until its stdin closes, which also happens when this process dies (even by
// SIGKILL), so a crashed writer never leaves the file locked. Python's LossWriter takes the same lock.

import { spawn } from 'node:child_process';

const BUSY = 75; // flock(1)'s exit status when the lock is held elsewhere (--conflict-exit-code)

/** Another writer holds the file's lock. */
export class WriterBusyError extends Error {
  constructor(path) {
    super(`${path}: another writer has this file open (one writer per file); close it first`);
    this.name = 'WriterBusyError';
  }
}

/** Takes the exclusive lock on `path` (which must exist); resolves to a function that releases it. */
export function lockFile(path) {
  const child = spawn('flock', ['--exclusive', '--nonblock', '--conflict-exit-code', String(BUSY), path, 'sh', '-c', 'echo locked; exec cat >/dev/null'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    child.on('error', (e) => reject(new Error(`${path}: cannot lock: flock(1) (util-linux) is needed to run a writer (${e.message})`)));
    child.on('exit', (code) => reject(code === BUSY ? new WriterBusyError(path) : new Error(`${path}: flock(1) exited ${code}`)));
    child.stdout.once('data', () => {
      child.removeAllListeners('exit');
      // The lock must not keep node running: a writer that is never closed still lets the process exit.
      child.unref();
      child.stdin.unref?.();
      child.stdout.destroy();
      resolve(() => child.stdin.end());
    });
  });
}
