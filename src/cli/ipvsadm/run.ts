/**
 * tsvsadm: ipvsadm 1.31's command line over the tsvs control API. The ipvsadm library
 * (src/ipvsadm/) turns argv into a Command and lays out the listings; this file carries
 * the Command out through a ControlApi and writes what ipvsadm would write. All I/O goes
 * through IpvsadmIO so that the whole program runs in tests without a daemon, a terminal
 * or a network.
 *
 * Decisions where ipvsadm gives no answer:
 * - The program name in "Try `%s -h' ..." and in the usage text is `io.progName`
 *   (ipvsadm prints its argv[0]; bin/ passes the name it was invoked as), 'tsvsadm' if unset.
 * - -v keeps ipvsadm's first two words, `ipvsadm v1.31`, so scripts that parse them keep
 *   working, and says what it really is inside the parentheses:
 *   `ipvsadm v1.31 2019/12/24 (tsvsadm 0.1.0, compatible with IPVS v1.2.1)`.
 *   -h starts with the same line; the rest of the usage text is ipvsadm's.
 * - --start-daemon / --stop-daemon are parsed and checked like ipvsadm, then start or stop
 *   tsvsd's sync daemon through the API (src/sync); a refusal prints the kernel's message
 *   with exit 255. -L --daemon lists what the daemon reports. In -R input they run after
 *   the table's lines are applied.
 * - -R parses every line before applying anything and then applies all of them in one
 *   atomic api.apply call. That is stricter than ipvsadm, which applies line by line and
 *   stops at the first failure with the earlier lines in effect.
 * - --json (tsvs extension) prints any listing as JSON of the same data, sorted the same
 *   way; addresses are never resolved in it.
 */
import { readFileSync } from 'node:fs';

import type { ControlApi } from '../../api/control.js';
import type { Op, ServiceKey, ServiceView, TableView } from '../../core/types.js';
import { isTsvsError } from '../../core/errors.js';
import { canonicalAddr } from '../../core/addr.js';
import {
  addressesOf,
  formatConnections,
  formatDaemons,
  formatService,
  formatTimeouts,
  rulesChunks,
  tableChunks,
  jsonConnections,
  jsonDaemons,
  jsonOneService,
  jsonRules,
  jsonTable,
  jsonTimeouts,
  ntop,
  type Names,
} from '../../ipvsadm/format.js';
import { LIST_DEFAULTS, parseCommand, tryHelpText, type Command, type ParseEnv, type ParseError } from '../../ipvsadm/parse.js';
import { builtinServices, parseServices, type ServicesDb } from '../../ipvsadm/services.js';

/** tsvsadm's own version, shown by -v and -h. */
const TSVSADM_VERSION = '0.1.0';

/** Name lookups, injectable so that tests never touch DNS or /etc. */
export interface NameResolver {
  /** gethostbyname: a host name to an IPv4 address, or null. */
  lookupHost(name: string): Promise<string | null>;
  /** gethostbyaddr: the name of an address, or null to print it numerically. */
  lookupAddr(addr: string): Promise<string | null>;
  /** /etc/services. */
  services: ServicesDb;
}

/** Everything tsvsadm does to the outside world besides the control API. */
export interface IpvsadmIO {
  stdout(s: string): void;
  stderr(s: string): void;
  /** All of standard input (for -R). */
  readStdin(): Promise<string>;
  /** Overrides for name resolution; missing parts use the system (dns, /etc/services). */
  resolve?: Partial<NameResolver>;
  /** Program name for messages and usage, as ipvsadm uses argv[0]. Default 'tsvsadm'. */
  progName?: string;
}

/** The -v line. */
export function versionLine(): string {
  return `ipvsadm v1.31 2019/12/24 (tsvsadm ${TSVSADM_VERSION}, compatible with IPVS v1.2.1)\n`;
}

/** The -h text: ipvsadm 1.31's usage, after our version line. */
export function usageText(p: string): string {
  return (
    versionLine() +
    'Usage:\n' +
    `  ${p} -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [--pe persistence_engine] [-b sched-flags]\n` +
    `  ${p} -D virtual-service\n` +
    `  ${p} -C\n` +
    `  ${p} -R\n` +
    `  ${p} -S [-n]\n` +
    `  ${p} -a|e virtual-service -r server-address [options]\n` +
    `  ${p} -d virtual-service -r server-address\n` +
    `  ${p} -L|l [virtual-service] [options]\n` +
    `  ${p} -Z [virtual-service]\n` +
    `  ${p} --set tcp tcpfin udp\n` +
    `  ${p} --start-daemon {master|backup} [daemon-options]\n` +
    `  ${p} --stop-daemon {master|backup}\n` +
    `  ${p} -h\n\n` +
    'Commands:\n' +
    'Either long or short options are allowed.\n' +
    '  --add-service     -A        add virtual service with options\n' +
    '  --edit-service    -E        edit virtual service with options\n' +
    '  --delete-service  -D        delete virtual service\n' +
    '  --clear           -C        clear the whole table\n' +
    '  --restore         -R        restore rules from stdin\n' +
    '  --save            -S        save rules to stdout\n' +
    '  --add-server      -a        add real server with options\n' +
    '  --edit-server     -e        edit real server with options\n' +
    '  --delete-server   -d        delete real server\n' +
    '  --list            -L|-l     list the table\n' +
    '  --zero            -Z        zero counters in a service or all services\n' +
    '  --set tcp tcpfin udp        set connection timeout values\n' +
    '  --start-daemon              start connection sync daemon\n' +
    '  --stop-daemon               stop connection sync daemon\n' +
    '  --help            -h        display this help message\n\n' +
    'virtual-service:\n' +
    '  --tcp-service|-t  service-address   service-address is host[:port]\n' +
    '  --udp-service|-u  service-address   service-address is host[:port]\n' +
    '  --sctp-service    service-address   service-address is host[:port]\n' +
    '  --fwmark-service|-f fwmark          fwmark is an integer greater than zero\n' +
    '\n' +
    'Options:\n' +
    '  --ipv6         -6                   fwmark entry uses IPv6\n' +
    '  --scheduler    -s scheduler         one of rr|wrr|lc|wlc|lblc|lblcr|dh|sh|sed|nq|fo|ovf|mh,\n' +
    '                                      the default scheduler is wlc.\n' +
    '  --pe            engine              alternate persistence engine may be sip,\n' +
    '                                      not set by default.\n' +
    '  --persistent   -p [timeout]         persistent service\n' +
    '  --netmask      -M netmask           persistent granularity mask\n' +
    '  --real-server  -r server-address    server-address is host (and port)\n' +
    '  --gatewaying   -g                   gatewaying (direct routing) (default)\n' +
    '  --ipip         -i                   ipip encapsulation (tunneling)\n' +
    '  --masquerading -m                   masquerading (NAT)\n' +
    '  --tun-type      type                one of ipip|gue|gre,\n' +
    '                                      the default tunnel type is ipip.\n' +
    '  --tun-port      port                tunnel destination port\n' +
    '  --tun-nocsum                        tunnel encapsulation without checksum\n' +
    '  --tun-csum                          tunnel encapsulation with checksum\n' +
    '  --tun-remcsum                       tunnel encapsulation with remote checksum\n' +
    '  --weight       -w weight            capacity of real server\n' +
    '  --u-threshold  -x uthreshold        upper threshold of connections\n' +
    '  --l-threshold  -y lthreshold        lower threshold of connections\n' +
    '  --connection   -c                   output of current IPVS connections\n' +
    '  --timeout                           output of timeout (tcp tcpfin udp)\n' +
    '  --daemon                            output of daemon information\n' +
    '  --stats                             output of statistics information\n' +
    '  --rate                              output of rate information\n' +
    '  --exact                             expand numbers (display exact values)\n' +
    '  --thresholds                        output of thresholds information\n' +
    '  --persistent-conn                   output of persistent connection info\n' +
    '  --tun-info                          output of tunnel information\n' +
    '  --nosort                            disable sorting output of service/server entries\n' +
    '  --sort                              does nothing, for backwards compatibility\n' +
    '  --ops          -o                   one-packet scheduling\n' +
    '  --numeric      -n                   numeric output of addresses and ports\n' +
    '  --sched-flags  -b flags             scheduler flags (comma-separated)\n' +
    'Daemon Options:\n' +
    '  --syncid sid                        syncid for connection sync (default=255)\n' +
    '  --sync-maxlen length                Max sync message length (default=1472)\n' +
    '  --mcast-interface interface         multicast interface for connection sync\n' +
    '  --mcast-group address               IPv4/IPv6 group (default=224.0.0.81)\n' +
    '  --mcast-port port                   UDP port (default=8848)\n' +
    '  --mcast-ttl ttl                     Multicast TTL (default=1)\n'
  );
}

/** What tsvsadm says to --start-daemon / --stop-daemon. */
export const SYNC_DAEMON_MESSAGE = 'Connection sync daemons cannot be managed through this control API client\n';

// ---------------------------------------------------------------------------------------
// The system resolver

/** How long one reverse lookup may take before the address is printed numerically. */
const REVERSE_TIMEOUT_MS = 1000;

function withTimeout<T>(p: Promise<T>, ms: number, fallback: T): Promise<T> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(fallback), ms);
    timer.unref?.();
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      () => {
        clearTimeout(timer);
        resolve(fallback);
      },
    );
  });
}

/**
 * /etc/services, read on first use: most commands (-Ln, -Sn, numeric -R lines) never
 * look a port name up, and tsvsadm runs in loops where start-up time counts.
 */
function systemServices(): ServicesDb {
  let db: ServicesDb | null = null;
  const load = (): ServicesDb => {
    if (db) return db;
    try {
      db = parseServices(readFileSync('/etc/services', 'utf8'));
    } catch {
      db = builtinServices;
    }
    return db;
  };
  return { portOf: (name, proto) => load().portOf(name, proto), nameOf: (port, proto) => load().nameOf(port, proto) };
}

// node:dns is loaded only when a name is looked up, for the same reason.
async function systemLookupHost(name: string): Promise<string | null> {
  try {
    const { lookup } = await import('node:dns/promises');
    const r = await lookup(name, { family: 4 });
    return r.address;
  } catch {
    return null;
  }
}

async function systemLookupAddr(addr: string): Promise<string | null> {
  const { lookupService } = await import('node:dns/promises');
  // getnameinfo (lookupService) reads /etc/hosts as gethostbyaddr does; it answers with
  // the address itself when there is no name.
  const r = await withTimeout(
    lookupService(addr, 0).then((x) => x.hostname),
    REVERSE_TIMEOUT_MS,
    null,
  );
  return r === null || canonicalAddr(r) !== null ? null : r;
}

function makeResolver(over: Partial<NameResolver> | undefined): NameResolver {
  return {
    lookupHost: over?.lookupHost ?? systemLookupHost,
    lookupAddr: over?.lookupAddr ?? systemLookupAddr,
    services: over?.services ?? systemServices(),
  };
}

/** Resolves every address up front, so that the formatter stays synchronous. */
async function namesFor(resolver: NameResolver, addrs: string[]): Promise<Names> {
  const found = new Map<string, string>();
  await Promise.all(
    addrs.map(async (a) => {
      const n = await resolver.lookupAddr(a);
      if (n) found.set(a, n);
    }),
  );
  return {
    host: (a) => found.get(a) ?? ntop(a),
    service: (port, proto) => resolver.services.nameOf(port, proto),
  };
}

// ---------------------------------------------------------------------------------------
// Running a command

function errorText(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.endsWith('\n') ? msg : `${msg}\n`;
}

function sameService(s: ServiceView, k: ServiceKey): boolean {
  if (k.fwmark) return s.fwmark === k.fwmark && s.af === k.af;
  return !s.fwmark && s.af === k.af && s.protocol === k.protocol && s.port === k.port && canonicalAddr(s.addr) === canonicalAddr(k.addr);
}

/**
 * tsvsadm's own exit status, beside ipvsadm's 0, 1, 2 and 255: the change was applied (the
 * table and the data plane carry it) but tsvsd could not write it to its state file (full
 * or read-only disk). Not 255, which means "refused, nothing changed" (docs/state.md).
 */
export const EXIT_NOT_SAVED = 3;

/** The exit status for a change the daemon did not acknowledge: 3 applied but not saved, else 255 refused. */
function changeFailed(e: unknown): number {
  return isTsvsError(e) && e.code === 'NOT_SAVED' ? EXIT_NOT_SAVED : 255;
}

/**
 * Runs one tsvsadm invocation (argv without the program name) and returns its exit
 * status: 0 success, 1 a listing failed, 2 a bad command line, 3 a change applied but not
 * saved (EXIT_NOT_SAVED), 255 the daemon refused a change or the command was not a command
 * at all (ipvsadm's exit(-1)).
 */
export async function runIpvsadm(argv: string[], io: IpvsadmIO, api: ControlApi): Promise<number> {
  const progName = io.progName ?? 'tsvsadm';
  const resolver = makeResolver(io.resolve);
  const env: ParseEnv = { progName, services: resolver.services, lookupHost: (n) => resolver.lookupHost(n) };

  // ipvsadm with no arguments lists the table, names resolved.
  const cmd: Command | ParseError =
    argv.length === 0 ? { cmd: 'list', view: 'services', opts: { ...LIST_DEFAULTS } } : await parseCommand(argv, env);

  switch (cmd.cmd) {
    case 'error':
      io.stderr(cmd.text);
      return cmd.exitCode;
    case 'help':
      io.stdout(usageText(progName));
      return 0;
    case 'version':
      io.stdout(versionLine());
      return 0;
    case 'start-daemon':
    case 'stop-daemon':
      return syncDaemon(cmd, io, api);
    case 'apply':
      return applyOps([cmd.op], io, api);
    case 'restore':
      return restore(io, api, env);
    case 'save':
    case 'list':
      return list(cmd, io, api, resolver);
  }
}

/**
 * --start-daemon / --stop-daemon through the API: exit 0, or the kernel's message for the
 * refusal ("Daemon has already run", "No daemon is running", "No such device") and 255, as
 * ipvsadm exits when libipvs returns -1. An API client without sync declines as before.
 */
async function syncDaemon(cmd: Extract<Command, { cmd: 'start-daemon' | 'stop-daemon' }>, io: IpvsadmIO, api: ControlApi): Promise<number> {
  const call =
    cmd.cmd === 'start-daemon'
      ? api.startSyncDaemon && (() => api.startSyncDaemon!({ ...cmd.daemon }))
      : api.stopSyncDaemon && (() => api.stopSyncDaemon!(cmd.daemon.state));
  if (!call) {
    io.stderr(SYNC_DAEMON_MESSAGE);
    return 255;
  }
  try {
    await call();
    return 0;
  } catch (e) {
    io.stderr(errorText(e));
    return 255;
  }
}

async function applyOps(ops: Op[], io: IpvsadmIO, api: ControlApi): Promise<number> {
  try {
    await api.apply(ops);
    return 0;
  } catch (e) {
    // A TsvsError's message is the text ipvsadm prints for the kernel's errno.
    io.stderr(errorText(e));
    return changeFailed(e);
  }
}

/** The most of a refused -R line that a message quotes. */
const QUOTE_CHARS = 100;

/** "line N: ..." for a refused -R line, quoting a bounded part of it. */
function refusedLine(progName: string, n: number, line: string): string {
  const text = line.length > QUOTE_CHARS ? `${line.slice(0, QUOTE_CHARS)}...` : line;
  return `${progName}: -R: line ${n} refused, nothing was applied: ${text}\n`;
}

/**
 * -R: every line is parsed first; a bad one is reported with ipvsadm's message and exit
 * code plus its line number, and nothing is applied. Then all of them go to tsvsd as one
 * atomic batch; a refusal there names the object (and the line when tsvsd says which
 * operation it was) and also applies nothing.
 */
async function restore(io: IpvsadmIO, api: ControlApi, env: ParseEnv): Promise<number> {
  const input = await io.readStdin();
  const ops: Op[] = [];
  /** The 1-based input line of each op. */
  const opLines: number[] = [];
  const daemons: Array<Extract<Command, { cmd: 'start-daemon' | 'stop-daemon' }>> = [];
  let lineNo = 0;
  for (let from = 0; from < input.length; ) {
    // Line by line without splitting a 50,000-line input into an array first.
    let nl = input.indexOf('\n', from);
    if (nl < 0) nl = input.length;
    const raw = input.slice(from, nl);
    from = nl + 1;
    lineNo++;
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    // Split as ipvsadm's config_stream does, dropping the word "ipvsadm" wherever it is.
    const words = line.split(/[ \t\r]+/).filter((w) => w !== '' && w !== 'ipvsadm');
    if (words.length === 0) continue;
    const c = await parseCommand(words, env);
    switch (c.cmd) {
      case 'error':
        io.stderr(c.text + refusedLine(env.progName, lineNo, line));
        return c.exitCode;
      case 'apply':
        ops.push(c.op);
        opLines.push(lineNo);
        break;
      case 'restore':
        // A nested -R: ipvsadm refuses it with the "Try" hint.
        io.stderr(tryHelpText(env.progName) + refusedLine(env.progName, lineNo, line));
        return 255;
      case 'start-daemon':
      case 'stop-daemon':
        daemons.push(c);
        break;
      default:
        io.stderr(`${env.progName}: -R: line ${lineNo}: only commands that change the table can be restored\n`);
        return 2;
    }
  }
  let notSaved = false;
  if (ops.length) {
    try {
      await api.apply(ops);
    } catch (e) {
      io.stderr(errorText(e));
      if (isTsvsError(e) && e.code === 'NOT_SAVED') {
        io.stderr(`${env.progName}: -R: all ${ops.length} change(s) were applied, but tsvsd could not save them: ${e.detail}\n`);
        notSaved = true;
      } else {
        if (isTsvsError(e)) {
          // Which line it was, when tsvsd says which operation failed.
          const index = (e as { index?: unknown }).index;
          const where = typeof index === 'number' && opLines[index] !== undefined ? `line ${opLines[index]}: ` : '';
          io.stderr(`${env.progName}: -R: ${where}${e.detail}; nothing was applied\n`);
        }
        return 255;
      }
    }
  }
  // Sync daemon lines run after the table is in place, in their order.
  for (const d of daemons) {
    const code = await syncDaemon(d, io, api);
    if (code) return code;
  }
  return notSaved ? EXIT_NOT_SAVED : 0;
}

/** Bytes gathered before one write to stdout: few writes, no listing-sized string. */
const WRITE_BATCH_CHARS = 64 * 1024;

/** Writes the pieces of a listing in batches. */
function writeChunks(io: IpvsadmIO, chunks: Iterable<string>): void {
  let buf = '';
  for (const c of chunks) {
    buf += c;
    if (buf.length >= WRITE_BATCH_CHARS) {
      io.stdout(buf);
      buf = '';
    }
  }
  if (buf) io.stdout(buf);
}

/** The table, streamed when the API can (large tables), whole otherwise. */
async function readTable(api: ControlApi): Promise<Pick<TableView, 'version' | 'size' | 'services'>> {
  if (!api.streamTable) return api.getTable();
  const { head, services } = await api.streamTable();
  const list: ServiceView[] = [];
  for await (const s of services) list.push(s);
  return { version: head.version, size: head.size, services: list };
}

async function list(
  cmd: Extract<Command, { cmd: 'list' | 'save' }>,
  io: IpvsadmIO,
  api: ControlApi,
  resolver: NameResolver,
): Promise<number> {
  const o = cmd.opts;
  const wantNames = !o.numeric && !o.json;
  try {
    if (cmd.cmd === 'save') {
      if (o.json) {
        io.stdout(jsonRules(await api.getTable(), o));
        return 0;
      }
      const table = await readTable(api);
      const names = wantNames ? await namesFor(resolver, addressesOf(table)) : undefined;
      writeChunks(io, rulesChunks(table, o, names));
      return 0;
    }
    switch (cmd.view) {
      case 'connections': {
        const conns = await api.getConnections();
        const names = wantNames ? await namesFor(resolver, addressesOf(undefined, conns)) : undefined;
        io.stdout(o.json ? jsonConnections(conns) : formatConnections(conns, o, names));
        return 0;
      }
      case 'timeout': {
        // Only the timeouts, not the whole table, when the API can.
        const t = api.getTimeouts ? await api.getTimeouts() : (await api.getTable()).timeouts;
        io.stdout(o.json ? jsonTimeouts(t) : formatTimeouts(t));
        return 0;
      }
      case 'daemon': {
        const daemons = await api.getSyncDaemons();
        io.stdout(o.json ? jsonDaemons(daemons) : formatDaemons(daemons));
        return 0;
      }
      case 'services': {
        if (o.json) {
          const table = await api.getTable();
          const svc = cmd.service ? table.services.find((s) => sameService(s, cmd.service!)) : undefined;
          if (cmd.service && !svc) {
            io.stderr('No such service\n');
            return 1;
          }
          io.stdout(svc ? jsonOneService(svc, o) : jsonTable(table, o));
          return 0;
        }
        const table = await readTable(api);
        if (cmd.service) {
          const key = cmd.service;
          const svc = table.services.find((s) => sameService(s, key));
          if (!svc) {
            io.stderr('No such service\n');
            return 1;
          }
          const names = wantNames ? await namesFor(resolver, addressesOf({ services: [svc] })) : undefined;
          io.stdout(formatService(svc, o, names));
          return 0;
        }
        const names = wantNames ? await namesFor(resolver, addressesOf(table)) : undefined;
        writeChunks(io, tableChunks(table, o, names));
        return 0;
      }
    }
  } catch (e) {
    // ipvsadm prints the reason and exits 1 when it cannot read the table.
    io.stderr(errorText(e));
    return 1;
  }
}
