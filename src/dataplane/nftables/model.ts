/**
 * What the kernel holds for each service, as the nftables plane last put it there: the
 * NAT fragment of each service (nat.ts), the direct-routing services of `netdev tsvs`,
 * the mark of each real server, and which families have the first-packet objects. The
 * plane decides what to send from this bookkeeping; the read-back and the first-packet
 * path find a server by its mark here.
 */
import type { Dest, VirtualService } from '../../core/service.js';
import { wrrSnapshot } from '../../schedulers/wrr.js';
import type { Fam, Fragment } from './nat.js';
import type { NftService } from './ruleset.js';

/** A direct-routing service: compiled by dr.ts into `netdev tsvs` (splitDr refuses a service that mixes methods). */
export const isDr = (svc: NftService) => svc.dests.some((d) => d.fwd === 'route');

/** FNV-1a of the key, folded into 1..2^31-1 (0 means "no mark" to conntrack users). */
function markHash(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h & 0x7fffffff || 1;
}

/** The nftables plane's bookkeeping of the kernel's contents, by service id and by mark. */
export class NftModel {
  /** The NAT fragment of each service, as the kernel holds it, by service id. */
  readonly frags = new Map<string, Fragment>();
  /** Families whose first-packet objects (queue chains, maps) are in the kernel. */
  readonly queueFams = new Set<Fam>();
  /** Direct-routing services as last compiled into `netdev tsvs`, by service id. */
  drModel = new Map<string, NftService>();
  /** Each live real server by its mark. */
  readonly owners = new Map<number, { svc: VirtualService; dest: Dest }>();
  /** How many fragments use the first-packet path, per family. */
  private readonly queuedByFam: Record<Fam, number> = { ip: 0, ip6: 0 };
  private readonly svcIds = new Map<string, number>();
  private nextSvcId = 1;
  private readonly marks = new Map<string, number>();
  /** The marks in use (a new one must not collide). */
  private readonly markTaken = new Set<number>();
  /** tsvsd's connection limits (0: none); a service's own maxConns / maxConnsPerClient come first. */
  limits = { maxConns: 0, perService: 0, perClient: 0 };

  /**
   * A server's mark is a hash of its service and address, so that it is the same after a
   * restart of tsvsd: conntrack entries made before the restart are still counted and
   * listed under their server. A collision with another live server probes onward.
   */
  markOf(svcId: string, destId: string): number {
    const k = `${svcId}|${destId}`;
    let m = this.marks.get(k);
    if (m !== undefined) return m;
    m = markHash(k);
    while (this.markTaken.has(m)) m = m >= 0x7fffffff ? 1 : m + 1;
    this.marks.set(k, m);
    this.markTaken.add(m);
    return m;
  }

  /** The mark a server already has, if any. */
  markFor(svcId: string, destId: string): number | undefined {
    return this.marks.get(`${svcId}|${destId}`);
  }

  /** Releases a removed server's mark; returns it, if it had one. */
  forgetMark(svcId: string, destId: string): number | undefined {
    const key = `${svcId}|${destId}`;
    const m = this.marks.get(key);
    if (m === undefined) return undefined;
    this.marks.delete(key);
    this.markTaken.delete(m);
    this.owners.delete(m);
    return m;
  }

  /** Releases a deleted service's numeric id, unless a batch re-added it under the same one. */
  forgetService(id: string): void {
    if (!this.frags.has(id) && !this.drModel.has(id)) this.svcIds.delete(id);
  }

  /** A service (live, or a preview's copy) as the compilers see it. */
  nftService(s: VirtualService): NftService {
    return {
      id: this.svcIdOf(s.id),
      af: s.af,
      protocol: s.protocol as 'tcp' | 'udp',
      addr: s.addr,
      port: s.port,
      scheduler: s.scheduler,
      schedFlags: s.schedFlags,
      persistent: s.persistent,
      netmask: s.netmask,
      dests: s.dests.map((d) => ({
        addr: d.addr,
        port: d.port,
        weight: d.weight,
        lastWeight: d.lastWeight,
        overloaded: d.overloaded,
        mark: this.markOf(s.id, d.id),
        fwd: d.fwd,
      })),
      wrr: wrrSnapshot(s.sched),
      ...this.limitsOf(s),
    };
  }

  /** The limits compiled into a service's chain, if any. */
  private limitsOf(s: VirtualService): Pick<NftService, 'limits'> {
    const conns = s.maxConns ?? this.limits.perService;
    const perClient = s.maxConnsPerClient ?? this.limits.perClient;
    const global = this.limits.maxConns > 0;
    return conns || perClient || global ? { limits: { conns, perClient, global } } : {};
  }

  /** How many fragments use the first-packet path. */
  get queuedFrags(): number {
    return this.queuedByFam.ip + this.queuedByFam.ip6;
  }

  /** The first-packet fragments per family once `frags` (undefined: gone) replace the current ones. */
  queuedAfter(frags: ReadonlyMap<string, Fragment | undefined>): Record<Fam, number> {
    const queued = { ...this.queuedByFam };
    for (const [id, f] of frags) {
      const old = this.frags.get(id);
      if (old?.queued) queued[old.f]--;
      if (f?.queued) queued[f.f]++;
    }
    return queued;
  }

  /** Records a service's fragment as now in the kernel (undefined: gone). */
  setFrag(id: string, f: Fragment | undefined): void {
    const old = this.frags.get(id);
    if (old?.queued) this.queuedByFam[old.f]--;
    if (f) {
      this.frags.set(id, f);
      if (f.queued) this.queuedByFam[f.f]++;
    } else {
      this.frags.delete(id);
    }
  }

  /** Forgets every fragment: the tables were replaced as a whole. */
  clearFrags(): void {
    this.frags.clear();
    this.queuedByFam.ip = this.queuedByFam.ip6 = 0;
  }

  /** The live direct-routing services. */
  *drServices(): Iterable<VirtualService> {
    for (const { svc } of this.owners.values()) if (this.drModel.has(svc.id)) yield svc;
  }

  /** OVERLOAD flags as compiled into each fragment: services whose servers' flags differ now. */
  overloadMoved(): Set<VirtualService> {
    const out = new Set<VirtualService>();
    for (const { svc, dest } of this.owners.values())
      if (dest.uThreshold && !out.has(svc) && this.compiledOverloadDiffers(svc)) out.add(svc);
    return out;
  }

  /** Whether a NAT service's servers' OVERLOAD flags differ from what its fragment was compiled with. */
  compiledOverloadDiffers(svc: VirtualService): boolean {
    const frag = this.frags.get(svc.id);
    if (!frag) return false;
    return svc.dests.some((d) => frag.overloaded.has(this.markFor(svc.id, d.id)!) !== d.overloaded);
  }

  private svcIdOf(key: string): number {
    let id = this.svcIds.get(key);
    if (id === undefined) this.svcIds.set(key, (id = this.nextSvcId++));
    return id;
  }
}
