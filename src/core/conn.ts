/**
 * The connection table (kernel ip_vs_conn.c): one entry per scheduled connection and per
 * persistence template, with the protocol state, a timeout re-armed by traffic, and the
 * active/inactive accounting and OVERLOAD rule of the real server it is bound to.
 *
 * Expiry is driven by the table's clock through `expire(now)`; there are no timers here.
 * Entries sit in one-second buckets. Traffic only moves `expires` forward (a number store on
 * the hot path); when a bucket comes due, entries whose `expires` moved are re-filed.
 */
import { TcpState, TCP_STATE_NAMES, tcpNextState, tcpStateActive, type TcpDir, type TcpFlag } from './tcpstate.js';
import type { RealServer, VirtualService } from './service.js';
import type { ConnView, Family, Timeouts } from './types.js';

/** Connection entry flags (kernel IP_VS_CONN_F_*, the subset we use). */
export const CONN_F_TEMPLATE = 0x1000;
export const CONN_F_ONE_PACKET = 0x2000;
export const CONN_F_INACTIVE = 0x0800;
/** The director sees only client→server packets (DR/TUN). */
export const CONN_F_NOOUTPUT = 0x0200;
/** Entry created by the sync backup from a master's message (kernel IP_VS_CONN_F_SYNC). */
export const CONN_F_SYNC = 0x0020;

/** Template states on modern kernels (IP_VS_CTPL_S_*). */
const TEMPLATE_STATE_NAMES = ['NONE', 'ASSURED'];

/** A template that still controls connections is kept this much longer (ip_vs_conn_expire). */
const TEMPLATE_BUSY_REARM_MS = 60_000;
/** A new entry's timeout before its first state transition (ip_vs_conn_new). */
const NEW_CONN_TIMEOUT_MS = 3_000;

export type ConnProtocol = 'tcp' | 'udp' | 'sctp' | 'ip';

/** The timeouts after ipvsadm --set `t` on `cur`: a 0 in `t` leaves that value as it is. */
export function mergeTimeouts(cur: Timeouts, t: Timeouts): Timeouts {
  return { tcp: t.tcp || cur.tcp, tcpfin: t.tcpfin || cur.tcpfin, udp: t.udp || cur.udp };
}

export class Conn {
  flags: number;
  /** TcpState for TCP; 0 for UDP/SCTP; 0 (NONE) / 1 (ASSURED) for templates. */
  state = 0;
  timeoutMs = NEW_CONN_TIMEOUT_MS;
  expires: number;
  /** The bucket the entry is filed under. */
  bucket = 0;
  /** The persistence template that controls this connection. */
  control: Conn | null = null;
  /** Connections this template controls. */
  nControl = 0;
  inPkts = 0;
  /** Set once the entry is gone from the table. */
  dead = false;
  /** A template's key in the template index. */
  tplKey = '';
  /** Opaque reference for the data plane (its sockets), so it can act on expiry. */
  handle: unknown = null;

  constructor(
    readonly id: number,
    readonly protocol: ConnProtocol,
    readonly af: Family,
    readonly caddr: string,
    readonly cport: number,
    readonly vaddr: string,
    readonly vport: number,
    readonly daddr: string,
    readonly dport: number,
    readonly svc: VirtualService,
    public dest: RealServer | null,
    flags: number,
    now: number,
  ) {
    this.flags = flags;
    this.expires = now + this.timeoutMs;
  }

  get isTemplate(): boolean {
    return (this.flags & CONN_F_TEMPLATE) !== 0;
  }

  get stateName(): string {
    if (this.isTemplate) return TEMPLATE_STATE_NAMES[this.state] ?? 'NONE';
    if (this.protocol === 'udp') return 'UDP';
    if (this.protocol === 'tcp') return TCP_STATE_NAMES[this.state] ?? 'ERR!';
    return 'NONE';
  }
}

/** Events the connection table reports to its owner. */
export interface ConnEvents {
  /** An entry expired and left the table; the data plane should close what it still holds. */
  expired(c: Conn): void;
}

export class ConnTable {
  private readonly conns = new Map<number, Conn>();
  private readonly templates = new Map<string, Conn>();
  private readonly buckets = new Map<number, Set<Conn>>();
  private nextId = 1;
  /** The first bucket not yet processed by `expire`. */
  private cursor = -1;
  /** Timeouts per TCP state and for UDP, in milliseconds. */
  private tcpTimeoutsMs: number[];
  private udpTimeoutMs: number;

  constructor(
    private readonly events: ConnEvents,
    tcpDefaults: readonly number[],
    udpDefault: number,
  ) {
    this.tcpTimeoutsMs = tcpDefaults.map((s) => s * 1000);
    this.udpTimeoutMs = udpDefault * 1000;
  }

  get size(): number {
    return this.conns.size;
  }

  /** ipvsadm --set: tcp = ESTABLISHED, tcpfin = FIN_WAIT, udp = UDP; 0 leaves a value unchanged. */
  setTimeouts(t: Timeouts): void {
    const m = mergeTimeouts(this.timeouts(), t);
    this.tcpTimeoutsMs[TcpState.ESTABLISHED] = m.tcp * 1000;
    this.tcpTimeoutsMs[TcpState.FIN_WAIT] = m.tcpfin * 1000;
    this.udpTimeoutMs = m.udp * 1000;
  }

  timeouts(): Timeouts {
    return {
      tcp: this.tcpTimeoutsMs[TcpState.ESTABLISHED]! / 1000,
      tcpfin: this.tcpTimeoutsMs[TcpState.FIN_WAIT]! / 1000,
      udp: this.udpTimeoutMs / 1000,
    };
  }

  /**
   * Creates an entry bound to `dest` (ip_vs_conn_new + ip_vs_bind_dest). A new connection
   * starts inactive and counts toward the OVERLOAD threshold; a template counts in
   * persistconns only.
   */
  create(
    protocol: ConnProtocol,
    af: Family,
    caddr: string,
    cport: number,
    vaddr: string,
    vport: number,
    daddr: string,
    dport: number,
    svc: VirtualService,
    dest: RealServer,
    flags: number,
    now: number,
  ): Conn {
    const c = new Conn(this.nextId++, protocol, af, caddr, cport, vaddr, vport, daddr, dport, svc, dest, flags | CONN_F_INACTIVE, now);
    if (this.cursor < 0) this.cursor = Math.floor(now / 1000);
    if (c.isTemplate) {
      dest.persistconns++;
    } else {
      dest.inactconns++;
      if (dest.uThreshold !== 0 && dest.totalconns >= dest.uThreshold) dest.overloaded = true;
    }
    this.conns.set(c.id, c);
    this.file(c);
    return c;
  }

  /** Re-arms the entry's timer, as every packet does (ip_vs_conn_put). */
  touch(c: Conn, now: number): void {
    c.expires = now + c.timeoutMs;
  }

  /** Feeds a TCP packet's flag into the state machine (set_tcp_state). */
  tcpEvent(c: Conn, dir: TcpDir, flag: TcpFlag, now: number): void {
    if (c.dead) return;
    this.setTcpState(c, tcpNextState(c.state as TcpState, dir, flag));
    c.timeoutMs = this.tcpTimeoutsMs[c.state] ?? 2000;
    c.expires = now + c.timeoutMs;
  }

  /**
   * Moves a TCP entry to a state, moving it between its server's active and inactive
   * counts as set_tcp_state does. For a data plane that learns states from elsewhere
   * (conntrack); it leaves the timer alone.
   */
  setTcpState(c: Conn, next: TcpState): void {
    if (c.dead || next === c.state) return;
    const dest = c.dest;
    if (dest) {
      const inactive = (c.flags & CONN_F_INACTIVE) !== 0;
      if (!inactive && !tcpStateActive(next)) {
        dest.activeconns--;
        dest.inactconns++;
        c.flags |= CONN_F_INACTIVE;
      } else if (inactive && tcpStateActive(next)) {
        dest.activeconns++;
        dest.inactconns--;
        c.flags &= ~CONN_F_INACTIVE;
      }
    }
    if (next === TcpState.ESTABLISHED && c.control) c.control.state = 1; // ip_vs_control_assure
    c.state = next;
  }

  /** A UDP (or SCTP) datagram: the entry's state never changes, the timer is re-armed. */
  datagram(c: Conn, now: number): void {
    if (c.dead) return;
    c.timeoutMs = (c.flags & CONN_F_ONE_PACKET) !== 0 ? 0 : this.udpTimeoutMs;
    c.expires = now + c.timeoutMs;
  }

  // ----- persistence templates -----

  templateKey(svc: VirtualService, snet: string): string {
    // Kernel keys: <proto, caddr, 0, vaddr, vport> (port-zero and fwmark services use 0 / the mark).
    return svc.fwmark ? `ip|${snet}|fwm${svc.fwmark}` : `${svc.protocol}|${snet}|${svc.addr}|${svc.port}`;
  }

  findTemplate(key: string): Conn | undefined {
    return this.templates.get(key);
  }

  /** Creates a persistence template for `snet` pointing at `dest`, with the service's timeout. */
  createTemplate(key: string, svc: VirtualService, snet: string, dest: RealServer, now: number): Conn {
    const protocol: ConnProtocol = svc.fwmark ? 'ip' : svc.protocol;
    const vaddr = svc.addr;
    const c = this.create(protocol, svc.af, snet, 0, vaddr, svc.port, dest.addr, dest.port, svc, dest, CONN_F_TEMPLATE, now);
    c.timeoutMs = svc.persistent * 1000;
    c.expires = now + c.timeoutMs;
    c.tplKey = key;
    this.templates.set(key, c);
    return c;
  }

  /** Links a connection to the template that chose its server (ip_vs_control_add) and refreshes the template. */
  control(c: Conn, tpl: Conn, now: number): void {
    c.control = tpl;
    tpl.nControl++;
    this.touch(tpl, now);
  }


  /**
   * Takes a template out of the index so the next connection from its network is scheduled
   * afresh (its server went away or was quiesced). The entry itself stays, like the kernel's
   * rehashed template, until its connections are gone and its timer runs out.
   */
  retireTemplate(tpl: Conn): void {
    if (this.templates.get(tpl.tplKey) === tpl) this.templates.delete(tpl.tplKey);
  }

  // ----- expiry -----

  private file(c: Conn): void {
    // A bucket already passed would never run again: file such an entry in the next one due.
    const b = Math.max(Math.ceil(c.expires / 1000), this.cursor);
    c.bucket = b;
    let set = this.buckets.get(b);
    if (!set) {
      set = new Set();
      this.buckets.set(b, set);
    }
    set.add(c);
  }

  /**
   * Expires every entry whose time has come. A template that still controls connections is
   * kept 60 s more, as the kernel does.
   */
  expire(now: number): void {
    const until = Math.floor(now / 1000);
    if (this.cursor < 0) {
      this.cursor = until + 1; // nothing was ever filed
      return;
    }
    // Walk the due buckets in order. Buckets far in the past (clock jumps) are swept by key.
    if (until - this.cursor > 3600) {
      for (const b of [...this.buckets.keys()].filter((k) => k <= until).sort((x, y) => x - y)) this.runBucket(b, now);
    } else {
      for (let b = this.cursor; b <= until; b++) this.runBucket(b, now);
    }
    this.cursor = until + 1;
  }

  private runBucket(b: number, now: number): void {
    const set = this.buckets.get(b);
    if (!set) return;
    this.buckets.delete(b);
    for (const c of set) {
      if (c.dead) continue;
      if (c.expires > now) {
        this.file(c);
        continue;
      }
      if (c.isTemplate && c.nControl > 0) {
        c.expires = now + TEMPLATE_BUSY_REARM_MS;
        this.file(c);
        continue;
      }
      this.remove(c);
      this.events.expired(c);
    }
  }

  /**
   * Takes an entry out of the table: unbinds it from its server (ip_vs_unbind_dest, with
   * the OVERLOAD clearing rule) and from its template.
   */
  remove(c: Conn): void {
    if (c.dead) return;
    c.dead = true;
    this.conns.delete(c.id);
    this.buckets.get(c.bucket)?.delete(c);
    if (c.isTemplate && this.templates.get(c.tplKey) === c) this.templates.delete(c.tplKey);
    const dest = c.dest;
    if (dest) {
      if (c.isTemplate) {
        dest.persistconns--;
      } else {
        if ((c.flags & CONN_F_INACTIVE) !== 0) dest.inactconns--;
        else dest.activeconns--;
        if (dest.lThreshold !== 0) {
          if (dest.totalconns < dest.lThreshold) dest.overloaded = false;
        } else if (dest.uThreshold !== 0) {
          if (dest.totalconns * 4 < dest.uThreshold * 3) dest.overloaded = false;
        } else {
          dest.overloaded = false;
        }
      }
    }
    if (c.control) {
      c.control.nControl--;
      c.control = null;
    }
  }

  /** Every entry, templates included. */
  all(): IterableIterator<Conn> {
    return this.conns.values();
  }

  /** Entries bound to a real server. */
  ofDest(dest: RealServer): Conn[] {
    const out: Conn[] = [];
    for (const c of this.conns.values()) if (c.dest === dest) out.push(c);
    return out;
  }

  /** Entries of a service. */
  ofService(svc: VirtualService): Conn[] {
    const out: Conn[] = [];
    for (const c of this.conns.values()) if (c.svc === svc) out.push(c);
    return out;
  }

  view(now: number): ConnView[] {
    const out: ConnView[] = [];
    for (const c of this.conns.values()) {
      out.push({
        protocol: c.protocol.toUpperCase(),
        af: c.af,
        caddr: c.caddr,
        cport: c.cport,
        vaddr: c.vaddr,
        vport: c.vport,
        daddr: c.daddr,
        dport: c.dport,
        state: c.stateName,
        expires: Math.max(0, Math.floor((c.expires - now) / 1000)),
        template: c.isTemplate,
        peName: '',
        peData: '',
      });
    }
    return out;
  }
}
