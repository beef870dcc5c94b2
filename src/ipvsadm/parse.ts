/**
 * The ipvsadm 1.31 command line, parsed the way ipvsadm parses it: options read one at a
 * time by the popt-style scanner (getopt.ts), each applied to ipvsadm's command entry as
 * ipvsadm applies it, then ipvsadm's own checks in ipvsadm's order (options.ts), each
 * failing with ipvsadm's message and exit status. The result is a typed Command; turning
 * it into API calls is the CLI's job, and this file does no I/O of its own: host names are
 * resolved through an injected function and /etc/services arrives as text.
 *
 * Behaviour was checked against the real ipvsadm 1.31 binary (Debian 1:1.31-1) with the
 * kernel interface stubbed out; where it differs from the upstream source or the man
 * page, the comment says which one we follow.
 */
import { anyAddr, parseIPv4 } from '../core/addr.js';
import {
  SCHED_FLAG_1,
  SCHED_FLAG_2,
  SCHED_FLAG_3,
  type DestConfig,
  type DestKey,
  type Family,
  type FwdMethod,
  type Op,
  type Protocol,
  type ServiceConfig,
  type ServiceKey,
  type TunCsum,
  type TunType,
} from '../core/types.js';
import type { SyncDaemonConfig } from '../sync/manager.js';
import { DEFAULT_PERSISTENT_TIMEOUT, MAX_THRESHOLD, MAX_TIMEOUT, MAX_WEIGHT } from '../core/schema.js';
import { lookupV4, parseAddrPort, type NameLookup } from './address.js';
import { OptionScanner } from './getopt.js';
import { atoi, formatV4, inetAton, pton6, stringToNumber } from './libc.js';
import { COMMAND_TAGS, Fail, fail, genericOptCheck, OptionsSeen, tunnelOptCheck, type CmdName, type OptName } from './options.js';
import { clip } from '../core/quote.js';

/** Scheduler used when -A/-E is given no -s. */
const DEFAULT_SCHEDULER = 'wlc';
/** The kernel's IP_VS_SCHEDNAME_MAXLEN - 1: ipvsadm silently truncates longer names. */
const SCHED_NAME_MAX = 15;
/** IP_VS_PENAME_MAXLEN: ipvsadm copies at most this many bytes of --pe. */
const PE_NAME_MAX = 16;
const IFNAME_MAX = 15;
const UINT_MAX = 4294967295;

/** Output switches of -L / -S. `json` is a tsvs extension. */
/** A listing with no option given: what bare `ipvsadm` and `-L` print. */
export const LIST_DEFAULTS: Readonly<ListOptions> = {
  numeric: false,
  stats: false,
  rate: false,
  thresholds: false,
  persistentConn: false,
  tunInfo: false,
  nosort: false,
  exact: false,
  json: false,
};

export interface ListOptions {
  numeric: boolean;
  stats: boolean;
  rate: boolean;
  thresholds: boolean;
  persistentConn: boolean;
  tunInfo: boolean;
  nosort: boolean;
  exact: boolean;
  json: boolean;
}

/** What one ipvsadm command line asks for. */
export type Command =
  | { cmd: 'help' }
  | { cmd: 'version' }
  /** -L: the whole table, or one service (-L -t VIP:port). */
  | { cmd: 'list'; view: 'services'; service?: ServiceKey; opts: ListOptions }
  | { cmd: 'list'; view: 'connections' | 'timeout' | 'daemon'; opts: ListOptions }
  | { cmd: 'save'; opts: ListOptions }
  | { cmd: 'restore' }
  /** -A -E -D -C -a -e -d -Z --set: one change to the table. */
  | { cmd: 'apply'; op: Op }
  | { cmd: 'start-daemon' | 'stop-daemon'; daemon: SyncDaemonConfig };

/** A refusal: `text` goes to stderr verbatim (newline included), then exit with `exitCode`. */
export interface ParseError {
  cmd: 'error';
  text: string;
  exitCode: number;
}

/**
 * What the parser needs from the outside world: /etc/services, and gethostbyname (a host
 * name to an IPv4 address, as ipvsadm takes only IPv4 answers, or null), which is asked
 * only about words that are not numeric addresses.
 */
export interface ParseEnv extends NameLookup {
  /** Program name for "Try `%s -h' ..." (ipvsadm prints its argv[0]). */
  progName: string;
}

/** The text ipvsadm prints when the first option is not a command. */
export function tryHelpText(progName: string): string {
  return `Try \`${progName} -h' or '${progName} --help' for more information.\n`;
}

/**
 * Parses one ipvsadm command line (without argv[0]) into a Command, or the error ipvsadm
 * would print. `argv` must not be empty: ipvsadm with no arguments lists the table, and
 * that is the caller's decision.
 */
export async function parseCommand(argv: readonly string[], env: ParseEnv): Promise<Command | ParseError> {
  try {
    return await parseOrFail(argv, env);
  } catch (e) {
    if (e instanceof Fail) return { cmd: 'error', text: e.text, exitCode: e.exitCode };
    throw e;
  }
}

/** ipvsadm's order: the command, every other option as it comes, positionals, checks. */
async function parseOrFail(argv: readonly string[], env: ParseEnv): Promise<Command> {
  const scan = new OptionScanner(argv);
  const first = readCommand(scan, env);
  if ('cmd' in first) return first;
  const p: Parse = { cmd: first.name, ce: newEntry(), options: new OptionsSeen(), env, scan, schedFlagsArg: '' };
  if (p.cmd === 'start-daemon' || p.cmd === 'stop-daemon') readDaemonState(p, first.arg);
  await readOptions(p);
  readPositionals(p);
  const schedFlags = checkEntry(p);
  return buildCommand(p, schedFlags);
}

// ---------------------------------------------------------------------------------------
// The parse's state

/** The fields ipvsadm's struct ipvs_command_entry holds while options are read. */
interface Entry {
  svc: {
    /** 0 until an address or -f sets it, as after ipvsadm's memset. */
    af: 0 | Family;
    protocol: Protocol | null;
    addr: string;
    port: number;
    fwmark: number;
    sched: string;
    persistent: boolean;
    timeout: number;
    netmask: number;
    ops: boolean;
    pe: string;
  };
  dest: {
    af: 0 | Family;
    addr: string;
    port: number;
    fwd: FwdMethod;
    weight: number;
    uThreshold: number;
    lThreshold: number;
    tunType: TunType;
    tunPort: number;
    tunCsum: TunCsum;
  };
  timeouts: { tcp: number; tcpfin: number; udp: number };
  daemon: SyncDaemonConfig;
  opts: ListOptions;
}

function newEntry(): Entry {
  return {
    svc: {
      af: 0,
      protocol: null,
      addr: '0.0.0.0',
      port: 0,
      fwmark: 0,
      sched: '',
      persistent: false,
      timeout: 0,
      netmask: 0xffffffff,
      ops: false,
      pe: '',
    },
    dest: {
      af: 0,
      addr: '0.0.0.0',
      port: 0,
      fwd: 'route',
      weight: 1,
      uThreshold: 0,
      lThreshold: 0,
      tunType: 'ipip',
      tunPort: 0,
      tunCsum: 'nocsum',
    },
    timeouts: { tcp: 0, tcpfin: 0, udp: 0 },
    daemon: { state: 'master', mcastIfn: '', syncid: 0 },
    opts: { ...LIST_DEFAULTS },
  };
}

/** One command line being parsed. */
interface Parse {
  cmd: CmdName;
  ce: Entry;
  options: OptionsSeen;
  env: ParseEnv;
  scan: OptionScanner;
  /** -b's list, checked only once the scheduler is final. */
  schedFlagsArg: string;
}

// ---------------------------------------------------------------------------------------
// Step 1: the command

/** The first option must be a command; anything else only earns the "Try" hint. */
function readCommand(scan: OptionScanner, env: ParseEnv): { cmd: 'help' } | { cmd: 'version' } | { name: CmdName; arg: string | null } {
  const tryHelp = (): never => {
    throw new Fail(tryHelpText(env.progName), 255);
  };
  const first = scan.get();
  if (first.kind !== 'opt') return tryHelp();
  const command = COMMAND_TAGS[first.tag];
  if (command === undefined) return tryHelp();
  if (command === 'help' || command === 'version') return { cmd: command };
  return { name: command, arg: first.arg };
}

/** --start-daemon / --stop-daemon carry the state as their argument. */
function readDaemonState(p: Parse, state: string | null): void {
  if (state === 'master' || state === 'backup') p.ce.daemon.state = state;
  // Sic: ipvsadm's two messages differ.
  else if (p.cmd === 'start-daemon') fail('illegal start-daemon parameter specified');
  else fail('illegal start_daemon specified');
}

// ---------------------------------------------------------------------------------------
// Step 2: every other option, in command-line order

/** Applies one option to the entry; `raw` is null where an optional argument was left out. */
type OptionHandler = (p: Parse, arg: string, raw: string | null) => void | Promise<void>;

async function readOptions(p: Parse): Promise<void> {
  for (;;) {
    const it = p.scan.get();
    if (it.kind === 'end') return;
    // popt errors after the command: "<word>: <reason>", and ipvsadm returns -1.
    if (it.kind === 'error') throw new Fail(`${it.text}\n`, 255);
    const handler = OPTION_HANDLERS[it.tag];
    // A second command (or -h/-v) after the first: ipvsadm names the argv word it was
    // reading, which for --start-daemon is the daemon state.
    if (handler === undefined) fail(`invalid option \`${clip(p.scan.lastWord)}'`);
    // Only address options resolve names; awaiting the others would cost a tick each over a long -R.
    const pending = handler(p, it.arg ?? '', it.arg);
    if (pending) await pending;
  }
}

/** An option without a value that only sets a listing switch (or nothing). */
const listSwitch =
  (name: OptName, set?: keyof ListOptions): OptionHandler =>
  (p) => {
    p.options.add(name);
    if (set) p.ce.opts[set] = true;
  };

/** An option whose value is a number in [min, max] (string_to_number), else `message`. */
const bounded =
  (name: OptName, min: number, max: number, message: string, set: (ce: Entry, v: number) => void): OptionHandler =>
  (p, arg) => {
    p.options.add(name);
    const v = stringToNumber(arg, min, max);
    if (v === null) fail(message);
    set(p.ce, v);
  };

/** -t / -u / --sctp-service: the virtual service's address, port and protocol. */
async function serviceAddress(p: Parse, arg: string, protocol: Protocol): Promise<void> {
  const { ce } = p;
  p.options.add('service-address');
  ce.svc.protocol = protocol;
  const a = await parseAddrPort(arg, protocol, p.env);
  if (!a) fail('illegal virtual server address[:port] specified');
  ce.svc.af = a.af;
  ce.svc.addr = a.addr;
  if (a.port !== null) ce.svc.port = a.port;
  if (a.af === 6) ce.svc.netmask = 128;
}

/** -M: an IPv4 mask (or, as in ipvsadm, a host name that resolves to one), or an IPv6 prefix length. */
async function netmask(p: Parse, arg: string): Promise<void> {
  const { ce } = p;
  p.options.add('netmask');
  if (ce.svc.af === 6) {
    const plen = atoi(arg);
    if (plen < 1 || plen > 128) fail('illegal ipv6 netmask specified');
    ce.svc.netmask = plen;
    return;
  }
  let m = inetAton(arg);
  if (m === null) {
    const r = await lookupV4(arg, p.env);
    m = r === null ? null : parseIPv4(r);
  }
  if (m === null) fail('illegal virtual server persistent mask specified');
  ce.svc.netmask = m;
}

/** -r: the real server; port names are looked up for the service's protocol as known so far. */
async function realServer(p: Parse, arg: string): Promise<void> {
  const { ce } = p;
  p.options.add('real-server');
  const a = await parseAddrPort(arg, ce.svc.protocol, p.env);
  if (!a) fail('illegal real server address[:port] specified');
  ce.dest.af = a.af;
  ce.dest.addr = a.addr;
  ce.dest.port = a.port ?? ce.svc.port;
}

const forwarding =
  (fwd: FwdMethod): OptionHandler =>
  (p) => {
    p.options.add('forwarding-method');
    p.ce.dest.fwd = fwd;
  };

const tunCsum =
  (name: OptName, csum: TunCsum): OptionHandler =>
  (p) => {
    p.options.add(name);
    p.ce.dest.tunCsum = csum;
  };

/** --mcast-group: an IPv6 multicast group (ff00::/8) or an IPv4 one (224.0.0.0/4). */
function mcastGroup(p: Parse, arg: string): void {
  p.options.add('mcast-group');
  if (arg.includes(':')) {
    const g = pton6(arg);
    if (g === null || !g.startsWith('ff')) fail(`invalid IPv6 mcast-group \`${clip(arg)}'`);
    p.ce.daemon.group = g;
  } else {
    const g = parseIPv4(arg);
    if (g === null || g >>> 28 !== 0xe) fail(`invalid IPv4 mcast-group \`${clip(arg)}'`);
    p.ce.daemon.group = formatV4(g);
  }
}

/** What each option tag does; a tag not here is a command in the wrong place. */
const OPTION_HANDLERS: Record<string, OptionHandler> = {
  // The virtual service
  t: (p, arg) => serviceAddress(p, arg, 'tcp'),
  u: (p, arg) => serviceAddress(p, arg, 'udp'),
  sctp: (p, arg) => serviceAddress(p, arg, 'sctp'),
  f: (p, arg) => {
    p.options.add('service-address');
    p.ce.svc.af = 4;
    p.ce.svc.protocol = 'tcp';
    const mark = stringToNumber(arg, 1, UINT_MAX);
    if (mark === null) fail(`invalid fwmark value \`${clip(arg)}' specified`);
    p.ce.svc.fwmark = mark;
  },
  6: (p) => {
    // Sic: ipvsadm's message carries its own newline before fail() adds another.
    if (!p.ce.svc.fwmark) fail('-6 used before -f\n');
    p.ce.svc.af = 6;
    p.ce.svc.netmask = 128;
  },
  s: (p, arg) => {
    p.options.add('scheduler');
    p.ce.svc.sched = arg.slice(0, SCHED_NAME_MAX);
  },
  p: (p, _arg, raw) => {
    p.options.add('persistent');
    p.ce.svc.persistent = true;
    p.ce.svc.timeout = parseTimeout(raw, 1, MAX_TIMEOUT);
  },
  M: netmask,
  o: (p) => {
    p.options.add('ops');
    p.ce.svc.ops = true;
  },
  pe: (p, arg) => {
    p.options.add('pe');
    p.ce.svc.pe = arg.slice(0, PE_NAME_MAX);
  },
  b: (p, arg) => {
    p.options.add('sched-flags');
    p.schedFlagsArg = arg;
  },

  // The real server
  r: realServer,
  i: forwarding('tunnel'),
  g: forwarding('route'),
  m: forwarding('masq'),
  fullnat: forwarding('fullnat'),
  // 0..65535 as upstream ipvsadm's source and the kernel's weight field (Debian's 1.31
  // binary accepts up to INT_MAX).
  w: bounded('weight', 0, MAX_WEIGHT, 'illegal weight specified', (ce, v) => (ce.dest.weight = v)),
  x: bounded('u-threshold', 0, MAX_THRESHOLD, 'illegal u_threshold specified', (ce, v) => (ce.dest.uThreshold = v)),
  y: bounded('l-threshold', 0, MAX_THRESHOLD, 'illegal l_threshold specified', (ce, v) => (ce.dest.lThreshold = v)),
  'tun-type': (p, arg) => {
    p.options.add('tun-type');
    if (arg !== 'ipip' && arg !== 'gue' && arg !== 'gre') fail('illegal tunnel type specified');
    p.ce.dest.tunType = arg;
  },
  'tun-port': bounded('tun-port', 1, 65535, 'illegal tunnel port specified', (ce, v) => (ce.dest.tunPort = v)),
  'tun-nocsum': tunCsum('tun-nocsum', 'nocsum'),
  'tun-csum': tunCsum('tun-csum', 'csum'),
  'tun-remcsum': tunCsum('tun-remcsum', 'remcsum'),

  // The sync daemon
  'mcast-interface': (p, arg) => {
    p.options.add('mcast-interface');
    p.ce.daemon.mcastIfn = arg.slice(0, IFNAME_MAX);
  },
  syncid: bounded('syncid', 0, 255, 'illegal syncid specified', (ce, v) => (ce.daemon.syncid = v)),
  'mcast-group': mcastGroup,
  'mcast-port': bounded('mcast-port', 1, 65535, 'illegal mcast-port specified', (ce, v) => (ce.daemon.port = v)),
  'mcast-ttl': bounded('mcast-ttl', 1, 255, 'illegal mcast-ttl specified', (ce, v) => (ce.daemon.ttl = v)),
  'sync-maxlen': bounded('sync-maxlen', 1, 65535 - 20 - 8, 'illegal sync-maxlen specified', (ce, v) => (ce.daemon.maxlen = v)),

  // Listings
  c: listSwitch('connection'),
  n: listSwitch('numeric', 'numeric'),
  timeout: listSwitch('timeout'),
  daemon: listSwitch('daemon'),
  stats: listSwitch('stats', 'stats'),
  rate: listSwitch('rate', 'rate'),
  thresholds: listSwitch('thresholds', 'thresholds'),
  'persistent-conn': listSwitch('persistent-conn', 'persistentConn'),
  nosort: listSwitch('nosort', 'nosort'),
  // "does nothing, for backwards compatibility"; may even repeat.
  sort: () => {},
  X: listSwitch('exact', 'exact'),
  json: listSwitch('json', 'json'),
  'tun-info': listSwitch('tun-info', 'tunInfo'),
};

/** parse_timeout: no value (only -p can omit it) means the default persistence timeout. */
function parseTimeout(s: string | null, min: number, max: number): number {
  if (s === null) return DEFAULT_PERSISTENT_TIMEOUT;
  const v = stringToNumber(s, min, max);
  if (v === null) fail(`invalid timeout value \`${clip(s)}' specified`);
  return v;
}

// ---------------------------------------------------------------------------------------
// Step 3: positional words

/** --set takes its three timeouts as positionals; every other command takes none. */
function readPositionals(p: Parse): void {
  const args = p.scan.leftovers;
  let used = 0;
  if (p.cmd === 'set') {
    if (args.length < 3) fail('--set option requires 3 timeout values');
    p.ce.timeouts.tcp = parseTimeout(args[0]!, 0, MAX_TIMEOUT);
    p.ce.timeouts.tcpfin = parseTimeout(args[1]!, 0, MAX_TIMEOUT);
    p.ce.timeouts.udp = parseTimeout(args[2]!, 0, MAX_TIMEOUT);
    used = 3;
  }
  if (args.length > used) fail(`unexpected argument ${clip(args[used])}`);
}

// ---------------------------------------------------------------------------------------
// Step 4: ipvsadm's checks of the whole command, in its order

/** Runs the checks and fills in defaults; returns the scheduler flags. */
function checkEntry(p: Parse): number {
  const { cmd, ce, options } = p;
  // Scheduler flags are checked against the final scheduler, before the option table.
  const schedFlags = p.schedFlagsArg !== '' ? parseSchedFlags(ce.svc.sched, p.schedFlagsArg) : 0;
  genericOptCheck(cmd, options);
  if (cmd === 'add-service' || cmd === 'edit-service') checkService(ce);
  if (cmd === 'start-daemon' && ce.daemon.mcastIfn === '') ce.daemon.mcastIfn = 'eth0';
  if (cmd === 'add-server' || cmd === 'edit-server') checkServer(ce, options);
  if (cmd === 'list') checkList(options);
  return schedFlags;
}

/** parse_sched_flags: comma list (empty items skipped, as strtok does); sh-/mh- flags need that scheduler. */
function parseSchedFlags(sched: string, list: string): number {
  const effective = sched !== '' ? sched : DEFAULT_SCHEDULER;
  let flags = 0;
  for (const flag of list.split(',')) {
    if (flag === '') continue;
    const needs = /^(sh|mh)-/.exec(flag)?.[1];
    switch (flag) {
      case 'flag-1':
      case 'sh-fallback':
      case 'mh-fallback':
        flags |= SCHED_FLAG_1;
        break;
      case 'flag-2':
      case 'sh-port':
      case 'mh-port':
        flags |= SCHED_FLAG_2;
        break;
      case 'flag-3':
        flags |= SCHED_FLAG_3;
        break;
      default:
        fail(`invalid scheduler flag \`${clip(flag)}'`);
    }
    if (needs !== undefined && effective !== needs) fail(`incompatible scheduler flag \`${clip(flag)}'`);
  }
  return flags;
}

/** -A / -E: a port unless persistent or fwmark, OPS only for UDP, wlc by default. */
function checkService(ce: Entry): void {
  if (!ce.svc.fwmark && !ce.svc.port && !ce.svc.persistent) fail('Zero port specified for non-persistent service');
  if (ce.svc.ops && !ce.svc.fwmark && ce.svc.protocol !== 'udp') fail('One-Packet Scheduling is only for UDP virtual services');
  if (ce.svc.sched === '') ce.svc.sched = DEFAULT_SCHEDULER;
}

const TUNNEL_OPTIONS: OptName[] = ['tun-type', 'tun-port', 'tun-nocsum', 'tun-csum', 'tun-remcsum'];

/** -a / -e: the port DR and TUN cannot change, address families, tunnel options. */
function checkServer(ce: Entry, options: OptionsSeen): void {
  const fwd = ce.dest.fwd;
  // DR and tunnelling cannot change the port; ipvsadm quietly uses the virtual one.
  if (!ce.svc.fwmark && (fwd === 'tunnel' || fwd === 'route')) ce.dest.port = ce.svc.port;
  if (ce.dest.af !== ce.svc.af && fwd !== 'tunnel') fail('Different address family is allowed only for tunneling servers');
  if (TUNNEL_OPTIONS.some((o) => options.has(o)) && fwd !== 'tunnel') fail('Tunnel options conflict with forward method');
  tunnelOptCheck(ce.dest.tunType, options);
}

/** -L: connections, timeouts and daemons have no counters; persistence needs the table. */
function checkList(options: OptionsSeen): void {
  const has = (n: OptName) => options.has(n);
  if (
    ((has('connection') || has('timeout') || has('daemon')) && (has('stats') || has('rate') || has('thresholds'))) ||
    ((has('timeout') || has('daemon')) && has('persistent-conn'))
  ) {
    fail('options conflicts in the list command');
  }
}

// ---------------------------------------------------------------------------------------
// Step 5: the Command

function buildCommand(p: Parse, schedFlags: number): Command {
  const { ce, options } = p;
  switch (p.cmd) {
    case 'list':
      if (options.has('connection')) return { cmd: 'list', view: 'connections', opts: ce.opts };
      if (options.has('service-address')) return { cmd: 'list', view: 'services', service: serviceKey(ce), opts: ce.opts };
      if (options.has('timeout')) return { cmd: 'list', view: 'timeout', opts: ce.opts };
      if (options.has('daemon')) return { cmd: 'list', view: 'daemon', opts: ce.opts };
      return { cmd: 'list', view: 'services', opts: ce.opts };
    case 'save':
      return { cmd: 'save', opts: ce.opts };
    case 'restore':
      return { cmd: 'restore' };
    case 'start-daemon':
    case 'stop-daemon':
      return { cmd: p.cmd, daemon: ce.daemon };
    case 'flush':
      return { cmd: 'apply', op: { op: 'flush' } };
    case 'add-service':
      return { cmd: 'apply', op: { op: 'add-service', service: serviceConfig(ce, schedFlags) } };
    case 'edit-service':
      return { cmd: 'apply', op: { op: 'edit-service', service: serviceConfig(ce, schedFlags) } };
    case 'delete-service':
      return { cmd: 'apply', op: { op: 'delete-service', service: serviceKey(ce) } };
    case 'zero':
      return { cmd: 'apply', op: options.has('service-address') ? { op: 'zero', service: serviceKey(ce) } : { op: 'zero' } };
    case 'add-server':
      return { cmd: 'apply', op: { op: 'add-server', service: serviceKey(ce), dest: destConfig(ce) } };
    case 'edit-server':
      return { cmd: 'apply', op: { op: 'edit-server', service: serviceKey(ce), dest: destConfig(ce) } };
    case 'delete-server':
      return { cmd: 'apply', op: { op: 'delete-server', service: serviceKey(ce), dest: destKey(ce) } };
    case 'set':
      return { cmd: 'apply', op: { op: 'set-timeouts', timeouts: { ...ce.timeouts } } };
  }
}

function serviceKey(ce: Entry): ServiceKey {
  const af: Family = ce.svc.af === 6 ? 6 : 4;
  if (ce.svc.fwmark) return { af, protocol: 'tcp', addr: anyAddr(af), port: 0, fwmark: ce.svc.fwmark };
  return { af, protocol: ce.svc.protocol ?? 'tcp', addr: ce.svc.addr, port: ce.svc.port, fwmark: 0 };
}

function serviceConfig(ce: Entry, schedFlags: number): ServiceConfig {
  const k = serviceKey(ce);
  // Fields spelled out: V8 takes a slow path for a spread followed by more properties,
  // which costs seconds over a 50,000-line -R.
  return {
    af: k.af,
    protocol: k.protocol,
    addr: k.addr,
    port: k.port,
    fwmark: k.fwmark,
    scheduler: ce.svc.sched,
    schedFlags,
    persistent: ce.svc.persistent ? ce.svc.timeout : 0,
    netmask: ce.svc.netmask,
    ops: ce.svc.ops,
    pe: ce.svc.pe,
  };
}

function destKey(ce: Entry): DestKey {
  return { af: ce.dest.af === 6 ? 6 : 4, addr: ce.dest.addr, port: ce.dest.port };
}

function destConfig(ce: Entry): DestConfig {
  const d: DestConfig = {
    af: ce.dest.af === 6 ? 6 : 4,
    addr: ce.dest.addr,
    port: ce.dest.port,
    weight: ce.dest.weight,
    fwd: ce.dest.fwd,
    uThreshold: ce.dest.uThreshold,
    lThreshold: ce.dest.lThreshold,
  };
  if (ce.dest.fwd === 'tunnel') {
    const t = ce.dest.tunType;
    if (t === 'ipip') d.tunnel = { type: 'ipip' };
    else if (t === 'gue') d.tunnel = { type: 'gue', port: ce.dest.tunPort, csum: ce.dest.tunCsum };
    else d.tunnel = { type: 'gre', csum: ce.dest.tunCsum };
  }
  return d;
}
