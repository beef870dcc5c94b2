/**
 * The model back to the YAML format (`tsvs config convert`): what a keepalived.conf means,
 * written the tsvs way. Unsupported keepalived keywords become comments at the top, so
 * nothing is lost silently. parseYamlConfig(toYaml(cfg)) gives the same services back.
 */
import { stringify } from 'yaml';
import { formatIPv4 } from '../core/addr.js';
import type { FwdMethod } from '../core/types.js';
import { formatDiagnostic } from './errors.js';
import type { CheckerConfig } from '../health/model.js';
import type { RealServerConfig, TsvsConfig, VirtualServiceConfig } from './model.js';
import { SCHED_FLAGS } from '../core/schema.js';

const METHOD_NAME: Record<FwdMethod, string> = { masq: 'nat', route: 'dr', tunnel: 'tunnel', fullnat: 'fullnat' };

/** The YAML document text for a configuration. */
export function toYaml(cfg: TsvsConfig): string {
  const doc: Record<string, unknown> = {};
  if (cfg.timeouts) doc.timeouts = cfg.timeouts;
  if (cfg.dataplane) doc.dataplane = cfg.dataplane;
  if (cfg.api) doc.api = cfg.api;
  doc.services = cfg.services.map(service);
  if (cfg.vrrp.length) {
    doc.vrrp = cfg.vrrp.map((v) => {
      const o: Record<string, unknown> = { name: v.name };
      if (v.state) o.state = v.state;
      if (v.interface) o.interface = v.interface;
      if (v.virtualRouterId !== undefined) o.virtual_router_id = v.virtualRouterId;
      if (v.priority !== undefined) o.priority = v.priority;
      if (v.advertInt !== undefined) o.advert_int = v.advertInt;
      if (v.nopreempt) o.nopreempt = true;
      if (v.preemptDelay !== undefined) o.preempt_delay = v.preemptDelay;
      o.virtual_ipaddress = v.virtualIpaddress;
      if (v.unicastSrcIp) o.unicast_src_ip = v.unicastSrcIp;
      if (v.unicastPeer) o.unicast_peer = v.unicastPeer;
      if (v.trackInterface) o.track_interface = v.trackInterface.map((t) => (t.weight ? { name: t.name, weight: t.weight } : t.name));
      if (v.trackScript) o.track_script = v.trackScript.map((t) => (t.weight !== undefined ? { name: t.name, weight: t.weight } : t.name));
      if (v.trackHealth) o.track_health = v.trackHealth;
      if (v.notifyMaster) o.notify_master = v.notifyMaster;
      if (v.notifyBackup) o.notify_backup = v.notifyBackup;
      if (v.notifyFault) o.notify_fault = v.notifyFault;
      if (v.notifyStop) o.notify_stop = v.notifyStop;
      if (v.notify) o.notify = v.notify;
      return o;
    });
  }
  if (cfg.vrrpScripts?.length) {
    doc.vrrp_scripts = cfg.vrrpScripts.map((s) => ({
      name: s.name,
      script: s.script,
      interval: s.interval,
      timeout: s.timeout,
      weight: s.weight,
      rise: s.rise,
      fall: s.fall,
      ...(s.initFail ? { init_fail: true } : {}),
    }));
  }
  if (cfg.sync) doc.sync = syncSection(cfg.sync);
  const head = [`# Converted by tsvs config convert from ${cfg.file} (${cfg.format}).`];
  if (cfg.unsupported.length) {
    head.push('# Not carried over (unsupported by tsvs):');
    for (const d of cfg.unsupported) head.push(`#   ${formatDiagnostic(d)}`);
  }
  return `${head.join('\n')}\n${stringify(doc, { lineWidth: 0 })}`;
}

function service(s: VirtualServiceConfig): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  if (s.fwmark) {
    o.fwmark = s.fwmark;
    if (s.af === 6) o.family = 'inet6';
  } else {
    o.address = s.addr;
    if (s.port || !s.persistent) o.port = s.port;
    o.protocol = s.protocol;
  }
  o.scheduler = s.scheduler;
  const flags = Object.entries(SCHED_FLAGS)
    .filter(([k, bit]) => k.startsWith('flag-') && s.schedFlags & bit)
    .map(([k]) => k);
  if (flags.length) o.sched_flags = flags;
  if (s.persistent) {
    const full = s.af === 6 ? 128 : 0xffffffff;
    o.persistence =
      s.netmask === full ? { timeout: s.persistent } : { timeout: s.persistent, netmask: s.af === 6 ? s.netmask : formatIPv4(s.netmask) };
  }
  if (s.ops) o.one_packet = true;
  if (s.pe) o.pe = s.pe;
  if (s.proxyProtocol && s.proxyProtocol !== 'none') o.proxy_protocol = s.proxyProtocol;
  if (s.transparent) o.transparent = true;
  if (s.maxConns) o.max_conns = s.maxConns;
  if (s.maxConnsPerClient) o.max_conns_per_client = s.maxConnsPerClient;
  if (s.quorum !== 1) o.quorum = s.quorum;
  if (s.hysteresis) o.hysteresis = s.hysteresis;
  if (s.quorumUp) o.quorum_up = s.quorumUp;
  if (s.quorumDown) o.quorum_down = s.quorumDown;
  if (s.omega) o.omega = true;
  if (s.sorryServer) {
    const ss = s.sorryServer;
    o.sorry_server = { address: ss.addr, port: ss.port, method: METHOD_NAME[ss.fwd], ...(ss.inhibit ? { inhibit: true } : {}) };
  }
  o.real_servers = s.realServers.map(realServer);
  return o;
}

function realServer(rs: RealServerConfig): Record<string, unknown> {
  const o: Record<string, unknown> = { address: rs.addr, port: rs.port, weight: rs.weight, method: METHOD_NAME[rs.fwd] };
  if (rs.uThreshold) o.u_threshold = rs.uThreshold;
  if (rs.lThreshold) o.l_threshold = rs.lThreshold;
  if (rs.inhibitOnFailure) o.inhibit_on_failure = true;
  if (rs.notifyUp) o.notify_up = rs.notifyUp;
  if (rs.notifyDown) o.notify_down = rs.notifyDown;
  if (rs.checkers.length) o.checks = rs.checkers.map(checker);
  return o;
}

function checker(c: CheckerConfig): Record<string, unknown> {
  const o: Record<string, unknown> = {
    type: c.type,
    interval: c.interval,
    timeout: c.timeout,
    retry: c.retry,
    delay_before_retry: c.delayBeforeRetry,
  };
  if (c.rise !== 1) o.rise = c.rise;
  if (c.fall !== 1) o.fall = c.fall;
  if (c.alpha) o.alpha = true;
  if (c.connectIp) o.connect_ip = c.connectIp;
  if (c.connectPort) o.connect_port = c.connectPort;
  if (c.bindto) o.bindto = c.bindto;
  if (c.http) {
    const urls = c.http.urls.map((u) => {
      const x: Record<string, unknown> = { path: u.path, status: u.statusCodes.map(([lo, hi]) => (lo === hi ? lo : `${lo}-${hi}`)) };
      if (u.digest) x.digest = u.digest;
      if (u.virtualhost) x.virtualhost = u.virtualhost;
      return x;
    });
    o.urls = urls;
    if (c.http.virtualhost) o.virtualhost = c.http.virtualhost;
    if (c.http.sni) o.sni = true;
  }
  if (c.udp) {
    if (c.udp.payload) o.payload = c.udp.payload;
    if (c.udp.requireReply) o.require_reply = true;
    if (c.udp.minReplyLength) o.min_reply_length = c.udp.minReplyLength;
    if (c.udp.maxReplyLength !== 255) o.max_reply_length = c.udp.maxReplyLength;
  }
  if (c.dns) {
    o.query_type = c.dns.type;
    o.query_name = c.dns.name;
  }
  if (c.misc) {
    o.command = c.misc.path;
    if (c.misc.timeout) o.command_timeout = c.misc.timeout;
    if (c.misc.dynamic) o.dynamic = true;
  }
  return o;
}

/** The `sync:` section (src/sync) in the YAML key names. */
function syncSection(sync: NonNullable<TsvsConfig['sync']>): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  if (sync.daemon) {
    const { mcastIfn, ...rest } = sync.daemon;
    o.daemon = { interface: mcastIfn, ...rest };
  }
  if (sync.conntrackd) {
    const { stateDir, ...rest } = sync.conntrackd;
    o.conntrackd = { ...rest, ...(stateDir ? { state_dir: stateDir } : {}) };
  }
  return o;
}
