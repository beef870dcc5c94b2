/**
 * The I/O side of direct routing (dr.ts) inside the nftables plane: it splits the route
 * (-g) services off the model, finds the interfaces (the one that holds each VIP, the one
 * each RIP is directly reachable on), produces the `netdev tsvs` commands that go into
 * the same atomic nft transaction as NAT's, and reads flows and counters back into the
 * core table (counters as `ip/conns<M>`, `ip/in<M>`, `ip/out<M>` = 0, as IPVS DR counts no
 * output; flows as connections for -Lnc and the active/inactive counts).
 *
 * Tunnel (-i) servers are refused here with the missing kernel module named (tunnel/support.ts).
 * The ingress device can be forced with TSVS_NFT_DR_DEV (e.g. when the VIP is held by VRRP
 * and may be absent when the rules are built).
 */
import { CONN_F_NOOUTPUT, type Conn } from '../../core/conn.js';
import { TsvsError } from '../../core/errors.js';
import type { Dest, VirtualService } from '../../core/service.js';
import type { IpvsTable } from '../../core/table.js';
import { DEFAULT_TIMEOUTS, tcpStateByName } from '../../core/tcpstate.js';
import type { Family, Op, TunType } from '../../core/types.js';
import { tunnelRefusal } from '../tunnel/support.js';
import { compileDr, drTransaction, parseDrTable, splitDr, type DrRuleset, type DrService } from './dr.js';
import type { Runner } from './exec.js';
import type { CounterValue } from './nft.js';
import { TABLE, type NftModel, type NftService } from './ruleset.js';

export interface DrPlan {
  /** What NAT compiles: the model without the DR services. */
  nat: NftModel;
  /** Commands for `netdev tsvs` (empty when nothing changed there). */
  commands: unknown[];
  /** Call once the transaction is in the kernel. */
  commit(): void;
}

export class DrPlanner {
  /** undefined: unknown (start), null: no netdev table. */
  private applied: DrRuleset | null | undefined = undefined;
  private appliedJson = '';
  private tcpMarks = new Set<number>();
  private readonly mirrored = new Map<string, Conn>();
  private overloadChanged = false;

  constructor(
    private readonly run: Runner,
    private readonly env: NodeJS.ProcessEnv = process.env,
  ) {}

  /** Refuses tunnel (-i) servers in a batch, naming the missing kernel module of their tunnel type. */
  checkOps(ops: readonly Op[]): void {
    for (const op of ops) {
      if ((op.op === 'add-server' || op.op === 'edit-server') && op.dest.fwd === 'tunnel') {
        throw tunnelError(`${labelOf(op.service)} real server ${op.dest.addr}`, op.dest.tunnel?.type ?? 'ipip', op.dest.af);
      }
    }
  }

  /** Splits and compiles; throws TsvsError NOT_SUPPORTED/DATAPLANE naming the object. */
  async plan(model: NftModel, table: IpvsTable | null): Promise<DrPlan> {
    for (const svc of model.services) {
      for (const d of svc.dests) {
        if (d.fwd !== 'tunnel') continue;
        // A tunnel server restored from the state file: its type is in the table.
        const live = table
          ?.list()
          .find((s) => s.af === svc.af && s.addr === svc.addr && s.port === svc.port && s.protocol === svc.protocol);
        const type = live?.dests.find((x) => x.addr === d.addr && x.port === d.port)?.tunnel?.type ?? 'ipip';
        throw tunnelError(`${labelOf(svc)} real server ${d.addr}`, type, svc.af);
      }
    }
    const timeouts = table?.timeouts() ?? { ...DEFAULT_TIMEOUTS };
    let split: ReturnType<typeof splitDr>;
    try {
      split = splitDr(model);
    } catch (e) {
      const msg = (e as Error).message;
      throw new TsvsError('NOT_SUPPORTED', msg, msg);
    }
    const services = split.dr.length ? await this.resolve(split.dr) : [];
    const next = compileDr({ services, timeouts });
    const json = JSON.stringify(next);
    const unchanged = this.applied !== undefined && json === this.appliedJson;
    const commands = unchanged ? [] : drTransaction(this.applied, next);
    return {
      nat: split.nat,
      commands,
      commit: () => {
        this.applied = next;
        this.appliedJson = json;
        this.tcpMarks = new Set(services.filter((s) => s.protocol === 'tcp').flatMap((s) => s.dests.map((d) => d.mark)));
      },
    };
  }

  /** Commands that remove `netdev tsvs` (clean exit). */
  removal(): unknown[] {
    this.applied = null;
    this.appliedJson = 'null';
    return drTransaction(undefined, null);
  }

  /** Adds the ingress and egress interfaces. */
  private async resolve(svcs: NftService[]): Promise<DrService[]> {
    const forced = this.env.TSVS_NFT_DR_DEV?.trim();
    const local = forced ? null : await this.localAddrs();
    const routes = new Map<string, string>();
    const out: DrService[] = [];
    for (const svc of svcs) {
      const label = labelOf(svc);
      let dev = forced;
      if (!dev) {
        dev = local!.get(svc.addr);
        if (!dev) {
          const msg = `${label}: direct routing (-g) hooks the interface that holds the VIP, and ${svc.addr} is not an address of this director; add it (ip addr add ${svc.addr}/32 dev IFACE) or set TSVS_NFT_DR_DEV=IFACE`;
          throw new TsvsError('DATAPLANE', msg, msg);
        }
      }
      const dests = [];
      for (const d of svc.dests) {
        let rdev = routes.get(d.addr);
        if (!rdev) {
          rdev = await this.directDev(label, d.addr);
          routes.set(d.addr, rdev);
        }
        dests.push({ ...d, dev: rdev });
      }
      out.push({ ...svc, dev, dests });
    }
    return out;
  }

  private async localAddrs(): Promise<Map<string, string>> {
    const r = await this.run('ip', ['-j', 'addr', 'show']);
    const out = new Map<string, string>();
    if (r.code !== 0)
      throw new TsvsError(
        'DATAPLANE',
        `ip -j addr show failed: ${r.stderr.trim()}`,
        `cannot list the director's addresses: ${r.stderr.trim()}`,
      );
    const links = JSON.parse(r.stdout) as Array<{ ifname: string; addr_info?: Array<{ local: string }> }>;
    for (const l of links) for (const a of l.addr_info ?? []) if (l.ifname !== 'lo') out.set(a.local, l.ifname);
    return out;
  }

  /** The interface on which `addr` is on-link; throws when it is routed via a gateway or local. */
  private async directDev(label: string, addr: string): Promise<string> {
    const r = await this.run('ip', ['-j', 'route', 'get', addr]);
    const route = r.code === 0 ? (JSON.parse(r.stdout) as Array<{ dev?: string; gateway?: string; type?: string }>)[0] : undefined;
    const bad = (why: string) => {
      const msg = `${label} real server ${addr}: direct routing (-g) needs the real server on a network directly connected to the director, but ${why}`;
      return new TsvsError('NOT_SUPPORTED', msg, msg);
    };
    if (!route?.dev) throw bad(`there is no route to it (${r.stderr.trim() || 'ip route get found nothing'})`);
    if (route.gateway) throw bad(`it is reached via the gateway ${route.gateway} (dev ${route.dev})`);
    if (route.dev === 'lo' || route.type === 'local') throw bad('it is an address of the director itself');
    return route.dev;
  }

  /**
   * Reads `netdev tsvs` back: returns its counters named as nftCounters names NAT's (so the
   * plane's counter code takes them unchanged) and mirrors its flows into the connection
   * table. `markOf` gives a live server's mark.
   */
  async readBack(table: IpvsTable, markOf: (svcId: string, destId: string) => number | undefined): Promise<Map<string, CounterValue>> {
    const out = new Map<string, CounterValue>();
    if (!this.applied) {
      this.syncConns(table, new Map(), []);
      return out;
    }
    const r = await this.run('nft', ['-j', 'list', 'table', 'netdev', TABLE]);
    if (r.code !== 0) return out;
    const { flows, counters } = parseDrTable(r.stdout, this.tcpMarks);
    const owners = new Map<number, { svc: VirtualService; dest: Dest }>();
    for (const svc of table.list()) {
      for (const dest of svc.dests) {
        if (dest.fwd !== 'route') continue;
        const m = markOf(svc.id, dest.id);
        if (m === undefined) continue;
        owners.set(m, { svc, dest });
        const fam = svc.af === 6 ? 'ip6' : 'ip';
        const c = counters.get(`conns${m}`);
        const i = counters.get(`in${m}`);
        if (!c || !i) continue;
        out.set(`${fam}/conns${m}`, c);
        out.set(`${fam}/in${m}`, i);
        out.set(`${fam}/out${m}`, { packets: 0, bytes: 0 });
      }
    }
    this.syncConns(table, owners, flows);
    return out;
  }

  /** Whether the last read-back moved an OVERLOAD flag (-x/-y), so the rules must be recompiled; resets it. */
  takeOverloadChange(): boolean {
    const v = this.overloadChanged;
    this.overloadChanged = false;
    return v;
  }

  private syncConns(
    table: IpvsTable,
    owners: Map<number, { svc: VirtualService; dest: Dest }>,
    flows: ReturnType<typeof parseDrTable>['flows'],
  ): void {
    const now = table.now();
    const before = new Map([...owners.values()].map((o) => [o.dest, o.dest.overloaded]));
    const seen = new Set<string>();
    for (const f of flows) {
      const o = owners.get(f.mark);
      if (!o) continue;
      const key = `${f.mark}|${f.caddr}|${f.cport}|${f.vport}`;
      seen.add(key);
      let c = this.mirrored.get(key);
      if (c?.dead) c = undefined;
      if (!c) {
        const protocol = o.svc.protocol === 'udp' ? 'udp' : 'tcp';
        c = table.conns.create(
          protocol,
          o.svc.af,
          f.caddr,
          f.cport,
          o.svc.addr,
          f.vport,
          o.dest.addr,
          o.dest.port || f.vport,
          o.svc,
          o.dest,
          CONN_F_NOOUTPUT,
          now,
        );
        this.mirrored.set(key, c);
      }
      if (f.state) table.conns.setTcpState(c, tcpStateByName(f.state));
      c.timeoutMs = f.expires * 1000;
      c.expires = now + c.timeoutMs;
    }
    for (const [key, c] of this.mirrored) {
      if (!seen.has(key)) {
        if (!c.dead) table.dropConn(c);
        this.mirrored.delete(key);
      }
    }
    for (const [dest, was] of before) if (dest.overloaded !== was) this.overloadChanged = true;
  }
}

function labelOf(svc: { protocol: string; af: 4 | 6; addr: string; port: number }): string {
  return `${svc.protocol.toUpperCase()} ${svc.af === 6 ? `[${svc.addr}]` : svc.addr}:${svc.port}`;
}

function tunnelError(label: string, type: TunType, af: Family): TsvsError {
  const why =
    tunnelRefusal(type, af) ??
    `the nftables data plane cannot encapsulate (nftables has no tunnel statement; tsvs would need a ${type} tunnel device per real server, not built yet)`;
  const msg = `${label}: tunnelling (-i) is not supported here: ${why}`;
  return new TsvsError('NOT_SUPPORTED', msg, msg);
}
