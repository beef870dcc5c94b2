/**
 * tsvsadm (the built binary) against a real tsvsd on the userspace plane, with inputs and
 * tables larger than a hand-written test: a 50,000-line restore with one bad line, the
 * streamed listing of a few hundred services, a batch over the body limit, and a daemon
 * that never answers.
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { formatRules, formatTable } from '../../src/ipvsadm/format.js';
import { ENTRY, startTsvsd, type Tsvsd } from '../daemon/spawn.js';

interface Run {
  code: number | null;
  out: string;
  err: string;
}

/** Runs the built tsvsadm against `socket` with `input` on stdin. */
function tsvsadm(socket: string, args: string[], input = ''): Promise<Run> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [ENTRY('tsvsadm'), ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, TSVS_SOCKET: socket },
    });
    let out = '';
    let err = '';
    p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    p.once('exit', (code) => resolve({ code, out, err }));
    p.stdin!.on('error', () => undefined);
    p.stdin!.end(input);
  });
}

/** A VIP of this run: 127/8 has room for every run to have its own. */
const VIP = `127.${50 + Math.floor(Math.random() * 150)}.${Math.floor(Math.random() * 250)}.1`;

/** `services` services with `per` real servers each, as -S lines. */
function rules(services: number, per: number, firstPort: number): string[] {
  const lines: string[] = [];
  for (let i = 0; i < services; i++) {
    const vs = `-t ${VIP}:${firstPort + i}`;
    lines.push(`-A ${vs} -s wrr`);
    for (let j = 1; j <= per; j++) lines.push(`-a ${vs} -r 127.0.1.${j}:${8000 + (i % 100)} -m -w ${j}`);
  }
  return lines;
}

describe('tsvsadm at scale against tsvsd', () => {
  let d: Tsvsd;
  before(async () => {
    d = await startTsvsd(['--log-level', 'warn']);
    // A small table that every refused restore below must leave as it is.
    const r = await tsvsadm(d.socket, ['-R'], `${rules(2, 2, 10000).join('\n')}\n`);
    assert.equal(r.code, 0, r.err);
  });
  after(async () => {
    await d?.cleanup();
  });

  const saved = async () => (await tsvsadm(d.socket, ['-Sn'])).out;

  test('a 50,000-line restore with garbage on line 40,001 is refused, naming that line; nothing is applied', async () => {
    const before = await saved();
    const lines = rules(10_000, 4, 20000);
    assert.equal(lines.length, 50_000);
    lines[40_000] = 'garbage on this line';
    const r = await tsvsadm(d.socket, ['-R'], `${lines.join('\n')}\n`);
    assert.equal(r.code, 255);
    assert.equal(
      r.err,
      "Try `tsvsadm -h' or 'tsvsadm --help' for more information.\ntsvsadm: -R: line 40001 refused, nothing was applied: garbage on this line\n",
    );
    assert.equal(await saved(), before);
  });

  test('a line the daemon refuses (a service already in the table) is named, and nothing is applied', async () => {
    const before = await saved();
    const lines = rules(300, 2, 30000);
    lines.push(`-A -t ${VIP}:10001 -s rr`); // line 901: exists since before()
    lines.push(...rules(1, 1, 31000));
    const r = await tsvsadm(d.socket, ['-R'], lines.join('\n'));
    assert.equal(r.code, 255);
    assert.equal(r.err, `Service already exists\ntsvsadm: -R: line 901: TCP ${VIP}:10001: service already exists; nothing was applied\n`);
    assert.equal(await saved(), before);
  });

  test('a duplicate within the input is named at its second line', async () => {
    const lines = rules(3, 1, 32000);
    lines.splice(4, 0, `-a -t ${VIP}:32001 -r 127.0.1.1:8001 -m -w 5`); // line 5 repeats line 4
    const r = await tsvsadm(d.socket, ['-R'], lines.join('\n'));
    assert.equal(r.code, 255);
    assert.match(r.err, /^Destination already exists\ntsvsadm: -R: line 5: /);
  });

  test('the streamed listing equals the whole table, byte for byte', async () => {
    // 300 services × 4 crosses the server's batches of 256 services.
    const r = await tsvsadm(d.socket, ['-R'], rules(300, 4, 40000).join('\n'));
    assert.equal(r.code, 0, r.err);
    const whole = await d.client.getTable();
    assert.equal(whole.services.length, 302);
    for (const argv of [['-Ln'], ['-Sn'], ['-Ln', '--stats'], ['-Ln', '--rate']]) {
      const o = { stats: argv.includes('--stats'), rate: argv.includes('--rate') };
      const listed = await tsvsadm(d.socket, argv);
      assert.equal(listed.code, 0, listed.err);
      assert.equal(listed.out, argv[0] === '-Sn' ? formatRules(whole, o) : formatTable(whole, o), argv.join(' '));
    }
    // The wire: each NDJSON service line is the JSON of the same service in /v1/table.
    const body = await get(d.socket, '/v1/table?format=ndjson');
    const lines = body.trimEnd().split('\n');
    assert.equal(lines.length, 302 + 2);
    assert.equal(JSON.parse(lines[0]!).count, 302);
    assert.deepEqual(JSON.parse(lines.at(-1)!), { end: true });
    const again = await d.client.getTable();
    assert.deepEqual(
      lines.slice(1, -1),
      again.services.map((s) => JSON.stringify(s)),
    );
  });

  test('a batch over the body limit is refused with the limit named', async () => {
    // Only the head is sent: the limit is checked against Content-Length before the body is read.
    const head = await rawExchange(
      d.socket,
      `POST /v1/ops HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${65 * 1024 * 1024}\r\n\r\n{"ops":[`,
    );
    assert.match(head, /^HTTP\/1\.1 413 /);
    const e = JSON.parse(head.slice(head.indexOf('\r\n\r\n') + 4)).error;
    assert.equal(e.code, 'TOO_LARGE');
    assert.match(e.message, /at most 64 MiB .*nothing was applied/);
    const small = await post(d.socket, '/v1/services', JSON.stringify({ pad: 'x'.repeat(2 * 1024 * 1024) }));
    assert.equal(small.status, 413);
    assert.match(JSON.parse(small.body).error.detail, /POST \/v1\/services: the request body exceeds the limit of 1 MiB/);
  });
});

describe('tsvsadm against a daemon that does not answer', () => {
  let dir: string;
  let server: Server;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tsvs-noanswer-'));
    // Reads the request, then hangs up without a word.
    server = createServer((sock) => {
      let seen = '';
      sock.on('data', (b) => {
        seen += b.toString('latin1');
        if (seen.includes('\r\n\r\n') && /^POST /.test(seen)) setTimeout(() => sock.destroy(), 50);
      });
    });
    await new Promise<void>((r) => server.listen(join(dir, 'sock'), r));
  });
  after(() => {
    server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a change that gets no answer says it may or may not have been applied', async () => {
    const r = await tsvsadm(join(dir, 'sock'), ['-A', '-t', '127.0.0.1:80']);
    assert.equal(r.code, 255);
    assert.match(r.err, /did not answer \(socket hang up\): the change may or may not have been applied; check with tsvsadm -Sn\n$/);
  });

  test('no daemon at all: nothing was sent, exit 2 as ipvsadm without IPVS', async () => {
    const r = await tsvsadm(join(dir, 'nothing-here'), ['-A', '-t', '127.0.0.1:80']);
    assert.equal(r.code, 2);
    assert.match(r.err, /^Can't initialize ipvs: cannot reach tsvsd/);
  });
});

/** GET over the control socket, the body as text. */
function get(socket: string, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    request({ socketPath: socket, path }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve(body));
    })
      .on('error', reject)
      .end();
  });
}

/** POST over the control socket; resolves with status and body. */
function post(socket: string, path: string, body: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        socketPath: socket,
        path,
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) },
      },
      (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** Writes `text` on a fresh connection and resolves with the first complete answer (Content-Length framed). */
function rawExchange(socket: string, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = connect(socket);
    let got = '';
    const timer = setTimeout(() => c.destroy(new Error(`no answer; got ${JSON.stringify(got.slice(0, 200))}`)), 10_000);
    c.on('data', (b) => {
      got += b.toString('utf8');
      const end = got.indexOf('\r\n\r\n');
      const len = /content-length: (\d+)/i.exec(got)?.[1];
      if (end >= 0 && len !== undefined && got.length >= end + 4 + Number(len)) {
        clearTimeout(timer);
        c.destroy();
        resolve(got);
      }
    });
    c.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    c.write(text);
  });
}
