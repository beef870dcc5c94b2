/**
 * What the NAT and DR compilers share: the model of the table they compile (services,
 * real servers, their stable marks), the names of per-server kernel objects, and the
 * kernel-side form of each scheduler (`schedulerPick`: the core's own scheduler code run
 * into a fixed cycle or bucket table). The NAT compiler is nat.ts, the DR compiler dr.ts.
 * No I/O here.
 */
import { SCHED_FLAG_1, SCHED_FLAG_2, type Family, type FwdMethod } from '../../core/types.js';
import { foldAddr, gcd, GOLDEN_PRIME } from '../../schedulers/common.js';
import { dhBuckets, DH_TAB_SIZE } from '../../schedulers/dh.js';
import { getScheduler } from '../../schedulers/index.js';
import { MH_TAB_SIZE, mhTable } from '../../schedulers/mh.js';
import type { SchedDest } from '../../core/scheduler.js';
import { shBuckets, SH_TAB_SIZE } from '../../schedulers/sh.js';
import { wrrRestore, type WrrState } from '../../schedulers/wrr.js';

/** The name of tsvs's tables, in both families. */
export const TABLE = 'tsvs';
/** Schedulers this plane runs entirely in the kernel. */
export const KERNEL_SCHEDULERS: ReadonlySet<string> = new Set(['rr', 'wrr', 'sh', 'dh', 'mh']);
/**
 * Schedulers that need the per-connection decision of the core (connection counts,
 * caches): the first packet of each new flow goes to tsvsd through NFQUEUE (nfqueue.ts),
 * the verdict's mark names the real server, and a numgen rr rule is the fallback.
 */
export const QUEUE_SCHEDULERS: ReadonlySet<string> = new Set(['lc', 'wlc', 'sed', 'nq', 'lblc', 'lblcr', 'fo', 'ovf', 'twos']);
/** The verdict mark for "no destination available": the service chain rejects. Server marks are below 2^31. */
export const NO_DEST_MARK = 0x80000000;
/** The regular chain whose single rule is the xtables NFQUEUE target, added over netlink (netsock.ts). */
export const NFQ_CHAIN = 'nfq';
/** Longest rr/wrr sequence handed to numgen; longer wrr cycles are scaled down (docs/nftables.md). */
export const MAX_SEQUENCE = 4096;

/** A real server as the compiler sees it. */
export interface NftDest {
  addr: string;
  port: number;
  weight: number;
  /** Last non-zero weight (mh builds its table from it). */
  lastWeight: number;
  overloaded: boolean;
  /** Conntrack mark of its connections; names its chain, counters and persistence set. */
  mark: number;
  /** Forwarding method (absent: masq); route (-g) servers are compiled by dr.ts instead. */
  fwd?: FwdMethod;
}

/** A virtual service as the compiler sees it; dests in kernel list order (newest first). */
export interface NftService {
  id: number;
  af: Family;
  protocol: 'tcp' | 'udp';
  addr: string;
  port: number;
  scheduler: string;
  schedFlags: number;
  persistent: number;
  netmask: number;
  dests: NftDest[];
  /**
   * wrr: the core scheduler's position for these servers. The kernel sequence continues
   * from the state its changes left (dest_changed keeps cw), so the numgen cycle starts
   * there. Absent: from a fresh start.
   */
  wrr?: WrrState | null;
  /** Connection limits compiled into the service's chain (nat.ts); absent: none. */
  limits?: NftLimits;
}

/** A service's connection limits in the kernel: 0 = none. */
export interface NftLimits {
  /** `ct count over` for the service's connections (--max-conns-per-service). */
  conns: number;
  /** The same per client address (--max-conns-per-client). */
  perClient: number;
  /** Jump to the director-wide limit chain (--max-conns). */
  global: boolean;
}

export interface NftModel {
  services: NftService[];
  /**
   * Source networks to masquerade on their way out through the director (TSVS_NFT_SNAT):
   * the real servers' own outbound connections. Connections to a VIP are never touched
   * by it: their replies are un-NATed by conntrack, and the nat hook sees only new flows.
   */
  snat?: string[];
}

type Expr = unknown;
type Stmt = Record<string, unknown>;

// ------------------------------------------------------------------ helpers

const fam = (af: Family): 'ip' | 'ip6' => (af === 6 ? 'ip6' : 'ip');
const payload = (protocol: string, field: string): Expr => ({ payload: { protocol, field } });
const goto = (target: string): Expr => ({ goto: { target } });

export const rsChain = (mark: number) => `rs${mark}`;
export const svcChain = (id: number) => `svc${id}`;
export const connsCounter = (mark: number) => `conns${mark}`;
export const inCounter = (mark: number) => `in${mark}`;
export const outCounter = (mark: number) => `out${mark}`;
/** The persistence set's name carries its timeout and mask: changing either starts a new set, as the kernel retires old templates. */
export const persistSet = (mark: number, svc: Pick<NftService, 'af' | 'persistent' | 'netmask'>) =>
  `persist${mark}_${svc.persistent}_${prefixLen(svc)}`;

/** The service's persistence netmask (-M) as a prefix length. */
export function prefixLen(svc: Pick<NftService, 'af' | 'netmask'>): number {
  if (svc.af === 6) return svc.netmask;
  let n = 0;
  for (let m = svc.netmask >>> 0; m & 0x80000000; m = (m << 1) >>> 0) n++;
  return n;
}

/** The persistence key: the client address under the service's netmask. */
export function maskedSaddr(svc: NftService): Expr {
  const f = fam(svc.af);
  const saddr = payload(f, 'saddr');
  if (svc.af === 4) {
    if (svc.netmask >>> 0 === 0xffffffff) return saddr;
    const m = svc.netmask >>> 0;
    return { '&': [saddr, `${m >>> 24}.${(m >>> 16) & 255}.${(m >>> 8) & 255}.${m & 255}`] };
  }
  if (svc.netmask >= 128) return saddr;
  return { '&': [saddr, v6Mask(svc.netmask)] };
}

function v6Mask(len: number): string {
  const groups: string[] = [];
  for (let i = 0; i < 8; i++) {
    const bits = Math.max(0, Math.min(16, len - i * 16));
    groups.push(((0xffff << (16 - bits)) & 0xffff).toString(16));
  }
  // Compress the trailing zero groups.
  const last = groups.map((g) => g !== '0').lastIndexOf(true);
  return last < 0 ? '::' : last === 7 ? groups.join(':') : `${groups.slice(0, last + 1).join(':')}::`;
}

/** A SchedDest view of a model dest, for the core's scheduler code. */
function schedDest(af: Family, d: NftDest): SchedDest & { src: NftDest } {
  return {
    af,
    addr: d.addr,
    port: d.port,
    weight: d.weight,
    lastWeight: d.lastWeight,
    activeconns: 0,
    inactconns: 0,
    overloaded: d.overloaded,
    available: true,
    src: d,
  };
}

const usable = (d: NftDest) => d.weight > 0 && !d.overloaded;

/**
 * rr/wrr as a fixed cycle: the kernel scheduler's own picks, run from a fresh state for
 * one full period (rr: one per usable server; wrr: sum of usable weights / gcd). A numgen
 * counter walks the cycle.
 */
export function rrSequence(svc: NftService): NftDest[] {
  const live = svc.dests.filter(usable);
  if (!live.length) return [];
  let dests = svc.dests;
  let period = live.length;
  if (svc.scheduler === 'wrr') {
    let g = 0;
    for (const d of svc.dests) if (d.weight > 0) g = g ? gcd(d.weight, g) : d.weight;
    const sum = live.reduce((s, d) => s + d.weight, 0);
    period = sum / g;
    if (period > MAX_SEQUENCE) {
      // Too long a cycle for one vmap: keep the ratios to within 1/MAX_SEQUENCE.
      dests = svc.dests.map((d) => ({ ...d, weight: d.weight > 0 ? Math.max(1, Math.round((d.weight * MAX_SEQUENCE) / sum)) : 0 }));
      const back = new Map(dests.map((d, i) => [d, svc.dests[i]!]));
      return rrSequence({ ...svc, dests, wrr: null }).map((d) => back.get(d)!);
    }
  }
  const fake = dests.map((d) => schedDest(svc.af, d));
  const sched = getScheduler(svc.scheduler)!.create({ af: svc.af, schedFlags: svc.schedFlags, dests: fake }, { randomU32: () => 0 });
  // The cycle is periodic from any position it can be in, so P picks from there are one
  // full cycle, rotated to where the kernel would continue.
  if (svc.scheduler === 'wrr' && svc.wrr) wrrRestore(sched, svc.wrr);
  const out: NftDest[] = [];
  for (let i = 0; i < period; i++) {
    const d = sched.schedule({ caddr: '0.0.0.0', cport: 0, vaddr: svc.addr, vport: svc.port, now: 0 });
    if (!d) break;
    out.push(d.src);
  }
  return out;
}

/**
 * sh's 256 buckets resolved to the server each one sends to (null: refused). Unavailable
 * servers (weight 0, overloaded) are replaced by sh-fallback's probe, which for bucket b
 * visits buckets (2b + k) mod 256: the kernel's `roffset + hash` collapses to that.
 */
export function shTargets(svc: NftService): (NftDest | null)[] {
  const buckets = shBuckets(svc.dests.map((d) => schedDest(svc.af, d)));
  const fallback = (svc.schedFlags & SCHED_FLAG_1) !== 0;
  return buckets.map((d, b) => {
    if (!d) return null;
    if (usable(d.src)) return d.src;
    if (!fallback) return null;
    for (let k = 0; k < SH_TAB_SIZE; k++) {
      const p = buckets[(2 * b + k) % SH_TAB_SIZE];
      if (!p) return null;
      if (usable(p.src)) return p.src;
    }
    return null;
  });
}

/** mh's 4093 slots resolved; unavailable slots probe forward with mh-fallback (the kernel re-hashes instead). */
export function mhTargets(svc: NftService): (NftDest | null)[] {
  const table =
    mhTable(
      svc.af,
      svc.dests.map((d) => schedDest(svc.af, d)),
    ) ?? [];
  const fallback = (svc.schedFlags & SCHED_FLAG_1) !== 0;
  const M = table.length;
  return table.map((d, b) => {
    if (!d) return null;
    if (usable(d.src)) return d.src;
    if (!fallback) return null;
    for (let k = 1; k < M; k++) {
      const p = table[(b + k) % M];
      if (p && usable(p.src)) return p.src;
    }
    return null;
  });
}

/** A scheduler as the kernel runs it: one server, a table indexed by a per-packet key, or the IPv4 sh octet table. */
export type SchedPick =
  | { kind: 'one'; dest: NftDest }
  | { kind: 'index'; key: 'numgen' | 'jhash'; mod: number; sport: boolean; targets: readonly (NftDest | null)[] }
  | { kind: 'octet'; targets: readonly (NftDest | null)[] };

/** The kernel-side form of a service's scheduler, or null when no server can be picked. */
export function schedulerPick(svc: NftService): SchedPick | null {
  const sport = (svc.schedFlags & SCHED_FLAG_2) !== 0;
  switch (svc.scheduler) {
    case 'rr':
    case 'wrr': {
      const seq = rrSequence(svc);
      if (!seq.length) return null;
      if (new Set(seq).size === 1) return { kind: 'one', dest: seq[0]! };
      return { kind: 'index', key: 'numgen', mod: seq.length, sport: false, targets: seq };
    }
    case 'sh': {
      const targets = shTargets(svc);
      if (!targets.some(Boolean)) return null;
      if (svc.af === 4 && !sport) {
        // Exact kernel hash: (addr * 2654435761) & 255 depends only on the last octet.
        const byOctet: (NftDest | null)[] = [];
        for (let o = 0; o < 256; o++) byOctet.push(targets[Math.imul(o, GOLDEN_PRIME) & (SH_TAB_SIZE - 1)] ?? null);
        return { kind: 'octet', targets: byOctet };
      }
      return { kind: 'index', key: 'jhash', mod: SH_TAB_SIZE, sport, targets };
    }
    case 'dh': {
      // The service's own address is the only destination: its bucket is fixed.
      const buckets = dhBuckets(svc.dests.map((d) => schedDest(svc.af, d)));
      const d = buckets[Math.imul(foldAddr(svc.addr), GOLDEN_PRIME) & (DH_TAB_SIZE - 1)]?.src;
      return d && usable(d) ? { kind: 'one', dest: d } : null;
    }
    case 'mh': {
      const targets = mhTargets(svc);
      return targets.some(Boolean) ? { kind: 'index', key: 'jhash', mod: MH_TAB_SIZE, sport, targets } : null;
    }
    default:
      throw new Error(`scheduler ${svc.scheduler} cannot run in the nftables plane`);
  }
}

/** Index → target as vmap elements, runs of one target merged into ranges. */
function indexElems(targets: readonly (NftDest | null)[]): [Expr, Expr][] {
  const out: [Expr, Expr][] = [];
  let i = 0;
  while (i < targets.length) {
    const t = targets[i];
    let j = i;
    while (j + 1 < targets.length && targets[j + 1] === t) j++;
    if (t) out.push([i === j ? i : { range: [i, j] }, goto(rsChain(t.mark))]);
    i = j + 1;
  }
  return out;
}

/**
 * The scheduling rule of a service in nft JSON, as gotos to rs<M> chains, or null when no
 * server can be picked: the DR compiler's form (dr.ts) of `schedulerPick`.
 */
export function schedulerRule(svc: NftService): Stmt[] | null {
  const pick = schedulerPick(svc);
  if (!pick) return null;
  if (pick.kind === 'one') return [goto(rsChain(pick.dest.mark)) as Stmt];
  if (pick.kind === 'octet') {
    const elems: [Expr, Expr][] = [];
    pick.targets.forEach((t, o) => {
      t && elems.push([`0.0.0.${o}`, goto(rsChain(t.mark))]);
    });
    return [{ vmap: { key: { '&': [payload('ip', 'saddr'), '0.0.0.255'] }, data: { set: elems } } }];
  }
  const f = fam(svc.af);
  const saddr = payload(f, 'saddr');
  const key =
    pick.key === 'numgen'
      ? { numgen: { mode: 'inc', mod: pick.mod, offset: 0 } }
      : { jhash: { mod: pick.mod, seed: 0, expr: pick.sport ? { concat: [saddr, payload('th', 'sport')] } : saddr } };
  return [{ vmap: { key, data: { set: indexElems(pick.targets) } } }];
}

/** Checks TSVS_NFT_SNAT's list of networks ("198.19.0.0/24,2001:db8::/64"); throws on a bad one. */
export function parseSnat(text: string): string[] {
  const out: string[] = [];
  for (const raw of text
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean)) {
    const m = /^([0-9a-fA-F:.]+)(?:\/(\d{1,3}))?$/.exec(raw);
    const v6 = raw.includes(':');
    if (!m || (m[2] !== undefined && Number(m[2]) > (v6 ? 128 : 32)) || (!v6 && !/^\d+\.\d+\.\d+\.\d+$/.test(m[1]!))) {
      throw new Error(`TSVS_NFT_SNAT: "${raw}" is not an address or network (e.g. 198.19.0.0/24)`);
    }
    out.push(raw.toLowerCase());
  }
  return out;
}
