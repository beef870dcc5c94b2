/**
 * The dashboard in headless Chromium against the real tsvsd binary with two real servers,
 * each in its own process: both are shown, traffic moves the counters and charts, a
 * stopped real server's failed connects are counted and flagged, and the buttons drain,
 * restore and re-weight a server through the API with the token.
 */
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Page } from 'playwright-core';
import { HttpControlClient } from '../../src/api/client.js';
import { writeSharedContent } from '../../src/demo/realserver.js';
import { startTsvsd, type Tsvsd } from '../daemon/spawn.js';
import { freePort, httpGet } from '../helper.js';
import { haveChromium, launchBrowser, type Browser } from './browser.js';
import { startRsProcess, type RsProc } from './rsproc.js';

const TOKEN = 'dashboard-test-token-0123456789ab';

const skip = haveChromium() ? false : 'Debian chromium is not installed (/usr/bin/chromium)';

let dir: string;
let d: Tsvsd;
let rs: RsProc[] = [];
let browser: Browser | null = null;
let vport: number;
let api: HttpControlClient;
let url: string;

before(async () => {
  if (skip) return;
  dir = mkdtempSync(join(tmpdir(), 'tsvs-dash-'));
  await writeSharedContent(join(dir, 'www'));
  rs = [await startRsProcess('rs1', join(dir, 'www')), await startRsProcess('rs2', join(dir, 'www'))];
  writeFileSync(join(dir, 'token'), `${TOKEN}\n`);
  // No redispatch: the connections rr sends to a stopped server must fail, so the page has failures to count.
  d = await startTsvsd(['--api', '127.0.0.1:0', '--api-token-file', join(dir, 'token'), '--redispatch-retries', '0'], { dir });
  const apiAddr = /"api":"([^"]+)"/.exec(d.logs())?.[1];
  assert.ok(apiAddr, d.logs());
  assert.doesNotMatch(d.logs(), new RegExp(TOKEN), 'the token is never logged');
  url = `http://${apiAddr}`;
  api = new HttpControlClient({ baseUrl: url, token: TOKEN });
  vport = await freePort();
  const service = {
    af: 4 as const,
    protocol: 'tcp' as const,
    addr: '127.0.0.1',
    port: vport,
    fwmark: 0,
    scheduler: 'rr',
    schedFlags: 0,
    persistent: 0,
    netmask: 0xffffffff,
    ops: false,
    pe: '',
  };
  await api.apply([
    { op: 'add-service', service },
    ...rs.map((r) => ({
      op: 'add-server' as const,
      service,
      dest: { af: 4 as const, addr: '127.0.0.1', port: r.port, weight: 1, fwd: 'masq' as const, uThreshold: 0, lThreshold: 0 },
    })),
  ]);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await d?.cleanup();
  await Promise.all(rs.map((r) => r.stop()));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const row = (page: Page, r: RsProc) => page.locator(`[data-server="127.0.0.1:${r.port}"]`);
const cellNum = async (page: Page, r: RsProc, cls: string) => Number(await row(page, r).locator(`.${cls}`).textContent());

test('the dashboard shows both real servers, moves with traffic, counts a stopped server, and drains with the button', {
  skip,
}, async () => {
  const page = await browser!.context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${url}/#token=${TOKEN}`);
  // The token leaves the address bar at once.
  assert.doesNotMatch(page.url(), /token/);

  // Both real servers of the service, with their weights.
  await row(page, rs[0]!).waitFor();
  await row(page, rs[1]!).waitFor();
  await page.locator(`[data-service="tcp:127.0.0.1:${vport}"]`).waitFor();
  assert.equal(await cellNum(page, rs[0]!, 'weight'), 1);
  assert.equal(await cellNum(page, rs[1]!, 'weight'), 1);
  assert.equal(await page.locator('#vrrp').textContent(), 'not configured');
  assert.equal(await row(page, rs[0]!).locator('.health .badge').first().textContent(), 'unchecked');

  // Traffic through the VIP: per-server counters and the charts move.
  const served: string[] = [];
  for (let i = 0; i < 20; i++) served.push((await httpGet('127.0.0.1', vport, { path: '/' })).server);
  assert.equal(served.filter((s) => s === 'rs1').length, 10);
  await page.waitForFunction(
    ([p1, p2]) =>
      Number(document.querySelector(`[data-server="127.0.0.1:${p1}"] .conns`)?.textContent) === 10 &&
      Number(document.querySelector(`[data-server="127.0.0.1:${p2}"] .conns`)?.textContent) === 10,
    [rs[0]!.port, rs[1]!.port],
  );
  // The rate charts drew a non-zero point from the counters' deltas.
  await page.waitForFunction(() => Number((document.querySelector('svg.chart.conns') as SVGElement | null)?.dataset.max) > 0);
  await page.waitForFunction(() => Number((document.querySelector('svg.chart.bytes') as SVGElement | null)?.dataset.max) > 0);
  assert.ok(Number(await page.locator('[data-total="conns"] .v').textContent()) >= 20);

  // Stop rs2's process: the connections rr sends it fail, and the dashboard counts and flags them.
  await rs[1]!.stop();
  const outcomes: boolean[] = [];
  for (let i = 0; i < 6; i++)
    outcomes.push(
      await httpGet('127.0.0.1', vport, { path: '/' }).then(
        () => true,
        () => false,
      ),
    );
  const failed = outcomes.filter((ok) => !ok).length;
  assert.equal(failed, 3, 'every other connection went to the stopped server');
  await page.waitForFunction(([p, n]) => Number(document.querySelector(`[data-server="127.0.0.1:${p}"] .failures`)?.textContent) === n, [
    rs[1]!.port,
    failed,
  ] as const);
  await row(page, rs[1]!).locator('.badge.failing').waitFor();
  assert.equal(await cellNum(page, rs[0]!, 'failures'), 0);

  // Drain rs1 with the button: weight 0 in the table, "drained" on the page; then restore it.
  await row(page, rs[0]!).locator('button.drain').click();
  await page.waitForFunction((p) => document.querySelector(`[data-server="127.0.0.1:${p}"] .weight`)?.textContent === '0', rs[0]!.port);
  await row(page, rs[0]!).locator('.badge.drained').waitFor();
  const drained = await api.server(`tcp:127.0.0.1:${vport}`, `127.0.0.1:${rs[0]!.port}`);
  assert.equal(drained.weight, 0);
  assert.equal(drained.drainedFrom, 1);
  await row(page, rs[0]!).locator('button.restore').click();
  await page.waitForFunction((p) => document.querySelector(`[data-server="127.0.0.1:${p}"] .weight`)?.textContent === '1', rs[0]!.port);
  assert.equal((await api.server(`tcp:127.0.0.1:${vport}`, `127.0.0.1:${rs[0]!.port}`)).weight, 1);

  // Weight change with the input.
  await row(page, rs[0]!).locator('input.weight-input').fill('3');
  await row(page, rs[0]!).locator('button.set-weight').click();
  await page.waitForFunction((p) => document.querySelector(`[data-server="127.0.0.1:${p}"] .weight`)?.textContent === '3', rs[0]!.port);
  assert.equal((await api.server(`tcp:127.0.0.1:${vport}`, `127.0.0.1:${rs[0]!.port}`)).weight, 3);
  assert.deepEqual(errors, []);
  await page.close();
});

test('without the token the page asks for it and shows nothing; the API refuses reads and changes', { skip }, async () => {
  const page = await browser!.context.newPage();
  await page.addInitScript(() => sessionStorage.clear());
  await page.goto(`${url}/dashboard`);
  await page.locator('#token-form').waitFor();
  await page.locator('#message', { hasText: 'This API needs its token' }).waitFor();
  assert.equal(await page.locator('tr[data-server]').count(), 0);
  const drain = `/v1/services/${encodeURIComponent(`tcp:127.0.0.1:${vport}`)}/servers/${encodeURIComponent(`127.0.0.1:${rs[0]!.port}`)}/drain`;
  const statuses = await page.evaluate(
    async ([d]) => [(await fetch(d!, { method: 'POST' })).status, (await fetch('/v1/status')).status, (await fetch('/metrics')).status],
    [drain],
  );
  assert.deepEqual(statuses, [401, 401, 401]);
  // Entering the token in the form brings the data and the buttons.
  await page.locator('#token').fill(TOKEN);
  await page.locator('#token-form button').click();
  await row(page, rs[0]!).waitFor();
  assert.equal(await row(page, rs[0]!).locator('button.drain').isVisible(), true);
  await page.close();
});

test('on a phone-sized screen every real server is readable', { skip }, async () => {
  const phone = await launchBrowser({ width: 390, height: 844 }, { isMobile: true, deviceScaleFactor: 2 });
  try {
    const page = await phone.context.newPage();
    await page.goto(`${url}/#token=${TOKEN}`);
    await row(page, rs[0]!).waitFor();
    await page.waitForFunction(() => Number(document.body.dataset.updates) >= 2);
    // No horizontal scrolling: the table turned into cards.
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 0, `page is ${overflow}px wider than the screen`);
    assert.ok(await row(page, rs[0]!).locator('.conns').isVisible());
  } finally {
    await phone.close();
  }
});
