/**
 * The pure compiler of kernel LVS-NAT, built so that a change costs the change and not
 * the table. Per family (`ip tsvs`, `ip6 tsvs`) there are a few fixed objects, and each
 * virtual service adds one small *fragment*: its chain, its servers' named counters and
 * persistence sets, and elements of the shared maps. A change to a service replaces only
 * its fragment (txn.ts diffs two fragments into a handful of commands); nothing else in
 * the kernel is touched.
 *
 *   prerouting (nat -100)  daddr . l4proto . dport vmap @services      -> goto svc<N>
 *                          daddr . l4proto vmap @services0 (port-zero)  -> goto svc<N>
 *   svc<N>                 [persistence: saddr&mask @persist<M> ct mark set M]
 *                          ct mark set <scheduler> (numgen / jhash / octet map, or M)
 *                          [persistence: ct mark M update @persist<M>] goto nat
 *                          reject (ICMP port unreachable, as ip_vs_leave)
 *   nat                    counter name ct mark map @conns_counters
 *                          dnat to ct mark map @backends  (RIP . port)
 *                          dnat to ct mark map @backends0 (RIP, port kept: port-zero servers)
 *   forward (filter 0)     counter name ct mark map @in_counters / @out_counters
 *
 * The real server is named by its mark M everywhere (the ct mark of its connections), so
 * there is no chain per real server: adding one is a few map elements and a new service
 * chain. Few chains matter on this kernel: every commit that adds a jump revalidates the
 * whole graph of chains reachable from the base chains (measured: 30 ms per commit with
 * 50,000 chains, against 4 ms for a data-map element).
 *
 * Connection limits (tsvsd --max-conns, --max-conns-per-service, --max-conns-per-client)
 * are conntrack counts, as nftables users write them, each with a named counter of what
 * it dropped (read back into tsvs_limit_refused_total):
 *
 *   svc<N>                 [jump climit]                          (--max-conns)
 *                          [ct count over S counter name lims<N> drop]
 *                          [add @limc<N> { saddr ct count over C } counter name limc<N> drop]
 *   climit                 ct count over G counter name limg drop (one list for every service)
 *
 * The nat hook sees only a connection's first packet, so each count is of connections.
 *
 * Connection-count schedulers (QUEUE_SCHEDULERS) add the first-packet path: `firstpkt`
 * (filter -150) jumps new flows to `nfq` (the xtables NFQUEUE rule, added over netlink by
 * netsock.ts), `qmark` (filter -140) copies the verdict's mark to the ct mark, and the
 * service chain goes on with that mark (NO_DEST_MARK rejects; no mark: rr fallback).
 */
import type { Family } from '../../core/types.js';
import {
  connsCounter,
  inCounter,
  NFQ_CHAIN,
  NO_DEST_MARK,
  outCounter,
  persistSet,
  prefixLen,
  QUEUE_SCHEDULERS,
  schedulerPick,
  svcChain,
  type NftService,
  type SchedPick,
} from './ruleset.js';

export type Fam = 'ip' | 'ip6';
export const famOf = (af: Family): Fam => (af === 6 ? 'ip6' : 'ip');

// ------------------------------------------------------------------ the IR

/** How a masked client address is keyed: the service's netmask (-M), as a prefix length. */
export interface Mask {
  af: Family;
  /** Prefix length; 32 / 128 means the whole address (no bitwise). */
  len: number;
}

/** Where `ct mark set` takes the mark from. */
export type MarkValue =
  | { v: 'imm'; mark: number }
  | { v: 'metamark' }
  /** An anonymous map from a per-packet key to marks; `ranges` entries are [first, last] index runs. */
  | { v: 'map'; key: SchedKey; elems: Array<[number | [number, number], number]> };

/** The per-packet key of a kernel-side scheduler (see ruleset.ts schedulerPick). */
export type SchedKey =
  | { k: 'numgen'; mod: number }
  | { k: 'jhash'; mod: number; af: Family; sport: boolean }
  /** IPv4 sh: the client's last octet (saddr & 0.0.0.255); elems are the octet values. */
  | { k: 'octet' };

/** One expression-level item of a rule, in rule order. */
export type Item =
  | { i: 'l4proto'; proto: 'tcp' | 'udp' }
  | { i: 'ctmark'; op: 'eq' | 'neq'; mark: number }
  | { i: 'ctnew' }
  | { i: 'ctdir'; dir: 'original' | 'reply' }
  | { i: 'saddr-net'; af: Family; net: string; len: number }
  | { i: 'persist-hit'; set: string; mask: Mask }
  | { i: 'metamark-in'; set: string }
  | { i: 'vmap'; af: Family; port: boolean; map: string }
  | { i: 'setmark'; value: MarkValue }
  | { i: 'update'; set: string; mask: Mask }
  | { i: 'counter-map'; map: string }
  | { i: 'dnat-map'; af: Family; map: string; port: boolean }
  | { i: 'masq' }
  | { i: 'reject'; af: Family }
  /** `ct count over N`: more than N connections passed this expression and are still in conntrack. */
  | { i: 'ctcount-over'; count: number }
  /** `add @set { saddr ct count over N }`: the client address's own count, in a dynamic set. */
  | { i: 'ctcount-set-over'; set: string; af: Family; count: number }
  /** `counter name X`: a named counter object. */
  | { i: 'counter-named'; name: string }
  | { i: 'drop' }
  | { i: 'goto'; chain: string }
  | { i: 'jump'; chain: string }
  | { i: 'return' };

export type Rule = Item[];

export interface ChainDef {
  name: string;
  base?: { type: 'nat' | 'filter'; hook: 'prerouting' | 'forward' | 'postrouting'; prio: number };
}

/** Key and data types of the named sets and maps. */
export type KeyType = 'vip3' | 'vip2' | 'mark' | 'addr';
export type DataType = 'verdict' | 'counter' | 'addrport' | 'addr';

export interface SetDef {
  name: string;
  af: Family;
  key: KeyType;
  data?: DataType;
  /** Dynamic set with this default timeout in seconds (persistence). */
  timeout?: number;
  /** Dynamic set without timeout, filled by the data path (per-client connection counts). */
  dynamic?: boolean;
}

export type ElemKey = number | { addr: string; proto: 'tcp' | 'udp'; port?: number };
export type ElemData = { goto: string } | { jump: string } | { counter: string } | { addr: string; port?: number };
export interface Elem {
  key: ElemKey;
  data?: ElemData;
}

/** A command of a transaction. The netlink encoder (nftnl.ts) and the text renderer (nfttext.ts) take the same list. */
export type Cmd =
  | { c: 'add-table'; f: Fam }
  | { c: 'delete-table'; f: Fam }
  | { c: 'add-chain'; f: Fam; chain: ChainDef }
  | { c: 'delete-chain'; f: Fam; name: string }
  | { c: 'flush-chain'; f: Fam; name: string }
  | { c: 'add-rule'; f: Fam; chain: string; rule: Rule }
  | { c: 'add-counter'; f: Fam; name: string }
  | { c: 'delete-counter'; f: Fam; name: string }
  | { c: 'add-set'; f: Fam; set: SetDef }
  | { c: 'delete-set'; f: Fam; name: string }
  | { c: 'add-elems'; f: Fam; set: string; elems: Elem[] }
  | { c: 'delete-elems'; f: Fam; set: string; elems: Elem[] };

// ------------------------------------------------------------------ fixed objects

export const SERVICES = 'services';
const SERVICES0 = 'services0';
const BACKENDS = 'backends';
const BACKENDS0 = 'backends0';
const CONNS_MAP = 'conns_counters';
const IN_MAP = 'in_counters';
const OUT_MAP = 'out_counters';
const NAT_CHAIN = 'nat';
const QSERVICES = 'qservices';
const QSERVICES0 = 'qservices0';
const QMARKS = 'qmarks';
const FIRSTPKT_CHAIN = 'firstpkt';
const QMARK_CHAIN = 'qmark';
/** The chain of the director-wide connection limit, and its counter. */
export const LIMIT_CHAIN = 'climit';
export const GLOBAL_LIMIT_COUNTER = 'limg';
/** The named counters of a service's connection limits. */
export const serviceLimitCounter = (id: number) => `lims${id}`;
export const clientLimitCounter = (id: number) => `limc${id}`;
const clientLimitSet = (id: number) => `clients${id}`;

/**
 * The objects every family table holds, whatever the services; `snat`: networks to
 * masquerade (TSVS_NFT_SNAT); `maxConns`: the director-wide connection limit (0: none).
 */
export function baseCommands(f: Fam, snat: readonly string[], maxConns = 0): Cmd[] {
  const af: Family = f === 'ip6' ? 6 : 4;
  const cmds: Cmd[] = [];
  const set = (name: string, key: KeyType, data?: DataType) =>
    cmds.push({ c: 'add-set', f, set: data ? { name, af, key, data } : { name, af, key } });
  set(SERVICES, 'vip3', 'verdict');
  set(SERVICES0, 'vip2', 'verdict');
  set(BACKENDS, 'mark', 'addrport');
  set(BACKENDS0, 'mark', 'addr');
  set(CONNS_MAP, 'mark', 'counter');
  set(IN_MAP, 'mark', 'counter');
  set(OUT_MAP, 'mark', 'counter');
  const chain = (name: string, base?: ChainDef['base']) => cmds.push({ c: 'add-chain', f, chain: base ? { name, base } : { name } });
  const rule = (ch: string, r: Rule) => cmds.push({ c: 'add-rule', f, chain: ch, rule: r });
  chain(NAT_CHAIN);
  rule(NAT_CHAIN, [{ i: 'counter-map', map: CONNS_MAP }]);
  // nft insists on a protocol match before a port mapping; the kernel does not care.
  rule(NAT_CHAIN, [
    { i: 'l4proto', proto: 'tcp' },
    { i: 'dnat-map', af, map: BACKENDS, port: true },
  ]);
  rule(NAT_CHAIN, [
    { i: 'l4proto', proto: 'udp' },
    { i: 'dnat-map', af, map: BACKENDS, port: true },
  ]);
  rule(NAT_CHAIN, [{ i: 'dnat-map', af, map: BACKENDS0, port: false }]);
  if (maxConns > 0) {
    cmds.push({ c: 'add-counter', f, name: GLOBAL_LIMIT_COUNTER });
    chain(LIMIT_CHAIN);
    rule(LIMIT_CHAIN, [{ i: 'ctcount-over', count: maxConns }, { i: 'counter-named', name: GLOBAL_LIMIT_COUNTER }, { i: 'drop' }]);
  }
  chain('prerouting', { type: 'nat', hook: 'prerouting', prio: -100 });
  rule('prerouting', [{ i: 'vmap', af, port: true, map: SERVICES }]);
  rule('prerouting', [{ i: 'vmap', af, port: false, map: SERVICES0 }]);
  chain('forward', { type: 'filter', hook: 'forward', prio: 0 });
  rule('forward', [
    { i: 'ctdir', dir: 'original' },
    { i: 'counter-map', map: IN_MAP },
  ]);
  rule('forward', [
    { i: 'ctdir', dir: 'reply' },
    { i: 'counter-map', map: OUT_MAP },
  ]);
  const mine = snat.filter((cidr) => cidr.includes(':') === (f === 'ip6'));
  if (mine.length) {
    chain('postrouting', { type: 'nat', hook: 'postrouting', prio: 100 });
    for (const cidr of mine) {
      const [net, len] = cidr.split('/') as [string, string | undefined];
      rule('postrouting', [{ i: 'saddr-net', af, net, len: len === undefined ? (af === 6 ? 128 : 32) : Number(len) }, { i: 'masq' }]);
    }
  }
  return cmds;
}

/**
 * The first-packet path's fixed objects, added with the family's first queue-scheduled
 * service and kept afterwards (with no service in @qservices they see no packet). The
 * `nfq` chain stays empty here: its one rule is the xtables NFQUEUE target (netsock.ts).
 */
export function queueBaseCommands(f: Fam): Cmd[] {
  const af: Family = f === 'ip6' ? 6 : 4;
  const fresh: Rule = [{ i: 'ctnew' }, { i: 'ctmark', op: 'eq', mark: 0 }];
  return [
    { c: 'add-set', f, set: { name: QSERVICES, af, key: 'vip3', data: 'verdict' } },
    { c: 'add-set', f, set: { name: QSERVICES0, af, key: 'vip2', data: 'verdict' } },
    { c: 'add-set', f, set: { name: QMARKS, af, key: 'mark' } },
    { c: 'add-elems', f, set: QMARKS, elems: [{ key: NO_DEST_MARK }] },
    { c: 'add-chain', f, chain: { name: NFQ_CHAIN } },
    { c: 'add-chain', f, chain: { name: FIRSTPKT_CHAIN, base: { type: 'filter', hook: 'prerouting', prio: -150 } } },
    { c: 'add-rule', f, chain: FIRSTPKT_CHAIN, rule: [...fresh, { i: 'vmap', af, port: true, map: QSERVICES }] },
    { c: 'add-rule', f, chain: FIRSTPKT_CHAIN, rule: [...fresh, { i: 'vmap', af, port: false, map: QSERVICES0 }] },
    { c: 'add-chain', f, chain: { name: QMARK_CHAIN, base: { type: 'filter', hook: 'prerouting', prio: -140 } } },
    // A queue verdict ends its chain, so the copy to the ct mark needs a chain of its own.
    {
      c: 'add-rule',
      f,
      chain: QMARK_CHAIN,
      rule: [...fresh, { i: 'metamark-in', set: QMARKS }, { i: 'setmark', value: { v: 'metamark' } }],
    },
  ];
}

/** Removes the first-packet objects when the family's last queue-scheduled service leaves (no per-packet cost without them). */
export function queueRemoveCommands(f: Fam): Cmd[] {
  return [
    ...[FIRSTPKT_CHAIN, QMARK_CHAIN, NFQ_CHAIN].flatMap((name): Cmd[] => [
      { c: 'flush-chain', f, name },
      { c: 'delete-chain', f, name },
    ]),
    ...[QSERVICES, QSERVICES0, QMARKS].map((name): Cmd => ({ c: 'delete-set', f, name })),
  ];
}

// ------------------------------------------------------------------ fragments

/** Everything one service puts into its family's table. */
export interface Fragment {
  f: Fam;
  chain: string;
  rules: Rule[];
  counters: string[];
  sets: SetDef[];
  /** Elements of the shared maps and sets, by map name. */
  elems: Array<{ set: string; elem: Elem }>;
  /** Uses the first-packet path (the family's queue objects must exist). */
  queued: boolean;
  /** Marks of the servers compiled as OVERLOADed (skipped by the scheduler rule). */
  overloaded: ReadonlySet<number>;
}

const maskOf = (svc: NftService): Mask => ({ af: svc.af, len: prefixLen(svc) });

/** The scheduler's pick as a `ct mark set` value, or null when no server can be picked. */
function markValue(svc: NftService, pick: SchedPick | null): MarkValue | null {
  if (!pick) return null;
  if (pick.kind === 'one') return { v: 'imm', mark: pick.dest.mark };
  const elems: Array<[number | [number, number], number]> = [];
  if (pick.kind === 'octet') {
    pick.targets.forEach((t, o) => {
      t && elems.push([o, t.mark]);
    });
    return elems.length ? { v: 'map', key: { k: 'octet' }, elems } : null;
  }
  // Runs of one target become one interval element.
  const targets = pick.targets;
  for (let i = 0; i < targets.length; ) {
    const t = targets[i];
    let j = i;
    while (j + 1 < targets.length && targets[j + 1] === t) j++;
    if (t) elems.push([i === j ? i : [i, j], t.mark]);
    i = j + 1;
  }
  if (!elems.length) return null;
  const key: SchedKey =
    pick.key === 'numgen' ? { k: 'numgen', mod: pick.mod } : { k: 'jhash', mod: pick.mod, af: svc.af, sport: pick.sport };
  return { v: 'map', key, elems };
}

/** Compiles one NAT service into its fragment. */
export function compileService(svc: NftService): Fragment {
  const f = famOf(svc.af);
  const af = svc.af;
  const chain = svcChain(svc.id);
  const queued = QUEUE_SCHEDULERS.has(svc.scheduler);
  const frag: Fragment = {
    f,
    chain,
    rules: [],
    counters: [],
    sets: [],
    elems: [],
    queued,
    overloaded: new Set(svc.dests.filter((d) => d.overloaded).map((d) => d.mark)),
  };
  const mask = maskOf(svc);
  const persistent = svc.persistent > 0 && !queued;
  // Limits first: a refused connection is never scheduled.
  const lim = svc.limits;
  if (lim?.global) frag.rules.push([{ i: 'jump', chain: LIMIT_CHAIN }]);
  if (lim?.conns) {
    const name = serviceLimitCounter(svc.id);
    frag.counters.push(name);
    frag.rules.push([{ i: 'ctcount-over', count: lim.conns }, { i: 'counter-named', name }, { i: 'drop' }]);
  }
  if (lim?.perClient) {
    const name = clientLimitCounter(svc.id);
    const set = clientLimitSet(svc.id);
    frag.counters.push(name);
    frag.sets.push({ name: set, af, key: 'addr', dynamic: true });
    frag.rules.push([{ i: 'ctcount-set-over', set, af, count: lim.perClient }, { i: 'counter-named', name }, { i: 'drop' }]);
  }
  for (const d of svc.dests) {
    frag.counters.push(connsCounter(d.mark), inCounter(d.mark), outCounter(d.mark));
    frag.elems.push(
      { set: CONNS_MAP, elem: { key: d.mark, data: { counter: connsCounter(d.mark) } } },
      { set: IN_MAP, elem: { key: d.mark, data: { counter: inCounter(d.mark) } } },
      { set: OUT_MAP, elem: { key: d.mark, data: { counter: outCounter(d.mark) } } },
      // Port 0: keep the port the client asked for (dest->port ? dest->port : vport).
      d.port
        ? { set: BACKENDS, elem: { key: d.mark, data: { addr: d.addr, port: d.port } } }
        : { set: BACKENDS0, elem: { key: d.mark, data: { addr: d.addr } } },
    );
    if (queued) frag.elems.push({ set: QMARKS, elem: { key: d.mark } });
    if (persistent) {
      const name = persistSet(d.mark, svc);
      frag.sets.push({ name, af, key: 'addr', timeout: svc.persistent });
      // A template keeps sending its client to its server, quiesced or not (expire_quiescent_template=0).
      frag.rules.push([
        { i: 'persist-hit', set: name, mask },
        { i: 'setmark', value: { v: 'imm', mark: d.mark } },
      ]);
    }
  }
  const reject: Rule = [{ i: 'reject', af }];
  if (queued) {
    frag.rules.push([{ i: 'ctmark', op: 'eq', mark: NO_DEST_MARK }, ...reject]);
    frag.rules.push([
      { i: 'ctmark', op: 'neq', mark: 0 },
      { i: 'goto', chain: NAT_CHAIN },
    ]);
    // No verdict in time (or no tsvsd): rr over the usable servers, in the kernel.
    const fallback = markValue(svc, schedulerPick({ ...svc, scheduler: 'rr', wrr: null }));
    if (fallback)
      frag.rules.push([
        { i: 'setmark', value: fallback },
        { i: 'goto', chain: NAT_CHAIN },
      ]);
  } else {
    const value = markValue(svc, schedulerPick(svc));
    if (persistent) {
      if (value)
        frag.rules.push([
          { i: 'ctmark', op: 'eq', mark: 0 },
          { i: 'setmark', value },
        ]);
      for (const d of svc.dests) {
        const name = persistSet(d.mark, svc);
        frag.rules.push([
          { i: 'ctmark', op: 'eq', mark: d.mark },
          { i: 'update', set: name, mask },
          { i: 'goto', chain: NAT_CHAIN },
        ]);
      }
    } else if (value) {
      frag.rules.push([
        { i: 'setmark', value },
        { i: 'goto', chain: NAT_CHAIN },
      ]);
    }
  }
  // ip_vs_leave: "no destination available" answers ICMP port unreachable, TCP or UDP.
  frag.rules.push(reject);
  const key = { addr: svc.addr, proto: svc.protocol, ...(svc.port ? { port: svc.port } : {}) };
  frag.elems.push({ set: svc.port ? SERVICES : SERVICES0, elem: { key, data: { goto: chain } } });
  if (queued) frag.elems.push({ set: svc.port ? QSERVICES : QSERVICES0, elem: { key, data: { jump: NFQ_CHAIN } } });
  return frag;
}
