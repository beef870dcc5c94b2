import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { createServer as createHttps } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { tcpCheck } from '../../src/health/tcp.js';
import { httpCheck } from '../../src/health/http.js';
import { udpCheck } from '../../src/health/udp.js';
import { buildDnsQuery, checkDnsReply, dnsCheck } from '../../src/health/dns.js';
import { miscCheck, splitCommand } from '../../src/health/misc.js';
import { checker, httpServer, sleep, TcpServer } from './helper.js';

const target = (port: number) => ({ host: '127.0.0.1', port, serverAddr: '127.0.0.1', serverPort: port });
const tmp = mkdtempSync(join(tmpdir(), 'tsvs-health-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

describe('TCP_CHECK', () => {
  test('up while listening, down with the refusal named once closed', async () => {
    const s = await new TcpServer().open();
    const ok = await tcpCheck(checker('tcp'), target(s.port));
    assert.equal(ok.ok, true);
    await s.close();
    const bad = await tcpCheck(checker('tcp'), target(s.port));
    assert.equal(bad.ok, false);
    assert.match(bad.reason, /ECONNREFUSED/);
  });
});

describe('HTTP_GET / SSL_GET', () => {
  test('expects 200: a server answering 500 is down, with the status in the reason', async () => {
    const srv = await httpServer((_q, r) => {
      r.statusCode = 200;
      r.end('ok');
    });
    after(srv.close);
    const cfg = checker('http', { http: { urls: [{ path: '/health', statusCodes: [[200, 200]] }], sni: false } });
    assert.equal((await httpCheck(cfg, target(srv.port))).ok, true);
    srv.setHandler((_q, r) => {
      r.statusCode = 500;
      r.end('boom');
    });
    const bad = await httpCheck(cfg, target(srv.port));
    assert.equal(bad.ok, false);
    assert.match(bad.reason, /\/health: HTTP status 500, expected 200/);
  });
  test('status_code ranges and lists', async () => {
    const srv = await httpServer((_q, r) => {
      r.statusCode = 302;
      r.end();
    });
    after(srv.close);
    const mk = (codes: Array<[number, number]>) => checker('http', { http: { urls: [{ path: '/', statusCodes: codes }], sni: false } });
    assert.equal((await httpCheck(mk([[300, 399]]), target(srv.port))).ok, true);
    assert.equal((await httpCheck(mk([[200, 299]]), target(srv.port))).ok, false);
    assert.equal(
      (
        await httpCheck(
          mk([
            [200, 200],
            [302, 302],
          ]),
          target(srv.port),
        )
      ).ok,
      true,
    );
  });
  test('digest check catches a changed page; virtualhost is sent as Host', async () => {
    let page = 'version 1';
    let host = '';
    const srv = await httpServer((q, r) => {
      host = q.headers.host ?? '';
      r.end(page);
    });
    after(srv.close);
    const digest = createHash('md5').update('version 1').digest('hex');
    const cfg = checker('http', {
      http: { urls: [{ path: '/index.html', statusCodes: [[200, 299]], digest }], virtualhost: 'www.example.test', sni: false },
    });
    assert.equal((await httpCheck(cfg, target(srv.port))).ok, true);
    assert.equal(host, 'www.example.test');
    page = 'version 2 (defaced)';
    const bad = await httpCheck(cfg, target(srv.port));
    assert.equal(bad.ok, false);
    assert.match(bad.reason, new RegExp(`MD5 digest [0-9a-f]{32}, expected ${digest}`));
  });
  test('a server that never answers fails at connect_timeout', async () => {
    const srv = await httpServer(() => undefined);
    after(srv.close);
    const r = await httpCheck(
      checker('http', { timeout: 0.2, http: { urls: [{ path: '/', statusCodes: [[200, 299]] }], sni: false } }),
      target(srv.port),
    );
    assert.equal(r.ok, false);
    assert.match(r.reason, /timeout after 0.2s/);
  });
  test('SSL_GET talks TLS to a self-signed server without verifying it', async () => {
    const key = join(tmp, 'k.pem');
    const cert = join(tmp, 'c.pem');
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=rs.test', '-keyout', key, '-out', cert, '-days', '1'],
      { stdio: 'ignore' },
    );
    const s = createHttps({ key: readFileSync(key), cert: readFileSync(cert) }, (q, r) => {
      r.statusCode = q.url === '/ok' ? 200 : 404;
      r.end('secure');
    });
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    after(() => {
      s.closeAllConnections();
      s.close();
    });
    const port = (s.address() as AddressInfo).port;
    const mk = (path: string) =>
      checker('https', { http: { urls: [{ path, statusCodes: [[200, 299]] }], sni: true, virtualhost: 'rs.test' } });
    assert.equal((await httpCheck(mk('/ok'), target(port))).ok, true);
    assert.equal((await httpCheck(mk('/missing'), target(port))).ok, false);
  });
});

describe('UDP_CHECK', () => {
  test('require_reply: an echo server is up, a closed port is down', async () => {
    const s = createSocket('udp4');
    s.on('message', (m, rinfo) => s.send(Buffer.concat([Buffer.from('re:'), m]), rinfo.port, rinfo.address));
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
    const port = s.address().port;
    const cfg = checker('udp', { udp: { payload: '70696e67', requireReply: true, minReplyLength: 0, maxReplyLength: 255 } });
    const ok = await udpCheck(cfg, target(port));
    assert.equal(ok.ok, true, ok.reason);
    const tooLong = await udpCheck(
      checker('udp', { udp: { payload: '70696e67', requireReply: true, minReplyLength: 0, maxReplyLength: 3 } }),
      target(port),
    );
    assert.equal(tooLong.ok, false);
    assert.match(tooLong.reason, /reply of 7 bytes/);
    s.close();
    await sleep(20);
    const bad = await udpCheck(cfg, target(port));
    assert.equal(bad.ok, false);
  });
  test('without require_reply, silence is up and ICMP port unreachable is down', async () => {
    const s = createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
    const port = s.address().port;
    const cfg = checker('udp', { timeout: 0.2, udp: { requireReply: false, minReplyLength: 0, maxReplyLength: 255 } });
    assert.equal((await udpCheck(cfg, target(port))).ok, true);
    s.close();
    await sleep(20);
    const bad = await udpCheck(cfg, target(port));
    assert.equal(bad.ok, false);
    assert.match(bad.reason, /ECONNREFUSED/);
  });
});

describe('DNS_CHECK', () => {
  test('the hand-built query is a standard RD query with one question', () => {
    const q = buildDnsQuery(0x1234, 'example.com', 'A');
    assert.equal(q.toString('hex'), '123401000001000000000000076578616d706c6503636f6d0000010001');
    assert.equal(buildDnsQuery(1, '.', 'SOA').toString('hex'), '000101000001000000000000' + '00' + '0006' + '0001');
    assert.throws(() => buildDnsQuery(1, '.', 'PTR'), /DNS type "PTR"/);
  });
  test('a server answering NOERROR with an answer is up; NXDOMAIN, or silence, is down', async () => {
    let rcode = 0;
    const s = createSocket('udp4');
    s.on('message', (m, rinfo) => {
      const r = Buffer.from(m);
      r.writeUInt16BE(0x8180 | rcode, 2);
      r.writeUInt16BE(rcode ? 0 : 1, 6);
      s.send(r, rinfo.port, rinfo.address);
    });
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
    after(() => s.close());
    const cfg = checker('dns', { timeout: 0.3, dns: { type: 'A', name: 'www.example.test' } });
    assert.equal((await dnsCheck(cfg, target(s.address().port))).ok, true);
    rcode = 3;
    const bad = await dnsCheck(cfg, target(s.address().port));
    assert.equal(bad.ok, false);
    assert.equal(bad.reason, 'RCODE 3');
    assert.equal(checkDnsReply(Buffer.alloc(4), 1), 'short reply (4 bytes)');
  });
});

describe('MISC_CHECK', () => {
  const script = (name: string, body: string) => {
    const p = join(tmp, name);
    writeFileSync(p, `#!/bin/sh\n${body}\n`);
    chmodSync(p, 0o755);
    return p;
  };
  test('exit 0 is up, exit 1 is down, arguments are passed', async () => {
    const p = script('exit.sh', 'exit "$1"');
    assert.equal((await miscCheck(checker('misc', { misc: { path: `${p} 0`, timeout: 2, dynamic: false } }), target(1))).ok, true);
    const bad = await miscCheck(checker('misc', { misc: { path: `${p} 1`, timeout: 2, dynamic: false } }), target(1));
    assert.equal(bad.ok, false);
    assert.match(bad.reason, /exited 1/);
    // Without misc_dynamic any other status is a failure too.
    assert.equal((await miscCheck(checker('misc', { misc: { path: `${p} 12`, timeout: 2, dynamic: false } }), target(1))).ok, false);
  });
  test('misc_dynamic: exit 2..255 is up with weight status - 2', async () => {
    const p = script('dyn.sh', 'exit "$1"');
    const r = await miscCheck(checker('misc', { misc: { path: `${p} 12`, timeout: 2, dynamic: true } }), target(1));
    assert.deepEqual([r.ok, r.weight], [true, 10]);
    const one = await miscCheck(checker('misc', { misc: { path: `${p} 1`, timeout: 2, dynamic: true } }), target(1));
    assert.equal(one.ok, false);
  });
  test('a hung script is killed at misc_timeout together with its children', async () => {
    const pidFile = join(tmp, 'child.pid');
    const p = script('hang.sh', `sleep 300 &\necho $! > ${pidFile}\nwait`);
    const t0 = Date.now();
    const r = await miscCheck(checker('misc', { misc: { path: p, timeout: 0.3, dynamic: false } }), target(1));
    assert.equal(r.ok, false);
    assert.match(r.reason, /timed out after 0.3s; killed/);
    assert.ok(Date.now() - t0 < 5000);
    await sleep(100);
    const child = Number(readFileSync(pidFile, 'utf8'));
    // Gone, or a zombie waiting for a reaper: either way no longer running.
    const st = existsSync(`/proc/${child}/status`) ? readFileSync(`/proc/${child}/status`, 'utf8') : 'State: gone';
    assert.match(st, /State:\s+(Z|X|gone)/, "the script's child must be killed with it");
  });
  test('a missing program is a failure naming it', async () => {
    const r = await miscCheck(checker('misc', { misc: { path: '/nonexistent/check', timeout: 1, dynamic: false } }), target(1));
    assert.equal(r.ok, false);
    assert.match(r.reason, /\/nonexistent\/check: ENOENT/);
    assert.ok(!existsSync('/nonexistent/check'));
  });
  test('command lines split like keepalived: quotes group words', () => {
    assert.deepEqual(splitCommand(`/bin/check "a b" 'c d' e`), ['/bin/check', 'a b', 'c d', 'e']);
  });
});
