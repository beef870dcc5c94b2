/**
 * The pieces bench/scale.ts times: a fresh tsvsd for one size (the built
 * dist/bin/tsvsd.js, with a --state file, its JSON log in a file), whole tsvsadm calls
 * (the built dist/bin/tsvsadm.js, node start-up included) bounded by a timeout, and the
 * daemon's memory from /proc.
 *
 * The nftables plane runs tsvsd inside a network namespace the caller made (tsvsd sets
 * forwarding there itself, TSVS_NFT_SETUP=sysctl); tsvsadm always runs in the bench's own
 * namespace, since the control socket is a file. The userspace plane binds one listener
 * per service, so tsvsd starts under `prlimit --nofile` (prlimit and `ip netns exec` both
 * exec, so the child's PID is tsvsd's own).
 */
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { HttpControlClient } from '../src/api/client.js';
import { socketAnswers } from '../src/lab/lab.js';
import { onCleanup, stopPid } from './cleanup.js';
import type { Plane } from './scale-plan.js';

const ROOT = join(import.meta.dirname, '..');

/** The built entry point of one of the package's programs; throws when not built. */
export function builtBin(name: 'tsvsd' | 'tsvsadm'): string {
  const p = join(ROOT, 'dist', 'bin', `${name}.js`);
  if (!existsSync(p)) throw new Error(`${p} is missing: run npm run build first (the bench times the built programs)`);
  return p;
}

/**
 * The most RLIMIT_NOFILE a child can get: the hard limit, which only CAP_SYS_RESOURCE
 * could raise (containers often lack it).
 */
export function hardNofile(): number {
  const out = spawnSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).stdout.trim();
  return out === 'unlimited' ? 1 << 20 : Number(out) || 1024;
}

/** A running bench daemon. */
export interface BenchDaemon {
  pid: number;
  socket: string;
  log: string;
  client: HttpControlClient;
  /** SIGTERM (tables removed, listeners closed), SIGKILL after 10 s. */
  stop(): void;
}

export interface DaemonStart {
  plane: Plane;
  /** Scratch directory: socket, state file, log. */
  dir: string;
  /** Network namespace to run in (the nftables plane). */
  netns?: string;
  logLevel: string;
  /** RLIMIT_NOFILE for the daemon (at most the hard limit). */
  nofile: number;
  /** Client timeout for API calls made through `client`. */
  timeoutMs: number;
}

/** Starts tsvsd and waits (up to 30 s) until its control socket answers. */
export async function startBenchDaemon(o: DaemonStart): Promise<BenchDaemon> {
  const socket = join(o.dir, 'tsvsd.sock');
  const log = join(o.dir, 'tsvsd.log');
  const nofile = Math.min(o.nofile, hardNofile());
  const argv = [
    'prlimit',
    `--nofile=${nofile}:${nofile}`,
    process.execPath,
    builtBin('tsvsd'),
    '--dataplane',
    o.plane,
    '--socket',
    socket,
    '--state',
    join(o.dir, 'state.json'),
    '--log-level',
    o.logLevel,
    '--drain-timeout',
    '0',
  ];
  const full = o.netns ? ['ip', 'netns', 'exec', o.netns, ...argv] : argv;
  const out = openSync(log, 'a');
  const child = spawn(full[0]!, full.slice(1), {
    stdio: ['ignore', out, out],
    env: { ...process.env, TSVS_NFT_SETUP: 'sysctl' },
  });
  closeSync(out);
  const pid = child.pid!;
  const stop = onCleanup(`tsvsd ${pid}`, () => stopPid(pid, 10_000));
  const deadline = Date.now() + 30_000;
  while (!(await socketAnswers(socket))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      stop();
      throw new Error(`tsvsd (${o.plane}) did not start: ${readFileSync(log, 'utf8').slice(-2000)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  // The PID must be the daemon itself (prlimit and ip netns exec exec), or RSS means nothing.
  const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  if (!cmdline.includes('tsvsd.js')) throw new Error(`PID ${pid} is not tsvsd: ${cmdline.replaceAll('\0', ' ')}`);
  return { pid, socket, log, client: new HttpControlClient({ socketPath: socket, timeoutMs: o.timeoutMs }), stop };
}

/** Resident memory now and at its peak, in MB (VmRSS and VmHWM of /proc/PID/status). */
export function memoryMB(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
}

/** How one timed process run went. */
export interface Timed {
  ms: number;
  code: number | null;
  timedOut: boolean;
  /** Lines of standard output (counted, not kept). */
  lines: number;
  /** The start of standard error (2 kB at most). */
  stderr: string;
}

/**
 * Runs a command to completion and times it from spawn to exit. Standard output is
 * counted in lines and dropped (listings can be megabytes); stderr keeps its first 2 kB.
 * At `timeoutMs` the process is killed and the run says so.
 */
export function timedRun(
  cmd: string,
  args: string[],
  o: { env?: NodeJS.ProcessEnv; stdinFile?: string; timeoutMs: number },
): Promise<Timed> {
  return new Promise((resolve, reject) => {
    const stdin = o.stdinFile ? openSync(o.stdinFile, 'r') : 'ignore';
    const t0 = performance.now();
    const child = spawn(cmd, args, { stdio: [stdin, 'pipe', 'pipe'], env: o.env ?? process.env });
    if (typeof stdin === 'number') closeSync(stdin);
    let lines = 0;
    let stderr = '';
    let timedOut = false;
    child.stdout!.on('data', (b: Buffer) => {
      for (let i = b.indexOf(10); i >= 0; i = b.indexOf(10, i + 1)) lines++;
    });
    child.stderr!.on('data', (b: Buffer) => {
      if (stderr.length < 2048) stderr += b.toString('utf8', 0, Math.min(b.length, 2048 - stderr.length));
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, o.timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ ms: performance.now() - t0, code, timedOut, lines, stderr: stderr.trim() });
    });
  });
}

/** One whole tsvsadm call against `socket` (node start-up, parsing, the API call, output). */
export function tsvsadm(socket: string, args: string[], o: { stdinFile?: string; timeoutMs: number }): Promise<Timed> {
  return timedRun(process.execPath, [builtBin('tsvsadm'), ...args], { ...o, env: { ...process.env, TSVS_SOCKET: socket } });
}

/** Times one API call from the bench process (no node start-up, no tsvsadm parsing). */
export async function timedCall(f: () => Promise<unknown>): Promise<{ ms: number; error: string | null }> {
  const t0 = performance.now();
  try {
    await f();
    return { ms: performance.now() - t0, error: null };
  } catch (e) {
    return { ms: performance.now() - t0, error: (e as Error).message.slice(0, 300) };
  }
}

/**
 * Per-batch durations the daemon logged after byte `from` of its log: JSON lines whose
 * message starts with "applied" and that carry a numeric `ms` field. Empty when the
 * daemon does not log one (then the API round trip is the daemon-side figure).
 */
export function loggedBatchMs(log: string, from: number): number[] {
  const text = readFileSync(log).subarray(from).toString('utf8');
  const out: number[] = [];
  for (const line of text.split('\n')) {
    if (!line.includes('"ms"')) continue;
    try {
      const j = JSON.parse(line) as { msg?: unknown; ms?: unknown };
      if (typeof j.ms === 'number' && typeof j.msg === 'string' && j.msg.startsWith('applied')) out.push(j.ms);
    } catch {
      /* not a JSON line */
    }
  }
  return out;
}
