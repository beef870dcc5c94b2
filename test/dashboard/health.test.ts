/**
 * The dashboard with the health engine (tsvsd --config with checks): both real servers
 * show "up"; stopping one real server's process shows it "down" with the reason of its
 * last failed check, and /metrics agrees. The server keeps its row because the config
 * inhibits it (weight 0) instead of removing it.
 *
 * TSVS_SCREENSHOTS=1 also sends traffic for half a minute first and writes
 * docs/dashboard.png and docs/dashboard-phone.png.
 */
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { writeSharedContent } from '../../src/demo/realserver.js';
import { parsePrometheusText, metricValue } from '../api/promtext.js';
import { ROOT, startTsvsd } from '../daemon/spawn.js';
import type { HealthSource } from '../../src/health/source.js';
import { createControlApp, destConfig, freeVipPort, listen, serviceConfig, startDirector } from '../api/harness.js';
import { freePort, httpGet, startEchoServer } from '../helper.js';
import { haveChromium, launchBrowser } from './browser.js';
import { startRsProcess } from './rsproc.js';

const TOKEN = 'health-dashboard-token-0123456789';

test('the dashboard shows health: up for both, then down with the reason when a real server stops', {
  skip: haveChromium() ? false : 'no /usr/bin/chromium',
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsvs-dash-health-'));
  await writeSharedContent(join(dir, 'www'));
  const rs = [await startRsProcess('rs1', join(dir, 'www')), await startRsProcess('rs2', join(dir, 'www'))];
  const vport = await freePort();
  writeFileSync(
    join(dir, 'tsvs.yaml'),
    `services:
  - address: 127.0.0.1
    port: ${vport}
    scheduler: rr
    check_defaults: { interval: 0.2, timeout: 0.5, retry: 1, delay_before_retry: 0.1, rise: 1 }
    real_servers:
${rs
  .map(
    (r) => `      - address: 127.0.0.1
        port: ${r.port}
        inhibit_on_failure: true
        checks:
          - type: http
            path: /name
            status: 200
`,
  )
  .join('')}`,
  );
  writeFileSync(join(dir, 'token'), TOKEN);
  const d = await startTsvsd(['--config', join(dir, 'tsvs.yaml'), '--api', '127.0.0.1:0', '--api-token-file', join(dir, 'token')], { dir });
  const browser = await launchBrowser();
  try {
    const url = `http://${/"api":"([^"]+)"/.exec(d.logs())![1]}`;
    const page = await browser.context.newPage();
    await page.goto(`${url}/#token=${TOKEN}`);
    const badge = (r: (typeof rs)[number]) => page.locator(`[data-server="127.0.0.1:${r.port}"] .health .badge`).first();
    for (const r of rs)
      await page.waitForFunction(
        (p) => document.querySelector(`[data-server="127.0.0.1:${p}"] .health .badge`)?.textContent === 'up',
        r.port,
      );
    assert.equal(await badge(rs[0]!).textContent(), 'up');

    if (process.env.TSVS_SCREENSHOTS) {
      // Traffic that varies, so the charts have a shape.
      for (let i = 0; i < 30; i++) {
        const n = 4 + Math.round(12 * (1 + Math.sin(i / 3)));
        await Promise.all(Array.from({ length: n }, (_, j) => httpGet('127.0.0.1', vport, { path: j % 3 ? '/' : '/hello.txt' })));
        await new Promise((r) => setTimeout(r, 1000));
      }
    }

    await rs[1]!.stop();
    await page.waitForFunction(
      (p) => document.querySelector(`[data-server="127.0.0.1:${p}"] .health .badge`)?.textContent === 'down',
      rs[1]!.port,
    );
    const reason = await page.locator(`[data-server="127.0.0.1:${rs[1]!.port}"] .health .reason`).textContent();
    assert.match(reason ?? '', /^last check: \S/);
    // Inhibited: still listed, weight 0.
    assert.equal(await page.locator(`[data-server="127.0.0.1:${rs[1]!.port}"] .weight`).textContent(), '0');
    assert.equal(await badge(rs[0]!).textContent(), 'up');

    const m = parsePrometheusText(await (await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text());
    assert.equal(metricValue(m, 'tsvs_backend_health_state', { remote_port: String(rs[1]!.port), state: 'down' }), 1);
    assert.equal(metricValue(m, 'tsvs_backend_health_state', { remote_port: String(rs[0]!.port), state: 'up' }), 1);
    assert.ok(metricValue(m, 'tsvs_backend_health_check_latency_seconds', { remote_port: String(rs[0]!.port) }) >= 0);
    const h = (await (await fetch(`${url}/v1/health`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as Array<{
      server: string;
      state: string;
      lastCheck?: { ok: boolean; reason: string };
    }>;
    const down = h.find((x) => x.server === `127.0.0.1:${rs[1]!.port}`)!;
    assert.equal(down.state, 'down');
    assert.equal(down.lastCheck?.ok, false);
    assert.equal(reason, `last check: ${down.lastCheck!.reason}`);
    if (process.env.TSVS_SCREENSHOTS) {
      await page.screenshot({ path: join(ROOT, 'docs', 'dashboard.png'), fullPage: true });
      const phone = await launchBrowser({ width: 390, height: 844 }, { isMobile: true, deviceScaleFactor: 2 });
      try {
        const p = await phone.context.newPage();
        await p.goto(`${url}/#token=${TOKEN}`);
        await p.waitForFunction(() => Number(document.body.dataset.updates) >= 3);
        await p.screenshot({ path: join(ROOT, 'docs', 'dashboard-phone.png'), fullPage: true });
      } finally {
        await phone.close();
      }
    }
  } finally {
    await browser.close();
    await d.cleanup();
    await Promise.all(rs.map((r) => r.stop()));
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a real server that health checking removed from the table stays on the dashboard, down, with the reason', {
  skip: haveChromium() ? false : 'no /usr/bin/chromium',
}, async () => {
  const d = await startDirector();
  const rs = await startEchoServer('rs1');
  const vport = await freeVipPort();
  await d.director.apply([
    { op: 'add-service', service: serviceConfig(vport) },
    { op: 'add-server', service: serviceConfig(vport), dest: destConfig(rs.port) },
  ]);
  const at = new Date().toISOString();
  const health: HealthSource = {
    get: () => ({ state: 'up', checker: 'tcp', lastCheck: { at, ok: true, reason: 'connected', latencyMs: 1 } }),
    removed: () => [
      {
        id: '127.0.0.1:9',
        health: { state: 'down', checker: 'tcp', lastCheck: { at, ok: false, reason: 'connect ECONNREFUSED', latencyMs: 1 } },
      },
    ],
  };
  const srv = await listen(createControlApp(d.director, { health }));
  const browser = await launchBrowser();
  try {
    const page = await browser.context.newPage();
    await page.goto(srv.url);
    const gone = page.locator('tr.removed[data-server="127.0.0.1:9"]');
    await gone.waitFor();
    assert.equal(await gone.locator('.badge').textContent(), 'down');
    assert.equal(await gone.locator('.reason').textContent(), 'last check: connect ECONNREFUSED');
    assert.match((await gone.textContent()) ?? '', /removed from the table by health checking/);
    assert.equal(await page.locator(`[data-server="127.0.0.1:${rs.port}"] .health .badge`).first().textContent(), 'up');
  } finally {
    await browser.close();
    await srv.close();
    await d.stop();
    await rs.close();
  }
});
