/**
 * The userspace plane's connection limits (src/dataplane/userspace/limits.ts) with real
 * sockets: per client, per service (the service's own max_conns), director-wide, UDP flows
 * with the idle flow reaped first, and the descriptor reserve. Each refusal is reset (TCP)
 * or dropped (UDP), counted in counters().limitRefused and logged naming the service.
 */
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import type { LimitOptions } from '../../src/dataplane/userspace/limits.js';
import { openEcho, tcpOutcome, udpClient, waitFor, type EchoConn } from '../helper.js';
import { destOf, serviceOf } from '../dataplane/scenarios.js';
import { makeUserspaceHarness, type UserspaceHarness } from './harness.js';
import type { ServiceConfig } from '../../src/core/types.js';
import { parseYamlConfig } from '../../src/config/yaml/parse.js';
import { newTable } from '../table.js';

async function harness(t: TestContext, limits: LimitOptions): Promise<UserspaceHarness> {
  const h = await makeUserspaceHarness({ limits });
  t.after(() => h.close());
  return h;
}

/** An echo service on h's VIP (port `port`, default h.vport) with one real server. */
async function echoService(h: UserspaceHarness, over: Partial<ServiceConfig> = {}): Promise<ServiceConfig> {
  const [rs] = await h.makeRealServers('echo', [`rs-${over.port ?? h.vport}`]);
  const svc = serviceOf(h, { scheduler: 'rr', ...over });
  await h.apply([
    { op: 'add-service', service: svc },
    { op: 'add-server', service: svc, dest: destOf(h, rs!) },
  ]);
  return svc;
}

/** A connection refused at accept: reset, or closed before anything came back. */
async function refused(port: number, localAddress?: string): Promise<boolean> {
  const o = await tcpOutcome('127.0.0.1', port, { send: 'hello', end: true, ...(localAddress ? { localAddress } : {}) });
  return o.received.length === 0;
}

const rows = (h: UserspaceHarness) => h.plane.counters().limitRefused;

describe('userspace plane: connection limits', () => {
  test('per client: the connection over max_conns_per_client is reset, others clients still get in; counted and logged', async (t) => {
    const h = await harness(t, { maxConnsPerClient: 2 });
    await echoService(h);
    const held: EchoConn[] = [];
    t.after(() => {
      for (const c of held) c.destroy();
    });
    for (let i = 0; i < 2; i++) held.push(await openEcho(h.vip, h.vport, { localAddress: '127.0.0.2' }));
    assert.ok(await refused(h.vport, '127.0.0.2'), 'third from 127.0.0.2 refused');
    held.push(await openEcho(h.vip, h.vport, { localAddress: '127.0.0.3' }));
    assert.equal(String(await held[0]!.echo('still')), 'still');
    const label = `TCP 127.0.0.1:${h.vport}`;
    assert.deepEqual(rows(h), [{ service: label, limit: 'client', count: 1 }]);
    assert.ok(
      h.logs.some((l) => l.level === 'warn' && l.msg.startsWith(`${label}: client's connection limit reached`)),
      'logged',
    );
    // A closed connection gives its slot back.
    await held[0]!.end();
    await waitFor(() => h.plane.openConnections() === 2, 5000, 'the slot to be released');
    held.push(await openEcho(h.vip, h.vport, { localAddress: '127.0.0.2' }));
  });

  test("per service: the service's own maxConns; director-wide --max-conns over two services", async (t) => {
    const h = await harness(t, { maxConns: 3 });
    await echoService(h, { maxConns: 2 });
    const other = h.vport + 1;
    await echoService(h, { port: other });
    const held: EchoConn[] = [];
    t.after(() => {
      for (const c of held) c.destroy();
    });
    for (let i = 0; i < 2; i++) held.push(await openEcho(h.vip, h.vport));
    assert.ok(await refused(h.vport), 'third on the first service refused by its maxConns');
    held.push(await openEcho(h.vip, other));
    assert.ok(await refused(other), 'fourth overall refused by --max-conns');
    assert.deepEqual(
      rows(h).map((r) => `${r.service} ${r.limit} ${r.count}`),
      [`TCP 127.0.0.1:${h.vport} service 1`, `TCP 127.0.0.1:${other} global 1`],
    );
  });

  test('UDP flows: over --max-udp-flows the flow idle longest is reaped; with none idle, the datagram is dropped', async (t) => {
    const h = await harness(t, { maxUdpFlows: 2 });
    const [rs] = await h.makeRealServers('udp', ['rs-u']);
    const svc = serviceOf(h, { protocol: 'udp', scheduler: 'rr' });
    await h.apply([
      { op: 'add-service', service: svc },
      { op: 'add-server', service: svc, dest: destOf(h, rs!) },
    ]);
    const clients = await Promise.all([0, 1, 2, 3].map(() => udpClient(h.vip, h.vport)));
    t.after(() => {
      for (const c of clients) c.close();
    });
    assert.equal((await clients[0]!.ask('a')).server, 'rs-u');
    assert.equal((await clients[1]!.ask('b')).server, 'rs-u');
    // Both flows active just now: the third client's datagram is dropped.
    await assert.rejects(clients[2]!.ask('c', 400));
    assert.deepEqual(rows(h), [{ service: `UDP 127.0.0.1:${h.vport}`, limit: 'udp-flows', count: 1 }]);
    // Two seconds later (the coarse clock follows), both are idle: the oldest goes for a new one.
    h.advance(2000);
    await new Promise((r) => setTimeout(r, 400));
    assert.equal((await clients[2]!.ask('c again')).server, 'rs-u');
    assert.equal(h.plane.counters().udpFlowsReaped, 1);
    assert.equal(h.table.connView().filter((c) => c.protocol === 'UDP').length, 2, 'the reaped flow left the table');
  });

  test('descriptor reserve: new clients are refused once open fds reach the limit minus the reserve', async (t) => {
    const probe = await makeUserspaceHarness();
    const counted = probe.plane.counters().fds.open;
    await probe.close();
    // A limit 40 descriptors above what the process holds, 20 of them reserved: room for
    // about 10 relayed connections (2 descriptors each), whatever else the test runner holds.
    const h = await harness(t, { fdLimit: counted + 40, fdReserve: 20 });
    await echoService(h);
    const held: EchoConn[] = [];
    t.after(() => {
      for (const c of held) c.destroy();
    });
    let refusedAt = -1;
    for (let i = 0; i < 30 && refusedAt < 0; i++) {
      if (await refused(h.vport)) refusedAt = i;
      else held.push(await openEcho(h.vip, h.vport));
    }
    assert.ok(refusedAt > 0 && refusedAt <= 12, `refused after ${refusedAt} connections`);
    assert.deepEqual(
      rows(h).map((r) => r.limit),
      ['fd-reserve'],
    );
    assert.ok(h.logs.some((l) => /file descriptors nearly exhausted/.test(l.msg)));
    // The connections already open keep working.
    assert.equal(String(await held[0]!.echo('ok')), 'ok');
  });
});

describe('per-service limits: where they are set', () => {
  test('YAML max_conns / max_conns_per_client reach the service; out-of-range values are refused by name', () => {
    const yaml = (extra: string) =>
      `services:\n  - address: 127.0.0.1\n    port: 80\n${extra}    real_servers: [{ address: 127.0.0.1, port: 8080 }]\n`;
    const cfg = parseYamlConfig(yaml('    max_conns: 500\n    max_conns_per_client: 20\n'), 'limits.yaml');
    assert.equal(cfg.services[0]!.maxConns, 500);
    assert.equal(cfg.services[0]!.maxConnsPerClient, 20);
    assert.throws(() => parseYamlConfig(yaml('    max_conns: -1\n'), 'bad.yaml'), /max_conns/);
  });

  test('the API: maxConns is checked, kept in the service, and an edit without it leaves it', () => {
    const table = newTable();
    const svc: ServiceConfig = { ...serviceOf({ vip: '127.0.0.1', vport: 80 } as never), maxConns: 5 };
    assert.throws(
      () => table.validate([{ op: 'add-service', service: { ...svc, maxConns: -5 } }]),
      /TCP 127\.0\.0\.1:80: maxConns -5 must be an integer 0\.\.2147483647/,
    );
    table.applyAll(table.validate([{ op: 'add-service', service: svc }]));
    assert.equal(table.list()[0]!.config().maxConns, 5);
    const { maxConns: _, ...withoutLimit } = svc;
    table.applyAll(table.validate([{ op: 'edit-service', service: { ...withoutLimit, scheduler: 'rr' } }]));
    assert.equal(table.list()[0]!.maxConns, 5, 'absent in an edit: unchanged');
    table.applyAll(table.validate([{ op: 'edit-service', service: { ...svc, maxConns: 0 } }]));
    assert.equal(table.list()[0]!.config().maxConns, undefined, '0: back to the tsvsd default');
  });
});
