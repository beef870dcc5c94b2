/**
 * Reload of the real tsvsd (SIGHUP) on loopback: hitless under load, health state carried
 * over, tsvsadm changes kept by the documented rule, and every bad config refused with the
 * running table untouched.
 */
import { strict as assert } from 'node:assert';
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { BIN, startTsvsd, type Tsvsd } from '../daemon/spawn.js';
import { freePort, httpGet, RsProcess, sleep } from '../health/helper.js';

interface Svc {
  vport: number;
  scheduler?: string;
  servers: Array<{ port: number; weight?: number; inhibit?: boolean }>;
}

function yaml(svcs: Svc[]): string {
  return `services:\n${svcs
    .map(
      (s) => `  - address: 127.0.0.1
    port: ${s.vport}
    scheduler: ${s.scheduler ?? 'rr'}
    check_defaults: { interval: 0.2, timeout: 0.5, retry: 1, delay_before_retry: 0.1 }
    real_servers:
${s.servers
  .map(
    (r) => `      - address: 127.0.0.1
        port: ${r.port}
        weight: ${r.weight ?? 1}
${r.inhibit ? '        inhibit_on_failure: true\n' : ''}        checks: [{ type: tcp }]
`,
  )
  .join('')}`,
    )
    .join('')}`;
}

const stripTable = (t: Awaited<ReturnType<Tsvsd['client']['getTable']>>) =>
  t.services.map(({ stats: _s, rates: _r, dests, ...rest }) => ({
    ...rest,
    dests: dests.map(({ stats: _a, rates: _b, activeconns: _c, inactconns: _d, persistconns: _e, ...x }) => x),
  }));

async function dests(d: Tsvsd, vport: number): Promise<Map<number, number>> {
  const svc = (await d.client.getTable()).services.find((s) => s.port === vport);
  return new Map((svc?.dests ?? []).map((x) => [x.port, x.weight]));
}

async function until(f: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const t0 = Date.now();
  while (!(await f())) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

/** Sends SIGHUP and waits for the daemon to log the outcome; returns the new log text. */
async function hup(d: Tsvsd): Promise<string> {
  const before = d.logs().length;
  d.proc.kill('SIGHUP');
  await until(async () => /"msg":"(reloaded|reload refused)/.test(d.logs().slice(before)), 5000, 'reload outcome');
  return d.logs().slice(before);
}

/** Keeps `workers` loops of new-connection HTTP GETs running through the VIP until stopped. */
function load(vport: number, workers: number) {
  let running = true;
  const stats = { ok: 0, failed: 0, errors: [] as string[], by: new Map<string, number>() };
  const loops = Array.from({ length: workers }, async () => {
    while (running) {
      try {
        const r = await httpGet(vport, '/', 5000);
        if (r.status === 200) {
          stats.ok++;
          const who = r.body.trim();
          stats.by.set(who, (stats.by.get(who) ?? 0) + 1);
        } else {
          stats.failed++;
          stats.errors.push(`HTTP ${r.status}`);
        }
      } catch (e) {
        stats.failed++;
        stats.errors.push((e as Error).message);
      }
    }
  });
  return {
    stats,
    stop: async () => {
      running = false;
      await Promise.all(loops);
      return stats;
    },
  };
}

describe('reload (SIGHUP) of a running tsvsd', () => {
  const cleanup: Array<() => Promise<unknown>> = [];
  after(async () => {
    for (const c of cleanup.reverse()) await c();
  });

  test('under load: zero failed requests when a server is added, one removed with inhibit, and an unrelated service changes', async (t) => {
    const rs = await Promise.all(['rs1', 'rs2', 'rs3', 'rs4'].map((n) => new RsProcess(n).start(0)));
    cleanup.push(() => Promise.all(rs.map((r) => r.kill())));
    const [r1, r2, r3, r4] = rs as [RsProcess, RsProcess, RsProcess, RsProcess];
    const web = await freePort();
    const other = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'tsvs-reload-'));
    const cfg = join(dir, 'tsvs.yaml');
    const A = (servers: Svc['servers']): Svc => ({ vport: web, servers });
    writeFileSync(cfg, yaml([A([{ port: r1.port }, { port: r2.port, inhibit: true }]), { vport: other, servers: [{ port: r3.port }] }]));
    const d = await startTsvsd(['--config', cfg], { dir });
    cleanup.push(() => d.cleanup());
    await until(async () => (await dests(d, web)).size === 2, 3000, 'start');

    const l = load(web, 8);
    await sleep(700);
    // 1. A real server is added.
    writeFileSync(
      cfg,
      yaml([A([{ port: r1.port }, { port: r2.port, inhibit: true }, { port: r4.port }]), { vport: other, servers: [{ port: r3.port }] }]),
    );
    assert.match(await hup(d), /reload: add-server tcp:127\.0\.0\.1:\d+ -> 127\.0\.0\.1:\d+/);
    await sleep(700);
    // 2. rs2 leaves the config; it has inhibit_on_failure: weight 0 first, deleted once drained.
    writeFileSync(cfg, yaml([A([{ port: r1.port }, { port: r4.port }]), { vport: other, servers: [{ port: r3.port }] }]));
    assert.match(await hup(d), /quiesce .* \(removed, inhibit_on_failure: deleted once drained\)/);
    await sleep(700);
    // 3. An unrelated service changes (scheduler and weight).
    writeFileSync(
      cfg,
      yaml([A([{ port: r1.port }, { port: r4.port }]), { vport: other, scheduler: 'wrr', servers: [{ port: r3.port, weight: 5 }] }]),
    );
    const log3 = await hup(d);
    assert.match(log3, /edit service tcp:127\.0\.0\.1:\d+/);
    assert.doesNotMatch(log3, new RegExp(`-> 127\\.0\\.0\\.1:(${r1.port}|${r4.port})`), 'service web is not touched');
    await sleep(700);
    const s = await l.stop();
    assert.equal(s.failed, 0, `failed requests: ${s.errors.slice(0, 5).join('; ')}`);
    t.diagnostic(`${s.ok} requests, 0 failed; per server ${JSON.stringify([...s.by])}`);
    assert.ok(s.ok > 100, `${s.ok} requests`);
    assert.ok((s.by.get('rs4') ?? 0) > 0, 'the added server took traffic');
    await until(async () => !(await dests(d, web)).has(r2.port), 3000, 'rs2 deleted after draining');
    const svcOther = (await d.client.getTable()).services.find((x) => x.port === other)!;
    assert.deepEqual([svcOther.scheduler, svcOther.dests[0]!.weight], ['wrr', 5]);
  });

  test('health state survives a reload, tsvsadm additions are kept, and every bad config is refused with the table unchanged', async () => {
    const rs = await Promise.all(['a', 'b'].map((n) => new RsProcess(n).start(0)));
    cleanup.push(() => Promise.all(rs.map((r) => r.kill())));
    const [a, b] = rs as [RsProcess, RsProcess];
    const web = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'tsvs-reload-'));
    const cfg = join(dir, 'tsvs.conf');
    writeFileSync(cfg, yaml([{ vport: web, servers: [{ port: a.port }, { port: b.port }] }]));
    const d = await startTsvsd(['--config', cfg], { dir });
    cleanup.push(() => d.cleanup());
    await a.kill();
    await until(async () => !(await dests(d, web)).has(a.port), 3000, 'a removed');

    // tsvsadm (the API) adds a server to the declared service and a service of its own.
    const extraPort = await freePort();
    const svcKey = { af: 4 as const, protocol: 'tcp' as const, addr: '127.0.0.1', port: web, fwmark: 0 };
    const own = { ...svcKey, port: extraPort, scheduler: 'rr', schedFlags: 0, persistent: 0, netmask: 0xffffffff, ops: false, pe: '' };
    await d.client.apply([
      {
        op: 'add-server',
        service: svcKey,
        dest: { af: 4, addr: '127.0.0.9', port: 9999, weight: 1, fwd: 'masq', uThreshold: 0, lThreshold: 0 },
      },
      { op: 'add-service', service: own },
    ]);

    // A reload with an unrelated change: a stays out (no flap), b stays in, the tsvsadm changes stay.
    writeFileSync(cfg, yaml([{ vport: web, servers: [{ port: a.port }, { port: b.port, weight: 2 }] }]));
    const out = await hup(d);
    assert.match(out, /reloaded/);
    for (let i = 0; i < 10; i++) {
      assert.equal((await dests(d, web)).has(a.port), false, 'a is still down after the reload');
      await sleep(50);
    }
    const now = await dests(d, web);
    assert.equal(now.get(b.port), 2);
    assert.equal(now.get(9999), 1, 'the server added with tsvsadm is kept');
    assert.ok(
      (await d.client.getTable()).services.some((s) => s.port === extraPort),
      'the service added with tsvsadm is kept',
    );

    // Every bad config is refused; the table does not move.
    const good = stripTable(await d.client.getTable());
    const badDir = join(import.meta.dirname, 'fixtures', 'bad');
    const bad = readdirSync(badDir).sort();
    for (const f of bad) {
      copyFileSync(join(badDir, f), cfg);
      const log = await hup(d);
      assert.match(log, /reload refused/, `${f} must be refused`);
      assert.deepEqual(stripTable(await d.client.getTable()), good, `${f} left the table unchanged`);
    }
    // The refusal names file:line:column.
    copyFileSync(join(badDir, 'yaml-unknown-service-key.yaml'), cfg);
    assert.match(await hup(d), /tsvs\.conf:5:5: services\[0\]\.schedular: unknown key/);
    // SIGHUP reloads are counted in /metrics: one success above, then one failure per bad file.
    const metrics = await getPath(d.socket, '/metrics');
    assert.match(metrics, /tsvs_config_reloads_total\{result="success"\} 1\n/);
    assert.match(metrics, new RegExp(`tsvs_config_reloads_total\\{result="failure"\\} ${bad.length + 1}\\n`));
    // The same through the API: POST /v1/reload refuses with the place of the error, then applies a good file.
    const refused = await postReload(d.socket);
    assert.equal(refused.status, 422);
    assert.match(refused.body, /tsvs\.conf:5:5: services\[0\]\.schedular: unknown key/);
    writeFileSync(cfg, yaml([{ vport: web, servers: [{ port: a.port }, { port: b.port, weight: 3 }] }]));
    const okReload = await postReload(d.socket);
    assert.equal(okReload.status, 200);
    assert.deepEqual(JSON.parse(okReload.body).changes, [`edit-server tcp:127.0.0.1:${web} -> 127.0.0.1:${b.port}`]);
    // Traffic still flows to b (once the placeholder server added with tsvsadm is gone).
    await d.client.apply([{ op: 'delete-server', service: svcKey, dest: { af: 4, addr: '127.0.0.9', port: 9999 } }]);
    assert.equal((await httpGet(web)).body.trim(), 'b');
  });
});

function getPath(socket: string, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, path }, (res) => {
      let body = '';
      res.on('data', (x) => (body += x));
      res.on('end', () => resolve(body));
    });
    req.on('error', reject);
    req.end();
  });
}

function postReload(socket: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, method: 'POST', path: '/v1/reload' }, (res) => {
      let body = '';
      res.on('data', (x) => (body += x));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('tsvsd --config at start', () => {
  test('a bad config stops the start with every error as file:line:column, exit 1', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsvs-start-'));
    const cfg = join(dir, 'keepalived.conf');
    writeFileSync(cfg, 'virtual_server 10.0.0.1 80 {\n    lb_kidn NAT\n    real_server 10.0.1.1 80 {\n        weight lots\n    }\n}\n');
    const r = spawnSync(BIN('tsvsd'), ['--socket', join(dir, 's.sock'), '--config', cfg], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.status, 1);
    assert.equal(
      r.stderr,
      `tsvsd: invalid configuration:\n${cfg}:2:5: unknown keyword "lb_kidn" in virtual_server 10.0.0.1 80 (did you mean "lb_kind"?)\n${cfg}:4:9: weight: expected an integer from 0 to 65535, got "lots"\n`,
    );
  });
});

describe('reload under wrk', () => {
  const hasWrk = spawnSync('wrk', ['--version']).error === undefined;
  const cleanup: Array<() => Promise<unknown>> = [];
  after(async () => {
    for (const c of cleanup.reverse()) await c();
  });
  test('wrk through the VIP sees no socket error and no non-2xx across three reloads', {
    skip: hasWrk ? false : 'wrk is not installed',
  }, async (t) => {
    const rs = await Promise.all(['w1', 'w2', 'w3', 'w4'].map((n) => new RsProcess(n).start(0)));
    cleanup.push(() => Promise.all(rs.map((r) => r.kill())));
    const [r1, r2, r3, r4] = rs as [RsProcess, RsProcess, RsProcess, RsProcess];
    const web = await freePort();
    const other = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'tsvs-wrk-'));
    const cfg = join(dir, 'tsvs.yaml');
    const write = (webServers: Svc['servers'], otherSvc: Svc) => writeFileSync(cfg, yaml([{ vport: web, servers: webServers }, otherSvc]));
    write([{ port: r1.port }, { port: r2.port, inhibit: true }], { vport: other, servers: [{ port: r3.port }] });
    const d = await startTsvsd(['--config', cfg], { dir });
    cleanup.push(() => d.cleanup());
    await until(async () => (await dests(d, web)).size === 2, 3000, 'start');
    // Half the wrk connections are new for every request (Connection: close), half keep alive.
    const run = (extra: string[]) =>
      new Promise<string>((resolve) => {
        const p = spawn('wrk', ['-t1', '-c8', '-d4s', ...extra, `http://127.0.0.1:${web}/`], { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        p.stdout.on('data', (x: Buffer) => (out += x));
        p.stderr.on('data', (x: Buffer) => (out += x));
        p.on('exit', () => resolve(out));
      });
    const runs = Promise.all([run([]), run(['-H', 'Connection: close'])]);
    await sleep(800);
    write([{ port: r1.port }, { port: r2.port, inhibit: true }, { port: r4.port }], { vport: other, servers: [{ port: r3.port }] });
    assert.match(await hup(d), /"msg":"reloaded/);
    await sleep(800);
    write([{ port: r1.port }, { port: r4.port }], { vport: other, servers: [{ port: r3.port }] });
    assert.match(await hup(d), /"msg":"reloaded/);
    await sleep(800);
    write([{ port: r1.port }, { port: r4.port }], { vport: other, scheduler: 'wlc', servers: [{ port: r3.port, weight: 3 }] });
    assert.match(await hup(d), /"msg":"reloaded/);
    const outs = await runs;
    for (const out of outs) {
      const reqs = /(\d+) requests in/.exec(out);
      assert.ok(reqs && Number(reqs[1]) > 100, out);
      assert.doesNotMatch(out, /Socket errors|Non-2xx/, out);
      t.diagnostic(`wrk: ${reqs![1]} requests, no socket error, no non-2xx`);
    }
  });
});
