/**
 * The userspace data plane: a TCP and UDP proxy in Node that puts the core table into
 * effect. It is tsvs's default plane and needs no privileges beyond binding the VIP's port.
 *
 * Semantics, and where they differ from kernel LVS-NAT:
 * - Full NAT. The client connection ends at the director and a new one goes to the real
 *   server, which sees the director's address, not the client's. `masq` (-m) real servers
 *   are carried this way, as is `fullnat`; `route` (-g) and `tunnel` (-i) need the kernel
 *   and are refused, as are fwmark, port-zero and SCTP services (a proxy sees no marks and
 *   cannot bind every port).
 * - A VIP must be a local address: each service's socket is bound in `prepare`, before the
 *   table changes, so a batch with a non-local VIP or a taken port is refused whole.
 * - Connection entries follow the two sockets through the kernel's TCP state machine (see
 *   tcp.ts), so ActiveConn/InActConn, TIME_WAIT and thresholds read as for kernel NAT.
 * - Removing a real server (-d) closes its open connections at once and removes their
 *   entries: the kernel's `expire_nodest_conn=1`. With the kernel default (0) packets of
 *   such connections are dropped silently and clients hang until their own timeouts; a
 *   proxy that kept relaying to a removed server would be worse still, since health
 *   checks remove servers that no longer answer.
 * - Setting a weight to 0 only stops new connections; open ones continue.
 * - A real server that refuses or does not answer within `connectTimeoutMs`: the failure is
 *   counted per server (`counters()`), the server is skipped by new connections for
 *   FAILING_HOLD_MS, and the client, who has seen nothing yet, goes to another server (up
 *   to `redispatchRetries` times, haproxy's `option redispatch`); only then is it reset.
 * - Connection limits (global, per service, per client, UDP flows) and a reserve of file
 *   descriptors (limits.ts): a refused TCP client is reset at accept, a refused UDP
 *   datagram dropped, each counted and logged.
 * - Packet counters count chunks read (one or more segments) and datagrams; byte counters
 *   count payload bytes exactly.
 * - Per service, `proxyProtocol` puts a PROXY protocol header (v1/v2, src/net/proxyproto.ts)
 *   in front of what goes to the real server, and `transparent` connects from the client's
 *   address (IP_TRANSPARENT, src/net/socket.ts; reply routing in transparent.ts).
 * - `workers: N` relays TCP in N worker threads on SO_REUSEPORT listeners, with the table
 *   and the one scheduler staying here (workers.ts, worker.ts). See docs/userspace.md.
 *
 * Driving it: `start(table)`, then for each batch `prepare(ops)` → `table.applyAll(ops)`,
 * or `abort(ops)` if the batch is not applied after all; the owner calls `table.tick()`
 * about once a second so entries expire; `stop(drainMs)` at the end.
 */
import type { LogFn } from '../../core/log.js';
import type { Conn } from '../../core/conn.js';
import { TsvsError } from '../../core/errors.js';
import { serviceId, serviceLabel, type VirtualService } from '../../core/service.js';
import type { IpvsTable, TableEvent, TableListener } from '../../core/table.js';
import type { FwdMethod, Op, ServiceConfig, ServiceKey } from '../../core/types.js';
import { loadSocketLib, transparentProblem } from '../../net/socket.js';
import { BindError, type DataPlane, type UnboundService } from '../dataplane.js';
import { bindTcp, bindUdp, checkDestSupported, checkServiceOptions, checkServiceSupported } from './bind.js';
import { CLOCK_MS, DEFAULT_REDISPATCH_RETRIES, ProxyContext, type ServiceListener } from './context.js';
import { type LimitName, type LimitOptions, Limits } from './limits.js';
import { TcpListener, TcpSession } from './tcp.js';
import { TransparentRouting, type TransparentRoutingOptions } from './transparent.js';
import { UdpFlow, UdpListener } from './udp.js';
import { WorkerPool, WorkerSessionRef } from './workers.js';

/** A service whose late bind failed is tried again after this, doubled per failure up to BIND_RETRY_MAX_MS. */
const BIND_RETRY_MS = 1000;
const BIND_RETRY_MAX_MS = 30_000;

export interface UserspaceOptions {
  /** Where the plane logs (JSON-line logger of the daemon); silent by default. */
  log?: LogFn;
  /** How long to wait for a real server to accept a connection; default 5000 ms. */
  connectTimeoutMs?: number;
  /**
   * Worker threads carrying TCP (tsvsd --workers): 1 (the default) relays in the main
   * thread; N > 1 starts N workers, each with its own SO_REUSEPORT listener per TCP
   * service, while the main thread keeps the table and the scheduler (workers.ts).
   */
  workers?: number;
  /**
   * Set up (and remove at stop) the routing that brings real servers' replies to
   * transparent connections back to this host: nft table `inet tsvs` plus an ip rule and
   * a local route (transparent.ts). Off by default: the operator asks for it.
   */
  transparentRouting?: boolean | TransparentRoutingOptions;
  /** Connection limits and the descriptor reserve (limits.ts); none but the default reserve by default. */
  limits?: LimitOptions;
  /** Other real servers a new TCP connection tries after a failed connect; default 2, 0 = reset at once. */
  redispatchRetries?: number;
}

/** What the plane counts beyond the table's counters, for metrics. */
export interface UserspaceCounters {
  /** Clients refused because the scheduler found no server (connections and new UDP flows). */
  noDestination: number;
  /** Connections to a real server that failed (refused, timed out, unreachable), by server `addr:port`. */
  connectFailures: Record<string, number>;
  /** Clients refused by a limit, by service label and limit (tsvs_limit_refused_total). */
  limitRefused: Array<{ service: string; limit: LimitName; count: number }>;
  /** New connections sent to another real server after a failed connect, by service label. */
  redispatches: Record<string, number>;
  /** UDP flows closed to make room for new ones. */
  udpFlowsReaped: number;
  /** Descriptors open in the process (estimate) and its limit (`ulimit -n`; null if unlimited). */
  fds: { open: number; limit: number | null; reserve: number };
}

/** The userspace proxy plane (`tsvsd --dataplane userspace`); see the file comment. */
export class UserspaceDataPlane implements DataPlane {
  readonly name = 'userspace';
  readonly methods: ReadonlySet<FwdMethod> = new Set<FwdMethod>(['masq', 'fullnat']);

  private readonly log: LogFn;
  private readonly connectTimeoutMs: number;
  private readonly limitOptions: LimitOptions;
  private readonly redispatchRetries: number;
  private ctx: ProxyContext | null = null;
  private unsubscribe: (() => void) | null = null;
  private clockTimer: NodeJS.Timeout | null = null;
  /** Listeners carrying a service now, by service id. */
  private readonly live = new Map<string, ServiceListener>();
  /** Bound by `prepare` for a batch not applied yet. */
  private readonly prepared = new Map<string, ServiceListener>();
  /**
   * Detached by a service deletion in the batch being applied; a later add of the same
   * service in the same batch (`-C` then `-R`) takes the socket over, and the batch's
   * commit closes the rest.
   */
  private readonly parked = new Map<string, ServiceListener>();
  /** Services added without `prepare` and being bound now. */
  private readonly late = new Set<string>();
  /** Services in the table whose bind failed (a restore at start): retried with a bounded backoff. */
  private readonly unboundRetry = new Map<string, { info: UnboundService; delay: number; timer: NodeJS.Timeout | null }>();
  private readonly workers: number;
  private pool: WorkerPool | null = null;
  private readonly routing: TransparentRouting | null;
  /** The host's answer to "may we make transparent sockets", once asked. */
  private transparentChecked: Promise<string | null> | null = null;

  constructor(opts: UserspaceOptions = {}) {
    this.log = opts.log ?? (() => {});
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 5000;
    this.workers = opts.workers ?? 1;
    this.limitOptions = opts.limits ?? {};
    this.redispatchRetries = opts.redispatchRetries ?? DEFAULT_REDISPATCH_RETRIES;
    if (!Number.isInteger(this.workers) || this.workers < 1 || this.workers > 256) {
      throw new TsvsError(
        'INVALID',
        `userspace data plane: workers ${String(opts.workers)} must be 1..256`,
        `--workers must be a whole number from 1 to 256, or auto (got ${String(opts.workers)}).`,
      );
    }
    const r = opts.transparentRouting;
    this.routing = r ? new TransparentRouting(this.log, r === true ? {} : r) : null;
  }

  /** Worker threads carrying TCP (1: the main thread itself). */
  get workerCount(): number {
    return this.workers;
  }

  async start(table: IpvsTable): Promise<void> {
    if (this.ctx) throw new TsvsError('DATAPLANE', 'userspace data plane: already started', 'The userspace data plane is already started.');
    // Restored state must be carried in full, or the daemon must not start.
    const services = table.list();
    for (const svc of services) {
      checkServiceSupported(svc);
      checkServiceOptions(svc.config());
      for (const d of svc.dests) checkDestSupported(svc, d.config());
    }
    await this.checkTransparent(services.map((s) => s.config()));
    const ctx = new ProxyContext(table, this.connectTimeoutMs, this.log);
    ctx.udpTimeoutMs = table.timeouts().udp * 1000;
    ctx.redispatchRetries = this.redispatchRetries;
    ctx.limits = new Limits(this.limitOptions);
    await ctx.limits.sampleNow();
    this.log('info', 'userspace data plane limits', { ...ctx.limits.describe(), redispatchRetries: this.redispatchRetries });
    if (this.routing) await this.routing.setup();
    if (this.workers > 1) {
      try {
        await loadSocketLib();
        const pool = new WorkerPool(ctx, this.workers);
        await pool.start();
        this.pool = pool;
      } catch (e) {
        await this.routing?.teardown();
        throw new TsvsError(
          'DATAPLANE',
          `userspace data plane: cannot start ${this.workers} workers`,
          `Cannot start ${this.workers} userspace workers: ${(e as Error).message}`,
        );
      }
      this.log(
        'info',
        `userspace data plane: ${this.workers} worker threads carry TCP (SO_REUSEPORT listeners); UDP stays in the main thread`,
        { workers: this.workers },
      );
    }
    let bound: ServiceListener[];
    try {
      bound = await bindAll(ctx, services, this.pool);
    } catch (e) {
      await this.pool?.stop();
      this.pool = null;
      await this.routing?.teardown();
      throw e;
    }
    this.ctx = ctx;
    services.forEach((svc, i) => {
      this.attach(svc, bound[i]!);
    });
    this.unsubscribe = table.subscribe(this.listener);
    this.clockTimer = setInterval(() => {
      ctx.clock = table.now();
      ctx.limits.sample(ctx.clock);
    }, CLOCK_MS);
    this.clockTimer.unref();
    if (services.length)
      this.log('info', `userspace data plane carrying ${services.length} service(s)`, { services: services.map((s) => s.label) });
  }

  async prepare(ops: readonly Op[]): Promise<void> {
    const ctx = this.requireStarted();
    // Refuse what cannot be carried before binding anything.
    const configs = [];
    for (const op of ops) {
      if (op.op === 'add-service') checkServiceSupported(op.service);
      else if (op.op === 'add-server' || op.op === 'edit-server') checkDestSupported(op.service, op.dest);
      if (op.op === 'add-service' || op.op === 'edit-service') {
        checkServiceOptions(op.service);
        configs.push(op.service);
      }
    }
    await this.checkTransparent(configs);
    // Which added services need a new socket: one deleted earlier in the same batch
    // hands its socket over instead (see `parked`).
    const exists = new Set(this.live.keys());
    const freed = new Set<string>();
    const want: ServiceKey[] = [];
    for (const op of ops) {
      if (op.op === 'flush') {
        for (const id of exists) freed.add(id);
        exists.clear();
      } else if (op.op === 'delete-service') {
        const id = serviceId(op.service);
        if (exists.delete(id)) freed.add(id);
      } else if (op.op === 'add-service') {
        const id = serviceId(op.service);
        if (freed.delete(id) || this.prepared.has(id) || exists.has(id)) {
          exists.add(id);
          continue;
        }
        exists.add(id);
        want.push(op.service);
      }
    }
    if (want.length === 0) return;
    const bound = await bindAll(ctx, want, this.pool);
    want.forEach((k, i) => {
      this.prepared.set(serviceId(k), bound[i]!);
    });
  }

  /**
   * Refuses transparent services on a host (or user) that cannot make transparent sockets,
   * and warns once when the reply routing was not asked for.
   */
  private async checkTransparent(configs: readonly ServiceConfig[]): Promise<void> {
    const t = configs.filter((c) => c.transparent);
    if (t.length === 0) return;
    this.transparentChecked ??= transparentProblem();
    const problem = await this.transparentChecked;
    if (problem) {
      const label = serviceLabel(t[0]!);
      throw new TsvsError(
        'DATAPLANE',
        `${label}: transparent mode unavailable: ${problem}`,
        `${label}: transparent mode is not available on this host: ${problem}.`,
      );
    }
    if (!this.routing && !this.warnedRouting) {
      this.warnedRouting = true;
      this.log(
        'warn',
        'transparent services: replies from real servers reach this host only with the reply routing (nft socket transparent, ip rule, local route); tsvsd was not asked to set it up (TSVS_TRANSPARENT_SETUP=1), see docs/userspace.md',
        {},
      );
    }
  }

  private warnedRouting = false;

  abort(ops: readonly Op[]): void {
    for (const op of ops) {
      if (op.op !== 'add-service') continue;
      const id = serviceId(op.service);
      const l = this.prepared.get(id);
      if (l) {
        this.prepared.delete(id);
        l.close();
      }
    }
  }

  async stop(drainMs: number): Promise<void> {
    const ctx = this.ctx;
    if (!ctx) return;
    const all = [...this.live.values(), ...this.prepared.values(), ...this.parked.values()];
    for (const l of all) l.stopAccepting();
    if (ctx.openTcp > 0)
      this.log('info', `draining ${ctx.openTcp} open connection(s) for up to ${drainMs} ms`, { open: ctx.openTcp, drainMs });
    await ctx.drained(drainMs);
    if (ctx.openTcp > 0) this.log('info', `closing ${ctx.openTcp} connection(s) still open after the drain`, { open: ctx.openTcp });
    for (const l of all) l.close();
    this.live.clear();
    this.prepared.clear();
    this.parked.clear();
    for (const id of [...this.unboundRetry.keys()]) this.forgetUnbound(id);
    await this.pool?.stop();
    this.pool = null;
    await this.routing?.teardown();
    this.unsubscribe?.();
    this.unsubscribe = null;
    if (this.clockTimer) clearInterval(this.clockTimer);
    this.clockTimer = null;
    this.ctx = null;
  }

  /** The plane's own counters (refusals, failed connects), for metrics. */
  counters(): UserspaceCounters {
    const ctx = this.ctx;
    const lim = ctx?.limits;
    return {
      noDestination: ctx?.noDestination ?? 0,
      connectFailures: ctx ? Object.fromEntries(ctx.connectFailures) : {},
      limitRefused: lim?.refusedRows() ?? [],
      redispatches: ctx ? Object.fromEntries(ctx.redispatches) : {},
      udpFlowsReaped: lim?.reaped ?? 0,
      fds: {
        open: lim?.fdsInUse() ?? 0,
        limit: lim && Number.isFinite(lim.fdLimit) ? lim.fdLimit : null,
        reserve: lim?.fdReserve ?? 0,
      },
    };
  }

  /** Services in the table that could not be bound yet (a port another program holds); retried. */
  unbound(): UnboundService[] {
    return [...this.unboundRetry.values()].map((u) => ({ ...u.info }));
  }

  /** With --workers N: how many clients each worker thread has taken since start (else null). */
  workerAccepts(): number[] | null {
    return this.pool ? [...this.pool.accepted] : null;
  }

  /** TCP connections currently relayed. */
  openConnections(): number {
    return this.ctx?.openTcp ?? 0;
  }

  // ---------------------------------------------------------------- following the table

  private readonly listener: TableListener = {
    change: (ev) => this.onChange(ev),
    commit: () => {
      for (const l of this.parked.values()) l.close();
      this.parked.clear();
    },
    connExpired: (c) => this.onExpired(c),
  };

  private onChange(ev: TableEvent): void {
    switch (ev.type) {
      case 'service-added': {
        const id = ev.svc.id;
        const l = this.prepared.get(id) ?? this.parked.get(id);
        this.prepared.delete(id);
        this.parked.delete(id);
        if (l) this.attach(ev.svc, l);
        else this.bindLate(ev.svc);
        return;
      }
      case 'service-deleted': {
        this.forgetUnbound(ev.svc.id);
        const l = this.live.get(ev.svc.id);
        if (!l) return;
        this.live.delete(ev.svc.id);
        l.detach();
        this.parked.set(ev.svc.id, l);
        return;
      }
      case 'dest-deleted':
        this.live.get(ev.svc.id)?.destDeleted(ev.dest);
        return;
      case 'service-edited':
        // Its PROXY protocol / transparent options may have changed: workers need the copy.
        this.live.get(ev.svc.id)?.attach(ev.svc);
        return;
      case 'timeouts':
        if (this.ctx) this.ctx.udpTimeoutMs = ev.timeouts.udp * 1000;
        return;
      default:
        // service-edited, dest-added/edited, zeroed: the table decides, nothing to do here.
        return;
    }
  }

  private onExpired(c: Conn): void {
    const h = c.handle;
    if (h instanceof TcpSession) h.terminate('expired');
    else if (h instanceof WorkerSessionRef) h.kill('expired');
    else if (h instanceof UdpFlow) h.close();
  }

  private attach(svc: VirtualService, l: ServiceListener): void {
    l.attach(svc);
    this.live.set(svc.id, l);
  }

  /**
   * A service reached the table without `prepare` (the table was changed directly): bind
   * now, and log instead of refusing, since the change is already made.
   */
  private bindLate(svc: VirtualService): void {
    const ctx = this.ctx;
    if (!ctx || this.late.has(svc.id)) return;
    try {
      checkServiceSupported(svc);
    } catch (e) {
      this.log('error', (e as Error).message, { service: svc.label });
      return;
    }
    this.late.add(svc.id);
    bindAll(ctx, [svc], this.pool).then(
      ([l]) => {
        this.late.delete(svc.id);
        // Still wanted? The table may have moved on while we were binding.
        if (this.ctx === ctx && ctx.table.get(svc) === svc && !this.live.has(svc.id)) {
          this.attach(svc, l!);
          const u = this.unboundRetry.get(svc.id);
          if (u)
            this.log('info', `${svc.label}: bound after ${u.info.attempts} failed tries; the service is carried now`, {
              service: svc.label,
            });
        } else l!.close();
        this.forgetUnbound(svc.id);
      },
      (e: unknown) => {
        this.late.delete(svc.id);
        this.retryBind(ctx, svc, e);
      },
    );
  }

  /**
   * A service in the table could not be bound: it stays in the table (and the state file),
   * is listed by `unbound()`, and is tried again after 1 s, 2 s, 4 s ... up to 30 s apart
   * until it binds or leaves the table. The first failure logs the reason; then one line per
   * try at debug.
   */
  private retryBind(ctx: ProxyContext, svc: VirtualService, e: unknown): void {
    if (this.ctx !== ctx || ctx.table.get(svc) !== svc) {
      this.forgetUnbound(svc.id);
      return;
    }
    const errno = e instanceof BindError ? e.errno : ((e as NodeJS.ErrnoException).code ?? 'EUNKNOWN');
    const message = (e as Error).message;
    let u = this.unboundRetry.get(svc.id);
    if (!u) {
      u = { info: { service: svc.label, errno, message, since: new Date().toISOString(), attempts: 0 }, delay: BIND_RETRY_MS, timer: null };
      this.unboundRetry.set(svc.id, u);
      this.log('error', `${svc.label}: not carried: ${message} Retrying, at most ${BIND_RETRY_MAX_MS / 1000} s apart.`, {
        service: svc.label,
        errno,
      });
    } else {
      this.log('debug', `${svc.label}: still cannot bind (${errno})`, { service: svc.label, errno, attempts: u.info.attempts + 1 });
    }
    u.info.attempts++;
    u.info.errno = errno;
    u.info.message = message;
    const entry = u;
    entry.timer = setTimeout(() => {
      entry.timer = null;
      if (this.unboundRetry.get(svc.id) === entry) this.bindLate(svc);
    }, entry.delay);
    entry.timer.unref();
    entry.delay = Math.min(entry.delay * 2, BIND_RETRY_MAX_MS);
  }

  private forgetUnbound(id: string): void {
    const u = this.unboundRetry.get(id);
    if (!u) return;
    if (u.timer) clearTimeout(u.timer);
    this.unboundRetry.delete(id);
  }

  private requireStarted(): ProxyContext {
    if (!this.ctx) throw new TsvsError('DATAPLANE', 'userspace data plane: not started', 'The userspace data plane is not started.');
    return this.ctx;
  }
}

/** Binds every service's socket, or none: on a failure the others are released and the first error thrown. */
async function bindAll(ctx: ProxyContext, keys: readonly ServiceKey[], pool: WorkerPool | null): Promise<ServiceListener[]> {
  const results = await Promise.allSettled(
    keys.map(async (k): Promise<ServiceListener> => {
      if (k.protocol === 'udp') return new UdpListener(ctx, await bindUdp(k));
      if (pool) return pool.listen(k, serviceId(k));
      return new TcpListener(ctx, await bindTcp(k));
    }),
  );
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    for (const r of results) if (r.status === 'fulfilled') r.value.close();
    throw failed.reason;
  }
  return results.map((r) => (r as PromiseFulfilledResult<ServiceListener>).value);
}
