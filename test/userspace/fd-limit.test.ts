/**
 * tsvsd (the built binary) under `ulimit -n 512` against more idle connections and UDP
 * flows than it has descriptors for (#13 item 2, at a test's scale; bench/limits.ts runs
 * the full 10,000 + 10,000 against `ulimit -n 4096`). What must hold: the daemon stays up,
 * tsvsadm answers on the control socket, another service keeps serving, and every refusal
 * shows in /metrics (tsvs_limit_refused_total) and in the log.
 *
 *   this process: 600 idle TCP clients -> VIP :A (echo)      tsvsd, ulimit -n 512
 *                 600 one-datagram UDP flows -> VIP :U
 *                 HTTP GET -> VIP :B, tsvsadm -Ln, GET /metrics
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { HttpControlClient } from '../../src/api/client.js';
import type { Op, ServiceConfig } from '../../src/core/types.js';
import { ENTRY } from '../daemon/spawn.js';
import { freePort, httpGet, startServer, waitFor, type TestServer } from '../helper.js';

const NOFILE = 512;
const CONNS = 600;
const FLOWS = 600;

interface Daemon {
  proc: ChildProcess;
  socket: string;
  api: string;
  client: HttpControlClient;
  logs(): string;
}

/** tsvsd under `ulimit -n NOFILE`, with its own socket; killed by PID when the test ends. */
async function startLimited(t: TestContext, args: string[]): Promise<Daemon> {
  const dir = mkdtempSync(join(tmpdir(), 'tsvs-fdlimit-'));
  const socket = join(dir, 'tsvsd.sock');
  const api = `127.0.0.1:${await freePort()}`;
  const proc = spawn(
    'bash',
    ['-c', `ulimit -n ${NOFILE} && exec "$0" "$@"`, process.execPath, ENTRY('tsvsd'), '--socket', socket, '--api', api, ...args],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  t.after(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  const client = new HttpControlClient({ socketPath: socket, timeoutMs: 5000 });
  await waitFor(
    () =>
      client.info().then(
        () => true,
        () => false,
      ),
    15_000,
    `tsvsd to start: ${out}`,
  );
  return { proc, socket, api, client, logs: () => out };
}

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

/** Opens `n` TCP connections from 127.0.0.2.. (100 per address) and leaves them idle; resolves when each is open or refused. */
async function idleConns(t: TestContext, port: number, n: number): Promise<net.Socket[]> {
  const socks: net.Socket[] = [];
  t.after(() => {
    for (const s of socks) s.destroy();
  });
  await Promise.all(
    Array.from(
      { length: n },
      (_, i) =>
        new Promise<void>((resolve) => {
          const s = net.connect({ host: '127.0.0.1', port, localAddress: `127.0.0.${2 + Math.floor(i / 100)}` });
          socks.push(s);
          s.on('error', () => resolve());
          s.on('close', () => resolve());
          // Connected: wait a moment for a reset (a refusal comes right after the accept).
          s.on('connect', () => setTimeout(resolve, 200));
        }),
    ),
  );
  return socks;
}

/** Sends one datagram from each of `n` sockets (one UDP flow each), and keeps them open. */
async function udpFlows(t: TestContext, port: number, n: number): Promise<void> {
  const socks: dgram.Socket[] = [];
  t.after(() => {
    for (const s of socks) s.close();
  });
  for (let i = 0; i < n; i++) {
    const s = dgram.createSocket('udp4');
    socks.push(s);
    s.on('error', () => {});
    await new Promise<void>((r) => s.bind({ address: `127.0.0.${2 + Math.floor(i / 100)}`, port: 0 }, () => r()));
    s.send('flow', port, '127.0.0.1');
  }
  await new Promise((r) => setTimeout(r, 300));
}

async function metric(d: Daemon, name: string, labels: Record<string, string>): Promise<number> {
  const text = await (await fetch(`http://${d.api}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) sum += Number(line.split(' ').pop());
  }
  return sum;
}

function tsvsadmList(d: Daemon): string {
  const r = spawnSync(process.execPath, [ENTRY('tsvsadm'), '-Ln'], {
    encoding: 'utf8',
    timeout: 10_000,
    env: { ...process.env, TSVS_SOCKET: d.socket },
  });
  assert.equal(r.status, 0, `tsvsadm -Ln: ${r.stderr}`);
  return r.stdout;
}

describe(`tsvsd under ulimit -n ${NOFILE}: ${CONNS} idle connections and ${FLOWS} UDP flows`, () => {
  test('with --max-conns-per-service: tsvsadm answers, another service serves, refusals counted', { timeout: 120_000 }, async (t) => {
    const echo = await startServer('echo', 'rs-a');
    const web = await startServer('http', 'rs-b');
    const udp = await startServer('udp', 'rs-u');
    t.after(() => Promise.all([echo.close(), web.close(), udp.close()]));
    const d = await startLimited(t, ['--max-conns-per-service', '100']);
    const [pa, pb, pu] = [await freePort(), await freePort(), await freePort()];
    await d.client.apply([...addWith(service(pa), echo), ...addWith(service(pb), web), ...addWith(service(pu, 'udp'), udp)]);
    await udpFlows(t, pu, FLOWS);
    const socks = await idleConns(t, pa, CONNS);
    assert.ok(socks.filter((s) => !s.destroyed).length <= 100, 'service A holds at most its limit');
    // The control socket answers, and service B serves.
    assert.match(tsvsadmList(d), new RegExp(`TCP  127\\.0\\.0\\.1:${pb} rr`));
    for (let i = 0; i < 5; i++) assert.equal((await httpGet('127.0.0.1', pb)).server, 'rs-b');
    assert.ok((await metric(d, 'tsvs_limit_refused_total', { limit: 'service', service: `TCP 127.0.0.1:${pa}` })) >= CONNS - 100);
    assert.ok((await metric(d, 'tsvs_limit_refused_total', { limit: 'service', service: `UDP 127.0.0.1:${pu}` })) >= FLOWS - 100);
    assert.match(d.logs(), /connection limit of the service reached/);
    assert.equal(d.proc.exitCode, null, 'tsvsd is still running');
  });

  test('with no limit but the fd reserve: the control socket still answers, refusals are counted as fd-reserve', {
    timeout: 120_000,
  }, async (t) => {
    const echo = await startServer('echo', 'rs-a');
    t.after(() => echo.close());
    const d = await startLimited(t, []);
    const pa = await freePort();
    await d.client.apply(addWith(service(pa), echo));
    await idleConns(t, pa, CONNS);
    assert.match(tsvsadmList(d), new RegExp(`TCP  127\\.0\\.0\\.1:${pa} rr`));
    assert.ok((await metric(d, 'tsvs_limit_refused_total', { limit: 'fd-reserve' })) > 0);
    assert.match(await (await fetch(`http://${d.api}/metrics`)).text(), new RegExp(`^tsvs_dataplane_fds_limit ${NOFILE}$`, 'm'));
    assert.match(d.logs(), /file descriptors nearly exhausted/);
    // The API (TCP) also still answers: it lives in the reserve too.
    assert.equal((await fetch(`http://${d.api}/metrics`)).status, 200);
  });
});
