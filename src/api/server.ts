/**
 * The control API over HTTP/JSON. The same app serves the Unix control socket (full
 * access, protected by the socket's file mode) and, with `--api HOST:PORT`, TCP, where
 * every call that changes state needs the bearer token. It also serves /metrics, the
 * OpenAPI document, the live event stream and the dashboard: tsvsadm, `tsvs top`,
 * `tsvs drain` and the dashboard are all clients of these routes.
 *
 * Errors are JSON `{ error: { code, message, detail } }`: `message` is what ipvsadm would
 * print, `detail` names the object, and the HTTP status comes from the code.
 */
import { timingSafeEqual } from 'node:crypto';
import { Hono, type Context, type MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { streamSSE } from 'hono/streaming';
import { formatAddrPort } from '../core/addr.js';
import { isTsvsError, TsvsError } from '../core/errors.js';
import { IPVS_CONN_TAB_SIZE, IPVS_VERSION } from '../core/table.js';
import type { Op } from '../core/types.js';
import type { SyncDaemonView } from './control.js';
import type { VrrpSource } from '../ha/source.js';
import type { HealthSource } from '../health/source.js';
import type { ApiDirector } from './director.js';
import type { HostNames, ListenerStats } from './listener.js';
import { METRICS_CONTENT_TYPE, renderMetrics } from './metrics.js';
import { failingOpIndex } from './failing-op.js';
import { openApiDocument } from './openapi.js';
import { ndjsonResponse, wantsNdjson } from './stream.js';
import { dashboardRoutes } from './routes/dashboard.js';
import { serviceRoutes } from './routes/services.js';
import { statusPageRoutes } from './routes/status-page.js';
import { apiContext, counterHistory, runReload, statusView, type ReloadOutcome } from './routes/view.js';
import { readJsonBody } from './body.js';

export type { ReloadOutcome };

/**
 * Runs the director's reload (the one given to createControlApp) and counts it in
 * tsvs_config_reloads_total; for the daemon's SIGHUP handler, so that every reload counts.
 */
export function reloadCounted(director: ApiDirector): Promise<ReloadOutcome> {
  return runReload(apiContext(director));
}

export interface ApiOptions {
  /** Bearer token required for state-changing calls; when undefined, changes are allowed (Unix socket). */
  token?: string | undefined;
  /** Refuse state-changing calls altogether (TCP listener without a token). */
  readOnly?: boolean;
  /** Require the token for reads as well (only meaningful with a token). */
  protectReads?: boolean;
  /** Health state of real servers; "unchecked" for all when not given. */
  health?: HealthSource;
  /** VRRP state; "not configured" when not given. */
  vrrp?: VrrpSource;
  /**
   * Re-reads the configuration and applies the difference (the daemon's reload, also run on
   * SIGHUP). Without it, POST /v1/reload answers 501.
   */
  reload?: () => Promise<ReloadOutcome>;
  /** Connection sync daemons (src/sync); without it /v1/sync lists none and refuses to start one. */
  sync?: SyncControl;
  /** Milliseconds between /v1/events frames (default 1000). */
  eventIntervalMs?: number;
  /**
   * The multicast interface of the configuration's sync daemon: POST /v1/sync without
   * `mcastIfn` uses it, and is refused when there is none.
   */
  syncInterface?: string | undefined;
  /** TCP listener: the Host names it answers to (DNS rebinding); others get 421. The control socket takes any Host. */
  hostNames?: HostNames;
  /** This listener's counters: a refused Host counts here. */
  listener?: ListenerStats;
  /** Every API listener's counters, for /metrics. */
  listeners?: readonly ListenerStats[];
}

/** What the API needs of the sync daemons (src/sync/manager.ts SyncManager). */
export interface SyncControl {
  list(): SyncDaemonView[];
  start(d: SyncDaemonView): Promise<void>;
  stop(state: 'master' | 'backup'): Promise<void>;
}

function errorResponse(c: Context, e: unknown) {
  const err = isTsvsError(e) ? e : new TsvsError('INTERNAL', (e as Error)?.message ?? String(e));
  return c.json({ error: err.toJSON() }, err.status as 400);
}

/** Largest body of POST /v1/ops: about 250,000 ipvsadm -R lines. */
const OPS_BODY_LIMIT = 64 * 1024 * 1024;
/** Largest body of any other request. */
const BODY_LIMIT = 1024 * 1024;

/** 413 naming the limit, so that a client can split its batch. */
function tooLarge(c: Context, limit: number, what: string) {
  const mib = `${limit / (1024 * 1024)} MiB`;
  return c.json(
    {
      error: {
        code: 'TOO_LARGE',
        message: `Request too large: tsvsd takes at most ${mib} for ${what}; nothing was applied`,
        detail: `${what}: the request body exceeds the limit of ${mib} (${limit} bytes); split it into smaller batches`,
      },
    },
    413,
  );
}

function tokenMatches(header: string | undefined, token: string): boolean {
  if (!header?.startsWith('Bearer ')) return false;
  const given = Buffer.from(header.slice(7));
  const want = Buffer.from(token);
  return given.length === want.length && timingSafeEqual(given, want);
}

function intParam(c: Context, name: string): number | undefined {
  const v = c.req.query(name);
  if (v === undefined) return undefined;
  if (!/^\d{1,9}$/.test(v)) throw new TsvsError('BAD_REQUEST', `query parameter ${name}=${JSON.stringify(v)}: must be an integer >= 0`);
  return Number(v);
}

export function createControlApp(director: ApiDirector, opts: ApiOptions = {}): Hono {
  const app = new Hono();
  const { table } = director;
  const ctx = apiContext(director, opts.health, opts.vrrp);
  if (opts.reload) ctx.reload = opts.reload;

  const unauthorized = (c: Context) =>
    errorResponse(c, new TsvsError('UNAUTHORIZED', 'missing or wrong bearer token', 'Unauthorized: send "Authorization: Bearer TOKEN"'));

  // Guard for calls that change state.
  const mutating: MiddlewareHandler = async (c, next) => {
    if (opts.readOnly && opts.token === undefined) {
      return errorResponse(
        c,
        new TsvsError(
          'UNAUTHORIZED',
          'this API listener is read-only: configure a token to allow changes',
          'Read-only API: configure a token to allow changes',
        ),
      );
    }
    if (opts.token !== undefined && !tokenMatches(c.req.header('authorization'), opts.token)) return unauthorized(c);
    await next();
    return undefined;
  };

  // Before anything else, the TCP listener refuses a Host it does not answer to (DNS rebinding).
  const hostNames = opts.hostNames;
  if (hostNames) {
    app.use('*', async (c, next) => {
      const host = c.req.header('host');
      if (hostNames.allows(host)) return next();
      const shown = JSON.stringify(host!.slice(0, 100));
      opts.listener?.hit('bad-host', `request with Host ${shown} refused: not a name of this API (add --api-host if it is one)`);
      return c.json(
        {
          error: {
            code: 'MISDIRECTED',
            message: `Host ${shown} is not a name of this API`,
            detail:
              `Host ${shown}: tsvsd's TCP API answers only to IP addresses, localhost and the names given with --api-host ` +
              "(a check against DNS rebinding); if this name is the director's, start tsvsd with --api-host NAME",
          },
        },
        421,
      );
    });
  }

  // Request bodies are bounded: a batch of operations may be large (a restore of 50,000
  // lines is about 12 MB), anything else is small.
  app.use('/v1/ops', bodyLimit({ maxSize: OPS_BODY_LIMIT, onError: (c) => tooLarge(c, OPS_BODY_LIMIT, 'a batch of operations') }));
  const smallBody = bodyLimit({ maxSize: BODY_LIMIT, onError: (c) => tooLarge(c, BODY_LIMIT, `${c.req.method} ${c.req.path}`) });
  app.use('*', (c, next) => (c.req.path === '/v1/ops' ? next() : smallBody(c, next)));

  if (opts.protectReads && opts.token !== undefined) {
    const token = opts.token;
    // The dashboard's page itself carries no data; it asks for the token.
    app.use('/v1/*', async (c, next) => {
      if (c.req.path === '/v1/openapi.json' || tokenMatches(c.req.header('authorization'), token)) return next();
      return unauthorized(c);
    });
    app.use('/metrics', async (c, next) => (tokenMatches(c.req.header('authorization'), token) ? next() : unauthorized(c)));
  }

  app.get('/v1/info', (c) =>
    c.json({
      name: 'tsvsd',
      version: process.env.npm_package_version ?? '0.1.0',
      pid: process.pid,
      dataplane: director.dataplane.name,
      ipvsVersion: table.view().version,
      // What a client may do here: the dashboard shows its buttons only when changes are possible.
      changes: opts.readOnly && opts.token === undefined ? 'disabled' : opts.token !== undefined ? 'token' : 'open',
      // Whether the live table is on disk (null without --state), and the services the plane could not bring up.
      state: director.saveStatus?.() ?? null,
      unbound: director.dataplane.unbound?.() ?? [],
    }),
  );
  // Listings first catch up with a polling data plane, so they show the traffic just sent.
  const fresh = async () => {
    await director.dataplane.refresh?.();
  };
  // The table; with "Accept: application/x-ndjson" (or ?format=ndjson) as a stream: a
  // head line (the TableView without services, plus their count), one ServiceView per
  // line in the same order, and {"end":true}. tsvsadm lists through the stream.
  app.get('/v1/table', async (c) => {
    await fresh();
    if (!wantsNdjson(c.req.header('accept'), c.req.query('format'))) return c.json(table.view());
    const services = table.list();
    const head = {
      version: IPVS_VERSION,
      size: IPVS_CONN_TAB_SIZE,
      timeouts: table.timeouts(),
      stats: table.totals.snapshot(),
      rates: table.totals.rates(),
      count: services.length,
    };
    return ndjsonResponse(head, services, (s) => s.view(), { end: true });
  });

  // The connection table, optionally filtered and paged; the total is in X-Total-Count.
  app.get('/v1/connections', async (c) => {
    await fresh();
    const offset = intParam(c, 'offset') ?? 0;
    const limit = intParam(c, 'limit');
    const service = c.req.query('service');
    const server = c.req.query('server');
    // One service's entries come from its index; the filter below still decides.
    const svc = service !== undefined ? table.getById(service) : undefined;
    let conns = svc ? table.connViewOf(svc) : table.connView();
    if (service !== undefined) conns = conns.filter((x) => `${x.protocol.toLowerCase()}:${formatAddrPort(x.vaddr, x.vport)}` === service);
    if (server !== undefined) conns = conns.filter((x) => formatAddrPort(x.daddr, x.dport) === server);
    c.header('X-Total-Count', String(conns.length));
    const page = conns.slice(offset, limit === undefined ? undefined : offset + limit);
    // As /v1/table: a head line with the count, one ConnView per line, {"end":true}.
    if (wantsNdjson(c.req.header('accept'), c.req.query('format'))) {
      return ndjsonResponse({ count: page.length }, page, (x) => x, { end: true }, { 'X-Total-Count': String(conns.length) });
    }
    return c.json(page);
  });
  // Connection sync daemons: GET lists them (-L --daemon), POST starts one (--start-daemon),
  // DELETE /v1/sync/master|backup stops one (--stop-daemon).
  app.get('/v1/sync', (c) => c.json(opts.sync?.list() ?? []));
  app.post('/v1/sync', mutating, async (c) => {
    if (!opts.sync)
      throw new TsvsError('NOT_SUPPORTED', 'this tsvsd has no connection sync', 'Connection sync is not available in this tsvsd');
    let body: unknown;
    try {
      body = await readJsonBody(c);
    } catch (e) {
      return errorResponse(c, e as TsvsError);
    }
    // No default interface: a sync daemon on a guessed one (ipvsadm's eth0) would sync nothing.
    const b = body as Record<string, unknown> | null;
    if (b && typeof b === 'object' && !Array.isArray(b) && (b.mcastIfn === undefined || b.mcastIfn === null || b.mcastIfn === '')) {
      if (!opts.syncInterface) {
        const detail =
          'sync daemon: the field "mcastIfn" (the multicast interface, ipvsadm --mcast-interface) is missing and the configuration names none; ' +
          'send it, e.g. {"state":"master","mcastIfn":"eth1"}';
        return errorResponse(c, new TsvsError('BAD_REQUEST', detail, 'Missing field "mcastIfn" (the sync interface)'));
      }
      body = { ...b, mcastIfn: opts.syncInterface };
    }
    await opts.sync.start(body as SyncDaemonView);
    return c.json({ ok: true }, 201);
  });
  app.delete('/v1/sync/:state', mutating, async (c) => {
    if (!opts.sync) throw new TsvsError('NO_DAEMON', 'this tsvsd has no connection sync');
    const state = c.req.param('state');
    if (state !== 'master' && state !== 'backup')
      throw new TsvsError('BAD_REQUEST', `sync daemon state "${state}": must be master or backup`);
    await opts.sync.stop(state);
    return c.json({ ok: true });
  });

  app.post('/v1/ops', mutating, async (c) => {
    let body: unknown;
    try {
      body = await readJsonBody(c);
    } catch (e) {
      return errorResponse(c, e as TsvsError);
    }
    const ops = (body as { ops?: unknown } | null)?.ops;
    if (!Array.isArray(ops)) {
      return errorResponse(c, new TsvsError('BAD_REQUEST', 'body must be {"ops": [...]}', 'Body must be {"ops": [...]}'));
    }
    try {
      await director.apply(ops as Op[]);
    } catch (e) {
      // Say which operation was refused, so that tsvsadm -R can name the input line.
      if (!isTsvsError(e) || ops.length < 2) throw e;
      const index = failingOpIndex(table, ops as Op[], e);
      return c.json({ error: { ...e.toJSON(), ...(index === undefined ? {} : { index }) } }, e.status as 400);
    }
    return c.json({ ok: true, applied: ops.length });
  });

  serviceRoutes(app, ctx, mutating);
  statusPageRoutes(app, ctx, opts.eventIntervalMs);

  app.get('/v1/stats', (c) => {
    const v = statusView(ctx);
    return c.json({
      at: v.at,
      stats: v.stats,
      rates: v.rates,
      connections: v.connections,
      dataplaneCounters: v.dataplaneCounters,
      services: v.services.map((s) => ({
        id: s.id,
        stats: s.stats,
        rates: s.rates,
        servers: s.dests.map((d) => ({
          id: d.id,
          activeconns: d.activeconns,
          inactconns: d.inactconns,
          stats: d.stats,
          rates: d.rates,
          connectFailures: d.connectFailures,
        })),
      })),
    });
  });

  app.get('/v1/history', (c) => c.json(counterHistory(ctx)));

  app.get('/v1/health', (c) =>
    c.json(
      statusView(ctx).services.flatMap((s) => [
        ...s.dests.map((d) => ({ service: s.id, server: d.id, inTable: true, ...d.health })),
        ...s.removed.map((r) => ({ service: s.id, server: r.id, inTable: false, ...r.health })),
      ]),
    ),
  );
  app.get('/v1/vrrp', (c) => {
    const v = ctx.vrrp.status();
    return c.json({ ...v, state: v.configured ? undefined : 'not configured' });
  });

  app.post('/v1/reload', mutating, async (c) => {
    if (!ctx.reload) {
      return c.json(
        {
          error: {
            code: 'NOT_IMPLEMENTED',
            message: 'Configuration reload is not available',
            detail: 'there is no configuration to reload (tsvsd was started without --config); change the table with the API or tsvsadm',
          },
        },
        501,
      );
    }
    const r = await runReload(ctx);
    if (r.ok) return c.json({ ok: true, changes: r.changes });
    return c.json(
      {
        error: {
          code: 'RELOAD_REFUSED',
          message: 'Configuration refused; the running table is unchanged',
          detail: r.error ?? 'reload failed',
        },
      },
      422,
    );
  });

  // Server-sent events: one "status" frame now and then every interval.
  app.get('/v1/events', (c) =>
    streamSSE(c, async (stream) => {
      let open = true;
      stream.onAbort(() => {
        open = false;
      });
      let id = 0;
      while (open) {
        await stream.writeSSE({ event: 'status', id: String(id++), data: JSON.stringify(statusView(ctx)) });
        await stream.sleep(opts.eventIntervalMs ?? 1000);
      }
    }),
  );

  app.get('/v1/openapi.json', (c) => c.json(openApiDocument()));
  app.get('/metrics', async (c) => {
    await fresh();
    return c.body(renderMetrics(statusView(ctx), { reloads: ctx.reloads, api: opts.listeners }), 200, {
      'content-type': METRICS_CONTENT_TYPE,
    });
  });

  dashboardRoutes(app);

  app.notFound((c) =>
    c.json({ error: { code: 'NOT_FOUND', message: 'Not found', detail: `${c.req.method} ${c.req.path}: no such route` } }, 404),
  );
  app.onError((e, c) => errorResponse(c, e));
  return app;
}
