/**
 * `/metrics` in the Prometheus text exposition format (version 0.0.4).
 *
 * The node_ipvs_* families reproduce node_exporter's ipvs collector (collector/ipvs_linux.go
 * with procfs's /proc/net/ip_vs parser): the same names, help texts, types and label set,
 * with label values formatted the way procfs reads them (proto "TCP"/"UDP"/"FWM",
 * local_mark the fwmark as /proc shows it, "%08X", and an empty local_address for fwmark
 * services), so Grafana dashboards built for LVS work unchanged. tsvs_* families add what
 * node_exporter cannot see.
 *
 * Written by hand rather than with prom-client: every value is read from the table at
 * scrape time, which is the "custom collector" case prom-client handles least directly.
 */
import { HEALTH_STATES } from '../health/source.js';
import { limitReasons, type ListenerStats } from './listener.js';
import { CONFIG_LIMIT_NAMES, limitHits } from '../config/read.js';
import type { ServerStatus, ServiceStatus, StatusView } from './routes/view.js';

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

type Labels = Record<string, string>;

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

/** Collects families and writes each one's HELP, TYPE and samples together. */
class Exposition {
  private readonly families = new Map<string, { type: string; help: string; samples: string[] }>();

  family(name: string, type: 'counter' | 'gauge', help: string): (labels: Labels, value: number) => void {
    const f = { type, help, samples: [] as string[] };
    this.families.set(name, f);
    return (labels, value) => {
      const ls = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
      f.samples.push(`${name}${ls.length ? `{${ls.join(',')}}` : ''} ${formatValue(value)}`);
    };
  }

  text(): string {
    let out = '';
    for (const [name, f] of this.families) {
      out += `# HELP ${name} ${escapeHelp(f.help)}\n# TYPE ${name} ${f.type}\n`;
      for (const s of f.samples) out += `${s}\n`;
    }
    return out;
  }
}

/** node_exporter's labels of a service: local_address, local_port, proto, local_mark. */
function serviceLabels(s: ServiceStatus): Labels {
  return s.fwmark
    ? { local_address: '', local_port: '0', proto: 'FWM', local_mark: s.fwmark.toString(16).toUpperCase().padStart(8, '0') }
    : { local_address: s.addr, local_port: String(s.port), proto: s.protocol.toUpperCase(), local_mark: '' };
}

/** node_exporter's full backend label set, in its order. */
function backendLabels(s: ServiceStatus, d: ServerStatus): Labels {
  const l = serviceLabels(s);
  return {
    local_address: l.local_address!,
    local_port: l.local_port!,
    remote_address: d.addr,
    remote_port: String(d.port),
    proto: l.proto!,
    local_mark: l.local_mark!,
  };
}

export interface MetricsExtra {
  /** Configuration reloads so far, by result. */
  reloads?: { success: number; failure: number };
  /** The API listeners (control socket, TCP) and their bounds. */
  api?: readonly ListenerStats[] | undefined;
}

/** The whole /metrics page for one status snapshot. */
export function renderMetrics(v: StatusView, extra: MetricsExtra = {}): string {
  const e = new Exposition();
  // node_exporter ipvs collector: totals (/proc/net/ip_vs_stats), no labels.
  e.family('node_ipvs_connections_total', 'counter', 'The total number of connections made.')({}, v.stats.conns);
  e.family('node_ipvs_incoming_packets_total', 'counter', 'The total number of incoming packets.')({}, v.stats.inpkts);
  e.family('node_ipvs_outgoing_packets_total', 'counter', 'The total number of outgoing packets.')({}, v.stats.outpkts);
  e.family('node_ipvs_incoming_bytes_total', 'counter', 'The total amount of incoming data.')({}, v.stats.inbytes);
  e.family('node_ipvs_outgoing_bytes_total', 'counter', 'The total amount of outgoing data.')({}, v.stats.outbytes);
  const active = e.family('node_ipvs_backend_connections_active', 'gauge', 'The current active connections by local and remote address.');
  const inactive = e.family(
    'node_ipvs_backend_connections_inactive',
    'gauge',
    'The current inactive connections by local and remote address.',
  );
  const weight = e.family('node_ipvs_backend_weight', 'gauge', 'The current backend weight by local and remote address.');
  for (const s of v.services) {
    for (const d of s.dests) {
      const l = backendLabels(s, d);
      active(l, d.activeconns);
      inactive(l, d.inactconns);
      weight(l, d.weight);
    }
  }

  // tsvs: rates (the kernel estimator's, as ipvsadm --rate shows them).
  const rateHelp = (what: string, scope: string) => `Estimated ${what} per second ${scope} (2 s EWMA, as ipvsadm --rate).`;
  const totalRates: Array<[string, keyof StatusView['rates'], string]> = [
    ['connections', 'cps', 'new connections'],
    ['incoming_packets', 'inpps', 'incoming packets'],
    ['outgoing_packets', 'outpps', 'outgoing packets'],
    ['incoming_bytes', 'inbps', 'incoming bytes'],
    ['outgoing_bytes', 'outbps', 'outgoing bytes'],
  ];
  for (const [n, k, what] of totalRates) e.family(`tsvs_${n}_per_second`, 'gauge', rateHelp(what, 'over all services'))({}, v.rates[k]);

  const statKeys: Array<[string, keyof StatusView['stats'], string]> = [
    ['connections', 'conns', 'connections made'],
    ['incoming_packets', 'inpkts', 'incoming packets'],
    ['outgoing_packets', 'outpkts', 'outgoing packets'],
    ['incoming_bytes', 'inbytes', 'incoming bytes'],
    ['outgoing_bytes', 'outbytes', 'outgoing bytes'],
  ];
  for (const scope of ['service', 'backend'] as const) {
    for (const [i, [n, k, what]] of statKeys.entries()) {
      const counter = e.family(
        `tsvs_${scope}_${n}_total`,
        'counter',
        `The total number of ${what} by ${scope === 'service' ? 'virtual service' : 'virtual service and real server'}.`,
      );
      const [rn, rk, rwhat] = totalRates[i]!;
      const rate = e.family(
        `tsvs_${scope}_${rn}_per_second`,
        'gauge',
        rateHelp(rwhat, scope === 'service' ? 'by virtual service' : 'by virtual service and real server'),
      );
      for (const s of v.services) {
        if (scope === 'service') {
          counter(serviceLabels(s), s.stats[k]);
          rate(serviceLabels(s), s.rates[rk]);
        } else {
          for (const d of s.dests) {
            counter(backendLabels(s, d), d.stats[k]);
            rate(backendLabels(s, d), d.rates[rk]);
          }
        }
      }
    }
  }
  const persist = e.family(
    'tsvs_backend_connections_persistent',
    'gauge',
    'The current persistence templates pointing at the real server.',
  );
  const health = e.family(
    'tsvs_backend_health_state',
    'gauge',
    'Health state of the real server: 1 for the current state (up, down or unchecked), 0 for the others.',
  );
  const latency = e.family('tsvs_backend_health_check_latency_seconds', 'gauge', 'Duration of the last health check of the real server.');
  const lastCheck = e.family(
    'tsvs_backend_health_last_check_timestamp_seconds',
    'gauge',
    'Unix time of the last health check of the real server.',
  );
  const failures = e.family(
    'tsvs_backend_connect_failures_total',
    'counter',
    'Connections the data plane could not open to the real server (refused, timed out, unreachable).',
  );
  for (const s of v.services) {
    for (const d of s.dests) {
      const l = backendLabels(s, d);
      persist(l, d.persistconns);
      for (const st of HEALTH_STATES) health({ ...l, state: st }, d.health.state === st ? 1 : 0);
      if (d.health.lastCheck) {
        latency(l, d.health.lastCheck.latencyMs / 1000);
        lastCheck(l, Date.parse(d.health.lastCheck.at) / 1000);
      }
      failures(l, d.connectFailures);
    }
  }
  e.family(
    'tsvs_dataplane_no_destination_total',
    'counter',
    'New connections refused because no real server was available.',
  )({}, v.dataplaneCounters?.noDestination ?? 0);
  // Limits (both planes) and redispatches (userspace): src/dataplane/userspace/limits.ts, nftables ct count.
  const dc = v.dataplaneCounters;
  const limited = e.family(
    'tsvs_limit_refused_total',
    'counter',
    'New connections (or UDP flows) refused by a limit, by service and limit (global, service, client, udp-flows, fd-reserve).',
  );
  for (const r of dc?.limitRefused ?? []) limited({ service: r.service, limit: r.limit }, r.count);
  const redisp = e.family(
    'tsvs_redispatch_total',
    'counter',
    'New connections sent to another real server after a failed connect, by service.',
  );
  for (const [service, n] of Object.entries(dc?.redispatches ?? {})) redisp({ service }, n);
  if (dc?.udpFlowsReaped !== undefined)
    e.family('tsvs_udp_flows_reaped_total', 'counter', 'Idle UDP flows closed to make room for new ones.')({}, dc.udpFlowsReaped);
  if (dc?.fds) {
    e.family(
      'tsvs_dataplane_fds_open',
      'gauge',
      'File descriptors open in the director process (estimate between samples).',
    )({}, dc.fds.open);
    if (dc.fds.limit !== null)
      e.family('tsvs_dataplane_fds_limit', 'gauge', 'The file descriptor limit (ulimit -n) of the director process.')({}, dc.fds.limit);
    e.family('tsvs_dataplane_fds_reserve', 'gauge', 'File descriptors kept free of client traffic (--fd-reserve).')({}, dc.fds.reserve);
  }
  e.family('tsvs_connection_table_entries', 'gauge', 'Entries in the connection table, persistence templates included.')({}, v.connections);

  e.family(
    'tsvs_vrrp_configured',
    'gauge',
    'Whether a VRRP instance is configured on this director (1) or not (0).',
  )({}, v.vrrp.configured ? 1 : 0);
  const vrrp = e.family('tsvs_vrrp_state', 'gauge', 'VRRP state of each instance: 1 for the current state, 0 for the others.');
  for (const inst of v.vrrp.instances) {
    for (const st of ['init', 'backup', 'master', 'fault'] as const)
      vrrp({ instance: inst.name, vrid: String(inst.vrid), state: st }, inst.state === st ? 1 : 0);
  }
  // VRRP counters from the speaker (src/ha/speaker.ts); drops without an instance carry instance="".
  const vl = (i: (typeof v.vrrp.instances)[number]) => ({ instance: i.name, vrid: String(i.vrid) });
  const vprio = e.family('tsvs_vrrp_priority', 'gauge', 'Effective VRRP priority of each instance (configured plus track weights).');
  const vsent = e.family('tsvs_vrrp_adverts_sent_total', 'counter', 'VRRP advertisements sent.');
  const vrecv = e.family('tsvs_vrrp_adverts_received_total', 'counter', 'Valid VRRP advertisements received.');
  const vtrans = e.family('tsvs_vrrp_transitions_total', 'counter', 'VRRP state transitions.');
  const vdrop = e.family(
    'tsvs_vrrp_dropped_total',
    'counter',
    'VRRP packets dropped, by reason (ttl, checksum, vrid, version, length, addr-count, ...).',
  );
  for (const i of v.vrrp.instances) {
    vprio(vl(i), i.priority);
    vsent(vl(i), i.advertsSent ?? 0);
    vrecv(vl(i), i.advertsReceived ?? 0);
    vtrans(vl(i), i.transitions ?? 0);
    for (const [reason, n] of Object.entries(i.dropped ?? {})) vdrop({ instance: i.name, reason }, n);
  }
  for (const [reason, n] of Object.entries(v.vrrp.dropped ?? {})) vdrop({ instance: '', reason }, n);
  // The state file (--state): 1 while changes are live but not on disk (full or read-only disk).
  if (v.state) {
    e.family(
      'tsvs_state_unsaved',
      'gauge',
      'Whether tsvsd runs unsaved: changes applied that the state file does not hold (1) or not (0).',
    )({}, v.state.saved ? 0 : 1);
    e.family('tsvs_state_unsaved_changes', 'gauge', 'Changes applied since tsvsd began running unsaved.')({}, v.state.unsavedChanges);
    e.family('tsvs_state_write_failures_total', 'counter', 'Writes of the state file or its journal that failed.')({}, v.state.failures);
  }
  const unbound = e.family(
    'tsvs_dataplane_service_unbound',
    'gauge',
    'Services in the table that the data plane could not bring up (e.g. a port in use), by service and errno; retried.',
  );
  for (const u of v.unbound ?? []) unbound({ service: u.service, errno: u.errno }, 1);
  e.family(
    'tsvs_dataplane_services_unbound',
    'gauge',
    'Services in the table that the data plane does not carry yet.',
  )({}, v.unbound?.length ?? 0);
  const reloads = e.family('tsvs_config_reloads_total', 'counter', 'Configuration reloads, by result.');
  reloads({ result: 'success' }, extra.reloads?.success ?? 0);
  reloads({ result: 'failure' }, extra.reloads?.failure ?? 0);
  if (extra.api?.length) apiFamilies(e, extra.api);
  const limits = e.family('tsvs_config_limit_hits_total', 'counter', 'Config loads that hit a bound of docs/config.md "Limits", by bound.');
  for (const l of CONFIG_LIMIT_NAMES) limits({ limit: l }, limitHits.get(l) ?? 0);
  return e.text();
}

/** The API listeners: open connections, their cap, and the bounds hit (src/api/listener.ts). */
function apiFamilies(e: Exposition, listeners: readonly ListenerStats[]): void {
  const open = e.family('tsvs_api_connections', 'gauge', 'Open connections of the API listener (socket or tcp).');
  const max = e.family('tsvs_api_connections_limit', 'gauge', 'Most connections the API listener takes; more are closed at once.');
  const hits = e.family(
    'tsvs_api_limit_hits_total',
    'counter',
    'Connections or requests the API listener refused or closed, by reason (max-connections, header-timeout, body-timeout, idle-timeout, bad-host).',
  );
  for (const l of listeners) {
    open({ listener: l.name }, l.open);
    max({ listener: l.name }, l.limits.maxConnections);
    for (const r of limitReasons()) hits({ listener: l.name, reason: r }, l.hits[r]);
  }
}
