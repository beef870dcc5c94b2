/**
 * The userspace data plane: the conformance scenarios, then what is particular to a proxy
 * (binding, refusals, drain, integrity under backpressure, IPv6).
 *
 * Everything runs in this process on loopback: a real IpvsTable whose clock can be moved
 * forward (to expire entries without waiting), the plane, and test servers on port 0.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { describe, test, type TestContext } from 'node:test';
import { formatAddrPort } from '../../src/core/addr.js';
import { isTsvsError, type TsvsError } from '../../src/core/errors.js';
import { newTable } from '../table.js';
import type { Op } from '../../src/core/types.js';
import { UserspaceDataPlane } from '../../src/dataplane/userspace/index.js';
import {
  echoTransfer,
  freePort,
  httpGet,
  newEchoConnections,
  newHttpConnections,
  openEcho,
  sha256,
  socketClosed,
  startServer,
  tcpOutcome,
  udpClient,
  waitFor,
  type TestServer,
} from '../helper.js';
import { makeUserspaceHarness, type UserspaceHarness } from '../userspace/harness.js';
import { destOf, runDataPlaneScenarios, serviceOf, type Harness } from './scenarios.js';

runDataPlaneScenarios('userspace', () => makeUserspaceHarness(), { redispatch: true });

/** A harness closed when the test ends. */
async function harness(t: TestContext, opts: Parameters<typeof makeUserspaceHarness>[0] = {}): Promise<UserspaceHarness> {
  const h = await makeUserspaceHarness(opts);
  t.after(() => h.close());
  return h;
}

async function rejection(p: Promise<unknown>): Promise<TsvsError> {
  try {
    await p;
  } catch (e) {
    assert.ok(isTsvsError(e), `a TsvsError, got ${String(e)}`);
    return e;
  }
  assert.fail('expected a rejection');
}

/** Whether `port` on `host` can be bound right now (i.e. nobody holds it). */
function canBind(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen({ host, port, exclusive: true }, () => s.close(() => resolve(true)));
  });
}

describe('userspace data plane: binding and refusals', { timeout: 30_000 }, () => {
  test('a VIP that is not a local address is refused with a clear message; the table is unchanged', async (t) => {
    const h = await harness(t);
    const vip = '198.18.0.1';
    const e = await rejection(h.apply([{ op: 'add-service', service: { ...serviceOf(h), addr: vip, port: 80 } }]));
    assert.equal(e.code, 'DATAPLANE');
    assert.match(e.message, /Cannot bind 198\.18\.0\.1:80: the address is not on this host/);
    assert.match(e.message, /ip addr add 198\.18\.0\.1\/32 dev lo/);
    assert.match(e.message, /nftables data plane/);
    assert.match(e.detail, /TCP 198\.18\.0\.1:80/);
    assert.equal(h.table.list().length, 0);
  });

  test('one failed bind refuses the whole batch and releases the sockets it bound', async (t) => {
    const h = await harness(t);
    const ops: Op[] = [
      { op: 'add-service', service: serviceOf(h) },
      { op: 'add-service', service: serviceOf(h, { protocol: 'udp' }) },
      { op: 'add-service', service: { ...serviceOf(h), addr: '198.18.0.1', port: 80 } },
    ];
    assert.equal((await rejection(h.apply(ops))).code, 'DATAPLANE');
    assert.equal(h.table.list().length, 0);
    assert.equal(await canBind(h.vip, h.vport), true, 'the TCP port was released');
    // And the same services without the bad one go through.
    await h.apply(ops.slice(0, 2));
    assert.equal(h.table.list().length, 2);
  });

  test('a port in use is refused with its own message', async (t) => {
    const h = await harness(t);
    const holder = net.createServer();
    await new Promise<void>((r) => holder.listen({ host: h.vip, port: h.vport }, () => r()));
    t.after(() => holder.close());
    const e = await rejection(h.apply([{ op: 'add-service', service: serviceOf(h) }]));
    assert.equal(e.code, 'DATAPLANE');
    assert.match(e.message, new RegExp(`Cannot bind TCP 127\\.0\\.0\\.1:${h.vport}: the port is already in use`));
    assert.equal(h.table.list().length, 0);
  });

  test('route and tunnel real servers, fwmark and port-zero services are refused', async (t) => {
    const h = await harness(t);
    const svc = serviceOf(h);
    await h.apply([{ op: 'add-service', service: svc }]);
    const rs = { addr: '127.0.0.1', port: 9 } as TestServer;
    const route = await rejection(h.apply([{ op: 'add-server', service: svc, dest: destOf(h, rs, { fwd: 'route' }) }]));
    assert.equal(route.code, 'NOT_SUPPORTED');
    assert.match(route.message, /Forwarding method Route \(-g\) is not supported by the userspace data plane; use -m \(masquerading\)/);
    assert.match(route.message, /--dataplane nftables/);
    assert.match(route.detail, new RegExp(`TCP 127\\.0\\.0\\.1:${h.vport} real server 127\\.0\\.0\\.1:9`));
    const tun = await rejection(h.apply([{ op: 'add-server', service: svc, dest: destOf(h, rs, { fwd: 'tunnel' }) }]));
    assert.match(tun.message, /Tunnel \(-i\)/);
    // A masq server can be added, but not edited to route.
    await h.apply([{ op: 'add-server', service: svc, dest: destOf(h, rs) }]);
    const edit = await rejection(h.apply([{ op: 'edit-server', service: svc, dest: destOf(h, rs, { fwd: 'route' }) }]));
    assert.equal(edit.code, 'NOT_SUPPORTED');
    assert.equal(h.table.list()[0]!.dests[0]!.fwd, 'masq');

    const fwm = await rejection(h.apply([{ op: 'add-service', service: { ...serviceOf(h), fwmark: 7 } }]));
    assert.equal(fwm.code, 'NOT_SUPPORTED');
    assert.match(fwm.message, /Firewall-mark services/);
    const port0 = await rejection(h.apply([{ op: 'add-service', service: serviceOf(h, { port: 0, persistent: 60 }) }]));
    assert.equal(port0.code, 'NOT_SUPPORTED');
    assert.match(port0.message, /Port-zero services/);
    assert.equal(h.table.list().length, 1);
  });

  test('start() binds restored services, and refuses a restored VIP that is not local', async (t) => {
    const [rs] = [await startServer('http', 'restored')];
    t.after(() => rs!.close());
    const port = await freePort();
    const table = newTable();
    const svc = { ...serviceOf({ vip: '127.0.0.1', vport: port } as Harness) };
    table.applyAll([
      { op: 'add-service', service: svc },
      {
        op: 'add-server',
        service: svc,
        dest: { af: 4, addr: rs!.addr, port: rs!.port, weight: 1, fwd: 'masq', uThreshold: 0, lThreshold: 0 },
      },
    ]);
    const h = await harness(t, { table });
    assert.deepEqual(await newHttpConnections(2, '127.0.0.1', port), ['restored', 'restored']);
    assert.ok(h.table.list().length === 1);

    const bad = newTable();
    bad.applyAll([{ op: 'add-service', service: { ...svc, addr: '198.18.0.1', port: 80 } }]);
    const plane = new UserspaceDataPlane();
    const e = await rejection(plane.start(bad));
    assert.equal(e.code, 'DATAPLANE');
    assert.match(e.message, /198\.18\.0\.1:80: the address is not on this host/);
  });
});

describe('userspace data plane: following the table', { timeout: 30_000 }, () => {
  test('flush and re-add of the same service in one batch (-C then -R) keeps it working', async (t) => {
    const h = await harness(t);
    const [a, b] = await h.makeRealServers('http', ['rs-a', 'rs-b']);
    const svc = serviceOf(h);
    const udp = serviceOf(h, { protocol: 'udp' });
    const ops: Op[] = [
      { op: 'add-service', service: svc },
      { op: 'add-server', service: svc, dest: destOf(h, a!) },
      { op: 'add-server', service: svc, dest: destOf(h, b!) },
      { op: 'add-service', service: udp },
    ];
    await h.apply(ops);
    assert.deepEqual(await newHttpConnections(2, h.vip, h.vport), ['rs-b', 'rs-a']);
    await h.apply([{ op: 'flush' }, ...ops]);
    assert.equal(h.table.list().length, 2);
    assert.deepEqual(await newHttpConnections(2, h.vip, h.vport), ['rs-b', 'rs-a']);
    // delete-service then add-service of the same key, also in one batch.
    await h.apply([{ op: 'delete-service', service: svc }, ...ops.slice(0, 3)]);
    assert.deepEqual(await newHttpConnections(1, h.vip, h.vport), ['rs-b']);
    // And in separate batches.
    await h.apply([{ op: 'delete-service', service: svc }]);
    assert.equal((await tcpOutcome(h.vip, h.vport)).error, 'ECONNREFUSED', 'a deleted service no longer listens');
    await h.apply(ops.slice(0, 3));
    assert.deepEqual(await newHttpConnections(1, h.vip, h.vport), ['rs-b']);
  });

  test('a batch refused by the table after prepare releases the prepared socket', async (t) => {
    const h = await harness(t);
    const ops: Op[] = [{ op: 'add-service', service: serviceOf(h) }];
    const norm = h.table.validate(ops);
    await h.plane.prepare(norm);
    assert.equal(await canBind(h.vip, h.vport), false, 'bound by prepare');
    h.plane.abort(norm);
    assert.equal(await canBind(h.vip, h.vport), true, 'released by abort');
    assert.equal(h.table.list().length, 0);
  });

  test('deleting a service closes its open connections; deleting a server resets its connections and removes their entries', async (t) => {
    const h = await harness(t);
    const [a, b] = await h.makeRealServers('echo', ['rs-a', 'rs-b']);
    const svc = serviceOf(h);
    await h.apply([
      { op: 'add-service', service: svc },
      { op: 'add-server', service: svc, dest: destOf(h, a!) },
      { op: 'add-server', service: svc, dest: destOf(h, b!) },
    ]);
    const onB = await openEcho(h.vip, h.vport);
    const onA = await openEcho(h.vip, h.vport);
    t.after(() => {
      onA.destroy();
      onB.destroy();
    });
    assert.deepEqual([onB.server, onA.server], ['rs-b', 'rs-a']);
    await h.apply([{ op: 'delete-server', service: svc, dest: { af: 4, addr: b!.addr, port: b!.port } }]);
    await socketClosed(onB.socket);
    assert.equal((await onA.echo('unaffected')).toString(), 'unaffected');
    const entries = h.table.connView().filter((c) => !c.template);
    assert.deepEqual(
      entries.map((c) => c.dport),
      [a!.port],
      "the removed server's entry is gone at once",
    );
    await waitFor(() => b!.connections() === 0, 5000, 'rs-b to see its connection closed');

    await h.apply([{ op: 'delete-service', service: svc }]);
    await socketClosed(onA.socket);
    assert.equal(h.plane.openConnections(), 0);
  });

  test('an idle connection past the tcp timeout is closed when its entry expires', async (t) => {
    const h = await harness(t);
    const [a] = await h.makeRealServers('echo', ['rs-a']);
    const svc = serviceOf(h);
    await h.apply([
      { op: 'add-service', service: svc },
      { op: 'add-server', service: svc, dest: destOf(h, a!) },
    ]);
    const c = await openEcho(h.vip, h.vport);
    t.after(() => c.destroy());
    assert.equal((await c.echo('x')).toString(), 'x');
    assert.deepEqual(
      h.table.connView().map((e) => e.state),
      ['ESTABLISHED'],
    );
    assert.equal(h.table.view().services[0]!.dests[0]!.activeconns, 1);
    h.advance(901_000);
    await socketClosed(c.socket);
    assert.equal(h.table.connView().length, 0);
    await waitFor(() => a!.connections() === 0, 5000, 'the server side closed too');
  });

  test('no destination: the client is reset and the refusal counted (TCP and UDP)', async (t) => {
    const h = await harness(t);
    await h.apply([
      { op: 'add-service', service: serviceOf(h) },
      { op: 'add-service', service: serviceOf(h, { protocol: 'udp' }) },
    ]);
    const out = await tcpOutcome(h.vip, h.vport, { send: 'hello' });
    assert.equal(out.received.length, 0);
    assert.equal(out.error, 'ECONNRESET');
    const u = await udpClient(h.vip, h.vport);
    t.after(() => u.close());
    await assert.rejects(u.ask('anyone?', 300), /no UDP reply/);
    assert.equal(h.plane.counters().noDestination, 2);
    assert.ok(h.logs.some((l) => l.level === 'warn' && /no destination available/.test(l.msg)));
  });

  test('a real server that does not answer: the client is reset after the connect timeout, counted', async (t) => {
    // Without redispatch (--redispatch-retries 0): redispatch.test.ts covers the retry.
    const h = await harness(t, { connectTimeoutMs: 300, redispatchRetries: 0 });
    // A listener with a full accept queue never answers a SYN: the kernel drops it.
    const py = spawn(
      'python3',
      [
        '-c',
        "import socket,time\ns=socket.socket()\ns.bind(('127.0.0.1',0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(60)",
      ],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    t.after(() => py.kill());
    const port = await new Promise<number | null>((resolve) => {
      py.once('error', () => resolve(null));
      py.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
    });
    if (port === null) {
      t.skip('python3 is not available to hold a silent listener');
      return;
    }
    const filler = net.connect({ host: '127.0.0.1', port });
    t.after(() => filler.destroy());
    await new Promise((r) => filler.once('connect', r));
    const [live] = await h.makeRealServers('http', ['rs-live']);
    const svc = serviceOf(h);
    const silent = { addr: '127.0.0.1', port } as TestServer;
    await h.apply([
      { op: 'add-service', service: svc },
      { op: 'add-server', service: svc, dest: destOf(h, live!) },
      { op: 'add-server', service: svc, dest: destOf(h, silent) },
    ]);
    const out = await tcpOutcome(h.vip, h.vport, { send: 'GET / HTTP/1.0\r\n\r\n' });
    assert.equal(out.received.length, 0);
    assert.equal(out.error, 'ECONNRESET');
    assert.equal(h.plane.counters().connectFailures[`127.0.0.1:${port}`], 1);
    assert.deepEqual(await newHttpConnections(1, h.vip, h.vport), ['rs-live']);
    const entry = h.table.connView().find((c) => c.dport === port);
    assert.equal(entry?.state, 'CLOSE', 'the failed connection counts as refused by the server');
  });
});

describe('userspace data plane: traffic', { timeout: 60_000 }, () => {
  test('20 MB echoed through the proxy arrives intact, with exact byte counts', async (t) => {
    const h = await harness(t);
    const [a] = await h.makeRealServers('echo', ['rs-a']);
    const svc = serviceOf(h);
    await h.apply([
      { op: 'add-service', service: svc },
      { op: 'add-server', service: svc, dest: destOf(h, a!) },
    ]);
    const data = randomBytes(20 * 1024 * 1024);
    const { server, echoed } = await echoTransfer(h.vip, h.vport, data);
    assert.equal(server, 'rs-a');
    assert.equal(echoed.length, data.length);
    assert.equal(sha256(echoed), sha256(data));
    const stats = h.table.view().services[0]!.stats;
    assert.equal(stats.inbytes, data.length);
    assert.equal(stats.outbytes, data.length + 'rs-a\n'.length);
  });

  test('IPv6: TCP and UDP on [::1]', async (t) => {
    const h = await harness(t, { vip: '::1' });
    const [a, b] = await h.makeRealServers('http', ['rs6-a', 'rs6-b']);
    const [ua, ub] = await h.makeRealServers('udp', ['u6-a', 'u6-b']);
    const svc = serviceOf(h);
    const usvc = serviceOf(h, { protocol: 'udp' });
    await h.apply([
      { op: 'add-service', service: svc },
      { op: 'add-server', service: svc, dest: destOf(h, a!) },
      { op: 'add-server', service: svc, dest: destOf(h, b!) },
      { op: 'add-service', service: usvc },
      { op: 'add-server', service: usvc, dest: destOf(h, ua!) },
      { op: 'add-server', service: usvc, dest: destOf(h, ub!) },
    ]);
    assert.deepEqual(await newHttpConnections(4, '::1', h.vport), ['rs6-b', 'rs6-a', 'rs6-b', 'rs6-a']);
    const conns = h.table.connView();
    assert.ok(
      conns.every((c) => c.af === 6 && c.caddr === '::1'),
      JSON.stringify(conns[0]),
    );
    const u1 = await udpClient('::1', h.vport);
    const u2 = await udpClient('::1', h.vport);
    t.after(() => {
      u1.close();
      u2.close();
    });
    const r = [await u1.ask('one'), await u1.ask('two'), await u2.ask('three')];
    assert.deepEqual(r, [
      { server: 'u6-b', payload: 'one' },
      { server: 'u6-b', payload: 'two' },
      { server: 'u6-a', payload: 'three' },
    ]);
    assert.equal(formatAddrPort(h.table.list()[0]!.addr, h.vport), `[::1]:${h.vport}`);
  });

  test('stop(drain) stops accepting, lets an open connection finish, then returns', async (t) => {
    const h = await harness(t);
    const [a] = await h.makeRealServers('echo', ['rs-a']);
    const svc = serviceOf(h);
    await h.apply([
      { op: 'add-service', service: svc },
      { op: 'add-server', service: svc, dest: destOf(h, a!) },
    ]);
    const c = await openEcho(h.vip, h.vport);
    t.after(() => c.destroy());
    let stopped = false;
    const stopping = h.plane.stop(30_000).then(() => {
      stopped = true;
    });
    assert.equal((await tcpOutcome(h.vip, h.vport)).error, 'ECONNREFUSED', 'no new connections while draining');
    assert.equal((await c.echo('during drain')).toString(), 'during drain');
    assert.equal(stopped, false, 'stop waits for the open connection');
    await c.end();
    await waitFor(() => stopped, 5000, 'stop() to return once the connection closed');
    await stopping;
    assert.equal(h.plane.openConnections(), 0);
  });

  test('stop(drain) cuts what is still open when the drain time is over', async (t) => {
    const h = await harness(t);
    const [a] = await h.makeRealServers('echo', ['rs-a']);
    const svc = serviceOf(h);
    await h.apply([
      { op: 'add-service', service: svc },
      { op: 'add-server', service: svc, dest: destOf(h, a!) },
    ]);
    const c = await openEcho(h.vip, h.vport);
    t.after(() => c.destroy());
    await h.plane.stop(100);
    await socketClosed(c.socket);
  });

  test('connection entries follow the sockets: ESTABLISHED while open, TIME_WAIT after', async (t) => {
    const h = await harness(t);
    const [a] = await h.makeRealServers('echo', ['rs-a']);
    const svc = serviceOf(h);
    await h.apply([
      { op: 'add-service', service: svc },
      { op: 'add-server', service: svc, dest: destOf(h, a!) },
    ]);
    const c = await openEcho(h.vip, h.vport, { localAddress: '127.0.0.2' });
    t.after(() => c.destroy());
    const [e] = h.table.connView();
    assert.equal(e!.state, 'ESTABLISHED');
    assert.equal(e!.caddr, '127.0.0.2');
    assert.equal(e!.cport, c.socket.localPort);
    assert.deepEqual([e!.vaddr, e!.vport, e!.daddr, e!.dport], [h.vip, h.vport, a!.addr, a!.port]);
    await c.end();
    await waitFor(() => h.table.connView()[0]?.state === 'TIME_WAIT', 5000, 'TIME_WAIT');
    const d = h.table.view().services[0]!.dests[0]!;
    assert.deepEqual([d.activeconns, d.inactconns], [0, 1]);
    await newEchoConnections(2, h.vip, h.vport);
    assert.equal(h.table.view().services[0]!.dests[0]!.inactconns, 3);
  });

  test('plain HTTP through the proxy serves the shared content', async (t) => {
    const h = await harness(t);
    const [a] = await h.makeRealServers('http', ['rs-a']);
    const svc = serviceOf(h);
    await h.apply([
      { op: 'add-service', service: svc },
      { op: 'add-server', service: svc, dest: destOf(h, a!) },
    ]);
    const r = await httpGet(h.vip, h.vport, { path: '/bytes/1000000' });
    assert.equal(r.status, 200);
    assert.equal(r.body.length, 1_000_000);
  });
});
