/**
 * Cleanup that runs on SIGINT and SIGTERM as well as in `finally`: a bench registers each
 * thing it makes (a process, a namespace, a directory) with a synchronous undo, and
 * unregisters it once it has removed it the normal way. A signal runs every undo still
 * registered, newest first, and exits.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const undos: Array<{ what: string; undo: () => void }> = [];
let installed = false;

function runAll(): void {
  while (undos.length) {
    const u = undos.pop()!;
    try {
      u.undo();
    } catch (e) {
      process.stderr.write(`cleanup of ${u.what} failed: ${(e as Error).message}\n`);
    }
  }
}

/** Registers `undo` (synchronous); returns a function that runs it now, once, and unregisters it. */
export function onCleanup(what: string, undo: () => void): () => void {
  if (!installed) {
    installed = true;
    for (const [sig, code] of [
      ['SIGINT', 130],
      ['SIGTERM', 143],
    ] as const) {
      process.on(sig, () => {
        process.stderr.write(`${sig}: cleaning up\n`);
        runAll();
        process.exit(code);
      });
    }
  }
  const entry = { what, undo };
  undos.push(entry);
  return () => {
    const i = undos.indexOf(entry);
    if (i < 0) return;
    undos.splice(i, 1);
    undo();
  };
}

/** Whether a process is alive: it exists and is not a zombie (our own exited children stay zombies until the event loop reaps them). */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** SIGTERM to one process we started, then SIGKILL after `graceMs`; waits synchronously. */
export function stopPid(pid: number, graceMs: number): void {
  for (const sig of ['SIGTERM', 'SIGKILL'] as const) {
    if (!alive(pid)) return;
    try {
      process.kill(pid, sig);
    } catch {
      return;
    }
    const until = Date.now() + graceMs;
    while (alive(pid) && Date.now() < until) spawnSync('sleep', ['0.05']);
  }
}
