/**
 * The seed cluster in network namespaces (`tsvs lab up|down|status`), as root:
 *
 *     ns tsvs-c-S                 ns tsvs-d-S (director)                 ns tsvs-r1-S
 *   +--------------+        +--------------------------------+        +----------------+
 *   | 198.18.0.10  |--veth--| 198.18.0.1 (VIP)               |        | 198.19.0.11:80 |
 *   | tsvscS       |        | tsvsdcS      bridge tsvsbrS    |--veth--| nginx          |
 *   +--------------+        |              198.19.0.1 (RIP   |        +----------------+
 *                           |              side, gateway)    |        ns tsvs-r2-S
 *                           | tsvsd --dataplane nftables     |--veth--| 198.19.0.12:80 |
 *                           +--------------------------------+        +----------------+
 *
 * `--mode dr` (LVS-DR, direct routing) instead puts the director and the real servers on
 * one segment behind a router, so that replies go from the real servers straight to the
 * router and never through the director:
 *
 *     ns tsvs-c-S          ns tsvs-g-S (router)              ns tsvs-d-S (director)
 *   +-------------+      +-------------------------+       +------------------------+
 *   | 198.18.0.10 |-veth-| 198.18.0.254            |       | 198.19.0.1             |
 *   +-------------+      | bridge tsvsbrS          |-veth--| VIP 198.19.0.100/32    |
 *                        | 198.19.0.254 (gateway)  |       | tsvsd: netdev ingress, |
 *                        +---+---------------+-----+       | fwd ip to RIP          |
 *                            |veth           |veth         +------------------------+
 *                   ns tsvs-r1-S          ns tsvs-r2-S
 *                   198.19.0.11           198.19.0.12      (VIP on lo, arp_ignore=1,
 *                   nginx :80             nginx :80         arp_announce=2, gateway .254)
 *
 * The real servers also serve RIP:8080, and send its answers back via the director
 * (`ip rule ipproto tcp sport 8080 lookup 100`), so a NAT service can run beside DR.
 *
 * Everything is named with the `tsvs` prefix and the run's suffix S, lives under
 * /tmp/tsvs-lab-S (configs, pid files, nginx access logs, tsvsd's socket and log), and is
 * removed by `down`, which works from the names alone, so it also cleans up after a
 * partial `up`. No namespace gets a route to the host's own interfaces.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { connect } from 'node:net';
import { drSteps } from '../realserver/steps.js';

export const CLIENT_ADDR = '198.18.0.10';
export const VIP_ADDR = '198.18.0.1';
export const DIRECTOR_RIP_ADDR = '198.19.0.1';
export const REAL_ADDRS = ['198.19.0.11', '198.19.0.12'] as const;
/** DR lab: the VIP on the shared segment, and the router's two addresses. */
export const DR_VIP_ADDR = '198.19.0.100';
export const DR_ROUTER_CLIENT_ADDR = '198.18.0.254';
export const DR_ROUTER_LAN_ADDR = '198.19.0.254';

/**
 * DR lab: the real servers' nginx also listens on this port, and their answers from it are
 * routed back through the director (policy routing), so that a NAT (-m) service to it works
 * beside the DR services (bench/dr.ts compares them in one run).
 */
export const DR_NAT_PORT = 8080;

/** nat: the seed (director routes both directions); dr: direct routing behind a router. */
export type LabMode = 'nat' | 'dr';

/** Names and paths of one lab instance. */
export interface LabNames {
  suffix: string;
  dir: string;
  client: string;
  director: string;
  reals: [string, string];
  /** DR lab only: the router namespace, its client-side veth end, the director's LAN veth and its bridge port. */
  router: string;
  linkRouterClient: string;
  linkDirLan: string;
  linkBridgeDir: string;
  /** Veth ends: client side, director's client side, bridge, director-side ends of the real servers' veths, real-server ends. */
  linkClient: string;
  linkDirClient: string;
  bridge: string;
  linkDirReal: [string, string];
  linkReal: [string, string];
  socket: string;
  state: string;
  www: string;
}

/** Per-run suffix: lower-case letters and digits, short enough for 15-byte interface names. */
export function checkSuffix(s: string): string {
  if (!/^[a-z0-9]{1,7}$/.test(s)) throw new Error(`lab suffix "${s}": use 1 to 7 lower-case letters or digits`);
  return s;
}

export function labNames(suffix: string): LabNames {
  const s = checkSuffix(suffix);
  const dir = `/tmp/tsvs-lab-${s}`;
  return {
    suffix: s,
    dir,
    client: `tsvs-c-${s}`,
    director: `tsvs-d-${s}`,
    reals: [`tsvs-r1-${s}`, `tsvs-r2-${s}`],
    router: `tsvs-g-${s}`,
    linkRouterClient: `tsvsgc${s}`,
    linkDirLan: `tsvsdl${s}`,
    linkBridgeDir: `tsvsbd${s}`,
    linkClient: `tsvsc${s}`,
    linkDirClient: `tsvsdc${s}`,
    bridge: `tsvsbr${s}`,
    linkDirReal: [`tsvsd1${s}`, `tsvsd2${s}`],
    linkReal: [`tsvsr1${s}`, `tsvsr2${s}`],
    socket: join(dir, 'tsvsd.sock'),
    state: join(dir, 'tsvsd-state.json'),
    www: join(dir, 'www'),
  };
}

function run(cmd: string, args: string[], opts: { allowFail?: boolean; timeoutMs?: number } = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: opts.timeoutMs ?? 15_000 });
  if ((r.status !== 0 || r.error) && !opts.allowFail) {
    throw new Error(`${cmd} ${args.join(' ')}: ${r.error?.message ?? r.stderr.trim() ?? `exit ${r.status}`}`);
  }
  return r.stdout ?? '';
}

/** Runs a command inside a namespace. */
export function nsRun(ns: string, cmd: string, args: string[], opts: { allowFail?: boolean; timeoutMs?: number } = {}): string {
  return run('ip', ['netns', 'exec', ns, cmd, ...args], opts);
}

/** Sets a sysctl inside a namespace (`optional`: quietly skipped where the key does not exist). */
export function sysctl(ns: string, key: string, value: string, optional = false): void {
  const path = `/proc/sys/${key.replaceAll('.', '/')}`;
  const r = spawnSync('ip', ['netns', 'exec', ns, 'sh', '-c', `test -e ${path} && echo ${value} > ${path}`], { encoding: 'utf8' });
  if (r.status !== 0 && !optional) throw new Error(`sysctl ${key}=${value} in ${ns}: ${r.stderr.trim() || 'not available'}`);
}

/**
 * How to run one of the package's programs (tsvsd, tsvsadm): the built bin if there is
 * one, else the TypeScript entry through tsx (a checkout that was not built).
 */
export function toolCommand(name: 'tsvsd' | 'tsvsadm'): string[] {
  let dir = resolve(import.meta.dirname);
  for (let i = 0; i < 6; i++) {
    const bin = join(dir, 'node_modules', '.bin', name);
    // existsSync follows the symlink: a link to an unbuilt dist/ does not count.
    if (existsSync(bin)) return [bin];
    if (existsSync(join(dir, 'bin', `${name}.ts`)) && existsSync(join(dir, 'node_modules', 'tsx'))) {
      return [process.execPath, '--import', 'tsx', join(dir, 'bin', `${name}.ts`)];
    }
    dir = resolve(dir, '..');
  }
  throw new Error(`cannot find ${name} (run npm install / npm run build in the repo)`);
}

/** Where to find tsvsd (TSVS_LAB_TSVSD overrides). */
export function tsvsdCommand(): string[] {
  if (process.env.TSVS_LAB_TSVSD) return [process.env.TSVS_LAB_TSVSD];
  return toolCommand('tsvsd');
}

function nginxConf(n: LabNames, i: 0 | 1, mode: LabMode = 'nat'): string {
  const name = `r${i + 1}`;
  const base = join(n.dir, name);
  return `# tsvs lab real server ${name} (generated)
worker_processes 1;
daemon on;
pid ${base}/nginx.pid;
error_log ${base}/error.log warn;
events { worker_connections 4096; }
http {
  log_format lab '$remote_addr $remote_port "$request" $status $body_bytes_sent';
  access_log ${base}/access.log lab;
  client_body_temp_path ${base}/tmp/body;
  proxy_temp_path ${base}/tmp/proxy;
  fastcgi_temp_path ${base}/tmp/fastcgi;
  uwsgi_temp_path ${base}/tmp/uwsgi;
  scgi_temp_path ${base}/tmp/scgi;
  keepalive_requests 1000000;
  sendfile on;
  server {
    listen ${mode === 'dr' ? '80' : `${REAL_ADDRS[i]}:80`};${
      mode === 'dr'
        ? `
    listen ${REAL_ADDRS[i]}:${DR_NAT_PORT};`
        : ''
    }
    root ${n.www};
    add_header X-Real-Server ${name} always;
    location = /name { default_type text/plain; return 200 "${name}\\n"; }
    # bench/lab.ts fetches this page at tens of thousands of requests per second.
    location = /bench.html { access_log off; }
  }
}
`;
}

export interface UpOptions {
  suffix: string;
  /** Start tsvsd in the director (default true). */
  tsvsd?: boolean;
  /** Extra tsvsd arguments. */
  tsvsdArgs?: string[];
  log?: (msg: string) => void;
  /** nat (default): the seed cluster; dr: direct routing (see the header). */
  mode?: LabMode;
}

/** Builds the lab; on any failure it removes what it made and rethrows. */
export async function labUp(opts: UpOptions): Promise<LabNames> {
  const n = labNames(opts.suffix);
  const log = opts.log ?? (() => {});
  if (process.getuid?.() !== 0) throw new Error('tsvs lab needs root (network namespaces, nftables)');
  for (const cmd of ['ip', 'nft', 'nginx']) {
    if (spawnSync('sh', ['-c', `command -v ${cmd}`]).status !== 0) {
      throw new Error(`tsvs lab needs ${cmd} (apt-get install ${cmd === 'ip' ? 'iproute2' : cmd === 'nginx' ? 'nginx-light' : cmd})`);
    }
  }
  if (labExists(n)) throw new Error(`a lab with suffix ${n.suffix} exists already (tsvs lab down --suffix ${n.suffix})`);
  const mode = opts.mode ?? 'nat';
  if (mode !== 'nat' && mode !== 'dr') throw new Error(`lab mode "${String(mode)}": use nat or dr`);
  try {
    if (mode === 'dr') buildDrNetwork(n, log);
    else buildNetwork(n, log);
    writeFileSync(join(n.dir, 'mode'), `${mode}\n`);
    startNginx(n, log, mode);
    if (opts.tsvsd !== false) await startLabTsvsd(n, opts.tsvsdArgs ?? [], log);
    return n;
  } catch (e) {
    labDown(n.suffix);
    throw e;
  }
}

function buildNetwork(n: LabNames, log: (m: string) => void): void {
  mkdirSync(n.dir, { recursive: true });
  chmodSync(n.dir, 0o755);
  for (const ns of [n.client, n.director, ...n.reals]) {
    run('ip', ['netns', 'add', ns]);
    nsRun(ns, 'ip', ['link', 'set', 'lo', 'up']);
  }
  log(`namespaces ${n.client} ${n.director} ${n.reals.join(' ')}`);
  // Client side.
  run('ip', ['link', 'add', n.linkClient, 'netns', n.client, 'type', 'veth', 'peer', 'name', n.linkDirClient, 'netns', n.director]);
  nsRun(n.client, 'ip', ['addr', 'add', `${CLIENT_ADDR}/24`, 'dev', n.linkClient]);
  nsRun(n.client, 'ip', ['link', 'set', n.linkClient, 'up']);
  nsRun(n.client, 'ip', ['route', 'add', 'default', 'via', VIP_ADDR]);
  nsRun(n.director, 'ip', ['addr', 'add', `${VIP_ADDR}/24`, 'dev', n.linkDirClient]);
  nsRun(n.director, 'ip', ['link', 'set', n.linkDirClient, 'up']);
  // Real-server side: a bridge in the director, one veth per real server.
  nsRun(n.director, 'ip', ['link', 'add', n.bridge, 'type', 'bridge']);
  nsRun(n.director, 'ip', ['addr', 'add', `${DIRECTOR_RIP_ADDR}/24`, 'dev', n.bridge]);
  nsRun(n.director, 'ip', ['link', 'set', n.bridge, 'up']);
  for (const i of [0, 1] as const) {
    run('ip', ['link', 'add', n.linkDirReal[i], 'netns', n.director, 'type', 'veth', 'peer', 'name', n.linkReal[i], 'netns', n.reals[i]]);
    nsRun(n.director, 'ip', ['link', 'set', n.linkDirReal[i], 'master', n.bridge, 'up']);
    nsRun(n.reals[i], 'ip', ['addr', 'add', `${REAL_ADDRS[i]}/24`, 'dev', n.linkReal[i]]);
    nsRun(n.reals[i], 'ip', ['link', 'set', n.linkReal[i], 'up']);
    // Replies must go back through the director, where conntrack un-NATs them.
    nsRun(n.reals[i], 'ip', ['route', 'add', 'default', 'via', DIRECTOR_RIP_ADDR]);
  }
  for (const ns of [n.client, n.director, ...n.reals]) {
    sysctl(ns, 'net.ipv4.conf.all.rp_filter', '0');
    sysctl(ns, 'net.ipv4.conf.default.rp_filter', '0');
  }
  sysctl(n.director, 'net.ipv4.ip_forward', '1');
  sysctl(n.director, 'net.bridge.bridge-nf-call-iptables', '0', true);
  sysctl(n.director, 'net.bridge.bridge-nf-call-ip6tables', '0', true);
  log(`network: client ${CLIENT_ADDR}, director ${VIP_ADDR} / ${DIRECTOR_RIP_ADDR}, real servers ${REAL_ADDRS.join(', ')}`);
}

/** The DR topology of the header: router, one LAN bridge, real servers with the VIP on lo. */
function buildDrNetwork(n: LabNames, log: (m: string) => void): void {
  mkdirSync(n.dir, { recursive: true });
  chmodSync(n.dir, 0o755);
  const all = [n.client, n.router, n.director, ...n.reals];
  for (const ns of all) {
    run('ip', ['netns', 'add', ns]);
    nsRun(ns, 'ip', ['link', 'set', 'lo', 'up']);
  }
  log(`namespaces ${all.join(' ')}`);
  for (const ns of all) {
    sysctl(ns, 'net.ipv4.conf.all.rp_filter', '0');
    sysctl(ns, 'net.ipv4.conf.default.rp_filter', '0');
  }
  // Client <-> router.
  run('ip', ['link', 'add', n.linkClient, 'netns', n.client, 'type', 'veth', 'peer', 'name', n.linkRouterClient, 'netns', n.router]);
  nsRun(n.client, 'ip', ['addr', 'add', `${CLIENT_ADDR}/24`, 'dev', n.linkClient]);
  nsRun(n.client, 'ip', ['link', 'set', n.linkClient, 'up']);
  nsRun(n.client, 'ip', ['route', 'add', 'default', 'via', DR_ROUTER_CLIENT_ADDR]);
  nsRun(n.router, 'ip', ['addr', 'add', `${DR_ROUTER_CLIENT_ADDR}/24`, 'dev', n.linkRouterClient]);
  nsRun(n.router, 'ip', ['link', 'set', n.linkRouterClient, 'up']);
  // The LAN: a bridge in the router namespace; the director and the real servers on it.
  nsRun(n.router, 'ip', ['link', 'add', n.bridge, 'type', 'bridge']);
  nsRun(n.router, 'ip', ['addr', 'add', `${DR_ROUTER_LAN_ADDR}/24`, 'dev', n.bridge]);
  nsRun(n.router, 'ip', ['link', 'set', n.bridge, 'up']);
  sysctl(n.router, 'net.ipv4.ip_forward', '1');
  sysctl(n.router, 'net.bridge.bridge-nf-call-iptables', '0', true);
  run('ip', ['link', 'add', n.linkBridgeDir, 'netns', n.router, 'type', 'veth', 'peer', 'name', n.linkDirLan, 'netns', n.director]);
  nsRun(n.router, 'ip', ['link', 'set', n.linkBridgeDir, 'master', n.bridge, 'up']);
  nsRun(n.director, 'ip', ['addr', 'add', `${DIRECTOR_RIP_ADDR}/24`, 'dev', n.linkDirLan]);
  nsRun(n.director, 'ip', ['addr', 'add', `${DR_VIP_ADDR}/32`, 'dev', n.linkDirLan]);
  nsRun(n.director, 'ip', ['link', 'set', n.linkDirLan, 'up']);
  nsRun(n.director, 'ip', ['route', 'add', 'default', 'via', DR_ROUTER_LAN_ADDR]);
  // The nftables plane's start check wants forwarding on; DR itself does not route.
  sysctl(n.director, 'net.ipv4.ip_forward', '1');
  for (const i of [0, 1] as const) {
    run('ip', ['link', 'add', n.linkDirReal[i], 'netns', n.router, 'type', 'veth', 'peer', 'name', n.linkReal[i], 'netns', n.reals[i]]);
    nsRun(n.router, 'ip', ['link', 'set', n.linkDirReal[i], 'master', n.bridge, 'up']);
    nsRun(n.reals[i], 'ip', ['addr', 'add', `${REAL_ADDRS[i]}/24`, 'dev', n.linkReal[i]]);
    nsRun(n.reals[i], 'ip', ['link', 'set', n.linkReal[i], 'up']);
    // Replies go to the router, never through the director.
    nsRun(n.reals[i], 'ip', ['route', 'add', 'default', 'via', DR_ROUTER_LAN_ADDR]);
    // NAT beside DR: answers from port DR_NAT_PORT go back through the director (to be un-NATed).
    nsRun(n.reals[i], 'ip', ['rule', 'add', 'ipproto', 'tcp', 'sport', String(DR_NAT_PORT), 'lookup', '100', 'priority', '100']);
    nsRun(n.reals[i], 'ip', ['route', 'add', 'default', 'via', DIRECTOR_RIP_ADDR, 'table', '100']);
    // The real-server side of DR, exactly as `tsvs realserver setup --mode dr` prints it.
    for (const step of drSteps(DR_VIP_ADDR, n.linkReal[i])) nsRun(n.reals[i], step.argv[0]!, step.argv.slice(1));
  }
  log(
    `DR network: client ${CLIENT_ADDR} via router ${DR_ROUTER_CLIENT_ADDR}; LAN 198.19.0.0/24: router ${DR_ROUTER_LAN_ADDR}, director ${DIRECTOR_RIP_ADDR} + VIP ${DR_VIP_ADDR}, real servers ${REAL_ADDRS.join(', ')} (VIP on lo)`,
  );
}

/** The mode a lab was built in (nat when unknown). */
export function labMode(suffix: string): LabMode {
  try {
    return readFileSync(join(labNames(suffix).dir, 'mode'), 'utf8').trim() === 'dr' ? 'dr' : 'nat';
  } catch {
    return 'nat';
  }
}

function startNginx(n: LabNames, log: (m: string) => void, mode: LabMode = 'nat'): void {
  mkdirSync(n.www, { recursive: true });
  writeFileSync(join(n.www, 'index.html'), '<!doctype html><title>tsvs lab</title><p>tsvs lab: the same page on every real server.</p>\n');
  writeFileSync(join(n.www, 'bench.html'), `<!doctype html><html><body>${'tsvs bench '.repeat(55)}</body></html>\n`);
  // A file for long transfers (sparse: no disk space used).
  const big = openSync(join(n.www, 'big.bin'), 'w');
  closeSync(big);
  run('truncate', ['-s', '256M', join(n.www, 'big.bin')]);
  for (const i of [0, 1] as const) {
    const base = join(n.dir, `r${i + 1}`);
    mkdirSync(join(base, 'tmp'), { recursive: true });
    for (const p of [base, join(base, 'tmp')]) chmodSync(p, 0o755);
    const conf = join(base, 'nginx.conf');
    writeFileSync(conf, nginxConf(n, i, mode));
    nsRun(n.reals[i], 'nginx', ['-c', conf, '-p', base]);
    log(
      `nginx on ${mode === 'dr' ? `${REAL_ADDRS[i]}:80 and ${DR_VIP_ADDR}:80` : `${REAL_ADDRS[i]}:80`} in ${n.reals[i]} (access log ${join(base, 'access.log')})`,
    );
  }
}

async function startLabTsvsd(n: LabNames, extra: string[], log: (m: string) => void): Promise<void> {
  const [cmd, ...args] = tsvsdCommand();
  const out = openSync(join(n.dir, 'tsvsd.log'), 'a');
  const child = spawn(
    'ip',
    ['netns', 'exec', n.director, cmd!, ...args, '--dataplane', 'nftables', '--socket', n.socket, '--state', n.state, ...extra],
    { stdio: ['ignore', out, out], detached: true },
  );
  closeSync(out);
  child.unref();
  writeFileSync(join(n.dir, 'tsvsd.pid'), `${child.pid}\n`);
  const deadline = Date.now() + 20_000;
  while (!(await socketAnswers(n.socket))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      const text = existsSync(join(n.dir, 'tsvsd.log')) ? readFileSync(join(n.dir, 'tsvsd.log'), 'utf8') : '';
      throw new Error(`tsvsd did not start in ${n.director}: ${text.slice(-2000)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  log(`tsvsd (pid ${child.pid}) in ${n.director}, control socket ${n.socket}`);
}

/** Whether a Unix socket (tsvsd's control socket) accepts a connection. */
export function socketAnswers(path: string): Promise<boolean> {
  return new Promise((res) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      res(true);
    });
    s.once('error', () => res(false));
  });
}

/** The names of the host's network namespaces. */
export function listNetns(): string[] {
  return run('ip', ['netns', 'list'], { allowFail: true })
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter(Boolean);
}

function labExists(n: LabNames): boolean {
  const have = new Set(listNetns());
  return [n.client, n.router, n.director, ...n.reals].some((ns) => have.has(ns));
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function readPid(path: string): number | null {
  try {
    const v = Number(readFileSync(path, 'utf8').trim());
    return Number.isInteger(v) && v > 0 ? v : null;
  } catch {
    return null;
  }
}

/**
 * Removes a lab: stops tsvsd (SIGTERM, so it removes its nftables tables), nginx and any
 * other process left in the lab's namespaces, by PID, then deletes the namespaces (which
 * takes their veths and the bridge along) and the lab directory. Safe to run on a partial lab.
 */
export function labDown(suffix: string): string[] {
  const n = labNames(suffix);
  const done: string[] = [];
  const tsvsdPid = readPid(join(n.dir, 'tsvsd.pid'));
  if (tsvsdPid && pidAlive(tsvsdPid)) {
    process.kill(tsvsdPid, 'SIGTERM');
    const until = Date.now() + 5000;
    while (pidAlive(tsvsdPid) && Date.now() < until) spawnSync('sleep', ['0.05']);
    done.push(`stopped tsvsd ${tsvsdPid}`);
  }
  done.push(...clearNamespaces([n.client, n.router, n.director, ...n.reals], n.dir, 2000));
  return done;
}

/**
 * Stops every process still in those of `namespaces` that exist (SIGTERM, then SIGKILL,
 * each given up to `graceMs`), by PID, deletes the namespaces and removes `dir`; what it
 * did, one line per item. Whatever still runs in a lab's namespace was started by the lab.
 */
export function clearNamespaces(namespaces: readonly string[], dir: string, graceMs: number): string[] {
  const done: string[] = [];
  const have = new Set(listNetns());
  const nss = namespaces.filter((ns) => have.has(ns));
  for (const ns of nss) {
    const pids = run('ip', ['netns', 'pids', ns], { allowFail: true })
      .split('\n')
      .map(Number)
      .filter((p) => p > 0);
    for (const sig of ['SIGTERM', 'SIGKILL'] as const) {
      const alive = pids.filter(pidAlive);
      for (const p of alive) {
        try {
          process.kill(p, sig);
        } catch {
          /* gone */
        }
      }
      const until = Date.now() + graceMs;
      while (alive.some(pidAlive) && Date.now() < until) spawnSync('sleep', ['0.05']);
    }
    if (pids.length) done.push(`stopped ${pids.length} process(es) in ${ns}`);
  }
  for (const ns of nss) {
    run('ip', ['netns', 'del', ns], { allowFail: true });
    done.push(`deleted namespace ${ns}`);
  }
  if (existsSync(dir)) {
    rmSync(dir, { recursive: true, force: true });
    done.push(`removed ${dir}`);
  }
  return done;
}

/** What exists of a lab, one line per item. */
export function labStatus(suffix: string): { exists: boolean; lines: string[] } {
  const n = labNames(suffix);
  const have = new Set(listNetns());
  const lines: string[] = [];
  let exists = false;
  const mode = labMode(suffix);
  lines.push(`mode: ${mode}`);
  for (const ns of mode === 'dr' ? [n.client, n.router, n.director, ...n.reals] : [n.client, n.director, ...n.reals]) {
    const ok = have.has(ns);
    exists ||= ok;
    lines.push(`namespace ${ns}: ${ok ? 'present' : 'absent'}`);
  }
  for (const i of [0, 1] as const) {
    const pid = readPid(join(n.dir, `r${i + 1}`, 'nginx.pid'));
    lines.push(`nginx ${REAL_ADDRS[i]}:80: ${pid && pidAlive(pid) ? `running (pid ${pid})` : 'not running'}`);
  }
  const tp = readPid(join(n.dir, 'tsvsd.pid'));
  lines.push(`tsvsd in ${n.director}: ${tp && pidAlive(tp) ? `running (pid ${tp}), TSVS_SOCKET=${n.socket}` : 'not running'}`);
  if (have.has(n.director)) {
    const tables = nsRun(n.director, 'nft', ['list', 'tables'], { allowFail: true }).trim();
    lines.push(`nftables in ${n.director}: ${tables ? tables.split('\n').join(', ') : 'no tables'}`);
  }
  return { exists, lines };
}
