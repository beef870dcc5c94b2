/**
 * The nftables data plane: kernel LVS-NAT. Each service is compiled into a small fragment
 * of tsvs's own tables (nat.ts); a batch of changes becomes one atomic nf_tables netlink
 * transaction holding only the fragments that changed (txn.ts, nftnl.ts), sent before the
 * batch takes effect in the core table, so that the reply to tsvsadm means "in the kernel
 * now". What the batch will change comes from the core itself (IpvsTable.preview). Packets
 * never pass through Node: the VIP is DNATed to the chosen real server on a connection's
 * first packet and conntrack carries the rest, replies included.
 *
 * This file is the plane itself: checks, start and stop, and the kernel transactions. Its
 * parts: model.ts (what the kernel holds per service, and the servers' marks),
 * readback.ts (counters, conntrack and persistence read back into the core table; a
 * threshold crossing recompiles that service's fragment) and first-packet.ts.
 *
 * Schedulers: rr, wrr, sh, dh and mh run in the kernel. The connection-count schedulers
 * (lc, wlc, sed, nq, lblc, lblcr, fo, ovf, twos) take the first-packet path
 * (first-packet.ts): the first packet of each new flow to such a service goes through
 * NFQUEUE to the core table's scheduler. Direct routing (-g) services are compiled by
 * dr.ts into `netdev tsvs`. See docs/nftables.md.
 */
import type { LogFn } from '../../core/log.js';
import { TsvsError } from '../../core/errors.js';
import { serviceId, serviceLabel, type Dest, type VirtualService } from '../../core/service.js';
import type { IpvsTable, TableEvent } from '../../core/table.js';
import type { FwdMethod, Op } from '../../core/types.js';
import type { DataPlane } from '../dataplane.js';
import { conntrackDeleteMark, conntrackProblem } from './conntrack.js';
import { DrPlanner } from './dr-plane.js';
import { makeRunner, type Runner } from './exec.js';
import { FirstPacketPath, QUEUE_TIMEOUT_MS, queueFromEnv } from './first-packet.js';
import { isDr, NftModel } from './model.js';
import { compileService, queueBaseCommands, queueRemoveCommands, type Cmd, type Fam, type Fragment } from './nat.js';
import { nftApply, nftVersion } from './nft.js';
import { dataplaneError, NftSender } from './nftsend.js';
import { setReadLimits } from './nldump.js';
import { ReadBack } from './readback.js';
import { KERNEL_SCHEDULERS, parseSnat, persistSet, QUEUE_SCHEDULERS, type NftService } from './ruleset.js';
import { DIRECTOR_SYSCTLS, readSysctl, writeSysctl } from './sysctl.js';
import { loadHead, removal, TxnBuilder } from './txn.js';
import { NftLimitCounters } from './limits.js';

/** How the nftables plane is set up (tsvsd fills these from its TSVS_NFT_* variables). */
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
  /** Connection limits, compiled as `ct count` rules (0: none): tsvsd --max-conns, --max-conns-per-service, --max-conns-per-client. */
  limits?: { maxConns: number; perService: number; perClient: number };
}

/** Services per kernel transaction (see sendChunked). */
const CHUNK_SERVICES = 250;

/** Kernel LVS-NAT and direct routing through nftables (`tsvsd --dataplane nftables`). */
export class NftablesDataPlane implements DataPlane {
  readonly name = 'nftables';
  readonly methods: ReadonlySet<FwdMethod> = new Set<FwdMethod>(['masq', 'route', 'tunnel']);
  /** Direct routing (-g) in `netdev tsvs`, and the refusal of -i (dr-plane.ts). */
  private readonly dr: DrPlanner;
  private table: IpvsTable | null = null;
  private unsubscribe: (() => void) | null = null;
  /** Sends the NAT fragments' batches over nf_tables netlink. */
  private readonly sender: NftSender;
  /** What the kernel holds per service. */
  private readonly model = new NftModel();
  /** Counters, conntrack and persistence read back into the table. */
  private readonly readback: ReadBack;
  /** The NFQUEUE path of the connection-count schedulers. */
  private readonly firstPacket: FirstPacketPath;
  /** Serializes every kernel transaction. */
  private queue: Promise<unknown> = Promise.resolve();
  private stopped = false;
  private readonly run: Runner;
  private readonly snat: string[];
  /** What the connection limits dropped, read back from their counters. */
  private readonly limitCounters: NftLimitCounters;

  constructor(private readonly opts: NftablesOptions) {
    this.run = makeRunner(opts.netns);
    if (opts.limits) this.model.limits = { ...opts.limits };
    this.limitCounters = new NftLimitCounters(this.run, this.model, opts.log);
    const queueNo = opts.queue ?? queueFromEnv(process.env.TSVS_NFT_QUEUE) ?? 4242;
    this.dr = new DrPlanner(this.run);
    const nsPath = opts.netns ? `/run/netns/${opts.netns}` : undefined;
    this.sender = new NftSender(nsPath);
    try {
      this.snat = parseSnat(opts.snat ?? '');
    } catch (e) {
      throw dataplaneError((e as Error).message);
    }
    const table = () => this.table;
    this.readback = new ReadBack({
      run: this.run,
      log: opts.log,
      netns: opts.netns,
      model: this.model,
      dr: this.dr,
      pollMs: opts.pollMs ?? 1000,
      table,
      recompile: (svcs, why) => this.recompile(svcs, why),
      // A queue reader that died is restarted by the read-back.
      reviveQueue: async () => {
        if (this.model.queuedFrags && !this.firstPacket.running) await this.enqueue(() => this.firstPacket.start());
      },
    });
    this.firstPacket = new FirstPacketPath({
      log: opts.log,
      model: this.model,
      readback: this.readback,
      table,
      nsPath,
      queue: queueNo,
      timeoutMs: opts.queueTimeoutMs ?? QUEUE_TIMEOUT_MS,
      onStarted: () => this.readback.startEvents(),
    });
  }

  // ------------------------------------------------------------------ lifecycle

  async start(table: IpvsTable): Promise<void> {
    await this.checkHost();
    this.table = table;
    const ctProblem = await conntrackProblem(this.run);
    this.readback.conntrackOk = !ctProblem;
    if (ctProblem)
      this.opts.log('warn', `conntrack cannot be read (${ctProblem}): connection listings and active/inactive counts stay empty`);
    setReadLimits({}, (m) => this.opts.log('warn', `nftables read-back: ${m}`));
    for (const svc of table.list()) for (const dest of svc.dests) this.model.owners.set(this.model.markOf(svc.id, dest.id), { svc, dest });
    await this.enqueue(() => this.loadAll('start'));
    this.readback.startEvents();
    this.unsubscribe = table.subscribe({ change: (ev) => this.onChange(ev) });
    this.readback.schedulePoll(this.opts.pollMs ?? 1000);
    this.limitCounters.start(() => this.table?.list() ?? [], this.opts.pollMs ?? 1000);
    if (this.snat.length)
      this.opts.log('warn', `masquerading outbound connections from ${this.snat.join(', ')} because TSVS_NFT_SNAT is set`);
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
          throw notSupported(
            `${label}: scheduler ${s.scheduler} is not supported by the nftables data plane (it runs ${[...KERNEL_SCHEDULERS, ...QUEUE_SCHEDULERS].join(', ')})`,
          );
        }
        if (s.ops)
          throw notSupported(
            `${label}: one-packet scheduling (-o) is not supported by the nftables data plane: conntrack keeps one entry (one NAT binding) per UDP flow, so its datagrams cannot go to different servers`,
          );
        if (s.pe) throw notSupported(`${label}: persistence engine ${s.pe} is not supported by the nftables data plane`);
      }
    }
    this.dr.checkOps(ops);
    // The core says what the batch changes: the touched services as they will be.
    const preview = this.table!.preview(ops);
    const next = new Map<string, NftService | null>();
    if (preview.flushed) for (const id of [...this.model.frags.keys(), ...this.model.drModel.keys()]) next.set(id, null);
    for (const [id, svc] of preview.services) next.set(id, svc ? this.model.nftService(svc) : null);
    await this.enqueue(() => this.applyChanges(next, 'batch'));
  }

  abort(ops: readonly Op[]): void {
    // The table did not change: put the touched services back as the table has them.
    const t = this.table!;
    const next = new Map<string, NftService | null>();
    for (const op of ops) {
      if (op.op === 'flush') {
        for (const id of [...this.model.frags.keys(), ...this.model.drModel.keys()]) next.set(id, null);
        for (const svc of t.list()) next.set(svc.id, this.model.nftService(svc));
      } else if ('service' in op && op.service) {
        const live = t.get(op.service);
        next.set(serviceId(op.service), live ? this.model.nftService(live) : null);
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
    this.readback.stop();
    this.limitCounters.stop();
    this.unsubscribe?.();
    this.unsubscribe = null;
    await this.firstPacket.stop();
    await this.enqueue(async () => {
      // A transaction that was already running when stop() began may have (re)started these.
      await this.firstPacket.stop();
      this.readback.stopEvents();
      this.sender.send(removal(), 'remove tables');
      this.sender.close();
      await nftApply(this.run, { nftables: this.dr.removal() }, 'remove table netdev tsvs');
      this.model.clearFrags();
      this.model.queueFams.clear();
    });
    this.opts.log('info', 'nftables tables ip tsvs, ip6 tsvs and netdev tsvs removed');
  }

  /**
   * State sync (src/sync), backup side: puts persistence entries synced from the master
   * into the kernel's per-server sets, so that clients keep their server after a failover;
   * the read-back then lists them as templates.
   */
  async importPersistence(entries: ReadonlyArray<{ svc: VirtualService; dest: Dest; addr: string; timeout: number }>): Promise<void> {
    const nftables: unknown[] = [];
    for (const e of entries) {
      const mark = this.model.markFor(e.svc.id, e.dest.id);
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

  /** What the plane counts beyond the table's counters, for metrics: the connection limits' drops. */
  counters(): {
    noDestination: number;
    connectFailures: Record<string, number>;
    limitRefused: Array<{ service: string; limit: string; count: number }>;
  } {
    return { noDestination: 0, connectFailures: {}, limitRefused: this.limitCounters.rows() };
  }

  /** Reads the connection-limit counters now (tests; the plane also does it every poll period). */
  pollLimits(): Promise<void> {
    return this.limitCounters.poll(this.table?.list() ?? []);
  }

  /**
   * One read-back round (readback.ts); resolves when the table reflects the kernel as of
   * this call, so tests and `view()` callers can wait for current numbers.
   */
  poll(): Promise<void> {
    return this.readback.poll();
  }

  // ------------------------------------------------------------------ checks

  private async checkHost(): Promise<void> {
    if (process.platform !== 'linux') throw dataplaneError('the nftables data plane needs Linux');
    if (process.getuid?.() !== 0) {
      throw dataplaneError(
        'the nftables data plane needs root (CAP_NET_ADMIN) to program nftables; run tsvsd as root or use --dataplane userspace',
      );
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

  // ------------------------------------------------------------------ kernel transactions

  /** Runs `f` after every kernel transaction queued before it. */
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
      const m = this.model.nftService(svc);
      if (isDr(m)) dr.set(svc.id, m);
      else nat.push([svc.id, compileService(m)]);
    }
    const plan = await this.dr.plan({ services: [...dr.values()] }, this.table);
    if (plan.commands.length) await nftApply(this.run, { nftables: plan.commands }, why);
    plan.commit();
    this.model.drModel = dr;
    const { head, queueFams } = loadHead(
      nat.map(([, f]) => f),
      this.snat,
      this.model.limits.maxConns,
    );
    const sent = this.sendChunked(
      nat.map(([, f]) => [undefined, f]),
      head,
      [],
      why,
    );
    this.model.clearFrags();
    for (const [id, f] of nat) this.model.setFrag(id, f);
    this.model.queueFams.clear();
    this.firstPacket.installRules(queueFams);
    if (this.model.queuedFrags) await this.firstPacket.start();
    this.opts.log(
      'info',
      `nftables: tables loaded (${why}): ${nat.length} NAT services, ${dr.size} DR services, ${sent.messages} netlink messages`,
    );
  }

  /**
   * Puts the given services (null: gone) into the kernel as one transaction of their
   * fragments only; direct-routing services are recompiled in `netdev tsvs` when one of
   * them is among them. Throws TsvsError when the kernel refuses: nothing changed then.
   */
  private async applyChanges(next: ReadonlyMap<string, NftService | null>, why: string): Promise<void> {
    // After stop(): a read-back round or a late batch must not put the tables back.
    if (this.stopped || !next.size) return;
    const model = this.model;
    const frags = new Map<string, Fragment | undefined>();
    const pairs: Array<[Fragment | undefined, Fragment | undefined]> = [];
    let drNext: Map<string, NftService> | null = null;
    for (const [id, svc] of next) {
      const toDr = !!svc && isDr(svc);
      if (toDr || model.drModel.has(id)) {
        drNext ??= new Map(model.drModel);
        if (toDr) drNext.set(id, svc!);
        else drNext.delete(id);
      }
      const prev = model.frags.get(id);
      const frag = svc && !toDr ? compileService(svc) : undefined;
      if (!prev && !frag) continue;
      pairs.push([prev, frag]);
      frags.set(id, frag);
    }
    // The first-packet objects come with a family's first queue-scheduled service and go with its last.
    const queued = model.queuedAfter(frags);
    const newQueueFams = new Set<Fam>();
    const goneQueueFams: Fam[] = [];
    for (const f of ['ip', 'ip6'] as const) {
      if (queued[f] && !model.queueFams.has(f)) newQueueFams.add(f);
      if (!queued[f] && model.queueFams.has(f)) goneQueueFams.push(f);
    }
    let drPlan: Awaited<ReturnType<DrPlanner['plan']>> | null = null;
    if (drNext) {
      drPlan = await this.dr.plan({ services: [...drNext.values()] }, this.table);
      if (drPlan.commands.length) await nftApply(this.run, { nftables: drPlan.commands }, why);
    }
    let sent = { messages: 0, bytes: 0 };
    try {
      const head = [...newQueueFams].flatMap((f) => queueBaseCommands(f));
      sent = this.sendChunked(
        pairs,
        head,
        goneQueueFams.flatMap((f) => queueRemoveCommands(f)),
        why,
        [...newQueueFams].flatMap((f) => queueRemoveCommands(f)),
      );
    } catch (e) {
      if (drPlan?.commands.length) {
        // The DR half went in: take it back, so that the batch is all or nothing.
        drPlan.commit();
        const back = await this.dr.plan({ services: [...model.drModel.values()] }, this.table);
        await nftApply(this.run, { nftables: back.commands }, `${why}: undo`);
        back.commit();
      }
      throw e;
    }
    if (drPlan && drNext) {
      drPlan.commit();
      model.drModel = drNext;
    }
    for (const [id, f] of frags) model.setFrag(id, f);
    for (const f of goneQueueFams) model.queueFams.delete(f);
    this.firstPacket.installRules(newQueueFams);
    if (model.queuedFrags) await this.firstPacket.start();
    if (sent.messages)
      this.opts.log('debug', `nftables: ${why}: ${pairs.length} services changed, ${sent.messages} netlink messages, ${sent.bytes} bytes`);
  }

  /**
   * Sends fragment changes to the kernel, `head` first and `tail` last, in transactions of
   * at most CHUNK_SERVICES services. One transaction of 10,000 services takes the kernel
   * minutes (its cost grows faster than the transaction: measured here, 1,500 services in
   * 1.6 s and 3,000 in 13.8 s as one transaction, against 2.1 s for 3,000 in transactions of
   * 250). If the kernel refuses one, the ones already sent are taken back, so the batch is
   * still all or nothing as the table and its clients see it.
   */
  private sendChunked(
    pairs: ReadonlyArray<[Fragment | undefined, Fragment | undefined]>,
    head: Cmd[],
    tail: Cmd[],
    why: string,
    undoHead: Cmd[] = [],
  ): { messages: number; bytes: number } {
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
          this.opts.log(
            'error',
            `nftables: ${why}: could not take back the part of the batch already in the kernel; it is ahead of the table until the next change to those services`,
            { err: (u as Error).message },
          );
        }
      }
      throw e;
    }
    return total;
  }

  /** Recompiles services whose servers' OVERLOAD flags changed. */
  private recompile(svcs: Iterable<VirtualService>, why: string): Promise<void> {
    const next = new Map<string, NftService | null>();
    for (const s of svcs) if (this.table?.get(s) === s) next.set(s.id, this.model.nftService(s));
    return this.enqueue(() => this.applyChanges(next, why));
  }

  // ------------------------------------------------------------------ events

  private onChange(ev: TableEvent): void {
    if (ev.type === 'dest-added') {
      this.model.owners.set(this.model.markOf(ev.svc.id, ev.dest.id), { svc: ev.svc, dest: ev.dest });
    } else if (ev.type === 'dest-deleted') {
      const mark = this.model.forgetMark(ev.svc.id, ev.dest.id);
      if (mark === undefined) return;
      this.readback.retire(ev.svc.id, mark);
      // expire_nodest_conn: the removed server's connections end now (after the rules no
      // longer send anyone there), instead of hanging on a server that is gone.
      if (this.readback.conntrackOk) {
        void this.enqueue(async () => {
          const n = await conntrackDeleteMark(this.run, mark);
          if (n) this.opts.log('info', `${ev.svc.label} real server ${ev.dest.id} removed: ${n} conntrack entries deleted`);
        });
      }
    } else if (ev.type === 'service-deleted') {
      this.readback.forgetService(ev.svc.id);
      // A batch that deleted and re-added the service compiled it under the same id: keep it.
      this.model.forgetService(ev.svc.id);
    } else if (ev.type === 'zeroed') {
      this.readback.zero(ev.svc ? [ev.svc] : this.table!.list());
    }
  }
}

function notSupported(detail: string): TsvsError {
  return new TsvsError('NOT_SUPPORTED', detail, detail);
}
