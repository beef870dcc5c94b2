/**
 * The nftables data plane: kernel LVS-NAT. The table is compiled into tsvs's own nftables
 * tables (ruleset.ts) and applied as one atomic transaction per batch (nft.ts), before
 * the batch takes effect in the core table, so that the reply to tsvsadm means "in the
 * kernel now". Packets never pass through Node: the VIP is DNATed to the chosen real
 * server on a connection's first packet and conntrack carries the rest, replies included.
 *
 * Once a second the plane reads the kernel back into the core table: nft counters become
 * the conns/packets/bytes counters, and conntrack entries (marked with their real
 * server) become the connection table, with active/inactive counts, the OVERLOAD flag of
 * -x/-y thresholds, and `-Lnc`. A threshold crossing recompiles the rules.
 *
 * Schedulers: rr, wrr, sh, dh and mh run in the kernel. The connection-count schedulers
 * (lc, wlc, sed, nq, lblc, lblcr, fo, ovf, twos) take the first-packet path: the first
 * packet of each new flow to such a service goes through NFQUEUE to a reader thread
 * (nfqueue.ts), the core table schedules it here (`decide`, so the scheduler sees the
 * live counts), and the verdict's mark picks the real server's chain in the kernel; a
 * numgen rule is the fallback when no answer comes. See docs/nftables.md.
 */
import { TsvsError } from '../../core/errors.js';
import type { Conn } from '../../core/conn.js';
import { destId, serviceId, serviceLabel, type RealServer, type VirtualService } from '../../core/service.js';
import type { IpvsTable, TableEvent } from '../../core/table.js';
import { tcpStateByName } from '../../core/tcpstate.js';
import type { FwdMethod, Op, Stats } from '../../core/types.js';
import { getScheduler } from '../../schedulers/index.js';
import type { SchedDest, Scheduler } from '../../schedulers/scheduler.js';
import { wrrRestore, wrrSnapshot, type WrrState } from '../../schedulers/wrr.js';
import type { DataPlane } from '../dataplane.js';
import type { LogFn } from '../index.js';
import { CHUNK, conntrackAvailable, conntrackDeleteMark, conntrackDump, conntrackEvents, yieldLoop, type CtEntry, type CtEvent } from './conntrack.js';
import { makeRunner, type Runner } from './exec.js';
import { nftApply, nftCounters, nftPersistElements, nftVersion, type CounterValue, type PersistElement } from './nft.js';
import { compile, connsCounter, inCounter, KERNEL_SCHEDULERS, outCounter, parseSnat, persistSet, removal, transaction, type NftDest, type NftModel, type NftService, type Ruleset } from './ruleset.js';
import { DIRECTOR_SYSCTLS, readSysctl, writeSysctl } from './sysctl.js';
import type { QueuedPacket } from './netlink.js';
import { checkNfqueueRule, installNfqueueRule } from './netsock.js';
import { NfQueueReader } from './nfqueue.js';
import { NFQ_CHAIN, NO_DEST_MARK, nfqueueRuleNeeded, QUEUE_SCHEDULERS, TABLE } from './ruleset.js';
import { DrPlanner } from './dr-plane.js';

export interface NftablesOptions {
  log: LogFn;
  /** TSVS_NFT_SETUP: "sysctl" lets tsvsd set forwarding and rp_filter itself. */
  setup?: string;
  /** TSVS_NFT_SNAT: networks (comma-separated) whose outbound connections the director masquerades. */
  snat?: string;
  /** Read-back period in ms (default 1000). */
  pollMs?: number;
  /**
   * Run nft and conntrack in this network namespace (`ip netns exec`), for tests that
   * drive the plane in their own process while the director is a namespace of theirs.
   * tsvsd leaves it unset: the plane works in tsvsd's own namespace.
   */
  netns?: string;
  /** NFQUEUE number of the first-packet path (TSVS_NFT_QUEUE; default 4242). */
  queue?: number;
  /** How long a new flow's first packet waits for the scheduler before the kernel fallback takes it (default 200 ms). */
  queueTimeoutMs?: number;
}

/**
 * How long a new flow's first packet waits for the scheduler before it is accepted without
 * a mark (the kernel's round-robin fallback takes it). Far below TCP's first SYN
 * retransmission (1 s), and high enough that a loaded director does not miss it often.
 */
const QUEUE_TIMEOUT_MS = 200;
/** How long a connection scheduled through the queue may be missing from conntrack (not confirmed yet) before the read-back drops it. */
const QUEUED_GRACE_MS = 3000;
const connKey = (af: number, protocol: string, caddr: string, cport: number, vaddr: string, vport: number) => `${af}|${protocol}|${caddr}|${cport}|${vaddr}|${vport}`;

/** conntrack's TCP states as IPVS names them for a NAT connection. */
const CT_TO_IPVS: Record<string, string> = {
  SYN_SENT: 'SYN_RECV', // the client's SYN was forwarded: IPVS INPUT syn -> SYN_RECV
  SYN_SENT2: 'SYN_RECV',
  SYN_RECV: 'SYN_RECV',
  ESTABLISHED: 'ESTABLISHED',
  FIN_WAIT: 'FIN_WAIT',
  CLOSE_WAIT: 'CLOSE_WAIT',
  LAST_ACK: 'LAST_ACK',
  TIME_WAIT: 'TIME_WAIT',
  CLOSE: 'CLOSE',
  NONE: 'NONE',
};

const ZERO: Stats = { conns: 0, inpkts: 0, outpkts: 0, inbytes: 0, outbytes: 0 };

export class NftablesDataPlane implements DataPlane {
  readonly name = 'nftables';
  readonly methods: ReadonlySet<FwdMethod> = new Set<FwdMethod>(['masq', 'route', 'tunnel']);
  /** Direct routing (-g) in `netdev tsvs`, and the refusal of -i (dr-plane.ts). */
  private readonly dr: DrPlanner;
  private table: IpvsTable | null = null;
  private unsubscribe: (() => void) | null = null;
  /** What is in the kernel now. */
  private applied: Ruleset | null = null;
  private appliedJson = '';
  /** Serializes every nft transaction. */
  private queue: Promise<unknown> = Promise.resolve();
  private readonly svcIds = new Map<string, number>();
  private readonly marks = new Map<string, number>();
  private nextSvcId = 1;
  private timer: NodeJS.Timeout | null = null;
  /** Raw kernel counter values at the last -Z, per mark. */
  private readonly baseline = new Map<number, Stats>();
  private readonly lastRaw = new Map<number, Stats>();
  /** Counters of removed servers, kept in their service's totals (kernel svc stats are cumulative). */
  private readonly retired = new Map<string, Stats>();
  /** Mirrored conntrack entries by tuple. */
  private readonly mirrored = new Map<string, Conn>();
  /** Mirrored persistence entries. */
  private readonly templates = new Map<string, Conn>();
  private conntrackOk = false;
  private stopped = false;
  private pollRun: Promise<void> | null = null;
  private readonly run: Runner;

  private readonly snat: string[];
  /** The NFQUEUE reader of the first-packet path, started with the first queue-scheduled service. */
  private nfq: NfQueueReader | null = null;
  private readonly queueNo: number;
  /** Families whose nfq chain still lacks its NFQUEUE rule. */
  private readonly nfqPending = new Set<'ip' | 'ip6'>();
  /** Connections scheduled through the queue, by tuple, with when (conntrack shows them once confirmed). */
  private readonly queuedAt = new Map<string, number>();
  /**
   * Keys changed by a decision or a conntrack event since the read-back's dump was taken:
   * that (older) dump must neither drop them nor bring a destroyed one back.
   */
  private readonly touched = new Map<string, { at: number; destroyed: boolean }>();
  /** `conntrack -E`, followed while the first-packet path runs: closes reach the counts before the next read-back. */
  private events: { stop(): void } | null = null;

  constructor(private readonly opts: NftablesOptions) {
    this.run = makeRunner(opts.netns);
    this.queueNo = opts.queue ?? NftablesDataPlane.queueFromEnv(process.env.TSVS_NFT_QUEUE) ?? 4242;
    this.dr = new DrPlanner(this.run);
    try {
      this.snat = parseSnat(opts.snat ?? '');
    } catch (e) {
      throw dataplaneError((e as Error).message);
    }
  }

  // ------------------------------------------------------------------ lifecycle

  async start(table: IpvsTable): Promise<void> {
    await this.checkHost();
    this.table = table;
    this.conntrackOk = await conntrackAvailable(this.run);
    if (!this.conntrackOk) {
      this.opts.log('warn', 'conntrack (conntrack-tools) not found: connection listings and active/inactive counts stay empty; apt-get install conntrack');
    }
    await this.enqueue(() => this.applyModel(this.modelFromTable(), 'start'));
    this.unsubscribe = table.subscribe({
      change: (ev) => this.onChange(ev),
      commit: () => {
        // Normally a no-op: prepare() already put the batch into the kernel.
        void this.enqueue(() => this.applyModel(this.modelFromTable(), 'commit')).catch((e) =>
          this.opts.log('error', 'nftables: could not apply the table; the kernel may be behind the table until the next change', { err: (e as Error).message }),
        );
      },
    });
    const poll = this.opts.pollMs ?? 1000;
    // A round still running (a huge conntrack table) is not queued behind.
    this.timer = setInterval(() => {
      if (!this.pollRun) void this.poll();
    }, poll);
    this.timer.unref();
    if (this.snat.length) this.opts.log('warn', `masquerading outbound connections from ${this.snat.join(', ')} because TSVS_NFT_SNAT is set`);
    this.opts.log('info', 'nftables data plane started: rules in tables ip tsvs and ip6 tsvs');
  }

  async prepare(ops: readonly Op[]): Promise<void> {
    for (const op of ops) {
      if (op.op === 'add-service' || op.op === 'edit-service') {
        const s = op.service;
        const label = serviceLabel(s);
        if (s.fwmark) throw notSupported(`${label}: fwmark services are not supported by the nftables data plane yet`);
        if (s.protocol === 'sctp') throw notSupported(`${label}: SCTP is not supported by the nftables data plane`);
        if (!KERNEL_SCHEDULERS.has(s.scheduler) && !QUEUE_SCHEDULERS.has(s.scheduler)) {
          throw notSupported(`${label}: scheduler ${s.scheduler} is not supported by the nftables data plane (it runs ${[...KERNEL_SCHEDULERS, ...QUEUE_SCHEDULERS].join(', ')})`);
        }
        if (s.ops) throw notSupported(`${label}: one-packet scheduling (-o) is not supported by the nftables data plane: conntrack keeps one entry (one NAT binding) per UDP flow, so its datagrams cannot go to different servers`);
        if (s.pe) throw notSupported(`${label}: persistence engine ${s.pe} is not supported by the nftables data plane`);
      }
    }
    this.dr.checkOps(ops);
    const model = this.simulate(ops);
    await this.enqueue(() => this.applyModel(model, 'batch'));
  }

  abort(_ops: readonly Op[]): void {
    // The table did not change: put its current contents back.
    void this.enqueue(() => this.applyModel(this.modelFromTable(), 'abort')).catch((e) =>
      this.opts.log('error', 'nftables: could not restore the rules after an aborted batch', { err: (e as Error).message }),
    );
  }

  async stop(_drainMs: number): Promise<void> {
    // Kernel NAT needs no draining: conntrack keeps carrying open connections after the
    // rules are gone; new connections to the VIPs are no longer balanced.
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.unsubscribe?.();
    this.unsubscribe = null;
    this.events?.stop();
    this.events = null;
    await this.nfq?.stop();
    await this.enqueue(async () => {
      // An applyModel that was already running when stop() began may have (re)started these.
      await this.nfq?.stop();
      this.events?.stop();
      this.events = null;
      await nftApply(this.run, { nftables: [...removal().nftables, ...this.dr.removal()] }, 'remove tables');
      this.applied = null;
      this.appliedJson = '';
    });
    this.opts.log('info', 'nftables tables ip tsvs, ip6 tsvs and netdev tsvs removed');
  }

  // ------------------------------------------------------------------ checks

  private async checkHost(): Promise<void> {
    if (process.platform !== 'linux') throw dataplaneError('the nftables data plane needs Linux');
    if (process.getuid?.() !== 0) {
      throw dataplaneError('the nftables data plane needs root (CAP_NET_ADMIN) to program nftables; run tsvsd as root or use --dataplane userspace');
    }
    if (!(await nftVersion(this.run))) throw dataplaneError('the nftables data plane needs the nft command (apt-get install nftables)');
    const setup = (this.opts.setup ?? '').split(',').map((s) => s.trim());
    for (const s of DIRECTOR_SYSCTLS) {
      const v = await readSysctl(this.run, s.key);
      if (v === null || v === s.value) continue;
      if (setup.includes('sysctl')) {
        await writeSysctl(this.run, s.key, s.value);
        this.opts.log('warn', `set ${s.key}=${s.value} (was ${v}) because TSVS_NFT_SETUP=sysctl: ${s.why}`);
      } else if (s.required) {
        throw dataplaneError(
          `${s.key} is ${v}: ${s.why}, so forwarding must be on. Run sysctl -w ${s.key}=${s.value}, or start tsvsd with TSVS_NFT_SETUP=sysctl to let it set this`,
        );
      } else {
        this.opts.log('warn', `${s.key} is ${v}; a NAT director usually wants ${s.value} (${s.why}); TSVS_NFT_SETUP=sysctl sets it`);
      }
    }
  }

  // ------------------------------------------------------------------ model

  private svcIdOf(key: string): number {
    let id = this.svcIds.get(key);
    if (id === undefined) this.svcIds.set(key, (id = this.nextSvcId++));
    return id;
  }

  /**
   * A server's mark is a hash of its service and address, so that it is the same after a
   * restart of tsvsd: conntrack entries made before the restart are still counted and
   * listed under their server. A collision with another live server probes onward.
   */
  private markOf(svcKey: string, destKey: string): number {
    const k = `${svcKey}|${destKey}`;
    let m = this.marks.get(k);
    if (m !== undefined) return m;
    const taken = new Set(this.marks.values());
    m = markHash(k);
    while (taken.has(m)) m = m >= 0x7fffffff ? 1 : m + 1;
    this.marks.set(k, m);
    return m;
  }

  private modelFromTable(): NftModel {
    const t = this.table!;
    return {
      snat: this.snat,
      services: t.list().map((s) => ({
        id: this.svcIdOf(s.id),
        af: s.af,
        protocol: s.protocol as 'tcp' | 'udp',
        addr: s.addr,
        port: s.port,
        scheduler: s.scheduler,
        schedFlags: s.schedFlags,
        persistent: s.persistent,
        netmask: s.netmask,
        dests: s.dests.map((d) => ({ addr: d.addr, port: d.port, weight: d.weight, lastWeight: d.lastWeight, overloaded: d.overloaded, mark: this.markOf(s.id, d.id), fwd: d.fwd })),
        wrr: wrrSnapshot(s.sched),
      })),
    };
  }

  /** The model as it will be once `ops` are applied (ops are validated and canonical). */
  private simulate(ops: readonly Op[]): NftModel {
    const model = this.modelFromTable();
    const byKey = new Map<string, NftService>();
    this.table!.list().forEach((s, i) => byKey.set(s.id, model.services[i]!));
    // wrr keeps state across changes: replay the batch on a copy, hook by hook, as the core will.
    const replay = new Map<NftService, WrrReplay>();
    const wrrOf = (svc: NftService, fresh = false): WrrReplay | null => {
      if (svc.scheduler !== 'wrr') return null;
      let r = replay.get(svc);
      if (!r || fresh) {
        r = new WrrReplay(svc, fresh ? null : svc.wrr ?? null);
        replay.set(svc, r);
      }
      return r;
    };
    for (const op of ops) {
      switch (op.op) {
        case 'add-service': {
          const s = op.service;
          const id = serviceId(s);
          const svc: NftService = { id: this.svcIdOf(id), af: s.af, protocol: s.protocol as 'tcp' | 'udp', addr: s.addr, port: s.port, scheduler: s.scheduler, schedFlags: s.schedFlags, persistent: s.persistent, netmask: s.netmask, dests: [] };
          model.services.push(svc);
          byKey.set(id, svc);
          wrrOf(svc, true);
          break;
        }
        case 'edit-service': {
          const svc = byKey.get(serviceId(op.service))!;
          const rebind = svc.scheduler !== op.service.scheduler || svc.schedFlags !== op.service.schedFlags;
          Object.assign(svc, { scheduler: op.service.scheduler, schedFlags: op.service.schedFlags, persistent: op.service.persistent, netmask: op.service.netmask });
          if (rebind) wrrOf(svc, true);
          break;
        }
        case 'delete-service': {
          const svc = byKey.get(serviceId(op.service))!;
          model.services.splice(model.services.indexOf(svc), 1);
          byKey.delete(serviceId(op.service));
          break;
        }
        case 'flush':
          model.services.length = 0;
          byKey.clear();
          break;
        case 'add-server': {
          const sid = serviceId(op.service);
          const d = op.dest;
          const svc = byKey.get(sid)!;
          svc.dests.unshift({ addr: d.addr, port: d.port, weight: d.weight, lastWeight: d.weight, overloaded: false, mark: this.markOf(sid, destId(d)), fwd: d.fwd });
          wrrOf(svc)?.add(svc.dests[0]!);
          break;
        }
        case 'edit-server': {
          const sid = serviceId(op.service);
          const mark = this.markOf(sid, destId(op.dest));
          const d = byKey.get(sid)!.dests.find((x) => x.mark === mark)!;
          const live = this.table!.get(op.service)?.findDest(op.dest);
          if (op.dest.uThreshold === 0 || (live && op.dest.uThreshold > live.uThreshold)) d.overloaded = false;
          d.weight = op.dest.weight;
          d.fwd = op.dest.fwd;
          if (op.dest.weight !== 0) d.lastWeight = op.dest.weight;
          wrrOf(byKey.get(sid)!)?.update(d);
          break;
        }
        case 'delete-server': {
          const sid = serviceId(op.service);
          const mark = this.markOf(sid, destId(op.dest));
          const svc = byKey.get(sid)!;
          const idx = svc.dests.findIndex((x) => x.mark === mark);
          svc.dests.splice(idx, 1);
          wrrOf(svc)?.remove(idx);
          break;
        }
        case 'zero':
        case 'set-timeouts':
          break;
      }
    }
    for (const [svc, r] of replay) svc.wrr = r.state();
    return model;
  }

  private enqueue<T>(f: () => Promise<T>): Promise<T> {
    const run = this.queue.then(f);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async applyModel(model: NftModel, why: string): Promise<void> {
    // After stop(): a read-back round or a late commit must not put the tables back.
    if (this.stopped) return;
    const dr = await this.dr.plan(model, this.table);
    const next = compile(dr.nat);
    const json = JSON.stringify(next);
    const natSame = !!this.applied && json === this.appliedJson;
    // (Re)starts the reader when needed: also after its thread died, at the next read-back.
    if (model.services.some((s) => QUEUE_SCHEDULERS.has(s.scheduler))) await this.startQueue();
    if (natSame && !dr.commands.length) return this.queueRules(next);
    for (const f of nfqueueRuleNeeded(natSame ? next : this.applied, next)) this.nfqPending.add(f);
    await nftApply(this.run, { nftables: [...(natSame ? [] : transaction(this.applied, next).nftables), ...dr.commands] }, why);
    dr.commit();
    this.applied = next;
    this.appliedJson = json;
    this.opts.log('debug', `nftables ruleset applied (${why})`, { services: model.services.length });
    this.queueRules(next);
  }

  // ------------------------------------------------------------------ first-packet path

  /** Puts the NFQUEUE rule into each nfq chain that lacks it (netlink: nft's JSON has no xt targets). */
  private queueRules(next: Ruleset): void {
    for (const f of [...this.nfqPending]) {
      if (!next[f].chains.some((c) => c.name === NFQ_CHAIN)) {
        this.nfqPending.delete(f);
        continue;
      }
      try {
        const target = { queue: this.queueNum(), total: 1, bypass: true };
        installNfqueueRule(this.nsPath(), f, TABLE, NFQ_CHAIN, target);
        // The kernel's own copy, not nft's text (which shows xt targets only with iptables's libxt).
        checkNfqueueRule(this.nsPath(), f, TABLE, NFQ_CHAIN, target);
        this.nfqPending.delete(f);
      } catch (e) {
        throw dataplaneError(
          `could not add the NFQUEUE rule to ${f} ${TABLE} ${NFQ_CHAIN}: ${(e as Error).message}; the kernel needs nft_compat and xt_NFQUEUE (modprobe nft_compat xt_NFQUEUE); the change is not applied`,
        );
      }
    }
  }

  private nsPath(): string | undefined {
    return this.opts.netns ? `/run/netns/${this.opts.netns}` : undefined;
  }

  private queueNum(): number {
    return this.queueNo;
  }

  /** TSVS_NFT_QUEUE, checked: an NFQUEUE number. */
  static queueFromEnv(text: string | undefined): number | undefined {
    if (text === undefined || text === '') return undefined;
    if (!/^\d{1,5}$/.test(text) || Number(text) > 65535) throw dataplaneError(`TSVS_NFT_QUEUE: "${text}" is not a queue number (0-65535)`);
    return Number(text);
  }

  private async startQueue(): Promise<void> {
    if (this.nfq?.running) return;
    this.nfq = new NfQueueReader({
      queue: this.queueNum(),
      timeoutMs: this.opts.queueTimeoutMs ?? QUEUE_TIMEOUT_MS,
      ...(this.nsPath() ? { nsPath: this.nsPath()! } : {}),
      decide: (pkts) => this.decide(pkts),
      onStats: (s) => {
        this.opts.log('debug', 'nftables: first-packet path', { ...s, avgBatch: +(s.packets / (s.batches || 1)).toFixed(1), avgWaitUs: Math.round(s.waitUs / (s.batches || 1)) });
        if (s.late) this.opts.log('warn', `nftables: ${s.late} of ${s.packets} new connections were not scheduled within ${this.opts.queueTimeoutMs ?? QUEUE_TIMEOUT_MS} ms and went to the round-robin fallback`);
      },
      onError: (msg) => this.opts.log('error', `nftables: ${msg}`),
    });
    await this.nfq.start();
    if (this.conntrackOk && !this.events) {
      this.events = conntrackEvents(this.opts.netns, (e) => this.onConntrackEvent(e), (why) => this.opts.log('warn', `nftables: ${why}; restarting it`));
    }
    this.opts.log('info', `nftables: first-packet path on NFQUEUE ${this.queueNum()} (reader thread started)`);
  }

  /**
   * A conntrack state change or end of a connection the table holds, applied at once so
   * that lc/wlc/... see a closed connection as inactive before the next read-back (kernel
   * IPVS sees every packet). Entries the table does not hold yet wait for the read-back.
   */
  private onConntrackEvent(ev: CtEvent): void {
    const t = this.table;
    if (!t || this.stopped) return;
    const e = ev.entry;
    const key = connKey(e.af, e.protocol, e.caddr, e.cport, e.vaddr, e.vport);
    const c = this.mirrored.get(key);
    if (!c || c.dead || !c.dest || this.marks.get(`${c.svc.id}|${c.dest.id}`) !== e.mark) return;
    this.touched.set(key, { at: t.now(), destroyed: ev.kind === 'destroy' });
    if (ev.kind === 'destroy') {
      t.dropConn(c);
      this.mirrored.delete(key);
      this.queuedAt.delete(key);
      return;
    }
    if (e.protocol === 'tcp') t.conns.setTcpState(c, tcpStateByName(CT_TO_IPVS[e.state] ?? 'NONE'));
    c.timeoutMs = e.timeout * 1000;
    c.expires = t.now() + c.timeoutMs;
  }

  /**
   * The core scheduler's choice for each queued first packet: the real server's mark, 0
   * (not a queue-scheduled service: the kernel goes on as if not queued), or NO_DEST_MARK
   * (no server available: the service chain rejects). The connection enters the core
   * table now, so the next decision counts it; the read-back later binds it to its
   * conntrack entry by tuple.
   */
  private decide(pkts: readonly QueuedPacket[]): number[] {
    const t = this.table;
    if (!t || this.stopped) return [];
    return pkts.map((p) => {
      const svc = t.lookup(p.protocol, p.vaddr, p.vport);
      if (!svc || svc.af !== p.af || !QUEUE_SCHEDULERS.has(svc.scheduler)) return 0;
      // Kernel IPVS schedules TCP only on a SYN. A mid-stream segment conntrack picked up
      // (e.g. after its server was removed) goes on unmarked: the fallback's server answers
      // it with a reset, and no connection is counted for it.
      if (!p.syn) return 0;
      const key = connKey(p.af, p.protocol, p.caddr, p.cport, p.vaddr, p.vport);
      const old = this.mirrored.get(key);
      if (old && !old.dead) t.dropConn(old); // the tuple's previous connection (TIME_WAIT reuse)
      const c = t.schedule(svc, { protocol: p.protocol, caddr: p.caddr, cport: p.cport, vaddr: p.vaddr, vport: p.vport });
      if (!c || !c.dest) return NO_DEST_MARK;
      const mark = this.marks.get(`${svc.id}|${c.dest.id}`);
      if (mark === undefined) {
        t.dropConn(c);
        return 0;
      }
      if (p.protocol === 'tcp') t.tcpEvent(c, 'input', 'syn');
      else t.datagram(c);
      // Without conntrack nothing ever prunes these maps (the read-back does): the core's own expiry ends the connection.
      if (this.conntrackOk) {
        this.mirrored.set(key, c);
        this.queuedAt.set(key, t.now());
        this.touched.set(key, { at: t.now(), destroyed: false });
      }
      return mark;
    });
  }

  // ------------------------------------------------------------------ events

  private onChange(ev: TableEvent): void {
    if (ev.type === 'dest-deleted') {
      const key = `${ev.svc.id}|${ev.dest.id}`;
      const mark = this.marks.get(key);
      if (mark === undefined) return;
      this.marks.delete(key);
      // Keep the server's counted traffic in its service's totals.
      const raw = this.lastRaw.get(mark);
      if (raw) {
        const base = this.baseline.get(mark) ?? ZERO;
        const r = this.retired.get(ev.svc.id) ?? { ...ZERO };
        for (const k of Object.keys(ZERO) as (keyof Stats)[]) r[k] += raw[k] - base[k];
        this.retired.set(ev.svc.id, r);
      }
      this.lastRaw.delete(mark);
      this.baseline.delete(mark);
      // expire_nodest_conn: the removed server's connections end now (after the rules no
      // longer send anyone there), instead of hanging on a server that is gone.
      if (this.conntrackOk) {
        void this.enqueue(async () => {
          const n = await conntrackDeleteMark(this.run, mark);
          if (n) this.opts.log('info', `${ev.svc.label} real server ${ev.dest.id} removed: ${n} conntrack entries deleted`);
        });
      }
    } else if (ev.type === 'service-deleted') {
      this.retired.delete(ev.svc.id);
      this.svcIds.delete(ev.svc.id);
    } else if (ev.type === 'zeroed') {
      const svcs = ev.svc ? [ev.svc] : this.table!.list();
      for (const s of svcs) {
        this.retired.delete(s.id);
        for (const d of s.dests) {
          const mark = this.marks.get(`${s.id}|${d.id}`);
          if (mark !== undefined) this.baseline.set(mark, this.lastRaw.get(mark) ?? { ...ZERO });
        }
      }
    }
  }

  // ------------------------------------------------------------------ read-back

  /**
   * State sync (src/sync), backup side: puts persistence entries synced from the master
   * into the kernel's per-server sets, so that clients keep their server after a failover;
   * the read-back then lists them as templates.
   */
  async importPersistence(entries: ReadonlyArray<{ svc: VirtualService; dest: RealServer; addr: string; timeout: number }>): Promise<void> {
    const nftables: unknown[] = [];
    for (const e of entries) {
      const mark = this.marks.get(`${e.svc.id}|${e.dest.id}`);
      if (mark === undefined || !e.svc.persistent) continue;
      if (QUEUE_SCHEDULERS.has(e.svc.scheduler)) {
        // lc/wlc/...: templates live in the core table, where the first-packet path's decisions use them.
        const t = this.table!;
        const key = t.conns.templateKey(e.svc, e.addr);
        if (!t.conns.findTemplate(key)) t.conns.createTemplate(key, e.svc, e.addr, e.dest, t.now());
        continue;
      }
      const elem = [{ elem: { val: e.addr, timeout: Math.min(e.timeout, e.svc.persistent) } }];
      // A DR (-g) server's persistence set is in `netdev tsvs` (dr.ts), not in ip/ip6 tsvs.
      const family = e.dest.fwd === 'route' ? 'netdev' : e.svc.af === 6 ? 'ip6' : 'ip';
      nftables.push({ add: { element: { family, table: 'tsvs', name: persistSet(mark, e.svc), elem } } });
    }
    if (nftables.length) await this.enqueue(() => nftApply(this.run, { nftables }, 'synced persistence entries'));
  }

  refresh(): Promise<void> {
    return this.poll();
  }

  /**
   * One read-back round: counters, conntrack entries, persistence entries. Resolves when
   * the table reflects the kernel as of this call (a round already running is followed by
   * a new one), so tests and `view()` callers can wait for current numbers.
   */
  poll(): Promise<void> {
    const next = (this.pollRun ?? Promise.resolve()).then(() => this.pollOnce());
    this.pollRun = next.finally(() => {
      if (this.pollRun === tail) this.pollRun = null;
    });
    const tail = this.pollRun;
    return next;
  }

  private async pollOnce(): Promise<void> {
    if (this.stopped || !this.table) return;
    try {
      const counters = await nftCounters(this.run);
      for (const [k, v] of await this.dr.readBack(this.table, (s, d) => this.marks.get(`${s}|${d}`))) counters.set(k, v);
      if (this.dr.takeOverloadChange()) await this.enqueue(() => this.applyModel(this.modelFromTable(), 'threshold'));
      if (this.stopped) return;
      this.applyCounters(counters);
      const persist = await this.readPersistence();
      if (this.stopped) return;
      this.applyPersistence(persist);
      // Queue-scheduled connections change OVERLOAD between rounds, and a queue reader that
      // died is restarted by applying the model: recompile (a no-op when nothing changed).
      let recompile = this.table.list().some((s) => QUEUE_SCHEDULERS.has(s.scheduler));
      if (this.conntrackOk) {
        const snapshotAt = this.table.now();
        const entries = await conntrackDump(this.run);
        if (this.stopped) return;
        // true: a threshold was crossed, so the rules must skip (or take back) that server.
        if (await this.applyConntrack(entries, snapshotAt)) recompile = true;
      }
      if (recompile && !this.stopped) await this.enqueue(() => this.applyModel(this.modelFromTable(), 'threshold'));
    } catch (e) {
      this.opts.log('warn', 'nftables read-back failed', { err: (e as Error).message });
    }
  }

  /** The persistence sets' elements, with the service and server each belongs to. */
  private async readPersistence(): Promise<Array<PersistElement & { svc: VirtualService; dest: RealServer }>> {
    const owners = new Map<string, { svc: VirtualService; dest: RealServer; family: 'ip' | 'ip6' }>();
    for (const svc of this.table!.list()) {
      // Queue-scheduled services keep their templates in the core table (decide), not in sets.
      if (!svc.persistent || QUEUE_SCHEDULERS.has(svc.scheduler)) continue;
      for (const dest of svc.dests) {
        // A DR server's set lives in netdev tsvs and is not listed (docs/forwarding.md).
        if (dest.fwd === 'route') continue;
        const mark = this.marks.get(`${svc.id}|${dest.id}`);
        if (mark !== undefined) owners.set(persistSet(mark, svc), { svc, dest, family: svc.af === 6 ? 'ip6' : 'ip' });
      }
    }
    const out: Array<PersistElement & { svc: VirtualService; dest: RealServer }> = [];
    for (const family of ['ip', 'ip6'] as const) {
      const sets = [...owners].filter(([, o]) => o.family === family).map(([name]) => name);
      if (!sets.length) continue;
      for (const e of await nftPersistElements(this.run, family, sets)) {
        const o = owners.get(e.set);
        if (o) out.push({ ...e, svc: o.svc, dest: o.dest });
      }
    }
    return out;
  }

  /** Mirrors persistence entries as the core's templates (-Lnc, PersistConn). */
  private applyPersistence(elems: Array<PersistElement & { svc: VirtualService; dest: RealServer }>): void {
    const t = this.table!;
    const now = t.now();
    const seen = new Set<string>();
    for (const e of elems) {
      const key = `tpl|${e.svc.id}|${e.dest.id}|${e.addr}`;
      seen.add(key);
      let c = this.templates.get(key);
      if (c?.dead) c = undefined;
      if (!c) {
        c = t.conns.createTemplate(t.conns.templateKey(e.svc, e.addr), e.svc, e.addr, e.dest, now);
        this.templates.set(key, c);
      }
      c.expires = now + e.expires * 1000;
    }
    for (const [key, c] of this.templates) {
      if (!seen.has(key)) {
        if (!c.dead) t.dropConn(c);
        this.templates.delete(key);
      }
    }
  }

  private destsByMark(): Map<number, { svc: VirtualService; dest: RealServer }> {
    const out = new Map<number, { svc: VirtualService; dest: RealServer }>();
    for (const svc of this.table!.list()) {
      for (const dest of svc.dests) {
        const m = this.marks.get(`${svc.id}|${dest.id}`);
        if (m !== undefined) out.set(m, { svc, dest });
      }
    }
    return out;
  }

  private applyCounters(counters: Map<string, CounterValue>): void {
    const t = this.table!;
    const total = { ...ZERO };
    for (const svc of t.list()) {
      const fam = svc.af === 6 ? 'ip6' : 'ip';
      const sum = { ...(this.retired.get(svc.id) ?? ZERO) };
      for (const dest of svc.dests) {
        const mark = this.marks.get(`${svc.id}|${dest.id}`);
        if (mark === undefined) continue;
        const c = counters.get(`${fam}/${connsCounter(mark)}`);
        const i = counters.get(`${fam}/${inCounter(mark)}`);
        const o = counters.get(`${fam}/${outCounter(mark)}`);
        if (!c || !i || !o) continue;
        const raw: Stats = { conns: c.packets, inpkts: i.packets, inbytes: i.bytes, outpkts: o.packets, outbytes: o.bytes };
        this.lastRaw.set(mark, raw);
        const base = this.baseline.get(mark) ?? ZERO;
        const s: Stats = { conns: raw.conns - base.conns, inpkts: raw.inpkts - base.inpkts, inbytes: raw.inbytes - base.inbytes, outpkts: raw.outpkts - base.outpkts, outbytes: raw.outbytes - base.outbytes };
        dest.stats.set(s);
        for (const k of Object.keys(ZERO) as (keyof Stats)[]) sum[k] += s[k];
      }
      svc.stats.set(sum);
      for (const k of Object.keys(ZERO) as (keyof Stats)[]) total[k] += sum[k];
    }
    t.totals.set(total);
  }

  /** Mirrors conntrack into the core's connection table; returns true when an OVERLOAD flag changed. */
  private async applyConntrack(entries: CtEntry[], snapshotAt: number): Promise<boolean> {
    const t = this.table!;
    const now = t.now();
    const byMark = this.destsByMark();
    const before = new Map<RealServer, boolean>();
    for (const { dest } of byMark.values()) before.set(dest, dest.overloaded);
    const seen = new Set<string>();
    // In chunks: decisions of the first-packet path run in between (a large table takes a while).
    let n = 0;
    for (const e of entries) {
      if (++n % CHUNK === 0) await yieldLoop();
      const owner = byMark.get(e.mark);
      if (!owner || !owner.svc.dests.includes(owner.dest)) continue;
      const key = connKey(e.af, e.protocol, e.caddr, e.cport, e.vaddr, e.vport);
      seen.add(key);
      this.queuedAt.delete(key);
      const tch = this.touched.get(key);
      if (tch && tch.at >= snapshotAt) {
        // Newer than the dump: an event or a decision already said more (or that it is gone).
        if (tch.destroyed || this.mirrored.get(key)?.dead === false) continue;
      }
      let c = this.mirrored.get(key);
      if (c && (c.dead || c.dest !== owner.dest)) {
        if (!c.dead) t.dropConn(c);
        c = undefined;
      }
      if (!c) {
        c = t.conns.create(e.protocol, e.af, e.caddr, e.cport, e.vaddr, e.vport, e.daddr, e.dport, owner.svc, owner.dest, 0, now);
        this.mirrored.set(key, c);
      }
      if (e.protocol === 'tcp') t.conns.setTcpState(c, tcpStateByName(CT_TO_IPVS[e.state] ?? 'NONE'));
      // conntrack owns the lifetime; the core's own expiry only acts if the read-back stops.
      c.timeoutMs = e.timeout * 1000;
      c.expires = now + c.timeoutMs;
    }
    for (const [key, c] of this.mirrored) {
      if (++n % CHUNK === 0) await yieldLoop();
      const q = this.queuedAt.get(key);
      if (q !== undefined) {
        // Scheduled through the queue and not in conntrack yet: confirmed soon, or never (dropped).
        if (now - q < QUEUED_GRACE_MS && !c.dead) continue;
        this.queuedAt.delete(key);
      }
      if (!seen.has(key)) {
        if ((this.touched.get(key)?.at ?? -1) >= snapshotAt && !c.dead) continue; // made after the dump
        if (!c.dead) t.dropConn(c);
        this.mirrored.delete(key);
      }
    }
    for (const [key, tch] of this.touched) if (tch.at < snapshotAt) this.touched.delete(key);
    for (const [dest, was] of before) if (dest.overloaded !== was) return true;
    return false;
  }
}

/**
 * A wrr instance over stand-ins for a service's servers, moved through a batch's changes
 * with the same hooks in the same order as the core applies them, so that its final
 * position is the one the live scheduler will have.
 */
class WrrReplay {
  private readonly dests: Array<SchedDest & { weight: number; lastWeight: number; overloaded: boolean }>;
  private readonly sched: Scheduler<SchedDest>;

  constructor(svc: NftService, from: WrrState | null) {
    this.dests = svc.dests.map((d) => this.standIn(svc, d));
    this.sched = getScheduler('wrr')!.create({ af: svc.af, schedFlags: svc.schedFlags, dests: this.dests }, { randomU32: () => 0 });
    if (from) wrrRestore(this.sched, from);
    this.af = svc.af;
  }

  private readonly af: 4 | 6;

  private standIn(svc: { af: 4 | 6 }, d: NftDest) {
    return { af: svc.af, addr: d.addr, port: d.port, weight: d.weight, lastWeight: d.lastWeight, overloaded: d.overloaded, activeconns: 0, inactconns: 0, available: true };
  }

  add(d: NftDest): void {
    const x = this.standIn({ af: this.af }, d);
    this.dests.unshift(x);
    this.sched.addDest?.(x);
  }

  update(d: NftDest): void {
    const x = this.dests.find((y) => y.addr === d.addr && y.port === d.port);
    if (!x) return;
    x.weight = d.weight;
    x.lastWeight = d.lastWeight;
    x.overloaded = d.overloaded;
    this.sched.updDest?.(x);
  }

  remove(idx: number): void {
    const [x] = this.dests.splice(idx, 1);
    if (x) this.sched.delDest?.(x, idx);
  }

  state(): WrrState | null {
    return wrrSnapshot(this.sched);
  }
}

/** FNV-1a of the key, folded into 1..2^31-1 (0 means "no mark" to conntrack users). */
export function markHash(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h & 0x7fffffff || 1;
}

function notSupported(detail: string): TsvsError {
  return new TsvsError('NOT_SUPPORTED', detail, detail);
}

function dataplaneError(detail: string): TsvsError {
  return new TsvsError('DATAPLANE', detail, detail);
}
