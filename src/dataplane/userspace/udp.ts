/**
 * The UDP half of the userspace plane: one bound socket per virtual service, and one flow
 * per client address:port, each with its own socket connected to the scheduled real
 * server. Replies come back on that socket and leave through the service's socket, so the
 * client sees them from the VIP.
 *
 * A flow lives as long as its table entry: every datagram re-arms the entry (UDP timeout,
 * 300 s by default) and its expiry closes the flow. With one-packet scheduling (`-o`) each
 * datagram is scheduled on its own and its entry expires at once, as in the kernel; its
 * socket stays open for replies until the UDP timeout passes without one.
 *
 * Each flow holds a socket, so flows are bounded (limits.ts): a new client over the flow
 * cap or the descriptor ceiling first reaps the flow idle longest, and its datagram is
 * dropped (counted and logged) only when there is none to reap.
 */
import { errText } from '../../core/log.js';
import dgram from 'node:dgram';
import { unmapAddr } from '../../core/addr.js';
import { CONN_F_ONE_PACKET, type Conn } from '../../core/conn.js';
import type { Dest, VirtualService } from '../../core/service.js';
import { encodeProxyHeader } from '../../net/proxyproto.js';
import { REARM_MS, type ProxyContext, type Reapable, type ServiceListener } from './context.js';

/** Datagrams held per flow while its upstream socket connects (a few microseconds). */
const MAX_PENDING = 64;

/** A UDP virtual service's socket. */
export class UdpListener implements ServiceListener {
  svc: VirtualService | null = null;
  /** Flows by client address, then port: no key string is built per datagram. */
  private readonly flows = new Map<string, Map<number, UdpFlow>>();
  /** One-packet flows waiting for replies; not found by client address. */
  private readonly oneShots = new Set<UdpFlow>();

  constructor(
    readonly ctx: ProxyContext,
    readonly socket: dgram.Socket,
  ) {
    socket.on('message', this.onMessage);
    socket.on('error', (err) =>
      ctx.logLimited('error', `udp ${this.svc?.id}`, `${this.svc?.label ?? 'UDP socket'}: ${errText(err)}`, { error: errText(err) }),
    );
  }

  attach(svc: VirtualService): void {
    this.svc = svc;
  }

  detach(): void {
    this.svc = null;
    this.closeFlows(() => true, false);
  }

  destDeleted(dest: Dest): void {
    this.closeFlows((f) => f.conn.dest === dest, true);
  }

  stopAccepting(): void {
    // UDP has no connections to drain.
    this.close();
  }

  close(): void {
    this.svc = null;
    this.closeFlows(() => true, false);
    try {
      this.socket.close();
    } catch {
      // already closed
    }
  }

  private closeFlows(which: (f: UdpFlow) => boolean, dropEntries: boolean): void {
    const victims: UdpFlow[] = [];
    for (const byPort of this.flows.values()) for (const f of byPort.values()) if (which(f)) victims.push(f);
    for (const f of this.oneShots) if (which(f)) victims.push(f);
    for (const f of victims) {
      f.close();
      if (dropEntries) this.ctx.table.dropConn(f.conn);
    }
  }

  private readonly onMessage = (msg: Buffer, rinfo: dgram.RemoteInfo): void => {
    const f = this.flows.get(rinfo.address)?.get(rinfo.port);
    if (f !== undefined) f.forward(msg);
    else this.newFlow(msg, rinfo);
  };

  private newFlow(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const svc = this.svc;
    if (svc === null) return;
    const caddr = unmapAddr(rinfo.address);
    if (!this.ctx.admit(svc, caddr, true, 1)) return;
    const conn = this.ctx.table.schedule(svc, { protocol: 'udp', caddr, cport: rinfo.port, vaddr: svc.addr, vport: svc.port });
    if (conn === null) {
      this.ctx.limits.release(svc.id, caddr, true, 1);
      this.ctx.refused(svc, caddr);
      return;
    }
    const oneShot = (conn.flags & CONN_F_ONE_PACKET) !== 0;
    const f = new UdpFlow(this, conn, rinfo.address, rinfo.port, oneShot);
    if (oneShot) {
      this.oneShots.add(f);
    } else {
      conn.handle = f;
      let byPort = this.flows.get(rinfo.address);
      if (byPort === undefined) {
        byPort = new Map();
        this.flows.set(rinfo.address, byPort);
      }
      byPort.set(rinfo.port, f);
    }
    f.forward(msg);
  }

  /** Takes a closed flow out of the indexes. */
  forget(f: UdpFlow): void {
    if (f.oneShot) {
      this.oneShots.delete(f);
      return;
    }
    const byPort = this.flows.get(f.caddr);
    if (byPort?.get(f.cport) === f) {
      byPort.delete(f.cport);
      if (byPort.size === 0) this.flows.delete(f.caddr);
    }
  }
}

/**
 * How long a one-packet (-o) exchange waits for more replies after the last one. Every
 * datagram of such a service gets its own upstream socket; holding each for the whole UDP
 * timeout (300 s) would pin thousands of sockets on a busy DNS-style service, while its
 * replies come within milliseconds.
 */
const ONE_PACKET_HOLD_MS = 10_000;

/** One client address:port and its socket towards the real server. */
export class UdpFlow implements Reapable {
  private readonly upstream: dgram.Socket;
  /** PROXY protocol v2 (DGRAM) header put in front of every datagram, when the service asks for it. */
  private readonly header: Buffer | null;
  /** Datagrams that arrived before the upstream socket was connected; null once it is. */
  private pending: Buffer[] | null = [];
  /** Coarse-clock time after which the next datagram re-arms the entry. */
  private armAt = 0;
  /** One-packet flows: closes the socket after ONE_PACKET_HOLD_MS (or the UDP timeout) without replies. */
  private idle: NodeJS.Timeout | null = null;
  private closed = false;
  /** The service and client its limits slot was taken for (ProxyContext.admit). */
  private readonly slot: { svc: string; caddr: string };

  constructor(
    private readonly listener: UdpListener,
    readonly conn: Conn,
    /** The client's address as the socket reported it, for replies. */
    readonly caddr: string,
    readonly cport: number,
    readonly oneShot: boolean,
  ) {
    const pp = listener.svc?.proxyProtocol;
    this.header = pp
      ? encodeProxyHeader(pp, { protocol: 'udp', srcAddr: conn.caddr, srcPort: conn.cport, dstAddr: conn.vaddr, dstPort: conn.vport })
      : null;
    this.slot = { svc: conn.svc.id, caddr: conn.caddr };
    listener.ctx.udpIdle.set(this, listener.ctx.clock);
    const up = dgram.createSocket(conn.af === 6 ? 'udp6' : 'udp4');
    this.upstream = up;
    up.on('message', this.onReply);
    up.on('error', this.onError);
    up.connect(conn.dport, conn.daddr, this.onConnected);
    if (oneShot) {
      this.idle = setTimeout(() => this.close(), Math.min(listener.ctx.udpTimeoutMs, ONE_PACKET_HOLD_MS));
      this.idle.unref();
    }
  }

  private readonly onConnected = (): void => {
    const p = this.pending;
    this.pending = null;
    if (this.closed || p === null) return;
    for (const m of p) this.send(m);
  };

  private send(msg: Buffer): void {
    if (this.header === null) this.upstream.send(msg);
    else this.upstream.send([this.header, msg]);
  }

  /** A datagram from the client. */
  forward(msg: Buffer): void {
    if (this.pending === null) this.send(msg);
    else if (this.pending.length < MAX_PENDING) this.pending.push(msg);
    const ctx = this.listener.ctx;
    ctx.table.countIn(this.conn, 1, msg.length);
    if (ctx.clock >= this.armAt) this.rearm();
  }

  private readonly onReply = (msg: Buffer): void => {
    try {
      this.listener.socket.send(msg, this.cport, this.caddr);
    } catch {
      // The service socket closed under a reply in flight: nothing to deliver it to.
      return;
    }
    const ctx = this.listener.ctx;
    ctx.table.countOut(this.conn, 1, msg.length);
    if (this.idle !== null) this.idle.refresh();
    else if (ctx.clock >= this.armAt) this.rearm();
  };

  /** Re-arms the entry (the kernel does it per datagram; once a second is enough). */
  private rearm(): void {
    const ctx = this.listener.ctx;
    // Most recently active last: the reaper takes the first.
    ctx.udpIdle.delete(this);
    ctx.udpIdle.set(this, ctx.clock);
    ctx.table.datagram(this.conn);
    // A one-packet entry expires at once whatever we do: arm it once only.
    this.armAt = this.oneShot ? Infinity : ctx.clock + Math.min(REARM_MS, this.conn.timeoutMs >>> 2);
  }

  /** ICMP errors from the real server (port unreachable shows as ECONNREFUSED). */
  private readonly onError = (err: Error): void => {
    this.listener.ctx.connectFailed(this.conn.svc, this.conn.dest, errText(err));
  };

  /** Closed to make room for a new flow (limits): its entry goes too. */
  reap(): void {
    if (this.closed) return;
    const c = this.conn;
    this.close();
    if (!c.dead) this.listener.ctx.table.dropConn(c);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    const ctx = this.listener.ctx;
    ctx.udpIdle.delete(this);
    ctx.limits.release(this.slot.svc, this.slot.caddr, true, 1);
    if (this.idle !== null) clearTimeout(this.idle);
    if (this.conn.handle === this) this.conn.handle = null;
    try {
      this.upstream.close();
    } catch {
      // already closed
    }
    this.listener.forget(this);
  }
}
