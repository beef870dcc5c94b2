/**
 * Descriptor exhaustion against tsvsd (userspace plane), #13 item 2's target: tsvsd runs
 * under `ulimit -n NOFILE` while this process opens CONNS idle TCP connections to one
 * service and FLOWS one-datagram UDP flows to another (each flow holds a socket in the
 * director for the 300 s UDP timeout). Then, while all of that is held: how long
 * `tsvsadm -Ln` takes, whether a third service still serves new HTTP connections, what
 * /metrics counted, and tsvsd's descriptors and RSS.
 *
 *   node --import tsx bench/limits.ts [--conns 10000] [--flows 10000] [--nofile 4096] [-- TSVSD ARGS...]
 *
 * Build dist first (`npx tsc -p tsconfig.build.json`): it runs dist/bin/tsvsd.js. Loopback
 * only; clients come from 127.0.0.2-127.0.0.41. Everything is stopped by PID at the end.
 */
import { spawn, spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { HttpControlClient } from '../src/api/client.js';
import type { Op, ServiceConfig } from '../src/core/types.js';
import { freePort, httpGet, startServer, type TestServer } from '../test/helper.js';

const dd = process.argv.indexOf('--');
const { values } = parseArgs({
  args: process.argv.slice(2, dd < 0 ? undefined : dd),
  options: {
    conns: { type: 'string', default: '10000' },
    flows: { type: 'string', default: '10000' },
    nofile: { type: 'string', default: '4096' },
  },
});
const CONNS = Number(values.conns);
const FLOWS = Number(values.flows);
const NOFILE = Number(values.nofile);
const extra = dd < 0 ? [] : process.argv.slice(dd + 1);
const ENTRY = (n: string) => resolve(import.meta.dirname, '..', 'dist', 'bin', `${n}.js`);
const src = (i: number) => `127.0.0.${2 + (Math.floor(i / 250) % 40)}`;

const service = (port: number, protocol: 'tcp' | 'udp' = 'tcp'): ServiceConfig => ({
  af: 4,
  protocol,
  addr: '127.0.0.1',
  port,
  fwmark: 0,
  scheduler: 'rr',
  schedFlags: 0,
  persistent: 0,
  netmask: 0xffffffff,
  ops: false,
  pe: '',
});
const addWith = (svc: ServiceConfig, rs: TestServer): Op[] => [
  { op: 'add-service', service: svc },
  { op: 'add-server', service: svc, dest: { af: 4, addr: rs.addr, port: rs.port, weight: 1, fwd: 'masq', uThreshold: 0, lThreshold: 0 } },
];

function procStats(pid: number): { fds: number; rssMb: number } {
  const rss = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return { fds: readdirSync(`/proc/${pid}/fd`).length, rssMb: Math.round(Number(rss?.[1] ?? 0) / 1024) };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'tsvs-bench-limits-'));
  const socket = join(dir, 'tsvsd.sock');
  const api = `127.0.0.1:${await freePort()}`;
  const echo = await startServer('echo', 'rs-a');
  const web = await startServer('http', 'rs-b');
  const udp = await startServer('udp', 'rs-u');
  const proc = spawn(
    'bash',
    ['-c', `ulimit -n ${NOFILE} && exec "$0" "$@"`, process.execPath, ENTRY('tsvsd'), '--socket', socket, '--api', api, ...extra],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  let logLines = 0;
  proc.stdout!.on('data', (d: Buffer) => (logLines += d.toString().split('\n').length - 1));
  const tcp: net.Socket[] = [];
  const udps: dgram.Socket[] = [];
  try {
    const client = new HttpControlClient({ socketPath: socket, timeoutMs: 10_000 });
    for (let i = 0; ; i++) {
      try {
        await client.info();
        break;
      } catch {
        if (i > 300) throw new Error('tsvsd did not start');
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    const [pa, pb, pu] = [await freePort(), await freePort(), await freePort()];
    await client.apply([...addWith(service(pa), echo), ...addWith(service(pb), web), ...addWith(service(pu, 'udp'), udp)]);
    const t0 = performance.now();
    // UDP first: FLOWS one-datagram flows, each from its own port (the socket here closes; the director's stays).
    // 100 at a time, paced: a burst larger than the service socket's receive buffer is dropped by the kernel.
    for (let i = 0; i < FLOWS; i += 100) {
      const batch = [];
      for (let j = i; j < Math.min(FLOWS, i + 100); j++) {
        const s = dgram.createSocket('udp4');
        s.on('error', () => {});
        batch.push(
          new Promise<void>((r) => s.bind({ address: src(j), port: 0 }, () => s.send('flow', pu, '127.0.0.1', () => r()))).then(() => s),
        );
      }
      for (const s of await Promise.all(batch)) udps.push(s);
      while (udps.length) udps.pop()!.close();
      await new Promise((r) => setTimeout(r, 10));
    }
    const tUdp = performance.now();
    // Then CONNS idle TCP connections, 250 at a time (the listen backlog is 511).
    for (let i = 0; i < CONNS; i += 250) {
      await Promise.all(
        Array.from(
          { length: Math.min(250, CONNS - i) },
          (_, k) =>
            new Promise<void>((r) => {
              const s = net.connect({ host: '127.0.0.1', port: pa, localAddress: src(i + k) });
              tcp.push(s);
              s.on('error', () => {});
              s.once('close', () => r());
              s.once('connect', () => setTimeout(r, 50));
            }),
        ),
      );
    }
    const tTcp = performance.now();
    await new Promise((r) => setTimeout(r, 1500));
    // Held open: connected and not reset by a limit since.
    const open = tcp.filter((s) => !s.destroyed).length;
    // Everything held: the control socket, another service, the metrics.
    const a0 = performance.now();
    const adm = spawnSync(process.execPath, [ENTRY('tsvsadm'), '-Ln'], {
      encoding: 'utf8',
      timeout: 30_000,
      env: { ...process.env, TSVS_SOCKET: socket },
    });
    const admMs = performance.now() - a0;
    let served = 0;
    let failed = 0;
    const h0 = performance.now();
    for (let i = 0; i < 100; i++) {
      try {
        if ((await httpGet('127.0.0.1', pb, { timeoutMs: 5000 })).server === 'rs-b') served++;
      } catch {
        failed++;
      }
    }
    const httpMs = (performance.now() - h0) / 100;
    const metrics = await (await fetch(`http://${api}/metrics`)).text();
    const pick = (re: RegExp) => metrics.split('\n').filter((l) => re.test(l));
    const stats = procStats(proc.pid!);
    const out = {
      nofile: NOFILE,
      args: extra.join(' ') || '(none)',
      udpFlowsSent: FLOWS,
      udpSeconds: ((tUdp - t0) / 1000).toFixed(1),
      tcpAttempted: CONNS,
      tcpHeldOpen: open,
      tcpRefused: CONNS - open,
      tcpSeconds: ((tTcp - tUdp) / 1000).toFixed(1),
      tsvsadmExit: adm.status,
      tsvsadmMs: Math.round(admMs),
      otherServiceServed: `${served}/100`,
      otherServiceFailed: failed,
      otherServiceMsPerRequest: httpMs.toFixed(1),
      tsvsdFds: stats.fds,
      tsvsdRssMb: stats.rssMb,
      tsvsdAlive: proc.exitCode === null,
      logLines,
      metrics: [
        ...pick(/^tsvs_limit_refused_total\{/),
        ...pick(/^tsvs_udp_flows_reaped_total /),
        ...pick(/^tsvs_dataplane_fds_/),
        ...pick(/^tsvs_connection_table_entries /),
      ],
    };
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  } finally {
    for (const s of tcp) s.destroy();
    if (proc.exitCode === null) proc.kill('SIGKILL');
    await Promise.all([echo.close(), web.close(), udp.close()]);
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
