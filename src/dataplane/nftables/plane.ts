/**
 * The nftables data plane: kernel LVS-NAT. Each service is compiled into a small fragment
 * of tsvs's own tables (nat.ts); a batch of changes becomes one atomic nf_tables netlink
 * transaction holding only the fragments that changed (txn.ts, nftnl.ts), sent before the
 * batch takes effect in the core table, so that the reply to tsvsadm means "in the kernel
 * now". What the batch will change comes from the core itself (IpvsTable.preview). Packets
 * never pass through Node: the VIP is DNATed to the chosen real server on a connection's
 * first packet and conntrack carries the rest, replies included.
 *
 * The plane reads the kernel back into the core table: nft counters become the
 * conns/packets/bytes counters, and conntrack entries (marked with their real server)
 * become the connection table, with active/inactive counts, the OVERLOAD flag of -x/-y
 * thresholds, and `-Lnc`. A threshold crossing recompiles that service's fragment. The
 * read-back runs once a second, or less often when a round costs more than 5% of that
 * time (a big table); listings ask for a fresh round first.
 *
 * Schedulers: rr, wrr, sh, dh and mh run in the kernel. The connection-count schedulers
 * (lc, wlc, sed, nq, lblc, lblcr, fo, ovf, twos) take the first-packet path: the first
 * packet of each new flow to such a service goes through NFQUEUE to a reader thread
 * (nfqueue.ts), the core table schedules it here (`decide`, so the scheduler sees the
 * live counts), and the verdict's mark names the real server in the kernel; a numgen
 * rule is the fallback when no answer comes. Direct routing (-g) services are compiled
 * by dr.ts into `netdev tsvs`. See docs/nftables.md.
 */
import { TsvsError } from '../../core/errors.js';
import type { Conn } from '../../core/conn.js';
import { serviceId, serviceLabel, type RealServer, type VirtualService } from '../../core/service.js';
import type { IpvsTable, TableEvent } from '../../core/table.js';
import { tcpStateByName } from '../../core/tcpstate.js';
import type { FwdMethod, Op, Stats } from '../../core/types.js';
import { wrrSnapshot } from '../../schedulers/wrr.js';
import type { DataPlane, LogFn } from '../dataplane.js';
import { CHUNK, conntrackProblem, conntrackDeleteMark, conntrackDump, conntrackEvents, yieldLoop, type CtEntry, type CtEvent } from './conntrack.js';
import { makeRunner, type Runner } from './exec.js';
import { setReadLimits } from './nldump.js';
import { compileService, famOf, queueBaseCommands, queueRemoveCommands, type Cmd, type Fam, type Fragment } from './nat.js';
import { nftApply, nftCounters, nftPersistElements, nftVersion, type CounterValue, type PersistElement } from './nft.js';
import { NftSender } from './nftsend.js';
import { connsCounter, inCounter, KERNEL_SCHEDULERS, outCounter, parseSnat, persistSet, type NftService } from './ruleset.js';
import { DIRECTOR_SYSCTLS, readSysctl, writeSysctl } from './sysctl.js';
import type { QueuedPacket } from './netlink.js';
import { checkNfqueueRule, installNfqueueRule } from './netsock.js';
import { NfQueueReader } from './nfqueue.js';
import { NFQ_CHAIN, NO_DEST_MARK, QUEUE_SCHEDULERS, TABLE } from './ruleset.js';
import { DrPlanner } from './dr-plane.js';
import { loadHead, removal, TxnBuilder } from './txn.js';

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
/** Services per kernel transaction (see sendChunked). */
const CHUNK_SERVICES = 250;
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
  /** Sends the NAT fragments' batches over nf_tables netlink. */
  private readonly sender: NftSender;
  /** The NAT fragment of each service, as the kernel holds it, by service id. */
  private readonly frags = new Map<string, Fragment>();
  /** How many of those use the first-packet path, per family. */
  private readonly queuedByFam: Record<Fam, number> = { ip: 0, ip6: 0 };
  /** Families whose first-packet objects (queue chains, maps) are in the kernel. */
  private readonly queueFams = new Set<Fam>();
  /** Direct-routing services as last compiled into `netdev tsvs`, by service id. */
  private drModel = new Map<string, NftService>();
  /** Serializes every kernel transaction. */
  private queue: Promise<unknown> = Promise.resolve();
  private readonly svcIds = new Map<string, number>();
  private readonly marks = new Map<string, number>();
  /** The marks in use (a new one must not collide). */
  private readonly markTaken = new Set<number>();
  /** Each live real server by its mark. */
  private readonly owners = new Map<number, { svc: VirtualService; dest: RealServer }>();
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
    this.sender = new NftSender(this.nsPath());
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
    const ctProblem = await conntrackProblem(this.run);
    this.conntrackOk = !ctProblem;
    if (ctProblem) this.opts.log('warn', `conntrack cannot be read (${ctProblem}): connection listings and active/inactive counts stay empty`);
    setReadLimits({}, (m) => this.opts.log('warn', `nftables read-back: ${m}`));
    for (const svc of table.list()) for (const dest of svc.dests) this.owners.set(this.markOf(svc.id, dest.id), { svc, dest });
    await this.enqueue(() => this.loadAll('start'));
    this.startEvents();
    this.unsubscribe = table.subscribe({ change: (ev) => this.onChange(ev) });
    this.schedulePoll(this.opts.pollMs ?? 1000);
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
    // The core says what the batch changes: the touched services as they will be.
    const preview = this.table!.preview(ops);
    const next = new Map<string, NftService | null>();
    if (preview.flushed) for (const id of [...this.frags.keys(), ...this.drModel.keys()]) next.set(id, null);
    for (const [id, svc] of preview.services) next.set(id, svc ? this.nftService(svc) : null);
    await this.enqueue(() => this.applyChanges(next, 'batch'));
  }

  abort(ops: readonly Op[]): void {
    // The table did not change: put the touched services back as the table has them.
    const t = this.table!;
    const next = new Map<string, NftService | null>();
    for (const op of ops) {
      if (op.op === 'flush') {
        for (const id of [...this.frags.keys(), ...this.drModel.keys()]) next.set(id, null);
        for (const svc of t.list()) next.set(svc.id, this.nftService(svc));
      } else if ('service' in op && op.service) {
        const live = t.get(op.service);
        next.set(serviceId(op.service), live ? this.nftService(live) : null);
      }
    }
    void this.enqueue(() => this.applyChanges(next, 'abort')).catch((e) =>
      this.opts.log('error', 'nftables: could not restore the rules after an aborted batch', { err: (e as Error).message }),
    );
  }

  async stop(_drainMs: number): Promise<void> {
    // Kernel NAT needs no draining: conntrack keeps carrying open connections after the
    // rules are gone; new connections to the VIPs are no longer balanced.
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.unsubscribe?.();
    this.unsubscribe = null;
    this.events?.stop();
    this.events = null;
    await this.nfq?.stop();
    await this.enqueue(async () => {
      // A transaction that was already running when stop() began may have (re)started these.
      await this.nfq?.stop();
      this.events?.stop();
      this.events = null;
      this.sender.send(removal(), 'remove tables');
      this.sender.close();
      await nftApply(this.run, { nftables: this.dr.removal() }, 'remove table netdev tsvs');
      this.frags.clear();
      this.queueFams.clear();
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
    m = markHash(k);
    while (this.markTaken.has(m)) m = m >= 0x7fffffff ? 1 : m + 1;
    this.marks.set(k, m);
    this.markTaken.add(m);
    return m;
  }

  private forgetMark(key: string): number | undefined {
    const m = this.marks.get(key);
    if (m === undefined) return undefined;
    this.marks.delete(key);
    this.markTaken.delete(m);
    this.owners.delete(m);
    return m;
  }

  /** A service (live, or a preview's copy) as the compilers see it. */
  private nftService(s: VirtualService): NftService {
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
      dests: s.dests.map((d) => ({ addr: d.addr, port: d.port, weight: d.weight, lastWeight: d.lastWeight, overloaded: d.overloaded, mark: this.markOf(s.id, d.id), fwd: d.fwd })),
      wrr: wrrSnapshot(s.sched),
    };
  }

  private enqueue<T>(f: () => Promise<T>): Promise<T> {
    const run = this.queue.then(f);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Replaces whatever tables tsvs has in the kernel with the whole table: at start. */
  private async loadAll(why: string): Promise<void> {
    if (this.stopped) return;
    const nat: Array<[string, Fragment]> = [];
    const dr = new Map<string, NftService>();
    for (const svc of this.table!.list()) {
      const m = this.nftService(svc);
      if (isDr(m)) dr.set(svc.id, m);
      else nat.push([svc.id, compileService(m)]);
    }
    const plan = await this.dr.plan({ services: [...dr.values()] }, this.table);
    if (plan.commands.length) await nftApply(this.run, { nftables: plan.commands }, why);
    plan.commit();
    this.drModel = dr;
    const { head, queueFams } = loadHead(nat.map(([, f]) => f), this.snat);
    const sent = this.sendChunked(nat.map(([, f]) => [undefined, f]), head, [], why);
    this.frags.clear();
    this.queuedByFam.ip = this.queuedByFam.ip6 = 0;
    for (const [id, f] of nat) this.setFrag(id, f);
    this.queueFams.clear();
    this.queueRules(queueFams);
    if (this.queuedFrags) await this.startQueue();
    this.opts.log('info', `nftables: tables loaded (${why}): ${nat.length} NAT services, ${dr.size} DR services, ${sent.messages} netlink messages`);
  }

  private get queuedFrags(): number {
    return this.queuedByFam.ip + this.queuedByFam.ip6;
  }

  private setFrag(id: string, f: Fragment | undefined): void {
    const old = this.frags.get(id);
    if (old?.queued) this.queuedByFam[old.f]--;
    if (f) {
      this.frags.set(id, f);
      if (f.queued) this.queuedByFam[f.f]++;
    } else {
      this.frags.delete(id);
    }
  }

  /**
   * Puts the given services (null: gone) into the kernel as one transaction of their
   * fragments only; direct-routing services are recompiled in `netdev tsvs` when one of
   * them is among them. Throws TsvsError when the kernel refuses: nothing changed then.
   */
  private async applyChanges(next: ReadonlyMap<string, NftService | null>, why: string): Promise<void> {
    // After stop(): a read-back round or a late batch must not put the tables back.
    if (this.stopped || !next.size) return;
    const frags = new Map<string, Fragment | undefined>();
    const pairs: Array<[Fragment | undefined, Fragment | undefined]> = [];
    let drNext: Map<string, NftService> | null = null;
    for (const [id, svc] of next) {
      const toDr = !!svc && isDr(svc);
      if (toDr || this.drModel.has(id)) {
        drNext ??= new Map(this.drModel);
        if (toDr) drNext.set(id, svc!);
        else drNext.delete(id);
      }
      const prev = this.frags.get(id);
      const frag = svc && !toDr ? compileService(svc) : undefined;
      if (!prev && !frag) continue;
      pairs.push([prev, frag]);
      frags.set(id, frag);
    }
    // The first-packet objects come with a family's first queue-scheduled service and go with its last.
    const queued = { ...this.queuedByFam };
    for (const [id, f] of frags) {
      const old = this.frags.get(id);
      if (old?.queued) queued[old.f]--;
      if (f?.queued) queued[f.f]++;
    }
    const newQueueFams = new Set<Fam>();
    const goneQueueFams: Fam[] = [];
    for (const f of ['ip', 'ip6'] as const) {
      if (queued[f] && !this.queueFams.has(f)) newQueueFams.add(f);
      if (!queued[f] && this.queueFams.has(f)) goneQueueFams.push(f);
    }
    let drPlan: Awaited<ReturnType<DrPlanner['plan']>> | null = null;
    if (drNext) {
      drPlan = await this.dr.plan({ services: [...drNext.values()] }, this.table);
      if (drPlan.commands.length) await nftApply(this.run, { nftables: drPlan.commands }, why);
    }
    let sent = { messages: 0, bytes: 0 };
    try {
      const head = [...newQueueFams].flatMap((f) => queueBaseCommands(f));
      sent = this.sendChunked(pairs, head, goneQueueFams.flatMap((f) => queueRemoveCommands(f)), why, [...newQueueFams].flatMap((f) => queueRemoveCommands(f)));
    } catch (e) {
      if (drPlan?.commands.length) {
        // The DR half went in: take it back, so that the batch is all or nothing.
        drPlan.commit();
        const back = await this.dr.plan({ services: [...this.drModel.values()] }, this.table);
        await nftApply(this.run, { nftables: back.commands }, `${why}: undo`);
        back.commit();
      }
      throw e;
    }
    if (drPlan && drNext) {
      drPlan.commit();
      this.drModel = drNext;
    }
    for (const [id, f] of frags) this.setFrag(id, f);
    for (const f of goneQueueFams) this.queueFams.delete(f);
    this.queueRules(newQueueFams);
    if (this.queuedFrags) await this.startQueue();
    if (sent.messages) this.opts.log('debug', `nftables: ${why}: ${pairs.length} services changed, ${sent.messages} netlink messages, ${sent.bytes} bytes`);
  }

  /**
   * Sends fragment changes to the kernel, `head` first and `tail` last, in transactions of
   * at most CHUNK_SERVICES services. One transaction of 10,000 services takes the kernel
   * minutes (its cost grows faster than the transaction: measured here, 1,500 services in
   * 1.6 s and 3,000 in 13.8 s as one transaction, against 2.1 s for 3,000 in transactions of
   * 250). If the kernel refuses one, the ones already sent are taken back, so the batch is
   * still all or nothing as the table and its clients see it.
   */
  private sendChunked(pairs: ReadonlyArray<[Fragment | undefined, Fragment | undefined]>, head: Cmd[], tail: Cmd[], why: string, undoHead: Cmd[] = []): { messages: number; bytes: number } {
    const total = { messages: 0, bytes: 0 };
    const done: Array<[Fragment | undefined, Fragment | undefined]> = [];
    let headSent = false;
    try {
      for (let i = 0; i === 0 || i < pairs.length; i += CHUNK_SERVICES) {
        const txn = new TxnBuilder();
        if (i === 0) txn.prepend(head);
        const chunk = pairs.slice(i, i + CHUNK_SERVICES);
        for (const [prev, next] of chunk) txn.fragment(prev, next);
        if (i + CHUNK_SERVICES >= pairs.length) txn.append(tail);
        if (txn.empty) continue;
        const r = this.sender.send(txn.commands(), why);
        headSent = true;
        done.push(...chunk);
        total.messages += r.messages;
        total.bytes += r.bytes;
      }
    } catch (e) {
      if (done.length || headSent) {
        try {
          for (let i = 0; i < done.length; i += CHUNK_SERVICES) {
            const undo = new TxnBuilder();
            for (const [prev, next] of done.slice(i, i + CHUNK_SERVICES)) undo.fragment(next, prev);
            if (!undo.empty) this.sender.send(undo.commands(), `${why}: undo`);
          }
          if (headSent && undoHead.length) this.sender.send(undoHead, `${why}: undo`);
        } catch (u) {
          this.opts.log('error', `nftables: ${why}: could not take back the part of the batch already in the kernel; it is ahead of the table until the next change to those services`, { err: (u as Error).message });
        }
      }
      throw e;
    }
    return total;
  }

  /** Recompiles services whose servers' OVERLOAD flags changed. */
  private recompile(svcs: Iterable<VirtualService>, why: string): Promise<void> {
    const next = new Map<string, NftService | null>();
    for (const s of svcs) if (this.table?.get(s) === s) next.set(s.id, this.nftService(s));
    return this.enqueue(() => this.applyChanges(next, why));
  }

  // ------------------------------------------------------------------ first-packet path

  /** Puts the NFQUEUE rule into the nfq chain of each family that just got one (netlink: nft's JSON has no xt targets). */
  private queueRules(fams: Iterable<Fam>): void {
    for (const f of fams) {
      try {
        const target = { queue: this.queueNum(), total: 1, bypass: true };
        installNfqueueRule(this.nsPath(), f, TABLE, NFQ_CHAIN, target);
        // The kernel's own copy, not nft's text (which shows xt targets only with iptables's libxt).
        checkNfqueueRule(this.nsPath(), f, TABLE, NFQ_CHAIN, target);
        this.queueFams.add(f);
      } catch (e) {
        throw dataplaneError(
          `could not add the NFQUEUE rule to ${f} ${TABLE} ${NFQ_CHAIN}: ${(e as Error).message}; the kernel needs nft_compat and xt_NFQUEUE (modprobe nft_compat xt_NFQUEUE)`,
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
    this.startEvents();
    this.opts.log('info', `nftables: first-packet path on NFQUEUE ${this.queueNum()} (reader thread started)`);
  }

  /** Follows conntrack's events (marked entries only): the servers with traffic, and for the first-packet path the closes. */
  private startEvents(): void {
    if (!this.conntrackOk || this.events || this.stopped) return;
    this.events = conntrackEvents(this.opts.netns, (e) => this.onConntrackEvent(e), (why) => this.opts.log('warn', `nftables: ${why}; restarting it`), {
      // Events were lost: the next round reads every counter.
      onLost: () => (this.readAllCounters = true),
    });
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
    // Its counters moved (also for a connection that ends before the next dump sees it).
    if (this.owners.has(e.mark)) this.eventMarks.add(e.mark);
    const key = connKey(e.af, e.protocol, e.caddr, e.cport, e.vaddr, e.vport);
    const c = this.mirrored.get(key);
    if (!c || c.dead || !c.dest || this.marks.get(`${c.svc.id}|${c.dest.id}`) !== e.mark) return;
    this.touched.set(key, { at: t.now(), destroyed: ev.kind === 'destroy' });
    if (c.dest.uThreshold) this.eventThresholds.set(c.dest, { svc: c.svc });
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
    if (ev.type === 'dest-added') {
      this.owners.set(this.markOf(ev.svc.id, ev.dest.id), { svc: ev.svc, dest: ev.dest });
    } else if (ev.type === 'dest-deleted') {
      const mark = this.forgetMark(`${ev.svc.id}|${ev.dest.id}`);
      if (mark === undefined) return;
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
      // A batch that deleted and re-added the service compiled it under the same id: keep it.
      if (!this.frags.has(ev.svc.id) && !this.drModel.has(ev.svc.id)) this.svcIds.delete(ev.svc.id);
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
   * The next read-back round in `ms`, or later when the last round was long: a round may
   * take at most 5% of the time between rounds, so that a table of tens of thousands of
   * servers does not keep the director busy reading itself back.
   */
  private schedulePoll(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      const t0 = performance.now();
      void this.poll().finally(() => this.schedulePoll(Math.max(this.opts.pollMs ?? 1000, 20 * (performance.now() - t0))));
    }, ms);
    this.timer.unref();
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
      // Conntrack first: its entries say which servers carried traffic since the last round.
      const snapshotAt = this.table.now();
      const entries = this.conntrackOk ? await conntrackDump(this.run) : null;
      if (this.stopped) return;
      const counters = await nftCounters(this.run, entries ? this.activeCounters(entries) : undefined);
      if (this.drModel.size) {
        for (const [k, v] of await this.dr.readBack(this.table, (s, d) => this.marks.get(`${s}|${d}`))) counters.set(k, v);
        if (this.dr.takeOverloadChange()) await this.recompile(this.drServices(), 'threshold');
      }
      if (this.stopped) return;
      this.applyCounters(counters);
      const persist = await this.readPersistence();
      if (this.stopped) return;
      this.applyPersistence(persist);
      // A queue reader that died is restarted here.
      if (this.queuedFrags && !this.nfq?.running) await this.enqueue(() => this.startQueue());
      if (entries) {
        // Services where a threshold was crossed: their rules must skip (or take back) that server.
        const crossed = await this.applyConntrack(entries, snapshotAt);
        if (crossed.size && !this.stopped) await this.recompile(crossed, 'threshold');
      } else if (this.queuedFrags) {
        // Queue-scheduled connections change OVERLOAD between rounds.
        await this.recompile(this.overloadMoved(), 'threshold');
      }
    } catch (e) {
      this.opts.log('warn', 'nftables read-back failed', { err: (e as Error).message });
    }
  }

  /** Marks whose connections were in conntrack at the last round: their counters may still move. */
  private activeMarks = new Set<number>();
  /** Marks of conntrack events since the last round. */
  private eventMarks = new Set<number>();
  /** Read every counter at the next round (events were lost). */
  private readAllCounters = false;
  /** Servers with thresholds whose connections an event changed since the last round (their OVERLOAD flag may have moved). */
  private readonly eventThresholds = new Map<RealServer, { svc: VirtualService }>();

  /**
   * The named counters to read this round: those of the servers with conntrack entries now
   * or at the last round (a connection's last packets are counted before its entry goes),
   * or with conntrack events since (a connection refused at once leaves no entry to dump).
   * An idle server's counters do not move, so the cost follows the traffic, not the table:
   * the kernel's dump of named objects restarts its walk for every 32 KiB it returns, which
   * makes a full dump quadratic (11.7 s for 120,000 counters, bench/readback.ts).
   */
  private activeCounters(entries: readonly CtEntry[]): Record<Fam, string[]> | undefined {
    const now = new Set<number>();
    for (const e of entries) if (this.owners.has(e.mark)) now.add(e.mark);
    const events = this.eventMarks;
    this.eventMarks = new Set();
    if (this.readAllCounters || !this.events) {
      // No events to say which servers moved: every counter, by dump.
      this.readAllCounters = false;
      this.activeMarks = now;
      return undefined;
    }
    const names: Record<Fam, string[]> = { ip: [], ip6: [] };
    for (const mark of new Set([...now, ...this.activeMarks, ...events])) {
      const o = this.owners.get(mark);
      if (!o || o.dest.fwd === 'route') continue;
      names[famOf(o.svc.af)].push(connsCounter(mark), inCounter(mark), outCounter(mark));
    }
    this.activeMarks = now;
    return names;
  }

  private *drServices(): Iterable<VirtualService> {
    for (const { svc } of this.owners.values()) if (this.drModel.has(svc.id)) yield svc;
  }

  /** OVERLOAD flags as compiled into each fragment: services whose servers' flags differ now. */
  private overloadMoved(): Set<VirtualService> {
    const out = new Set<VirtualService>();
    for (const { svc, dest } of this.owners.values()) if (dest.uThreshold && !out.has(svc) && this.compiledOverloadDiffers(svc)) out.add(svc);
    return out;
  }

  /** Whether a NAT service's servers' OVERLOAD flags differ from what its fragment was compiled with. */
  private compiledOverloadDiffers(svc: VirtualService): boolean {
    const frag = this.frags.get(svc.id);
    if (!frag) return false;
    return svc.dests.some((d) => frag.overloaded.has(this.marks.get(`${svc.id}|${d.id}`)!) !== d.overloaded);
  }

  /** The persistence sets' elements, with the service and server each belongs to. */
  private async readPersistence(): Promise<Array<PersistElement & { svc: VirtualService; dest: RealServer }>> {
    const owners = new Map<string, { svc: VirtualService; dest: RealServer; family: 'ip' | 'ip6' }>();
    for (const [mark, { svc, dest }] of this.owners) {
      // Queue-scheduled services keep their templates in the core table (decide), not in
      // sets; a DR server's set lives in netdev tsvs and is not listed (docs/forwarding.md).
      if (!svc.persistent || QUEUE_SCHEDULERS.has(svc.scheduler) || dest.fwd === 'route') continue;
      owners.set(persistSet(mark, svc), { svc, dest, family: famOf(svc.af) });
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

  private applyCounters(counters: Map<string, CounterValue>): void {
    const t = this.table!;
    const total = { ...ZERO };
    for (const svc of t.list()) {
      const fam = famOf(svc.af);
      const sum = { ...(this.retired.get(svc.id) ?? ZERO) };
      for (const dest of svc.dests) {
        const mark = this.marks.get(`${svc.id}|${dest.id}`);
        if (mark === undefined) continue;
        const c = counters.get(`${fam}/${connsCounter(mark)}`);
        const i = counters.get(`${fam}/${inCounter(mark)}`);
        const o = counters.get(`${fam}/${outCounter(mark)}`);
        // Not read this round (idle): as at its last read.
        const raw: Stats | undefined = c && i && o ? { conns: c.packets, inpkts: i.packets, inbytes: i.bytes, outpkts: o.packets, outbytes: o.bytes } : this.lastRaw.get(mark);
        if (!raw) continue;
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

  /** Mirrors conntrack into the core's connection table; returns the services where an OVERLOAD flag changed. */
  private async applyConntrack(entries: CtEntry[], snapshotAt: number): Promise<Set<VirtualService>> {
    const t = this.table!;
    const now = t.now();
    const byMark = this.owners;
    // The servers with thresholds whose connections this round (or an event since) changed.
    const before = new Map<RealServer, { svc: VirtualService }>(this.eventThresholds);
    this.eventThresholds.clear();
    const touch = (svc: VirtualService, dest: RealServer | null) => {
      if (dest?.uThreshold && !before.has(dest)) before.set(dest, { svc });
    };
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
        if (!c.dead) {
          touch(c.svc, c.dest);
          t.dropConn(c);
        }
        c = undefined;
      }
      touch(owner.svc, owner.dest);
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
        if (!c.dead) {
          touch(c.svc, c.dest);
          t.dropConn(c);
        }
        this.mirrored.delete(key);
      }
    }
    for (const [key, tch] of this.touched) if (tch.at < snapshotAt) this.touched.delete(key);
    const crossed = new Set<VirtualService>();
    for (const { svc } of before.values()) if (this.compiledOverloadDiffers(svc)) crossed.add(svc);
    return crossed;
  }
}

/** A direct-routing service: compiled by dr.ts into `netdev tsvs` (splitDr refuses a service that mixes methods). */
const isDr = (svc: NftService) => svc.dests.some((d) => d.fwd === 'route');

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
