/**
 * The health engine: runs every real server's checkers and keeps the table as keepalived's
 * ipwrapper.c would. Layers, as in keepalived:
 *   - `stepChecker` (pure): one check result moves a checker's state; rise/fall as data.
 *   - `desiredDests` (pure): from the servers' health and the quorum, what each declared
 *     real server and the sorry server should look like in the table.
 *   - `HealthEngine`: timers, retries, notify scripts, logs, and the one path to the
 *     table, PoolControl.apply (the daemon's Director), with only the operations that
 *     make the table match.
 *
 * Policy: a failed server is removed, or set to weight 0 with inhibit_on_failure (its open
 * connections finish); it comes back with its configured weight (or its MISC_CHECK dynamic
 * weight). A server is alive when all its checkers are up. With a sorry server, when the
 * quorum is lost every real server goes out and the sorry server comes in.
 */
import { spawn } from 'node:child_process';
import type { Logger } from 'pino';
import { destId, serviceId, serviceLabel } from '../core/service.js';
import type { DestConfig, Op, ServiceConfig, ServiceKey } from '../core/types.js';
import { CHECKER_LABEL, checkerFingerprint, type CheckedDest, type CheckedService, type CheckerConfig } from './model.js';
import type { HealthSource, ServerHealth } from './source.js';
import { since, type CheckFn, type CheckResult, type CheckTarget } from './checker.js';
import { errText } from '../core/log.js';
import { CHECKERS } from './index.js';
import { splitCommand } from './misc.js';

// ------------------------------------------------------------------ checker state machine

export type CheckerState = 'up' | 'down';

export interface CheckerCounters {
  state: CheckerState;
  /** Consecutive passed checks while down. */
  okStreak: number;
  /** Consecutive failed checks while up. */
  failStreak: number;
}

/** What a result does in each state: the streak it feeds, its threshold, the state it leads to. */
const TRANSITIONS = {
  up: { ok: null, fail: { streak: 'failStreak', threshold: 'fall', to: 'down' } },
  down: { ok: { streak: 'okStreak', threshold: 'rise', to: 'up' }, fail: null },
} as const;

/**
 * One check result applied to a checker. Returns the new counters and whether the state
 * changed: callers report transitions only.
 */
export function stepChecker(
  s: CheckerCounters,
  ok: boolean,
  p: { rise: number; fall: number },
): { next: CheckerCounters; changed: boolean } {
  const rule = TRANSITIONS[s.state][ok ? 'ok' : 'fail'];
  if (!rule) return { next: { state: s.state, okStreak: 0, failStreak: 0 }, changed: false };
  const streak = s[rule.streak] + 1;
  if (streak >= Math.max(1, p[rule.threshold])) return { next: { state: rule.to, okStreak: 0, failStreak: 0 }, changed: true };
  return { next: { ...s, okStreak: 0, failStreak: 0, [rule.streak]: streak }, changed: false };
}

// ------------------------------------------------------------------ table policy

export interface ServerStatus {
  alive: boolean;
  /** MISC_CHECK dynamic weight, when one was reported. */
  dynamicWeight?: number | undefined;
}

/** The weight a live server carries: its dynamic weight if a script set one, else the configured one. */
function liveWeight(rs: CheckedDest, st: ServerStatus): number {
  return st.dynamicWeight ?? rs.weight;
}

/** keepalived's quorum with hysteresis: lost below quorum - hysteresis, regained at quorum + hysteresis. */
export function nextQuorum(wasUp: boolean, weightSum: number, quorum: number, hysteresis: number): boolean {
  return wasUp ? weightSum >= quorum - hysteresis : weightSum >= quorum + hysteresis;
}

/** The sum of the live weights of a service's servers, which the quorum is measured against. */
function liveWeightSum(svc: CheckedService, status: (rs: CheckedDest) => ServerStatus): number {
  let sum = 0;
  for (const rs of svc.realServers) {
    const st = status(rs);
    if (st.alive) sum += liveWeight(rs, st);
  }
  return sum;
}

/**
 * What the table should hold for a service's declared servers: destId -> config, or null
 * for "absent". Servers the config does not declare are not in the map and are left alone.
 */
export function desiredDests(
  svc: CheckedService,
  status: (rs: CheckedDest) => ServerStatus,
  quorumUp: boolean,
): Map<string, DestConfig | null> {
  const out = new Map<string, DestConfig | null>();
  const sorryIn = !!svc.sorryServer && !quorumUp;
  for (const rs of svc.realServers) {
    const st = status(rs);
    const base = destConfigOf(rs);
    if (st.alive && !sorryIn) out.set(destId(rs), { ...base, weight: liveWeight(rs, st) });
    else out.set(destId(rs), rs.inhibitOnFailure ? { ...base, weight: 0 } : null);
  }
  if (svc.sorryServer) {
    const s = svc.sorryServer;
    const cfg: DestConfig = { af: svc.af, addr: s.addr, port: s.port, weight: 1, fwd: s.fwd, uThreshold: 0, lThreshold: 0 };
    const id = destId(cfg);
    // A sorry server that is also a declared real server follows the real server's rule.
    if (!out.has(id) || sorryIn) out.set(id, sorryIn ? cfg : s.inhibit ? { ...cfg, weight: 0 } : null);
  }
  return out;
}

export function destConfigOf(rs: CheckedDest): DestConfig {
  const d: DestConfig = {
    af: rs.af,
    addr: rs.addr,
    port: rs.port,
    weight: rs.weight,
    fwd: rs.fwd,
    uThreshold: rs.uThreshold,
    lThreshold: rs.lThreshold,
  };
  if (rs.tunnel) d.tunnel = rs.tunnel;
  return d;
}

export function serviceConfigOf(svc: CheckedService): ServiceConfig {
  return {
    af: svc.af,
    protocol: svc.protocol,
    addr: svc.addr,
    port: svc.port,
    fwmark: svc.fwmark,
    scheduler: svc.scheduler,
    schedFlags: svc.schedFlags,
    persistent: svc.persistent,
    netmask: svc.netmask,
    ops: svc.ops,
    pe: svc.pe,
    // Explicit, so that a reload which drops them from the file turns them off.
    proxyProtocol: svc.proxyProtocol ?? 'none',
    transparent: svc.transparent ?? false,
  };
}

function sameDest(a: DestConfig, b: DestConfig): boolean {
  return (
    a.weight === b.weight &&
    a.fwd === b.fwd &&
    a.uThreshold === b.uThreshold &&
    a.lThreshold === b.lThreshold &&
    JSON.stringify(a.tunnel ?? null) === JSON.stringify(b.tunnel ?? null)
  );
}

/** The operations that move `current` (the table's servers of one service) to `want`. */
export function destOps(key: ServiceKey, current: readonly DestConfig[], want: Map<string, DestConfig | null>): Op[] {
  const cur = new Map(current.map((d) => [destId(d), d]));
  const ops: Op[] = [];
  for (const [id, d] of want) {
    const have = cur.get(id);
    if (d === null) {
      if (have) ops.push({ op: 'delete-server', service: key, dest: { af: have.af, addr: have.addr, port: have.port } });
    } else if (!have) ops.push({ op: 'add-server', service: key, dest: d });
    else if (!sameDest(have, d)) ops.push({ op: 'edit-server', service: key, dest: d });
  }
  return ops;
}

// ------------------------------------------------------------------ the engine

interface CheckerRun {
  cfg: CheckerConfig;
  fp: string;
  counters: CheckerCounters;
  timer: NodeJS.Timeout | null;
  /** The generation a check in flight runs for, or -1. */
  runningGen: number;
  last?: CheckResult & { at: string };
  dynamicWeight?: number | undefined;
  /** Bumped when the run is stopped, so a check in flight ignores its own result. */
  generation: number;
}

interface ServerRun {
  rs: CheckedDest;
  checkers: CheckerRun[];
  alive: boolean;
}

export interface ServiceRun {
  cfg: CheckedService;
  key: ServiceKey;
  label: string;
  servers: Map<string, ServerRun>;
  quorumUp: boolean;
}

/** Engine state built for a configuration, not yet running (see HealthEngine.prepare). */
export interface PreparedHealth {
  services: Map<string, ServiceRun>;
  desired(): Array<{ service: ServiceConfig; dests: Map<string, DestConfig | null> }>;
}

/**
 * The engine's hold on the table, which the daemon's Director provides: read the real
 * servers a service has now, and apply a batch of operations.
 */
export interface PoolControl {
  readonly table: { get(key: ServiceKey): { readonly dests: ReadonlyArray<{ config(): DestConfig }> } | undefined };
  /** Applies the operations as one batch; rejects, changing nothing, if the table refuses one. */
  apply(ops: readonly Op[]): Promise<void>;
}

export interface HealthEngineOptions {
  director: PoolControl;
  log: Logger;
  /** Checker implementations; tests replace them. */
  checkers?: Partial<Record<CheckerConfig['type'], CheckFn>>;
  /** Runs a notify script; default: spawn detached, output ignored, killed after 30 s. */
  runScript?: (command: string, env: Record<string, string>) => void;
}

export class HealthEngine implements HealthSource {
  private services = new Map<string, ServiceRun>();
  private readonly checkFns: Record<CheckerConfig['type'], CheckFn>;
  private readonly runScript: (command: string, env: Record<string, string>) => void;
  private started = false;
  private queue: Promise<void> = Promise.resolve();
  private readonly log: Logger;

  constructor(private readonly opts: HealthEngineOptions) {
    this.checkFns = { ...CHECKERS, ...opts.checkers };
    this.runScript = opts.runScript ?? defaultRunScript;
    this.log = opts.log.child({ component: 'health' });
  }

  /**
   * Builds the engine state for a configuration without touching the running one. Servers
   * and checkers already running with the same settings keep their state (a reload); new
   * ones start up, or down with alpha. `commit` puts it into effect; dropping it is free.
   */
  prepare(config: { services: readonly CheckedService[] }): PreparedHealth {
    const next = new Map<string, ServiceRun>();
    for (const cfg of config.services) {
      const key: ServiceKey = { af: cfg.af, protocol: cfg.protocol, addr: cfg.addr, port: cfg.port, fwmark: cfg.fwmark };
      const id = serviceId(key);
      const old = this.services.get(id);
      const run: ServiceRun = { cfg, key, label: serviceLabel(key), servers: new Map(), quorumUp: true };
      for (const rs of cfg.realServers) {
        const rid = destId(rs);
        const prev = old?.servers.get(rid);
        const taken = new Set<CheckerRun>();
        const checkers = rs.checkers.map((c): CheckerRun => {
          const fp = checkerFingerprint(c);
          const same = prev?.checkers.find((p) => p.fp === fp && !taken.has(p));
          if (same) {
            taken.add(same);
            return same;
          }
          // A new checker on a known server inherits the server's state, so a reload never flaps it.
          const start: CheckerState = prev ? (prev.alive ? 'up' : 'down') : c.alpha ? 'down' : 'up';
          return { cfg: c, fp, counters: { state: start, okStreak: 0, failStreak: 0 }, timer: null, runningGen: -1, generation: 0 };
        });
        run.servers.set(rid, { rs, checkers, alive: checkers.every((c) => c.counters.state === 'up') });
      }
      run.quorumUp = old ? nextQuorum(old.quorumUp, this.weightSum(run), cfg.quorum, cfg.hysteresis) : this.weightSum(run) >= cfg.quorum;
      next.set(id, run);
    }
    return {
      services: next,
      desired: () => [...next.values()].map((s) => ({ service: serviceConfigOf(s.cfg), dests: this.desired(s) })),
    };
  }

  /** Makes a prepared state the running one: stops checkers no longer wanted, starts new ones. */
  commit(p: PreparedHealth): void {
    const keep = new Set<CheckerRun>();
    for (const s of p.services.values())
      for (const srv of s.servers.values())
        srv.checkers.forEach((c) => {
          keep.add(c);
        });
    for (const s of this.services.values())
      for (const srv of s.servers.values()) for (const c of srv.checkers) if (!keep.has(c)) this.stopChecker(c);
    // Running cycles hold the old ServiceRun/ServerRun; restart reused checkers so they report into the new ones.
    for (const c of keep) if (c.timer || c.runningGen >= 0) this.stopChecker(c);
    this.services = p.services;
    if (this.started) this.scheduleAll(false);
  }

  /** Starts every checker; the first check of each runs after a random part of its interval (keepalived warmup). */
  start(): void {
    this.started = true;
    this.scheduleAll(true);
  }

  /** Stops every checker; with omega, runs the down notifiers as keepalived does on shutdown. */
  async stop(): Promise<void> {
    this.started = false;
    for (const s of this.services.values()) {
      for (const srv of s.servers.values()) {
        srv.checkers.forEach((c) => {
          this.stopChecker(c);
        });
        if (s.cfg.omega && srv.alive && srv.rs.notifyDown) this.notify(srv.rs.notifyDown, s, srv, 'DOWN');
      }
      if (s.cfg.omega && s.quorumUp && s.cfg.quorumDown) this.notify(s.cfg.quorumDown, s, null, 'QUORUM_DOWN');
    }
    await this.queue;
  }

  /**
   * Runs `fn` with the engine's table changes held back, so a reload plans and applies
   * against a table that health changes do not move underneath it.
   */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn);
    this.queue = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  get(service: ServiceKey, dest: string): ServerHealth {
    const srv = this.services.get(serviceId(service))?.servers.get(dest);
    if (!srv?.checkers.length) return { state: 'unchecked' };
    const last = srv.checkers
      .map((c) => c.last)
      .filter((l): l is NonNullable<typeof l> => !!l)
      .sort((a, b) => Number(a.ok) - Number(b.ok))[0];
    const out: ServerHealth = { state: srv.alive ? 'up' : 'down', checker: srv.checkers.map((c) => c.cfg.type).join('+') };
    if (last) out.lastCheck = { at: last.at, ok: last.ok, reason: last.reason, latencyMs: last.latencyMs };
    return out;
  }

  /**
   * The declared real servers of `service` that health checking keeps out of the table
   * (a failed check, or a lost quorum with a sorry server), with their health, so that
   * /v1/health, the dashboard and `tsvs top` still list them (docs/health.md).
   */
  removed(service: ServiceKey): Array<{ id: string; health: ServerHealth }> {
    const s = this.services.get(serviceId(service));
    if (!s) return [];
    const out: Array<{ id: string; health: ServerHealth }> = [];
    for (const [id, want] of this.desired(s)) {
      if (want !== null || !s.servers.has(id)) continue;
      out.push({ id, health: this.get(service, id) });
    }
    return out;
  }

  // ---------------------------------------------------------------- internals

  private weightSum(s: ServiceRun): number {
    return liveWeightSum(s.cfg, (rs) => this.statusOf(s, rs));
  }

  private statusOf(s: ServiceRun, rs: CheckedDest): ServerStatus {
    const srv = s.servers.get(destId(rs));
    if (!srv) return { alive: true };
    const dyn = srv.checkers.map((c) => c.dynamicWeight).find((w) => w !== undefined);
    return { alive: srv.alive, dynamicWeight: dyn };
  }

  private desired(s: ServiceRun): Map<string, DestConfig | null> {
    return desiredDests(s.cfg, (rs) => this.statusOf(s, rs), s.quorumUp);
  }

  private scheduleAll(initial: boolean): void {
    for (const s of this.services.values()) {
      for (const srv of s.servers.values()) {
        for (const c of srv.checkers) {
          if (c.timer || c.runningGen === c.generation) continue;
          const ms = c.cfg.interval * 1000;
          this.arm(s, srv, c, initial ? Math.random() * Math.min(ms, 1000) : ms);
        }
      }
    }
  }

  private arm(s: ServiceRun, srv: ServerRun, c: CheckerRun, delayMs: number): void {
    const gen = c.generation;
    c.timer = setTimeout(() => {
      c.timer = null;
      if (gen === c.generation)
        this.cycle(s, srv, c, gen).catch((e: unknown) =>
          this.log.error({ service: s.label, server: destId(srv.rs), err: errText(e) }, `${this.checkName(s, srv, c)}: internal error`),
        );
    }, delayMs);
    c.timer.unref();
  }

  private stopChecker(c: CheckerRun): void {
    c.generation++;
    if (c.timer) clearTimeout(c.timer);
    c.timer = null;
  }

  /** One check cycle: an attempt, and while the checker is up, up to `retry` more after failures. */
  private async cycle(s: ServiceRun, srv: ServerRun, c: CheckerRun, gen: number): Promise<void> {
    c.runningGen = gen;
    const fn = this.checkFns[c.cfg.type];
    const target = {
      host: c.cfg.connectIp ?? srv.rs.addr,
      port: c.cfg.connectPort ?? (srv.rs.port || s.cfg.port),
      serverAddr: srv.rs.addr,
      serverPort: srv.rs.port,
    };
    let result: CheckResult;
    let retries = 0;
    try {
      for (;;) {
        result = await probe(fn, c.cfg, target);
        if (gen !== c.generation) return;
        if (result.ok || c.counters.state === 'down' || retries >= c.cfg.retry) break;
        retries++;
        this.log.debug(
          { service: s.label, server: destId(srv.rs), reason: result.reason, retry: retries },
          `${this.checkName(s, srv, c)} failed (${result.reason}); retry ${retries} of ${c.cfg.retry}`,
        );
        await new Promise((r) => setTimeout(r, c.cfg.delayBeforeRetry * 1000).unref());
        if (gen !== c.generation) return;
      }
    } finally {
      if (c.runningGen === gen) c.runningGen = -1;
    }
    c.last = { ...result, at: new Date().toISOString() };
    const weightBefore = c.dynamicWeight;
    if (result.ok) c.dynamicWeight = result.weight;
    const { next, changed } = stepChecker(c.counters, result.ok, c.cfg);
    c.counters = next;
    if (changed) this.onTransition(s, srv, c, result, retries);
    else if (result.ok && weightBefore !== c.dynamicWeight && srv.alive) {
      this.log.info(
        { service: s.label, server: destId(srv.rs), weight: c.dynamicWeight },
        `${this.checkName(s, srv, c)} set weight ${c.dynamicWeight ?? srv.rs.weight}`,
      );
      this.reconcile(s);
    }
    if (this.started && gen === c.generation) this.arm(s, srv, c, c.cfg.interval * 1000);
  }

  private checkName(s: ServiceRun, srv: ServerRun, c: CheckerRun): string {
    return `${CHECKER_LABEL[c.cfg.type]} check of ${destId(srv.rs)} in ${s.label}`;
  }

  private onTransition(s: ServiceRun, srv: ServerRun, c: CheckerRun, r: CheckResult, retries: number): void {
    const wasAlive = srv.alive;
    srv.alive = srv.checkers.every((x) => x.counters.state === 'up');
    const name = this.checkName(s, srv, c);
    const what =
      c.counters.state === 'down'
        ? `failed${retries ? ` after ${retries} ${retries === 1 ? 'retry' : 'retries'}` : ''} (${r.reason})`
        : `passed${c.cfg.rise > 1 ? ` ${c.cfg.rise} times` : ''} (${r.reason})`;
    const quorumWas = s.quorumUp;
    s.quorumUp = nextQuorum(s.quorumUp, this.weightSum(s), s.cfg.quorum, s.cfg.hysteresis);
    let action: string;
    if (wasAlive === srv.alive) action = srv.alive ? 'server already up' : 'server stays down (another checker fails)';
    else if (!srv.alive) action = srv.rs.inhibitOnFailure ? 'weight set to 0 (inhibit_on_failure)' : 'removed';
    else if (s.cfg.sorryServer && !s.quorumUp) action = 'kept out: quorum not reached, sorry server in';
    else action = `restored with weight ${this.statusOf(s, srv.rs).dynamicWeight ?? srv.rs.weight}`;
    const fields = { service: s.label, server: destId(srv.rs), checker: c.cfg.type, state: c.counters.state, reason: r.reason };
    if (c.counters.state === 'down') this.log.warn(fields, `${name} ${what}; ${action}`);
    else this.log.info(fields, `${name} ${what}; ${action}`);
    if (wasAlive !== srv.alive) {
      const script = srv.alive ? srv.rs.notifyUp : srv.rs.notifyDown;
      if (script) this.notify(script, s, srv, srv.alive ? 'UP' : 'DOWN');
    }
    if (quorumWas !== s.quorumUp) {
      const sum = this.weightSum(s);
      const msg = s.quorumUp
        ? `${s.label}: quorum regained (live weight ${sum} >= ${s.cfg.quorum + s.cfg.hysteresis})${s.cfg.sorryServer ? '; sorry server out, real servers back' : ''}`
        : `${s.label}: quorum lost (live weight ${sum} < ${s.cfg.quorum - s.cfg.hysteresis})${s.cfg.sorryServer ? '; real servers out, sorry server in' : ''}`;
      this.log.warn({ service: s.label, quorum: s.quorumUp ? 'up' : 'down', weight: sum }, msg);
      const script = s.quorumUp ? s.cfg.quorumUp : s.cfg.quorumDown;
      if (script) this.notify(script, s, null, s.quorumUp ? 'QUORUM_UP' : 'QUORUM_DOWN');
    }
    this.reconcile(s);
  }

  private notify(command: string, s: ServiceRun, srv: ServerRun | null, state: string): void {
    const env: Record<string, string> = { TSVS_SERVICE: s.label, TSVS_STATE: state };
    if (srv) env.TSVS_SERVER = destId(srv.rs);
    this.log.info({ service: s.label, server: srv ? destId(srv.rs) : undefined, script: command }, `running notify script for ${state}`);
    try {
      this.runScript(command, env);
    } catch (e) {
      this.log.error({ script: command, err: (e as Error).message }, 'notify script failed to start');
    }
  }

  /** Makes the table's declared servers of `s` match its health, through PoolControl.apply. */
  private reconcile(s: ServiceRun): void {
    this.queue = this.queue.then(async () => {
      if (this.services.get(serviceId(s.key)) !== s) return; // replaced by a reload meanwhile
      const live = this.opts.director.table.get(s.key);
      if (!live) {
        this.log.warn({ service: s.label }, `${s.label} is not in the table (deleted with tsvsadm?); health changes not applied`);
        return;
      }
      const ops = destOps(
        s.key,
        live.dests.map((d) => d.config()),
        this.desired(s),
      );
      if (!ops.length) return;
      try {
        await this.opts.director.apply(ops);
      } catch (e) {
        this.log.error({ service: s.label, err: (e as Error).message }, `${s.label}: could not apply health change`);
      }
    });
  }
}

/**
 * One attempt through a checker, whatever it does: a checker that throws or rejects
 * (a bad port, an address the socket refuses) gives a failed check with the error as its
 * reason, never an uncaught exception in the director.
 */
async function probe(fn: CheckFn, cfg: CheckerConfig, target: CheckTarget): Promise<CheckResult> {
  const t0 = performance.now();
  try {
    return await fn(cfg, target);
  } catch (e) {
    return { ok: false, reason: errText(e), latencyMs: since(t0) };
  }
}

function defaultRunScript(command: string, env: Record<string, string>): void {
  const argv = splitCommand(command);
  if (!argv.length) return;
  const child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: 'ignore', env: { ...process.env, ...env } });
  child.on('error', () => undefined);
  const t = setTimeout(() => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      /* gone */
    }
  }, 30_000);
  t.unref();
  child.once('exit', () => clearTimeout(t));
  child.unref();
}
