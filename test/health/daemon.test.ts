/**
 * Health checking in the real tsvsd (built binary, userspace data plane) on loopback: real
 * servers are separate processes that the test kills; traffic goes through the VIP.
 */
import { strict as assert } from 'node:assert';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { startTsvsd, type Tsvsd } from '../daemon/spawn.js';
import { freePort, httpGet, RsProcess, sleep } from './helper.js';

const INTERVAL = 0.2;
const RETRY = 2;

function yamlConfig(vport: number, servers: Array<{ port: number; inhibit?: boolean }>, extra = ''): string {
  return `services:
  - address: 127.0.0.1
    port: ${vport}
    scheduler: rr
    check_defaults: { interval: ${INTERVAL}, timeout: 0.5, retry: ${RETRY}, delay_before_retry: 0.1, rise: 2 }
${extra}    real_servers:
${servers
  .map(
    (s) => `      - address: 127.0.0.1
        port: ${s.port}
${s.inhibit ? '        inhibit_on_failure: true\n' : ''}        checks:
          - type: http
            path: /
            status: 200
`,
  )
  .join('')}`;
}

/** GET on the control socket; the body as text. */
async function apiGet(d: Tsvsd, path: string): Promise<string> {
  const { request } = await import('node:http');
  return new Promise<string>((resolve, reject) => {
    const r = request({ socketPath: d.socket, path }, (res) => {
      let t = '';
      res.on('data', (x) => (t += x));
      res.on('end', () => resolve(t));
    });
    r.on('error', reject);
    r.end();
  });
}

async function destsOf(d: Tsvsd, vport: number): Promise<Map<number, number>> {
  const t = await d.client.getTable();
  const svc = t.services.find((s) => s.port === vport);
  return new Map((svc?.dests ?? []).map((x) => [x.port, x.weight]));
}

async function waitTable(d: Tsvsd, vport: number, f: (m: Map<number, number>) => boolean, ms: number, what: string): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    if (f(await destsOf(d, vport))) return Date.now() - t0;
    if (Date.now() - t0 > ms)
      throw new Error(
        `timed out after ${ms} ms waiting for ${what}: ${JSON.stringify([...(await destsOf(d, vport))])}\n${d.logs().slice(-3000)}`,
      );
    await sleep(20);
  }
}

describe('tsvsd with health checks (YAML config, userspace data plane)', () => {
  const cleanup: Array<() => Promise<unknown>> = [];
  after(async () => {
    for (const c of cleanup.reverse()) await c();
  });

  test('a killed real server leaves rotation within interval x (retry+1) + margin, gets no request, and returns after rise checks', async () => {
    const a = await new RsProcess('rs-a').start(0);
    const b = await new RsProcess('rs-b').start(0);
    cleanup.push(
      () => a.kill(),
      () => b.kill(),
    );
    const vport = await freePort();
    const dir = (await import('node:fs')).mkdtempSync(join((await import('node:os')).tmpdir(), 'tsvs-h-'));
    const cfg = join(dir, 'tsvs.yaml');
    writeFileSync(cfg, yamlConfig(vport, [{ port: a.port }, { port: b.port }]));
    const d = await startTsvsd(['--config', cfg], { dir });
    cleanup.push(() => d.cleanup());
    await waitTable(d, vport, (m) => m.size === 2, 3000, 'both servers');
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) seen.add((await httpGet(vport)).body.trim());
    assert.deepEqual([...seen].sort(), ['rs-a', 'rs-b']);

    await a.kill();
    const budget = INTERVAL * 1000 * (RETRY + 1) + 0.1 * 1000 * RETRY + 1500;
    await waitTable(d, vport, (m) => !m.has(a.port), budget, 'rs-a removed');
    const bodies: string[] = [];
    for (let i = 0; i < 20; i++) bodies.push((await httpGet(vport)).body.trim());
    assert.deepEqual([...new Set(bodies)], ['rs-b'], 'every request after removal went to rs-b and succeeded');
    // Removed by its check, rs-a stays listed (docs/health.md): /v1/health with inTable false, the status page as removed.
    const listed = (JSON.parse(await apiGet(d, '/v1/health')) as Array<Record<string, unknown>>).find(
      (x) => x.server === `127.0.0.1:${a.port}`,
    );
    assert.equal(listed?.inTable, false, 'the removed server is listed with inTable: false');
    assert.equal(listed?.state, 'down');
    assert.equal((listed?.lastCheck as { ok: boolean } | undefined)?.ok, false);
    const status = JSON.parse(await apiGet(d, '/v1/status')) as { services: Array<{ removed: Array<{ id: string }> }> };
    assert.deepEqual(
      status.services.flatMap((x) => x.removed.map((r) => r.id)),
      [`127.0.0.1:${a.port}`],
      'the status view (dashboard, tsvs top) lists it as removed',
    );
    assert.match(
      d.logs(),
      new RegExp(`HTTP check of 127.0.0.1:${a.port} in TCP 127.0.0.1:${vport} failed after ${RETRY} retries \\([^)]*\\); removed`),
    );

    await a.start(a.port);
    await waitTable(d, vport, (m) => m.get(a.port) === 1, 5000, 'rs-a back');
    const back = new Set<string>();
    for (let i = 0; i < 6; i++) back.add((await httpGet(vport)).body.trim());
    assert.deepEqual([...back].sort(), ['rs-a', 'rs-b']);
    assert.match(d.logs(), /passed 2 times \(\/ ok\); restored with weight 1/);
    // The API sees the health state.
    const health = await apiGet(d, '/v1/health');
    assert.match(health, /"state":"up"/);
    assert.doesNotMatch(health, /"inTable":false/);
  });

  test('inhibit_on_failure: weight 0 instead, and an open connection finishes', async () => {
    const a = await new RsProcess('rs-a').start(0);
    const b = await new RsProcess('rs-b').start(0);
    cleanup.push(
      () => a.kill(),
      () => b.kill(),
    );
    const vport = await freePort();
    const dir = (await import('node:fs')).mkdtempSync(join((await import('node:os')).tmpdir(), 'tsvs-h-'));
    const cfg = join(dir, 'tsvs.yaml');
    // rs-a's check goes to a port that the test controls, so the check can fail while rs-a keeps serving.
    const probe = await new RsProcess('probe').start(0);
    cleanup.push(() => probe.kill());
    writeFileSync(
      cfg,
      yamlConfig(vport, [{ port: a.port, inhibit: true }, { port: b.port }]).replace(
        `        inhibit_on_failure: true\n        checks:\n          - type: http\n`,
        `        inhibit_on_failure: true\n        checks:\n          - type: http\n            connect_port: ${probe.port}\n`,
      ),
    );
    const d = await startTsvsd(['--config', cfg], { dir });
    cleanup.push(() => d.cleanup());
    await waitTable(d, vport, (m) => m.size === 2, 3000, 'both servers');
    // Two slow downloads: round robin puts one on each server.
    const slows = [httpGet(vport, '/slow?ms=1500'), httpGet(vport, '/slow?ms=1500')];
    await sleep(150);
    await probe.kill();
    await waitTable(d, vport, (m) => m.get(a.port) === 0, 3000, 'rs-a weight 0');
    const bodies = new Set<string>();
    for (let i = 0; i < 10; i++) bodies.add((await httpGet(vport)).body.trim());
    assert.deepEqual([...bodies], ['rs-b'], 'no new request goes to the weight-0 server');
    const done = await Promise.all(slows);
    assert.deepEqual(
      done.map((r) => r.status),
      [200, 200],
    );
    assert.ok(
      done.some((r) => r.body === 'rs-a start\nrs-a end\n'),
      'the download open on rs-a finished after its weight went to 0',
    );
    assert.match(d.logs(), /weight set to 0 \(inhibit_on_failure\)/);
  });

  test('the sorry server takes traffic when every real server is down and stops when one returns', async () => {
    const a = await new RsProcess('rs-a').start(0);
    const sorry = await new RsProcess('sorry').start(0);
    cleanup.push(
      () => a.kill(),
      () => sorry.kill(),
    );
    const vport = await freePort();
    const dir = (await import('node:fs')).mkdtempSync(join((await import('node:os')).tmpdir(), 'tsvs-h-'));
    const cfg = join(dir, 'keepalived.conf');
    writeFileSync(
      cfg,
      `virtual_server 127.0.0.1 ${vport} {
    delay_loop ${INTERVAL}
    lb_algo rr
    lb_kind NAT
    protocol TCP
    sorry_server 127.0.0.1 ${sorry.port}
    real_server 127.0.0.1 ${a.port} {
        weight 1
        TCP_CHECK {
            connect_timeout 0.5
            retry 1
            delay_before_retry 0.1
        }
    }
}
`,
    );
    const d = await startTsvsd(['--config', cfg], { dir });
    cleanup.push(() => d.cleanup());
    assert.equal((await httpGet(vport)).body.trim(), 'rs-a');
    await a.kill();
    await waitTable(d, vport, (m) => m.has(sorry.port) && !m.has(a.port), 3000, 'sorry server in');
    assert.equal((await httpGet(vport)).body.trim(), 'sorry');
    await a.start(a.port);
    await waitTable(d, vport, (m) => m.has(a.port) && !m.has(sorry.port), 3000, 'sorry server out');
    for (let i = 0; i < 4; i++) assert.equal((await httpGet(vport)).body.trim(), 'rs-a');
    assert.match(d.logs(), /quorum lost \(live weight 0 < 1\); real servers out, sorry server in/);
  });
});
