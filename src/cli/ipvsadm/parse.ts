/**
 * The ipvsadm 1.31 command line, parsed the way ipvsadm parses it: a popt-style option
 * scanner (short bundles, `--long=value`, `-p`'s optional argument, leftover positional
 * words), then ipvsadm's own checks in ipvsadm's order, each failing with ipvsadm's
 * message and exit status. The result is a typed Command; turning it into API calls is
 * run.ts's job, and this file does no I/O of its own: host names are resolved through an
 * injected function and /etc/services arrives as text.
 *
 * Behaviour was checked against the real ipvsadm 1.31 binary (Debian 1:1.31-1) with the
 * kernel interface stubbed out; where it differs from the upstream source or the man
 * page, the comment says which one we follow.
 */
import { anyAddr, canonicalAddr, parseIPv4, parseIPv6 } from '../../core/addr.js';
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
} from '../../core/types.js';
import { DEFAULT_PERSISTENT_TIMEOUT, MAX_THRESHOLD, MAX_TIMEOUT, MAX_WEIGHT } from '../../core/schema.js';

/** Scheduler used when -A/-E is given no -s. */
export const DEFAULT_SCHEDULER = 'wlc';
/** The kernel's IP_VS_SCHEDNAME_MAXLEN - 1: ipvsadm silently truncates longer names. */
const SCHED_NAME_MAX = 15;
/** IP_VS_PENAME_MAXLEN: ipvsadm copies at most this many bytes of --pe. */
const PE_NAME_MAX = 16;
const IFNAME_MAX = 15;
const UINT_MAX = 4294967295;

// ---------------------------------------------------------------------------------------
// /etc/services

/** Port names, as getservbyname / getservbyport see them. */
export interface ServicesDb {
  /** getservbyname(name, proto): the port of a service name or alias, or null. */
  portOf(name: string, proto: Protocol): number | null;
  /** getservbyport(port, proto): the official name of the first entry for the port, or null. */
  nameOf(port: number, proto: Protocol): string | null;
}

/**
 * Parses the text of /etc/services ("name port/proto aliases... # comment"). Like glibc,
 * the first entry wins for both directions of the lookup.
 */
export function parseServices(text: string): ServicesDb {
  const byName = new Map<string, number>();
  const byPort = new Map<string, string>();
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    if (line === '') continue;
    const [name, portProto, ...aliases] = line.split(/\s+/);
    const m = /^(\d+)\/(\S+)$/.exec(portProto ?? '');
    if (!name || !m) continue;
    const port = Number(m[1]);
    const proto = m[2]!;
    if (port > 65535) continue;
    for (const n of [name, ...aliases]) {
      const key = `${n}/${proto}`;
      if (!byName.has(key)) byName.set(key, port);
    }
    const pkey = `${port}/${proto}`;
    if (!byPort.has(pkey)) byPort.set(pkey, name);
  }
  return {
    portOf: (name, proto) => byName.get(`${name}/${proto}`) ?? null,
    nameOf: (port, proto) => byPort.get(`${port}/${proto}`) ?? null,
  };
}

/**
 * Used when /etc/services cannot be read: the services an LVS director most often
 * balances, with the names netbase's /etc/services gives them.
 */
export const BUILTIN_SERVICES_TEXT = `
ftp-data 20/tcp
ftp 21/tcp
ssh 22/tcp
telnet 23/tcp
smtp 25/tcp mail
domain 53/tcp
domain 53/udp
http 80/tcp www
pop3 110/tcp pop-3
ntp 123/udp
imap2 143/tcp imap
snmp 161/udp
ldap 389/tcp
https 443/tcp
submissions 465/tcp ssmtp smtps urd
syslog 514/udp
submission 587/tcp
ldaps 636/tcp
imaps 993/tcp
pop3s 995/tcp
openvpn 1194/tcp
openvpn 1194/udp
mysql 3306/tcp
sip 5060/tcp
sip 5060/udp
postgresql 5432/tcp postgres
http-alt 8080/tcp webcache
`;

/** The fallback table parsed once. */
export const builtinServices: ServicesDb = parseServices(BUILTIN_SERVICES_TEXT);

// ---------------------------------------------------------------------------------------
// Commands

/** Output switches of -L / -S. `json` is a tsvs extension. */
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

/** Sync daemon parameters of --start-daemon / --stop-daemon. */
export interface DaemonArgs {
  state: 'master' | 'backup';
  mcastIfn: string;
  syncid: number;
  maxlen?: number;
  group?: string;
  port?: number;
  ttl?: number;
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
  | { cmd: 'start-daemon' | 'stop-daemon'; daemon: DaemonArgs };

/** A refusal: `text` goes to stderr verbatim (newline included), then exit with `exitCode`. */
export interface ParseError {
  cmd: 'error';
  text: string;
  exitCode: number;
}

/** What the parser needs from the outside world. */
export interface ParseEnv {
  /** Program name for "Try `%s -h' ..." (ipvsadm prints its argv[0]). */
  progName: string;
  services: ServicesDb;
  /**
   * gethostbyname: a host name to an IPv4 address (ipvsadm takes only IPv4 answers), or
   * null. Only asked for words that are not numeric addresses.
   */
  lookupHost(name: string): Promise<string | null>;
}

/** The text ipvsadm prints when the first option is not a command. */
export function tryHelpText(progName: string): string {
  return `Try \`${progName} -h' or '${progName} --help' for more information.\n`;
}

// ---------------------------------------------------------------------------------------
// The popt-like scanner

type ArgKind = 'none' | 'required' | 'optional';

interface OptDef {
  tag: string;
  long?: string;
  short?: string;
  arg: ArgKind;
}

/** Every option ipvsadm knows (its poptOption table), plus tsvs's --json and --fullnat. */
const OPTION_DEFS: OptDef[] = [
  { tag: 'A', long: 'add-service', short: 'A', arg: 'none' },
  { tag: 'E', long: 'edit-service', short: 'E', arg: 'none' },
  { tag: 'D', long: 'delete-service', short: 'D', arg: 'none' },
  { tag: 'C', long: 'clear', short: 'C', arg: 'none' },
  { tag: 'L', long: 'list', short: 'L', arg: 'none' },
  { tag: 'L', short: 'l', arg: 'none' },
  { tag: 'Z', long: 'zero', short: 'Z', arg: 'none' },
  { tag: 'a', long: 'add-server', short: 'a', arg: 'none' },
  { tag: 'e', long: 'edit-server', short: 'e', arg: 'none' },
  { tag: 'd', long: 'delete-server', short: 'd', arg: 'none' },
  { tag: 'set', long: 'set', arg: 'none' },
  { tag: 'h', long: 'help', short: 'h', arg: 'none' },
  { tag: 'v', long: 'version', short: 'v', arg: 'none' },
  { tag: 'R', long: 'restore', short: 'R', arg: 'none' },
  { tag: 'S', long: 'save', short: 'S', arg: 'none' },
  { tag: 'start-daemon', long: 'start-daemon', arg: 'required' },
  { tag: 'stop-daemon', long: 'stop-daemon', arg: 'required' },
  { tag: 't', long: 'tcp-service', short: 't', arg: 'required' },
  { tag: 'u', long: 'udp-service', short: 'u', arg: 'required' },
  { tag: 'sctp', long: 'sctp-service', arg: 'required' },
  { tag: 'f', long: 'fwmark-service', short: 'f', arg: 'required' },
  { tag: 's', long: 'scheduler', short: 's', arg: 'required' },
  { tag: 'p', long: 'persistent', short: 'p', arg: 'optional' },
  { tag: 'M', long: 'netmask', short: 'M', arg: 'required' },
  { tag: 'r', long: 'real-server', short: 'r', arg: 'required' },
  { tag: 'm', long: 'masquerading', short: 'm', arg: 'none' },
  { tag: 'i', long: 'ipip', short: 'i', arg: 'none' },
  { tag: 'g', long: 'gatewaying', short: 'g', arg: 'none' },
  { tag: 'fullnat', long: 'fullnat', arg: 'none' },
  { tag: 'w', long: 'weight', short: 'w', arg: 'required' },
  { tag: 'x', long: 'u-threshold', short: 'x', arg: 'required' },
  { tag: 'y', long: 'l-threshold', short: 'y', arg: 'required' },
  { tag: 'n', long: 'numeric', short: 'n', arg: 'none' },
  { tag: 'c', long: 'connection', short: 'c', arg: 'none' },
  { tag: 'mcast-interface', long: 'mcast-interface', arg: 'required' },
  { tag: 'syncid', long: 'syncid', arg: 'required' },
  { tag: 'timeout', long: 'timeout', arg: 'none' },
  { tag: 'daemon', long: 'daemon', arg: 'none' },
  { tag: 'stats', long: 'stats', arg: 'none' },
  { tag: 'rate', long: 'rate', arg: 'none' },
  { tag: 'thresholds', long: 'thresholds', arg: 'none' },
  { tag: 'persistent-conn', long: 'persistent-conn', arg: 'none' },
  { tag: 'nosort', long: 'nosort', arg: 'none' },
  { tag: 'sort', long: 'sort', arg: 'none' },
  { tag: 'X', long: 'exact', short: 'X', arg: 'none' },
  { tag: '6', long: 'ipv6', short: '6', arg: 'none' },
  { tag: 'o', long: 'ops', short: 'o', arg: 'none' },
  { tag: 'pe', long: 'pe', arg: 'required' },
  { tag: 'b', long: 'sched-flags', short: 'b', arg: 'required' },
  { tag: 'mcast-group', long: 'mcast-group', arg: 'required' },
  { tag: 'mcast-port', long: 'mcast-port', arg: 'required' },
  { tag: 'mcast-ttl', long: 'mcast-ttl', arg: 'required' },
  { tag: 'sync-maxlen', long: 'sync-maxlen', arg: 'required' },
  { tag: 'tun-info', long: 'tun-info', arg: 'none' },
  { tag: 'tun-type', long: 'tun-type', arg: 'required' },
  { tag: 'tun-port', long: 'tun-port', arg: 'required' },
  { tag: 'tun-nocsum', long: 'tun-nocsum', arg: 'none' },
  { tag: 'tun-csum', long: 'tun-csum', arg: 'none' },
  { tag: 'tun-remcsum', long: 'tun-remcsum', arg: 'none' },
  { tag: 'json', long: 'json', arg: 'none' },
];

type ScanItem =
  | { kind: 'opt'; tag: string; arg: string | null; word: string }
  | { kind: 'end' }
  /** popt's own error: `text` is "<option word>: <reason>". */
  | { kind: 'error'; text: string };

/**
 * Hands out options one at a time, like poptGetNextOpt, so that ipvsadm's per-option
 * checks fire in command-line order. Non-option words are kept for poptGetArg, wherever
 * they appear; "--" ends option processing.
 */
class OptionScanner {
  private next = 0;
  private bundle: { word: string; pos: number } | null = null;
  private ended = false;
  /** The argv word most recently consumed: what poptBadOption reports. */
  lastWord = '';
  readonly leftovers: string[] = [];

  constructor(private readonly argv: readonly string[]) {}

  get(): ScanItem {
    for (;;) {
      if (this.bundle) return this.shortOpt(this.bundle);
      if (this.next >= this.argv.length) return { kind: 'end' };
      const w = this.argv[this.next++]!;
      this.lastWord = w;
      if (this.ended || w === '-' || !w.startsWith('-')) {
        this.leftovers.push(w);
        continue;
      }
      if (w === '--') {
        this.ended = true;
        continue;
      }
      if (w.startsWith('--')) return this.longOpt(w);
      this.bundle = { word: w, pos: 1 };
    }
  }

  private longOpt(word: string): ScanItem {
    const body = word.slice(2);
    const eq = body.indexOf('=');
    const name = eq >= 0 ? body.slice(0, eq) : body;
    const inline = eq >= 0 ? body.slice(eq + 1) : null;
    const def = OPTION_DEFS.find((d) => d.long === name);
    if (!def) return { kind: 'error', text: `${word}: unknown option` };
    if (def.arg === 'none') {
      if (inline !== null) return { kind: 'error', text: `${word}: option does not take an argument` };
      return { kind: 'opt', tag: def.tag, arg: null, word };
    }
    if (inline !== null) return { kind: 'opt', tag: def.tag, arg: inline, word };
    return this.detachedArg(def, word);
  }

  private shortOpt(b: { word: string; pos: number }): ScanItem {
    const c = b.word[b.pos++]!;
    const rest = b.word.slice(b.pos);
    if (rest === '') this.bundle = null;
    const def = OPTION_DEFS.find((d) => d.short === c);
    if (!def) {
      this.bundle = null;
      return { kind: 'error', text: `${b.word}: unknown option` };
    }
    if (def.arg === 'none') return { kind: 'opt', tag: def.tag, arg: null, word: b.word };
    this.bundle = null;
    // The rest of the word is the argument; popt skips one '=' ("-p=60", "-s=rr").
    if (rest !== '') return { kind: 'opt', tag: def.tag, arg: rest.startsWith('=') ? rest.slice(1) : rest, word: b.word };
    return this.detachedArg(def, b.word);
  }

  private detachedArg(def: OptDef, word: string): ScanItem {
    const nextWord = this.next < this.argv.length ? this.argv[this.next]! : null;
    if (def.arg === 'optional') {
      // popt takes an optional argument from the next word unless that looks like an option.
      if (nextWord !== null && !nextWord.startsWith('-')) {
        this.next++;
        this.lastWord = nextWord;
        return { kind: 'opt', tag: def.tag, arg: nextWord, word };
      }
      return { kind: 'opt', tag: def.tag, arg: null, word };
    }
    if (nextWord === null) return { kind: 'error', text: `${word}: missing argument` };
    this.next++;
    this.lastWord = nextWord;
    return { kind: 'opt', tag: def.tag, arg: nextWord, word };
  }
}

// ---------------------------------------------------------------------------------------
// ipvsadm's option bits, names and the command/option table

/** Option columns in ipvsadm's order (its OPTC_* numbers); names as in its optnames[]. */
const OPT_NAMES = [
  'numeric', 'connection', 'service-address', 'scheduler', 'persistent', 'netmask',
  'real-server', 'forwarding-method', 'weight', 'u-threshold', 'l-threshold',
  'mcast-interface', 'timeout', 'daemon', 'stats', 'rate', 'thresholds', 'persistent-conn',
  'nosort', 'syncid', 'exact', 'ops', 'pe', 'sched-flags', 'mcast-group', 'mcast-port',
  'mcast-ttl', 'sync-maxlen', 'tun-info', 'tun-type', 'tun-port', 'tun-nocsum', 'tun-csum',
  'tun-remcsum',
  // tsvs extension
  'json',
] as const;
type OptName = (typeof OPT_NAMES)[number];
const OPTC = Object.fromEntries(OPT_NAMES.map((n, i) => [n, i])) as Record<OptName, number>;

type CmdName =
  | 'add-service' | 'edit-service' | 'delete-service' | 'flush' | 'list' | 'add-server'
  | 'delete-server' | 'edit-server' | 'set' | 'start-daemon' | 'stop-daemon' | 'restore'
  | 'save' | 'zero';

/**
 * ipvsadm's commands_v_options: one character per option column above.
 * '+' required, 'x' illegal, '1' at most one of the '1's, ' ' optional.
 * The last column is tsvs's --json, allowed where there is output.
 */
const COMMANDS_V_OPTIONS: Record<CmdName, string> = {
  'add-service':    'xx+   xxxxxxxxxxxxxxx   xxxxxxxxxxx',
  'edit-service':   'xx+   xxxxxxxxxxxxxxx   xxxxxxxxxxx',
  'delete-service': 'xx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx',
  flush:            'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx',
  list:             ' 11xxxxxxxxx11       xxxxxxx xxxxx ',
  'add-server':     'xx+xxx+    xxxxxxxxxxxxxxxxxx     x',
  'delete-server':  'xx+xxx+xxxxxxxxxxxxxxxxxxxxxxxxxxxx',
  'edit-server':    'xx+xxx+    xxxxxxxxxxxxxxxxxx     x',
  set:              'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx',
  'start-daemon':   'xxxxxxxxxxx xxxxxxx xxxx    xxxxxxx',
  'stop-daemon':    'xxxxxxxxxxxxxxxxxxx xxxxxxxxxxxxxxx',
  restore:          'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx',
  save:             ' xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx ',
  zero:             'xx xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx',
};

/** ipvsadm's tunnel_types_v_options over tun-port, tun-nocsum, tun-csum, tun-remcsum. */
const TUNNEL_OPTS: OptName[] = ['tun-port', 'tun-nocsum', 'tun-csum', 'tun-remcsum'];
const TUNNEL_TYPES_V_OPTIONS: Record<TunType, string> = { ipip: 'xxxx', gue: '+111', gre: 'x11x' };

const COMMAND_TAGS: Record<string, CmdName | 'help' | 'version'> = {
  A: 'add-service', E: 'edit-service', D: 'delete-service', C: 'flush', L: 'list',
  Z: 'zero', a: 'add-server', e: 'edit-server', d: 'delete-server', set: 'set',
  R: 'restore', S: 'save', 'start-daemon': 'start-daemon', 'stop-daemon': 'stop-daemon',
  h: 'help', v: 'version',
};

/** Thrown inside the parser to stop at the first failure, like ipvsadm's fail(). */
class Fail {
  constructor(
    readonly text: string,
    readonly exitCode: number,
  ) {}
}

function fail(msg: string, exitCode = 2): never {
  throw new Fail(`${msg}\n`, exitCode);
}

// ---------------------------------------------------------------------------------------
// C library number and address parsing, as ipvsadm uses it

const C_SPACE = /^[ \t\n\v\f\r]*/;

/** ipvsadm's string_to_number: strtol base 10, whole string, within [min, max]; else null. */
export function stringToNumber(s: string, min: number, max: number): number | null {
  const m = /^[ \t\n\v\f\r]*([+-]?)(\d+)$/.exec(s);
  if (!m) return null;
  // Beyond 2^63 strtol reports ERANGE; anything that long is out of every range we use.
  if (m[2]!.replace(/^0+/, '').length > 18) return null;
  // "+ 0" turns "-0" into 0 rather than -0.
  const n = Number(m[2]) * (m[1] === '-' ? -1 : 1) + 0;
  return n >= min && n <= max ? n : null;
}

/** atoi: leading blanks, sign, digits up to the first non-digit; 0 if none. */
function atoi(s: string): number {
  const m = /^([+-]?)(\d*)/.exec(s.replace(C_SPACE, ''))!;
  if (m[2] === '') return 0;
  const n = Number(m[2]!.slice(0, 12));
  return m[1] === '-' ? -n : n;
}

/**
 * glibc inet_aton: one to four parts, each decimal, octal (leading 0) or hex (0x); the
 * last part fills the remaining bytes ("10.1" = 10.0.0.1). Returns the address as an
 * unsigned number, or null.
 */
export function inetAton(s: string): number | null {
  const parts: number[] = [];
  let i = 0;
  for (;;) {
    if (!/[0-9]/.test(s[i] ?? '')) return null;
    let base = 10;
    if (s[i] === '0') {
      i++;
      if (s[i] === 'x' || s[i] === 'X') {
        base = 16;
        i++;
      } else base = 8;
    }
    let val = 0;
    for (;;) {
      const c = s[i] ?? '';
      let d: number;
      if (/[0-9]/.test(c)) {
        d = c.charCodeAt(0) - 48;
        if (base === 8 && d > 7) return null;
      } else if (base === 16 && /[a-fA-F]/.test(c)) {
        d = (c.toLowerCase().charCodeAt(0) - 97) + 10;
      } else break;
      val = val * base + d;
      if (val > UINT_MAX) return null;
      i++;
    }
    if (s[i] === '.') {
      if (parts.length >= 3 || val > 0xff) return null;
      parts.push(val);
      i++;
      continue;
    }
    // glibc accepts trailing blanks followed by anything.
    if (i < s.length && !/[ \t\n\v\f\r]/.test(s[i]!)) return null;
    const limits = [UINT_MAX, 0xffffff, 0xffff, 0xff];
    if (val > limits[parts.length]!) return null;
    let addr = 0;
    parts.forEach((p, k) => {
      addr += p * 2 ** (24 - 8 * k);
    });
    return addr + val;
  }
}

function formatV4(v: number): string {
  return `${(v >>> 24) & 255}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

/** inet_pton(AF_INET6): canonical text, or null. */
function pton6(s: string): string | null {
  if (parseIPv6(s) === null) return null;
  return canonicalAddr(s);
}

const STR_IS_DIGIT = /^\d*$/;

interface ParsedAddr {
  af: Family;
  addr: string;
  /** null: no ":port" was given. */
  port: number | null;
}

/**
 * ipvsadm's parse_service: "host[:port]" or "[v6]:port". Returns null where ipvsadm says
 * "illegal ... address[:port] specified". Quirks kept: a purely numeric word is refused
 * (so `-t 80` is an error, not 0.0.0.80); "[1.2.3.4]:80" loses its port; an unbracketed
 * IPv6 address never has a port; port names are looked up for `proto` only.
 */
async function parseAddrPort(buf: string, proto: Protocol | null, env: ParseEnv): Promise<ParsedAddr | null> {
  if (STR_IS_DIGIT.test(buf)) return null;
  let s = buf;
  let bracketPort: string | null = null;
  let bracketed = false;
  if (s.startsWith('[')) {
    const close = s.indexOf(']');
    if (close < 0) return null;
    if (s[close + 1] !== ':') return null;
    bracketPort = s.slice(close + 2);
    s = s.slice(1, close);
    bracketed = true;
  }
  let af: Family;
  let addr: string;
  let portStr: string | null;
  const v6 = pton6(s);
  if (v6 !== null) {
    af = 6;
    addr = v6;
    portStr = bracketed ? bracketPort : null;
  } else {
    const colon = s.lastIndexOf(':');
    portStr = colon >= 0 ? s.slice(colon + 1) : null;
    if (colon >= 0) s = s.slice(0, colon);
    const v4 = inetAton(s);
    if (v4 !== null) addr = formatV4(v4);
    else {
      const resolved = await lookupV4(s, env);
      if (resolved === null) return null;
      addr = resolved;
    }
    af = 4;
  }
  if (portStr === null) return { af, addr, port: null };
  let port = stringToNumber(portStr, 0, 65535);
  if (port === null && proto !== null) port = env.services.portOf(portStr, proto);
  if (port === null) return null;
  return { af, addr, port };
}

/** host_to_addr: gethostbyname, IPv4 answers only. */
async function lookupV4(name: string, env: ParseEnv): Promise<string | null> {
  if (name === '' || /[\s]/.test(name)) return null;
  const a = await env.lookupHost(name);
  if (a === null) return null;
  const v = parseIPv4(a);
  return v === null ? null : formatV4(v);
}

// ---------------------------------------------------------------------------------------
// The parse itself

/** The fields ipvsadm's struct ipvs_command_entry holds while options are read. */
interface Entry {
  cmd: CmdName | null;
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
  daemon: DaemonArgs;
  opts: ListOptions;
}

function newEntry(): Entry {
  return {
    cmd: null,
    svc: {
      af: 0, protocol: null, addr: '0.0.0.0', port: 0, fwmark: 0, sched: '', persistent: false,
      timeout: 0, netmask: 0xffffffff, ops: false, pe: '',
    },
    dest: {
      af: 0, addr: '0.0.0.0', port: 0, fwd: 'route', weight: 1, uThreshold: 0, lThreshold: 0,
      tunType: 'ipip', tunPort: 0, tunCsum: 'nocsum',
    },
    timeouts: { tcp: 0, tcpfin: 0, udp: 0 },
    daemon: { state: 'master', mcastIfn: '', syncid: 0 },
    opts: {
      numeric: false, stats: false, rate: false, thresholds: false, persistentConn: false,
      tunInfo: false, nosort: false, exact: false, json: false,
    },
  };
}

const PROTO_OF_TAG: Record<string, Protocol> = { t: 'tcp', u: 'udp', sctp: 'sctp' };

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

async function parseOrFail(argv: readonly string[], env: ParseEnv): Promise<Command> {
  const ce = newEntry();
  const options = new Set<number>();
  const scan = new OptionScanner(argv);
  const tryHelp = (): never => {
    throw new Fail(tryHelpText(env.progName), 255);
  };
  const setOption = (name: OptName): void => {
    const bit = OPTC[name];
    if (options.has(bit)) fail(`multiple '${name}' options specified`);
    options.add(bit);
  };

  // The first option must be a command; anything else only earns the "Try" hint.
  const first = scan.get();
  if (first.kind !== 'opt') tryHelp();
  const firstOpt = first as Extract<ScanItem, { kind: 'opt' }>;
  const command = COMMAND_TAGS[firstOpt.tag];
  if (command === undefined) tryHelp();
  if (command === 'help') return { cmd: 'help' };
  if (command === 'version') return { cmd: 'version' };
  ce.cmd = command as CmdName;
  if (ce.cmd === 'start-daemon' || ce.cmd === 'stop-daemon') {
    const state = firstOpt.arg;
    if (state === 'master' || state === 'backup') ce.daemon.state = state;
    // Sic: ipvsadm's two messages differ.
    else if (ce.cmd === 'start-daemon') fail('illegal start-daemon parameter specified');
    else fail('illegal start_daemon specified');
  }

  let schedFlagsArg = '';
  for (;;) {
    const it = scan.get();
    if (it.kind === 'end') break;
    if (it.kind === 'error') {
      // popt errors after the command: "<word>: <reason>", and ipvsadm returns -1.
      throw new Fail(`${it.text}\n`, 255);
    }
    const arg = it.arg ?? '';
    switch (it.tag) {
      case 't':
      case 'u':
      case 'sctp': {
        setOption('service-address');
        ce.svc.protocol = PROTO_OF_TAG[it.tag]!;
        const p = await parseAddrPort(arg, ce.svc.protocol, env);
        if (!p) fail('illegal virtual server address[:port] specified');
        ce.svc.af = p.af;
        ce.svc.addr = p.addr;
        if (p.port !== null) ce.svc.port = p.port;
        if (p.af === 6) ce.svc.netmask = 128;
        break;
      }
      case 'f': {
        setOption('service-address');
        ce.svc.af = 4;
        ce.svc.protocol = 'tcp';
        const mark = stringToNumber(arg, 1, UINT_MAX);
        if (mark === null) fail(`invalid fwmark value \`${arg}' specified`);
        ce.svc.fwmark = mark;
        break;
      }
      case 's':
        setOption('scheduler');
        ce.svc.sched = arg.slice(0, SCHED_NAME_MAX);
        break;
      case 'p':
        setOption('persistent');
        ce.svc.persistent = true;
        ce.svc.timeout = parseTimeout(it.arg, 1, MAX_TIMEOUT);
        break;
      case 'M':
        setOption('netmask');
        if (ce.svc.af !== 6) {
          // An IPv4 mask (or, as in ipvsadm, a host name that resolves to one).
          let m = inetAton(arg);
          if (m === null) {
            const r = await lookupV4(arg, env);
            m = r === null ? null : parseIPv4(r);
          }
          if (m === null) fail('illegal virtual server persistent mask specified');
          ce.svc.netmask = m;
        } else {
          const plen = atoi(arg);
          if (plen < 1 || plen > 128) fail('illegal ipv6 netmask specified');
          ce.svc.netmask = plen;
        }
        break;
      case 'r': {
        setOption('real-server');
        // Port names are looked up for the service's protocol as known so far.
        const p = await parseAddrPort(arg, ce.svc.protocol, env);
        if (!p) fail('illegal real server address[:port] specified');
        ce.dest.af = p.af;
        ce.dest.addr = p.addr;
        ce.dest.port = p.port ?? ce.svc.port;
        break;
      }
      case 'i':
      case 'g':
      case 'm':
      case 'fullnat':
        setOption('forwarding-method');
        ce.dest.fwd = ({ i: 'tunnel', g: 'route', m: 'masq', fullnat: 'fullnat' } as const)[it.tag];
        break;
      case 'w': {
        setOption('weight');
        // 0..65535 as upstream ipvsadm's source and the kernel's weight field
        // (Debian's 1.31 binary accepts up to INT_MAX).
        const w = stringToNumber(arg, 0, MAX_WEIGHT);
        if (w === null) fail('illegal weight specified');
        ce.dest.weight = w;
        break;
      }
      case 'x': {
        setOption('u-threshold');
        const v = stringToNumber(arg, 0, MAX_THRESHOLD);
        if (v === null) fail('illegal u_threshold specified');
        ce.dest.uThreshold = v;
        break;
      }
      case 'y': {
        setOption('l-threshold');
        const v = stringToNumber(arg, 0, MAX_THRESHOLD);
        if (v === null) fail('illegal l_threshold specified');
        ce.dest.lThreshold = v;
        break;
      }
      case 'c':
        setOption('connection');
        break;
      case 'n':
        setOption('numeric');
        ce.opts.numeric = true;
        break;
      case 'mcast-interface':
        setOption('mcast-interface');
        ce.daemon.mcastIfn = arg.slice(0, IFNAME_MAX);
        break;
      case 'syncid': {
        setOption('syncid');
        const v = stringToNumber(arg, 0, 255);
        if (v === null) fail('illegal syncid specified');
        ce.daemon.syncid = v;
        break;
      }
      case 'timeout':
        setOption('timeout');
        break;
      case 'daemon':
        setOption('daemon');
        break;
      case 'stats':
        setOption('stats');
        ce.opts.stats = true;
        break;
      case 'rate':
        setOption('rate');
        ce.opts.rate = true;
        break;
      case 'thresholds':
        setOption('thresholds');
        ce.opts.thresholds = true;
        break;
      case 'persistent-conn':
        setOption('persistent-conn');
        ce.opts.persistentConn = true;
        break;
      case 'nosort':
        setOption('nosort');
        ce.opts.nosort = true;
        break;
      case 'sort':
        // "does nothing, for backwards compatibility"; may even repeat.
        break;
      case 'X':
        setOption('exact');
        ce.opts.exact = true;
        break;
      case 'json':
        setOption('json');
        ce.opts.json = true;
        break;
      case '6':
        if (ce.svc.fwmark) {
          ce.svc.af = 6;
          ce.svc.netmask = 128;
        } else {
          // Sic: ipvsadm's message carries its own newline before fail() adds another.
          fail('-6 used before -f\n');
        }
        break;
      case 'o':
        setOption('ops');
        ce.svc.ops = true;
        break;
      case 'pe':
        setOption('pe');
        ce.svc.pe = arg.slice(0, PE_NAME_MAX);
        break;
      case 'b':
        setOption('sched-flags');
        schedFlagsArg = arg;
        break;
      case 'mcast-group': {
        setOption('mcast-group');
        if (arg.includes(':')) {
          const g = pton6(arg);
          if (g === null || !g.startsWith('ff')) fail(`invalid IPv6 mcast-group \`${arg}'`);
          ce.daemon.group = g;
        } else {
          const g = parseIPv4(arg);
          if (g === null || g >>> 28 !== 0xe) fail(`invalid IPv4 mcast-group \`${arg}'`);
          ce.daemon.group = formatV4(g);
        }
        break;
      }
      case 'mcast-port': {
        setOption('mcast-port');
        const v = stringToNumber(arg, 1, 65535);
        if (v === null) fail('illegal mcast-port specified');
        ce.daemon.port = v;
        break;
      }
      case 'mcast-ttl': {
        setOption('mcast-ttl');
        const v = stringToNumber(arg, 1, 255);
        if (v === null) fail('illegal mcast-ttl specified');
        ce.daemon.ttl = v;
        break;
      }
      case 'sync-maxlen': {
        setOption('sync-maxlen');
        const v = stringToNumber(arg, 1, 65535 - 20 - 8);
        if (v === null) fail('illegal sync-maxlen specified');
        ce.daemon.maxlen = v;
        break;
      }
      case 'tun-info':
        setOption('tun-info');
        ce.opts.tunInfo = true;
        break;
      case 'tun-type': {
        setOption('tun-type');
        if (arg !== 'ipip' && arg !== 'gue' && arg !== 'gre') fail('illegal tunnel type specified');
        ce.dest.tunType = arg;
        break;
      }
      case 'tun-port': {
        setOption('tun-port');
        const v = stringToNumber(arg, 1, 65535);
        if (v === null) fail('illegal tunnel port specified');
        ce.dest.tunPort = v;
        break;
      }
      case 'tun-nocsum':
        setOption('tun-nocsum');
        ce.dest.tunCsum = 'nocsum';
        break;
      case 'tun-csum':
        setOption('tun-csum');
        ce.dest.tunCsum = 'csum';
        break;
      case 'tun-remcsum':
        setOption('tun-remcsum');
        ce.dest.tunCsum = 'remcsum';
        break;
      default:
        // A second command (or -h/-v) after the first: ipvsadm names the argv word it
        // was reading, which for --start-daemon is the daemon state.
        fail(`invalid option \`${scan.lastWord}'`);
    }
  }

  const args = scan.leftovers;
  let used = 0;
  if (ce.cmd === 'set') {
    if (args.length < 3) fail('--set option requires 3 timeout values');
    ce.timeouts.tcp = parseTimeout(args[0]!, 0, MAX_TIMEOUT);
    ce.timeouts.tcpfin = parseTimeout(args[1]!, 0, MAX_TIMEOUT);
    ce.timeouts.udp = parseTimeout(args[2]!, 0, MAX_TIMEOUT);
    used = 3;
  }
  if (args.length > used) fail(`unexpected argument ${args[used]}`);

  // Scheduler flags are checked against the final scheduler, before the option table.
  let schedFlags = 0;
  if (schedFlagsArg !== '') schedFlags = parseSchedFlags(ce.svc.sched, schedFlagsArg);

  genericOptCheck(ce.cmd, options);

  const isSvcCmd = ce.cmd === 'add-service' || ce.cmd === 'edit-service';
  if (isSvcCmd) {
    if (!ce.svc.fwmark && !ce.svc.port && !ce.svc.persistent) fail('Zero port specified for non-persistent service');
    if (ce.svc.ops && !ce.svc.fwmark && ce.svc.protocol !== 'udp') fail('One-Packet Scheduling is only for UDP virtual services');
    if (ce.svc.sched === '') ce.svc.sched = DEFAULT_SCHEDULER;
  }
  if (ce.cmd === 'start-daemon' && ce.daemon.mcastIfn === '') ce.daemon.mcastIfn = 'eth0';

  if (ce.cmd === 'add-server' || ce.cmd === 'edit-server') {
    const fwd = ce.dest.fwd;
    // DR and tunnelling cannot change the port; ipvsadm quietly uses the virtual one.
    if (!ce.svc.fwmark && (fwd === 'tunnel' || fwd === 'route')) ce.dest.port = ce.svc.port;
    if (ce.dest.af !== ce.svc.af && fwd !== 'tunnel') fail('Different address family is allowed only for tunneling servers');
    const tunOpts: OptName[] = ['tun-type', 'tun-port', 'tun-nocsum', 'tun-csum', 'tun-remcsum'];
    if (tunOpts.some((o) => options.has(OPTC[o])) && fwd !== 'tunnel') fail('Tunnel options conflict with forward method');
    tunnelOptCheck(ce.dest.tunType, options);
  }

  if (ce.cmd === 'list') {
    const has = (n: OptName) => options.has(OPTC[n]);
    if (
      ((has('connection') || has('timeout') || has('daemon')) && (has('stats') || has('rate') || has('thresholds'))) ||
      ((has('timeout') || has('daemon')) && has('persistent-conn'))
    ) {
      fail('options conflicts in the list command');
    }
    if (has('connection')) return { cmd: 'list', view: 'connections', opts: ce.opts };
    if (has('service-address')) return { cmd: 'list', view: 'services', service: serviceKey(ce), opts: ce.opts };
    if (has('timeout')) return { cmd: 'list', view: 'timeout', opts: ce.opts };
    if (has('daemon')) return { cmd: 'list', view: 'daemon', opts: ce.opts };
    return { cmd: 'list', view: 'services', opts: ce.opts };
  }

  switch (ce.cmd) {
    case 'save':
      return { cmd: 'save', opts: ce.opts };
    case 'restore':
      return { cmd: 'restore' };
    case 'start-daemon':
    case 'stop-daemon':
      return { cmd: ce.cmd, daemon: ce.daemon };
    case 'flush':
      return { cmd: 'apply', op: { op: 'flush' } };
    case 'add-service':
      return { cmd: 'apply', op: { op: 'add-service', service: serviceConfig(ce, schedFlags) } };
    case 'edit-service':
      return { cmd: 'apply', op: { op: 'edit-service', service: serviceConfig(ce, schedFlags) } };
    case 'delete-service':
      return { cmd: 'apply', op: { op: 'delete-service', service: serviceKey(ce) } };
    case 'zero':
      return {
        cmd: 'apply',
        op: options.has(OPTC['service-address']) ? { op: 'zero', service: serviceKey(ce) } : { op: 'zero' },
      };
    case 'add-server':
      return { cmd: 'apply', op: { op: 'add-server', service: serviceKey(ce), dest: destConfig(ce) } };
    case 'edit-server':
      return { cmd: 'apply', op: { op: 'edit-server', service: serviceKey(ce), dest: destConfig(ce) } };
    case 'delete-server':
      return { cmd: 'apply', op: { op: 'delete-server', service: serviceKey(ce), dest: destKey(ce) } };
    case 'set':
      return { cmd: 'apply', op: { op: 'set-timeouts', timeouts: { ...ce.timeouts } } };
    default:
      throw new Error(`unhandled command ${String(ce.cmd)}`);
  }
}

/** parse_timeout: no value (only -p can omit it) means the default persistence timeout. */
function parseTimeout(s: string | null, min: number, max: number): number {
  if (s === null) return DEFAULT_PERSISTENT_TIMEOUT;
  const v = stringToNumber(s, min, max);
  if (v === null) fail(`invalid timeout value \`${s}' specified`);
  return v;
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
        fail(`invalid scheduler flag \`${flag}'`);
    }
    if (needs !== undefined && effective !== needs) fail(`incompatible scheduler flag \`${flag}'`);
  }
  return flags;
}

/** generic_opt_check: walks the columns in order and reports the first violation. */
function genericOptCheck(cmd: CmdName, options: Set<number>): void {
  const row = COMMANDS_V_OPTIONS[cmd];
  let last = -1;
  for (let j = 0; j < OPT_NAMES.length; j++) {
    const rule = row[j];
    if (!options.has(j)) {
      if (rule === '+') fail(`You need to supply the '${OPT_NAMES[j]}' option for the '${cmd}' command`);
      continue;
    }
    if (rule === 'x') fail(`Illegal '${OPT_NAMES[j]}' option with the '${cmd}' command`);
    if (rule === '1') {
      if (last < 0) last = j;
      else fail(`The option '${OPT_NAMES[j]}' conflicts with the '${OPT_NAMES[last]}' option in the '${cmd}' command`);
    }
  }
}

/** tunnel_opt_check: the same walk over the tunnel-type table. */
function tunnelOptCheck(type: TunType, options: Set<number>): void {
  const row = TUNNEL_TYPES_V_OPTIONS[type];
  let last: OptName | null = null;
  TUNNEL_OPTS.forEach((name, j) => {
    const rule = row[j];
    if (!options.has(OPTC[name])) {
      if (rule === '+') fail(`You need to supply the '${name}' option for the '${type}' tunnel type`);
      return;
    }
    if (rule === 'x') fail(`Illegal '${name}' option with the '${type}' tunnel type`);
    if (rule === '1') {
      if (last === null) last = name;
      else fail(`The option '${name}' conflicts with the '${last}' option in the '${type}' tunnel type`);
    }
  });
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
