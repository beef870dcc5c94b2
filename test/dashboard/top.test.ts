/**
 * `tsvs top` as text over a table of 10,000 services: totals first, the busiest services,
 * a frame that fits the terminal, and the keys (search, filter, order, pages) as a state
 * machine, all against the same paged status the API serves.
 */
import { strict as assert } from 'node:assert';
import { after, before, describe, test } from 'node:test';
import { apiContext } from '../../src/api/routes/view.js';
import { parseStatusQuery, statusPage, type StatusPage } from '../../src/api/routes/status-page.js';
import { statusPageQuery } from '../../src/api/status-page-client.js';
import { KEYS_HELP, renderTop, splitKeys, topKey, type TopState, type TopView } from '../../src/cli/top.js';
import { SPECIAL, bigDirector, vipOf, type BigDirector } from './big-table.js';

const N = 10_000;
let b: BigDirector;

before(async () => {
  b = await bigDirector(N);
});
after(async () => {
  await b?.stop();
});

/** The page top would get for this view and limit, through the same parser as the route. */
function pageFor(v: TopView, limit: number): StatusPage {
  const qs = new URLSearchParams(statusPageQuery({ q: v.q, filter: v.filter, sort: v.sort, offset: v.offset, limit }).slice(1));
  return statusPage(
    apiContext(b.director),
    parseStatusQuery((n) => qs.get(n) ?? undefined),
  );
}

const view = (over: Partial<TopView> = {}): TopView => ({ q: '', filter: [], sort: 'rate', offset: 0, servers: true, ...over });

describe('tsvs top over 10,000 services', () => {
  test('totals first, then the busiest services with their real servers, fitting 24 rows', () => {
    b.bump();
    const v = view();
    const f = renderTop(pageFor(v, 16), null, { view: v, rows: 24, footer: KEYS_HELP });
    const lines = f.text.trimEnd().split('\n');
    assert.equal(lines.length, 24, 'exactly the terminal');
    assert.match(lines[0]!, /^tsvs top - \d\d:\d\d:\d\d UTC {2}stub data plane {2}VRRP not configured {2}\(rates: 2s estimator\)$/);
    assert.match(lines[1]!, /^Total: .* active 29994 {2}inactive 9999 {2}connections 0 {2}no-destination 7$/);
    assert.equal(
      lines[2],
      'Services: 10000 (1 with a server down, 3 with one at weight 0, 1 with one overloaded, 1 with no usable server)',
    );
    assert.equal(lines[3], 'Real servers: 40000  up 39999  down 1  unchecked 0  weight 0 6  overloaded 1');
    // 24 rows - 7 head - 1 footer = 16 lines: three services of 1 + 4 lines each.
    assert.equal(f.shown, 3);
    assert.equal(lines[4], 'Showing 1-3 of 10000 services, by rate');
    assert.match(lines[6]!, /^SERVICE \/ REAL SERVER +WEIGHT HEALTH/);
    assert.match(lines[7]!, new RegExp(`^TCP ${vipOf(SPECIAL.busiest).replace(/\./g, '\\.')}:80 rr `));
    assert.match(lines[8]!, /^ {2}-> 198\.19\.3\.9:808\d +1 up /);
    assert.match(lines[12]!, new RegExp(`^TCP ${vipOf(SPECIAL.second).replace(/\./g, '\\.')}:80 wlc `));
    assert.equal(lines[23], KEYS_HELP);
  });

  test('folded real servers fit more services; a search narrows to one VIP and shows its down server', () => {
    const folded = view({ servers: false });
    const f = renderTop(pageFor(folded, 16), null, { view: folded, rows: 24, footer: '' });
    assert.equal(f.shown, 16);
    assert.equal(f.text.split('\n').filter((l) => /^(TCP|UDP|FWM) /.test(l)).length, 16);

    const v = view({ q: `${vipOf(SPECIAL.down)}:` });
    const one = renderTop(pageFor(v, 16), null, { view: v, rows: 24, footer: '' });
    assert.equal(one.shown, 1);
    assert.match(one.text, new RegExp(`Showing 1-1 of 1 service match search "${vipOf(SPECIAL.down)}:", by rate`));
    assert.match(one.text, / {2}-> 198\.19\.4\.210:8080 +1 down\* /);
    assert.match(one.text, /\n {7}\* connect ECONNREFUSED\n/);
    // The totals do not change with the search.
    assert.match(one.text, /\nServices: 10000 /);
    const none = renderTop(pageFor(view({ q: 'nothing-here' }), 16), null, { view: view({ q: 'nothing-here' }) });
    assert.match(none.text, /\(no virtual service matches\)/);
  });

  test('without a terminal the frame holds the whole page (--limit)', () => {
    const f = renderTop(pageFor(view({ servers: true }), 50), null, { view: view() });
    assert.equal(f.shown, 50);
    assert.equal(f.text.split('\n').filter((l) => l.startsWith('  -> ')).length, 200);
  });

  test('keys: search, filter, order, fold, and pages forward and back', () => {
    let st: TopState = { view: view(), typing: null, back: [], quit: false };
    const press = (keys: string, shown = 3, matched = N) => {
      for (const k of splitKeys(keys)) st = topKey(st, k, shown, matched);
    };
    assert.deepEqual(splitKeys('\x1b[6~ab\x1b[5~'), ['\x1b[6~', 'a', 'b', '\x1b[5~']);
    // PgDn twice moves by what the frames showed; PgUp walks back the same way.
    press('\x1b[6~', 3);
    press(' ', 5);
    assert.equal(st.view.offset, 8);
    press('\x1b[5~');
    assert.equal(st.view.offset, 3);
    press('b');
    assert.equal(st.view.offset, 0);
    // Not past the end.
    press(' ', 3, 3);
    assert.equal(st.view.offset, 0);
    // Search: typed after "/", Backspace edits, Enter applies and goes back to the first page.
    press(' ');
    press('/198.18.4.2100');
    assert.equal(st.typing, '198.18.4.2100');
    assert.equal(st.view.q, '', 'not applied while typing');
    press('\x7f\r');
    assert.deepEqual([st.typing, st.view.q, st.view.offset], [null, '198.18.4.210', 0]);
    // "q" while typing is a letter, not quit; Esc cancels.
    press('/xq\x1b');
    assert.deepEqual([st.quit, st.view.q], [false, '198.18.4.210']);
    // f walks the filters, s the orders, r folds.
    press('f');
    assert.deepEqual(st.view.filter, ['down']);
    press('ffff');
    assert.deepEqual(st.view.filter, []);
    press('s');
    assert.equal(st.view.sort, 'conns');
    press('sss');
    assert.equal(st.view.sort, 'rate');
    press('r');
    assert.equal(st.view.servers, false);
    press('q');
    assert.equal(st.quit, true);

    // The page the keys lead to is the API's: page 2 of the filter "quiesced".
    st = { view: view({ filter: ['quiesced'], sort: 'table' }), typing: null, back: [], quit: false };
    const p1 = pageFor(st.view, 2);
    const f1 = renderTop(p1, null, { view: st.view, rows: 7 + 10 + 1, footer: '' });
    assert.equal(f1.shown, 2);
    press(' ', f1.shown, p1.matched);
    const p2 = pageFor(st.view, 2);
    assert.deepEqual(
      p2.services.map((s) => s.id),
      [b.ids[SPECIAL.nodest]],
    );
    assert.match(renderTop(p2, p1, { view: st.view }).text, /Showing 3-3 of 3 services match filter quiesced, by table/);
  });
});
