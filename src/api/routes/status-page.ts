/**
 * The status of a large table, a page at a time: totals over every service first, then one
 * searched, filtered, sorted page of services. This is what the dashboard and `tsvs top`
 * read, so that a director with 10,000 services costs them one page of views, not 10,000.
 *
 * Cost: one pass over the table reading plain numbers (counters, weights, flags, health
 * state) for the totals and the match, a sort of the matching services by a precomputed
 * key, and full views (serviceStatus) only for the services of the page.
 */
import type { Context, Hono } from 'hono';
import { streamSSE } from 'hono/streaming';
import { TsvsError } from '../../core/errors.js';
import type { VirtualService } from '../../core/service.js';
import type { Rates, Stats } from '../../core/types.js';
import type { VrrpStatus } from '../../ha/source.js';
import { dataPlaneCounters } from '../health.js';
import { counterHistory, serviceStatus, watchServices, type ApiContext, type CounterSample, type ServiceStatus } from './view.js';

/** What a service can be filtered on: it has at least one real server in that condition. */
export const PROBLEMS = ['down', 'quiesced', 'overloaded', 'nodest'] as const;
export type Problem = (typeof PROBLEMS)[number];

/** Protocol filter values: `fwm` matches firewall-mark services of both families. */
export const PROTOS = ['tcp', 'udp', 'sctp', 'fwm'] as const;
export type Proto = (typeof PROTOS)[number];

/**
 * Orders of a page. `table` is the table's own order (creation order, as ipvsadm lists);
 * `name` is by id with numbers compared as numbers; `conns` is active plus inactive
 * connections, most first; `rate` is the estimator's connections per second, then bytes
 * per second, most first.
 */
export const SORTS = ['table', 'name', 'conns', 'rate'] as const;
export type Sort = (typeof SORTS)[number];

/** Services per page when the request names no limit. */
export const DEFAULT_LIMIT = 20;
/** The most services one page may hold. */
export const MAX_LIMIT = 200;
/** The longest search text accepted. */
export const MAX_QUERY = 200;

/** A parsed request for one page. */
export interface StatusQuery {
  /** Search terms, lower case; a service matches when every term is in its id, scheduler or a real server's id. */
  terms: string[];
  /** Services with any of these problems (none: no problem filter). */
  problems: Problem[];
  /** Services of any of these protocols (none: every protocol). */
  protos: Proto[];
  sort: Sort;
  offset: number;
  limit: number;
}

/** Bit per problem, for the one pass. */
const BIT: Record<Problem, number> = { down: 1, quiesced: 2, overloaded: 4, nodest: 8 };

/** Totals over the whole table, whatever the page shows. */
export interface StatusTotals {
  services: number;
  /** Services with at least one real server in each condition ("nodest": no real server can take a new connection). */
  servicesWith: Record<Problem, number>;
  servers: {
    /** Real servers in the table. */
    total: number;
    /** Their health: up, down, unchecked (no checker). */
    up: number;
    down: number;
    unchecked: number;
    /** At weight 0: no new connections. */
    quiesced: number;
    /** Over their upper threshold: skipped by the scheduler. */
    overloaded: number;
    /** Taken out of the table by health checking (not counted in total). */
    removed: number;
  };
  activeconns: number;
  inactconns: number;
  /** Entries in the connection table (templates included). */
  connections: number;
  stats: Stats;
  rates: Rates;
  /** New connections refused because no real server could take them (planes that count it). */
  noDestination: number;
  /** Failed connects to real servers, summed (planes that count them). */
  connectFailures: number;
}

/** One page of the status: GET /v1/status/page. */
export interface StatusPage {
  /** ISO 8601 time of the snapshot. */
  at: string;
  dataplane: string;
  vrrp: VrrpStatus;
  totals: StatusTotals;
  /** Services that match the search and filters (the page is a slice of these). */
  matched: number;
  offset: number;
  limit: number;
  sort: Sort;
  services: ServiceStatus[];
  /** Counter samples of the page's services and the totals, when asked with history=1. */
  history?: CounterSample[];
}

/** Quotes a query value for an error message, cut short so that errors never echo much. */
function quote(v: string): string {
  return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
}

function intParam(name: string, v: string | undefined, dflt: number, max: number): number {
  if (v === undefined || v === '') return dflt;
  if (!/^\d{1,9}$/.test(v)) throw new TsvsError('BAD_REQUEST', `query parameter ${name}=${quote(v)}: must be an integer >= 0`);
  const n = Number(v);
  if (n > max) throw new TsvsError('BAD_REQUEST', `query parameter ${name}=${n}: must be at most ${max}`);
  return n;
}

function listParam<T extends string>(name: string, v: string | undefined, allowed: readonly T[]): T[] {
  if (v === undefined || v === '') return [];
  const out: T[] = [];
  for (const x of v.split(',')) {
    const w = x.trim().toLowerCase();
    if (!(allowed as readonly string[]).includes(w))
      throw new TsvsError('BAD_REQUEST', `query parameter ${name}: ${quote(x)} is not one of ${allowed.join(', ')}`);
    if (!out.includes(w as T)) out.push(w as T);
  }
  return out;
}

/**
 * Parses the query of /v1/status/page: q, filter, proto, sort, offset, limit. Throws
 * BAD_REQUEST naming the parameter for anything it does not understand.
 */
export function parseStatusQuery(get: (name: string) => string | undefined): StatusQuery {
  const q = get('q') ?? '';
  if (q.length > MAX_QUERY) throw new TsvsError('BAD_REQUEST', `query parameter q: ${q.length} characters, at most ${MAX_QUERY}`);
  const sort = (get('sort') || 'table').toLowerCase();
  if (!(SORTS as readonly string[]).includes(sort))
    throw new TsvsError('BAD_REQUEST', `query parameter sort=${quote(sort)}: must be one of ${SORTS.join(', ')}`);
  return {
    terms: q.toLowerCase().split(/\s+/).filter(Boolean),
    problems: listParam('filter', get('filter'), PROBLEMS),
    protos: listParam('proto', get('proto'), PROTOS),
    sort: sort as Sort,
    offset: intParam('offset', get('offset'), 0, 1e9),
    limit: intParam('limit', get('limit'), DEFAULT_LIMIT, MAX_LIMIT),
  };
}

/** The service's protocol as the proto filter names it. */
function protoOf(s: VirtualService): Proto {
  return s.fwmark ? 'fwm' : s.protocol;
}

/**
 * Every search term appears in the service's id, its scheduler, or one of its real
 * servers' ids; except ":PORT", which means exactly that port (the service's or a real
 * server's), since ":80" as text would also find every real server on 8080.
 */
function matchesTerms(s: VirtualService, terms: string[], removedIds: readonly string[]): boolean {
  for (const t of terms) {
    const port = /^:(\d{1,5})$/.exec(t);
    if (port) {
      const n = Number(port[1]);
      if (s.port === n || s.dests.some((d) => d.port === n)) continue;
      return false;
    }
    if (s.id.includes(t) || s.scheduler.includes(t)) continue;
    if (s.dests.some((d) => d.id.includes(t)) || removedIds.some((id) => id.includes(t))) continue;
    return false;
  }
  return true;
}

interface Row {
  svc: VirtualService;
  /** Position in the table, the tiebreak of every order so pages are stable. */
  index: number;
  conns: number;
}

const collator = new Intl.Collator('en', { numeric: true });

/** Sorts rows in place by `sort`; rates are read only when sorting by rate. */
function sortRows(rows: Row[], sort: Sort): void {
  if (sort === 'table') return;
  if (sort === 'name') {
    rows.sort((a, b) => collator.compare(a.svc.id, b.svc.id) || a.index - b.index);
    return;
  }
  if (sort === 'conns') {
    rows.sort((a, b) => b.conns - a.conns || a.index - b.index);
    return;
  }
  const keyed = rows.map((r) => {
    const x = r.svc.stats.rates();
    return { r, cps: x.cps, bps: x.inbps + x.outbps };
  });
  keyed.sort((a, b) => b.cps - a.cps || b.bps - a.bps || b.r.conns - a.r.conns || a.r.index - b.r.index);
  for (let i = 0; i < rows.length; i++) rows[i] = keyed[i]!.r;
}

/**
 * Totals over the whole table and one page of it. Full service views are built only for
 * the page; everything else reads plain numbers in one pass.
 */
export function statusPage(ctx: ApiContext, query: StatusQuery, opts: { history?: boolean } = {}): StatusPage {
  const { director, health } = ctx;
  const table = director.table;
  const counters = dataPlaneCounters(director.dataplane);
  const servicesWith: Record<Problem, number> = { down: 0, quiesced: 0, overloaded: 0, nodest: 0 };
  const servers = { total: 0, up: 0, down: 0, unchecked: 0, quiesced: 0, overloaded: 0, removed: 0 };
  let activeconns = 0;
  let inactconns = 0;
  let count = 0;
  const wanted = query.problems.reduce((m, p) => m | BIT[p], 0);
  const rows: Row[] = [];
  const services = table.list();
  for (let index = 0; index < services.length; index++) {
    const s = services[index]!;
    count++;
    let flags = 0;
    let conns = 0;
    let usable = false;
    for (const d of s.dests) {
      servers.total++;
      const state = health.get(s, d.id).state;
      servers[state]++;
      if (state === 'down') flags |= BIT.down;
      if (d.weight === 0) {
        servers.quiesced++;
        flags |= BIT.quiesced;
      }
      if (d.overloaded) {
        servers.overloaded++;
        flags |= BIT.overloaded;
      }
      if (d.weight > 0 && !d.overloaded) usable = true;
      conns += d.activeconns + d.inactconns;
      activeconns += d.activeconns;
      inactconns += d.inactconns;
    }
    // Servers health checking removed are down too, though no longer in the table.
    const removed = health.removed ? health.removed(s).filter((r) => !s.dests.some((d) => d.id === r.id)) : [];
    if (removed.length) {
      servers.removed += removed.length;
      flags |= BIT.down;
    }
    if (!usable) flags |= BIT.nodest;
    for (const p of PROBLEMS) if (flags & BIT[p]) servicesWith[p]++;

    if (wanted && !(flags & wanted)) continue;
    if (query.protos.length && !query.protos.includes(protoOf(s))) continue;
    if (query.terms.length && !matchesTerms(s, query.terms, removed.length ? removed.map((r) => r.id) : [])) continue;
    rows.push({ svc: s, index, conns });
  }
  sortRows(rows, query.sort);
  const page = rows.slice(query.offset, query.offset + query.limit).map((r) => r.svc);
  // The page's services are the ones whose charts someone is looking at: sample them.
  watchServices(
    ctx,
    page.map((s) => s.id),
  );
  let noDestination = 0;
  let connectFailures = 0;
  if (counters) {
    noDestination = counters.noDestination;
    for (const n of Object.values(counters.connectFailures)) connectFailures += n;
  }
  const out: StatusPage = {
    at: new Date().toISOString(),
    dataplane: director.dataplane.name,
    vrrp: ctx.vrrp.status(),
    totals: {
      services: count,
      servicesWith,
      servers,
      activeconns,
      inactconns,
      connections: table.conns.size,
      stats: table.totals.snapshot(),
      rates: table.totals.rates(),
      noDestination,
      connectFailures,
    },
    matched: rows.length,
    offset: query.offset,
    limit: query.limit,
    sort: query.sort,
    services: page.map((s) => serviceStatus(ctx, s.view(), counters)),
  };
  if (opts.history) out.history = historyOf(ctx, new Set(page.map((s) => s.id)));
  return out;
}

/** The counter history cut down to the totals and the given services. */
function historyOf(ctx: ApiContext, ids: Set<string>): CounterSample[] {
  return counterHistory(ctx).map((smp) => {
    const services: CounterSample['services'] = {};
    for (const id of ids) {
      const s = smp.services[id];
      if (s) services[id] = s;
    }
    return { at: smp.at, stats: smp.stats, services };
  });
}

/** True for history=1 / history=true. */
function wantsHistory(c: Context): boolean {
  const v = c.req.query('history');
  return v === '1' || v === 'true';
}

/**
 * GET /v1/status/page: totals and one page (see StatusQuery for the parameters).
 * GET /v1/status/page/events: the same as server-sent events, a "status" event at once and
 * every `intervalMs`; with history=1 the first event carries the page's counter history.
 */
export function statusPageRoutes(app: Hono, ctx: ApiContext, intervalMs = 1000): void {
  const query = (c: Context) => parseStatusQuery((n) => c.req.query(n));
  app.get('/v1/status/page', (c) => c.json(statusPage(ctx, query(c), { history: wantsHistory(c) })));
  app.get('/v1/status/page/events', (c) => {
    // Parse before the stream starts, so a bad query is a 400 with the error, not an empty stream.
    const q = query(c);
    let history = wantsHistory(c);
    return streamSSE(c, async (stream) => {
      let open = true;
      stream.onAbort(() => {
        open = false;
      });
      let id = 0;
      while (open) {
        await stream.writeSSE({ event: 'status', id: String(id++), data: JSON.stringify(statusPage(ctx, q, { history })) });
        history = false;
        await stream.sleep(intervalMs);
      }
    });
  });
}
