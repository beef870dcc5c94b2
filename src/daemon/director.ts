/**
 * The director: the core table, the data plane that carries it and the state file, wired
 * so that every change goes through one path. A batch of operations is validated by the
 * core, offered to the data plane (which may refuse it, e.g. a VIP it cannot bind), applied,
 * journaled and logged, one batch at a time; its caller hears back once it is on disk.
 */
import type { Logger } from 'pino';
import type { ApiDirector } from '../api/director.js';
import { TsvsError } from '../core/errors.js';
import { serviceLabel, destId, serviceId } from '../core/service.js';
import type { IpvsTable } from '../core/table.js';
import type { Op } from '../core/types.js';
import { BindError, type DataPlane } from '../dataplane/dataplane.js';
import type { SaveStatus } from '../api/director.js';
import type { StateStore } from './state.js';

/** Batches up to this size are logged op by op. */
const MAX_LOGGED_OPS = 50;

/** How a batch goes in: saved (a change), restored (saved whole later), or restored past a plane that cannot bind it yet. */
type ApplyMode = 'save' | 'restore' | 'unbound';

/** What a restore that went service by service could not bring up whole. */
export interface RestoreReport {
  /** Services in the table that the data plane does not carry yet: it keeps trying to bind them. */
  unbound: string[];
  /** Services left out of the table, with the reason: their saved entry does not apply. */
  skipped: Array<{ service: string; reason: string }>;
}

const FWD_NAMES = { masq: 'Masq (-m)', route: 'Route (-g)', tunnel: 'Tunnel (-i)', fullnat: 'FullNat' } as const;

/** The table, its data plane and its state file, changed one batch at a time. */
export class Director implements ApiDirector {
  private queue: Promise<unknown> = Promise.resolve();
  private ticker: NodeJS.Timeout | null = null;

  constructor(
    readonly table: IpvsTable,
    readonly dataplane: DataPlane,
    readonly store: StateStore | null,
    readonly log: Logger,
  ) {}

  /** Starts the data plane on the table's current contents and the housekeeping tick. */
  async start(): Promise<void> {
    await this.dataplane.start(this.table);
    // Expiry of connection entries and the 2 s rate estimator run from here.
    this.ticker = setInterval(() => this.table.tick(), 1000);
    this.ticker.unref();
  }

  /**
   * Applies a batch atomically: all operations take effect or none do. Batches are
   * serialized, so concurrent clients see each other's changes in a definite order. It
   * resolves once the batch is applied and saved. The next batch may be applied while this
   * one is still being written, so that batches waiting for the disk share one write.
   */
  apply(ops: readonly Op[]): Promise<void> {
    return this.enqueue(ops, 'save');
  }

  /**
   * Applies a batch without saving it: for the table restored at start, which the caller
   * then saves whole (StateStore.open).
   */
  restore(ops: readonly Op[]): Promise<void> {
    return this.enqueue(ops, 'restore');
  }

  /**
   * A restore that did not apply whole, again one service at a time (its operations in
   * their order, operations without a service on their own): every service that applies
   * comes up. One whose address the data plane cannot bind (a port another program holds)
   * goes into the table anyway, and the plane keeps trying to bind it (UserspaceDataPlane
   * `unbound()`); one that does not apply at all is left out and reported.
   */
  async restoreEach(ops: readonly Op[]): Promise<RestoreReport> {
    const report: RestoreReport = { unbound: [], skipped: [] };
    for (const group of groupByService(ops)) {
      const outcome = await this.restoreGroup(group.ops);
      if (outcome === 'unbound') report.unbound.push(group.label);
      else if (outcome !== 'up') report.skipped.push({ service: group.label, reason: outcome.reason });
    }
    return report;
  }

  /** One service of restoreEach: up, in the table but not bound yet, or left out with the reason. */
  private async restoreGroup(ops: Op[]): Promise<'up' | 'unbound' | { reason: string }> {
    try {
      await this.enqueue(ops, 'restore');
      return 'up';
    } catch (e) {
      if (!(e instanceof BindError)) return { reason: reasonOf(e) };
    }
    try {
      await this.enqueue(ops, 'unbound');
      return 'unbound';
    } catch (e) {
      return { reason: reasonOf(e) };
    }
  }

  private enqueue(ops: readonly Op[], mode: ApplyMode): Promise<void> {
    const run = this.queue.then(() => this.applyNow(ops, mode));
    this.queue = run.catch(() => undefined);
    // The queue moves on once the batch is applied; the caller also waits for the save.
    return run.then((r) => r.saved);
  }

  private async applyNow(ops: readonly Op[], mode: ApplyMode): Promise<{ saved: Promise<void> }> {
    if (!Array.isArray(ops)) throw new TsvsError('BAD_REQUEST', 'ops must be an array of operations');
    const t0 = performance.now();
    const store = mode === 'save' ? this.store : null;
    // Bounded: a batch waits here while too many are waiting for the disk.
    if (store) await store.room();
    const checked = this.table.validate(ops);
    this.checkMethods(checked);
    if (mode === 'unbound') {
      // The plane binds what it finds in the table late, and retries (see restoreEach).
      this.table.applyAll(checked);
      this.logBatch(checked, performance.now() - t0);
      return { saved: Promise.resolve() };
    }
    await this.dataplane.prepare(checked);
    try {
      this.table.applyAll(checked);
    } catch (e) {
      this.dataplane.abort(checked);
      throw e;
    }
    // Recorded in the same tick as the apply, so the journal's order is the table's.
    const saved = store ? store.record(checked) : Promise.resolve();
    this.logBatch(checked, performance.now() - t0);
    return {
      saved: saved.catch((e: unknown) => {
        // The change is live but not durable: say so rather than pretend (the store keeps saying so, and retries).
        this.log.error({ err: (e as Error).message, path: store!.path }, 'change applied but not saved to the state file');
        throw new TsvsError(
          'NOT_SAVED',
          `state file ${store!.path}: ${(e as Error).message}; the change is applied, tsvsd runs unsaved and writes the whole table again once the disk takes it`,
          `Change applied but not saved: ${(e as Error).message}`,
        );
      }),
    };
  }

  /**
   * One line per operation for ordinary changes; a big batch (a restore) gets one summary
   * line instead of one per operation, so 50,000 lines do not become 50,000 log lines.
   * `ms`: validation, the data plane and the table, up to the journal's write.
   */
  private logBatch(ops: readonly Op[], ms: number): void {
    const took = Math.round(ms * 100) / 100;
    if (ops.length <= MAX_LOGGED_OPS) {
      for (const op of ops) this.log.info({ op: describeOp(op), ms: took }, `applied ${op.op}`);
      return;
    }
    const counts: Record<string, number> = {};
    for (const op of ops) counts[op.op] = (counts[op.op] ?? 0) + 1;
    this.log.info({ ops: ops.length, counts, ms: took }, `applied a batch of ${ops.length} operations`);
  }

  /** Refuses real servers whose forwarding method this data plane cannot carry. */
  private checkMethods(ops: readonly Op[]): void {
    for (const op of ops) {
      if ((op.op === 'add-server' || op.op === 'edit-server') && !this.dataplane.methods.has(op.dest.fwd)) {
        const supported = [...this.dataplane.methods].map((m) => FWD_NAMES[m]).join(', ');
        throw new TsvsError(
          'NOT_SUPPORTED',
          `${serviceLabel(op.service)} real server ${destId(op.dest)}: forwarding method ${FWD_NAMES[op.dest.fwd]} is not supported by the ${this.dataplane.name} data plane`,
          `Forwarding method ${FWD_NAMES[op.dest.fwd]} is not supported by the ${this.dataplane.name} data plane (supported: ${supported})`,
        );
      }
    }
  }

  /** Whether the live table is on disk; null without --state. */
  saveStatus(): SaveStatus | null {
    return this.store?.status() ?? null;
  }

  /** Stops the tick and drains the data plane. */
  async stop(drainMs: number): Promise<void> {
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = null;
    await this.dataplane.stop(drainMs);
    await this.store?.close();
  }
}

/** A restore's operations split by service, in their order; operations without a service stand alone. */
function groupByService(ops: readonly Op[]): Array<{ label: string; ops: Op[] }> {
  const groups: Array<{ label: string; ops: Op[] }> = [];
  const byId = new Map<string, { label: string; ops: Op[] }>();
  for (const op of ops) {
    const svc = 'service' in op ? op.service : undefined;
    if (!svc) {
      groups.push({ label: describeOp(op), ops: [op] });
      continue;
    }
    const id = serviceId(svc);
    let g = byId.get(id);
    if (!g) {
      g = { label: serviceLabel(svc), ops: [] };
      byId.set(id, g);
      groups.push(g);
    }
    g.ops.push(op);
  }
  return groups;
}

function reasonOf(e: unknown): string {
  return e instanceof TsvsError ? `${e.detail} (${e.message})` : (e as Error).message;
}

/** A one-line description of an operation for logs, in ipvsadm's terms. */
function describeOp(op: Op): string {
  switch (op.op) {
    case 'add-service':
    case 'edit-service':
      return `${op.op} ${serviceLabel(op.service)} ${op.service.scheduler}${op.service.persistent ? ` persistent ${op.service.persistent}` : ''}`;
    case 'delete-service':
      return `${op.op} ${serviceLabel(op.service)}`;
    case 'add-server':
    case 'edit-server':
      return `${op.op} ${serviceLabel(op.service)} -> ${destId(op.dest)} ${op.dest.fwd} weight ${op.dest.weight}`;
    case 'delete-server':
      return `${op.op} ${serviceLabel(op.service)} -> ${destId(op.dest)}`;
    case 'zero':
      return op.service ? `zero ${serviceLabel(op.service)}` : 'zero all';
    case 'set-timeouts':
      return `set timeouts tcp ${op.timeouts.tcp} tcpfin ${op.timeouts.tcpfin} udp ${op.timeouts.udp}`;
    case 'flush':
      return 'flush';
  }
}
