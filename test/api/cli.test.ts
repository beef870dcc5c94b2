/**
 * `tsvs top` and `tsvs drain`, the built binaries, as clients of the API of an in-process
 * director on TCP (with a token) and on a Unix socket.
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { getRequestListener } from '@hono/node-server';
import { BIN } from '../daemon/spawn.js';
import { echoTransfer, openEcho, startEchoServer, type EchoConn, type TestServer } from '../helper.js';
import { createControlApp, destConfig, freeVipPort, listen, serviceConfig, startDirector, type TestDirector } from './harness.js';

const TOKEN = 'cli-test-token';

interface Run {
  code: number | null;
  out: string;
  err: string;
}

/** Runs `tsvs ARGS`; `onOutput` sees stdout as it grows. */
function tsvs(args: string[], onOutput?: (out: string) => void): Promise<Run> {
  return new Promise((resolve) => {
    const p = spawn(BIN('tsvs'), args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TSVS_API: '', TSVS_API_TOKEN: '' } });
    let out = '';
    let err = '';
    p.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      onOutput?.(out);
    });
    p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    p.once('exit', (code) => resolve({ code, out, err }));
  });
}

describe('tsvs top and tsvs drain', () => {
  let d: TestDirector;
  let rs1: TestServer;
  let rs2: TestServer;
  let vport: number;
  let srv: { url: string; close(): Promise<void> };
  let dir: string;
  let sock: ReturnType<typeof createServer>;
  const weight = (rs: TestServer) => d.table.list()[0]!.dests.find((x) => x.port === rs.port)!.weight;

  before(async () => {
    d = await startDirector();
    rs1 = await startEchoServer('rs1');
    rs2 = await startEchoServer('rs2');
    vport = await freeVipPort();
    const svc = serviceConfig(vport, 'rr');
    await d.director.apply([
      { op: 'add-service', service: svc },
      { op: 'add-server', service: svc, dest: destConfig(rs1.port, 2) },
      { op: 'add-server', service: svc, dest: destConfig(rs2.port, 1) },
    ]);
    srv = await listen(createControlApp(d.director, { token: TOKEN, readOnly: true }));
    dir = mkdtempSync(join(tmpdir(), 'tsvs-cli-'));
    sock = createServer(getRequestListener(createControlApp(d.director).fetch));
    await new Promise<void>((r) => sock.listen(join(dir, 'tsvsd.sock'), r));
  });
  after(async () => {
    await srv.close();
    sock.closeAllConnections();
    await new Promise((r) => sock.close(r));
    rmSync(dir, { recursive: true, force: true });
    await d.stop();
    await rs1.close();
    await rs2.close();
  });

  test('tsvs top --once prints one frame with every service and real server and their counters', async () => {
    for (let i = 0; i < 6; i++) await echoTransfer('127.0.0.1', vport, Buffer.alloc(100, 1));
    const r = await tsvs(['top', '--once', '--api', srv.url]);
    assert.equal(r.code, 0, r.err);
    const lines = r.out.trimEnd().split('\n');
    assert.match(lines[0]!, /^tsvs top - .* userspace data plane {2}VRRP not configured {2}\(rates: 2s estimator\)$/);
    assert.match(r.out, /connections 6 /);
    const header = lines.findIndex((l) => l.startsWith('SERVICE / REAL SERVER'));
    assert.ok(header > 0);
    assert.match(lines[header + 1]!, new RegExp(`^TCP 127\\.0\\.0\\.1:${vport} rr +0 +6 .* 6 +0$`));
    for (const rs of [rs1, rs2]) {
      const l = lines.find((x) => x.includes(`-> 127.0.0.1:${rs.port}`));
      assert.ok(l, `a line for ${rs.port}`);
      // weight, health, active 0, inactive 3 (TIME_WAIT), ..., connections 3, failed 0
      assert.match(l, new RegExp(`-> 127\\.0\\.0\\.1:${rs.port} +${rs === rs1 ? 2 : 1} unchecked +0 +3 .* 3 +0$`));
    }
    // The same through the Unix socket.
    const s = await tsvs(['top', '--once', '--socket', join(dir, 'tsvsd.sock')]);
    assert.equal(s.code, 0, s.err);
    assert.match(s.out, new RegExp(`TCP 127\\.0\\.0\\.1:${vport} rr`));
  });

  test('tsvs top -n 2 measures rates between frames', async () => {
    const r = await tsvs(['top', '-n', '2', '-d', '0.2', '--api', srv.url]);
    assert.equal(r.code, 0, r.err);
    assert.equal((r.out.match(/^tsvs top - /gm) ?? []).length, 2);
    assert.match(r.out, /rates over the last \d+\.\ds/);
  });

  test('tsvs drain sets weight 0, shows the connections left, and ends when they are closed', async () => {
    const conns: EchoConn[] = [];
    try {
      for (let i = 0; i < 3; i++) conns.push(await openEcho('127.0.0.1', vport));
      const mine = conns.filter((c) => c.server === 'rs1');
      assert.ok(mine.length >= 1);
      let closed = false;
      const r = await tsvs(
        [
          'drain',
          `127.0.0.1:${rs1.port}`,
          '--service',
          `127.0.0.1:${vport}`,
          '--api',
          srv.url,
          '--token',
          TOKEN,
          '--interval',
          '0.1',
          '--timeout',
          '30',
        ],
        (out) => {
          if (!closed && out.includes(`remaining: ${mine.length} connection`)) {
            closed = true;
            assert.equal(weight(rs1), 0);
            // New connections avoid the drained server while the old ones still work.
            void openEcho('127.0.0.1', vport).then(async (c) => {
              assert.equal(c.server, 'rs2');
              await c.end();
              for (const m of mine) await m.end();
            });
          }
        },
      );
      assert.equal(r.code, 0, r.out + r.err);
      assert.match(
        r.out,
        new RegExp(`draining 127\\.0\\.0\\.1:${rs1.port} in TCP 127\\.0\\.0\\.1:${vport}: weight 2 -> 0, ${mine.length} connections? open`),
      );
      assert.match(r.out, /remaining: 0 connections\ndrained: no connections left/);
      assert.equal(weight(rs1), 0);
      const back = await tsvs(['drain', `127.0.0.1:${rs1.port}`, '--restore', '--api', srv.url, '--token', TOKEN]);
      assert.equal(back.code, 0, back.err);
      assert.match(back.out, /weight 2/);
      assert.equal(weight(rs1), 2);
    } finally {
      for (const c of conns) c.destroy();
    }
  });

  test('tsvs drain gives up after --timeout with the weight left at 0', async () => {
    const conns: EchoConn[] = [];
    try {
      for (let i = 0; i < 2; i++) conns.push(await openEcho('127.0.0.1', vport));
      const r = await tsvs(['drain', '127.0.0.1', '--socket', join(dir, 'tsvsd.sock'), '--interval', '0.1', '--timeout', '0.3']);
      assert.equal(r.code, 1, r.out + r.err);
      // Without a port and a service: every real server on that address, each named.
      assert.match(r.out, /draining 127\.0\.0\.1:\d+ in TCP .*\ndraining 127\.0\.0\.1:\d+ in TCP /);
      assert.match(r.out, /timed out after 0\.3s with 2 connections still open; the weight stays 0/);
      assert.equal(weight(rs1), 0);
      assert.equal(weight(rs2), 0);
      const back = await tsvs(['drain', '127.0.0.1', '--restore', '--socket', join(dir, 'tsvsd.sock')]);
      assert.equal(back.code, 0, back.err);
      assert.equal(weight(rs1), 2);
      assert.equal(weight(rs2), 1);
    } finally {
      for (const c of conns) await c.end();
    }
  });

  test('tsvs drain refuses without the token, and names what it cannot find', async () => {
    const r = await tsvs(['drain', `127.0.0.1:${rs1.port}`, '--api', srv.url, '--token', 'wrong']);
    assert.equal(r.code, 1);
    assert.match(r.err, /Unauthorized/);
    assert.equal(weight(rs1), 2);
    const none = await tsvs(['drain', '10.9.9.9:80', '--api', srv.url, '--token', TOKEN]);
    assert.equal(none.code, 1);
    assert.match(none.err, /no real server 10\.9\.9\.9:80 in any virtual service/);
    const bad = await tsvs(['drain', 'nonsense']);
    assert.equal(bad.code, 2);
  });
});
