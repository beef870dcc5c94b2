/**
 * The dashboard in headless Chromium against a director of 10,000 services (built through
 * the core, served in-process): totals over the whole table come first, the page holds at
 * most one page of services, and the search box, the filter chips and the pager narrow
 * and move it through the API's paged status.
 *
 * TSVS_SCREENSHOTS=1 also writes docs/dashboard-10000.png (the first screen).
 */
import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Page } from 'playwright-core';
import { listen } from '../api/harness.js';
import { ROOT } from '../daemon/spawn.js';
import { haveChromium, launchBrowser, type Browser } from './browser.js';
import { SPECIAL, bigDirector, vipOf, type BigDirector } from './big-table.js';

const N = 10_000;
const skip = haveChromium() ? false : 'Debian chromium is not installed (/usr/bin/chromium)';

let b: BigDirector;
let srv: { url: string; close(): Promise<void> };
let browser: Browser | null = null;

before(async () => {
  if (skip) return;
  b = await bigDirector(N, { eventIntervalMs: 300 });
  srv = await listen(b.app);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await srv?.close();
  await b?.stop();
});

const articles = (page: Page) => page.locator('article.service');
const firstIds = (page: Page) => page.$$eval('article.service', (xs) => xs.map((x) => x.getAttribute('data-service')));
/** Waits for a frame rendered after the current one. */
async function nextFrame(page: Page): Promise<void> {
  const n = Number(await page.evaluate(() => document.body.dataset.updates ?? 0));
  await page.waitForFunction((k) => Number(document.body.dataset.updates ?? 0) > k, n);
}

test('with 10,000 services the page shows the totals and one page of services; search, chips and pager move it', { skip }, async () => {
  const page = await browser!.context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${srv.url}/`);

  // Totals over the whole table, first.
  await page.locator('[data-total="services"] .v', { hasText: '10,000' }).waitFor();
  assert.equal(await page.locator('[data-total="servers"] .v').textContent(), '40,000');
  assert.match((await page.locator('[data-total="servers"] .sub').textContent())!, /^1 down · 6 weight 0 · 1 overloaded$/);
  assert.equal(await page.locator('[data-total="nodest"] .v').textContent(), '7');
  const totalsBox = await page.locator('#totals').boundingBox();
  const servicesBox = await page.locator('#services').boundingBox();
  assert.ok(totalsBox!.y < servicesBox!.y, 'totals above the services');

  // One page: 20 services of 4 real servers, the first of the table.
  await page.waitForFunction(() => document.querySelectorAll('article.service').length === 20);
  assert.equal(await page.locator('tr[data-server]').count(), 80);
  assert.deepEqual(await firstIds(page), b.ids.slice(0, 20));
  assert.equal(await page.locator('#pager-top .where').textContent(), '1–20 of 10,000 · page 1 of 500');
  // Several updates later it is still one page.
  await nextFrame(page);
  await nextFrame(page);
  assert.equal(await articles(page).count(), 20);
  if (process.env.TSVS_SCREENSHOTS) await page.screenshot({ path: join(ROOT, 'docs', 'dashboard-10000.png') });

  // Next page.
  await page.locator('#pager-top button.next').click();
  await page.waitForFunction((id) => document.querySelector('article.service')?.getAttribute('data-service') === id, b.ids[20]!);
  assert.equal(await page.locator('#pager-bottom .where').textContent(), '21–40 of 10,000 · page 2 of 500');
  assert.match(page.url(), /[?&]page=2/);

  // The search narrows to one VIP, whatever page we were on.
  const i = 4321;
  await page.locator('#search').fill(`${vipOf(i)}:`);
  await page.waitForFunction((id) => {
    const xs = document.querySelectorAll('article.service');
    return xs.length === 1 && xs[0]!.getAttribute('data-service') === id;
  }, b.ids[i]!);
  assert.equal(await page.locator('#pager-top').isHidden(), true, 'one page: no pager');
  assert.equal(await page.locator('[data-total="services"] .v').textContent(), '10,000', 'the totals stay the whole table');

  // A search that matches nothing says so.
  await page.locator('#search').fill('no-such-service');
  await page.locator('#no-match').waitFor();
  assert.equal(await articles(page).count(), 0);
  await page.locator('#clear').click();
  await page.waitForFunction(() => document.querySelectorAll('article.service').length === 20);
  assert.equal(await page.locator('#search').inputValue(), '');

  // Filter chips carry the count over the whole table, and show only those services.
  const down = page.locator('.chip[data-filter="down"]');
  assert.equal(await down.locator('.n').textContent(), '1');
  await down.click();
  await page.waitForFunction((id) => {
    const xs = document.querySelectorAll('article.service');
    return xs.length === 1 && xs[0]!.getAttribute('data-service') === id;
  }, b.ids[SPECIAL.down]!);
  assert.equal(await down.getAttribute('aria-pressed'), 'true');
  assert.equal(await page.locator('tr[data-server] .badge.down').count(), 1);
  await page.locator('.chip[data-filter="quiesced"]').click();
  await page.waitForFunction(() => document.querySelectorAll('article.service').length === 4);
  await down.click();
  await page.locator('.chip[data-filter="quiesced"]').click();

  // Most connections first (6 active + 2 inactive on every 21st service from 20), 50 a page.
  await page.locator('#sort').selectOption('conns');
  await page.locator('#page-size').selectOption('50');
  await page.waitForFunction(() => document.querySelectorAll('article.service').length === 50);
  assert.deepEqual((await firstIds(page)).slice(0, 3), [b.ids[20], b.ids[41], b.ids[62]]);
  assert.deepEqual(errors, []);
  await page.close();
});

test('a view in the address bar opens as it was shared', { skip }, async () => {
  const page = await browser!.context.newPage();
  await page.goto(`${srv.url}/?q=${encodeURIComponent(':53')}&page=3&size=10`);
  await page.waitForFunction(() => document.querySelectorAll('article.service').length === 10);
  assert.equal(await page.locator('#search').inputValue(), ':53');
  assert.equal(await page.locator('#pager-top .where').textContent(), '21–30 of 1,000 matching (of 10,000) · page 3 of 100');
  assert.deepEqual(await firstIds(page), b.ids.filter((id) => id.startsWith('udp:')).slice(20, 30));
  await page.close();
});
