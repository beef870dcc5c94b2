/**
 * MISC_CHECK: runs misc_path (a command line, split on blanks with quotes honoured, no
 * shell) in its own process group. Exit 0 = up, anything else = down; with misc_dynamic,
 * exit 2-255 is up with weight (status - 2), as keepalived does. A script still running at
 * misc_timeout (default: the check interval) is killed with its whole process group.
 */
import { spawn } from 'node:child_process';
import type { CheckerConfig } from './model.js';
import { errText } from '../core/log.js';
import { since, type CheckResult, type CheckTarget } from './checker.js';

/** Splits a command line the way keepalived splits misc_path / notify scripts. */
export function splitCommand(line: string): string[] {
  const out: string[] = [];
  const re = /"((?:\\.|[^"\\])*)"|'([^']*)'|(\S+)/g;
  for (let m; (m = re.exec(line)); ) out.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : (m[2] ?? m[3]!));
  return out;
}

export function miscCheck(cfg: CheckerConfig, t: CheckTarget): Promise<CheckResult> {
  const t0 = performance.now();
  const o = cfg.misc ?? { path: '', timeout: 0, dynamic: false };
  const argv = splitCommand(o.path);
  const timeoutS = o.timeout > 0 ? o.timeout : cfg.interval;
  return new Promise((resolve) => {
    if (!argv.length) {
      resolve({ ok: false, reason: 'misc_path is empty', latencyMs: 0 });
      return;
    }
    let settled = false;
    let timedOut = false;
    const done = (r: Omit<CheckResult, 'latencyMs'>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ ...r, latencyMs: since(t0) });
    };
    const child = spawn(argv[0]!, argv.slice(1), {
      detached: true,
      stdio: 'ignore',
      env: { ...process.env, TSVS_RS_ADDR: t.serverAddr, TSVS_RS_PORT: String(t.serverPort) },
    });
    const timer = setTimeout(() => {
      timedOut = true;
      // Kill the group: a shell script's children (sleep, curl) would otherwise linger.
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    }, timeoutS * 1000);
    child.once('error', (e) => done({ ok: false, reason: `${argv[0]}: ${errText(e)}` }));
    child.once('exit', (code, signal) => {
      if (timedOut) return done({ ok: false, reason: `${argv[0]} timed out after ${timeoutS}s; killed` });
      if (code === null) return done({ ok: false, reason: `${argv[0]} killed by ${signal}` });
      if (code === 0) return done({ ok: true, reason: 'exit 0' });
      if (o.dynamic && code >= 2) return done({ ok: true, reason: `exit ${code}: weight ${code - 2}`, weight: code - 2 });
      done({ ok: false, reason: `${argv[0]} exited ${code}` });
    });
  });
}
