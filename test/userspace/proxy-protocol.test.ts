/**
 * PROXY protocol toward real servers through the userspace plane, in one thread and with
 * workers: the real server reads the header and finds the client's address and port and
 * the VIP in it, before the client's own bytes (which arrive unchanged); UDP services get
 * a v2 DGRAM header in front of every datagram; what cannot work is refused by name.
 */
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { isTsvsError } from '../../src/core/errors.js';
import type { Op, ServiceConfig } from '../../src/core/types.js';
import { udpClient, waitFor } from '../helper.js';
import { destOf, serviceOf } from '../dataplane/scenarios.js';
import { makeUserspaceHarness, type UserspaceHarness } from './harness.js';
import { startPpTcpServer, startPpUdpServer, tcpExchange, type PpServer } from './ppserver.js';

async function harness(t: TestContext, workers: number): Promise<UserspaceHarness> {
  const h = await makeUserspaceHarness({ workers });
  t.after(() => h.close());
  return h;
}

async function serve(
  t: TestContext,
  h: UserspaceHarness,
  pp: ServiceConfig['proxyProtocol'],
  kind: 'tcp' | 'udp' = 'tcp',
): Promise<{ svc: ServiceConfig; rs: PpServer }> {
  const rs = kind === 'tcp' ? await startPpTcpServer() : await startPpUdpServer();
  t.after(() => rs.close());
  const svc = { ...serviceOf(h, { scheduler: 'rr', protocol: kind }), ...(pp ? { proxyProtocol: pp } : {}) };
  const dest = { ...destOf(h, { addr: '127.0.0.1', port: rs.port } as never) };
  await h.apply([
    { op: 'add-service', service: svc },
    { op: 'add-server', service: svc, dest },
  ]);
  return { svc, rs };
}

for (const workers of [1, 2]) {
  describe(`PROXY protocol through the userspace plane (workers ${workers})`, () => {
    for (const v of ['v1', 'v2'] as const) {
      test(`${v}: the real server reads the client address:port and the VIP, then the client's bytes unchanged`, async (t) => {
        const h = await harness(t, workers);
        const { rs } = await serve(t, h, v);
        const { text, localPort } = await tcpExchange(h.vip, h.vport, 'hello through tsvs', '127.0.0.2');
        const [line, rest] = [text.slice(0, text.indexOf('\n')), text.slice(text.indexOf('\n') + 1)];
        assert.deepEqual(JSON.parse(line), { protocol: 'tcp', srcAddr: '127.0.0.2', srcPort: localPort, dstAddr: h.vip, dstPort: h.vport });
        assert.equal(rest, 'hello through tsvs');
        assert.equal(rs.seen.length, 1);
        assert.equal(rs.seen[0]!.header!.version, v);
        // The header is not the client's traffic: inbytes count the client's 18 bytes only
        // (workers report traffic at close, a moment after the client sees it).
        await waitFor(
          async () => (await h.view()).services[0]!.stats.conns === 1 && h.plane.openConnections() === 0,
          2000,
          'the connection reported closed',
        );
        assert.equal((await h.view()).services[0]!.stats.inbytes, 18);
      });
    }

    test('an edit switches the header on, off and between versions for new connections', async (t) => {
      const h = await harness(t, workers);
      const { svc, rs } = await serve(t, h, undefined);
      const plain = await tcpExchange(h.vip, h.vport, 'x');
      assert.equal(plain.text, '', 'a server that wants a header gets none and answers nothing');
      assert.match(rs.seen[0]!.error ?? '', /not a PROXY/);
      for (const v of ['v2', 'v1'] as const) {
        await h.apply([{ op: 'edit-service', service: { ...svc, proxyProtocol: v } }]);
        const r = await tcpExchange(h.vip, h.vport, 'y');
        assert.equal(rs.seen.at(-1)!.header?.version, v);
        assert.match(r.text, /"srcAddr":"127.0.0.1"/);
      }
      // An edit that does not mention it (tsvsadm -E) keeps it; 'none' turns it off.
      const { proxyProtocol: _drop, ...plainEdit } = svc;
      await h.apply([{ op: 'edit-service', service: { ...plainEdit, scheduler: 'wlc' } }]);
      assert.equal((await h.view()).services[0]!.proxyProtocol, 'v1');
      await h.apply([{ op: 'edit-service', service: { ...svc, proxyProtocol: 'none' } }]);
      assert.equal((await h.view()).services[0]!.proxyProtocol, undefined);
      assert.equal((await tcpExchange(h.vip, h.vport, 'z')).text, '');
      assert.match(rs.seen.at(-1)!.error ?? '', /not a PROXY/);
    });
  });
}

describe('PROXY protocol over UDP', () => {
  test('v2 puts a DGRAM header in front of every datagram; replies come back unchanged', async (t) => {
    const h = await harness(t, 1);
    const { rs } = await serve(t, h, 'v2', 'udp');
    const c = await udpClient(h.vip, h.vport, { localAddress: '127.0.0.3' });
    t.after(() => c.close());
    for (const p of ['one', 'two']) {
      const r = await c.ask(p);
      const [json, payload] = `${r.server}:${r.payload}`.split('|') as [string, string];
      assert.deepEqual(JSON.parse(json), { protocol: 'udp', srcAddr: '127.0.0.3', srcPort: c.port, dstAddr: h.vip, dstPort: h.vport });
      assert.equal(payload, p);
    }
    assert.equal(rs.seen.length, 2);
  });

  test('v1 and transparent are refused for UDP services, naming the service', async (t) => {
    const h = await harness(t, 1);
    for (const [over, re] of [
      [{ proxyProtocol: 'v1' }, /PROXY protocol v1 describes TCP connections only/],
      [{ transparent: true }, /transparent mode .* TCP services only/],
    ] as const) {
      const svc = { ...serviceOf(h, { protocol: 'udp' }), ...over };
      const ops: Op[] = [{ op: 'add-service', service: svc }];
      await assert.rejects(
        h.apply(ops),
        (e: unknown) =>
          isTsvsError(e) && e.code === 'NOT_SUPPORTED' && re.test(e.message) && e.message.startsWith(`UDP ${h.vip}:${h.vport}:`),
      );
      assert.equal(h.table.list().length, 0);
    }
  });

  test('the API refuses an unknown version', async (t) => {
    const h = await harness(t, 1);
    const svc = { ...serviceOf(h), proxyProtocol: 'v3' } as unknown as ServiceConfig;
    await assert.rejects(h.apply([{ op: 'add-service', service: svc }]), /proxyProtocol "v3" must be "v1", "v2" or "none"/);
  });
});
