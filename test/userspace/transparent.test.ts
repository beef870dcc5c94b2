/**
 * Transparent connects (IP_TRANSPARENT) on loopback, as root: the real server's peer is the
 * client's own address (127.0.0.2 here, a loopback address, so no reply routing is needed),
 * with a port of the kernel's choosing; in one thread and with workers. Without the reply
 * routing asked for, adding a transparent service logs how to get it. The routing itself is
 * tested in network namespaces (lab.test.ts).
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, test } from 'node:test';
import { transparentRuleset } from '../../src/dataplane/userspace/transparent.js';
import { connectTransparent, loadSocketLib } from '../../src/net/socket.js';
import { waitFor } from '../helper.js';
import { privileged } from '../privileged.js';
import { destOf, serviceOf } from '../dataplane/scenarios.js';
import { makeUserspaceHarness } from './harness.js';
import { tcpExchange } from './ppserver.js';

/** A server that answers every connection with its peer's address and port. */
async function peerServer(host = '127.0.0.1'): Promise<{ port: number; close(): Promise<void> }> {
  const server = net.createServer((s) => {
    s.on('error', () => {});
    s.end(`${s.remoteAddress} ${s.remotePort}`);
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  return { port: (server.address() as net.AddressInfo).port, close: () => new Promise<void>((r) => server.close(() => r())) };
}

describe('transparent userspace connects', privileged([]), () => {
  for (const workers of [1, 2]) {
    test(`the real server sees the client's address (workers ${workers})`, async (t) => {
      const h = await makeUserspaceHarness({ workers });
      t.after(() => h.close());
      const rs = await peerServer();
      t.after(() => rs.close());
      const svc = { ...serviceOf(h), transparent: true };
      await h.apply([
        { op: 'add-service', service: svc },
        { op: 'add-server', service: svc, dest: destOf(h, { addr: '127.0.0.1', port: rs.port } as never) },
      ]);
      for (const client of ['127.0.0.2', '127.0.0.3']) {
        const { text, localPort } = await tcpExchange(h.vip, h.vport, '', client);
        const [addr, port] = text.split(' ');
        assert.equal(addr, client);
        assert.notEqual(Number(port), localPort, 'a new port: the client port towards the VIP may be in use towards the server');
      }
      assert.ok(
        h.logs.some((l) => l.level === 'warn' && /TSVS_TRANSPARENT_SETUP=1/.test(l.msg)),
        'warned that the reply routing was not set up',
      );
    });
  }

  test('IPv6: the socket is made with IPV6_TRANSPARENT and a sockaddr_in6', async (t) => {
    const h = await makeUserspaceHarness({ vip: '::1' });
    t.after(() => h.close());
    const rs = await peerServer('::1');
    t.after(() => rs.close());
    const svc = { ...serviceOf(h), transparent: true };
    await h.apply([
      { op: 'add-service', service: svc },
      { op: 'add-server', service: svc, dest: destOf(h, { addr: '::1', port: rs.port } as never) },
    ]);
    const { text } = await tcpExchange('::1', h.vport, '');
    assert.match(text, /^::1 \d+$/);
    await waitFor(async () => (await h.connView())[0]?.state === 'TIME_WAIT', 2000, 'the entry in TIME_WAIT');
  });

  test('a connect that fails at once (bind) rejects with the errno name instead of throwing', async () => {
    await loadSocketLib();
    let p: Promise<unknown> | undefined;
    assert.doesNotThrow(() => {
      p = connectTransparent({ srcAddr: '::1', srcPort: 0, dstAddr: '127.0.0.1', dstPort: 9, timeoutMs: 100 });
    });
    await assert.rejects(p!, (e: Error & { code?: string }) => e.code === 'EAFNOSUPPORT' && /from ::1: bind: EAFNOSUPPORT/.test(e.message));
  });

  test('a real server that refuses: the client is reset and the failure counted', async (t) => {
    const h = await makeUserspaceHarness({ workers: 1 });
    t.after(() => h.close());
    const closed = await peerServer();
    await closed.close();
    const svc = { ...serviceOf(h), transparent: true };
    await h.apply([
      { op: 'add-service', service: svc },
      { op: 'add-server', service: svc, dest: destOf(h, { addr: '127.0.0.1', port: closed.port } as never) },
    ]);
    const r = await tcpExchange(h.vip, h.vport, 'x', '127.0.0.2').catch((e: NodeJS.ErrnoException) => ({
      text: e.code ?? 'error',
      localPort: 0,
    }));
    assert.equal(r.text, 'ECONNRESET');
    assert.deepEqual(h.plane.counters().connectFailures, { [`127.0.0.1:${closed.port}`]: 1 });
    assert.equal(h.plane.openConnections(), 0);
  });
});

describe('transparent reply routing', () => {
  test('marks packets of transparent sockets in table inet tsvs', () => {
    assert.equal(
      transparentRuleset(0x7473),
      `table inet tsvs {
  chain prerouting {
    type filter hook prerouting priority mangle; policy accept;
    meta l4proto tcp socket transparent 1 meta mark set 0x7473 accept
  }
}
`,
    );
  });
});
