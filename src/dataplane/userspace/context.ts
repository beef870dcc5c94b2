/**
 * What the userspace plane's TCP and UDP halves share: the table, a coarse copy of its
 * clock, the plane's own counters and a rate-limited logger. One instance per plane.
 */
import type { LogFn, LogLevel } from '../../core/log.js';
import type { Conn } from '../../core/conn.js';
import type { IpvsTable } from '../../core/table.js';
import type { Dest, VirtualService } from '../../core/service.js';
import type { TcpDir, TcpFlag } from '../../core/tcpstate.js';
import type { ProxyProtocolVersion } from '../../core/types.js';
import { type LimitName, Limits, REAP_MIN_IDLE_MS } from './limits.js';

/** Traffic re-arms a connection's timer at most this often (the kernel does it per packet). */
export const REARM_MS = 1000;
/** How often the coarse clock is refreshed from `table.now()`. */
export const CLOCK_MS = 250;
/** TCP keepalive on both legs: finds dead peers long before the 15 min ESTABLISHED timeout. */
export const KEEPALIVE_MS = 60_000;
/** One log line per key per this many milliseconds; the rest are counted and reported. */
const LOG_EVERY_MS = 1000;
/**
 * How long a real server whose connect failed is skipped by new connections (its OVERLOAD
 * flag, as for an upper threshold); each failure starts it again. A health check that
 * removes the server takes over from there.
 */
export const FAILING_HOLD_MS = 2000;
/** Other real servers a new TCP connection tries after its connect failed (haproxy's `retries` with `option redispatch`). */
export const DEFAULT_REDISPATCH_RETRIES = 2;

/** A UDP flow as the limits see it: it can be closed to make room. */
export interface Reapable {
  /** Closes the flow and removes its table entry. */
  reap(): void;
}

export class ProxyContext {
  /**
   * `table.now()` as of the last refresh (every CLOCK_MS). The data path compares against
   * it instead of reading the clock per chunk; it is only used to decide *when* to re-arm.
   */
  clock = 0;
  /** UDP timeout in ms, for one-packet flows' idle sockets. */
  udpTimeoutMs = 300_000;
  /** Open TCP sessions (client connections not yet fully closed). */
  openTcp = 0;
  noDestination = 0;
  /** Failed connects (refused, timed out, unreachable) per real server `addr:port`. */
  readonly connectFailures = new Map<string, number>();
  /** New connections sent to another real server after a failed connect, by service label. */
  readonly redispatches = new Map<string, number>();
  /** Other real servers a new connection tries after a failed connect; 0 = none (reset the client). */
  redispatchRetries = DEFAULT_REDISPATCH_RETRIES;
  /** Connection limits and descriptor headroom (limits.ts). */
  limits = new Limits({ fdLimit: Infinity });
  /** UDP flows by last activity, least recent first (re-inserted at most once a second per flow). */
  readonly udpIdle = new Map<Reapable, number>();
  /** Real servers whose connect failed, until when (coarse clock) new connections skip them. */
  private readonly failing = new Map<Dest, number>();
  private drainWaiter: (() => void) | null = null;
  private readonly lastLog = new Map<string, { at: number; suppressed: number }>();

  constructor(
    readonly table: IpvsTable,
    readonly connectTimeoutMs: number,
    readonly log: LogFn,
  ) {
    this.clock = table.now();
  }

  /** Logs at most once per second per `key`, saying how many similar lines were skipped. */
  logLimited(level: LogLevel, key: string, msg: string, fields: Record<string, unknown>): void {
    const now = this.clock;
    const e = this.lastLog.get(key);
    if (e && now - e.at < LOG_EVERY_MS) {
      e.suppressed++;
      return;
    }
    if (this.lastLog.size > 10_000) this.lastLog.clear();
    const suppressed = e?.suppressed ?? 0;
    this.lastLog.set(key, { at: now, suppressed: 0 });
    this.log(level, msg, suppressed ? { ...fields, suppressed } : fields);
  }

  /** The scheduler found no server: the client was refused ("no destination available"). */
  refused(svc: VirtualService, caddr: string): void {
    this.noDestination++;
    this.logLimited('warn', `nodest ${svc.id}`, `${svc.label}: no destination available, client refused`, {
      service: svc.label,
      client: caddr,
    });
  }

  /** A connection to a real server could not be made. */
  connectFailed(svc: VirtualService, dest: Dest | null, reason: string): void {
    const id = dest?.id ?? '?';
    this.connectFailures.set(id, (this.connectFailures.get(id) ?? 0) + 1);
    this.logLimited('warn', `connfail ${svc.id} ${id}`, `${svc.label}: connect to real server ${id} failed: ${reason}`, {
      service: svc.label,
      server: id,
      reason,
    });
  }

  /** A limit refused a client: counted, and logged once a second per service and limit. */
  limitRefused(label: string, limit: LimitName, caddr: string): void {
    this.limits.count(label, limit);
    this.logLimited('warn', `limit ${label} ${limit}`, `${label}: ${LIMIT_TEXT[limit]}, client refused`, {
      service: label,
      limit,
      client: caddr,
    });
  }

  /**
   * Whether a new connection (`fds` 2) or UDP flow (1) of `svcId` from `caddr` may open;
   * reaps idle UDP flows first when the flow cap or the descriptor ceiling is what stops it.
   * On yes the caller owns a slot, given back through `release`.
   */
  admit(svc: VirtualService, caddr: string, udp: boolean, fds: number): boolean {
    const lim = this.limits;
    lim.sample(this.clock);
    let why = lim.check(svc, caddr, udp, fds);
    for (let n = 0; (why === 'udp-flows' || why === 'fd-reserve') && n < fds && this.reapIdle(); n++) why = lim.check(svc, caddr, udp, fds);
    if (why !== null) {
      this.limitRefused(svc.label, why, caddr);
      return false;
    }
    lim.acquire(svc.id, caddr, udp, fds);
    return true;
  }

  /** Closes the UDP flow idle longest, if it has been idle for REAP_MIN_IDLE_MS; false if none. */
  private reapIdle(): boolean {
    const first = this.udpIdle.entries().next();
    if (first.done || this.clock - first.value[1] < REAP_MIN_IDLE_MS) return false;
    this.limits.reaped++;
    first.value[0].reap();
    this.udpIdle.delete(first.value[0]);
    return true;
  }

  /** Sets OVERLOAD on servers still failing, and lets the ones whose hold ran out back in. */
  private skipFailing(): void {
    if (this.failing.size === 0) return;
    const now = this.clock;
    for (const [d, until] of this.failing) {
      if (now < until && d.available) {
        d.overloaded = true;
        continue;
      }
      this.failing.delete(d);
      // Back to what its thresholds say (conn.ts unbind's rule, simplified).
      d.overloaded = d.uThreshold !== 0 && d.totalconns >= d.uThreshold;
    }
  }

  // ---- TcpEnv (tcp.ts): the table, directly.

  open(svc: ListenerService, caddr: string, cport: number): SessionConn | null {
    const vs = svc as VirtualService;
    if (!this.admit(vs, caddr, false, 2)) return null;
    this.skipFailing();
    const conn = this.table.schedule(vs, { protocol: 'tcp', caddr, cport, vaddr: vs.addr, vport: vs.port });
    if (conn === null) {
      this.limits.release(vs.id, caddr, false, 2);
      this.refused(vs, caddr);
      return null;
    }
    this.table.tcpEvent(conn, 'input', 'syn');
    return conn;
  }

  /**
   * The connect of `c` failed before anything reached the client: its server is marked
   * failing, the entry goes, and the client is scheduled again. Returns the new entry (the
   * limits slot carries over), or null when no other server can take it.
   */
  redispatch(c: SessionConn): SessionConn | null {
    const old = c as Conn;
    const svc = old.svc;
    const failed = old.dest;
    if (!old.dead) this.table.dropConn(old);
    // A persistence template would send the client back to the same server.
    if (old.control) this.table.conns.retireTemplate(old.control);
    if (failed) this.failing.set(failed, this.clock + FAILING_HOLD_MS);
    if (svc.dests.length < 2 || this.table.get(svc) !== svc) return null;
    this.skipFailing();
    const conn = this.table.schedule(svc, { protocol: 'tcp', caddr: old.caddr, cport: old.cport, vaddr: old.vaddr, vport: old.vport });
    if (conn === null) return null;
    if (conn.dest === failed) {
      this.table.dropConn(conn);
      return null;
    }
    this.table.tcpEvent(conn, 'input', 'syn');
    this.redispatches.set(svc.label, (this.redispatches.get(svc.label) ?? 0) + 1);
    this.logLimited(
      'info',
      `redispatch ${svc.id}`,
      `${svc.label}: connect to ${failed?.id ?? '?'} failed, client sent to ${conn.dest?.id}`,
      {
        service: svc.label,
        from: failed?.id,
        to: conn.dest?.id,
      },
    );
    return conn;
  }

  tcpEvent(c: SessionConn, dir: TcpDir, flag: TcpFlag): void {
    this.table.tcpEvent(c as Conn, dir, flag);
  }

  countIn(c: SessionConn, pkts: number, bytes: number): void {
    this.table.countIn(c as Conn, pkts, bytes);
  }

  countOut(c: SessionConn, pkts: number, bytes: number): void {
    this.table.countOut(c as Conn, pkts, bytes);
  }

  dropConn(c: SessionConn): void {
    this.table.dropConn(c as Conn);
  }

  serverFailed(c: SessionConn, reason: string): void {
    const conn = c as Conn;
    this.connectFailed(conn.svc, conn.dest, reason);
  }

  sessionOpened(_c?: SessionConn): void {
    this.openTcp++;
  }

  /**
   * Both sockets of a session are closed (in a worker: the main thread learnt it). The
   * entry, now only an InActConn waiting out TIME_WAIT or CLOSE, goes compact in the table.
   */
  sessionClosed(c?: SessionConn): void {
    if (c) {
      const conn = c as Conn;
      this.limits.release(conn.svc.id, conn.caddr, false, 2);
      if (!conn.dead) this.table.connClosed(conn);
    }
    this.openTcp--;
    if (this.openTcp === 0 && this.drainWaiter) {
      const w = this.drainWaiter;
      this.drainWaiter = null;
      w();
    }
  }

  /** Resolves when no TCP session is open, or after `ms`. */
  drained(ms: number): Promise<void> {
    if (this.openTcp === 0 || ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.drainWaiter = null;
        resolve();
      }, ms);
      this.drainWaiter = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}

const LIMIT_TEXT: Record<LimitName, string> = {
  global: 'connection limit of the director reached (--max-conns)',
  service: 'connection limit of the service reached (max_conns, or --max-conns-per-service)',
  client: "client's connection limit reached (max_conns_per_client, or --max-conns-per-client)",
  'udp-flows': 'UDP flow limit reached and no idle flow to reap (--max-udp-flows)',
  'fd-reserve': 'file descriptors nearly exhausted (ulimit -n minus --fd-reserve), no idle UDP flow to reap',
};

/**
 * What a listener needs to know of its service. A VirtualService is one; a worker thread
 * (--workers) gets a copy of these fields from the main thread.
 */
export interface ListenerService {
  readonly id: string;
  readonly label: string;
  readonly addr: string;
  readonly port: number;
  readonly proxyProtocol?: ProxyProtocolVersion | undefined;
  readonly transparent?: boolean | undefined;
}

/**
 * What a TCP session needs of its connection entry: a core Conn in one process, a
 * stand-in carrying the main thread's answer in a worker.
 */
export interface SessionConn {
  readonly caddr: string;
  readonly cport: number;
  readonly vaddr: string;
  readonly vport: number;
  readonly daddr: string;
  readonly dport: number;
  readonly dest: unknown;
  readonly timeoutMs: number;
  handle: unknown;
}

/** The socket of one virtual service (TCP listener or UDP socket) and what flows through it. */
export interface ServiceListener {
  /** The service it carries; null while bound but not (or no longer) attached. */
  readonly svc: ListenerService | null;
  /** Starts carrying `svc`'s traffic (again after an edit: its options may have changed). */
  attach(svc: VirtualService): void;
  /** Stops carrying traffic: closes its connections/flows, keeps the socket bound. */
  detach(): void;
  /** A real server was removed: close its connections and drop their entries. */
  destDeleted(dest: Dest): void;
  /** Stops accepting new connections/datagrams (drain); open TCP connections continue. */
  stopAccepting(): void;
  /** Closes the socket and everything still open through it. */
  close(): void;
}
