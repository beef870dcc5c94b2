import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect, createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { TsvsError } from '../../src/core/errors.js';
import type { Op, ServiceConfig } from '../../src/core/types.js';
import { BIN, startTsvsd, type Tsvsd } from './spawn.js';
import { freePort } from '../helper.js';

const service = (port: number, extra: Partial<ServiceConfig> = {}): ServiceConfig => ({
  af: 4,
  protocol: 'tcp',
  addr: '127.0.0.1',
  port,
  fwmark: 0,
  scheduler: 'rr',
  schedFlags: 0,
  persistent: 0,
  netmask: 0xffffffff,
  ops: false,
  pe: '',
  ...extra,
});

/** Sends raw bytes to the control socket and returns whatever comes back. */
function raw(socket: string, data: string): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(socket);
    let out = '';
    s.on('data', (d) => (out += d.toString()));
    s.on('error', () => resolve(out));
    s.on('close', () => resolve(out));
    s.write(data);
    setTimeout(() => s.end(), 200);
  });
}

function post(socket: string, path: string, body: string): Promise<{ status: number; json: unknown }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, method: 'POST', path, headers: { 'content-type': 'application/json' } }, (res) => {
      let t = '';
      res.on('data', (d) => (t += d));
      res.on('end', () => resolve({ status: res.statusCode!, json: t ? JSON.parse(t) : null }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('tsvsd', () => {
  const daemons: Tsvsd[] = [];
  const echo: Server = createServer((s) => s.pipe(s));
  after(async () => {
    for (const d of daemons) await d.cleanup();
    echo.close();
  });

  test('the table survives a restart through --state, and SIGTERM exits 0', async () => {
    const d = await startTsvsd();
    daemons.push(d);
    const vport = await freePort();
    const s = service(vport);
    await d.client.apply([
      { op: 'set-timeouts', timeouts: { tcp: 600, tcpfin: 60, udp: 120 } },
      { op: 'add-service', service: s },
      {
        op: 'add-server',
        service: s,
        dest: { af: 4, addr: '127.0.0.2', port: 8081, weight: 3, fwd: 'masq', uThreshold: 10, lThreshold: 2 },
      },
      {
        op: 'add-server',
        service: s,
        dest: { af: 4, addr: '127.0.0.3', port: 8082, weight: 1, fwd: 'masq', uThreshold: 0, lThreshold: 0 },
      },
    ]);
    const before = await d.client.getTable();
    assert.equal(statSync(d.state).mode & 0o777, 0o600);
    assert.equal(await d.kill('SIGTERM'), 0);

    const again = await startTsvsd([], { dir: d.dir });
    daemons.push(again);
    const after = await again.client.getTable();
    const strip = (t: typeof before) =>
      t.services.map(({ stats: _s, rates: _r, dests, ...rest }) => ({ ...rest, dests: dests.map(({ stats: _a, rates: _b, ...x }) => x) }));
    assert.deepEqual(strip(after), strip(before));
    assert.deepEqual(after.timeouts, { tcp: 600, tcpfin: 60, udp: 120 });
    await again.kill('SIGTERM');
  });

  test('the control socket is mode 0600 and a second tsvsd refuses to take it over', async () => {
    const d = await startTsvsd();
    daemons.push(d);
    assert.equal(statSync(d.socket).mode & 0o777, 0o600);
    const second = spawnSync(BIN('tsvsd'), ['--socket', d.socket], { encoding: 'utf8', timeout: 15000 });
    assert.equal(second.status, 1);
    assert.match(second.stderr, /control socket .* is in use: another tsvsd is running there/);
    await d.client.info(); // the first one still answers
    await d.kill();
  });

  test('malformed requests get clear errors, change nothing and do not crash the daemon', async () => {
    const d = await startTsvsd();
    daemons.push(d);
    const vport = await freePort();
    await d.client.apply([{ op: 'add-service', service: service(vport) }]);
    const before = JSON.stringify((await d.client.getTable()).services.map((s) => ({ ...s, stats: 0, rates: 0 })));

    const cases: Array<[string, number, string]> = [
      ['{not json', 400, 'BAD_REQUEST'],
      ['{"ops": 5}', 400, 'BAD_REQUEST'],
      ['[1,2]', 400, 'BAD_REQUEST'],
      ['{"ops": [{"op": "explode"}]}', 400, 'BAD_REQUEST'],
      ['{"ops": [{"op": "add-service", "service": {"protocol": "tcp", "addr": "1.2.3", "port": 80}}]}', 400, 'BAD_REQUEST'],
      ['{"ops": [{"op": "add-service", "service": {"protocol": "tcp", "addr": "127.0.0.1", "port": 99999}}]}', 400, 'BAD_REQUEST'],
      [
        '{"ops": [{"op": "add-server", "service": {"protocol": "tcp", "addr": "127.0.0.1", "port": 1}, "dest": {"addr": "127.0.0.2", "port": 80}}]}',
        404,
        'SERVICE_NOT_DEFINED',
      ],
      [
        `{"ops": [{"op": "add-server", "service": {"protocol": "tcp", "addr": "127.0.0.1", "port": ${vport}}, "dest": {"addr": "127.0.0.2", "port": 80, "weight": -1, "fwd": "masq"}}]}`,
        400,
        'OUT_OF_RANGE',
      ],
      [
        `{"ops": [{"op": "add-server", "service": {"protocol": "tcp", "addr": "127.0.0.1", "port": ${vport}}, "dest": {"addr": "127.0.0.2", "port": 80, "fwd": "masq"}}, {"op": "delete-service", "service": {"protocol": "tcp", "addr": "127.0.0.9", "port": 1}}]}`,
        404,
        'NO_SERVICE',
      ],
      ['{"ops": [null]}', 400, 'BAD_REQUEST'],
    ];
    for (const [body, status, code] of cases) {
      const r = await post(d.socket, '/v1/ops', body);
      assert.equal(r.status, status, body);
      const err = (r.json as { error: { code: string; message: string; detail: string } }).error;
      assert.equal(err.code, code, body);
      assert.ok(err.message.length > 0 && err.detail.length > 0, body);
    }
    // Garbage that is not HTTP at all, and an unknown route.
    await raw(d.socket, '\x00\x01\x02 this is not http\r\n\r\n');
    await raw(d.socket, 'GET /v1/table HTTP/1.1\r\nContent-Length: -5\r\n\r\n');
    assert.equal((await post(d.socket, '/v1/nothing', '{}')).status, 404);

    const now = JSON.stringify((await d.client.getTable()).services.map((s) => ({ ...s, stats: 0, rates: 0 })));
    assert.equal(now, before);
    assert.equal(d.proc.exitCode, null);
    await d.kill();
  });

  test('a real server with a method the data plane cannot carry is refused by name', async () => {
    const d = await startTsvsd();
    daemons.push(d);
    const s = service(await freePort());
    await d.client.apply([{ op: 'add-service', service: s }]);
    const ops: Op[] = [
      { op: 'add-server', service: s, dest: { af: 4, addr: '127.0.0.2', port: 80, weight: 1, fwd: 'route', uThreshold: 0, lThreshold: 0 } },
    ];
    await assert.rejects(d.client.apply(ops), (e: unknown) => {
      assert.ok(e instanceof TsvsError);
      assert.equal(e.code, 'NOT_SUPPORTED');
      assert.match(e.message, /Route \(-g\) is not supported by the userspace data plane/);
      return true;
    });
    assert.equal((await d.client.getTable()).services[0]!.dests.length, 0);
    await d.kill();
  });

  test('SIGTERM drains: an open connection keeps working until it closes, then tsvsd exits 0', async () => {
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    const rport = (echo.address() as AddressInfo).port;
    const d = await startTsvsd(['--drain-timeout', '20']);
    daemons.push(d);
    const s = service(await freePort());
    await d.client.apply([
      { op: 'add-service', service: s },
      {
        op: 'add-server',
        service: s,
        dest: { af: 4, addr: '127.0.0.1', port: rport, weight: 1, fwd: 'masq', uThreshold: 0, lThreshold: 0 },
      },
    ]);
    const sock = connect(s.port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    const roundTrip = (msg: string) =>
      new Promise<string>((resolve) => {
        sock.once('data', (b) => resolve(b.toString()));
        sock.write(msg);
      });
    assert.equal(await roundTrip('before'), 'before');
    const exit = d.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(d.proc.exitCode, null, 'still draining');
    assert.equal(await roundTrip('during'), 'during');
    // New connections are no longer accepted.
    const refused = await new Promise<boolean>((resolve) => {
      const c = connect(s.port, '127.0.0.1');
      c.once('connect', () => {
        c.once('close', () => resolve(false));
        c.once('data', () => resolve(false));
        c.write('x');
        setTimeout(() => resolve(false), 1000);
      });
      c.once('error', () => resolve(true));
    });
    assert.equal(refused, true);
    sock.end();
    assert.equal(await exit, 0);
  });

  test('a corrupt state file stops tsvsd with a message naming the file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsvs-test-'));
    try {
      const state = join(dir, 'state.json');
      writeFileSync(state, '{"format": "tsvs-state", "version": 1, "table": ');
      const r = spawnSync(BIN('tsvsd'), ['--socket', join(dir, 's.sock'), '--state', state], { encoding: 'utf8', timeout: 15000 });
      assert.equal(r.status, 1);
      assert.match(r.stderr, new RegExp(`state file ${state.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: not valid JSON`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('killed with SIGKILL in the middle of changes, the state file still loads with every acknowledged change', async () => {
    const d = await startTsvsd();
    daemons.push(d);
    const base = await freePort();
    // One change is durable first; then fire more without waiting and kill the daemon
    // while they are being saved.
    await d.client.apply([{ op: 'add-service', service: service(base, { addr: '127.0.9.9' }) }]);
    const acked = ['127.0.9.9'];
    const pending: Array<Promise<void>> = [];
    for (let i = 0; i < 40; i++) {
      const s = service(base, { addr: `127.0.${1 + (i >> 8)}.${1 + (i & 255)}` });
      pending.push(
        d.client.apply([{ op: 'add-service', service: s }]).then(
          () => void acked.push(s.addr),
          () => undefined,
        ),
      );
    }
    await new Promise((r) => setTimeout(r, 30));
    await d.kill('SIGKILL');
    await Promise.all(pending);
    const again = await startTsvsd([], { dir: d.dir });
    daemons.push(again);
    const addrs = new Set((await again.client.getTable()).services.map((s) => s.addr));
    for (const a of acked) assert.ok(addrs.has(a), `acknowledged service ${a} is restored`);
    assert.ok(addrs.size <= 41);
    await again.kill();
  });
});
