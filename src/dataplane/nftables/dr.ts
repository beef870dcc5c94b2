/**
 * The pure compiler of direct routing (LVS-DR, ipvsadm -g) in the nftables plane: the
 * services whose real servers use `route` become the objects of tsvs's own table
 * `netdev tsvs`, hooked at ingress of the interface(s) that hold the VIPs. The packet is
 * not rewritten: `fwd ip to RIP device DEV` sends it, unchanged, to the real server's MAC
 * address (neighbour lookup of RIP on DEV), and the real server answers the client itself.
 * No I/O here, so the output is golden-tested without root (test/dr/compile.test.ts).
 *
 * The ingress hook runs before the IP stack, so there is no conntrack: like IPVS's own DR
 * connection entries (which see only the client's packets, IP_VS_CONN_F_NOOUTPUT), each
 * flow is remembered in a dynamic set of its real server, keyed by client address and
 * port and the virtual port, with the input-only timeouts:
 *
 *   ingress_<dev> (filter, hook ingress, device DEV)
 *                  daddr . l4proto . dport vmap @services4/6   -> goto svc<N>
 *                  port-zero services: daddr l4proto            -> goto svc<N>
 *   svc<N>         key @flows<M>                                 -> goto fwd<M>   (known flow)
 *                  tcp: not a SYN -> return (the director's own stack answers: RST)
 *                  [persistence: saddr&mask @persist<M>          -> goto rs<M>]
 *                  scheduler (ruleset.ts schedulerRule, shared with NAT) -> goto rs<M>
 *   rs<M>          counter conns<M> [update @persist<M>] goto fwd<M>   (a new flow)
 *   fwd<M>         counter in<M>; refresh @flows<M> with the timeout of the TCP state the
 *                  packet leads to (IPVS INPUT-ONLY table); fwd ip to RIP device DEV
 *
 * The key is `saddr . th sport . th dport`, so a client's connection keeps its server for
 * its whole life while the scheduler's vmap only sees flows that are not in any set yet.
 * Only TCP SYNs (and any UDP datagram) create flows, as IPVS schedules only those.
 */
import type { Family, Timeouts } from '../../core/types.js';
import {
  connsCounter,
  inCounter,
  KERNEL_SCHEDULERS,
  maskedSaddr,
  persistSet,
  rsChain,
  schedulerRule,
  svcChain,
  TABLE,
  type NftDest,
  type NftModel,
  type NftService,
} from './ruleset.js';

/** IPVS's SYN_RECV timeout (60 s) and CLOSE timeout (10 s): not settable with --set either. */
const SYN_RECV_TIMEOUT = 60;
const CLOSE_TIMEOUT = 10;

/** A DR real server: the model's dest plus the director's interface towards it. */
export interface DrDest extends NftDest {
  /** The interface on which RIP is directly reachable (`ip route get RIP`). */
  dev: string;
}

/** A DR service: the model's service plus the interface that holds its VIP. */
export interface DrService extends Omit<NftService, 'dests'> {
  /** The ingress interface: where the clients' packets to the VIP arrive. */
  dev: string;
  dests: DrDest[];
}

export interface DrModel {
  services: DrService[];
  /** ipvsadm --set: ESTABLISHED, FIN_WAIT and UDP timeouts, in seconds. */
  timeouts: Timeouts;
}

type Expr = unknown;
type Stmt = Record<string, unknown>;

interface DrChain {
  name: string;
  /** Base chain: its ingress device. */
  dev?: string;
  rules: Stmt[][];
}

/** Everything tsvs puts in `netdev tsvs`. */
export interface DrRuleset {
  counters: string[];
  sets: Array<{ name: string; type: string | string[]; timeout: number }>;
  maps: Array<{ name: string; type: string[]; elems: [Expr, Expr][] }>;
  chains: DrChain[];
}

const flowSet = (mark: number) => `flows${mark}`;
const finSet = (mark: number) => `fin${mark}`;
const fwdChain = (mark: number) => `fwd${mark}`;
const ingressChain = (dev: string) => `ingress_${dev}`;

const payload = (protocol: string, field: string): Expr => ({ payload: { protocol, field } });
const match = (left: Expr, right: Expr, op = '=='): Stmt => ({ match: { op, left, right } });
const goto = (target: string): Stmt => ({ goto: { target } });
const fam = (af: Family) => (af === 6 ? 'ip6' : 'ip');
const addrType = (af: Family) => (af === 6 ? 'ipv6_addr' : 'ipv4_addr');

/** The flow key: client address, client port, virtual port. */
function flowKey(af: Family): Expr {
  return { concat: [payload(fam(af), 'saddr'), payload('th', 'sport'), payload('th', 'dport')] };
}

const update = (set: string, key: Expr, timeout?: number): Stmt => ({
  set: { op: 'update', elem: timeout === undefined ? key : { elem: { val: key, timeout } }, set: `@${set}` },
});

/**
 * Splits a model into what NAT compiles (ruleset.ts) and the DR services. A service is DR
 * when its servers use `route`; mixing methods in one service is refused, as is a DR
 * server on another port than the service's (the packet is not rewritten, so there is no
 * port mapping; ipvsadm itself forces the port). Throws Error naming the object.
 */
export function splitDr(model: NftModel): { nat: NftModel; dr: NftService[] } {
  const nat: NftService[] = [];
  const dr: NftService[] = [];
  for (const svc of model.services) {
    const routed = svc.dests.filter((d) => d.fwd === 'route');
    if (!routed.length) {
      nat.push(svc);
      continue;
    }
    const label = `${svc.protocol.toUpperCase()} ${svc.af === 6 ? `[${svc.addr}]` : svc.addr}:${svc.port}`;
    const other = svc.dests.find((d) => d.fwd !== 'route');
    if (other) {
      throw new Error(
        `${label}: real server ${other.addr} uses ${other.fwd ?? 'masq'} while ${routed[0]!.addr} uses route (-g); the nftables data plane needs one forwarding method per service (NAT runs in the nat hook, DR at netdev ingress)`,
      );
    }
    if (!KERNEL_SCHEDULERS.has(svc.scheduler)) {
      throw new Error(
        `${label}: scheduler ${svc.scheduler} cannot run with direct routing (-g) in the nftables data plane: it needs a per-connection decision in userspace, and the netdev ingress hook has no queue to userspace (use ${[...KERNEL_SCHEDULERS].join(', ')})`,
      );
    }
    const moved = routed.find((d) => d.port !== svc.port && d.port !== 0);
    if (moved) {
      throw new Error(
        `${label}: real server ${moved.addr}:${moved.port}: direct routing (-g) cannot map ports (the packet reaches the real server unchanged, to port ${svc.port})`,
      );
    }
    dr.push(svc);
  }
  return { nat: { ...model, services: nat }, dr };
}

/** The TCP part of fwd<M>: the IPVS INPUT-ONLY state table, as timeouts of the flow set. */
function tcpFlowRules(af: Family, d: DrDest, t: Timeouts, out: Stmt): Stmt[][] {
  const key = flowKey(af);
  const flags = payload('tcp', 'flags');
  return [
    // rst: CLOSE.
    [match(flags, 'rst', 'in'), update(flowSet(d.mark), key, CLOSE_TIMEOUT), update(finSet(d.mark), key, CLOSE_TIMEOUT), out],
    // fin, or anything after a fin: FIN_WAIT (the kernel's FW + ack stays FW).
    [match(flags, 'fin', 'in'), update(flowSet(d.mark), key, t.tcpfin), update(finSet(d.mark), key, t.tcpfin), out],
    [match(key, `@${finSet(d.mark)}`), update(flowSet(d.mark), key, t.tcpfin), out],
    // A SYN: SYN_RECV.
    [match({ '&': [flags, ['syn', 'ack']] }, 'syn'), update(flowSet(d.mark), key, SYN_RECV_TIMEOUT), out],
    // Anything else: ESTABLISHED.
    [update(flowSet(d.mark), key, t.tcp), out],
  ];
}

/** Compiles the DR services into `netdev tsvs`; null when there are none (no table at all). */
export function compileDr(model: DrModel): DrRuleset | null {
  if (!model.services.length) return null;
  const out: DrRuleset = {
    counters: [],
    sets: [],
    maps: [
      { name: 'services4', type: ['ipv4_addr', 'inet_proto', 'inet_service'], elems: [] },
      { name: 'services6', type: ['ipv6_addr', 'inet_proto', 'inet_service'], elems: [] },
    ],
    chains: [],
  };
  const ingress = new Map<string, DrChain>();
  const portZero: Stmt[][] = [];
  for (const svc of model.services) {
    if (!ingress.has(svc.dev)) ingress.set(svc.dev, { name: ingressChain(svc.dev), dev: svc.dev, rules: [] });
    const f = fam(svc.af);
    const key = flowKey(svc.af);
    const chain: DrChain = { name: svcChain(svc.id), rules: [] };
    const known: Stmt[][] = [];
    const persist: Stmt[][] = [];
    for (const d of svc.dests) {
      out.counters.push(connsCounter(d.mark), inCounter(d.mark));
      const flowTimeout = svc.protocol === 'udp' ? model.timeouts.udp : model.timeouts.tcp;
      out.sets.push({ name: flowSet(d.mark), type: [addrType(svc.af), 'inet_service', 'inet_service'], timeout: flowTimeout });
      if (svc.protocol === 'tcp')
        out.sets.push({ name: finSet(d.mark), type: [addrType(svc.af), 'inet_service', 'inet_service'], timeout: model.timeouts.tcpfin });
      known.push([match(key, `@${flowSet(d.mark)}`), goto(fwdChain(d.mark))]);
      const rs: Stmt[] = [{ counter: connsCounter(d.mark) }];
      if (svc.persistent > 0) {
        const set = persistSet(d.mark, svc);
        out.sets.push({ name: set, type: addrType(svc.af), timeout: svc.persistent });
        rs.push(update(set, maskedSaddr(svc)));
        persist.push([match(maskedSaddr(svc), `@${set}`), goto(rsChain(d.mark))]);
      }
      rs.push(goto(fwdChain(d.mark)));
      out.chains.push({ name: rsChain(d.mark), rules: [rs] });
      const send: Stmt = { fwd: { dev: d.dev, family: f, addr: d.addr } };
      const fwdRules: Stmt[][] = [[{ counter: inCounter(d.mark) }]];
      if (svc.protocol === 'tcp') fwdRules.push(...tcpFlowRules(svc.af, d, model.timeouts, send));
      else fwdRules.push([update(flowSet(d.mark), key, model.timeouts.udp), send]);
      out.chains.push({ name: fwdChain(d.mark), rules: fwdRules });
    }
    chain.rules.push(...known);
    // IPVS schedules a TCP connection only on its SYN (sloppy_tcp=0); anything else that
    // is not a known flow goes on to the director's own stack, which answers with a reset.
    if (svc.protocol === 'tcp')
      chain.rules.push([match({ '&': [payload('tcp', 'flags'), ['syn', 'ack']] }, 'syn', '!='), { return: null }]);
    chain.rules.push(...persist);
    // schedulerRule targets rs<M>: the same chain names as NAT, in this table.
    const sched = schedulerRule(svc as unknown as NftService);
    if (sched) chain.rules.push(sched);
    // No usable server: as ip_vs_leave, ICMP port unreachable.
    chain.rules.push([{ reject: { type: 'icmpx', expr: 'port-unreachable' } }]);
    out.chains.push(chain);
    if (svc.port === 0) {
      portZero.push([match(payload(f, 'daddr'), svc.addr), match({ meta: { key: 'l4proto' } }, svc.protocol), goto(chain.name)]);
    } else {
      out.maps[svc.af === 6 ? 1 : 0]!.elems.push([{ concat: [svc.addr, svc.protocol, svc.port] }, goto(chain.name)]);
    }
  }
  for (const c of [...ingress.values()].sort((a, b) => a.name.localeCompare(b.name))) {
    if (out.maps[0]!.elems.length)
      c.rules.push([
        { vmap: { key: { concat: [payload('ip', 'daddr'), { meta: { key: 'l4proto' } }, payload('th', 'dport')] }, data: '@services4' } },
      ]);
    if (out.maps[1]!.elems.length)
      c.rules.push([
        { vmap: { key: { concat: [payload('ip6', 'daddr'), { meta: { key: 'l4proto' } }, payload('th', 'dport')] }, data: '@services6' } },
      ]);
    c.rules.push(...portZero);
    out.chains.unshift(c);
  }
  return out;
}

const obj = (extra: Record<string, unknown>) => ({ family: 'netdev', table: TABLE, ...extra });

/**
 * The nft JSON commands that turn `prev` into `next` in `netdev tsvs` (null: no DR
 * services, no table; undefined: unknown, e.g. at start, so any old table is replaced).
 * As for NAT, counters and flow/persistence sets that stay are left alone (open flows
 * keep their server across changes); chains and maps are flushed and refilled.
 */
export function drTransaction(prev: DrRuleset | null | undefined, next: DrRuleset | null): unknown[] {
  const table = { table: { family: 'netdev', name: TABLE } };
  if (!next) return prev === null ? [] : [{ add: table }, { delete: table }];
  const cmds: unknown[] = [{ add: table }];
  const p = prev ?? null;
  if (!p) cmds.push({ delete: table }, { add: table });
  for (const c of next.counters) if (!p?.counters.includes(c)) cmds.push({ add: { counter: obj({ name: c }) } });
  for (const s of next.sets) {
    if (!p?.sets.some((x) => x.name === s.name))
      cmds.push({ add: { set: obj({ name: s.name, type: s.type, flags: ['timeout'], timeout: s.timeout }) } });
  }
  for (const m of next.maps)
    if (!p?.maps.some((x) => x.name === m.name)) cmds.push({ add: { map: obj({ name: m.name, type: m.type, map: 'verdict' }) } });
  const isNew = (c: DrChain) => !p?.chains.some((x) => x.name === c.name && x.dev === c.dev);
  // A base chain whose device changed is a new chain: the old one goes first.
  for (const c of p?.chains ?? []) {
    if (c.dev && next.chains.some((x) => x.name === c.name && x.dev !== c.dev)) cmds.push({ delete: { chain: obj({ name: c.name }) } });
  }
  for (const c of next.chains) {
    if (isNew(c)) {
      cmds.push({
        add: {
          chain: obj(c.dev ? { name: c.name, type: 'filter', hook: 'ingress', dev: c.dev, prio: 0, policy: 'accept' } : { name: c.name }),
        },
      });
    }
  }
  if (p) {
    for (const c of p.chains)
      if (!(c.dev && next.chains.some((x) => x.name === c.name && x.dev !== c.dev))) cmds.push({ flush: { chain: obj({ name: c.name }) } });
    for (const m of p.maps) if (m.elems.length) cmds.push({ flush: { map: obj({ name: m.name }) } });
  }
  for (const c of next.chains) for (const expr of c.rules) cmds.push({ add: { rule: obj({ chain: c.name, expr }) } });
  for (const m of next.maps) if (m.elems.length) cmds.push({ add: { element: obj({ name: m.name, elem: m.elems }) } });
  if (p) {
    const names = new Set(next.chains.map((c) => c.name));
    for (const c of p.chains) if (!names.has(c.name)) cmds.push({ delete: { chain: obj({ name: c.name }) } });
    for (const s of p.sets) if (!next.sets.some((x) => x.name === s.name)) cmds.push({ delete: { set: obj({ name: s.name }) } });
    for (const c of p.counters) if (!next.counters.includes(c)) cmds.push({ delete: { counter: obj({ name: c }) } });
  }
  return cmds;
}

/** One flow of a DR real server as read back from its sets (`nft -j list table netdev tsvs`). */
export interface DrFlow {
  mark: number;
  caddr: string;
  cport: number;
  vport: number;
  /** Seconds left. */
  expires: number;
  /** The IPVS state name the flow is in (TCP), or '' (UDP). */
  state: string;
}

/**
 * Reads the flows and counters out of `nft -j list table netdev tsvs`. A flow's state
 * comes from which set holds it and the timeout it was created with (nft keeps an
 * element's first timeout and moves only its expiry on `update`): in fin<M> with the
 * CLOSE timeout → CLOSE, otherwise in fin<M> → FIN_WAIT; created by a SYN and not yet
 * refreshed past SYN_RECV's timeout → SYN_RECV; else ESTABLISHED.
 */
export function parseDrTable(
  json: string,
  tcpMarks: ReadonlySet<number>,
): { flows: DrFlow[]; counters: Map<string, { packets: number; bytes: number }> } {
  const doc = JSON.parse(json) as { nftables?: Array<Record<string, unknown>> };
  const counters = new Map<string, { packets: number; bytes: number }>();
  const flows = new Map<string, DrFlow>();
  const fin = new Map<string, number>();
  for (const o of doc.nftables ?? []) {
    const c = o.counter as { name: string; packets: number; bytes: number } | undefined;
    if (c) counters.set(c.name, { packets: c.packets, bytes: c.bytes });
    const s = o.set as { name: string; elem?: unknown[] } | undefined;
    if (!s) continue;
    const m = /^(flows|fin)(\d+)$/.exec(s.name);
    if (!m) continue;
    const mark = Number(m[2]);
    for (const raw of s.elem ?? []) {
      const el = (raw as { elem?: { val?: unknown; timeout?: number; expires?: number } }).elem;
      const val = (el?.val ?? raw) as { concat?: unknown[] };
      const parts = val.concat;
      if (!Array.isArray(parts) || parts.length !== 3) continue;
      const [caddr, cport, vport] = parts as [string, number, number];
      const id = `${mark}|${caddr}|${cport}|${vport}`;
      if (m[1] === 'fin') {
        fin.set(id, el?.timeout ?? 0);
        continue;
      }
      const created = el?.timeout ?? 0;
      const expires = el?.expires ?? created;
      const tcp = tcpMarks.has(mark);
      const state = !tcp ? '' : created === SYN_RECV_TIMEOUT && expires <= SYN_RECV_TIMEOUT ? 'SYN_RECV' : 'ESTABLISHED';
      flows.set(id, { mark, caddr, cport, vport, expires, state });
    }
  }
  for (const [id, t] of fin) {
    const f = flows.get(id);
    if (f) f.state = t === CLOSE_TIMEOUT ? 'CLOSE' : 'FIN_WAIT';
  }
  return { flows: [...flows.values()], counters };
}
