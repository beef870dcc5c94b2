// The tsvs dashboard: a client of the control API like tsvsadm and `tsvs top`.
// It reads /v1/status/page/events (server-sent events, read with fetch so that a bearer
// token can be sent): totals over the whole table, then one page of services that matches
// the search, filters and order chosen here. So a director with 10,000 services costs the
// page one page of services. It calls the REST routes for drain, restore and weight
// changes. No framework, no CDN: this file, index.html and style.css are all there is.

const HISTORY = 60; // points per chart: one per update, about a minute
const FAIL_WINDOW_MS = 10_000; // a server with failed connects this recent is flagged

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
};
const SVG_NS = 'http://www.w3.org/2000/svg';

const state = {
  token: sessionStorage.getItem('tsvs-token') || '',
  changes: 'open',
  /** Previous counters and time, by key, to turn counters into per-second rates. */
  prev: new Map(),
  /** Rate history, by key: { cps: [], inbps: [], outbps: [] }. */
  hist: new Map(),
  /** Last time the connect-failure count of a server went up, by key. */
  lastFailure: new Map(),
  services: new Map(), // id -> DOM refs
  /** What the page shows: search, filters, order, page; kept in the address bar's query. */
  view: { q: '', filter: [], proto: '', sort: 'table', page: 0, size: 20 },
  /** Aborts the current event stream when the view changes. */
  stream: null,
  /** Services matching the view (from the last frame), for the pager. */
  matched: 0,
};

/** Filter chips: the API's filter names and their labels. */
const FILTERS = [
  ['down', 'Server down'],
  ['quiesced', 'Weight 0'],
  ['overloaded', 'Overloaded'],
  ['nodest', 'No usable server'],
];
const PAGE_SIZES = [10, 20, 50, 100];

// The view from the address bar (?q=...&filter=down&sort=rate&page=2&size=50), so a view can be shared.
{
  const p = new URLSearchParams(location.search);
  const v = state.view;
  v.q = (p.get('q') || '').slice(0, 200);
  v.filter = (p.get('filter') || '').split(',').filter((f) => FILTERS.some(([k]) => k === f));
  v.proto = ['tcp', 'udp', 'sctp', 'fwm'].includes(p.get('proto')) ? p.get('proto') : '';
  v.sort = ['table', 'name', 'conns', 'rate'].includes(p.get('sort')) ? p.get('sort') : 'table';
  v.page = Math.max(0, Math.floor(Number(p.get('page')) - 1) || 0);
  v.size = PAGE_SIZES.includes(Number(p.get('size'))) ? Number(p.get('size')) : 20;
}

// A token given as #token=... is kept for this tab and taken out of the address bar.
{
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    state.token = decodeURIComponent(m[1]);
    sessionStorage.setItem('tsvs-token', state.token);
    history.replaceState(null, '', location.pathname + location.search);
  }
}

function headers(extra = {}) {
  return state.token ? { ...extra, authorization: `Bearer ${state.token}` } : extra;
}

async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: headers(body === undefined ? {} : { 'content-type': 'application/json' }),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json().catch(() => null);
  if (!res.ok) {
    const e = json?.error;
    const err = new Error(e ? `${e.message} (${e.code}): ${e.detail}` : `HTTP ${res.status}`);
    err.status = res.status;
    throw err;
  }
  return json;
}

function showMessage(text) {
  const m = $('#message');
  m.textContent = text;
  m.hidden = !text;
}

// ------------------------------------------------------------------ formatting

function fmtNum(n) {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)}G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(1)}K`;
  return String(Math.round(n * 10) / 10);
}
function fmtBytes(n) {
  const u = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i ? n.toFixed(1) : Math.round(n)} ${u[i]}`;
}

// ------------------------------------------------------------------ rates and charts

/** Per-second rates of `stats` since the last frame for `key`, pushed into its history. */
function track(key, at, stats) {
  const p = state.prev.get(key);
  state.prev.set(key, { at, stats });
  let h = state.hist.get(key);
  if (!h) {
    h = { cps: [], inbps: [], outbps: [] };
    state.hist.set(key, h);
  }
  if (p) {
    const dt = (at - p.at) / 1000;
    if (dt > 0) {
      // Counters go back to zero on `zero`: count that interval as nothing.
      const d = (a, b) => Math.max(0, a - b) / dt;
      h.cps.push(d(stats.conns, p.stats.conns));
      h.inbps.push(d(stats.inbytes, p.stats.inbytes));
      h.outbps.push(d(stats.outbytes, p.stats.outbytes));
      for (const k of Object.keys(h)) if (h[k].length > HISTORY) h[k].shift();
    }
  }
  return h;
}

const last = (a) => (a.length ? a[a.length - 1] : 0);

/** An SVG line chart of one or more series, scaled to the largest value. */
function drawChart(svg, series) {
  const W = 300;
  const H = 60;
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('preserveAspectRatio', 'none');
  const max = Math.max(1e-9, ...series.flatMap((s) => s.values));
  svg.dataset.max = String(Math.max(0, ...series.flatMap((s) => s.values)));
  svg.dataset.points = String(Math.max(0, ...series.map((s) => s.values.length)));
  while (svg.firstChild) svg.firstChild.remove();
  for (const s of series) {
    const n = s.values.length;
    const pts = s.values.map((v, i) => `${((HISTORY - n + i) / (HISTORY - 1)) * W},${H - 2 - (v / max) * (H - 4)}`);
    const line = document.createElementNS(SVG_NS, 'polyline');
    line.setAttribute('class', s.cls);
    line.setAttribute('points', pts.join(' '));
    svg.append(line);
  }
}

function svgChart(cls) {
  const s = document.createElementNS(SVG_NS, 'svg');
  s.setAttribute('class', cls);
  s.setAttribute('role', 'img');
  return s;
}

// ------------------------------------------------------------------ rendering

function renderTotals(st) {
  const t = st.totals;
  const h = track('total', Date.parse(st.at), t.stats);
  const srv = t.servers;
  // What is wrong with the real servers, or "all up".
  const serverDetail =
    srv.total && srv.up === srv.total
      ? 'all up'
      : [
          srv.down + srv.removed && `${fmtNum(srv.down + srv.removed)} down`,
          srv.quiesced && `${fmtNum(srv.quiesced)} weight 0`,
          srv.overloaded && `${fmtNum(srv.overloaded)} overloaded`,
          srv.unchecked && `${fmtNum(srv.unchecked)} unchecked`,
        ]
          .filter(Boolean)
          .join(' · ');
  const items = [
    ['Services', fmtCount(t.services), 'services', ''],
    ['Real servers', fmtCount(srv.total), 'servers', serverDetail],
    ['Connections/s', fmtNum(last(h.cps)), 'cps'],
    ['In', `${fmtBytes(last(h.inbps))}/s`, 'inbps'],
    ['Out', `${fmtBytes(last(h.outbps))}/s`, 'outbps'],
    ['Active', fmtNum(t.activeconns), 'active'],
    ['Inactive', fmtNum(t.inactconns), 'inactive'],
    ['Connections', fmtNum(t.stats.conns), 'conns'],
    ['No destination', fmtNum(t.noDestination), 'nodest'],
  ];
  const box = $('#totals');
  if (!box.children.length) {
    for (const [k, , id, sub] of items) {
      const card = el('div', { class: 'stat', 'data-total': id }, el('div', { class: 'k' }, k), el('div', { class: 'v' }));
      if (sub !== undefined) card.append(el('div', { class: 'sub' }));
      box.append(card);
    }
  }
  for (const [, v, id, sub] of items) {
    $(`[data-total="${id}"] .v`, box).textContent = v;
    if (sub !== undefined) $(`[data-total="${id}"] .sub`, box).textContent = sub;
  }
}

function canChange() {
  return state.changes === 'open' || (state.changes === 'token' && !!state.token);
}

function serverRow(svcId, d) {
  const cell = (label, cls = '') => el('td', { 'data-label': label, class: cls });
  const tr = el('tr', { 'data-server': d.id });
  const weightInput = el('input', {
    type: 'number',
    min: '0',
    max: '65535',
    placeholder: 'weight',
    'aria-label': `weight of ${d.id}`,
    class: 'weight-input',
  });
  const act = async (what, fn) => {
    try {
      showMessage('');
      await fn();
    } catch (e) {
      showMessage(`${what} ${d.id}: ${e.message}`);
    }
  };
  const base = `/v1/services/${encodeURIComponent(svcId)}/servers/${encodeURIComponent(d.id)}`;
  const actions = el(
    'td',
    { 'data-label': 'Actions', class: 'actions-cell' },
    el(
      'div',
      { class: 'actions' },
      el('button', { class: 'drain', type: 'button', onclick: () => act('drain', () => api('POST', `${base}/drain`)) }, 'Drain'),
      el('button', { class: 'restore', type: 'button', onclick: () => act('restore', () => api('POST', `${base}/restore`)) }, 'Restore'),
      weightInput,
      el(
        'button',
        {
          class: 'set-weight',
          type: 'button',
          onclick: () =>
            act('weight', async () => {
              const w = Number(weightInput.value);
              await api('PATCH', base, { weight: w });
              weightInput.value = '';
            }),
        },
        'Set weight',
      ),
    ),
  );
  const spark = svgChart('spark');
  tr.append(
    el('td', { 'data-label': 'Real server', class: 'id' }, d.id),
    cell('Health', 'health'),
    cell('Weight', 'num weight'),
    cell('Active', 'num active'),
    cell('Inactive', 'num inactive'),
    cell('Conns/s', 'num cps'),
    el('td', { 'data-label': 'Trend', class: 'trend' }, spark),
    cell('Connections', 'num conns'),
    cell('Failed connects', 'num failures'),
    actions,
  );
  return { tr, spark, actions };
}

function renderServer(svc, refs, d, at) {
  const key = `${svc.id} ${d.id}`;
  let r = refs.rows.get(d.id);
  if (!r) {
    r = serverRow(svc.id, d);
    refs.rows.set(d.id, r);
  }
  refs.tbody.append(r.tr); // keeps the table's order
  const h = track(key, at, d.stats);
  const set = (cls, v) => ($(`.${cls}`, r.tr).textContent = v);
  set('weight', String(d.weight));
  set('active', String(d.activeconns));
  set('inactive', String(d.inactconns));
  set('cps', fmtNum(last(h.cps)));
  set('conns', String(d.stats.conns));
  set('failures', String(d.connectFailures));
  const prevFail = state.prev.get(`${key} failures`);
  state.prev.set(`${key} failures`, d.connectFailures);
  if (prevFail !== undefined && d.connectFailures > prevFail) state.lastFailure.set(key, at);
  const failing = at - (state.lastFailure.get(key) ?? -Infinity) < FAIL_WINDOW_MS;
  $('.failures', r.tr).classList.toggle('bad', failing);

  // Health: the checker's verdict (issue 5), plus what the data plane saw.
  const hc = $('.health', r.tr);
  hc.textContent = '';
  const hs = d.health.state;
  hc.append(el('span', { class: `badge ${hs}` }, hs));
  // Drained through the API (it remembers the weight), or at weight 0 for another reason.
  if (d.drainedFrom !== undefined) hc.append(' ', el('span', { class: 'badge drained', title: `weight was ${d.drainedFrom}` }, 'drained'));
  else if (d.weight === 0) hc.append(' ', el('span', { class: 'badge drained' }, 'weight 0'));
  if (failing) hc.append(' ', el('span', { class: 'badge down failing' }, 'connects failing'));
  const lc = d.health.lastCheck;
  if (lc && !lc.ok) hc.append(el('span', { class: 'reason' }, `last check: ${lc.reason}`));
  else if (failing) hc.append(el('span', { class: 'reason' }, 'new connections to it fail'));
  drawChart(r.spark, [{ cls: 'in', values: h.cps }]);
  r.actions.hidden = !canChange();
}

function renderService(s, at) {
  let refs = state.services.get(s.id);
  if (!refs) {
    const connChart = svgChart('chart conns');
    const byteChart = svgChart('chart bytes');
    const tbody = el('tbody');
    const title = el('span', { class: 'label' });
    const sub = el('span', { class: 'muted' });
    const section = el(
      'article',
      { class: 'service', 'data-service': s.id },
      el('h2', {}, title, sub),
      el(
        'div',
        { class: 'charts' },
        el(
          'div',
          { class: 'chart-box' },
          el('div', { class: 'k' }, el('span', {}, 'Connections/s'), el('span', { class: 'cps-now' })),
          connChart,
        ),
        el(
          'div',
          { class: 'chart-box' },
          el(
            'div',
            { class: 'k' },
            el('span', {}, 'Bytes/s ', el('span', { class: 'legend in' }, 'in'), ' / ', el('span', { class: 'legend out' }, 'out')),
            el('span', { class: 'bps-now' }),
          ),
          byteChart,
        ),
      ),
      el(
        'table',
        {},
        el(
          'thead',
          {},
          el(
            'tr',
            {},
            ...['Real server', 'Health', 'Weight', 'Active', 'Inactive', 'Conns/s', 'Trend', 'Connections', 'Failed connects', ''].map(
              (t, i) => el('th', { class: i >= 2 && i <= 8 && i !== 6 ? 'num' : '' }, t),
            ),
          ),
        ),
        tbody,
      ),
    );
    refs = { section, connChart, byteChart, tbody, title, sub, rows: new Map() };
    state.services.set(s.id, refs);
  }
  $('#services').append(refs.section);
  refs.title.textContent = s.label;
  refs.sub.textContent = `${s.scheduler}${s.persistent ? `, persistent ${s.persistent}s` : ''} · ${s.stats.conns} connections`;
  const h = track(s.id, at, s.stats);
  drawChart(refs.connChart, [{ cls: 'in', values: h.cps }]);
  drawChart(refs.byteChart, [
    { cls: 'in', values: h.inbps },
    { cls: 'out', values: h.outbps },
  ]);
  $('.cps-now', refs.section).textContent = `now ${fmtNum(last(h.cps))} · peak ${fmtNum(Math.max(0, ...h.cps))}`;
  $('.bps-now', refs.section).textContent =
    `now ${fmtBytes(last(h.inbps))}/s / ${fmtBytes(last(h.outbps))}/s · peak ${fmtBytes(Math.max(0, ...h.inbps, ...h.outbps))}/s`;
  const seen = new Set();
  for (const d of s.dests) {
    seen.add(d.id);
    renderServer(s, refs, d, at);
  }
  // Servers health checking took out of the table: shown down, with the reason, no actions.
  for (const x of s.removed || []) {
    const key = `removed ${x.id}`;
    seen.add(key);
    let r = refs.rows.get(key);
    if (!r) {
      const tr = el(
        'tr',
        { 'data-server': x.id, class: 'removed' },
        el('td', { 'data-label': 'Real server', class: 'id' }, x.id),
        el('td', { 'data-label': 'Health', class: 'health' }),
      );
      const rest = el('td', { 'data-label': '', colspan: '8', class: 'muted' }, 'removed from the table by health checking');
      tr.append(rest);
      r = { tr };
      refs.rows.set(key, r);
    }
    refs.tbody.append(r.tr);
    const hc = $('.health', r.tr);
    hc.textContent = '';
    hc.append(el('span', { class: `badge ${x.health.state}` }, x.health.state));
    const lc = x.health.lastCheck;
    if (lc && !lc.ok) hc.append(el('span', { class: 'reason' }, `last check: ${lc.reason}`));
  }
  for (const [id, r] of refs.rows) {
    if (!seen.has(id)) {
      r.tr.remove();
      refs.rows.delete(id);
    }
  }
}

/** The filter chips, with how many services of the whole table each one would show. */
function renderChips(t) {
  const box = $('#chips');
  if (!box.children.length) {
    for (const [k, label] of FILTERS) {
      box.append(
        el(
          'button',
          { type: 'button', class: 'chip', 'data-filter': k, 'aria-pressed': 'false', onclick: () => toggleFilter(k) },
          `${label} `,
          el('span', { class: 'n' }),
        ),
      );
    }
  }
  for (const [k] of FILTERS) {
    const b = $(`[data-filter="${k}"]`, box);
    const n = t.servicesWith[k];
    $('.n', b).textContent = fmtNum(n);
    b.classList.toggle('warn', n > 0);
    b.setAttribute('aria-pressed', String(state.view.filter.includes(k)));
  }
}

/** "21–40 of 10,000" with previous and next, above and below the services. */
function renderPager(st) {
  const v = state.view;
  state.matched = st.matched;
  const pages = Math.max(1, Math.ceil(st.matched / v.size));
  const from = st.matched ? st.offset + 1 : 0;
  const to = st.offset + st.services.length;
  const of =
    st.matched === st.totals.services ? fmtCount(st.matched) : `${fmtCount(st.matched)} matching (of ${fmtCount(st.totals.services)})`;
  for (const nav of [$('#pager-top'), $('#pager-bottom')]) {
    nav.hidden = st.matched <= v.size && v.page === 0;
    if (nav.hidden) continue;
    if (!nav.children.length) {
      nav.append(
        el('button', { type: 'button', class: 'prev', onclick: () => goPage(state.view.page - 1) }, '‹ Previous'),
        el('span', { class: 'where' }),
        el('button', { type: 'button', class: 'next', onclick: () => goPage(state.view.page + 1) }, 'Next ›'),
      );
    }
    $('.where', nav).textContent = `${from}–${to} of ${of} · page ${v.page + 1} of ${pages}`;
    $('.prev', nav).disabled = v.page === 0;
    $('.next', nav).disabled = v.page + 1 >= pages;
  }
}

/** Whole numbers with thousands separators: service counts. */
function fmtCount(n) {
  return n.toLocaleString('en');
}

function render(st) {
  const at = Date.parse(st.at);
  $('#dataplane').textContent = `${st.dataplane} data plane`;
  $('#vrrp').textContent = st.vrrp.configured ? st.vrrp.instances.map((i) => `${i.name} ${i.state}`).join(', ') : 'not configured';
  if (st.history) seedHistory(st.history);
  renderTotals(st);
  renderChips(st.totals);
  renderPager(st);
  const seen = new Set();
  for (const s of st.services) {
    seen.add(s.id);
    renderService(s, at);
  }
  // Only the page's services stay in the document.
  for (const [id, refs] of state.services) {
    if (!seen.has(id)) {
      refs.section.remove();
      state.services.delete(id);
    }
  }
  forgetOthers(seen);
  $('#empty').hidden = st.totals.services > 0;
  $('#no-match').hidden = !(st.totals.services > 0 && st.matched === 0);
  // Past the last page (services went away, or a filter narrowed): go to the last one.
  if (st.matched > 0 && st.services.length === 0 && state.view.page > 0) goPage(Math.ceil(st.matched / state.view.size) - 1);
  document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
}

/** Keeps the rate history bounded: services long off the page are forgotten. */
function forgetOthers(onPage) {
  if (state.prev.size < 4000) return;
  for (const m of [state.prev, state.hist, state.lastFailure]) {
    for (const key of m.keys()) {
      const sid = key.split(' ')[0];
      if (sid !== 'total' && !onPage.has(sid)) m.delete(key);
    }
  }
}

// ------------------------------------------------------------------ the view: search, filters, pages

/** The query of the page's event stream, and of the address bar. */
function viewParams(forApi) {
  const v = state.view;
  const p = new URLSearchParams();
  if (v.q) p.set('q', v.q);
  if (v.filter.length) p.set('filter', v.filter.join(','));
  if (v.proto) p.set('proto', v.proto);
  if (v.sort !== 'table') p.set('sort', v.sort);
  if (forApi) {
    p.set('offset', String(v.page * v.size));
    p.set('limit', String(v.size));
  } else {
    if (v.page) p.set('page', String(v.page + 1));
    if (v.size !== 20) p.set('size', String(v.size));
  }
  return p;
}

/** The view changed: show it in the address bar and restart the stream with it. */
function viewChanged() {
  const q = viewParams(false).toString();
  history.replaceState(null, '', location.pathname + (q ? `?${q}` : ''));
  if (state.stream) state.stream.abort();
}

function goPage(n) {
  const pages = Math.max(1, Math.ceil(state.matched / state.view.size));
  const page = Math.min(Math.max(0, n), pages - 1);
  if (page === state.view.page) return;
  state.view.page = page;
  viewChanged();
}

function toggleFilter(k) {
  const f = state.view.filter;
  state.view.filter = f.includes(k) ? f.filter((x) => x !== k) : [...f, k];
  state.view.page = 0;
  viewChanged();
}

function initFinder() {
  const v = state.view;
  const search = $('#search');
  search.value = v.q;
  $('#proto').value = v.proto;
  $('#sort').value = v.sort;
  $('#page-size').value = String(v.size);
  let timer = null;
  // Typing restarts the stream once the typing pauses, not on every key.
  search.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      if (search.value.trim() === v.q) return;
      v.q = search.value.trim().slice(0, 200);
      v.page = 0;
      viewChanged();
    }, 250);
  });
  $('#finder').addEventListener('submit', (ev) => ev.preventDefault());
  const onSelect = (id, apply) =>
    $(id).addEventListener('change', (ev) => {
      apply(ev.target.value);
      v.page = 0;
      viewChanged();
    });
  onSelect('#proto', (x) => (v.proto = x));
  onSelect('#sort', (x) => (v.sort = x));
  onSelect('#page-size', (x) => (v.size = Number(x)));
  $('#clear').addEventListener('click', () => {
    Object.assign(v, { q: '', filter: [], proto: '', page: 0 });
    search.value = '';
    $('#proto').value = '';
    viewChanged();
  });
}

// ------------------------------------------------------------------ live updates

function setLive(on, text) {
  $('#live-dot').className = `dot ${on ? 'on' : 'off'}`;
  $('#live-text').textContent = text;
}

/** Reads the page's event stream until it ends, calling `onEvent(name, data)` per event. */
async function readEvents(onEvent, signal) {
  const p = viewParams(true);
  // The first frame of each stream carries the page's recent counters, so charts start full.
  p.set('history', '1');
  const res = await fetch(`/v1/status/page/events?${p}`, { headers: headers({ accept: 'text/event-stream' }), signal });
  if (res.status === 401) {
    askForToken();
    throw new Error(state.token ? 'the token was refused' : 'this API needs its token');
  }
  if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
  setLive(true, 'live');
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let event = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length) onEvent(event, data.join('\n'));
    }
  }
}

async function loop() {
  for (;;) {
    const ctl = new AbortController();
    state.stream = ctl;
    try {
      await readEvents((ev, data) => {
        if (ev === 'status' && !ctl.signal.aborted) render(JSON.parse(data));
      }, ctl.signal);
      setLive(false, 'disconnected, retrying…');
    } catch (e) {
      // A new view aborted the stream: open the next one at once.
      if (ctl.signal.aborted) continue;
      setLive(false, `disconnected (${e.message}), retrying…`);
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/** This listener wants a token for reads too (tsvsd --api-token-file without --api-public-read). */
function askForToken() {
  state.changes = 'token';
  $('#token-form').hidden = false;
  showMessage(state.token ? 'The API refused this token: enter the right one above.' : 'This API needs its token: enter it above.');
}

async function readInfo() {
  try {
    const info = await api('GET', '/v1/info');
    state.changes = info.changes || 'open';
    $('#token-form').hidden = state.changes !== 'token';
    showMessage('');
  } catch (e) {
    if (e.status === 401) askForToken();
    else showMessage(`Cannot read /v1/info: ${e.message}`);
  }
}

async function init() {
  const form = $('#token-form');
  form.hidden = true;
  $('#token').value = state.token;
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    state.token = $('#token').value.trim();
    sessionStorage.setItem('tsvs-token', state.token);
    readInfo();
  });
  initFinder();
  await readInfo();
  loop();
}

/**
 * Fills the charts with the daemon's recent samples, so they do not start empty: the
 * totals once, and each service the first time it is on a page.
 */
function seedHistory(samples) {
  const fresh = (key) => !state.prev.has(key);
  const seedTotal = fresh('total');
  const services = new Set(Object.keys(samples.length ? samples[samples.length - 1].services : {}).filter(fresh));
  for (const smp of samples) {
    const at = Date.parse(smp.at);
    if (seedTotal) track('total', at, smp.stats);
    for (const [sid, s] of Object.entries(smp.services)) {
      if (!services.has(sid)) continue;
      track(sid, at, s.stats);
      for (const [rid, st] of Object.entries(s.dests)) track(`${sid} ${rid}`, at, st);
    }
  }
}

init();
