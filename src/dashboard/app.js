// The tsvs dashboard: a client of the control API like tsvsadm and `tsvs top`.
// It reads /v1/events (server-sent events, read with fetch so that a bearer token can be
// sent) and calls the REST routes for drain, restore and weight changes. No framework, no
// CDN: this file, index.html and style.css are all there is.

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
};

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
    const e = json && json.error;
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
  const h = track('total', Date.parse(st.at), st.stats);
  const active = st.services.reduce((a, s) => a + s.dests.reduce((b, d) => b + d.activeconns, 0), 0);
  const inactive = st.services.reduce((a, s) => a + s.dests.reduce((b, d) => b + d.inactconns, 0), 0);
  const items = [
    ['Connections/s', fmtNum(last(h.cps)), 'cps'],
    ['In', `${fmtBytes(last(h.inbps))}/s`, 'inbps'],
    ['Out', `${fmtBytes(last(h.outbps))}/s`, 'outbps'],
    ['Active', fmtNum(active), 'active'],
    ['Inactive', fmtNum(inactive), 'inactive'],
    ['Connections', fmtNum(st.stats.conns), 'conns'],
    ['No destination', fmtNum(st.dataplaneCounters ? st.dataplaneCounters.noDestination : 0), 'nodest'],
  ];
  const box = $('#totals');
  if (!box.children.length) {
    for (const [k, , id] of items) box.append(el('div', { class: 'stat', 'data-total': id }, el('div', { class: 'k' }, k), el('div', { class: 'v' })));
  }
  for (const [, v, id] of items) $(`[data-total="${id}"] .v`, box).textContent = v;
}

function canChange() {
  return state.changes === 'open' || (state.changes === 'token' && !!state.token);
}

function serverRow(svcId, d) {
  const cell = (label, cls = '') => el('td', { 'data-label': label, class: cls });
  const tr = el('tr', { 'data-server': d.id });
  const weightInput = el('input', { type: 'number', min: '0', max: '65535', placeholder: 'weight', 'aria-label': `weight of ${d.id}`, class: 'weight-input' });
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
        el('div', { class: 'chart-box' }, el('div', { class: 'k' }, el('span', {}, 'Connections/s'), el('span', { class: 'cps-now' })), connChart),
        el('div', { class: 'chart-box' }, el('div', { class: 'k' }, el('span', {}, 'Bytes/s ', el('span', { class: 'legend in' }, 'in'), ' / ', el('span', { class: 'legend out' }, 'out')), el('span', { class: 'bps-now' })), byteChart),
      ),
      el(
        'table',
        {},
        el(
          'thead',
          {},
          el('tr', {}, ...['Real server', 'Health', 'Weight', 'Active', 'Inactive', 'Conns/s', 'Trend', 'Connections', 'Failed connects', ''].map((t, i) => el('th', { class: i >= 2 && i <= 8 && i !== 6 ? 'num' : '' }, t))),
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
  $('.bps-now', refs.section).textContent = `now ${fmtBytes(last(h.inbps))}/s / ${fmtBytes(last(h.outbps))}/s · peak ${fmtBytes(Math.max(0, ...h.inbps, ...h.outbps))}/s`;
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
      const tr = el('tr', { 'data-server': x.id, class: 'removed' }, el('td', { 'data-label': 'Real server', class: 'id' }, x.id), el('td', { 'data-label': 'Health', class: 'health' }));
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

function render(st) {
  const at = Date.parse(st.at);
  $('#dataplane').textContent = `${st.dataplane} data plane`;
  $('#vrrp').textContent = st.vrrp.configured ? st.vrrp.instances.map((i) => `${i.name} ${i.state}`).join(', ') : 'not configured';
  renderTotals(st);
  const seen = new Set();
  for (const s of st.services) {
    seen.add(s.id);
    renderService(s, at);
  }
  for (const [id, refs] of state.services) {
    if (!seen.has(id)) {
      refs.section.remove();
      state.services.delete(id);
    }
  }
  $('#empty').hidden = st.services.length > 0;
  document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
}

// ------------------------------------------------------------------ live updates

function setLive(on, text) {
  $('#live-dot').className = `dot ${on ? 'on' : 'off'}`;
  $('#live-text').textContent = text;
}

/** Reads /v1/events until it ends, calling `onEvent(name, data)` per event. */
async function readEvents(onEvent) {
  const res = await fetch('/v1/events', { headers: headers({ accept: 'text/event-stream' }) });
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
    try {
      await readEvents((ev, data) => {
        if (ev === 'status') render(JSON.parse(data));
      });
      setLive(false, 'disconnected, retrying…');
    } catch (e) {
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
  await readInfo();
  await seedHistory();
  loop();
}

/** Fills the charts with the daemon's recent samples, so they do not start empty. */
async function seedHistory() {
  let samples;
  try {
    samples = await api('GET', '/v1/history');
  } catch {
    return; // the live stream fills them anyway
  }
  for (const smp of samples) {
    const at = Date.parse(smp.at);
    track('total', at, smp.stats);
    for (const [sid, s] of Object.entries(smp.services)) {
      track(sid, at, s.stats);
      for (const [rid, st] of Object.entries(s.dests)) track(`${sid} ${rid}`, at, st);
    }
  }
}

init();
