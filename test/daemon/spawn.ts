/**
 * Starts the real tsvsd binary (node_modules/.bin/tsvsd, built by `npm test`'s pretest)
 * with its own socket and state file in a temp directory, and stops it by PID.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { HttpControlClient } from '../../src/api/client.js';
import type { DestConfig, ServiceConfig } from '../../src/core/types.js';

export const ROOT = resolve(import.meta.dirname, '../..');
export const BIN = (name: string) => join(ROOT, 'node_modules', '.bin', name);
/**
 * The built entry point of a bin in this checkout, run with node: what node_modules/.bin
 * links to in the main checkout, but also right in a git worktree whose node_modules is a
 * symlink to another checkout's (its .bin links resolve to that checkout's dist).
 */
export const ENTRY = (name: string) => join(ROOT, 'dist', 'bin', `${name}.js`);

export interface Tsvsd {
  proc: ChildProcess;
  dir: string;
  socket: string;
  state: string;
  client: HttpControlClient;
  /** Everything the daemon printed on stdout (JSON log lines). */
  logs(): string;
  stderr(): string;
  /** Sends a signal and waits for the exit code. */
  kill(signal?: NodeJS.Signals): Promise<number | null>;
  cleanup(): Promise<void>;
}

export async function startTsvsd(extraArgs: string[] = [], opts: { dir?: string } = {}): Promise<Tsvsd> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'tsvs-test-'));
  const socket = join(dir, 'tsvsd.sock');
  const state = join(dir, 'state.json');
  const proc = spawn(process.execPath, [ENTRY('tsvsd'), '--socket', socket, '--state', state, ...extraArgs], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((res) => proc.once('exit', (code) => res(code)));
  const client = new HttpControlClient({ socketPath: socket, timeoutMs: 5000 });
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      await client.info();
      break;
    } catch {
      if (proc.exitCode !== null || Date.now() > deadline) {
        throw new Error(`tsvsd did not start (exit ${proc.exitCode}): ${err}${out}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  const kill = async (signal: NodeJS.Signals = 'SIGTERM') => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
    return exited;
  };
  return {
    proc,
    dir,
    socket,
    state,
    client,
    logs: () => out,
    stderr: () => err,
    kill,
    cleanup: async () => {
      await kill('SIGKILL');
      if (!opts.dir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A TCP service at addr:port (wrr), as the kill -9 tests build their table. */
export const service = (addr: string, port: number): ServiceConfig => ({
  af: 4,
  protocol: 'tcp',
  addr,
  port,
  fwmark: 0,
  scheduler: 'wrr',
  schedFlags: 0,
  persistent: 0,
  netmask: 0xffffffff,
  ops: false,
  pe: '',
});
/** The one real server those tests weight up and down. */
export const dest = (weight: number): DestConfig => ({
  af: 4,
  addr: '127.0.0.2',
  port: 8080,
  weight,
  fwd: 'masq',
  uThreshold: 0,
  lThreshold: 0,
});

/** Runs this checkout's tsvsadm against `socket`; true when it exits 0. */
export function tsvsadm(socket: string, args: string[]): Promise<boolean> {
  return new Promise((resolve) => {
    execFile(process.execPath, [ENTRY('tsvsadm'), ...args], { env: { ...process.env, TSVS_SOCKET: socket }, timeout: 20_000 }, (err) =>
      resolve(!err),
    );
  });
}
