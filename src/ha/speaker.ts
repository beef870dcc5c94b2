/**
 * The VRRPv3 speaker of tsvsd: runs the configured vrrp instances. For each it keeps a
 * state machine (fsm.ts), feeds it decoded adverts (packet.ts) and timer events, and carries
 * out what it returns: adverts through the raw socket (rawsock.ts), VIPs and gratuitous ARP
 * and scripts through NetOps (netops.ts), the HA transition hooks (hooks.ts) in their order,
 * notify scripts with keepalived's arguments, and one JSON log line per transition.
 *
 * Tracking sets the effective priority or puts an instance in FAULT: its own interface and
 * track_interface links (polled with `ip -j addr`), vrrp_script results (interval, rise,
 * fall, weight), and tsvs's own health (a service whose real servers are all down).
 * Weights as keepalived: 0 = FAULT on failure; > 0 added while OK; < 0 added while failed;
 * the result clamped to 1..254, and a configured 255 never changes.
 *
 * On becoming MASTER (one transition at a time per instance, in order):
 *   hooks.beforeMaster -> still MASTER? -> add VIPs -> gratuitous ARP -> hooks.afterMaster -> notify
 * On leaving MASTER: remove VIPs -> hooks.afterBackup -> notify.
 */
import type { Logger } from 'pino';
import type { VrrpInstance, VrrpSource, VrrpStatus } from './source.js';
import { parseVip, type Vip, type VrrpInstanceSpec, type VrrpScriptSpec } from './model.js';
import { TsvsError } from '../core/errors.js';
import { VrrpFsm, type FsmAction, type FsmConfig, type FsmEvent, type FsmState, type NotifyState } from './fsm.js';
import type { HaTransitionHooks } from './hooks.js';
import { SystemNetOps, type LinkInfo, type NetOps } from './netops.js';
import { checkForInstance, decodeIpv4Packet, encodeIpv4Packet, PRIO_OWNER, VRRP_GROUP4, type DropReason } from './packet.js';
import { RawTransport, rawSocketProblem, type PacketHandler, type VrrpTransport } from './rawsock.js';

export interface SpeakerDeps {
  log: Logger;
  /** The state-sync side's hooks (src/sync); called around every MASTER transition. */
  hooks?: HaTransitionHooks | undefined;
  /** Labels of the services whose real servers are all down (tsvs's own health). */
  healthDown?: () => string[];
  net?: NetOps;
  transport?: (onPacket: PacketHandler, onError: (ifname: string, e: Error) => void) => VrrpTransport;
  /** Milliseconds, monotonic. */
  now?: () => number;
  /** How often links and health are looked at (default 500 ms). */
  pollMs?: number;
  /** Gratuitous ARPs sent per VIP on becoming master (default 3, one a second). */
  garpCount?: number;
}

/** An instance's configuration with keepalived's defaults filled in. */
export interface ResolvedInstance {
  name: string;
  iface: string;
  vrid: number;
  priority: number;
  advertIntCs: number;
  preempt: boolean;
  preemptDelayMs: number;
  initialState: 'MASTER' | 'BACKUP';
  vips: Vip[];
  unicastSrc?: string | undefined;
  peers: string[];
  trackInterface: Array<{ name: string; weight: number }>;
  trackScript: Array<{ name: string; weight: number }>;
  trackHealth?: { weight: number } | undefined;
  notify: Partial<Record<NotifyState, string>>;
  notifyAll?: string | undefined;
}

/** Fills in defaults (priority 100, advert_int 1 s); throws naming the instance on what validation let through. */
export function resolveInstance(v: VrrpInstanceSpec, scripts: readonly VrrpScriptSpec[]): ResolvedInstance {
  const vips: Vip[] = [];
  for (const t of v.virtualIpaddress) {
    const p = parseVip(t);
    if (typeof p === 'string') throw new TsvsError('BAD_REQUEST', `vrrp instance ${v.name}: virtual_ipaddress: ${p}`);
    if (p.family !== 4) {
      throw new TsvsError(
        'NOT_SUPPORTED',
        `vrrp instance ${v.name}: IPv6 VRRP is not supported: the raw-socket addon cannot read the hop limit of received packets, which RFC 5798 requires checking`,
      );
    }
    vips.push(p);
  }
  const script = new Map(scripts.map((s) => [s.name, s]));
  const notify: Partial<Record<NotifyState, string>> = {};
  if (v.notifyMaster) notify.MASTER = v.notifyMaster;
  if (v.notifyBackup) notify.BACKUP = v.notifyBackup;
  if (v.notifyFault) notify.FAULT = v.notifyFault;
  if (v.notifyStop) notify.STOP = v.notifyStop;
  return {
    name: v.name,
    iface: v.interface!,
    vrid: v.virtualRouterId!,
    priority: v.priority ?? 100,
    advertIntCs: Math.min(4095, Math.max(1, Math.round((v.advertInt ?? 1) * 100))),
    preempt: !v.nopreempt,
    preemptDelayMs: (v.preemptDelay ?? 0) * 1000,
    initialState: v.state ?? 'BACKUP',
    vips,
    unicastSrc: v.unicastSrcIp,
    peers: v.unicastPeer ?? [],
    trackInterface: v.trackInterface ?? [],
    trackScript: (v.trackScript ?? []).map((t) => ({ name: t.name, weight: t.weight ?? script.get(t.name)?.weight ?? 0 })),
    trackHealth: v.trackHealth,
    notify,
    notifyAll: v.notify,
  };
}

const LOWER: Record<FsmState, VrrpInstance['state']> = { INIT: 'init', BACKUP: 'backup', MASTER: 'master', FAULT: 'fault' };

class ScriptRun {
  ok: boolean;
  private succ = 0;
  private fail = 0;
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  constructor(
    readonly cfg: VrrpScriptSpec,
    private readonly net: NetOps,
    private readonly changed: (s: ScriptRun) => void,
  ) {
    this.ok = !cfg.initFail;
  }
  start(): void {
    this.timer = setInterval(() => void this.once(), this.cfg.interval * 1000);
    this.timer.unref();
    void this.once();
  }
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
  private async once(): Promise<void> {
    if (this.running) return;
    this.running = true;
    const code = await this.net.run(this.cfg.script, [], this.cfg.timeout * 1000);
    this.running = false;
    if (!this.timer) return;
    if (code === 0) {
      this.fail = 0;
      this.succ++;
      if (!this.ok && this.succ >= this.cfg.rise) {
        this.ok = true;
        this.changed(this);
      }
    } else {
      this.succ = 0;
      this.fail++;
      if (this.ok && this.fail >= this.cfg.fall) {
        this.ok = false;
        this.changed(this);
      }
    }
  }
}

class InstanceRun {
  fsm: VrrpFsm;
  timer: NodeJS.Timeout | null = null;
  /** Transitions' side effects, one after another. */
  chain: Promise<void> = Promise.resolve();
  vipsUp = false;
  /** VIPs found on the interface at start of an address owner (priority 255): never removed. */
  owned = new Set<string>();
  sent = 0;
  received = 0;
  transitions = 0;
  dropped: Partial<Record<DropReason, number>> = {};
  since = new Date().toISOString();
  ipId = 1;
  warned = new Set<string>();
  constructor(
    public r: ResolvedInstance,
    primary: string,
  ) {
    this.fsm = new VrrpFsm(fsmConfig(r, primary));
  }
}

function fsmConfig(r: ResolvedInstance, primary: string): FsmConfig {
  return {
    priority: r.priority,
    advertIntCs: r.advertIntCs,
    preempt: r.preempt,
    preemptDelayMs: r.preemptDelayMs,
    primaryAddr: r.unicastSrc ?? primary,
  };
}

/** What makes an instance the same router: changing any of these restarts it on reload. */
function identity(r: ResolvedInstance): string {
  return JSON.stringify([r.iface, r.vrid, r.unicastSrc ?? null, [...r.peers].sort()]);
}

export class VrrpSpeaker implements VrrpSource {
  private readonly runs = new Map<string, InstanceRun>();
  private readonly scripts = new Map<string, ScriptRun>();
  private readonly net: NetOps;
  private readonly transport: VrrpTransport;
  private readonly now: () => number;
  private links = new Map<string, LinkInfo>();
  private poller: NodeJS.Timeout | null = null;
  private readonly dropped: Partial<Record<DropReason, number>> = {};
  private stopped = false;

  /** Why VRRP cannot run on this host, or null (checks the raw-socket addon and the privilege). */
  static problem(): string | null {
    return rawSocketProblem();
  }

  constructor(private readonly deps: SpeakerDeps) {
    this.net = deps.net ?? new SystemNetOps();
    this.now = deps.now ?? (() => performance.now());
    const make = deps.transport ?? ((p, e) => new RawTransport(p, e));
    this.transport = make(
      (ifname, pkt) => this.onPacket(ifname, pkt),
      (ifname, e) =>
        this.deps.log.error({ component: 'vrrp', interface: ifname, err: e.message }, `VRRP socket on ${ifname}: ${e.message}`),
    );
  }

  private get log(): Logger {
    return this.deps.log;
  }

  /** Starts every instance: stale VIPs removed, sockets opened, tracking evaluated, state machines started. */
  async start(instances: readonly VrrpInstanceSpec[], scripts: readonly VrrpScriptSpec[]): Promise<void> {
    const resolved = instances.map((v) => resolveInstance(v, scripts));
    this.links = await this.net.links();
    for (const r of resolved) {
      if (!this.links.has(r.iface)) throw new TsvsError('BAD_REQUEST', `vrrp instance ${r.name}: interface ${r.iface} does not exist`);
    }
    this.setScripts(scripts, resolved);
    for (const r of resolved) await this.startInstance(r);
    this.poller = setInterval(() => void this.poll(), this.deps.pollMs ?? 500);
    this.poller.unref();
  }

  private primaryOf(iface: string): string | null {
    const l = this.links.get(iface);
    const vips = new Set([...this.runs.values()].flatMap((x) => x.r.vips.map((v) => v.addr)));
    return l?.addrs4.find((a) => !a.secondary && !vips.has(a.addr))?.addr ?? l?.addrs4.find((a) => !vips.has(a.addr))?.addr ?? null;
  }

  private async startInstance(r: ResolvedInstance): Promise<void> {
    const link = this.links.get(r.iface);
    if (!link) {
      this.log.error({ component: 'vrrp', instance: r.name }, `vrrp instance ${r.name}: interface ${r.iface} does not exist; not started`);
      return;
    }
    const run = new InstanceRun(r, this.primaryOf(r.iface) ?? '0.0.0.0');
    // Stale VIPs (a previous tsvsd or keepalived killed with SIGKILL leaves them behind).
    for (const vip of r.vips) {
      const dev = vip.dev ?? r.iface;
      const has = this.links.get(dev)?.addrs4.some((a) => a.addr === vip.addr);
      if (!has) continue;
      if (r.priority === PRIO_OWNER) {
        run.owned.add(vip.addr);
        continue;
      }
      try {
        await this.net.delVip(r.iface, vip);
        this.log.warn(
          { component: 'vrrp', instance: r.name, vip: vip.addr, interface: dev },
          `vrrp instance ${r.name}: removed stale VIP ${vip.addr} from ${dev} (left by a previous run)`,
        );
      } catch (e) {
        this.log.error(
          { component: 'vrrp', instance: r.name, err: (e as Error).message },
          `vrrp instance ${r.name}: cannot remove stale VIP ${vip.addr}`,
        );
      }
    }
    this.transport.open(r.iface, link.index);
    this.runs.set(r.name, run);
    this.log.info(
      {
        component: 'vrrp',
        instance: r.name,
        vrid: r.vrid,
        interface: r.iface,
        priority: r.priority,
        advertIntMs: r.advertIntCs * 10,
        vips: r.vips.map((v) => v.addr),
        unicastPeers: r.peers,
      },
      `vrrp instance ${r.name}: VRID ${r.vrid} on ${r.iface}, priority ${r.priority}, advert every ${r.advertIntCs * 10} ms${r.preempt ? '' : ', nopreempt'}`,
    );
    this.evaluate(run, true);
    this.step(run, { kind: 'start' });
  }

  /** Sends priority 0 if master, removes its VIPs, runs notify_stop; resolves when done. */
  private async stopInstance(run: InstanceRun): Promise<void> {
    this.step(run, { kind: 'stop' });
    if (run.timer) clearTimeout(run.timer);
    run.timer = null;
    await run.chain;
  }

  /** Applies a reloaded configuration: instances added, removed, restarted (new VRID, interface or peers) or updated in place. */
  async reload(instances: readonly VrrpInstanceSpec[], scripts: readonly VrrpScriptSpec[]): Promise<string[]> {
    const changes: string[] = [];
    const resolved = new Map(instances.map((v) => [v.name, resolveInstance(v, scripts)]));
    this.links = await this.net.links();
    for (const [name, run] of [...this.runs]) {
      const next = resolved.get(name);
      if (next && identity(next) === identity(run.r)) continue;
      await this.stopInstance(run);
      this.runs.delete(name);
      changes.push(next ? `vrrp instance ${name}: restarted (interface, VRID or peers changed)` : `vrrp instance ${name}: removed`);
    }
    this.setScripts(scripts, [...resolved.values()]);
    for (const [name, r] of resolved) {
      const run = this.runs.get(name);
      if (!run) {
        if (!changes.some((c) => c.startsWith(`vrrp instance ${name}:`))) changes.push(`vrrp instance ${name}: added`);
        await this.startInstance(r);
        continue;
      }
      if (JSON.stringify(run.r) === JSON.stringify(r)) continue;
      const before = run.r;
      run.r = r;
      run.fsm.cfg = fsmConfig(r, run.fsm.cfg.primaryAddr);
      changes.push(`vrrp instance ${name}: updated`);
      if (run.vipsUp) {
        // Master keeps serving: only the VIPs that changed move.
        const key = (v: Vip) => JSON.stringify(v);
        const now = new Set(r.vips.map(key));
        const was = new Set(before.vips.map(key));
        run.chain = run.chain.then(async () => {
          for (const v of before.vips)
            if (!now.has(key(v)) && !run.owned.has(v.addr)) await this.safe(run, 'remove VIP', () => this.net.delVip(r.iface, v));
          for (const v of r.vips) {
            if (was.has(key(v))) continue;
            await this.safe(run, 'add VIP', () => this.net.addVip(r.iface, v));
            this.net.garp(v.dev ?? r.iface, v.addr, this.deps.garpCount ?? 3);
          }
        });
      }
      this.evaluate(run, false);
    }
    for (const c of changes) this.log.info({ component: 'vrrp' }, `reload: ${c}`);
    return changes;
  }

  /** Graceful stop: priority 0 from every master, VIPs removed, notify_stop; sockets closed. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.poller) clearInterval(this.poller);
    for (const s of this.scripts.values()) s.stop();
    await Promise.all([...this.runs.values()].map((run) => this.stopInstance(run)));
    await this.transport.flush(500);
    this.transport.close();
    this.net.close();
  }

  status(): VrrpStatus {
    return {
      configured: this.runs.size > 0,
      instances: [...this.runs.values()].map((run) => ({
        name: run.r.name,
        vrid: run.r.vrid,
        state: LOWER[run.fsm.state],
        priority: run.fsm.priority,
        vips: run.r.vips.map((v) => v.addr),
        interface: run.r.iface,
        basePriority: run.r.priority,
        advertIntMs: run.r.advertIntCs * 10,
        master: run.fsm.state === 'MASTER' ? (run.r.unicastSrc ?? run.fsm.cfg.primaryAddr) : run.fsm.masterAddr,
        reason: run.fsm.lastReason,
        since: run.since,
        advertsSent: run.sent,
        advertsReceived: run.received,
        transitions: run.transitions,
        dropped: { ...run.dropped },
      })),
      dropped: { ...this.dropped },
    };
  }

  private setScripts(scripts: readonly VrrpScriptSpec[], resolved: readonly ResolvedInstance[]): void {
    const used = new Set(resolved.flatMap((r) => r.trackScript.map((t) => t.name)));
    for (const [name, s] of [...this.scripts]) {
      const cfg = scripts.find((x) => x.name === name);
      if (!cfg || !used.has(name) || JSON.stringify(cfg) !== JSON.stringify(s.cfg)) {
        s.stop();
        this.scripts.delete(name);
      }
    }
    for (const cfg of scripts) {
      if (!used.has(cfg.name) || this.scripts.has(cfg.name)) continue;
      const s = new ScriptRun(cfg, this.net, (x) => {
        this.log.info(
          { component: 'vrrp', script: x.cfg.name, ok: x.ok },
          `vrrp_script ${x.cfg.name}: ${x.ok ? 'succeeded' : 'failed'} (${x.ok ? `rise ${x.cfg.rise}` : `fall ${x.cfg.fall}`})`,
        );
        for (const run of this.runs.values()) if (run.r.trackScript.some((t) => t.name === x.cfg.name)) this.evaluate(run, false);
      });
      this.scripts.set(cfg.name, s);
      s.start();
    }
  }

  private async poll(): Promise<void> {
    if (this.stopped) return;
    try {
      this.links = await this.net.links();
    } catch (e) {
      this.log.warn({ component: 'vrrp', err: (e as Error).message }, 'VRRP: cannot read links');
      return;
    }
    // stop() may have run while `ip` did: do not reopen the sockets it closed.
    if (this.stopped) return;
    for (const run of this.runs.values()) {
      // A socket closed by an error is opened again (open() is a no-op while it lives).
      const link = this.links.get(run.r.iface);
      if (link) {
        try {
          this.transport.open(run.r.iface, link.index);
        } catch (e) {
          this.once(run, `open:${(e as Error).message}`, `vrrp instance ${run.r.name}: ${(e as Error).message}`);
        }
      }
      // The source address may only now exist (address added after start).
      const p = this.primaryOf(run.r.iface);
      if (p && !run.r.unicastSrc && p !== run.fsm.cfg.primaryAddr) run.fsm.cfg = { ...run.fsm.cfg, primaryAddr: p };
      this.evaluate(run, false);
    }
  }

  /** Tracking: FAULT or effective priority, stepped into the state machine when changed. */
  private evaluate(run: InstanceRun, initial: boolean): void {
    const r = run.r;
    const faults: string[] = [];
    let delta = 0;
    const apply = (ok: boolean, weight: number, what: string) => {
      if (weight === 0 && !ok) faults.push(what);
      else if (weight > 0 && ok) delta += weight;
      else if (weight < 0 && !ok) delta += weight;
    };
    const own = this.links.get(r.iface);
    if (!own?.up) faults.push(`interface ${r.iface} ${own ? 'down' : 'gone'}`);
    for (const t of r.trackInterface) {
      const l = this.links.get(t.name);
      apply(!!l?.up, t.weight, `tracked interface ${t.name} ${l ? 'down' : 'gone'}`);
    }
    for (const t of r.trackScript) {
      const s = this.scripts.get(t.name);
      apply(s ? s.ok : true, t.weight, `vrrp_script ${t.name} failed`);
    }
    if (r.trackHealth && this.deps.healthDown) {
      const down = this.deps.healthDown();
      apply(down.length === 0, r.trackHealth.weight, `no real server up for ${down.join(', ')}`);
    }
    const priority = r.priority === PRIO_OWNER ? PRIO_OWNER : Math.min(254, Math.max(1, r.priority + delta));
    if (priority !== run.fsm.priority) {
      if (!initial)
        this.log.info(
          { component: 'vrrp', instance: r.name, priority, was: run.fsm.priority },
          `vrrp instance ${r.name}: effective priority ${run.fsm.priority} -> ${priority}`,
        );
      this.step(run, { kind: 'priority', priority });
    }
    const fault = faults.length > 0;
    if (fault !== run.fsm.inFault) this.step(run, { kind: 'fault', fault, reason: fault ? faults.join('; ') : 'tracking OK again' });
  }

  private onPacket(ifname: string, pkt: Buffer): void {
    if (this.stopped) return;
    const d = decodeIpv4Packet(pkt);
    if (!d.ok) {
      this.drop(null, d.reason, d.detail, ifname);
      return;
    }
    const a = d.advert;
    let run: InstanceRun | undefined;
    for (const x of this.runs.values()) if (x.r.iface === ifname && x.r.vrid === a.vrid) run = x;
    if (!run) {
      this.drop(null, 'vrid', `VRID ${a.vrid} from ${a.src}: no instance on ${ifname}`, ifname);
      return;
    }
    const own = this.links.get(ifname)?.addrs4.map((x) => x.addr) ?? [];
    const c = checkForInstance(a, {
      vrid: run.r.vrid,
      family: 4,
      vips: run.r.vips.map((v) => v.addr),
      own: run.r.unicastSrc ? [...own, run.r.unicastSrc] : own,
    });
    if (!c.ok) {
      this.drop(run, c.reason, `${c.detail} (from ${a.src})`, ifname);
      return;
    }
    run.received++;
    if (a.oldUnicastChecksum)
      this.once(run, 'oldsum', `vrrp instance ${run.r.name}: ${a.src} uses the keepalived <= 1.3.6 unicast checksum; accepted`);
    if (a.maxAdverIntCs !== run.r.advertIntCs && run.fsm.state === 'BACKUP') {
      this.once(
        run,
        `int${a.maxAdverIntCs}`,
        `vrrp instance ${run.r.name}: advertisement interval mismatch: mine ${run.r.advertIntCs * 10} ms, ${a.src} sends ${a.maxAdverIntCs * 10} ms; following the master's`,
      );
    }
    this.step(run, { kind: 'advert', priority: a.priority, maxAdverIntCs: a.maxAdverIntCs, src: a.src });
  }

  private once(run: InstanceRun, key: string, msg: string): void {
    if (run.warned.has(key)) return;
    run.warned.add(key);
    this.log.warn({ component: 'vrrp', instance: run.r.name }, msg);
  }

  private drop(run: InstanceRun | null, reason: DropReason, detail: string, ifname: string): void {
    const bucket = run ? run.dropped : this.dropped;
    bucket[reason] = (bucket[reason] ?? 0) + 1;
    const fields = { component: 'vrrp', instance: run?.r.name, interface: ifname, reason, detail };
    const msg = `VRRP packet dropped on ${ifname}${run ? ` for ${run.r.name}` : ''}: ${reason}: ${detail}`;
    // The first of each reason is a warning; the rest are counted (tsvs_vrrp_dropped_total) and logged at debug.
    const key = `drop:${ifname}:${reason}`;
    if (run ? !run.warned.has(key) : bucket[reason] === 1) {
      run?.warned.add(key);
      this.log.warn(fields, msg);
    } else this.log.debug(fields, msg);
  }

  private step(run: InstanceRun, ev: FsmEvent): void {
    const acts = run.fsm.step(ev, this.now());
    for (const a of acts) this.exec(run, a);
    if (run.timer) clearTimeout(run.timer);
    run.timer = null;
    const d = run.fsm.deadline();
    if (d !== null && !this.stopped && this.runs.get(run.r.name) === run) {
      // Through setImmediate: after a stalled event loop the timer phase runs before pending
      // socket reads; this lets an advert already received reset the master down timer first.
      run.timer = setTimeout(
        () => setImmediate(() => this.runs.get(run.r.name) === run && this.step(run, { kind: 'timer' })),
        Math.max(0, Math.ceil(d - this.now())),
      );
    }
  }

  private exec(run: InstanceRun, a: FsmAction): void {
    const r = run.r;
    switch (a.kind) {
      case 'send':
        this.send(run, a.priority);
        return;
      case 'transition': {
        run.transitions++;
        run.since = new Date().toISOString();
        this.log.info(
          {
            component: 'vrrp',
            event: 'transition',
            instance: r.name,
            vrid: r.vrid,
            interface: r.iface,
            from: a.from,
            to: a.to,
            reason: a.reason,
            priority: run.fsm.priority,
          },
          `vrrp instance ${r.name}: ${a.from} -> ${a.to} (${a.reason})`,
        );
        return;
      }
      case 'addVips':
        run.chain = run.chain.then(() => this.masterUp(run));
        return;
      case 'removeVips':
        run.chain = run.chain.then(() => this.masterDown(run));
        return;
      case 'notify':
        run.chain = run.chain.then(() => this.notify(run, a.state));
        return;
      case 'garp': // part of masterUp
      case 'arm':
      case 'disarm': // step() rearms from the state machine's deadline
        return;
    }
  }

  private send(run: InstanceRun, priority: number): void {
    const r = run.r;
    const src = r.unicastSrc ?? this.primaryOf(r.iface);
    if (!src) {
      this.once(run, 'nosrc', `vrrp instance ${r.name}: ${r.iface} has no IPv4 address to send adverts from`);
      return;
    }
    const advert = { vrid: r.vrid, priority, maxAdverIntCs: r.advertIntCs, addrs: r.vips.map((v) => v.addr) };
    for (const dst of r.peers.length ? r.peers : [VRRP_GROUP4]) {
      run.ipId = (run.ipId % 0xffff) + 1;
      this.transport.send(r.iface, encodeIpv4Packet(advert, src, dst, run.ipId), dst);
    }
    run.sent++;
  }

  private async safe(run: InstanceRun, what: string, f: () => Promise<void>): Promise<void> {
    try {
      await f();
    } catch (e) {
      this.log.error(
        { component: 'vrrp', instance: run.r.name, err: (e as Error).message },
        `vrrp instance ${run.r.name}: ${what}: ${(e as Error).message}`,
      );
    }
  }

  private async masterUp(run: InstanceRun): Promise<void> {
    const r = run.r;
    const hooks = this.deps.hooks;
    if (hooks?.beforeMaster) await this.safe(run, 'beforeMaster hook', () => hooks.beforeMaster!(r.name));
    // The state may have moved on while the hook ran (a higher master appeared): then stay off.
    if (run.fsm.state !== 'MASTER' || run.vipsUp) return;
    // All at once: each is an `ip` process, and every millisecond here is failover time.
    await Promise.all(
      r.vips.filter((v) => !run.owned.has(v.addr)).map((v) => this.safe(run, `add VIP ${v.addr}`, () => this.net.addVip(r.iface, v))),
    );
    run.vipsUp = true;
    for (const v of r.vips) this.net.garp(v.dev ?? r.iface, v.addr, this.deps.garpCount ?? 3);
    this.log.info(
      { component: 'vrrp', instance: r.name, vips: r.vips.map((v) => v.addr) },
      `vrrp instance ${r.name}: VIPs added, gratuitous ARP sent`,
    );
    if (hooks?.afterMaster) await this.safe(run, 'afterMaster hook', () => hooks.afterMaster!(r.name));
  }

  private async masterDown(run: InstanceRun): Promise<void> {
    const r = run.r;
    if (!run.vipsUp) return;
    await Promise.all(
      r.vips.filter((v) => !run.owned.has(v.addr)).map((v) => this.safe(run, `remove VIP ${v.addr}`, () => this.net.delVip(r.iface, v))),
    );
    run.vipsUp = false;
    this.log.info({ component: 'vrrp', instance: r.name, vips: r.vips.map((v) => v.addr) }, `vrrp instance ${r.name}: VIPs removed`);
    const hooks = this.deps.hooks;
    if (hooks?.afterBackup) await this.safe(run, 'afterBackup hook', () => hooks.afterBackup!(r.name));
  }

  /** notify_<state>, then `notify` with keepalived's arguments: INSTANCE name state priority. */
  private async notify(run: InstanceRun, state: NotifyState): Promise<void> {
    const r = run.r;
    const jobs: Array<[string, string[]]> = [];
    if (r.notify[state]) jobs.push([r.notify[state]!, []]);
    if (r.notifyAll) jobs.push([r.notifyAll, ['INSTANCE', r.name, state, String(run.fsm.priority)]]);
    for (const [cmd, args] of jobs) {
      this.log.info(
        { component: 'vrrp', instance: r.name, script: cmd, state },
        `vrrp instance ${r.name}: running notify script for ${state}`,
      );
      // Not awaited: a slow script must not hold the next transition (keepalived does not wait either).
      void this.net.run(cmd, args, 30_000).then((code) => {
        if (code !== 0)
          this.log.warn(
            { component: 'vrrp', instance: r.name, script: cmd, code },
            `vrrp instance ${r.name}: notify script exited ${code}`,
          );
      });
    }
  }
}
