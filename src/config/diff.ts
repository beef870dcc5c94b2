/**
 * Reload is a diff (keepalived ipwrapper.c): the operations that move the running table to
 * what a new configuration declares, and nothing else. Pure.
 *
 * The rule for changes made with tsvsadm since start: the configuration is authoritative
 * for what it declares, and only for that.
 *   - A declared service is created if missing and its settings (scheduler, persistence,
 *     ...) are reset to the config's; its declared real servers are added, edited or removed
 *     to match the config and their health.
 *   - Services and real servers the config does not declare (added with tsvsadm) are left
 *     alone, except: a service or server that the previous config declared and the new one
 *     no longer does is removed (with inhibit_on_failure a removed server is first set to
 *     weight 0 and deleted once its connections are gone).
 *   - Timeouts are set only when the config declares them.
 */
import { destId, serviceId } from '../core/service.js';
import type { DestConfig, DestKey, Op, ServiceConfig, ServiceKey, TableConfig, Timeouts } from '../core/types.js';
import { destOps } from '../health/engine.js';
import type { VirtualServiceConfig } from './model.js';

export interface DesiredService {
  service: ServiceConfig;
  /** destId -> wanted config, or null for "must be absent". */
  dests: Map<string, DestConfig | null>;
}

export interface ReloadPlan {
  ops: Op[];
  /** Servers set to weight 0 because they left the config with inhibit_on_failure: delete once drained. */
  drain: Array<{ service: ServiceKey; dest: DestKey }>;
  /** Human summary, one line per changed object. */
  summary: string[];
}

const SVC_FIELDS = ['scheduler', 'schedFlags', 'persistent', 'netmask', 'ops', 'pe'] as const;

/** The userspace options, with "unset" spelled one way ('none', false) on both sides. */
function sameOptions(a: ServiceConfig, b: ServiceConfig): boolean {
  return (
    (a.proxyProtocol ?? 'none') === (b.proxyProtocol ?? 'none') && (a.transparent ?? false) === (b.transparent ?? false) && sameLimits(a, b)
  );
}

/** The connection limits, with "unset" spelled 0 on both sides. */
function sameLimits(a: ServiceConfig, b: ServiceConfig): boolean {
  return (a.maxConns ?? 0) === (b.maxConns ?? 0) && (a.maxConnsPerClient ?? 0) === (b.maxConnsPerClient ?? 0);
}

function keyOf(s: ServiceKey): ServiceKey {
  return { af: s.af, protocol: s.protocol, addr: s.addr, port: s.port, fwmark: s.fwmark };
}

/**
 * @param current the running table
 * @param previous the services the running config declared (null at start)
 * @param next what the new config wants, with health applied
 * @param timeouts the new config's timeouts, when it declares them
 */
export function planReload(
  current: TableConfig,
  previous: readonly VirtualServiceConfig[] | null,
  next: readonly DesiredService[],
  timeouts?: Timeouts,
): ReloadPlan {
  const ops: Op[] = [];
  const drain: ReloadPlan['drain'] = [];
  const summary: string[] = [];
  const live = new Map(current.services.map((s) => [serviceId(s), s]));
  const nextIds = new Set(next.map((d) => serviceId(d.service)));

  if (
    timeouts &&
    (timeouts.tcp !== current.timeouts.tcp || timeouts.tcpfin !== current.timeouts.tcpfin || timeouts.udp !== current.timeouts.udp)
  ) {
    ops.push({ op: 'set-timeouts', timeouts });
    summary.push(`timeouts tcp ${timeouts.tcp} tcpfin ${timeouts.tcpfin} udp ${timeouts.udp}`);
  }

  for (const old of previous ?? []) {
    const id = serviceId(old);
    if (!nextIds.has(id) && live.has(id)) {
      ops.push({ op: 'delete-service', service: keyOf(old) });
      summary.push(`delete service ${id}`);
    }
  }

  for (const want of next) {
    const id = serviceId(want.service);
    const key = keyOf(want.service);
    const have = live.get(id);
    const dests = new Map(want.dests);
    const prev = previous?.find((p) => serviceId(p) === id);
    if (prev) {
      const declared = new Set(dests.keys());
      for (const rs of prev.realServers) {
        const rid = destId(rs);
        if (declared.has(rid) || !have?.dests.some((d) => destId(d) === rid)) continue;
        const liveDest = have.dests.find((d) => destId(d) === rid)!;
        if (rs.inhibitOnFailure) {
          if (liveDest.weight !== 0) ops.push({ op: 'edit-server', service: key, dest: { ...liveDest, weight: 0 } });
          drain.push({ service: key, dest: { af: rs.af, addr: rs.addr, port: rs.port } });
          summary.push(`quiesce ${id} -> ${rid} (removed, inhibit_on_failure: deleted once drained)`);
        } else {
          dests.set(rid, null);
        }
      }
      if (prev.sorryServer) {
        const sid = destId({ af: prev.af, addr: prev.sorryServer.addr, port: prev.sorryServer.port });
        if (!dests.has(sid)) dests.set(sid, null);
      }
    }
    if (!have) {
      ops.push({ op: 'add-service', service: want.service });
      summary.push(`add service ${id}`);
      for (const d of dests.values()) if (d) ops.push({ op: 'add-server', service: key, dest: d });
      continue;
    }
    if (SVC_FIELDS.some((f) => have[f] !== want.service[f]) || !sameOptions(have, want.service)) {
      // A limit that left the config goes back to tsvsd's default (0): absent would keep it.
      const service = sameLimits(have, want.service)
        ? want.service
        : { ...want.service, maxConns: want.service.maxConns ?? 0, maxConnsPerClient: want.service.maxConnsPerClient ?? 0 };
      ops.push({ op: 'edit-service', service });
      summary.push(`edit service ${id}`);
    }
    const dOps = destOps(key, have.dests, dests);
    for (const o of dOps) if ('dest' in o) summary.push(`${o.op} ${id} -> ${destId(o.dest)}`);
    ops.push(...dOps);
  }
  return { ops, drain, summary };
}
