/**
 * A real tsvsd (userspace plane) serves a VIP on loopback while a pathological
 * keepalived.conf is reloaded: an include of a FIFO nobody writes, a file that includes
 * itself five times per level. The reload is refused with a short, named error, tsvsd
 * stays up, and the VIP answers throughout (config reading never blocks the event loop:
 * src/config/read.ts, load-worker.ts). Before issue #13 the FIFO froze the VIP until
 * someone wrote into it, and the fan-out killed tsvsd (heap exhausted).
 */
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startTsvsd, type Tsvsd } from '../daemon/spawn.js';
import { freePort, httpGet } from '../health/helper.js';

const base = (vport: number, rport: number) => `virtual_server 127.0.0.1 ${vport} {
  lb_algo rr
  lb_kind NAT
  protocol TCP
  real_server 127.0.0.1 ${rport} {
    weight 1
  }
}
`;

/** POST /v1/reload on the control socket, with a deadline; the status and body. */
function reload(d: Tsvsd, ms: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const r = request({ socketPath: d.socket, method: 'POST', path: '/v1/reload', timeout: ms }, (res) => {
      let body = '';
      res.on('data', (x) => (body += x));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    r.on('timeout', () => r.destroy(new Error(`no answer to the reload within ${ms} ms`)));
    r.on('error', reject);
    r.end();
  });
}

/** Requests to the VIP, one new connection every 20 ms, until stopped: how many, how many failed, the longest gap between answers. */
function probe(vport: number) {
  let running = true;
  const stats = { ok: 0, failed: 0, maxGapMs: 0 };
  let last = Date.now();
  const done = (async () => {
    while (running) {
      try {
        const r = await httpGet(vport, '/', 10_000);
        if (r.body === 'rs') stats.ok++;
        else stats.failed++;
      } catch {
        stats.failed++;
      }
      const now = Date.now();
      stats.maxGapMs = Math.max(stats.maxGapMs, now - last);
      last = now;
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return {
    stats,
    stop: async () => {
      running = false;
      await done;
      return stats;
    },
  };
}

describe('reload of a pathological keepalived.conf while the VIP serves (issue #13 item 1)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsvs-patho-'));
  const conf = join(dir, 'keepalived.conf');
  const rs = createServer((_q, r) => r.end('rs'));
  let d: Tsvsd;
  let vport = 0;
  let rport = 0;
  before(async () => {
    await new Promise<void>((r) => rs.listen(0, '127.0.0.1', r));
    rport = (rs.address() as AddressInfo).port;
    vport = await freePort();
    writeFileSync(conf, base(vport, rport));
    d = await startTsvsd(['--config', conf], { dir });
    assert.equal((await httpGet(vport)).body, 'rs');
  });
  after(async () => {
    await d?.cleanup();
    rs.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const cases: Array<[string, () => void, RegExp]> = [
    [
      'an include of a FIFO nobody writes',
      () => {
        execFileSync('mkfifo', [join(dir, 'pipe.conf')]);
        writeFileSync(conf, `${base(vport, rport)}include pipe.conf\n`);
      },
      /pipe\.conf is a FIFO, not a regular file/,
    ],
    [
      'a file that includes itself five times per level',
      () => writeFileSync(conf, `${base(vport, rport)}${'include keepalived.conf\n'.repeat(5)}`),
      /nested more than 8 levels \(an include loop\?\)/,
    ],
  ];
  for (const [what, write, why] of cases) {
    test(`${what}: refused with a short error, tsvsd up, the VIP answering throughout`, async () => {
      write();
      const p = probe(vport);
      await new Promise((r) => setTimeout(r, 200));
      const r = await reload(d, 20_000);
      await new Promise((r) => setTimeout(r, 200));
      const s = await p.stop();
      assert.equal(r.status, 422, r.body.slice(0, 500));
      assert.match(r.body, why);
      assert.ok(r.body.length < 64 * 1024, `a reply of ${r.body.length} bytes`);
      assert.equal(d.proc.exitCode, null, 'tsvsd is still running');
      assert.equal(s.failed, 0, 'no request to the VIP failed');
      assert.ok(s.ok >= 5, `${s.ok} requests answered`);
      // A frozen event loop shows as a gap of seconds between answers (5 s and more before the fix).
      assert.ok(s.maxGapMs < 2000, `the VIP went ${s.maxGapMs} ms without answering`);
      assert.match(d.logs(), /reload refused/);
      writeFileSync(conf, base(vport, rport));
    });
  }

  test('the bounds hit count in /metrics (tsvs_config_limit_hits_total)', async () => {
    const text = await new Promise<string>((resolve, reject) => {
      const r = request({ socketPath: d.socket, path: '/metrics' }, (res) => {
        let t = '';
        res.on('data', (x) => (t += x));
        res.on('end', () => resolve(t));
      });
      r.on('error', reject);
      r.end();
    });
    assert.match(text, /tsvs_config_limit_hits_total\{limit="special_file"\} 1/);
    assert.match(text, /tsvs_config_limit_hits_total\{limit="include_depth"\} 1/);
  });
});
