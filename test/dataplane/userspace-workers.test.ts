/**
 * The userspace plane with worker threads (tsvsd --workers 2): the conformance scenarios,
 * then what workers add. The kernel spreads connections over the workers' SO_REUSEPORT
 * listeners; the one scheduler in the main thread still sees all of them (lc across
 * workers), and a stop drains the connections every worker carries.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, test, type TestContext } from 'node:test';
import { isTsvsError } from '../../src/core/errors.js';
import { UserspaceDataPlane } from '../../src/dataplane/userspace/index.js';
import { httpGet, openEcho, udpClient, waitFor, type EchoConn } from '../helper.js';
import { makeUserspaceHarness, type UserspaceHarness } from '../userspace/harness.js';
import { destOf, runDataPlaneScenarios, serviceOf } from './scenarios.js';

runDataPlaneScenarios('userspace --workers 2', () => makeUserspaceHarness({ workers: 2 }), { redispatch: true });

async function harness(t: TestContext): Promise<UserspaceHarness> {
  const h = await makeUserspaceHarness({ workers: 2 });
  t.after(() => h.close());
  return h;
}

/** Whether a connect to host:port is refused (a connection that is accepted is closed at once). */
function refused(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED'));
  });
}

describe('userspace data plane: worker threads', () => {
  test('new connections are spread over both workers and answered by the scheduled servers', async (t) => {
    const h = await harness(t);
    const rs = await h.makeRealServers('http', ['a', 'b']);
    const svc = serviceOf(h, { scheduler: 'rr' });
    await h.apply([
      { op: 'add-service', service: svc },
      ...rs.map((r) => ({ op: 'add-server' as const, service: svc, dest: destOf(h, r) })),
    ]);
    const who: string[] = [];
    // Distinct source ports: the kernel hashes the 4-tuple to pick a listener.
    for (let i = 0; i < 40; i++) who.push((await httpGet(h.vip, h.vport)).server);
    const per = h.plane.workerAccepts()!;
    assert.equal(per.length, 2);
    assert.equal(per[0]! + per[1]!, 40);
    assert.ok(per[0]! > 0 && per[1]! > 0, `both workers took connections: ${per.join(' / ')}`);
    // rr over the one scheduler: strict alternation whatever worker took the client.
    for (let i = 1; i < who.length; i++) assert.notEqual(who[i], who[i - 1]);
  });

  test('lc counts the connections of every worker: a new server gets every new client until it catches up', async (t) => {
    const h = await harness(t);
    const [a, b] = await h.makeRealServers('echo', ['a', 'b']);
    const svc = serviceOf(h, { scheduler: 'lc' });
    await h.apply([
      { op: 'add-service', service: svc },
      { op: 'add-server', service: svc, dest: destOf(h, a!) },
    ]);
    const held: EchoConn[] = [];
    for (let i = 0; i < 6; i++) held.push(await openEcho(h.vip, h.vport));
    t.after(() => Promise.all(held.map((c) => c.end())));
    await h.apply([{ op: 'add-server', service: svc, dest: destOf(h, b!) }]);
    for (let i = 0; i < 6; i++) held.push(await openEcho(h.vip, h.vport));
    assert.deepEqual(
      held.map((c) => c.server),
      ['a', 'a', 'a', 'a', 'a', 'a', 'b', 'b', 'b', 'b', 'b', 'b'],
    );
    const per = h.plane.workerAccepts()!;
    assert.ok(per[0]! > 0 && per[1]! > 0, `the 12 clients went through both workers: ${per.join(' / ')}`);
    const dests = (await h.view()).services[0]!.dests;
    assert.deepEqual(
      dests.map((d) => [d.port, d.activeconns]).sort(),
      [
        [a!.port, 6],
        [b!.port, 6],
      ].sort(),
    );
    assert.equal(h.plane.openConnections(), 12);
  });

  test('stop drains: connections on both workers finish, new clients are refused, then the workers end', async (t) => {
    const h = await makeUserspaceHarness({ workers: 2 });
    let closed = false;
    t.after(async () => {
      if (!closed) await h.close();
    });
    const [rs] = await h.makeRealServers('echo', ['a']);
    const svc = serviceOf(h, { scheduler: 'rr' });
    await h.apply([
      { op: 'add-service', service: svc },
      { op: 'add-server', service: svc, dest: destOf(h, rs!) },
    ]);
    const held: EchoConn[] = [];
    for (let i = 0; i < 8; i++) held.push(await openEcho(h.vip, h.vport));
    const per = h.plane.workerAccepts()!;
    assert.ok(per[0]! > 0 && per[1]! > 0, `held connections on both workers: ${per.join(' / ')}`);
    let stopped = false;
    const stopping = h.plane.stop(10_000).then(() => (stopped = true));
    await waitFor(() => refused(h.vip, h.vport), 2000, 'the listeners of both workers to close');
    // Still relaying: every held connection echoes.
    for (const c of held) assert.equal(String(await c.echo('still here')), 'still here');
    assert.equal(stopped, false);
    for (const c of held.slice(0, 7)) await c.end();
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(stopped, false, 'one connection is still open');
    await held[7]!.end();
    await stopping;
    closed = true;
    await h.close();
  });

  test('a port in use refuses the batch with the bind message, and nothing is left listening', async (t) => {
    const h = await harness(t);
    const taken = net.createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    t.after(() => taken.close());
    const port = (taken.address() as net.AddressInfo).port;
    const svc = { ...serviceOf(h), port };
    await assert.rejects(
      h.apply([{ op: 'add-service', service: svc }]),
      (e: unknown) => isTsvsError(e) && /port is already in use/.test(e.message),
    );
    assert.equal(h.table.list().length, 0);
  });

  test('UDP services stay in the main thread and work alongside', async (t) => {
    const h = await harness(t);
    const [u] = await h.makeRealServers('udp', ['u']);
    const svc = serviceOf(h, { protocol: 'udp' });
    await h.apply([
      { op: 'add-service', service: svc },
      { op: 'add-server', service: svc, dest: destOf(h, u!) },
    ]);
    const c = await udpClient(h.vip, h.vport);
    t.after(() => c.close());
    assert.equal((await c.ask('ping')).server, 'u');
  });

  test('a bad worker count is refused', () => {
    assert.throws(() => new UserspaceDataPlane({ workers: 0 }), /--workers must be a whole number from 1 to 256/);
    assert.throws(() => new UserspaceDataPlane({ workers: 1.5 }), /--workers/);
  });
});
