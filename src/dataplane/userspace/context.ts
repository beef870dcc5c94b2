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

/** Traffic re-arms a connection's timer at most this often (the kernel does it per packet). */
export const REARM_MS = 1000;
/** How often the coarse clock is refreshed from `table.now()`. */
export const CLOCK_MS = 250;
/** TCP keepalive on both legs: finds dead peers long before the 15 min ESTABLISHED timeout. */
export const KEEPALIVE_MS = 60_000;
/** One log line per key per this many milliseconds; the rest are counted and reported. */
const LOG_EVERY_MS = 1000;

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

  // ---- TcpEnv (tcp.ts): the table, directly.

  open(svc: ListenerService, caddr: string, cport: number): SessionConn | null {
    const vs = svc as VirtualService;
    const conn = this.table.schedule(vs, { protocol: 'tcp', caddr, cport, vaddr: vs.addr, vport: vs.port });
    if (conn === null) {
      this.refused(vs, caddr);
      return null;
    }
    this.table.tcpEvent(conn, 'input', 'syn');
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
    if (c) this.table.connClosed(c as Conn);
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
