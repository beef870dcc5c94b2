/**
 * The nftables plane's connection limits as the operator sees them: the named counters
 * of the `ct count over N ... drop` rules (nat.ts) are read once per read-back period; what
 * they dropped since the last read is logged (one line per service and limit) and added to
 * the totals behind tsvs_limit_refused_total. The kernel counts dropped first packets, so a
 * TCP client that retransmits its SYN is counted again.
 */
import type { LogFn } from '../../core/log.js';
import type { VirtualService } from '../../core/service.js';
import { clientLimitCounter, GLOBAL_LIMIT_COUNTER, serviceLimitCounter, type Fam } from './nat.js';
import type { NftModel } from './model.js';
import { nftCounters } from './nft.js';
import type { Runner } from './exec.js';

/** The limits' names, as the userspace plane's (userspace/limits.ts). */
type Limit = 'global' | 'service' | 'client';

/** The totals of the limit counters, read back from the kernel. */
export class NftLimitCounters {
  /** Dropped by a limit, by service label then limit (the global chain counts under service ""). */
  private readonly totals = new Map<string, Map<Limit, number>>();
  /** Last raw value per counter ("ip/lims3"). */
  private readonly last = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;
  private running = false;

  constructor(
    private readonly run: Runner,
    private readonly model: NftModel,
    private readonly log: LogFn,
  ) {}

  /** Polls every `ms` while the plane runs; nothing to do when no limit is set. */
  start(services: () => readonly VirtualService[], ms: number): void {
    const l = this.model.limits;
    const any = l.maxConns || l.perClient || l.perService;
    this.timer = setInterval(() => {
      if (this.running) return;
      if (!any && !services().some((s) => s.maxConns || s.maxConnsPerClient)) return;
      this.running = true;
      this.poll(services()).finally(() => {
        this.running = false;
      });
    }, ms);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** One read of every limit counter. */
  async poll(services: readonly VirtualService[]): Promise<void> {
    const names: Record<Fam, string[]> = { ip: [], ip6: [] };
    const owner = new Map<string, { label: string; limit: Limit }>();
    const want = (f: Fam, name: string, label: string, limit: Limit) => {
      names[f].push(name);
      owner.set(`${f}/${name}`, { label, limit });
    };
    if (this.model.limits.maxConns) for (const f of ['ip', 'ip6'] as const) want(f, GLOBAL_LIMIT_COUNTER, '', 'global');
    for (const svc of services) {
      const frag = this.model.frags.get(svc.id);
      if (!frag) continue;
      const id = Number(frag.chain.slice(3));
      if (frag.counters.includes(serviceLimitCounter(id))) want(frag.f, serviceLimitCounter(id), svc.label, 'service');
      if (frag.counters.includes(clientLimitCounter(id))) want(frag.f, clientLimitCounter(id), svc.label, 'client');
    }
    let values: Awaited<ReturnType<typeof nftCounters>>;
    try {
      values = await nftCounters(this.run, names);
    } catch (e) {
      this.log('warn', 'nftables: reading the connection-limit counters failed', { err: (e as Error).message });
      return;
    }
    for (const [key, v] of values) {
      const o = owner.get(key);
      if (!o) continue;
      const prev = this.last.get(key) ?? 0;
      this.last.set(key, v.packets);
      // A counter made again (service re-added) starts from 0.
      const delta = v.packets >= prev ? v.packets - prev : v.packets;
      if (!delta) continue;
      let m = this.totals.get(o.label);
      if (!m) this.totals.set(o.label, (m = new Map()));
      m.set(o.limit, (m.get(o.limit) ?? 0) + delta);
      this.log('warn', `${o.label || 'director'}: ${o.limit} connection limit dropped ${delta} new connection packet(s)`, {
        service: o.label,
        limit: o.limit,
        dropped: delta,
      });
    }
  }

  /** The totals as rows, for metrics. */
  rows(): Array<{ service: string; limit: string; count: number }> {
    const out = [];
    for (const [service, m] of this.totals) for (const [limit, count] of m) out.push({ service, limit, count });
    return out;
  }
}
