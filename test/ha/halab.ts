/**
 * The hot-standby lab: a client, two directors and two real servers in network namespaces,
 * for VRRP failover tests (test/ha/) and state sync tests built on them. As root.
 *
 *                          ns tsvs-hsw-S (the switch: two bridges)
 *   ns tsvs-hc-S        +-------------------------------------------+
 *   198.18.0.10 --------| tsvshbcS (client LAN)   tsvshbrS (RIP LAN) |------ ns tsvs-hr1-S 198.19.0.11:80
 *   gw 198.18.0.1       |   |port tsvspa1S |port a2   |b1      |b2   |------ ns tsvs-hr2-S 198.19.0.12:80
 *                       +---|--------------|----------|--------|-----+         gw 198.19.0.1
 *                           |              |          |        |
 *              ns tsvs-hd1-S: tsvsaS 198.18.0.2  tsvsbS 198.19.0.2
 *              ns tsvs-hd2-S: tsvsaS 198.18.0.3  tsvsbS 198.19.0.3
 *
 * The floating addresses (VIP 198.18.0.1 on tsvsaS, gateway 198.19.0.1 on tsvsbS) belong to
 * one VRRP instance, so replies of NATed connections follow the master. Each director's
 * interfaces have the same names (tsvsaS, tsvsbS) so one config fits both. Cutting the link
 * between the directors = disabling a director's client-LAN switch port (`cutPort`, carrier
 * stays up); `setPortLink` takes the carrier away instead (the director sees its link down).
 *
 * tsvsd (or keepalived) is started per director by the caller with `startTsvsd` /
 * `startKeepalived`, killed by PID. Everything is named `tsvs` + the run's suffix and lives
 * under /tmp/tsvs-halab-S; `haLabDown` removes it all from the names alone.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { request as httpRequest } from 'node:http';
import { createRequire } from 'node:module';
import type { VrrpStatus } from '../../src/ha/source.js';
import { checkSuffix, clearNamespaces, nsRun, socketAnswers, sysctl, tsvsdCommand } from '../../src/lab/lab.js';

export const HA = {
  client: '198.18.0.10',
  vip: '198.18.0.1',
  gateway: '198.19.0.1',
  dirClient: ['198.18.0.2', '198.18.0.3'] as const,
  dirReal: ['198.19.0.2', '198.19.0.3'] as const,
  reals: ['198.19.0.11', '198.19.0.12'] as const,
};

export interface HaLab {
  suffix: string;
  dir: string;
  switchNs: string;
  client: string;
  directors: [string, string];
  reals: [string, string];
  /** Interface names inside each director: client side, RIP side. */
  ifClient: string;
  ifReal: string;
  /** Switch ports of director i on the client LAN and the RIP LAN. */
  portsClient: [string, string];
  portsReal: [string, string];
  /** Control socket of tsvsd in director i. */
  socket(i: 0 | 1): string;
}

export function haLabNames(suffix: string): HaLab {
  const s = checkSuffix(suffix);
  const dir = `/tmp/tsvs-halab-${s}`;
  return {
    suffix: s,
    dir,
    switchNs: `tsvs-hsw-${s}`,
    client: `tsvs-hc-${s}`,
    directors: [`tsvs-hd1-${s}`, `tsvs-hd2-${s}`],
    reals: [`tsvs-hr1-${s}`, `tsvs-hr2-${s}`],
    ifClient: `tsvsa${s}`,
    ifReal: `tsvsb${s}`,
    portsClient: [`tsvspa1${s}`, `tsvspa2${s}`],
    portsReal: [`tsvspb1${s}`, `tsvspb2${s}`],
    socket: (i) => join(dir, `d${i + 1}`, 'tsvsd.sock'),
  };
}

function run(cmd: string, args: string[], allowFail = false): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 15_000 });
  if ((r.status !== 0 || r.error) && !allowFail)
    throw new Error(`${cmd} ${args.join(' ')}: ${r.error?.message ?? (r.stderr.trim() || `exit ${r.status}`)}`);
  return r.stdout ?? '';
}

function allNs(l: HaLab): string[] {
  return [l.switchNs, l.client, ...l.directors, ...l.reals];
}

function nginxConf(l: HaLab, i: 0 | 1): string {
  const base = join(l.dir, `r${i + 1}`);
  return `# tsvs HA lab real server r${i + 1} (generated)
worker_processes 1;
daemon on;
pid ${base}/nginx.pid;
error_log ${base}/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${base}/tmp/body;
  proxy_temp_path ${base}/tmp/proxy;
  fastcgi_temp_path ${base}/tmp/fastcgi;
  uwsgi_temp_path ${base}/tmp/uwsgi;
  scgi_temp_path ${base}/tmp/scgi;
  server {
    listen ${HA.reals[i]}:80;
    root ${join(l.dir, 'www')};
    add_header X-Real-Server r${i + 1} always;
    location = /name { default_type text/plain; return 200 "r${i + 1}\\n"; }
  }
}
`;
}

export interface HaLabOptions {
  suffix: string;
  /** Start nginx on the real servers (default true). */
  nginx?: boolean;
  log?: (msg: string) => void;
}

/** Builds the network and the real servers; on failure removes what it made and rethrows. */
export function haLabUp(opts: HaLabOptions): HaLab {
  const l = haLabNames(opts.suffix);
  const log = opts.log ?? (() => {});
  if (process.getuid?.() !== 0) throw new Error('the HA lab needs root (network namespaces)');
  const have = new Set(
    run('ip', ['netns', 'list'], true)
      .split('\n')
      .map((x) => x.split(' ')[0]),
  );
  if (allNs(l).some((ns) => have.has(ns))) throw new Error(`an HA lab with suffix ${l.suffix} exists already (haLabDown('${l.suffix}'))`);
  try {
    mkdirSync(l.dir, { recursive: true });
    chmodSync(l.dir, 0o755);
    for (const ns of allNs(l)) {
      run('ip', ['netns', 'add', ns]);
      nsRun(ns, 'ip', ['link', 'set', 'lo', 'up']);
    }
    const sw = l.switchNs;
    const bc = `tsvshbc${l.suffix}`;
    const br = `tsvshbr${l.suffix}`;
    for (const b of [bc, br]) {
      nsRun(sw, 'ip', ['link', 'add', b, 'type', 'bridge']);
      // No STP, no forwarding delay: a port that comes up forwards at once.
      nsRun(sw, 'ip', ['link', 'set', b, 'type', 'bridge', 'forward_delay', '0', 'stp_state', '0']);
      nsRun(sw, 'ip', ['link', 'set', b, 'up']);
    }
    const plug = (ns: string, ifname: string, port: string, bridge: string) => {
      run('ip', ['link', 'add', ifname, 'netns', ns, 'type', 'veth', 'peer', 'name', port, 'netns', sw]);
      nsRun(sw, 'ip', ['link', 'set', port, 'master', bridge, 'up']);
      nsRun(ns, 'ip', ['link', 'set', ifname, 'up']);
    };
    plug(l.client, `tsvsc${l.suffix}`, `tsvspc${l.suffix}`, bc);
    nsRun(l.client, 'ip', ['addr', 'add', `${HA.client}/24`, 'dev', `tsvsc${l.suffix}`]);
    nsRun(l.client, 'ip', ['route', 'add', 'default', 'via', HA.vip]);
    for (const i of [0, 1] as const) {
      const d = l.directors[i];
      plug(d, l.ifClient, l.portsClient[i], bc);
      plug(d, l.ifReal, l.portsReal[i], br);
      nsRun(d, 'ip', ['addr', 'add', `${HA.dirClient[i]}/24`, 'dev', l.ifClient]);
      nsRun(d, 'ip', ['addr', 'add', `${HA.dirReal[i]}/24`, 'dev', l.ifReal]);
      sysctl(d, 'net.ipv4.ip_forward', '1');
      mkdirSync(join(l.dir, `d${i + 1}`), { recursive: true });
    }
    for (const i of [0, 1] as const) {
      const r = l.reals[i];
      plug(r, `tsvsr${l.suffix}`, `tsvspr${i + 1}${l.suffix}`, br);
      nsRun(r, 'ip', ['addr', 'add', `${HA.reals[i]}/24`, 'dev', `tsvsr${l.suffix}`]);
      // Replies go back through the master director, where conntrack un-NATs them.
      nsRun(r, 'ip', ['route', 'add', 'default', 'via', HA.gateway]);
    }
    for (const ns of allNs(l)) {
      sysctl(ns, 'net.ipv4.conf.all.rp_filter', '0');
      sysctl(ns, 'net.ipv4.conf.default.rp_filter', '0');
    }
    sysctl(sw, 'net.bridge.bridge-nf-call-iptables', '0', true);
    log(
      `HA lab ${l.suffix}: client ${HA.client}, directors ${HA.dirClient.join(', ')} / ${HA.dirReal.join(', ')}, real servers ${HA.reals.join(', ')}`,
    );
    if (opts.nginx !== false) startNginx(l, log);
    return l;
  } catch (e) {
    haLabDown(l.suffix);
    throw e;
  }
}

function startNginx(l: HaLab, log: (m: string) => void): void {
  if (spawnSync('sh', ['-c', 'command -v nginx']).status !== 0) throw new Error('the HA lab needs nginx (apt-get install nginx-light)');
  const www = join(l.dir, 'www');
  mkdirSync(www, { recursive: true });
  writeFileSync(
    join(www, 'index.html'),
    '<!doctype html><title>tsvs HA lab</title><p>tsvs HA lab: the same page on every real server.</p>\n',
  );
  for (const i of [0, 1] as const) {
    const base = join(l.dir, `r${i + 1}`);
    mkdirSync(join(base, 'tmp'), { recursive: true });
    for (const p of [base, join(base, 'tmp'), www]) chmodSync(p, 0o755);
    const conf = join(base, 'nginx.conf');
    writeFileSync(conf, nginxConf(l, i));
    nsRun(l.reals[i], 'nginx', ['-c', conf, '-p', base]);
  }
  log(`nginx on ${HA.reals.join(', ')}:80`);
}

/**
 * Cuts or restores a switch port by its bridge port state (disabled / forwarding): the
 * director keeps its carrier and sees nothing but silence, as when the network between
 * the directors fails. `cutPort(l, l.portsClient[1], true)` isolates director 2 on the client LAN.
 */
export function cutPort(l: HaLab, port: string, cut: boolean): void {
  nsRun(l.switchNs, 'bridge', ['link', 'set', 'dev', port, 'state', cut ? '0' : '3']);
}

/** Sets a switch port's link down or up: the director's end loses or regains its carrier (track_interface, FAULT). */
export function setPortLink(l: HaLab, port: string, up: boolean): void {
  nsRun(l.switchNs, 'ip', ['link', 'set', port, up ? 'up' : 'down']);
}

/** Whether `addr` is configured in namespace `ns`. */
export function hasAddr(ns: string, addr: string): boolean {
  const out = nsRun(ns, 'ip', ['-j', 'addr', 'show'], { allowFail: true });
  try {
    return (JSON.parse(out || '[]') as Array<{ addr_info?: Array<{ local: string }> }>).some((l) =>
      (l.addr_info ?? []).some((a) => a.local === addr),
    );
  } catch {
    return false;
  }
}

/**
 * A tsvsd YAML config for director i of the lab: service VIP:80 (rr, NAT) over both real
 * servers with a TCP check, and one VRRP instance holding the VIP and the RIP-side gateway.
 */
export function haTsvsdConfig(
  l: HaLab,
  i: 0 | 1,
  o: {
    priority: number;
    advertInt?: number;
    vrid?: number;
    nopreempt?: boolean;
    preemptDelay?: number;
    state?: 'MASTER' | 'BACKUP';
    unicast?: boolean;
    extraVrrp?: string;
    notify?: string;
  },
): string {
  const vrrp = [
    `  - name: VI_1`,
    `    state: ${o.state ?? 'BACKUP'}`,
    `    interface: ${l.ifClient}`,
    `    virtual_router_id: ${o.vrid ?? 51}`,
    `    priority: ${o.priority}`,
    `    advert_int: ${o.advertInt ?? 1}`,
    ...(o.nopreempt ? ['    nopreempt: true'] : []),
    ...(o.preemptDelay !== undefined ? [`    preempt_delay: ${o.preemptDelay}`] : []),
    `    virtual_ipaddress: [${HA.vip}/24, "${HA.gateway}/24 dev ${l.ifReal}"]`,
    ...(o.unicast ? [`    unicast_src_ip: ${HA.dirClient[i]}`, `    unicast_peer: [${HA.dirClient[1 - i]}]`] : []),
    ...(o.notify ? [`    notify: ${JSON.stringify(o.notify)}`] : []),
    ...(o.extraVrrp ? [o.extraVrrp] : []),
  ];
  return `# tsvs HA lab director ${i + 1} (generated)
services:
  - address: ${HA.vip}
    port: 80
    scheduler: rr
    method: nat
    real_servers:
${HA.reals.map((r) => `      - { address: ${r}, port: 80, checks: [{ type: tcp, interval: 1, timeout: 1 }] }`).join('\n')}
vrrp:
${vrrp.join('\n')}
`;
}

/** A keepalived.conf (VRRPv3) for director i with the same instance. */
export function haKeepalivedConfig(
  l: HaLab,
  i: 0 | 1,
  o: { priority: number; advertInt?: number; vrid?: number; nopreempt?: boolean; state?: 'MASTER' | 'BACKUP'; unicast?: boolean },
): string {
  return `# tsvs HA lab: keepalived in director ${i + 1} (generated)
global_defs {
    vrrp_version 3
    router_id tsvs_d${i + 1}
    enable_script_security
    vrrp_garp_master_delay 1
    vrrp_garp_master_repeat 1
}
vrrp_instance VI_1 {
    state ${o.state ?? 'BACKUP'}
    interface ${l.ifClient}
    virtual_router_id ${o.vrid ?? 51}
    priority ${o.priority}
    advert_int ${o.advertInt ?? 1}
${o.nopreempt ? '    nopreempt\n' : ''}${o.unicast ? `    unicast_src_ip ${HA.dirClient[i]}\n    unicast_peer {\n        ${HA.dirClient[1 - i]}\n    }\n` : ''}    virtual_ipaddress {
        ${HA.vip}/24
        ${HA.gateway}/24 dev ${l.ifReal}
    }
}
`;
}

/** A process started in a director, with its log file. */
export interface LabProc {
  pid: number;
  logFile: string;
  proc: ChildProcess;
  log(): string;
  /** Sends a signal and waits (up to 10 s) for the exit; resolves with the exit code or signal. */
  kill(signal?: NodeJS.Signals): Promise<number | string | null>;
}

function startIn(ns: string, argv: string[], logFile: string): LabProc {
  const out = openSync(logFile, 'a');
  // `ip netns exec` execs the command: the child's PID is the daemon's own.
  const proc = spawn('ip', ['netns', 'exec', ns, ...argv], { stdio: ['ignore', out, out] });
  closeSync(out);
  const exited = new Promise<number | string | null>((res) => proc.once('exit', (code, sig) => res(code ?? sig)));
  return {
    pid: proc.pid!,
    logFile,
    proc,
    log: () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : ''),
    kill: async (signal = 'SIGTERM') => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      const t = new Promise<string>((res) => setTimeout(() => res('timeout'), 10_000).unref());
      return Promise.race([exited, t]);
    },
  };
}

const ROOT = resolve(import.meta.dirname, '../..');

/**
 * tsvsd from this checkout's TypeScript through tsx when it is there (so tests never run a
 * stale dist/), else the built bin; TSVS_LAB_TSVSD overrides both.
 */
export function haTsvsdCommand(): string[] {
  if (process.env.TSVS_LAB_TSVSD) return [process.env.TSVS_LAB_TSVSD];
  const src = join(ROOT, 'bin', 'tsvsd.ts');
  const tsx = join(ROOT, 'node_modules', 'tsx', 'dist', 'esm', 'index.mjs');
  if (existsSync(src) && existsSync(tsx)) return [process.execPath, '--import', pathToFileURL(tsx).href, src];
  return tsvsdCommand();
}

/** Starts tsvsd in director i with `configText` written to d<i>/tsvsd.yaml; resolves once its control socket answers. */
export async function startTsvsd(
  l: HaLab,
  i: 0 | 1,
  configText: string,
  opts: { dataplane?: 'nftables' | 'userspace'; extraArgs?: string[]; command?: string[] } = {},
): Promise<LabProc> {
  const d = join(l.dir, `d${i + 1}`);
  const conf = join(d, 'tsvsd.yaml');
  writeFileSync(conf, configText);
  const [cmd, ...args] = opts.command ?? haTsvsdCommand();
  const p = startIn(
    l.directors[i],
    [cmd!, ...args, '--config', conf, '--dataplane', opts.dataplane ?? 'nftables', '--socket', l.socket(i), ...(opts.extraArgs ?? [])],
    join(d, 'tsvsd.log'),
  );
  writeFileSync(join(d, 'tsvsd.pid'), `${p.pid}\n`);
  const until = Date.now() + 20_000;
  while (!(await socketAnswers(l.socket(i)))) {
    if (p.proc.exitCode !== null || p.proc.signalCode !== null || Date.now() > until)
      throw new Error(`tsvsd did not start in ${l.directors[i]}: ${p.log().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return p;
}

/** Starts keepalived 2.2.7 (VRRP only, foreground, console log) in director i. */
export function startKeepalived(l: HaLab, i: 0 | 1, configText: string): LabProc {
  const d = join(l.dir, `d${i + 1}`);
  const conf = join(d, 'keepalived.conf');
  writeFileSync(conf, configText);
  // Pid files left by a keepalived killed with SIGKILL would stop it ("daemon is already
  // running" when a pid was reused): one keepalived per director, so they are ours to remove.
  for (const f of ['keepalived.pid', 'vrrp.pid', 'checkers.pid']) rmSync(join(d, f), { force: true });
  const p = startIn(
    l.directors[i],
    [
      'keepalived',
      '-n',
      '-l',
      '-D',
      '-P',
      '-f',
      conf,
      '-p',
      join(d, 'keepalived.pid'),
      '-r',
      join(d, 'vrrp.pid'),
      '-c',
      join(d, 'checkers.pid'),
    ],
    join(d, 'keepalived.log'),
  );
  writeFileSync(join(d, 'keepalived.launcher.pid'), `${p.pid}\n`);
  return p;
}

/** A client loop in the client namespace: GET http://VIP/ every `everyMs`, one JSON line per outcome. */
export interface ProbeResult {
  /** Milliseconds since the probe started, when the reply (or error) came. */
  t: number;
  /** Wall clock (Date.now()) at the same moment. */
  wall: number;
  ok: boolean;
  server?: string;
  err?: string;
}

export function startProbe(
  l: HaLab,
  opts: { everyMs?: number; timeoutMs?: number; durationMs: number },
): LabProc & { results(): ProbeResult[]; done(): Promise<void> } {
  const script = join(l.dir, 'probe.mjs');
  writeFileSync(
    script,
    `// tsvs HA lab probe (generated): bounded in time.
import http from 'node:http';
const every = ${opts.everyMs ?? 20}, timeout = ${opts.timeoutMs ?? 300}, end = Date.now() + ${opts.durationMs};
const t0 = performance.now();
function once() {
  const start = performance.now();
  const req = http.get({ host: '${HA.vip}', port: 80, path: '/', agent: false, timeout }, (res) => {
    res.resume();
    res.on('end', () => console.log(JSON.stringify({ t: performance.now() - t0, wall: Date.now(), sent: start - t0, ok: res.statusCode === 200, server: res.headers['x-real-server'] })));
  });
  req.on('timeout', () => req.destroy(new Error('timeout')));
  req.on('error', (e) => console.log(JSON.stringify({ t: performance.now() - t0, wall: Date.now(), sent: start - t0, ok: false, err: e.message })));
}
const iv = setInterval(() => { if (Date.now() > end) { clearInterval(iv); setTimeout(() => process.exit(0), timeout + 50); return; } once(); }, every);
`,
  );
  const p = startIn(l.client, [process.execPath, script], join(l.dir, 'probe.log'));
  return {
    ...p,
    results: () =>
      p
        .log()
        .split('\n')
        .filter((x) => x.startsWith('{'))
        .map((x) => JSON.parse(x) as ProbeResult),
    done: () =>
      new Promise<void>((res) => {
        if (p.proc.exitCode !== null || p.proc.signalCode !== null) res();
        else p.proc.once('exit', () => res());
      }),
  };
}

/** The longest time (ms) between two successful probe replies, with its start and end (wall clock). */
export function longestGap(results: ReadonlyArray<{ wall: number; ok: boolean }>): { gapMs: number; from: number; to: number } {
  const ok = results
    .filter((r) => r.ok)
    .map((r) => r.wall)
    .sort((a, b) => a - b);
  let best = { gapMs: 0, from: ok[0] ?? 0, to: ok[0] ?? 0 };
  for (let k = 1; k < ok.length; k++)
    if (ok[k]! - ok[k - 1]! > best.gapMs) best = { gapMs: ok[k]! - ok[k - 1]!, from: ok[k - 1]!, to: ok[k]! };
  return best;
}

/** Removes the lab: every process in its namespaces (by PID), the namespaces, the directory. */
export function haLabDown(suffix: string): string[] {
  const l = haLabNames(suffix);
  return clearNamespaces(allNs(l), l.dir, 3000);
}

/** GET on the control socket of tsvsd in director i: parsed JSON, or the text for /metrics. */
export function labApi(l: HaLab, i: 0 | 1, path: string): Promise<unknown> {
  return new Promise((res, rej) => {
    const req = httpRequest({ socketPath: l.socket(i), path, method: 'GET' }, (r) => {
      let body = '';
      r.setEncoding('utf8');
      r.on('data', (d: string) => (body += d));
      r.on('end', () => {
        try {
          res(path === '/metrics' ? body : JSON.parse(body));
        } catch (e) {
          rej(e);
        }
      });
    });
    req.setTimeout(5000, () => req.destroy(new Error(`${path}: timed out`)));
    req.on('error', rej);
    req.end();
  });
}

/** The VRRP status of tsvsd in director i (GET /v1/vrrp). */
export async function vrrpStatus(l: HaLab, i: 0 | 1): Promise<VrrpStatus> {
  return (await labApi(l, i, '/v1/vrrp')) as VrrpStatus;
}

/**
 * Sends raw IPv4 packets (IP header included, as built by src/ha/packet.ts) out of
 * `ifname` in namespace `ns`, through the raw-socket addon: for tests that put crafted VRRP
 * packets on the wire.
 */
export function injectPackets(ns: string, ifname: string, packets: Array<{ hex: string; dst: string }>): void {
  const addon = createRequire(import.meta.url).resolve('@neuralegion/raw-socket');
  const script = `
const raw = require(${JSON.stringify(addon)});
const s = raw.createSocket({ protocol: 112 });
const one = Buffer.alloc(4); one.writeInt32LE(1);
s.setOption(0, 3, one, 4);
const dev = Buffer.from(${JSON.stringify(ifname)} + '\\0'); s.setOption(1, 25, dev, dev.length);
const pk = ${JSON.stringify(packets)};
let left = pk.length;
for (const p of pk) { const b = Buffer.from(p.hex, 'hex'); s.send(b, 0, b.length, p.dst, (e) => { if (e) { console.error(e.message); process.exitCode = 1; } if (--left === 0) s.close(); }); }
`;
  const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, '-e', script], { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0) throw new Error(`injecting packets in ${ns}: ${r.stderr.trim() || `exit ${r.status}`}`);
}
