/**
 * GET /v1/status/page and its event stream over a table of 10,000 services (4 real
 * servers each) built through the core: totals over the whole table, search, filters,
 * sorts, paging, bounds and errors, and a history that samples only what pages show.
 */
import { strict as assert } from 'node:assert';
import { after, before, describe, test } from 'node:test';
import { call } from '../api/harness.js';
import { HISTORY_ALL_SERVICES, WATCH_MAX, apiContext, counterHistory } from '../../src/api/routes/view.js';
import { DEFAULT_LIMIT, MAX_LIMIT, parseStatusQuery } from '../../src/api/routes/status-page.js';
import { statusPageQuery } from '../../src/api/status-page-client.js';
import { SPECIAL, bigDirector, serviceOf, vipOf, type BigDirector } from './big-table.js';

const N = 10_000;
let b: BigDirector;

before(async () => {
  b = await bigDirector(N, { eventIntervalMs: 50 });
});
after(async () => {
  await b?.stop();
});

const page = async (query = '') => {
  const r = await call(b.app, 'GET', `/v1/status/page${query}`);
  assert.equal(r.status, 200, r.text.slice(0, 300));
  return r.json;
};
const ids = (p: { services: Array<{ id: string }> }) => p.services.map((s) => s.id);

describe('/v1/status/page over 10,000 services', () => {
  test('totals cover the whole table and match a count made independently from the core', async () => {
    const p = await page();
    let servers = 0;
    let active = 0;
    let inactive = 0;
    let quiesced = 0;
    for (const s of b.table.list()) {
      for (const d of s.dests) {
        servers++;
        active += d.activeconns;
        inactive += d.inactconns;
        if (d.weight === 0) quiesced++;
      }
    }
    assert.equal(servers, 4 * N);
    assert.equal(p.totals.services, N);
    assert.deepEqual(p.totals.servers, { total: 4 * N, up: 4 * N - 1, down: 1, unchecked: 0, quiesced, overloaded: 1, removed: 0 });
    assert.equal(quiesced, 2 + 4, 'one quiesced server in each of two services, four in the no-destination one');
    assert.equal(p.totals.activeconns, active);
    assert.equal(p.totals.inactconns, inactive);
    assert.ok(active > 0 && inactive > 0);
    assert.deepEqual(p.totals.servicesWith, { down: 1, quiesced: 3, overloaded: 1, nodest: 1 });
    assert.equal(p.totals.noDestination, 7);
    assert.equal(p.totals.connectFailures, 3);
    assert.equal(p.totals.connections, 0);
    assert.deepEqual(p.totals.stats, b.table.totals.snapshot());
    assert.equal(p.dataplane, 'stub');
    assert.equal(p.vrrp.configured, false);
  });

  test('one page by default: the first services in table order, with full views', async () => {
    const p = await page();
    assert.equal(p.matched, N);
    assert.equal(p.offset, 0);
    assert.equal(p.limit, DEFAULT_LIMIT);
    assert.equal(p.sort, 'table');
    assert.deepEqual(ids(p), b.ids.slice(0, DEFAULT_LIMIT));
    const s = p.services[0];
    assert.equal(s.label, `TCP ${vipOf(0)}:80`);
    assert.equal(s.dests.length, 4);
    assert.equal(s.dests[0].health.state, 'up');
    assert.equal(p.history, undefined);
  });

  test('offset and limit page through the table; past the end is an empty page', async () => {
    const p = await page('?offset=9990&limit=50');
    assert.deepEqual(ids(p), b.ids.slice(9990));
    assert.equal((await page(`?offset=${N}`)).services.length, 0);
    assert.equal((await page(`?offset=${N + 5}&limit=10`)).matched, N);
    const none = await page('?limit=0');
    assert.equal(none.services.length, 0);
    assert.equal(none.totals.services, N, 'limit=0 still gives the totals');
    // Every service is on exactly one page of a full walk.
    const seen = new Set<string>();
    for (let off = 0; off < N; off += MAX_LIMIT)
      for (const id of ids(await page(`?offset=${off}&limit=${MAX_LIMIT}&sort=name`))) seen.add(id);
    assert.equal(seen.size, N);
  });

  test('search by VIP, by VIP and port, by real server address, by scheduler; every term must match', async () => {
    const i = 4321;
    const vip = vipOf(i);
    assert.deepEqual(ids(await page(`?q=${vip}:`)), [`${serviceOf(i).protocol}:${vip}:${serviceOf(i).port}`]);
    // A real server's address finds its service.
    assert.deepEqual(ids(await page(`?q=198.19.${i >> 8}.${i & 255}:8083`)), [b.ids[i]]);
    // ":PORT" is that port exactly: the UDP services on 53 (not fwm:5305), the TCP ones on 80 (not every real server on 8080).
    const udp = await page('?q=:53&limit=200');
    assert.equal(udp.matched, N / 10);
    assert.ok(udp.services.every((s: { protocol: string; port: number }) => s.protocol === 'udp' && s.port === 53));
    assert.equal((await page('?q=:80&limit=0')).matched, N - N / 10 - N / 100);
    assert.equal((await page('?q=:8083&limit=0')).matched, N, 'a real server port');
    assert.equal((await page(`?q=${encodeURIComponent(`${vip} :53`)}`)).matched, serviceOf(i).port === 53 ? 1 : 0);
    // Two terms narrow: scheduler and protocol; case does not matter.
    const both = await page(`?q=${encodeURIComponent('TCP wlc')}`);
    const want = b.table.list().filter((s) => s.id.startsWith('tcp:') && s.scheduler === 'wlc').length;
    assert.ok(want > 0 && want < N);
    assert.equal(both.matched, want);
    assert.ok(both.services.every((s: { protocol: string; scheduler: string }) => s.protocol === 'tcp' && s.scheduler === 'wlc'));
    // Firewall-mark services by their id.
    assert.deepEqual(ids(await page('?q=fwm:1005')), ['fwm:1005']);
    assert.equal((await page('?q=no-such-thing')).matched, 0);
    // The totals do not depend on the search.
    assert.equal((await page('?q=no-such-thing')).totals.services, N);
  });

  test('filters: a down, quiesced or overloaded server, no usable server; several are "any of"', async () => {
    assert.deepEqual(ids(await page('?filter=down')), [b.ids[SPECIAL.down]]);
    assert.deepEqual(ids(await page('?filter=quiesced')), [b.ids[SPECIAL.quiesced[0]], b.ids[SPECIAL.quiesced[1]], b.ids[SPECIAL.nodest]]);
    assert.deepEqual(ids(await page('?filter=overloaded')), [b.ids[SPECIAL.overloaded]]);
    assert.deepEqual(ids(await page('?filter=nodest')), [b.ids[SPECIAL.nodest]]);
    assert.deepEqual(ids(await page('?filter=down,overloaded')), [b.ids[SPECIAL.down], b.ids[SPECIAL.overloaded]]);
    // Filters and search combine with "and".
    assert.deepEqual(ids(await page(`?filter=quiesced&q=${vipOf(SPECIAL.quiesced[1])}`)), [b.ids[SPECIAL.quiesced[1]]]);
    const udp = await page('?proto=udp&limit=0');
    assert.equal(udp.matched, N / 10);
    assert.equal((await page('?proto=fwm&limit=0')).matched, N / 100);
    assert.equal((await page('?proto=tcp,udp&limit=0')).matched, N - N / 100);
  });

  test('sorts: by rate, by connections, by name', async () => {
    b.bump();
    const rate = await page('?sort=rate&limit=3');
    assert.deepEqual(ids(rate).slice(0, 2), [b.ids[SPECIAL.busiest], b.ids[SPECIAL.second]]);
    assert.ok(rate.services[0].rates.cps > rate.services[1].rates.cps);
    const conns = await page('?sort=conns&limit=200');
    const n = conns.services.map((s: { dests: Array<{ activeconns: number; inactconns: number }> }) =>
      s.dests.reduce((a, d) => a + d.activeconns + d.inactconns, 0),
    );
    assert.deepEqual(
      n,
      [...n].sort((x, y) => y - x),
      'most connections first',
    );
    assert.equal(n[0], 6 + 2, 'the most a service has here: 6 active and 2 inactive');
    // Ties keep table order, so pages are stable.
    const tied = b.ids.filter((_, i) => i % 7 === 6 && i % 3 === 2);
    assert.deepEqual(ids(conns).slice(0, 10), tied.slice(0, 10));
    const name = await page('?sort=name&limit=3');
    // Numbers compare as numbers: 198.18.0.2 before 198.18.0.10.
    assert.deepEqual(ids(name), ['fwm:1005', 'fwm:1105', 'fwm:1205']);
    const tcp = await page('?sort=name&proto=tcp&limit=3');
    assert.deepEqual(ids(tcp), ['tcp:198.18.0.0:80', 'tcp:198.18.0.1:80', 'tcp:198.18.0.2:80']);
  });

  test('bad parameters answer 400 BAD_REQUEST naming the parameter, without echoing much', async () => {
    const cases: Array<[string, RegExp]> = [
      [`?limit=${MAX_LIMIT + 1}`, new RegExp(`limit=${MAX_LIMIT + 1}: must be at most ${MAX_LIMIT}`)],
      ['?limit=-1', /limit="-1": must be an integer >= 0/],
      ['?offset=x', /offset="x"/],
      ['?sort=size', /sort="size": must be one of table, name, conns, rate/],
      ['?filter=down,broken', /filter: "broken" is not one of down, quiesced, overloaded, nodest/],
      ['?proto=icmp', /proto: "icmp" is not one of tcp, udp, sctp, fwm/],
      [`?q=${'x'.repeat(5000)}`, /q: 5000 characters, at most 200/],
      [`?sort=${'y'.repeat(5000)}`, /sort="y{40}…"/],
    ];
    for (const [q, re] of cases) {
      for (const path of ['/v1/status/page', '/v1/status/page/events']) {
        const r = await call(b.app, 'GET', `${path}${q}`);
        assert.equal(r.status, 400, `${path}${q.slice(0, 30)}`);
        assert.equal(r.json.error.code, 'BAD_REQUEST');
        assert.match(r.json.error.detail, re);
        assert.ok(r.text.length < 400, 'the error does not echo the input');
      }
    }
  });

  test('the event stream sends totals and only the page, again and again', async () => {
    const res = await b.app.request(`/v1/status/page/events?q=${vipOf(SPECIAL.down)}:&history=1`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type')!, /text\/event-stream/);
    const reader = res.body!.getReader();
    const dec = new TextDecoder();
    let buf = '';
    const frames: any[] = [];
    while (frames.length < 2) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        assert.match(block, /^event: status$/m);
        frames.push(JSON.parse(/^data: (.*)$/m.exec(block)![1]!));
      }
    }
    await reader.cancel();
    assert.equal(frames.length, 2);
    for (const f of frames) {
      assert.equal(f.totals.services, N);
      assert.deepEqual(ids(f), [b.ids[SPECIAL.down]]);
      assert.equal(
        f.services[0].dests.find((d: { health: { state: string } }) => d.health.state === 'down').health.lastCheck.reason,
        'connect ECONNREFUSED',
      );
    }
    // The history rides on the first frame only, cut to the page.
    assert.ok(Array.isArray(frames[0].history) && frames[0].history.length >= 1);
    for (const smp of frames[0].history) assert.ok(Object.keys(smp.services).every((id) => id === b.ids[SPECIAL.down]));
    assert.equal(frames[1].history, undefined);
  });

  test('on a large table the history samples only services a page showed, at most WATCH_MAX', async () => {
    assert.ok(N > HISTORY_ALL_SERVICES);
    const ctx = apiContext(b.director);
    await page(`?q=${vipOf(42)}:`);
    assert.ok(ctx.watched.has(b.ids[42]!));
    // Page through more services than the watch list holds: it stays bounded.
    for (let off = 0; off < 3 * WATCH_MAX; off += MAX_LIMIT) await page(`?offset=${off}&limit=${MAX_LIMIT}`);
    assert.equal(ctx.watched.size, WATCH_MAX);
    assert.ok(!ctx.watched.has(b.ids[42]!), 'the least recently shown went first');
    const before = counterHistory(ctx).length;
    // A sample taken now covers the watched services only.
    await new Promise((r) => setTimeout(r, 1100));
    const h = counterHistory(ctx);
    assert.ok(h.length > before);
    assert.equal(Object.keys(h[h.length - 1]!.services).length, WATCH_MAX);
  });

  test('the OpenAPI document and the client agree with the parser', () => {
    const r = {
      q: '198.18.0.1 rr',
      filter: ['down', 'quiesced'] as const,
      proto: ['udp'] as const,
      sort: 'rate' as const,
      offset: 40,
      limit: 20,
    };
    const qs = new URLSearchParams(statusPageQuery({ ...r, filter: [...r.filter], proto: [...r.proto] }).slice(1));
    assert.deepEqual(
      parseStatusQuery((n) => qs.get(n) ?? undefined),
      { terms: ['198.18.0.1', 'rr'], problems: ['down', 'quiesced'], protos: ['udp'], sort: 'rate', offset: 40, limit: 20 },
    );
    assert.equal(statusPageQuery({}), '');
  });
});
