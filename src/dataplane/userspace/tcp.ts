/**
 * The TCP half of the userspace plane: one listener per virtual service, and per accepted
 * client a session that connects to the scheduled real server and relays both ways.
 *
 * The client connection ends here and a new one goes to the real server ("full NAT"), so
 * the real server sees the director's address. The table's connection entry follows the
 * two sockets through the kernel's TCP state machine as if they were one NAT'd connection:
 *
 *   accept ............ input SYN   NONE -> SYN_RECV (active)
 *   server connected .. input ACK   -> ESTABLISHED
 *   client FIN ........ input FIN   -> CLOSE_WAIT;   server FIN then -> TIME_WAIT
 *   server FIN ........ output FIN  -> FIN_WAIT;     client FIN then -> TIME_WAIT
 *   reset / error ..... RST         -> CLOSE
 *   connect failed .... output RST  SYN_RECV -> CLOSE (as if the server had refused)
 *
 * A connect that fails (refused, timed out, unreachable) happens before anything reached
 * the client, so the client is not reset at once: the env's `redispatch` drops the entry,
 * marks the server failing and schedules the client again, up to `redispatchRetries` times
 * (haproxy's `option redispatch` with `retries`). Only when no other server takes it is the
 * client reset.
 *
 * so a closed connection stays as an InActConn in TIME_WAIT until its timer runs out,
 * exactly as `ipvsadm -Ln` shows it for kernel NAT.
 */
import { errText, type LogLevel } from '../../core/log.js';
import net from 'node:net';
import { unmapAddr } from '../../core/addr.js';
import type { Dest } from '../../core/service.js';
import type { TcpDir, TcpFlag } from '../../core/tcpstate.js';
import { encodeProxyHeader } from '../../net/proxyproto.js';
import { connectTransparent } from '../../net/socket.js';
import { KEEPALIVE_MS, REARM_MS, type ListenerService, type ServiceListener, type SessionConn } from './context.js';

/**
 * What the TCP half needs from the rest of the plane. In one process it is the
 * ProxyContext, which schedules and records in the table directly; in a worker thread
 * (--workers) it is a stand-in that asks the main thread, which holds the table.
 */
export interface TcpEnv {
  /** Coarse clock (ms), refreshed every CLOCK_MS. */
  clock: number;
  readonly connectTimeoutMs: number;
  logLimited(level: LogLevel, key: string, msg: string, fields: Record<string, unknown>): void;
  /**
   * A new client: the scheduler's pick as a connection entry that has seen the SYN, or null
   * when the client is refused (the env logs and counts that).
   */
  open(svc: ListenerService, caddr: string, cport: number): SessionConn | null | Promise<SessionConn | null>;
  tcpEvent(c: SessionConn, dir: TcpDir, flag: TcpFlag): void;
  countIn(c: SessionConn, pkts: number, bytes: number): void;
  countOut(c: SessionConn, pkts: number, bytes: number): void;
  /** Removes the entry now (its real server was removed). */
  dropConn(c: SessionConn): void;
  /** The connection to the real server failed (refused, timed out, unreachable). */
  serverFailed(c: SessionConn, reason: string): void;
  /** Other servers a connection tries after a failed connect (0: none). */
  readonly redispatchRetries: number;
  /**
   * After serverFailed: drops `c`'s entry, marks its server failing and schedules the same
   * client again; the new entry, or null when no other server can take it.
   */
  redispatch(c: SessionConn): SessionConn | null | Promise<SessionConn | null>;
  sessionOpened(c: SessionConn): void;
  /** Both sockets of the session are closed. */
  sessionClosed(c: SessionConn): void;
}

/** Tears a socket down with an RST where it is connected (so the peer knows it was cut). */
function reset(s: net.Socket): void {
  if (s.destroyed) return;
  // Plain destroy in two cases: resetAndDestroy on a socket still connecting waits for the
  // connect to finish; and once end() has queued our FIN, libuv refuses the reset
  // (uv_tcp_close_reset: EINVAL while shutting down) and Node 20 then never closes the
  // handle, leaking the fd and keeping the process alive.
  if (s.connecting || s.writableEnded) s.destroy();
  else s.resetAndDestroy();
}

function ignore(): void {}

/** A TCP virtual service's listening socket. */
export class TcpListener implements ServiceListener {
  svc: ListenerService | null = null;
  /** Sessions still holding sockets. */
  readonly sessions = new Set<TcpSession>();

  constructor(
    readonly ctx: TcpEnv,
    readonly server: net.Server,
  ) {
    server.on('connection', (s: net.Socket) => this.accept(s));
    // Accept errors (EMFILE, ...) arrive here once listening; they must not kill the daemon.
    server.on('error', (err) =>
      ctx.logLimited('error', `accept ${this.svc?.id}`, `${this.svc?.label ?? 'listener'}: accept failed: ${errText(err)}`, {
        error: errText(err),
      }),
    );
  }

  attach(svc: ListenerService): void {
    this.svc = svc;
  }

  detach(): void {
    this.svc = null;
    for (const s of [...this.sessions]) s.terminate('rst');
  }

  destDeleted(dest: Dest): void {
    for (const s of [...this.sessions]) if (s.conn.dest === dest) s.terminate('drop');
  }

  stopAccepting(): void {
    this.server.close();
  }

  close(): void {
    this.svc = null;
    this.server.close();
    for (const s of [...this.sessions]) s.terminate('rst');
  }

  private accept(client: net.Socket): void {
    const svc = this.svc;
    const caddr = client.remoteAddress;
    const cport = client.remotePort;
    client.on('error', ignore);
    if (svc === null || caddr === undefined || cport === undefined) {
      // Bound for a batch not applied yet, or the client is already gone.
      reset(client);
      return;
    }
    const picked = this.ctx.open(svc, unmapAddr(caddr), cport);
    if (picked instanceof Promise) {
      picked.then(
        (conn) => this.start(client, svc, conn),
        () => reset(client),
      );
    } else {
      this.start(client, svc, picked);
    }
  }

  private start(client: net.Socket, svc: ListenerService, conn: SessionConn | null): void {
    if (conn === null) {
      reset(client);
      return;
    }
    if (client.destroyed) {
      // Gone while a worker waited for the main thread's pick.
      this.ctx.tcpEvent(conn, 'input', 'rst');
      this.ctx.sessionOpened(conn);
      this.ctx.sessionClosed(conn);
      return;
    }
    new TcpSession(this, client, conn, svc);
  }
}

/** Why a session is being torn down from outside. */
type Termination =
  /** Reset both sides; the entry goes to CLOSE (service deleted, plane stopped). */
  | 'rst'
  /** Reset both sides and remove the entry now (its real server was removed). */
  | 'drop'
  /** The entry already expired; just close the sockets. */
  | 'expired';

/** One client connection and its connection to the real server. */
export class TcpSession {
  /** The connection to the real server; null while a transparent connect is under way. */
  server: net.Socket | null = null;
  private established = false;
  /** Torn down, or both sides finished: no more table events from this session. */
  private done = false;
  private clientEnded = false;
  private serverEnded = false;
  /** Sockets not yet closed. */
  private open = 2;
  /** Coarse-clock time after which the next client / server chunk re-arms the entry. */
  private armIn = 0;
  private armOut = 0;
  /** Other servers tried after failed connects. */
  private tries = 0;

  constructor(
    private readonly listener: TcpListener,
    readonly client: net.Socket,
    /** The connection entry; a redispatch replaces it. */
    public conn: SessionConn,
    private readonly svc: ListenerService,
  ) {
    const ctx = listener.ctx;
    conn.handle = this;
    listener.sessions.add(this);
    ctx.sessionOpened(conn);
    client.on('error', this.onClientError);
    client.on('close', this.onSocketClose);
    this.connectServer();
  }

  /** Opens the connection to the entry's real server. */
  private connectServer(): void {
    const { conn, svc } = this;
    const ctx = this.listener.ctx;
    if (svc.transparent) {
      // From the client's own address (IP_TRANSPARENT): the socket is made through libc and
      // handed to Node once connected; see src/net/socket.ts.
      connectTransparent({
        srcAddr: conn.caddr,
        srcPort: 0,
        dstAddr: conn.daddr,
        dstPort: conn.dport,
        timeoutMs: ctx.connectTimeoutMs,
      }).then(
        (server) => {
          this.server = server;
          server.on('error', this.onServerError);
          server.on('close', this.onSocketClose);
          if (this.done) {
            server.destroy();
            return;
          }
          server.setNoDelay(true);
          server.setKeepAlive(true, KEEPALIVE_MS);
          this.onConnect();
        },
        (err: unknown) => {
          // No server socket will ever close: account for it here (unless another server is tried).
          if (this.done) return this.onSocketClose();
          if (!this.connectFailed(errText(err))) this.onSocketClose();
        },
      );
      return;
    }
    const server = net.connect({
      host: conn.daddr,
      port: conn.dport,
      allowHalfOpen: true,
      noDelay: true,
      keepAlive: true,
      keepAliveInitialDelay: KEEPALIVE_MS,
      timeout: ctx.connectTimeoutMs,
    });
    this.server = server;
    server.once('connect', this.onConnect);
    server.on('timeout', this.onConnectTimeout);
    server.on('error', this.onServerError);
    server.on('close', this.onSocketClose);
  }

  private readonly onConnect = (): void => {
    if (this.done) return;
    const { client, conn } = this;
    const server = this.server!;
    const ctx = this.listener.ctx;
    this.established = true;
    server.setTimeout(0);
    server.off('timeout', this.onConnectTimeout);
    ctx.tcpEvent(conn, 'input', 'ack');
    const pp = this.svc.proxyProtocol;
    if (pp) {
      // The header goes first, before any of the client's bytes (which are still paused).
      server.write(
        encodeProxyHeader(pp, { protocol: 'tcp', srcAddr: conn.caddr, srcPort: conn.cport, dstAddr: conn.vaddr, dstPort: conn.vport }),
      );
    }
    this.armIn = this.armOut = ctx.clock + REARM_MS;
    client.on('data', this.onClientData);
    server.on('data', this.onServerData);
    client.on('end', this.onClientEnd);
    server.on('end', this.onServerEnd);
    // Backpressure: a side that cannot take more pauses the other until it drains.
    client.on('drain', () => server.resume());
    server.on('drain', () => client.resume());
    client.resume();
  };

  // The hot path: one write, one counter update, and a number comparison. Packets are
  // counted one per chunk read (a chunk is often several TCP segments): the kernel counts
  // real packets, so pkts here is a lower bound while bytes are exact payload bytes.
  private readonly onClientData = (chunk: Buffer): void => {
    if (!this.server!.write(chunk)) this.client.pause();
    const ctx = this.listener.ctx;
    ctx.countIn(this.conn, 1, chunk.length);
    if (ctx.clock >= this.armIn) this.armIn = this.rearm('input');
  };

  private readonly onServerData = (chunk: Buffer): void => {
    if (!this.client.write(chunk)) this.server!.pause();
    const ctx = this.listener.ctx;
    ctx.countOut(this.conn, 1, chunk.length);
    if (ctx.clock >= this.armOut) this.armOut = this.rearm('output');
  };

  /**
   * Re-arms the entry's timer as traffic does. The kernel re-arms per packet; once per
   * second (or a quarter of a short timeout) keeps the data path cheap and the entry alive.
   */
  private rearm(dir: TcpDir): number {
    const ctx = this.listener.ctx;
    ctx.tcpEvent(this.conn, dir, 'ack');
    return ctx.clock + Math.min(REARM_MS, this.conn.timeoutMs >>> 2);
  }

  private readonly onClientEnd = (): void => {
    this.clientEnded = true;
    const table = this.listener.ctx;
    table.tcpEvent(this.conn, 'input', 'fin');
    this.server!.end();
    // Both FINs seen: the server's ACK of the last one (TIME_WAIT re-armed).
    if (this.serverEnded) table.tcpEvent(this.conn, 'output', 'ack');
  };

  private readonly onServerEnd = (): void => {
    this.serverEnded = true;
    const table = this.listener.ctx;
    table.tcpEvent(this.conn, 'output', 'fin');
    this.client.end();
    if (this.clientEnded) table.tcpEvent(this.conn, 'input', 'ack');
  };

  private readonly onConnectTimeout = (): void => {
    if (!this.established) this.connectFailed(`no answer within ${this.listener.ctx.connectTimeoutMs} ms`);
  };

  private readonly onServerError = (err: Error): void => {
    if (!this.established) this.connectFailed(errText(err));
    else this.abort('output');
  };

  private readonly onClientError = (): void => {
    this.abort('input');
  };

  private readonly onSocketClose = (): void => {
    this.open--;
    if (this.open === 0) {
      this.done = true;
      this.listener.sessions.delete(this);
      if (this.conn.handle === this) this.conn.handle = null;
      this.listener.ctx.sessionClosed(this.conn);
    } else if (!this.done && !(this.clientEnded && this.serverEnded)) {
      // One side went away without a clean close (destroyed under us): cut the other.
      this.abort(this.client.destroyed ? 'input' : 'output');
    }
  };

  /**
   * The real server refused, timed out or is unreachable: try another one (redispatch),
   * else reset the client. Returns true when another server is being tried.
   */
  private connectFailed(reason: string): boolean {
    if (this.done) return false;
    const ctx = this.listener.ctx;
    ctx.tcpEvent(this.conn, 'output', 'rst');
    ctx.serverFailed(this.conn, reason);
    if (this.tries < ctx.redispatchRetries && !this.client.destroyed) {
      this.tries++;
      // The failed socket leaves quietly: its close must not count as one of the session's two.
      const old = this.server;
      if (old) {
        old.removeAllListeners();
        old.on('error', ignore);
        old.destroy();
      }
      this.server = null;
      const prev = this.conn;
      if (prev.handle === this) prev.handle = null;
      const next = ctx.redispatch(prev);
      if (next instanceof Promise)
        next.then(
          (c) => this.redispatched(c, reason),
          () => this.redispatched(null, reason),
        );
      else this.redispatched(next, reason);
      return true;
    }
    this.done = true;
    this.server?.destroy();
    reset(this.client);
    return false;
  }

  /** The answer to a redispatch: connect to the new server, or reset the client. */
  private redispatched(next: SessionConn | null, reason: string): void {
    if (next === null || this.done || this.client.destroyed) {
      this.done = true;
      if (next) this.listener.ctx.tcpEvent(next, 'output', 'rst');
      this.listener.ctx.logLimited(
        'warn',
        `noredispatch ${this.svc.id}`,
        `${this.svc.label}: connect failed (${reason}) and no other real server took the client`,
        {
          service: this.svc.label,
        },
      );
      reset(this.client);
      // No server socket is open: account for it here.
      this.onSocketClose();
      return;
    }
    this.conn = next;
    next.handle = this;
    this.connectServer();
  }

  /** One side reset or failed: the RST travels on to the other side. */
  private abort(dir: TcpDir): void {
    if (this.done) return;
    this.done = true;
    this.listener.ctx.tcpEvent(this.conn, dir, 'rst');
    reset(this.client);
    if (this.server) reset(this.server);
  }

  /** Torn down by the plane; see Termination. */
  terminate(how: Termination): void {
    if (!this.done) {
      this.done = true;
      const table = this.listener.ctx;
      if (how === 'drop') table.dropConn(this.conn);
      else if (how === 'rst') table.tcpEvent(this.conn, this.established ? 'input' : 'output', 'rst');
    } else if (how === 'drop') {
      // Already closing (e.g. half-way through a reset): the entry still goes now.
      this.listener.ctx.dropConn(this.conn);
    }
    reset(this.client);
    if (this.server) reset(this.server);
  }
}
