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
 * so a closed connection stays as an InActConn in TIME_WAIT until its timer runs out,
 * exactly as `ipvsadm -Ln` shows it for kernel NAT.
 */
import net from 'node:net';
import { unmapAddr } from '../../core/addr.js';
import type { Conn } from '../../core/conn.js';
import type { RealServer, VirtualService } from '../../core/service.js';
import type { TcpDir } from '../../core/tcpstate.js';
import { errText, KEEPALIVE_MS, REARM_MS, type ProxyContext, type ServiceListener } from './context.js';

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
  svc: VirtualService | null = null;
  /** Sessions still holding sockets. */
  readonly sessions = new Set<TcpSession>();

  constructor(
    readonly ctx: ProxyContext,
    readonly server: net.Server,
  ) {
    server.on('connection', (s: net.Socket) => this.accept(s));
    // Accept errors (EMFILE, ...) arrive here once listening; they must not kill the daemon.
    server.on('error', (err) => ctx.logLimited('error', `accept ${this.svc?.id}`, `${this.svc?.label ?? 'listener'}: accept failed: ${errText(err)}`, { error: errText(err) }));
  }

  attach(svc: VirtualService): void {
    this.svc = svc;
  }

  detach(): void {
    this.svc = null;
    for (const s of [...this.sessions]) s.terminate('rst');
  }

  destDeleted(dest: RealServer): void {
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
    const table = this.ctx.table;
    const c = unmapAddr(caddr);
    const conn = table.schedule(svc, { protocol: 'tcp', caddr: c, cport, vaddr: svc.addr, vport: svc.port });
    if (conn === null) {
      reset(client);
      this.ctx.refused(svc, c);
      return;
    }
    table.tcpEvent(conn, 'input', 'syn');
    new TcpSession(this, client, conn);
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
  readonly server: net.Socket;
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

  constructor(
    private readonly listener: TcpListener,
    readonly client: net.Socket,
    readonly conn: Conn,
  ) {
    const ctx = listener.ctx;
    conn.handle = this;
    listener.sessions.add(this);
    ctx.sessionOpened();
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
    client.on('error', this.onClientError);
    server.on('close', this.onSocketClose);
    client.on('close', this.onSocketClose);
  }

  private readonly onConnect = (): void => {
    if (this.done) return;
    const { client, server, conn } = this;
    const ctx = this.listener.ctx;
    this.established = true;
    server.setTimeout(0);
    server.off('timeout', this.onConnectTimeout);
    ctx.table.tcpEvent(conn, 'input', 'ack');
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
    if (!this.server.write(chunk)) this.client.pause();
    const ctx = this.listener.ctx;
    ctx.table.countIn(this.conn, 1, chunk.length);
    if (ctx.clock >= this.armIn) this.armIn = this.rearm('input');
  };

  private readonly onServerData = (chunk: Buffer): void => {
    if (!this.client.write(chunk)) this.server.pause();
    const ctx = this.listener.ctx;
    ctx.table.countOut(this.conn, 1, chunk.length);
    if (ctx.clock >= this.armOut) this.armOut = this.rearm('output');
  };

  /**
   * Re-arms the entry's timer as traffic does. The kernel re-arms per packet; once per
   * second (or a quarter of a short timeout) keeps the data path cheap and the entry alive.
   */
  private rearm(dir: TcpDir): number {
    const ctx = this.listener.ctx;
    ctx.table.tcpEvent(this.conn, dir, 'ack');
    return ctx.clock + Math.min(REARM_MS, this.conn.timeoutMs >>> 2);
  }

  private readonly onClientEnd = (): void => {
    this.clientEnded = true;
    const table = this.listener.ctx.table;
    table.tcpEvent(this.conn, 'input', 'fin');
    this.server.end();
    // Both FINs seen: the server's ACK of the last one (TIME_WAIT re-armed).
    if (this.serverEnded) table.tcpEvent(this.conn, 'output', 'ack');
  };

  private readonly onServerEnd = (): void => {
    this.serverEnded = true;
    const table = this.listener.ctx.table;
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
      this.listener.ctx.sessionClosed();
    } else if (!this.done && !(this.clientEnded && this.serverEnded)) {
      // One side went away without a clean close (destroyed under us): cut the other.
      this.abort(this.client.destroyed ? 'input' : 'output');
    }
  };

  /** The real server refused, timed out or is unreachable: reset the client. */
  private connectFailed(reason: string): void {
    if (this.done) return;
    this.done = true;
    const ctx = this.listener.ctx;
    ctx.table.tcpEvent(this.conn, 'output', 'rst');
    ctx.connectFailed(this.conn.svc, this.conn.dest, reason);
    this.server.destroy();
    reset(this.client);
  }

  /** One side reset or failed: the RST travels on to the other side. */
  private abort(dir: TcpDir): void {
    if (this.done) return;
    this.done = true;
    this.listener.ctx.table.tcpEvent(this.conn, dir, 'rst');
    reset(this.client);
    reset(this.server);
  }

  /** Torn down by the plane; see Termination. */
  terminate(how: Termination): void {
    if (!this.done) {
      this.done = true;
      const table = this.listener.ctx.table;
      if (how === 'drop') table.dropConn(this.conn);
      else if (how === 'rst') table.tcpEvent(this.conn, this.established ? 'input' : 'output', 'rst');
    } else if (how === 'drop') {
      // Already closing (e.g. half-way through a reset): the entry still goes now.
      this.listener.ctx.table.dropConn(this.conn);
    }
    reset(this.client);
    reset(this.server);
  }
}
