/**
 * The userspace data plane against its peers on loopback, in one run: the direct path (no
 * load balancer), tsvsd in one thread and with `--workers N` (N threads on SO_REUSEPORT
 * listeners, one scheduler), HAProxy (mode tcp) and nginx stream, each balancing over the
 * same two nginx real servers. wrk drives keep-alive and `Connection: close` HTTP; we
 * report the median requests/s of several interleaved rounds and the ratios to direct and
 * to haproxy.
 *
 *   node --import tsx bench/proxy.ts [--duration 10] [--rounds 3] [--conns 64] [--workers 2]
 *
 * haproxy and nginx run one thread / worker, the same as tsvsd without --workers; the
 * --workers variant shows what a second core buys the userspace plane. The machine has 2
 * cores shared by wrk, the balancer and the real servers, so no variant can have a core
 * to itself. Every run is bounded: wrk -d DURATION, --timeout 5s.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { HttpControlClient } from '../src/api/client.js';
import type { ServiceConfig } from '../src/core/types.js';
import { writeSection } from './results.js';
import { measure, need, wrk } from './wrk.js';

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
    conns: { type: 'string', default: '64' },
    workers: { type: 'string', default: '2' },
    'no-write': { type: 'boolean', default: false },
  },
});
const DURATION = Number(values.duration);
const ROUNDS = Number(values.rounds);
const CONNS = Number(values.conns);
const WORKERS = Number(values.workers);
if (!Number.isInteger(WORKERS) || WORKERS < 2) throw new Error('--workers: 2 or more (the one-thread variant always runs)');
const ROOT = join(import.meta.dirname, '..');

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

async function waitPort(port: number, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = createServer();
      s.once('error', () => resolve(true)); // in use: someone listens
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(false)));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`nothing listens on 127.0.0.1:${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const wrkLocal = (port: number, close: boolean) => wrk({ url: `http://127.0.0.1:${port}/`, close, conns: CONNS, durationS: DURATION });

async function main(): Promise<void> {
  for (const c of ['wrk', 'nginx', 'haproxy']) need(c, 'wrk haproxy nginx-light libnginx-mod-stream');
  const dir = mkdtempSync(join(tmpdir(), 'tsvs-bench-'));
  const procs: ChildProcess[] = [];
  try {
    const [rs1, rs2, hap, ngx, tsvs, tsvsW, tsvsT] = [
      await freePort(),
      await freePort(),
      await freePort(),
      await freePort(),
      await freePort(),
      await freePort(),
      await freePort(),
    ];
    // As root, a transparent service too: its connects go through koffi (socket, IP_TRANSPARENT,
    // bind, non-blocking connect, poll) and `new net.Socket({ fd })` instead of net.connect.
    const root = process.getuid?.() === 0;
    // nginx's workers run as nobody: the document root must be readable by them.
    chmodSync(dir, 0o755);
    writeFileSync(join(dir, 'index.html'), `<!doctype html><html><body>${'tsvs bench '.repeat(55)}</body></html>\n`);
    // Real servers: one nginx with two listeners, serving the same page (shared storage).
    writeFileSync(
      join(dir, 'rs.conf'),
      `daemon off; worker_processes 1; pid ${dir}/rs.pid; error_log ${dir}/rs.err warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:${rs1} reuseport; listen 127.0.0.1:${rs2} reuseport; root ${dir}; } }
`,
    );
    writeFileSync(
      join(dir, 'lb.conf'),
      `daemon off; worker_processes 1; pid ${dir}/lb.pid; error_log ${dir}/lb.err warn;
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
events { worker_connections 8192; }
stream { upstream rs { server 127.0.0.1:${rs1}; server 127.0.0.1:${rs2}; }
  server { listen 127.0.0.1:${ngx}; proxy_pass rs; } }
`,
    );
    writeFileSync(
      join(dir, 'haproxy.cfg'),
      `global
  nbthread 1
  maxconn 4096
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend fe
  bind 127.0.0.1:${hap}
  default_backend rs
backend rs
  balance roundrobin
  server rs1 127.0.0.1:${rs1}
  server rs2 127.0.0.1:${rs2}
`,
    );
    const start = (cmd: string, args: string[]) => {
      const p = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] });
      procs.push(p);
      return p;
    };
    start('nginx', ['-c', join(dir, 'rs.conf'), '-p', dir]);
    start('nginx', ['-c', join(dir, 'lb.conf'), '-p', dir]);
    start('haproxy', ['-f', join(dir, 'haproxy.cfg'), '-db']);
    // Two directors: one thread, and --workers N.
    for (const [name, port, extra] of [
      ['tsvsd.sock', tsvs, []],
      ['tsvsd-w.sock', tsvsW, ['--workers', String(WORKERS)]],
      ...(root ? ([['tsvsd-t.sock', tsvsT, []]] as const) : []),
    ] as const) {
      const sock = join(dir, name);
      start(join(ROOT, 'node_modules', '.bin', 'tsvsd'), ['--socket', sock, '--log-level', 'warn', ...extra]);
      const client = new HttpControlClient({ socketPath: sock });
      for (let i = 0; ; i++) {
        try {
          await client.info();
          break;
        } catch (e) {
          if (i > 300) throw e;
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      const svc: ServiceConfig = {
        af: 4,
        protocol: 'tcp',
        addr: '127.0.0.1',
        port,
        fwmark: 0,
        scheduler: 'rr',
        schedFlags: 0,
        persistent: 0,
        netmask: 0xffffffff,
        ops: false,
        pe: '',
      };
      // On loopback the client address (127.0.0.1) is local: no reply routing needed.
      if (port === tsvsT) svc.transparent = true;
      await client.apply([
        { op: 'add-service', service: svc },
        ...[rs1, rs2].map((p) => ({
          op: 'add-server' as const,
          service: svc,
          dest: { af: 4 as const, addr: '127.0.0.1', port: p, weight: 1, fwd: 'masq' as const, uThreshold: 0, lThreshold: 0 },
        })),
      ]);
    }
    for (const p of [rs1, rs2, hap, ngx]) await waitPort(p);

    const variants: Array<[string, number]> = [
      ['direct (one real server)', rs1],
      ['tsvs userspace (1 thread)', tsvs],
      [`tsvs userspace --workers ${WORKERS}`, tsvsW],
      ...(root ? ([['tsvs userspace transparent (1 thread)', tsvsT]] as Array<[string, number]>) : []),
      ['haproxy (tcp, 1 thread)', hap],
      ['nginx stream (1 worker)', ngx],
    ];
    // Warm-up, not recorded: a fresh Node process (and each worker thread) runs its first
    // second unoptimized, which 1-2 s runs would otherwise count.
    for (const [, port] of variants)
      for (const close of [false, true]) wrk({ url: `http://127.0.0.1:${port}/`, close, conns: CONNS, durationS: 1 });
    const table = measure(
      variants.map(([name, port]) => ({ name, run: (close: boolean) => wrkLocal(port, close) })),
      ROUNDS,
      variants[0]![0],
      variants.find(([n]) => n.startsWith('haproxy'))![0],
    );
    const body = `Command: \`node --import tsx bench/proxy.ts --duration ${DURATION} --rounds ${ROUNDS} --conns ${CONNS} --workers ${WORKERS}\`
(${new Date().toISOString().slice(0, 10)}, Node ${process.version}, ${cpus().length} cores shared by wrk, the balancer and the real servers).
wrk -t2 -c${CONNS} -d${DURATION}s against a 600-byte page; median of ${ROUNDS} interleaved rounds. Real servers: one nginx
(1 worker) with two listeners. haproxy and nginx run one thread/worker, as tsvsd does without --workers;
\`--workers ${WORKERS}\` runs ${WORKERS} relay threads on SO_REUSEPORT listeners with one scheduler in the main thread.${
      root
        ? `
"transparent" connects to the real servers from the client's address (IP_TRANSPARENT through koffi, the descriptor handed to Node).`
        : ''
    }
Load average when the run started: ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')} (other work shares these cores; read the same-run ratios).
A second relay thread can only help when a core is idle: with wrk, the real servers and the balancer already sharing the
2 cores (and a load average near 10 from other work), compare \`--workers\` with 1 thread in the same run only.

${table}`;
    process.stdout.write(`${table}\n`);
    if (!values['no-write']) writeSection('Userspace data plane vs peers on loopback (bench/proxy.ts)', body);
  } finally {
    for (const p of procs) if (p.exitCode === null) p.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
