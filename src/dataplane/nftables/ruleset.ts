/**
 * The pure compiler of the nftables data plane: a model of the table (services, real
 * servers, their stable marks) becomes the objects of tsvs's own tables `ip tsvs` and
 * `ip6 tsvs`, and a pair of rulesets becomes one nft JSON transaction (`nft -j -f FILE`).
 * No I/O here, so the output is golden-tested without root.
 *
 * Per family:
 *
 *   prerouting (nat, dstnat)  daddr . l4proto . dport vmap @services  -> goto svc<N>
 *                             port-zero services: daddr l4proto       -> goto svc<N>
 *   svc<N>                    [persistence: saddr&mask @persist<M>    -> goto rs<M>]
 *                             scheduler: numgen / hash vmap           -> goto rs<M>
 *                             reject (ICMP port unreachable, as ip_vs_leave)
 *   rs<M>                     counter conns<M>, ct mark set M, [update @persist<M>],
 *                             dnat to RIP[:port]
 *   forward (filter)          ct direction original/reply: counter name ct mark map
 *                             @in_counters / @out_counters
 *
 * With connection-count services (lc, wlc, ...: QUEUE_SCHEDULERS) the family also gets
 * the first-packet path (queueRules): `queue` (-150) jumps new flows to `nfq`, whose
 * NFQUEUE rule is added over netlink (never flushed here), `qmark` (-140) copies the
 * verdict's mark to the ct mark, and the service chain dispatches on it.
 *
 * Only the first packet of a connection passes the nat chains; conntrack carries the
 * translation for the rest, so rewriting these chains never disturbs open connections.
 * M is the real server's mark (unique per service+server while it exists), N the
 * service's id.
 */
import { SCHED_FLAG_1, SCHED_FLAG_2, type Family, type FwdMethod } from '../../core/types.js';
import { foldAddr, gcd, GOLDEN_PRIME } from '../../schedulers/common.js';
import { dhBuckets, DH_TAB_SIZE } from '../../schedulers/dh.js';
import { getScheduler } from '../../schedulers/index.js';
import { MH_TAB_SIZE, mhTable } from '../../schedulers/mh.js';
import type { SchedDest } from '../../schedulers/scheduler.js';
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

interface Chain {
  name: string;
  base?: { type: 'nat' | 'filter'; hook: 'prerouting' | 'forward' | 'postrouting'; prio: number };
  rules: Stmt[][];
  /** Its rules are not the compiler's (the NFQUEUE rule): never flushed or filled by a transaction. */
  external?: true;
}
interface NamedSet {
  name: string;
  type: string;
  /** Dynamic set with timeouts (persistence): elements come from the packet path and are never flushed. */
  timeout?: number;
  /** Static set: flushed and refilled by every transaction. */
  elems?: Expr[];
}
interface NamedMap {
  name: string;
  type: string | string[];
  map: 'verdict' | 'counter';
  elems: [Expr, Expr][];
}

/** Everything tsvs puts in one family's table. */
export interface FamilyRuleset {
  family: 'ip' | 'ip6';
  counters: string[];
  sets: NamedSet[];
  maps: NamedMap[];
  chains: Chain[];
}

export interface Ruleset {
  ip: FamilyRuleset;
  ip6: FamilyRuleset;
}

// ------------------------------------------------------------------ helpers

const fam = (af: Family): 'ip' | 'ip6' => (af === 6 ? 'ip6' : 'ip');
const payload = (protocol: string, field: string): Expr => ({ payload: { protocol, field } });
const goto = (target: string): Expr => ({ goto: { target } });
const match = (left: Expr, right: Expr, op = '=='): Stmt => ({ match: { op, left, right } });

export const rsChain = (mark: number) => `rs${mark}`;
export const svcChain = (id: number) => `svc${id}`;
export const connsCounter = (mark: number) => `conns${mark}`;
export const inCounter = (mark: number) => `in${mark}`;
export const outCounter = (mark: number) => `out${mark}`;
/** The persistence set's name carries its timeout and mask: changing either starts a new set, as the kernel retires old templates. */
export const persistSet = (mark: number, svc: Pick<NftService, 'af' | 'persistent' | 'netmask'>) => `persist${mark}_${svc.persistent}_${prefixLen(svc)}`;

function prefixLen(svc: Pick<NftService, 'af' | 'netmask'>): number {
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
  return { af, addr: d.addr, port: d.port, weight: d.weight, lastWeight: d.lastWeight, activeconns: 0, inactconns: 0, overloaded: d.overloaded, available: true, src: d };
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
  const table = mhTable(svc.af, svc.dests.map((d) => schedDest(svc.af, d))) ?? [];
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

/** The client-hash key: jhash of the source address (and port with the -port flag). */
function clientHash(svc: NftService, mod: number): Expr {
  const f = fam(svc.af);
  const saddr = payload(f, 'saddr');
  const expr = svc.schedFlags & SCHED_FLAG_2 ? { concat: [saddr, payload('th', 'sport')] } : saddr;
  return { jhash: { mod, seed: 0, expr } };
}

/** The scheduling rule of a service (gotos to rs<M>), or null when no server can be picked; also used by the DR compiler (dr.ts). */
export function schedulerRule(svc: NftService): Stmt[] | null {
  switch (svc.scheduler) {
    case 'rr':
    case 'wrr': {
      const seq = rrSequence(svc);
      if (!seq.length) return null;
      if (new Set(seq).size === 1) return [goto(rsChain(seq[0]!.mark)) as Stmt];
      return [{ vmap: { key: { numgen: { mode: 'inc', mod: seq.length, offset: 0 } }, data: { set: indexElems(seq) } } }];
    }
    case 'sh': {
      const targets = shTargets(svc);
      if (svc.af === 4 && !(svc.schedFlags & SCHED_FLAG_2)) {
        // Exact kernel hash: (addr * 2654435761) & 255 depends only on the last octet.
        const elems: [Expr, Expr][] = [];
        for (let o = 0; o < 256; o++) {
          const t = targets[Math.imul(o, GOLDEN_PRIME) & (SH_TAB_SIZE - 1)];
          if (t) elems.push([`0.0.0.${o}`, goto(rsChain(t.mark))]);
        }
        if (!elems.length) return null;
        return [{ vmap: { key: { '&': [payload('ip', 'saddr'), '0.0.0.255'] }, data: { set: elems } } }];
      }
      const elems = indexElems(targets);
      return elems.length ? [{ vmap: { key: clientHash(svc, SH_TAB_SIZE), data: { set: elems } } }] : null;
    }
    case 'dh': {
      // The service's own address is the only destination: its bucket is fixed.
      const buckets = dhBuckets(svc.dests.map((d) => schedDest(svc.af, d)));
      const d = buckets[Math.imul(foldAddr(svc.addr), GOLDEN_PRIME) & (DH_TAB_SIZE - 1)]?.src;
      return d && usable(d) ? [goto(rsChain(d.mark)) as Stmt] : null;
    }
    case 'mh': {
      const elems = indexElems(mhTargets(svc));
      return elems.length ? [{ vmap: { key: clientHash(svc, MH_TAB_SIZE), data: { set: elems } } }] : null;
    }
    default:
      throw new Error(`scheduler ${svc.scheduler} cannot run in the nftables plane`);
  }
}

// ------------------------------------------------------------------ compile

function emptyFamily(family: 'ip' | 'ip6'): FamilyRuleset {
  const f = family;
  return {
    family,
    counters: [],
    sets: [],
    maps: [
      { name: 'services', type: [f === 'ip' ? 'ipv4_addr' : 'ipv6_addr', 'inet_proto', 'inet_service'], map: 'verdict', elems: [] },
      { name: 'in_counters', type: 'mark', map: 'counter', elems: [] },
      { name: 'out_counters', type: 'mark', map: 'counter', elems: [] },
    ],
    chains: [
      {
        name: 'prerouting',
        base: { type: 'nat', hook: 'prerouting', prio: -100 },
        rules: [[{ vmap: { key: { concat: [payload(f, 'daddr'), { meta: { key: 'l4proto' } }, payload('th', 'dport')] }, data: '@services' } }]],
      },
      {
        name: 'forward',
        base: { type: 'filter', hook: 'forward', prio: 0 },
        rules: [
          [match({ ct: { key: 'direction' } }, 'original'), { counter: { map: { key: { ct: { key: 'mark' } }, data: '@in_counters' } } }],
          [match({ ct: { key: 'direction' } }, 'reply'), { counter: { map: { key: { ct: { key: 'mark' } }, data: '@out_counters' } } }],
        ],
      },
    ],
  };
}

/**
 * The first-packet path of a queue-scheduled service (docs/nftables.md):
 *
 *   queue (filter, prerouting, -150)  ct state new ct mark 0 daddr . l4proto . dport
 *                                     vmap @qservices -> jump nfq  (nfq: xt NFQUEUE, bypass)
 *   qmark (filter, prerouting, -140)  ct state new ct mark 0 meta mark @qmarks
 *                                     ct mark set meta mark  (a queue verdict ends its chain)
 *   svc<N>                            ct mark NO_DEST reject; ct mark vmap { M : goto rs<M> };
 *                                     fallback numgen rr over the usable servers
 *
 * Returns the service chain's rules; adds the family's shared queue objects once.
 */
function queueRules(fr: FamilyRuleset, svc: NftService): (Stmt[] | null)[] {
  const f = fr.family;
  let qservices = fr.maps.find((m) => m.name === 'qservices');
  let qmarks = fr.sets.find((s) => s.name === 'qmarks');
  if (!qservices || !qmarks) {
    qservices = { name: 'qservices', type: [f === 'ip' ? 'ipv4_addr' : 'ipv6_addr', 'inet_proto', 'inet_service'], map: 'verdict', elems: [] };
    qmarks = { name: 'qmarks', type: 'mark', elems: [NO_DEST_MARK] };
    fr.maps.push(qservices);
    fr.sets.push(qmarks);
    const fresh = [match({ ct: { key: 'state' } }, 'new', 'in'), match({ ct: { key: 'mark' } }, 0)];
    fr.chains.push(
      { name: NFQ_CHAIN, rules: [], external: true },
      {
        name: 'queue',
        base: { type: 'filter', hook: 'prerouting', prio: -150 },
        rules: [[...fresh, { vmap: { key: { concat: [payload(f, 'daddr'), { meta: { key: 'l4proto' } }, payload('th', 'dport')] }, data: '@qservices' } }]],
      },
      {
        name: 'qmark',
        base: { type: 'filter', hook: 'prerouting', prio: -140 },
        rules: [[...fresh, match({ meta: { key: 'mark' } }, '@qmarks'), { mangle: { key: { ct: { key: 'mark' } }, value: { meta: { key: 'mark' } } } }]],
      },
    );
  }
  for (const d of svc.dests) qmarks.elems!.push(d.mark);
  const jump = { jump: { target: NFQ_CHAIN } };
  if (svc.port === 0) {
    fr.chains.find((c) => c.name === 'queue')!.rules.push([
      match({ ct: { key: 'state' } }, 'new', 'in'),
      match({ ct: { key: 'mark' } }, 0),
      match(payload(f, 'daddr'), svc.addr),
      match({ meta: { key: 'l4proto' } }, svc.protocol),
      jump as Stmt,
    ]);
  } else {
    qservices.elems.push([{ concat: [svc.addr, svc.protocol, svc.port] }, jump]);
  }
  const reject: Stmt = { reject: { type: f === 'ip' ? 'icmp' : 'icmpv6', expr: 'port-unreachable' } };
  const dispatch: Stmt[] | null = svc.dests.length
    ? [{ vmap: { key: { ct: { key: 'mark' } }, data: { set: svc.dests.map((d) => [d.mark, goto(rsChain(d.mark))]) } } }]
    : null;
  // No verdict in time (or no tsvsd): rr over the usable servers, in the kernel.
  const fallback = schedulerRule({ ...svc, scheduler: 'rr', wrr: null });
  return [[match({ ct: { key: 'mark' } }, NO_DEST_MARK), reject], dispatch, fallback];
}

/** Compiles the model into both families' rulesets. */
export function compile(model: NftModel): Ruleset {
  const out: Ruleset = { ip: emptyFamily('ip'), ip6: emptyFamily('ip6') };
  for (const svc of model.services) {
    const fr = out[fam(svc.af)];
    const f = fr.family;
    const [services, inMap, outMap] = fr.maps as [NamedMap, NamedMap, NamedMap];
    const prerouting = fr.chains[0]!;
    const chain: Chain = { name: svcChain(svc.id), rules: [] };
    // Queue-scheduled: the core decides, persistence included (its templates), so no persistence sets here.
    const queued = QUEUE_SCHEDULERS.has(svc.scheduler);
    for (const d of svc.dests) {
      fr.counters.push(connsCounter(d.mark), inCounter(d.mark), outCounter(d.mark));
      inMap.elems.push([d.mark, inCounter(d.mark)]);
      outMap.elems.push([d.mark, outCounter(d.mark)]);
      const rule: Stmt[] = [
        match({ meta: { key: 'l4proto' } }, svc.protocol),
        { counter: connsCounter(d.mark) },
        { mangle: { key: { ct: { key: 'mark' } }, value: d.mark } },
      ];
      if (svc.persistent > 0 && !queued) {
        const set = persistSet(d.mark, svc);
        fr.sets.push({ name: set, type: f === 'ip' ? 'ipv4_addr' : 'ipv6_addr', timeout: svc.persistent });
        rule.push({ set: { op: 'update', elem: maskedSaddr(svc), set: `@${set}` } });
        // A template keeps sending its client to its server, quiesced or not (expire_quiescent_template=0).
        chain.rules.push([match(maskedSaddr(svc), `@${set}`), goto(rsChain(d.mark)) as Stmt]);
      }
      // Port 0: keep the port the client asked for (dest->port ? dest->port : vport).
      rule.push({ dnat: d.port ? { addr: d.addr, port: d.port } : { addr: d.addr } });
      fr.chains.push({ name: rsChain(d.mark), rules: [rule] });
    }
    const sched = queued ? queueRules(fr, svc) : [schedulerRule(svc)];
    for (const r of sched) if (r) chain.rules.push(r);
    // ip_vs_leave: "no destination available" answers ICMP port unreachable, TCP or UDP.
    chain.rules.push([{ reject: { type: f === 'ip' ? 'icmp' : 'icmpv6', expr: 'port-unreachable' } }]);
    fr.chains.push(chain);
    if (svc.port === 0) {
      prerouting.rules.push([match(payload(f, 'daddr'), svc.addr), match({ meta: { key: 'l4proto' } }, svc.protocol), goto(chain.name) as Stmt]);
    } else {
      services.elems.push([{ concat: [svc.addr, svc.protocol, svc.port] }, goto(chain.name)]);
    }
  }
  for (const cidr of model.snat ?? []) {
    const [net, len] = cidr.split('/') as [string, string | undefined];
    const fr = out[net.includes(':') ? 'ip6' : 'ip'];
    let post = fr.chains.find((c) => c.name === 'postrouting');
    if (!post) {
      post = { name: 'postrouting', base: { type: 'nat', hook: 'postrouting', prio: 100 }, rules: [] };
      fr.chains.push(post);
    }
    const right = len === undefined ? net : { prefix: { addr: net, len: Number(len) } };
    post.rules.push([match(payload(fr.family, 'saddr'), right), { masquerade: null }]);
  }
  return out;
}

/** Checks TSVS_NFT_SNAT's list of networks ("198.19.0.0/24,2001:db8::/64"); throws on a bad one. */
export function parseSnat(text: string): string[] {
  const out: string[] = [];
  for (const raw of text.split(',').map((x) => x.trim()).filter(Boolean)) {
    const m = /^([0-9a-fA-F:.]+)(?:\/(\d{1,3}))?$/.exec(raw);
    const v6 = raw.includes(':');
    if (!m || (m[2] !== undefined && Number(m[2]) > (v6 ? 128 : 32)) || (!v6 && !/^\d+\.\d+\.\d+\.\d+$/.test(m[1]!))) {
      throw new Error(`TSVS_NFT_SNAT: "${raw}" is not an address or network (e.g. 198.19.0.0/24)`);
    }
    out.push(raw.toLowerCase());
  }
  return out;
}

// ------------------------------------------------------------------ transactions

const obj = (family: string, extra: Record<string, unknown>) => ({ family, table: TABLE, ...extra });

/**
 * The nft JSON transaction that turns `prev` (what is in the kernel, or null when unknown)
 * into `next`. Named counters and persistence sets that stay are left alone, so counts
 * and templates survive; chains and maps are flushed and refilled; what is gone is
 * deleted last, once nothing refers to it. With `prev` null, any old table is replaced.
 */
export function transaction(prev: Ruleset | null, next: Ruleset): { nftables: unknown[] } {
  const cmds: unknown[] = [];
  for (const family of ['ip', 'ip6'] as const) {
    const n = next[family];
    const p = prev?.[family] ?? null;
    cmds.push({ add: { table: { family, name: TABLE } } });
    if (!p) {
      // Whatever an earlier run left behind goes, in the same transaction.
      cmds.push({ delete: { table: { family, name: TABLE } } }, { add: { table: { family, name: TABLE } } });
    }
    const had = (list: string[] | undefined, x: string) => !!list?.includes(x);
    for (const c of n.counters) if (!had(p?.counters, c)) cmds.push({ add: { counter: obj(family, { name: c }) } });
    for (const s of n.sets) {
      if (p?.sets.some((x) => x.name === s.name)) continue;
      cmds.push({ add: { set: obj(family, s.timeout !== undefined ? { name: s.name, type: s.type, flags: ['timeout'], timeout: s.timeout } : { name: s.name, type: s.type }) } });
    }
    for (const m of n.maps) {
      if (!p?.maps.some((x) => x.name === m.name)) cmds.push({ add: { map: obj(family, { name: m.name, type: m.type, map: m.map }) } });
    }
    for (const c of n.chains) {
      if (!p?.chains.some((x) => x.name === c.name)) {
        cmds.push({ add: { chain: obj(family, c.base ? { name: c.name, type: c.base.type, hook: c.base.hook, prio: c.base.prio, policy: 'accept' } : { name: c.name }) } });
      }
    }
    const nextChains = new Set(n.chains.map((c) => c.name));
    if (p) {
      // An external chain (the NFQUEUE rule) is flushed only on its way out.
      for (const c of p.chains) if (!c.external || !nextChains.has(c.name)) cmds.push({ flush: { chain: obj(family, { name: c.name }) } });
      for (const m of p.maps) if (m.elems.length) cmds.push({ flush: { map: obj(family, { name: m.name }) } });
      for (const s of p.sets) if (s.elems?.length) cmds.push({ flush: { set: obj(family, { name: s.name }) } });
    }
    for (const c of n.chains) if (!c.external) for (const expr of c.rules) cmds.push({ add: { rule: obj(family, { chain: c.name, expr }) } });
    for (const m of n.maps) if (m.elems.length) cmds.push({ add: { element: obj(family, { name: m.name, elem: m.elems }) } });
    for (const s of n.sets) if (s.elems?.length) cmds.push({ add: { element: obj(family, { name: s.name, elem: s.elems }) } });
    if (p) {
      for (const c of p.chains) if (!nextChains.has(c.name)) cmds.push({ delete: { chain: obj(family, { name: c.name }) } });
      for (const m of p.maps) if (!n.maps.some((x) => x.name === m.name)) cmds.push({ delete: { map: obj(family, { name: m.name }) } });
      for (const s of p.sets) if (!n.sets.some((x) => x.name === s.name)) cmds.push({ delete: { set: obj(family, { name: s.name }) } });
      for (const c of p.counters) if (!n.counters.includes(c)) cmds.push({ delete: { counter: obj(family, { name: c }) } });
    }
  }
  return { nftables: cmds };
}

/**
 * The families whose `nfq` chain is new in `next` (a full replace included), so the
 * NFQUEUE rule must be added to it after the transaction (netsock.ts).
 */
export function nfqueueRuleNeeded(prev: Ruleset | null, next: Ruleset): ('ip' | 'ip6')[] {
  const has = (r: Ruleset | null, f: 'ip' | 'ip6') => !!r?.[f].chains.some((c) => c.name === NFQ_CHAIN);
  return (['ip', 'ip6'] as const).filter((f) => has(next, f) && !has(prev, f));
}

/** Removes tsvs's tables (clean exit). */
export function removal(): { nftables: unknown[] } {
  const cmds: unknown[] = [];
  for (const family of ['ip', 'ip6']) {
    cmds.push({ add: { table: { family, name: TABLE } } }, { delete: { table: { family, name: TABLE } } });
  }
  return { nftables: cmds };
}
