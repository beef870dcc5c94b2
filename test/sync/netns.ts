/**
 * Two directors in network namespaces joined by one veth link, for the sync daemon's
 * end-to-end test (IPVS sync protocol over real multicast). Each director also holds the
 * VIP, two client addresses and the two real-server addresses on its loopback, so that the
 * userspace plane, its clients and its real servers all run inside it:
 *
 *   ns tsvs-ya-S                                   ns tsvs-yb-S
 *   +------------------------------+   veth    +------------------------------+
 *   | tsvsdA (sync master)         |-----------| tsvsdB (sync backup)         |
 *   | tsvsyaS 198.18.0.2/24        |           | tsvsybS 198.18.0.3/24        |
 *   | lo: VIP 198.18.0.1, clients  |           | lo: the same addresses       |
 *   |  198.18.0.10/.20, reals      |           |                              |
 *   |  198.19.0.11/.12 (rs.mjs)    |           |                              |
 *   +------------------------------+           +------------------------------+
 *
 * Everything is named tsvs + suffix and removed by `down`, also after a failure.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { HttpControlClient } from '../../src/api/client.js';

export const ROOT = resolve(import.meta.dirname, '../..');
export const VIP = '198.18.0.1';
export const CLIENTS = ['198.18.0.10', '198.18.0.20'] as const;
export const REALS = ['198.19.0.11', '198.19.0.12'] as const;

function sh(cmd: string, args: string[], allowFail = false): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 15_000 });
  if ((r.status !== 0 || r.error) && !allowFail)
    throw new Error(`${cmd} ${args.join(' ')}: ${r.error?.message ?? (r.stderr.trim() || `exit ${r.status}`)}`);
  return r.stdout ?? '';
}

export interface Proc {
  proc: ChildProcess;
  out(): string;
  kill(sig?: NodeJS.Signals): Promise<void>;
}

export function startIn(ns: string, argv: string[], env: Record<string, string> = {}): Proc {
  const proc = spawn('ip', ['netns', 'exec', ns, ...argv], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  return {
    proc,
    out: () => out,
    kill: async (sig = 'SIGTERM') => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(sig);
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** A TCP server on both real-server addresses: each connection gets "<its address>\n" and stays open. */
const RS_SCRIPT = `
import net from 'node:net';
for (const a of ${JSON.stringify(REALS)}) net.createServer((s) => { s.on('error', () => {}); s.write(a + '\\n'); }).listen(80, a);
setTimeout(() => process.exit(0), 120000);
`;
/** Connects from argv[2] to VIP:80, prints the first line, holds the connection argv[3] ms. */
const CLIENT_SCRIPT = `
import net from 'node:net';
const s = net.connect({ host: ${JSON.stringify(VIP)}, port: 80, localAddress: process.argv[2] });
s.on('error', (e) => { console.log('ERR ' + e.message); process.exit(1); });
s.once('data', (d) => { console.log(d.toString().trim()); setTimeout(() => { s.destroy(); process.exit(0); }, Number(process.argv[3])); });
setTimeout(() => { console.log('TIMEOUT'); process.exit(1); }, Number(process.argv[3]) + 5000);
`;

export interface SyncPair {
  suffix: string;
  dir: string;
  ns: [string, string];
  ifs: [string, string];
  sockets: [string, string];
  clients: [HttpControlClient, HttpControlClient];
  tsvsd: Proc[];
  rs: Proc[];
  /** Connects from `caddr` inside director i and resolves with the real server that answered. */
  connect(i: 0 | 1, caddr: string, holdMs: number): Promise<{ server: string; done: Promise<void> }>;
  down(): Promise<void>;
}

async function waitUp(c: HttpControlClient, p: Proc): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      await c.info();
      return;
    } catch {
      if (p.proc.exitCode !== null || Date.now() > deadline) throw new Error(`tsvsd did not start: ${p.out()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

export async function syncPairUp(): Promise<SyncPair> {
  const suffix = Math.random()
    .toString(36)
    .slice(2, 7)
    .replace(/[^a-z0-9]/g, 'x');
  const dir = mkdtempSync(join(tmpdir(), `tsvs-sync-${suffix}-`));
  const ns: [string, string] = [`tsvs-ya-${suffix}`, `tsvs-yb-${suffix}`];
  const ifs: [string, string] = [`tsvsya${suffix}`, `tsvsyb${suffix}`];
  const sockets: [string, string] = [join(dir, 'a.sock'), join(dir, 'b.sock')];
  const tsvsd: Proc[] = [];
  const rs: Proc[] = [];
  const pair: SyncPair = {
    suffix,
    dir,
    ns,
    ifs,
    sockets,
    clients: [
      new HttpControlClient({ socketPath: sockets[0], timeoutMs: 5000 }),
      new HttpControlClient({ socketPath: sockets[1], timeoutMs: 5000 }),
    ],
    tsvsd,
    rs,
    connect: async (i, caddr, holdMs) => {
      const p = startIn(ns[i], [process.execPath, join(dir, 'client.mjs'), caddr, String(holdMs)]);
      const deadline = Date.now() + 10_000;
      while (!p.out().includes('\n') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      const line = p.out().split('\n')[0]!;
      if (!/^198\.19\.0\.\d+$/.test(line)) throw new Error(`client ${caddr} in ${ns[i]}: ${p.out()}`);
      return { server: line, done: new Promise<void>((r) => p.proc.once('exit', () => r())) };
    },
    down: async () => {
      for (const p of [...tsvsd, ...rs]) await p.kill('SIGKILL');
      for (const n of ns) sh('ip', ['netns', 'del', n], true);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    writeFileSync(join(dir, 'rs.mjs'), RS_SCRIPT);
    writeFileSync(join(dir, 'client.mjs'), CLIENT_SCRIPT);
    for (const n of ns) sh('ip', ['netns', 'add', n]);
    sh('ip', ['link', 'add', ifs[0], 'netns', ns[0], 'type', 'veth', 'peer', 'name', ifs[1], 'netns', ns[1]]);
    for (const [i, n] of ns.entries()) {
      const run = (...a: string[]) => sh('ip', ['netns', 'exec', n, ...a]);
      run('ip', 'link', 'set', 'lo', 'up');
      run('ip', 'addr', 'add', `198.18.0.${2 + i}/24`, 'dev', ifs[i]!);
      run('ip', 'link', 'set', ifs[i]!, 'up');
      for (const a of [VIP, ...CLIENTS, ...REALS]) run('ip', 'addr', 'add', `${a}/32`, 'dev', 'lo');
      rs.push(startIn(n, [process.execPath, join(dir, 'rs.mjs')]));
      const p = startIn(n, [
        process.execPath,
        '--import',
        'tsx',
        join(ROOT, 'bin/tsvsd.ts'),
        '--socket',
        sockets[i]!,
        '--state',
        join(dir, `${i}.json`),
      ]);
      tsvsd.push(p);
    }
    await Promise.all(pair.clients.map((c, i) => waitUp(c, tsvsd[i]!)));
  } catch (e) {
    await pair.down();
    throw e;
  }
  return pair;
}
