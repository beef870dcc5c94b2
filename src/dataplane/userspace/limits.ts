/**
 * The userspace plane's connection limits, as haproxy's `maxconn` (global and per
 * frontend) and its per-source stick-table limits, plus the file descriptors a proxy is
 * really bounded by:
 *
 * - `maxConns`: TCP connections plus UDP flows over all services;
 * - `maxConnsPerService`: the same, for each virtual service;
 * - `maxConnsPerClient`: for each client address within a service;
 * - `maxUdpFlows`: UDP flows over all services (each holds a socket toward its real server);
 * - `fdReserve`: descriptors kept free of client traffic, so the control socket, the API
 *   and health checks always get one. New clients are refused once the process holds
 *   RLIMIT_NOFILE - fdReserve descriptors.
 *
 * A UDP flow limit or the descriptor ceiling first reaps the UDP flow that has been idle
 * longest (if idle for REAP_MIN_IDLE_MS at least), and refuses only when there is none.
 *
 * Every refusal counts in `refused` (`tsvs_limit_refused_total{service,limit}`) and logs
 * one line per service and limit per second (ProxyContext.logLimited).
 */
import { readFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';

/** The limits, as tsvsd options set them; 0 or absent = no limit. */
export interface LimitOptions {
  /** TCP connections plus UDP flows over all services (tsvsd --max-conns). */
  maxConns?: number | undefined;
  /** The same, per virtual service (--max-conns-per-service). */
  maxConnsPerService?: number | undefined;
  /** The same, per client address within a service (--max-conns-per-client). */
  maxConnsPerClient?: number | undefined;
  /** UDP flows over all services (--max-udp-flows). */
  maxUdpFlows?: number | undefined;
  /** Descriptors kept free of client traffic (--fd-reserve); default DEFAULT_FD_RESERVE. */
  fdReserve?: number | undefined;
  /** The descriptor limit; default the soft RLIMIT_NOFILE of this process (tests set it). */
  fdLimit?: number | undefined;
}

/** What the limits read of a service: its id and its own limits (undefined or 0: tsvsd's). */
export interface ServiceLimits {
  readonly id: string;
  readonly maxConns?: number | undefined;
  readonly maxConnsPerClient?: number | undefined;
}

/** The names of the limits, as the metric's `limit` label and the log lines spell them. */
export type LimitName = 'global' | 'service' | 'client' | 'udp-flows' | 'fd-reserve';

/** Default descriptors reserved for the control socket, the API and health checks. */
export const DEFAULT_FD_RESERVE = 128;
/** A UDP flow idle for less than this is never reaped to make room. */
export const REAP_MIN_IDLE_MS = 1000;
/** How often the real descriptor count is sampled (between samples it is estimated). */
const FD_SAMPLE_MS = 1000;

/** The soft RLIMIT_NOFILE of this process (`ulimit -n`), from /proc/self/limits; Infinity if unlimited or unknown. */
export function fdSoftLimit(): number {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const soft = line?.slice('Max open files'.length).trim().split(/\s+/)[0];
    const n = Number(soft);
    return Number.isInteger(n) && n > 0 ? n : Infinity;
  } catch {
    return Infinity;
  }
}

/** Counts of what the limits watch, and of what they refused. */
export class Limits {
  readonly maxConns: number;
  readonly maxConnsPerService: number;
  readonly maxConnsPerClient: number;
  readonly maxUdpFlows: number;
  readonly fdReserve: number;
  readonly fdLimit: number;
  /** TCP connections and UDP flows open now. */
  total = 0;
  udpFlows = 0;
  private readonly perService = new Map<string, number>();
  /** By service id, then client address. */
  private readonly perClient = new Map<string, Map<string, number>>();
  /** Refusals, by service label, then limit. */
  readonly refused = new Map<string, Map<LimitName, number>>();
  /** UDP flows closed to make room. */
  reaped = 0;
  /** Descriptors the plane holds for clients (2 per TCP session, 1 per UDP flow), kept up to date. */
  private tracked = 0;
  private fdSampled = 0;
  private trackedAtSample = 0;
  private sampling = false;
  private sampledAt = -Infinity;

  constructor(o: LimitOptions = {}) {
    const lim = (v: number | undefined) => (v && v > 0 ? v : Infinity);
    this.maxConns = lim(o.maxConns);
    this.maxConnsPerService = lim(o.maxConnsPerService);
    this.maxConnsPerClient = lim(o.maxConnsPerClient);
    this.maxUdpFlows = lim(o.maxUdpFlows);
    this.fdLimit = o.fdLimit ?? fdSoftLimit();
    // Never reserve more than half of what there is: a small ulimit still carries traffic.
    const reserve = o.fdReserve ?? DEFAULT_FD_RESERVE;
    this.fdReserve = Number.isFinite(this.fdLimit) ? Math.min(reserve, Math.floor(this.fdLimit / 2)) : reserve;
  }

  /** What the limits are, for the start-up log line. */
  describe(): Record<string, number | string> {
    const v = (n: number) => (Number.isFinite(n) ? n : 'none');
    return {
      maxConns: v(this.maxConns),
      maxConnsPerService: v(this.maxConnsPerService),
      maxConnsPerClient: v(this.maxConnsPerClient),
      maxUdpFlows: v(this.maxUdpFlows),
      fdLimit: v(this.fdLimit),
      fdReserve: this.fdReserve,
    };
  }

  /** Descriptors open in this process, estimated from the last sample plus what the plane opened since. */
  fdsInUse(): number {
    return this.fdSampled + (this.tracked - this.trackedAtSample);
  }

  /** Re-counts /proc/self/fd, at most once per FD_SAMPLE_MS (asynchronous: the data path never waits on it). */
  sample(now: number): void {
    if (this.sampling || now - this.sampledAt < FD_SAMPLE_MS || !Number.isFinite(this.fdLimit)) return;
    this.sampling = true;
    this.sampledAt = now;
    const at = this.tracked;
    readdir('/proc/self/fd').then(
      (names) => {
        this.sampling = false;
        // readdir itself held one descriptor while it read.
        this.fdSampled = names.length - 1;
        this.trackedAtSample = at;
      },
      () => {
        this.sampling = false;
      },
    );
  }

  /** Samples now and waits for it (start-up, tests). */
  async sampleNow(): Promise<void> {
    try {
      const at = this.tracked;
      const names = await readdir('/proc/self/fd');
      this.fdSampled = names.length - 1;
      this.trackedAtSample = at;
    } catch {
      // no /proc: the estimate stays relative
    }
  }

  /** True when `fds` more descriptors would eat into the reserve. */
  fdsShort(fds: number): boolean {
    return this.fdsInUse() + fds > this.fdLimit - this.fdReserve;
  }

  /**
   * The limit a new connection (or UDP flow) of `svcId` from `caddr` would break, or null.
   * `fds`: the descriptors it needs (2 for TCP, 1 for a UDP flow). The descriptor ceiling
   * and the UDP flow cap come last: the caller may reap an idle flow and ask again.
   */
  check(svc: ServiceLimits, caddr: string, udp: boolean, fds: number): LimitName | null {
    if (this.total >= this.maxConns) return 'global';
    if ((this.perService.get(svc.id) ?? 0) >= (svc.maxConns || this.maxConnsPerService)) return 'service';
    const perClient = svc.maxConnsPerClient || this.maxConnsPerClient;
    if (Number.isFinite(perClient) && (this.perClient.get(svc.id)?.get(caddr) ?? 0) >= perClient) return 'client';
    if (udp && this.udpFlows >= this.maxUdpFlows) return 'udp-flows';
    if (this.fdsShort(fds)) return 'fd-reserve';
    return null;
  }

  /** A connection or flow was let in. */
  acquire(svcId: string, caddr: string, udp: boolean, fds: number): void {
    this.total++;
    this.tracked += fds;
    if (udp) this.udpFlows++;
    this.perService.set(svcId, (this.perService.get(svcId) ?? 0) + 1);
    {
      let m = this.perClient.get(svcId);
      if (!m) {
        m = new Map();
        this.perClient.set(svcId, m);
      }
      m.set(caddr, (m.get(caddr) ?? 0) + 1);
    }
  }

  /** A connection or flow let in by `acquire` is gone. */
  release(svcId: string, caddr: string, udp: boolean, fds: number): void {
    this.total--;
    this.tracked -= fds;
    if (udp) this.udpFlows--;
    const n = (this.perService.get(svcId) ?? 1) - 1;
    if (n > 0) this.perService.set(svcId, n);
    else this.perService.delete(svcId);
    const m = this.perClient.get(svcId);
    if (m) {
      const c = (m.get(caddr) ?? 1) - 1;
      if (c > 0) m.set(caddr, c);
      else m.delete(caddr);
      if (m.size === 0) this.perClient.delete(svcId);
    }
  }

  /** Counts a refusal. */
  count(service: string, limit: LimitName): void {
    let m = this.refused.get(service);
    if (!m) {
      m = new Map();
      this.refused.set(service, m);
    }
    m.set(limit, (m.get(limit) ?? 0) + 1);
  }

  /** Refusals as rows, for metrics. */
  refusedRows(): Array<{ service: string; limit: LimitName; count: number }> {
    const rows = [];
    for (const [service, m] of this.refused) for (const [limit, count] of m) rows.push({ service, limit, count });
    return rows;
  }
}
