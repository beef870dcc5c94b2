/**
 * The status view that the REST routes, the event stream, /metrics, the dashboard and
 * `tsvs top` all read: the table's listing plus what the table itself does not know
 * (health, data plane errors, VRRP), with the stable ids the API's URLs use.
 */
import { destId, serviceId, serviceLabel, type VirtualService } from '../../core/service.js';
import type { ConnView, DestView, Rates, ServiceView, Stats, Timeouts } from '../../core/types.js';
import { NO_VRRP, type VrrpSource, type VrrpStatus } from '../../ha/source.js';
import { UNCHECKED, type HealthSource, type ServerHealth } from '../../health/source.js';
import type { UnboundService } from '../../dataplane/dataplane.js';
import type { ApiDirector, SaveStatus } from '../director.js';
import { dataPlaneCounters, type DataPlaneCounters } from '../health.js';

/** A real server as the API shows it. */
export interface ServerStatus extends DestView {
  /** "addr:port" ("[v6]:port"): the `:server` part of its URL. */
  id: string;
  health: ServerHealth;
  /** Failed connects from the data plane to this server (0 when the plane does not count them). */
  connectFailures: number;
  /** The weight it had before a drain, while drained through the API. */
  drainedFrom?: number;
}

/** A virtual service as the API shows it. */
export interface ServiceStatus extends Omit<ServiceView, 'dests'> {
  /** "tcp:addr:port", "udp:...", "fwm:N": the `:service` part of its URL. */
  id: string;
  /** ipvsadm's name for it: "TCP 10.0.0.1:80". */
  label: string;
  dests: ServerStatus[];
  /** Real servers health checking removed from the table, with their health (see HealthSource.removed). */
  removed: Array<{ id: string; health: ServerHealth }>;
}

export interface StatusView {
  /** ISO 8601 time of the snapshot. */
  at: string;
  dataplane: string;
  services: ServiceStatus[];
  stats: Stats;
  rates: Rates;
  timeouts: Timeouts;
  /** Entries in the connection table (templates included). */
  connections: number;
  dataplaneCounters: DataPlaneCounters | null;
  vrrp: VrrpStatus;
  /** Whether the live table is on disk (null without --state); `saved: false` while tsvsd runs unsaved. */
  state?: SaveStatus | null;
  /** Services in the table that the data plane could not bring up yet, and keeps trying to (e.g. a port in use). */
  unbound?: UnboundService[];
}

/** Connection states that are over: the entry only lingers so that late packets match it. */
const FINISHED_STATES = new Set(['TIME_WAIT', 'CLOSE']);

/**
 * Connections a drain still waits for: entries (not persistence templates) to the real
 * server that have not finished. TIME_WAIT entries count as InActConn for two minutes but
 * carry nothing, so a drain does not wait for them.
 */
export function openConnections(conns: readonly ConnView[]): number {
  return conns.filter((c) => !c.template && !FINISHED_STATES.has(c.state)).length;
}

/** Counters at one moment: what /v1/history returns, so charts start full. */
export interface CounterSample {
  at: string;
  stats: Stats;
  services: Record<string, { stats: Stats; dests: Record<string, Stats> }>;
}

/** Samples kept for /v1/history: two minutes at one per second. */
const HISTORY_SAMPLES = 120;
const HISTORY_EVERY_MS = 1000;
/**
 * Up to this many services, every service is sampled. Beyond it, only the services a
 * status page showed in the last HISTORY_SAMPLES seconds are (at most WATCH_MAX of them),
 * so that a table of 10,000 services does not keep 120 copies of every counter.
 */
export const HISTORY_ALL_SERVICES = 100;
/** The most services sampled at once on a large table. */
export const WATCH_MAX = 400;

/** What every route handler shares. */
export interface ApiContext {
  director: ApiDirector;
  health: HealthSource;
  vrrp: VrrpSource;
  /** Weights before a drain, by "serviceId serverId", so that restore can put them back. */
  drained: Map<string, number>;
  /** Recent counter samples, oldest first; filled once the API is asked for them. */
  history: CounterSample[];
  /** Services shown on a status page, by id, with when (ms); oldest first. See watchServices. */
  watched: Map<string, number>;
  sampler: NodeJS.Timeout | null;
  /** The daemon's configuration reload, when it has one. */
  reload?: () => Promise<ReloadOutcome>;
  /** Reloads run through `runReload`, by result, for /metrics. */
  reloads: { success: number; failure: number };
}

/** What a configuration reload reports (the daemon's ReloadResult). */
export interface ReloadOutcome {
  ok: boolean;
  changes: string[];
  error?: string;
}

/**
 * Runs the reload and counts it. The daemon's SIGHUP handler may call this too, so that
 * tsvs_config_reloads_total counts every reload.
 */
export async function runReload(ctx: ApiContext): Promise<ReloadOutcome> {
  if (!ctx.reload) return { ok: false, changes: [], error: 'no reload function' };
  const r = await ctx.reload();
  ctx.reloads[r.ok ? 'success' : 'failure']++;
  return r;
}

/**
 * Marks services as being looked at (a status page showed them), so that a large table's
 * history samples them. Bounded: the least recently shown are forgotten first.
 */
export function watchServices(ctx: ApiContext, ids: readonly string[], now = Date.now()): void {
  for (const id of ids) {
    // Delete first, so the map's order stays "least recently shown first".
    ctx.watched.delete(id);
    ctx.watched.set(id, now);
  }
  for (const [id, at] of ctx.watched) {
    if (ctx.watched.size <= WATCH_MAX && now - at <= HISTORY_SAMPLES * HISTORY_EVERY_MS) break;
    ctx.watched.delete(id);
  }
}

/** The services one history sample covers: all of a small table, the watched ones of a large one. */
function sampledServices(ctx: ApiContext): VirtualService[] {
  const all = ctx.director.table.list();
  if (all.length <= HISTORY_ALL_SERVICES) return all;
  watchServices(ctx, []);
  return all.filter((s) => ctx.watched.has(s.id));
}

function sample(ctx: ApiContext): CounterSample {
  const t = ctx.director.table;
  const services: CounterSample['services'] = {};
  for (const s of sampledServices(ctx)) {
    const dests: Record<string, Stats> = {};
    for (const d of s.dests) dests[d.id] = d.stats.snapshot();
    services[s.id] = { stats: s.stats.snapshot(), dests };
  }
  return { at: new Date().toISOString(), stats: t.totals.snapshot(), services };
}

/**
 * The recent counter history. Sampling starts with the first request for it (a dashboard
 * being opened) and then runs for the life of the process, once a second.
 */
export function counterHistory(ctx: ApiContext): CounterSample[] {
  if (!ctx.sampler) {
    ctx.history.push(sample(ctx));
    ctx.sampler = setInterval(() => {
      ctx.history.push(sample(ctx));
      if (ctx.history.length > HISTORY_SAMPLES) ctx.history.shift();
    }, HISTORY_EVERY_MS);
    ctx.sampler.unref();
  }
  return ctx.history;
}

const contexts = new WeakMap<ApiDirector, ApiContext>();

/**
 * One context per director, shared by its socket and TCP listeners, so that a drain
 * started on one can be restored on the other.
 */
export function apiContext(director: ApiDirector, health?: HealthSource, vrrp?: VrrpSource): ApiContext {
  let ctx = contexts.get(director);
  if (!ctx) {
    ctx = {
      director,
      health: health ?? UNCHECKED,
      vrrp: vrrp ?? NO_VRRP,
      drained: new Map(),
      history: [],
      watched: new Map(),
      sampler: null,
      reloads: { success: 0, failure: 0 },
    };
    contexts.set(director, ctx);
  } else {
    if (health) ctx.health = health;
    if (vrrp) ctx.vrrp = vrrp;
  }
  return ctx;
}

export function drainKey(svcId: string, rsId: string): string {
  return `${svcId} ${rsId}`;
}

export function serviceStatus(ctx: ApiContext, s: ServiceView, counters: DataPlaneCounters | null): ServiceStatus {
  const id = serviceId(s);
  return {
    ...s,
    id,
    label: serviceLabel(s),
    dests: s.dests.map((d) => {
      const rid = destId(d);
      const out: ServerStatus = {
        ...d,
        id: rid,
        health: ctx.health.get(s, rid),
        connectFailures: counters?.connectFailures[rid] ?? 0,
      };
      const from = ctx.drained.get(drainKey(id, rid));
      if (from !== undefined) out.drainedFrom = from;
      return out;
    }),
    removed: (ctx.health.removed?.(s) ?? []).filter((r) => !s.dests.some((d) => destId(d) === r.id)),
  };
}

export function statusView(ctx: ApiContext): StatusView {
  const { director } = ctx;
  const t = director.table.view();
  const counters = dataPlaneCounters(director.dataplane);
  return {
    at: new Date().toISOString(),
    dataplane: director.dataplane.name,
    services: t.services.map((s) => serviceStatus(ctx, s, counters)),
    stats: t.stats,
    rates: t.rates,
    timeouts: t.timeouts,
    connections: director.table.conns.size,
    dataplaneCounters: counters,
    vrrp: ctx.vrrp.status(),
    state: director.saveStatus?.() ?? null,
    unbound: director.dataplane.unbound?.() ?? [],
  };
}
