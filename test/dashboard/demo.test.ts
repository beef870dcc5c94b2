/**
 * `tsvs demo` (npm start) serves the API, /metrics and the dashboard on TCP and prints a
 * dashboard link carrying its token; the page shows the demo's two real servers and its
 * drain button works.
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ENTRY } from '../daemon/spawn.js';
import { freePort, httpGet } from '../helper.js';
import { parsePrometheusText, metricValue } from '../api/promtext.js';
import { haveChromium, launchBrowser } from './browser.js';

test('tsvs demo prints a dashboard link; the dashboard shows rs1 and rs2 and drains one', {
  skip: haveChromium() ? false : 'no /usr/bin/chromium',
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsvs-demo-dash-'));
  const vport = await freePort();
  const env = { ...process.env, TSVS_SOCKET: join(dir, 'tsvsd.sock') };
  const demo = spawn(process.execPath, [ENTRY('tsvs'), 'demo', '--vip', `127.0.0.1:${vport}`, '--api', '127.0.0.1:0'], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  demo.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  demo.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => demo.once('exit', (c) => r(c)));
  const browser = await launchBrowser();
  try {
    while (!out.includes('Ctrl-C stops the demo')) {
      assert.equal(demo.exitCode, null, `demo exited early: ${out}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const link = /dashboard (http:\/\/127\.0\.0\.1:(\d+)\/#token=(\S+))/.exec(out);
    assert.ok(link, out);
    const base = `http://127.0.0.1:${link[2]}`;
    for (let i = 0; i < 4; i++) await httpGet('127.0.0.1', vport, { path: '/name' });
    const m = parsePrometheusText(await (await fetch(`${base}/metrics`)).text());
    assert.equal(metricValue(m, 'node_ipvs_connections_total'), 4);
    assert.equal(m.get('node_ipvs_backend_weight')!.samples.length, 2);

    const page = await browser.context.newPage();
    await page.goto(link[1]!);
    const rows = page.locator(`[data-service="tcp:127.0.0.1:${vport}"] tr[data-server]`);
    await rows.nth(1).waitFor();
    assert.equal(await rows.count(), 2);
    await page.waitForFunction(
      () => [...document.querySelectorAll('tr[data-server] .conns')].map((e) => Number(e.textContent)).join() === '2,2',
    );
    await rows.nth(0).locator('button.drain').click();
    await page.waitForFunction(() => document.querySelector('tr[data-server] .weight')?.textContent === '0');
    // Every new connection now goes to the other server.
    const names = new Set<string>();
    for (let i = 0; i < 4; i++) names.add((await httpGet('127.0.0.1', vport, { path: '/name' })).server);
    assert.equal(names.size, 1);
  } finally {
    await browser.close();
    demo.kill('SIGINT');
    const code = await exited;
    rmSync(dir, { recursive: true, force: true });
    assert.equal(code, 0, out);
  }
});
