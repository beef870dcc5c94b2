/**
 * The API listeners' bounds on a real tsvsd, over real sockets: the connection cap of each
 * listener (the TCP port full, tsvsadm still answers on the control socket), the header
 * timeout against slowloris, the body timeout, the keep-alive idle timeout, and the TCP
 * API's Host check (DNS rebinding). Each bound hit shows in /metrics and in the log.
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ENTRY, startTsvsd, type Tsvsd } from '../daemon/spawn.js';

const TOKEN = 'limits-test-token-0123456789abcdef';

/** A raw connection that records when the server closed it and what it sent. */
interface Conn {
  socket: Socket;
  closed: Promise<number>;
  isClosed(): boolean;
  data(): string;
}

function open(target: { port: number } | { path: string }): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const socket = 'path' in target ? connect(target.path) : connect(target.port, '127.0.0.1');
    let data = '';
    let closedAt = 0;
    const closed = new Promise<number>((res) => {
      socket.on('close', () => {
        closedAt = Date.now();
        res(closedAt);
      });
    });
    socket.on('data', (d) => (data += d.toString()));
    socket.on('error', () => {});
    socket.once('connect', () => resolve({ socket, closed, isClosed: () => closedAt !== 0, data: () => data }));
    socket.once('error', reject);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function tsvsadm(socket: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [ENTRY('tsvsadm'), ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, TSVS_SOCKET: socket },
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

async function metric(d: Tsvsd, listener: string, reason: string): Promise<number> {
  const res = await new Promise<string>((resolve, reject) => {
    const s = connect(d.socket);
    let out = '';
    s.on('data', (b) => (out += b.toString()));
    s.on('end', () => resolve(out));
    s.on('error', reject);
    s.write('GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
  });
  const m = new RegExp(`^tsvs_api_limit_hits_total\\{listener="${listener}",reason="${reason}"\\} (\\d+)$`, 'm').exec(res);
  assert.ok(m, `no ${listener}/${reason} sample in /metrics:\n${res.slice(0, 2000)}`);
  return Number(m[1]);
}

describe('API listener bounds', () => {
  let d: Tsvsd;
  let dir: string;
  let port: number;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tsvs-api-limits-'));
    writeFileSync(join(dir, 'token'), TOKEN);
    d = await startTsvsd(
      [
        '--api',
        '127.0.0.1:0',
        '--api-token-file',
        join(dir, 'token'),
        '--api-host',
        'director1.example',
        '--api-max-conns',
        '4',
        '--socket-max-conns',
        '3',
        '--api-header-timeout',
        '2',
        '--api-body-timeout',
        '3',
        '--api-idle-timeout',
        '1',
      ],
      { dir },
    );
    port = Number(/"api":"127\.0\.0\.1:(\d+)"/.exec(d.logs())![1]);
  });
  after(async () => {
    await d.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the TCP cap: connection N+1 is closed at once, the first N stay open, tsvsadm still answers on the socket', async () => {
    const before = await metric(d, 'tcp', 'max-connections');
    const held = await Promise.all([1, 2, 3, 4].map(() => open({ port })));
    try {
      await sleep(200);
      const extra = await open({ port });
      const t0 = Date.now();
      const closedAt = await Promise.race([extra.closed, sleep(1500).then(() => 0)]);
      assert.ok(closedAt && closedAt - t0 < 1000, 'connection 5 of a listener capped at 4 was not closed');
      assert.ok(
        held.every((c) => !c.isClosed()),
        'the first 4 connections stay open',
      );
      const r = await tsvsadm(d.socket, ['-Ln']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /IP Virtual Server version/);
      assert.equal((await metric(d, 'tcp', 'max-connections')) - before, 1);
      assert.match(d.logs(), /API tcp 127\.0\.0\.1:\d+: connection from 127\.0\.0\.1:\d+ refused: 4 connections are open/);
    } finally {
      for (const c of held) c.socket.destroy();
    }
  });

  test('the control socket has its own cap: connection N+1 is closed, and tsvsadm answers once one is free', async () => {
    await sleep(100);
    const held = await Promise.all([1, 2, 3].map(() => open({ path: d.socket })));
    try {
      const extra = await open({ path: d.socket });
      const closedAt = await Promise.race([extra.closed, sleep(1500).then(() => 0)]);
      assert.ok(closedAt, 'connection 4 of a socket capped at 3 was not closed');
      assert.ok(held.every((c) => !c.isClosed()));
    } finally {
      for (const c of held) c.socket.destroy();
    }
    await sleep(100);
    assert.ok((await metric(d, 'socket', 'max-connections')) >= 1);
    const r = await tsvsadm(d.socket, ['-Ln']);
    assert.equal(r.code, 0, r.stderr);
  });

  test('slowloris (a header byte every 500 ms) is cut at the header timeout with 408', async () => {
    const before = await metric(d, 'tcp', 'header-timeout');
    const c = await open({ port });
    const t0 = Date.now();
    c.socket.write('GET /v1/info HTTP/1.1\r\nHost: 127.0.0.1\r\n');
    const drip = setInterval(() => {
      if (!c.isClosed()) c.socket.write('X');
    }, 500);
    try {
      const closedAt = await Promise.race([c.closed, sleep(8000).then(() => 0)]);
      assert.ok(closedAt, 'the slow client is still connected after 8 s');
      const took = closedAt - t0;
      assert.ok(took >= 1800 && took < 4000, `cut after ${took} ms; the header timeout is 2 s`);
      assert.match(c.data(), /^HTTP\/1\.1 408 /);
      assert.match(c.data(), /request headers did not arrive within 2 s/);
    } finally {
      clearInterval(drip);
      c.socket.destroy();
    }
    assert.equal((await metric(d, 'tcp', 'header-timeout')) - before, 1);
    assert.match(d.logs(), /closed: its request headers did not arrive within 2 s/);
  });

  test('a connection that sends nothing is closed at the header timeout too', async () => {
    const c = await open({ port });
    const t0 = Date.now();
    const closedAt = await Promise.race([c.closed, sleep(8000).then(() => 0)]);
    assert.ok(closedAt && closedAt - t0 < 4000, 'an idle connection was not closed');
  });

  test('a body that stops arriving is cut at the body timeout with 408', async () => {
    const before = await metric(d, 'tcp', 'body-timeout');
    const c = await open({ port });
    const t0 = Date.now();
    c.socket.write(
      `POST /v1/ops HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"ops":`,
    );
    const closedAt = await Promise.race([c.closed, sleep(8000).then(() => 0)]);
    assert.ok(closedAt, 'the client with a stalled body is still connected after 8 s');
    const took = closedAt - t0;
    assert.ok(took >= 2800 && took < 5000, `cut after ${took} ms; the body timeout is 3 s`);
    assert.match(c.data(), /^HTTP\/1\.1 408 /);
    assert.match(c.data(), /request body did not arrive within 3 s/);
    assert.equal((await metric(d, 'tcp', 'body-timeout')) - before, 1);
    assert.deepEqual((await d.client.getTable()).services, []);
  });

  test('a kept-alive connection idle for the idle timeout is closed', async () => {
    const before = await metric(d, 'tcp', 'idle-timeout');
    const c = await open({ port });
    c.socket.write(`GET /v1/info HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`);
    const t0 = Date.now();
    const closedAt = await Promise.race([c.closed, sleep(6000).then(() => 0)]);
    assert.match(c.data(), /^HTTP\/1\.1 200 /);
    assert.ok(closedAt && closedAt - t0 < 2500, 'an idle kept-alive connection was not closed after the 1 s idle timeout');
    assert.equal((await metric(d, 'tcp', 'idle-timeout')) - before, 1);
  });

  test('Host: the TCP API refuses other names with 421; addresses, localhost and --api-host names pass; the socket takes any', async () => {
    const get = (host: string) =>
      new Promise<string>((resolve, reject) => {
        const s = connect(port, '127.0.0.1');
        let out = '';
        s.on('data', (b) => (out += b.toString()));
        s.on('end', () => resolve(out));
        s.on('error', reject);
        s.write(`GET /v1/info HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer ${TOKEN}\r\nConnection: close\r\n\r\n`);
      });
    const before = await metric(d, 'tcp', 'bad-host');
    for (const h of ['evil.example', `evil.example:${port}`, 'localhost.evil.example', '127.0.0.1.nip.io']) {
      const r = await get(h);
      assert.match(r, /^HTTP\/1\.1 421 /, h);
      assert.match(r, /"code":"MISDIRECTED"/);
      assert.match(r, /not a name of this API/);
      assert.match(r, /--api-host/);
    }
    assert.equal((await metric(d, 'tcp', 'bad-host')) - before, 4);
    for (const h of [
      `127.0.0.1:${port}`,
      '127.0.0.1',
      `localhost:${port}`,
      'LOCALHOST',
      'app.localhost:8080',
      '[::1]:9',
      'director1.example',
      'Director1.Example.:80',
    ]) {
      assert.match(await get(h), /^HTTP\/1\.1 200 /, h);
    }
    const viaSocket = await new Promise<string>((resolve, reject) => {
      const s = connect(d.socket);
      let out = '';
      s.on('data', (b) => (out += b.toString()));
      s.on('end', () => resolve(out));
      s.on('error', reject);
      s.write('GET /v1/info HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n');
    });
    assert.match(viaSocket, /^HTTP\/1\.1 200 /);
  });
});

describe('the issue #13 flood: 1,100 idle connections to --api under ulimit -n 1024', () => {
  test('tsvsadm still answers on the control socket, the connections over the cap are closed', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'tsvs-api-flood-'));
    const socket = join(dir, 'tsvsd.sock');
    // The default caps (64 socket, 256 TCP) under the fd limit that failed before.
    const proc = spawn(
      '/bin/sh',
      ['-c', 'ulimit -n 1024 && exec "$0" "$@"', process.execPath, ENTRY('tsvsd'), '--socket', socket, '--api', '127.0.0.1:0'],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let logs = '';
    proc.stdout.on('data', (b: Buffer) => (logs += b.toString()));
    const held: Socket[] = [];
    try {
      const deadline = Date.now() + 20_000;
      while (!/"api":"127\.0\.0\.1:\d+"/.test(logs) && Date.now() < deadline && proc.exitCode === null) await sleep(100);
      const port = Number(/"api":"127\.0\.0\.1:(\d+)"/.exec(logs)?.[1]);
      assert.ok(port, logs);
      let closed = 0;
      let failed = 0;
      await Promise.all(
        Array.from(
          { length: 1100 },
          () =>
            new Promise<void>((resolve) => {
              const s = connect(port, '127.0.0.1');
              held.push(s);
              s.resume();
              s.on('close', () => closed++);
              s.once('connect', () => resolve());
              s.once('error', (e: NodeJS.ErrnoException) => {
                if (e.code === 'EMFILE') failed++;
                resolve();
              });
            }),
        ),
      );
      if (failed) return t.skip(`this test process may not open 1,100 sockets (EMFILE ${failed} times)`);
      await sleep(500);
      const r = await tsvsadm(socket, ['-Ln']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /IP Virtual Server version/);
      assert.ok(closed >= 1100 - 256, `${closed} connections closed; every one over the TCP cap of 256 should be`);
      assert.match(logs, /"reason":"max-connections"/);
    } finally {
      for (const s of held) s.destroy();
      proc.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
