/**
 * The connection table (kernel ip_vs_conn.c): one entry per scheduled connection and per
 * persistence template, with the protocol state, a timeout re-armed by traffic, and the
 * active/inactive accounting and OVERLOAD rule of the real server it is bound to.
 *
 * Expiry is driven by the table's clock through `expire(now)`; there are no timers here.
 * Entries sit in one-second buckets. Traffic only moves `expires` forward (a number store on
 * the hot path); when a bucket comes due, entries whose `expires` moved are re-filed.
 *
 * Indexes, so that no control operation walks every connection: by tuple (the kernel's
 * ip_vs_conn_tab), by real server and by service (intrusive lists through the entries),
 * and templates by their key. A closed connection the data plane no longer holds
 * (`close`) leaves its Conn object for a compact row (closed.ts) until it expires.
 */
import { ClosedConns } from './closed.js';
import { TcpState, TCP_STATE_NAMES, tcpNextState, tcpStateActive, type TcpDir, type TcpFlag } from './tcpstate.js';
import type { Dest, VirtualService } from './service.js';
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
  /** Hash in the tuple index, -1 when not in it (templates have their own index). */
  tHash = -1;
  /** Next entry with the same tuple hash. */
  tNext: Conn | null = null;
  // Links of the per-server and per-service lists (ConnTable's indexes).
  dPrev: Conn | null = null;
  dNext: Conn | null = null;
  sPrev: Conn | null = null;
  sNext: Conn | null = null;

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
    readonly dest: Dest | null,
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

/**
 * The tuple index's hash (the kernel's ip_vs_conn_hashkey has the same inputs): FNV-1a over
 * the fields, kept within 30 bits so it is a small integer to V8. A number, not a string
 * key: a key string per connection would cost more than the rest of the entry.
 */
export function tupleHash(protocol: string, caddr: string, cport: number, vaddr: string, vport: number): number {
  let h = 0x811c9dc5;
  for (const s of [protocol, caddr, vaddr]) {
    for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
    h = Math.imul(h ^ 0x7c, 0x01000193);
  }
  h = Math.imul(h ^ cport, 0x01000193);
  h = Math.imul(h ^ vport, 0x01000193);
  return (h ^ (h >>> 30)) & 0x3fffffff;
}

export class ConnTable {
  private readonly conns = new Map<number, Conn>();
  private readonly templates = new Map<string, Conn>();
  /** Non-template entries by tuple hash: a chain through `tNext`, newest first. */
  private readonly byTuple = new Map<number, Conn>();
  /** Heads of the per-server and per-service lists. */
  private readonly destHead = new Map<Dest, Conn>();
  private readonly svcHead = new Map<VirtualService, Conn>();
  /** Closed connections nobody holds any more, compactly. */
  private readonly closed = new ClosedConns();
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

  /** Entries in the table, closed ones included. */
  get size(): number {
    return this.conns.size + this.closed.size;
  }

  /** Closed entries kept compactly (see `close`). */
  get closedSize(): number {
    return this.closed.size;
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
    dest: Dest,
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
    this.link(c);
    this.file(c);
    return c;
  }

  /** The newest non-template entry with this tuple (kernel ip_vs_conn_in_get); closed ones are not found. */
  find(protocol: ConnProtocol, caddr: string, cport: number, vaddr: string, vport: number): Conn | undefined {
    for (let c = this.byTuple.get(tupleHash(protocol, caddr, cport, vaddr, vport)) ?? null; c; c = c.tNext) {
      if (c.cport === cport && c.vport === vport && c.caddr === caddr && c.vaddr === vaddr && c.protocol === protocol) return c;
    }
    return undefined;
  }

  private link(c: Conn): void {
    const dest = c.dest;
    if (dest) {
      const h = this.destHead.get(dest);
      c.dNext = h ?? null;
      if (h) h.dPrev = c;
      this.destHead.set(dest, c);
    }
    const h = this.svcHead.get(c.svc);
    c.sNext = h ?? null;
    if (h) h.sPrev = c;
    this.svcHead.set(c.svc, c);
    if (!c.isTemplate) {
      c.tHash = tupleHash(c.protocol, c.caddr, c.cport, c.vaddr, c.vport);
      c.tNext = this.byTuple.get(c.tHash) ?? null;
      this.byTuple.set(c.tHash, c);
    }
  }

  private unlink(c: Conn): void {
    const dest = c.dest;
    if (dest) {
      if (c.dPrev) c.dPrev.dNext = c.dNext;
      else if (c.dNext) this.destHead.set(dest, c.dNext);
      else this.destHead.delete(dest);
      if (c.dNext) c.dNext.dPrev = c.dPrev;
      c.dPrev = c.dNext = null;
    }
    if (c.sPrev) c.sPrev.sNext = c.sNext;
    else if (c.sNext) this.svcHead.set(c.svc, c.sNext);
    else this.svcHead.delete(c.svc);
    if (c.sNext) c.sNext.sPrev = c.sPrev;
    c.sPrev = c.sNext = null;
    if (c.tHash >= 0) {
      // Chains are short (same hash): walk to the predecessor.
      const head = this.byTuple.get(c.tHash)!;
      if (head === c) {
        if (c.tNext) this.byTuple.set(c.tHash, c.tNext);
        else this.byTuple.delete(c.tHash);
      } else {
        let p = head;
        while (p.tNext !== c) p = p.tNext!;
        p.tNext = c.tNext;
      }
      c.tNext = null;
      c.tHash = -1;
    }
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
    this.touch(c, now);
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
    this.touch(c, now);
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
  createTemplate(key: string, svc: VirtualService, snet: string, dest: Dest, now: number): Conn {
    const protocol: ConnProtocol = svc.fwmark ? 'ip' : svc.protocol;
    const vaddr = svc.addr;
    const c = this.create(protocol, svc.af, snet, 0, vaddr, svc.port, dest.addr, dest.port, svc, dest, CONN_F_TEMPLATE, now);
    c.timeoutMs = svc.persistent * 1000;
    this.touch(c, now);
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
      const due = new Set([...this.buckets.keys(), ...this.closed.bucketKeys()].filter((k) => k <= until));
      for (const b of [...due].sort((x, y) => x - y)) this.runBucket(b, now);
    } else {
      for (let b = this.cursor; b <= until; b++) this.runBucket(b, now);
    }
    this.cursor = until + 1;
  }

  private runBucket(b: number, now: number): void {
    // Closed entries go silently: nobody holds anything for them.
    this.closed.expireBucket(b, (dest, control) => {
      this.unbind(dest, true);
      if (control) control.nControl--;
    });
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
    this.detach(c);
    const dest = c.dest;
    if (dest) {
      if (c.isTemplate) dest.persistconns--;
      else this.unbind(dest, (c.flags & CONN_F_INACTIVE) !== 0);
    }
    if (c.control) {
      c.control.nControl--;
      c.control = null;
    }
  }

  /**
   * The data plane holds nothing more for `c` (both sockets closed). A closed TCP entry,
   * one that only counts as an InActConn until its timer runs out, then leaves its Conn
   * object for a compact row: it still counts, is listed by `view`, keeps its template
   * alive, and expires at the same time, silently (no `expired` event: there is nothing
   * left to close). Its Conn is marked dead and must not be used again. Returns whether
   * it was compacted; an entry that is still active, synced, a template or not TCP stays.
   */
  close(c: Conn): boolean {
    if (!this.closable(c)) return false;
    this.detach(c);
    // Filed like the Conn was: the same second (or the next one due).
    this.closed.add(c as Conn & { dest: Dest }, c.control, Math.max(Math.ceil(c.expires / 1000), this.cursor));
    c.control = null;
    return true;
  }

  /** Whether `close` would compact `c`: a live, inactive, non-synced TCP connection with a server. */
  closable(c: Conn): boolean {
    return (
      !c.dead &&
      c.protocol === 'tcp' &&
      (c.flags & (CONN_F_TEMPLATE | CONN_F_SYNC)) === 0 &&
      (c.flags & CONN_F_INACTIVE) !== 0 &&
      c.dest !== null
    );
  }

  /** Out of every index and bucket, and marked dead; its server and template are the caller's business. */
  private detach(c: Conn): void {
    c.dead = true;
    this.conns.delete(c.id);
    this.unlink(c);
    this.buckets.get(c.bucket)?.delete(c);
    if (c.isTemplate && this.templates.get(c.tplKey) === c) this.templates.delete(c.tplKey);
  }

  /** A connection of `dest` is gone (ip_vs_unbind_dest, with the OVERLOAD clearing rule). */
  private unbind(dest: Dest, inactive: boolean): void {
    if (inactive) dest.inactconns--;
    else dest.activeconns--;
    if (dest.lThreshold !== 0) {
      if (dest.totalconns < dest.lThreshold) dest.overloaded = false;
    } else if (dest.uThreshold !== 0) {
      if (dest.totalconns * 4 < dest.uThreshold * 3) dest.overloaded = false;
    } else {
      dest.overloaded = false;
    }
  }

  /** Every entry that is a Conn object, templates included (closed, compact entries are not). */
  all(): IterableIterator<Conn> {
    return this.conns.values();
  }

  /** Entries bound to a real server (Conn objects; a copy, so the caller may remove them). */
  ofDest(dest: Dest): Conn[] {
    const out: Conn[] = [];
    for (let c = this.destHead.get(dest) ?? null; c; c = c.dNext) out.push(c);
    return out;
  }

  /** Entries of a service (Conn objects; a copy, so the caller may remove them). */
  ofService(svc: VirtualService): Conn[] {
    const out: Conn[] = [];
    for (let c = this.svcHead.get(svc) ?? null; c; c = c.sNext) out.push(c);
    return out;
  }

  /** Templates of a service, or of one of its servers. */
  templatesOf(svc: VirtualService, dest?: Dest): Conn[] {
    return (dest ? this.ofDest(dest) : this.ofService(svc)).filter((c) => c.isTemplate);
  }

  /** The listing of every entry, closed ones included (ipvsadm -Lnc). */
  view(now: number): ConnView[] {
    const out: ConnView[] = [];
    for (const c of this.conns.values()) out.push(connView(c, now));
    this.closed.view(now, out);
    return out;
  }

  /** The listing of one service's entries, or of one of its servers', without a scan of the rest. */
  viewOf(svc: VirtualService, dest: Dest | undefined, now: number): ConnView[] {
    const out: ConnView[] = [];
    for (const c of dest ? this.ofDest(dest) : this.ofService(svc)) out.push(connView(c, now));
    this.closed.viewOf(svc, dest, now, out);
    return out;
  }
}

/** One entry as ipvsadm -Lnc shows it. */
function connView(c: Conn, now: number): ConnView {
  return {
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
  };
}
