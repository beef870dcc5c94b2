/**
 * The configuration as the daemon runs it: the start from --config, reload on SIGHUP (and
 * through the API), and the health engine that follows it. Reload is a diff (see
 * src/config/diff.ts for the rule on tsvsadm changes): the new file is parsed and validated
 * as a whole, the operations that bring the table to it are computed against the running
 * table and applied as one atomic batch through Director.apply; health state and
 * connections of everything unchanged carry over. A file with any error is refused and
 * nothing changes.
 */
import type { Logger } from 'pino';
import { isTsvsError } from '../core/errors.js';
import { destId, serviceLabel } from '../core/service.js';
import type { DestKey, ServiceKey } from '../core/types.js';
import { planReload } from '../config/diff.js';
import type { TsvsConfig } from '../config/model.js';
import { formatDiagnostic } from '../config/errors.js';
import { HealthEngine } from '../health/engine.js';
import { loadConfig, type LoadedConfig } from '../config/load.js';
import type { Director } from './director.js';

export interface ReloadResult {
  ok: boolean;
  /** One line per change applied. */
  changes: string[];
  /** Why the file was refused. */
  error?: string;
}

export class ConfigManager {
  readonly engine: HealthEngine;
  current: TsvsConfig | null = null;
  private draining: Array<{ service: ServiceKey; dest: DestKey }> = [];
  private drainTimer: NodeJS.Timeout | null = null;
  private reloading: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly director: Director,
    private readonly log: Logger,
    readonly path: string,
  ) {
    this.engine = new HealthEngine({ director, log });
  }

  /**
   * Puts a loaded config into effect at start, on top of whatever the table holds (the
   * saved state): the config is authoritative for what it declares. Rules files keep their
   * old meaning: the daemon applied their operations (or the saved state) already.
   */
  async start(loaded: LoadedConfig): Promise<void> {
    this.reportUnsupported(loaded.config);
    if (loaded.format !== 'ipvsadm') {
      const prepared = this.engine.prepare(loaded.config);
      const plan = planReload(this.director.table.config(), null, prepared.desired(), loaded.config.timeouts);
      if (plan.ops.length) await this.director.apply(plan.ops);
      this.engine.commit(prepared);
      this.log.info({ config: this.path, format: loaded.format, changes: plan.summary.length }, 'configuration applied');
    }
    this.current = loaded.config;
    this.engine.start();
  }

  /** Re-reads the file and applies the difference. Never throws; a refused file changes nothing. */
  reload(): Promise<ReloadResult> {
    const run = this.reloading.then(() => this.reloadNow());
    this.reloading = run.catch(() => undefined);
    return run;
  }

  private async reloadNow(): Promise<ReloadResult> {
    let loaded: LoadedConfig;
    const t0 = performance.now();
    try {
      loaded = await loadConfig(this.path, { thread: 'worker' });
    } catch (e) {
      const why = isTsvsError(e) ? e.detail : (e as Error).message;
      this.log.error({ config: this.path, err: why }, `reload refused: ${this.path} has errors; the running table is unchanged`);
      return { ok: false, changes: [], error: why };
    }
    const readMs = Math.round(performance.now() - t0);
    const emptying = this.wouldEmpty(loaded);
    if (emptying) {
      this.log.error({ config: this.path, err: emptying }, `reload refused: ${emptying}; the running table is unchanged`);
      return { ok: false, changes: [], error: emptying };
    }
    this.reportUnsupported(loaded.config);
    try {
      const t1 = performance.now();
      const changes = await this.engine.exclusive(async () => {
        const prepared = this.engine.prepare(loaded.config);
        const plan = planReload(this.director.table.config(), this.current?.services ?? null, prepared.desired(), loaded.config.timeouts);
        if (plan.ops.length) await this.director.apply(plan.ops);
        this.engine.commit(prepared);
        this.current = loaded.config;
        this.addDrain(plan.drain);
        return plan.summary;
      });
      for (const c of changes) this.log.info({ config: this.path }, `reload: ${c}`);
      this.log.info(
        { config: this.path, changes: changes.length, readMs, applyMs: Math.round(performance.now() - t1) },
        changes.length ? `reloaded ${this.path}: ${changes.length} change(s)` : `reloaded ${this.path}: no change`,
      );
      return { ok: true, changes };
    } catch (e) {
      const why = isTsvsError(e) ? `${e.detail} (${e.message})` : (e as Error).message;
      this.log.error(
        { config: this.path, err: why },
        `reload refused: the table would not take the change; the running table is unchanged`,
      );
      return { ok: false, changes: [], error: why };
    }
  }

  /**
   * Why a reload would remove every service the running config declares without saying so,
   * or null: a YAML file left empty, or without its `services:` key (truncated, or the wrong
   * file), is refused; `services: []` removes them all on purpose.
   */
  private wouldEmpty(loaded: LoadedConfig): string | null {
    const running = this.current?.services.length ?? 0;
    const cfg = loaded.config;
    if (loaded.format !== 'yaml' || cfg.services.length || cfg.noServicesOnPurpose || !running) return null;
    return `${this.path} declares no services (an empty file, or no "services:" key), which would remove all ${running} running; write "services: []" to remove every service on purpose`;
  }

  async stop(): Promise<void> {
    if (this.drainTimer) clearInterval(this.drainTimer);
    this.drainTimer = null;
    await this.engine.stop();
  }

  private reportUnsupported(cfg: TsvsConfig): void {
    for (const d of cfg.unsupported) this.log.warn({ config: this.path }, formatDiagnostic(d));
  }

  /** Servers removed from the config with inhibit_on_failure: weight 0 now, deleted when their connections are gone. */
  private addDrain(items: Array<{ service: ServiceKey; dest: DestKey }>): void {
    this.draining.push(...items);
    if (!this.draining.length || this.drainTimer) return;
    this.drainTimer = setInterval(() => void this.drainTick(), 500);
    this.drainTimer.unref();
  }

  private async drainTick(): Promise<void> {
    const keep: typeof this.draining = [];
    for (const item of this.draining) {
      const svc = this.director.table.get(item.service);
      const d = svc?.dests.find((x) => x.id === destId(item.dest));
      const declared = this.current?.services.some(
        (s) => serviceLabel(s) === serviceLabel(item.service) && s.realServers.some((r) => destId(r) === destId(item.dest)),
      );
      if (!svc || !d || d.weight !== 0 || declared) continue; // gone, or taken back by config or tsvsadm
      // Established connections must finish; closed ones lingering in FIN_WAIT/TIME_WAIT survive the delete (as in IPVS).
      if (d.activeconns > 0) {
        keep.push(item);
        continue;
      }
      try {
        await this.engine.exclusive(() => this.director.apply([{ op: 'delete-server', service: item.service, dest: item.dest }]));
        this.log.info(
          { service: serviceLabel(item.service), server: d.id },
          `${serviceLabel(item.service)}: removed real server ${d.id} drained; deleted`,
        );
      } catch (e) {
        this.log.warn({ err: (e as Error).message }, `could not delete drained real server ${d.id}`);
      }
    }
    this.draining = keep;
    if (!keep.length && this.drainTimer) {
      clearInterval(this.drainTimer);
      this.drainTimer = null;
    }
  }
}
