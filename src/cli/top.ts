/**
 * `tsvs top`: a terminal view in the spirit of top. Every interval it reads one page of
 * /v1/status/page (the same paged status the dashboard streams): the totals over the whole
 * table first, then the services, busiest first, with their real servers, as many as fit
 * the terminal. Keys search (/), filter (f), change the order (s), fold the real servers
 * (r) and page (PgUp/PgDn, space/b). Rates are counter deltas over the last interval; the
 * first frame (and `--once`) shows the kernel-style estimator's rates instead, as
 * `ipvsadm --rate` would.
 */
import { parseArgs } from 'node:util';
import { ConnectError, HttpControlClient } from '../api/client.js';
import { MAX_LIMIT, MAX_QUERY, PROBLEMS, SORTS, type Problem, type Sort, type StatusPage } from '../api/routes/status-page.js';
import { fetchStatusPage } from '../api/status-page-client.js';
import { defaultSocketPath } from '../api/socket.js';
import { isTsvsError } from '../core/errors.js';
import type { Rates, Stats } from '../core/types.js';

/** Options every API client command takes: where the daemon is and the token. */
export const CLIENT_OPTIONS = {
  socket: { type: 'string' },
  api: { type: 'string' },
  token: { type: 'string' },
} as const;

export const CLIENT_USAGE = `  --socket PATH    tsvsd's control socket (default: $TSVS_SOCKET or tsvsd's default)
  --api URL        use the TCP API instead, e.g. http://127.0.0.1:9180 (also $TSVS_API)
  --token TOKEN    bearer token for changes over TCP (also $TSVS_API_TOKEN)`;

export function clientFrom(
  values: { socket?: string | undefined; api?: string | undefined; token?: string | undefined },
  env: NodeJS.ProcessEnv = process.env,
): HttpControlClient {
  const api = values.api ?? env.TSVS_API;
  const token = values.token ?? env.TSVS_API_TOKEN;
  if (api) {
    const baseUrl = /^https?:\/\//.test(api) ? api : `http://${api}`;
    return new HttpControlClient({ baseUrl, ...(token ? { token } : {}), timeoutMs: 10_000 });
  }
  return new HttpControlClient({ socketPath: values.socket ?? defaultSocketPath(env), timeoutMs: 10_000 });
}

/** A message for a failed API call, for stderr. */
export function clientError(e: unknown): string {
  if (e instanceof ConnectError) return `${e.message}\nIs tsvsd running? Set TSVS_SOCKET, or --api for the TCP API.`;
  if (isTsvsError(e)) return `${e.message} (${e.detail})`;
  return (e as Error).message;
}

const USAGE = `Usage: tsvs top [options]

A live view of the director: totals over every virtual service, then the services
(busiest first) with their real servers, as many as fit the terminal.

Keys: / search (Enter applies, Esc cancels)   f next filter   s next order
      r fold or show real servers   PgDn or space next page   PgUp or b previous
      g first page   q (or Ctrl-C) quit

Options:
  -d, --interval SECS  seconds between refreshes (default 1)
  -n, --iterations N   stop after N frames
  --once               print one frame and exit (no screen clearing)
  --search TEXT        only services whose VIP, :port, real server or scheduler match
  --filter LIST        only services with a real server: ${PROBLEMS.join(', ')} (comma-separated)
  --sort ORDER         ${SORTS.join(', ')} (default rate: busiest first)
  --limit N            services per frame when not on a terminal (default 50, at most ${MAX_LIMIT})
${CLIENT_USAGE}
  -h, --help           this text
`;

function fmtCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)}G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e5) return `${(n / 1e3).toFixed(0)}K`;
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}

function fmtBytes(n: number): string {
  const units = ['B', 'K', 'M', 'G', 'T'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return i === 0 ? `${Math.round(n)}B` : `${n.toFixed(1)}${units[i]}`;
}

/** Per-second rates between two counter snapshots, or the estimator's when there is no previous one. */
function ratesOf(cur: Stats, prev: Stats | undefined, dt: number, estimator: Rates): Rates {
  if (!prev || dt <= 0) return estimator;
  const d = (a: number, b: number) => Math.max(0, a - b) / dt;
  return {
    cps: d(cur.conns, prev.conns),
    inpps: d(cur.inpkts, prev.inpkts),
    outpps: d(cur.outpkts, prev.outpkts),
    inbps: d(cur.inbytes, prev.inbytes),
    outbps: d(cur.outbytes, prev.outbytes),
  };
}

const COLS = '%-34s %7s %-10s %7s %7s %7s %8s %8s %9s %7s';

function row(cols: string[]): string {
  let i = 0;
  return COLS.replace(/%(-?)(\d+)s/g, (_, left: string, w: string) => {
    const v = cols[i++] ?? '';
    return left ? v.padEnd(Number(w)) : v.padStart(Number(w));
  }).trimEnd();
}

/** What `tsvs top` is showing: the API's query plus whether real servers are listed. */
export interface TopView {
  q: string;
  filter: Problem[];
  sort: Sort;
  offset: number;
  /** List each service's real servers under it. */
  servers: boolean;
}

/** A drawn frame and how many services it showed in full (the next page starts after them). */
export interface TopFrame {
  text: string;
  shown: number;
}

/** Lines above the services: title, totals, services, servers, position, blank, header. */
const HEAD_LINES = 7;

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** The totals lines: over the whole table, whatever the page shows. */
function totalsLines(st: StatusPage, total: Rates): string[] {
  const t = st.totals;
  const w = t.servicesWith;
  const problems = [
    w.down && `${w.down} with a server down`,
    w.quiesced && `${w.quiesced} with one at weight 0`,
    w.overloaded && `${w.overloaded} with one overloaded`,
    w.nodest && `${w.nodest} with no usable server`,
  ].filter(Boolean);
  const sv = t.servers;
  return [
    `Total: ${fmtCount(total.cps)} conn/s  in ${fmtBytes(total.inbps)}/s  out ${fmtBytes(total.outbps)}/s  ` +
      `active ${t.activeconns}  inactive ${t.inactconns}  connections ${t.stats.conns}  no-destination ${t.noDestination}`,
    `Services: ${t.services}${problems.length ? ` (${problems.join(', ')})` : ''}`,
    `Real servers: ${sv.total}  up ${sv.up}  down ${sv.down}${sv.removed ? ` (+${sv.removed} removed)` : ''}  unchecked ${sv.unchecked}  weight 0 ${sv.quiesced}  overloaded ${sv.overloaded}`,
  ];
}

/** Where the page is and what narrows it. */
function positionLine(st: StatusPage, view: TopView, shown: number): string {
  const narrowed = [view.q && `search "${view.q}"`, view.filter.length && `filter ${view.filter.join(',')}`].filter(Boolean);
  const what = narrowed.length ? `${plural(st.matched, 'service')} match ${narrowed.join(' and ')}` : plural(st.matched, 'service');
  const range = shown ? `${st.offset + 1}-${st.offset + shown} of ` : st.offset ? 'none past the end of ' : '';
  return `Showing ${range}${what}, by ${st.sort}`;
}

/** One service's lines: its row, then (when asked) its real servers and removed ones. */
function serviceLines(
  s: StatusPage['services'][number],
  prev: StatusPage['services'][number] | undefined,
  dt: number,
  servers: boolean,
): string[] {
  const r = ratesOf(s.stats, prev?.stats, dt, s.rates);
  const out = [
    row([
      `${s.label} ${s.scheduler}`,
      '',
      '',
      String(s.dests.reduce((a, d) => a + d.activeconns, 0)),
      String(s.dests.reduce((a, d) => a + d.inactconns, 0)),
      fmtCount(r.cps),
      fmtBytes(r.inbps),
      fmtBytes(r.outbps),
      String(s.stats.conns),
      String(s.dests.reduce((a, d) => a + d.connectFailures, 0)),
    ]),
  ];
  if (!servers) return out;
  const prevDest = new Map(prev?.dests.map((d) => [d.id, d]) ?? []);
  for (const d of s.dests) {
    const dr = ratesOf(d.stats, prevDest.get(d.id)?.stats, dt, d.rates);
    const health = d.health.state + (d.health.lastCheck && !d.health.lastCheck.ok ? '*' : '');
    out.push(
      row([
        `  -> ${d.id}`,
        d.weight === 0 && d.drainedFrom !== undefined ? `0 (${d.drainedFrom})` : String(d.weight),
        health,
        String(d.activeconns),
        String(d.inactconns),
        fmtCount(dr.cps),
        fmtBytes(dr.inbps),
        fmtBytes(dr.outbps),
        String(d.stats.conns),
        String(d.connectFailures),
      ]),
    );
    if (d.health.lastCheck && !d.health.lastCheck.ok) out.push(`       * ${d.health.lastCheck.reason}`);
  }
  for (const x of s.removed ?? []) {
    out.push(`${row([`  -> ${x.id}`, '-', `${x.health.state}*`, '', '', '', '', '', '', ''])}  (removed by health checking)`);
    if (x.health.lastCheck && !x.health.lastCheck.ok) out.push(`       * ${x.health.lastCheck.reason}`);
  }
  return out;
}

/**
 * One frame of `tsvs top` as text. `prev` is the previous frame's page, for measured rates.
 * With `rows`, the frame fits that many terminal lines: services are drawn whole while they
 * fit (the first one is drawn cut short if it alone is too tall), and the last line is left
 * for `footer` (the keys, or the search being typed).
 */
export function renderTop(
  st: StatusPage,
  prev: StatusPage | null,
  opts: { view?: TopView; rows?: number; footer?: string } = {},
): TopFrame {
  const view = opts.view ?? { q: '', filter: [], sort: st.sort, offset: st.offset, servers: true };
  const dt = prev ? (Date.parse(st.at) - Date.parse(prev.at)) / 1000 : 0;
  const prevSvc = new Map(prev?.services.map((s) => [s.id, s]) ?? []);
  const total = ratesOf(st.totals.stats, prev?.totals.stats, dt, st.totals.rates);
  const measured = prev && dt > 0 ? `rates over the last ${dt.toFixed(1)}s` : 'rates: 2s estimator';
  const body: string[] = [];
  const room = opts.rows === undefined ? Infinity : Math.max(1, opts.rows - HEAD_LINES - (opts.footer === undefined ? 0 : 1));
  let shown = 0;
  for (const s of st.services) {
    const block = serviceLines(s, prevSvc.get(s.id), dt, view.servers);
    if (body.length + block.length > room) {
      if (shown === 0) {
        body.push(...block.slice(0, room));
        shown = 1;
      }
      break;
    }
    body.push(...block);
    shown++;
  }
  if (!st.services.length) body.push(st.totals.services ? '(no virtual service matches)' : '(no virtual services)');
  const lines = [
    `tsvs top - ${st.at.slice(11, 19)} UTC  ${st.dataplane} data plane  VRRP ${st.vrrp.configured ? st.vrrp.instances.map((i) => `${i.name} ${i.state}`).join(', ') : 'not configured'}  (${measured})`,
    ...totalsLines(st, total),
    positionLine(st, view, shown),
    '',
    row(['SERVICE / REAL SERVER', 'WEIGHT', 'HEALTH', 'ACTIVE', 'INACT', 'CONN/S', 'IN/S', 'OUT/S', 'CONNS', 'FAILED']),
    ...body,
  ];
  if (opts.footer !== undefined) {
    if (opts.rows !== undefined) while (lines.length < opts.rows - 1) lines.push('');
    lines.push(opts.footer);
  }
  return { text: `${lines.join('\n')}\n`, shown };
}

/** The interactive state of `tsvs top`: the view, the search being typed, the pages behind. */
export interface TopState {
  view: TopView;
  /** The search text being typed after "/", or null. */
  typing: string | null;
  /** Offsets of the pages before this one, for PgUp. */
  back: number[];
  quit: boolean;
}

const FILTER_CYCLE: Problem[][] = [[], ...PROBLEMS.map((p) => [p])];
const SORT_CYCLE: Sort[] = ['rate', 'conns', 'name', 'table'];
/** The keys' one-line help, at the bottom of an interactive frame. */
export const KEYS_HELP = '/ search  f filter  s order  r servers  PgDn/space PgUp/b pages  g first  q quit';

/** Splits a chunk of raw terminal input into keys: escape sequences whole, other bytes one by one. */
export function splitKeys(chunk: string): string[] {
  const keys: string[] = [];
  for (let i = 0; i < chunk.length; ) {
    // biome-ignore lint/suspicious/noControlCharactersInRegex: matching the terminal's ESC [ key sequences is the point
    const m = /^\x1b\[[0-9;]*[~A-Za-z]/.exec(chunk.slice(i));
    const k = m ? m[0] : chunk[i]!;
    keys.push(k);
    i += k.length;
  }
  return keys;
}

/**
 * The state after one key. `shown` is how many services the current frame showed and
 * `matched` how many match, for paging.
 */
export function topKey(st: TopState, key: string, shown: number, matched: number): TopState {
  const v = st.view;
  const restart = (view: Partial<TopView>): TopState => ({ ...st, typing: null, back: [], view: { ...v, ...view, offset: 0 } });
  if (key === '\x03') return { ...st, quit: true };
  if (st.typing !== null) {
    if (key === '\r' || key === '\n') return restart({ q: st.typing.trim() });
    if (key === '\x1b') return { ...st, typing: null };
    if (key === '\x7f' || key === '\b') return { ...st, typing: st.typing.slice(0, -1) };
    if (key.length === 1 && key >= ' ' && st.typing.length < MAX_QUERY) return { ...st, typing: st.typing + key };
    return st;
  }
  switch (key) {
    case 'q':
      return { ...st, quit: true };
    case '/':
      return { ...st, typing: v.q };
    case 'f': {
      const i = FILTER_CYCLE.findIndex((f) => f.join() === v.filter.join());
      return restart({ filter: FILTER_CYCLE[(i + 1) % FILTER_CYCLE.length]! });
    }
    case 's':
      return restart({ sort: SORT_CYCLE[(SORT_CYCLE.indexOf(v.sort) + 1) % SORT_CYCLE.length]! });
    case 'r':
      return { ...st, view: { ...v, servers: !v.servers } };
    case 'g':
      return { ...st, back: [], view: { ...v, offset: 0 } };
    case ' ':
    case '\x1b[6~':
      if (v.offset + Math.max(1, shown) >= matched) return st;
      return { ...st, back: [...st.back, v.offset], view: { ...v, offset: v.offset + Math.max(1, shown) } };
    case 'b':
    case '\x1b[5~': {
      if (!st.back.length) return v.offset ? { ...st, view: { ...v, offset: 0 } } : st;
      return { ...st, back: st.back.slice(0, -1), view: { ...v, offset: st.back[st.back.length - 1]! } };
    }
    default:
      return st;
  }
}

/** The footer of an interactive frame: the search being typed, or the keys. */
function footerOf(st: TopState): string {
  return st.typing !== null ? `Search: ${st.typing}_   (Enter applies, Esc cancels)` : KEYS_HELP;
}

export async function runTop(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        ...CLIENT_OPTIONS,
        interval: { type: 'string', short: 'd' },
        iterations: { type: 'string', short: 'n' },
        once: { type: 'boolean' },
        search: { type: 'string' },
        filter: { type: 'string' },
        sort: { type: 'string' },
        limit: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (e) {
    process.stderr.write(`tsvs top: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const interval = Number(values.interval ?? 1);
  if (!Number.isFinite(interval) || interval < 0.1) {
    process.stderr.write(`tsvs top: --interval "${values.interval}": must be a number of seconds >= 0.1\n`);
    return 2;
  }
  const iterations = values.once ? 1 : values.iterations === undefined ? Infinity : Number(values.iterations);
  if (!(iterations >= 1)) {
    process.stderr.write(`tsvs top: --iterations "${values.iterations}": must be a number >= 1\n`);
    return 2;
  }
  const limit = Number(values.limit ?? 50);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) {
    process.stderr.write(`tsvs top: --limit "${values.limit}": must be a whole number from 1 to ${MAX_LIMIT}\n`);
    return 2;
  }
  const sort = (values.sort ?? 'rate') as Sort;
  if (!SORTS.includes(sort)) {
    process.stderr.write(`tsvs top: --sort "${values.sort}": must be one of ${SORTS.join(', ')}\n`);
    return 2;
  }
  const filter = (values.filter ? values.filter.split(',') : []) as Problem[];
  const badFilter = filter.find((f) => !PROBLEMS.includes(f));
  if (badFilter !== undefined) {
    process.stderr.write(`tsvs top: --filter "${badFilter}": must be one of ${PROBLEMS.join(', ')}\n`);
    return 2;
  }
  const client = clientFrom(values);
  const tty = !values.once && process.stdout.isTTY;
  const keys = tty && process.stdin.isTTY;
  let state: TopState = {
    view: { q: (values.search ?? '').slice(0, MAX_QUERY), filter, sort, offset: 0, servers: true },
    typing: null,
    back: [],
    quit: false,
  };
  let last: { page: StatusPage; shown: number } | null = null;
  let wake: (() => void) | null = null;
  const stop = () => {
    state = { ...state, quit: true };
    wake?.();
  };
  const onKey = (k: Buffer) => {
    for (const key of splitKeys(k.toString('latin1'))) state = topKey(state, key, last?.shown ?? 0, last?.page.matched ?? 0);
    wake?.();
  };
  if (keys) {
    process.stdin.setRawMode(true);
    process.stdin.on('data', onKey);
  }
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  let prev: StatusPage | null = null;
  try {
    for (let i = 0; i < iterations && !state.quit; ) {
      const rows = tty ? process.stdout.rows || 24 : undefined;
      const v = state.view;
      const query = {
        q: v.q,
        filter: v.filter,
        sort: v.sort,
        offset: v.offset,
        limit: rows === undefined ? limit : Math.min(MAX_LIMIT, Math.max(1, rows - HEAD_LINES - 1)),
      };
      let st: StatusPage;
      try {
        st = await fetchStatusPage(client, query);
      } catch (e) {
        process.stderr.write(`tsvs top: ${clientError(e)}\n`);
        return 1;
      }
      const frame = renderTop(st, prev, { view: v, ...(rows === undefined ? {} : { rows, footer: keys ? footerOf(state) : '' }) });
      last = { page: st, shown: frame.shown };
      // Home and clear-to-end, so the screen does not flicker.
      process.stdout.write(tty ? `\x1b[H\x1b[2J${frame.text}` : i > 0 ? `\n${frame.text}` : frame.text);
      prev = st;
      i++;
      if (i < iterations && !state.quit) {
        await new Promise<void>((r) => {
          const t = setTimeout(r, interval * 1000);
          // A key redraws at once.
          wake = () => {
            clearTimeout(t);
            r();
          };
        });
      }
    }
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    if (keys) {
      process.stdin.off('data', onKey);
      process.stdin.setRawMode(false);
      process.stdin.pause();
    }
  }
  return 0;
}
