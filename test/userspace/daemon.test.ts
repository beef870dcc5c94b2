/**
 * `tsvsd --workers` as a process (the built binary, so the workers start from dist/ through
 * worker-boot.mjs): bad values are refused with exit 2, and SIGTERM drains connections that
 * the worker threads carry before the daemon exits 0.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import net from 'node:net';
import { describe, test } from 'node:test';
import type { ServiceConfig } from '../../src/core/types.js';
import { BIN, startTsvsd } from '../daemon/spawn.js';
import { freePort, openEcho, startServer, waitFor, type EchoConn } from '../helper.js';

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

describe('tsvsd --workers', () => {
  test('refuses a bad count, and --workers with the nftables plane', () => {
    for (const [args, re] of [
      [['--workers', '0'], /--workers "0": must be a number from 1 to 256, or auto/],
      [['--workers', 'many'], /--workers "many"/],
      [['--dataplane', 'nftables', '--workers', '2'], /--workers applies to the userspace data plane only/],
    ] as const) {
      const r = spawnSync(BIN('tsvsd'), [...args, '--socket', '/nonexistent/tsvsd.sock'], { encoding: 'utf8', timeout: 20_000 });
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, re);
    }
  });

  test('SIGTERM drains the connections the workers carry, then exits 0', async (t) => {
    const rs = await startServer('echo', 'rs');
    t.after(() => rs.close());
    const d = await startTsvsd(['--workers', '2', '--drain-timeout', '20']);
    t.after(() => d.cleanup());
    assert.match(d.logs(), /2 worker threads carry TCP/);
    const port = await freePort();
    const svc: ServiceConfig = {
      af: 4,
      protocol: 'tcp',
      addr: '127.0.0.1',
      port,
      fwmark: 0,
      scheduler: 'wlc',
      schedFlags: 0,
      persistent: 0,
      netmask: 0xffffffff,
      ops: false,
      pe: '',
    };
    await d.client.apply([
      { op: 'add-service', service: svc },
      {
        op: 'add-server',
        service: svc,
        dest: { af: 4, addr: rs.addr, port: rs.port, weight: 1, fwd: 'masq', uThreshold: 0, lThreshold: 0 },
      },
    ]);
    const held: EchoConn[] = [];
    for (let i = 0; i < 6; i++) held.push(await openEcho('127.0.0.1', port));
    const exit = d.kill('SIGTERM');
    // Probe only once the drain has counted: a probe that lands before SIGTERM is handled
    // is a seventh connection.
    await waitFor(() => /draining \d+ open connection/.test(d.logs()), 5000, 'the drain to start');
    await waitFor(() => refused('127.0.0.1', port), 5000, 'the listeners to close');
    for (const c of held) assert.equal(String(await c.echo('draining')), 'draining');
    for (const c of held) await c.end();
    assert.equal(await exit, 0);
    assert.match(d.logs(), /draining 6 open connection/);
  });
});
