/**
 * The userspace data plane against its peers on loopback, in one run: the direct path (no
 * load balancer), HAProxy (mode tcp) and nginx stream, each balancing over the same two
 * nginx real servers. wrk drives keep-alive and `Connection: close` HTTP; we report the
 * median requests/s of several interleaved rounds and the ratios to direct and to haproxy.
 *
 *   node --import tsx bench/proxy.ts [--duration 10] [--rounds 3] [--conns 64]
 *
 * Every load balancer runs one worker (haproxy nbthread 1, nginx worker_processes 1) so
 * they compete on equal terms with tsvsd's single Node thread; the machine has 2 cores
 * shared by wrk, the balancer and the real servers.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { cpus, tmpdir } from 'node:os';
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
    'no-write': { type: 'boolean', default: false },
  },
});
const DURATION = Number(values.duration);
const ROUNDS = Number(values.rounds);
const CONNS = Number(values.conns);
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

const wrkLocal = (port: number, close: boolean) =>
  wrk({ url: `http://127.0.0.1:${port}/`, close, conns: CONNS, durationS: DURATION });

async function main(): Promise<void> {
  for (const c of ['wrk', 'nginx', 'haproxy']) need(c, 'wrk haproxy nginx-light libnginx-mod-stream');
  const dir = mkdtempSync(join(tmpdir(), 'tsvs-bench-'));
  const procs: ChildProcess[] = [];
  try {
    const [rs1, rs2, hap, ngx, tsvs] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
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
    const sock = join(dir, 'tsvsd.sock');
    start(join(ROOT, 'node_modules', '.bin', 'tsvsd'), ['--socket', sock, '--log-level', 'warn']);
    for (const p of [rs1, rs2, hap, ngx]) await waitPort(p);
    const client = new HttpControlClient({ socketPath: sock });
    for (let i = 0; ; i++) {
      try {
        await client.info();
        break;
      } catch (e) {
        if (i > 200) throw e;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    const svc: ServiceConfig = { af: 4, protocol: 'tcp', addr: '127.0.0.1', port: tsvs, fwmark: 0, scheduler: 'rr', schedFlags: 0, persistent: 0, netmask: 0xffffffff, ops: false, pe: '' };
    await client.apply([
      { op: 'add-service', service: svc },
      ...[rs1, rs2].map((port) => ({ op: 'add-server' as const, service: svc, dest: { af: 4 as const, addr: '127.0.0.1', port, weight: 1, fwd: 'masq' as const, uThreshold: 0, lThreshold: 0 } })),
    ]);

    const variants: Array<[string, number]> = [
      ['direct (one real server)', rs1],
      ['tsvs userspace', tsvs],
      ['haproxy (tcp, 1 thread)', hap],
      ['nginx stream (1 worker)', ngx],
    ];
    const table = measure(
      variants.map(([name, port]) => ({ name, run: (close: boolean) => wrkLocal(port, close) })),
      ROUNDS,
      variants[0]![0],
      variants[2]![0],
    );
    const body = `Command: \`node --import tsx bench/proxy.ts --duration ${DURATION} --rounds ${ROUNDS} --conns ${CONNS}\`
(${new Date().toISOString().slice(0, 10)}, Node ${process.version}, ${cpus().length} cores shared by wrk, the balancer and the real servers).
wrk -t2 -c${CONNS} -d${DURATION}s against a 600-byte page; median of ${ROUNDS} interleaved rounds. Real servers: one nginx
(1 worker) with two listeners. Each balancer runs one worker/thread.

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
