/**
 * Closed connections, kept compactly. A TCP connection whose sockets are gone still
 * counts as an InActConn of its real server until its TIME_WAIT / CLOSE timer runs out
 * (120 s / 10 s), and `ipvsadm -Lnc` still lists it. Nothing else can happen to it: no
 * packet will re-arm it, so it needs no Conn object. Here it is a row of typed arrays
 * (about 30 bytes) plus its share of a group that holds what its connections have in
 * common: service, real server, protocol, virtual and real address and port.
 *
 * Rows of a group form a doubly linked list (so a service's or a server's entries are
 * listed without a scan), and rows expiring in the same second form a singly linked
 * list hung from that second: closed entries only leave by expiring, a whole bucket at a
 * time. The client address is stored as a number for IPv4; other addresses (rare here)
 * and the persistence template an entry still holds live in side maps.
 */
import { formatIPv4, parseIPv4 } from './addr.js';
import type { Dest, VirtualService } from './service.js';
import { TCP_STATE_NAMES } from './tcpstate.js';
import type { ConnTuple, ConnView, Family } from './types.js';

/** What a closed entry keeps of its connection. */
export interface ClosedConnInput extends Readonly<ConnTuple> {
  readonly protocol: string;
  readonly af: Family;
  readonly svc: VirtualService;
  readonly dest: Dest;
  /** TcpState (an inactive one). */
  readonly state: number;
  readonly expires: number;
}

/** A template the closed entry still counts in (its nControl). */
export interface ControlRef {
  nControl: number;
}

/** What the connections of a group have in common. */
interface Group {
  readonly id: number;
  readonly svc: VirtualService;
  readonly dest: Dest;
  readonly protocol: string;
  readonly af: Family;
  readonly vaddr: string;
  readonly vport: number;
  readonly daddr: string;
  readonly dport: number;
  /** First row of the group's list, -1 when empty. */
  head: number;
  size: number;
}

const NIL = -1;
const INITIAL_ROWS = 1024;

export class ClosedConns {
  private cap = 0;
  private group = new Int32Array(0);
  private caddr4 = new Uint32Array(0);
  private cport = new Uint16Array(0);
  private state = new Uint8Array(0);
  private expires = new Float64Array(0);
  /** Group list links; `next` also chains free rows. */
  private prev = new Int32Array(0);
  private next = new Int32Array(0);
  /** Expiry bucket chain. */
  private bnext = new Int32Array(0);
  private free = NIL;
  /** Rows whose client address is not IPv4 (kept as text). */
  private readonly caddrText = new Map<number, string>();
  /** Rows still held by a persistence template (released when they expire). */
  private readonly control = new Map<number, ControlRef>();
  /** Groups by id (holes are reused), and each server's groups. */
  private readonly groups: Array<Group | undefined> = [];
  private readonly freeGroups: number[] = [];
  private readonly byDest = new Map<Dest, Group[]>();
  private readonly bySvc = new Map<VirtualService, Set<Group>>();
  /** Expiry second -> first row. */
  private readonly buckets = new Map<number, number>();
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Keeps `c` until `c.expires` (its server's counts are left as they are: still inactive). */
  add(c: ClosedConnInput, control: ControlRef | null, bucket: number): void {
    const g = this.groupOf(c);
    const row = this.alloc();
    this.group[row] = g.id;
    const v4 = parseIPv4(c.caddr);
    if (v4 !== null && formatIPv4(v4) === c.caddr) {
      this.caddr4[row] = v4;
    } else {
      this.caddrText.set(row, c.caddr);
    }
    this.cport[row] = c.cport;
    this.state[row] = c.state;
    this.expires[row] = c.expires;
    // Group list: at the head.
    this.prev[row] = NIL;
    this.next[row] = g.head;
    if (g.head !== NIL) this.prev[g.head] = row;
    g.head = row;
    g.size++;
    if (control) this.control.set(row, control);
    this.bnext[row] = this.buckets.get(bucket) ?? NIL;
    this.buckets.set(bucket, row);
    this.count++;
  }

  /**
   * Removes the entries of expiry bucket `b` (all due: nothing re-arms a closed entry)
   * and calls `gone` for each, with its server and the template it held, so the caller
   * can release them.
   */
  expireBucket(b: number, gone: (dest: Dest, control: ControlRef | undefined) => void): void {
    const first = this.buckets.get(b);
    if (first === undefined) return;
    this.buckets.delete(b);
    for (let row = first; row !== NIL; ) {
      const nextRow: number = this.bnext[row]!;
      const g = this.groups[this.group[row]!]!;
      const control = this.control.get(row);
      if (control) this.control.delete(row);
      this.unlink(g, row);
      this.release(row);
      gone(g.dest, control);
      row = nextRow;
    }
  }

  /** Expiry seconds that have entries (for a clock jump: swept by key). */
  bucketKeys(): IterableIterator<number> {
    return this.buckets.keys();
  }

  /** The listing of every closed entry. */
  view(now: number, out: ConnView[]): void {
    for (const g of this.groups) if (g) this.viewGroup(g, now, out);
  }

  /** The listing of a service's closed entries, or of one of its servers' (no scan of the rest). */
  viewOf(svc: VirtualService, dest: Dest | undefined, now: number, out: ConnView[]): void {
    const groups = dest ? this.byDest.get(dest) : this.bySvc.get(svc);
    if (!groups) return;
    for (const g of groups) if (g.svc === svc) this.viewGroup(g, now, out);
  }

  private viewGroup(g: Group, now: number, out: ConnView[]): void {
    const protocol = g.protocol.toUpperCase();
    for (let row = g.head; row !== NIL; row = this.next[row]!) {
      out.push({
        protocol,
        af: g.af,
        caddr: this.caddrText.get(row) ?? formatIPv4(this.caddr4[row]!),
        cport: this.cport[row]!,
        vaddr: g.vaddr,
        vport: g.vport,
        daddr: g.daddr,
        dport: g.dport,
        state: g.protocol === 'tcp' ? (TCP_STATE_NAMES[this.state[row]!] ?? 'ERR!') : 'NONE',
        expires: Math.max(0, Math.floor((this.expires[row]! - now) / 1000)),
        template: false,
        peName: '',
        peData: '',
      });
    }
  }

  private groupOf(c: ClosedConnInput): Group {
    let list = this.byDest.get(c.dest);
    if (!list) this.byDest.set(c.dest, (list = []));
    // A server's connections nearly always share one group (one VIP, one port).
    for (const g of list) {
      if (
        g.svc === c.svc &&
        g.protocol === c.protocol &&
        g.vport === c.vport &&
        g.dport === c.dport &&
        g.vaddr === c.vaddr &&
        g.daddr === c.daddr &&
        g.af === c.af
      )
        return g;
    }
    const id = this.freeGroups.pop() ?? this.groups.length;
    const g: Group = {
      id,
      svc: c.svc,
      dest: c.dest,
      protocol: c.protocol,
      af: c.af,
      vaddr: c.vaddr,
      vport: c.vport,
      daddr: c.daddr,
      dport: c.dport,
      head: NIL,
      size: 0,
    };
    this.groups[id] = g;
    list.push(g);
    let set = this.bySvc.get(c.svc);
    if (!set) this.bySvc.set(c.svc, (set = new Set()));
    set.add(g);
    return g;
  }

  private unlink(g: Group, row: number): void {
    const p = this.prev[row]!;
    const n = this.next[row]!;
    if (p !== NIL) this.next[p] = n;
    else g.head = n;
    if (n !== NIL) this.prev[n] = p;
    if (--g.size > 0) return;
    // The last entry of the group: forget the group, so removed services and servers are not kept.
    this.groups[g.id] = undefined;
    this.freeGroups.push(g.id);
    const list = this.byDest.get(g.dest)!;
    list.splice(list.indexOf(g), 1);
    if (!list.length) this.byDest.delete(g.dest);
    const set = this.bySvc.get(g.svc)!;
    set.delete(g);
    if (!set.size) this.bySvc.delete(g.svc);
  }

  private alloc(): number {
    if (this.free === NIL) this.grow();
    const row = this.free;
    this.free = this.next[row]!;
    return row;
  }

  private release(row: number): void {
    this.caddrText.delete(row);
    this.next[row] = this.free;
    this.free = row;
    this.count--;
  }

  private grow(): void {
    const old = this.cap;
    const cap = old ? old * 2 : INITIAL_ROWS;
    const widen = <T extends Int32Array | Uint32Array | Uint16Array | Uint8Array | Float64Array>(a: T, make: (n: number) => T): T => {
      const b = make(cap);
      b.set(a);
      return b;
    };
    this.group = widen(this.group, (n) => new Int32Array(n));
    this.caddr4 = widen(this.caddr4, (n) => new Uint32Array(n));
    this.cport = widen(this.cport, (n) => new Uint16Array(n));
    this.state = widen(this.state, (n) => new Uint8Array(n));
    this.expires = widen(this.expires, (n) => new Float64Array(n));
    this.prev = widen(this.prev, (n) => new Int32Array(n));
    this.next = widen(this.next, (n) => new Int32Array(n));
    this.bnext = widen(this.bnext, (n) => new Int32Array(n));
    // New rows go on the free list, lowest first.
    for (let r = cap - 1; r >= old; r--) {
      this.next[r] = this.free;
      this.free = r;
    }
    this.cap = cap;
  }
}
