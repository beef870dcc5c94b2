/**
 * Target: the ipvsadm command line (src/ipvsadm/parse.ts parseCommand), argv arrays.
 *
 * Properties:
 * - it never throws: every argv gives a Command or a ParseError (text, exit status);
 * - an `apply` it returns, applied to a table, either changes it or throws a TsvsError and
 *   leaves the table exactly as it was;
 * - round trip: what -S prints for the table built by a random batch, read back line by
 *   line, rebuilds a table whose -S is the same text.
 */
import fc from 'fast-check';
import { isTsvsError } from '../../../src/core/errors.js';
import type { IpvsTable } from '../../../src/core/table.js';
import type { Op } from '../../../src/core/types.js';
import { formatRules } from '../../../src/ipvsadm/format.js';
import { parseCommand, type Command, type ParseEnv, type ParseError } from '../../../src/ipvsadm/parse.js';
import { builtinServices } from '../../../src/ipvsadm/services.js';
import { newTable } from '../../table.js';
import { describeError, type FuzzTarget } from '../fuzz.js';

const HOSTS: Record<string, string> = { localhost: '127.0.0.1', 'www.example.com': '192.0.2.80' };
const env: ParseEnv = {
  progName: 'tsvsadm',
  services: builtinServices,
  lookupHost: async (n) => (Object.hasOwn(HOSTS, n) ? HOSTS[n]! : null),
};

const COMMANDS = [
  '-A',
  '-E',
  '-D',
  '-C',
  '-L',
  '-l',
  '-Z',
  '-a',
  '-e',
  '-d',
  '-R',
  '-S',
  '-h',
  '-v',
  '--set',
  '--start-daemon',
  '--stop-daemon',
];
const LONG = [
  '--add-service',
  '--edit-service',
  '--list',
  '--save',
  '--clear',
  '--zero',
  '--add-server',
  '--delete-server',
  '--edit-server',
];
const OPTS = [
  '-t',
  '-u',
  '-f',
  '--sctp-service',
  '-s',
  '-p',
  '-M',
  '-r',
  '-g',
  '-i',
  '-m',
  '-w',
  '-x',
  '-y',
  '-b',
  '-o',
  '-n',
  '-c',
  '-j',
  '--pe',
  '--stats',
  '--rate',
  '--thresholds',
  '--persistent-conn',
  '--nosort',
  '--sort',
  '--exact',
  '--timeout',
  '--daemon',
  '--mcast-interface',
  '--syncid',
  '--mcast-group',
  '--mcast-port',
  '--mcast-ttl',
  '--sync-maxlen',
  '--tun-info',
  '--tun-type',
  '--tun-port',
  '--tun-nocsum',
  '--tun-csum',
  '--tun-remcsum',
  '--ops',
  '--json',
  '--',
  '-',
];
const VALUES = [
  '10.0.0.1:80',
  '10.0.0.1',
  '10.0.0.2:8080',
  '192.168.1.2:80',
  '[2001:db8::1]:443',
  '2001:db8::1',
  '[::1]:80',
  'localhost:http',
  'www.example.com:https',
  '1.2.3.4:0',
  '1.2.3.4:65535',
  '1.2.3.4:65536',
  '1.2.3.4:-1',
  '0.0.0.0:80',
  '255.255.255.255:1',
  '1.2.3.4:ftp',
  '1',
  '2',
  '0',
  '65535',
  '4294967295',
  '4294967296',
  '-1',
  '0x10',
  '010',
  '1e3',
  ' 5',
  '5 ',
  '127.0.0.１:80',
  '[fe80::1%eth0]:80',
  'rr',
  'wrr',
  'lc',
  'wlc',
  'sh',
  'mh',
  'sed',
  'nq',
  'fo',
  'ovf',
  'lblc',
  'lblcr',
  'dh',
  'twos',
  'nonexistent-scheduler',
  'sh-fallback',
  'sh-port',
  'mh-fallback,mh-port',
  'flag-1,flag-2,flag-3',
  'sip',
  'ipip',
  'gue',
  'gre',
  '255.255.255.0',
  '24',
  '128',
  '300',
  '86400',
  '2678400',
  '2678401',
  'master',
  'backup',
  'eth0',
  'lo',
  'tcp',
  'udp',
  '900',
  '120',
  '',
  ':',
  '[',
  ']:',
  '::',
  'toString',
  '__proto__',
  '1.2.3.4:toString',
  '1.2.3.4:constructor',
  'constructor',
];

const word = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...VALUES) },
  { weight: 4, arbitrary: fc.constantFrom(...OPTS) },
  { weight: 2, arbitrary: fc.constantFrom(...COMMANDS, ...LONG) },
  // Glued forms: -t1.2.3.4:80, --scheduler=rr, bundles such as -Lnc.
  {
    weight: 2,
    arbitrary: fc.tuple(fc.constantFrom(...OPTS), fc.constantFrom('', '='), fc.constantFrom(...VALUES)).map(([o, g, v]) => o + g + v),
  },
  { weight: 1, arbitrary: fc.stringMatching(/^-[AEDCLZaedRSnctuxyfspMrgimwboj]{1,5}$/) },
  { weight: 1, arbitrary: fc.string({ maxLength: 12 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 6 }) },
);

/** Command lines that parse, as the mutations' seeds. */
const VALID = [
  ['-A', '-t', '10.0.0.1:80', '-s', 'rr'],
  ['-A', '-u', '10.0.0.1:53', '-s', 'sh', '-b', 'sh-port', '-o'],
  ['-A', '-f', '7', '-s', 'wlc', '-p', '300', '-M', '255.255.255.0'],
  ['-A', '-t', '[2001:db8::1]:443', '-s', 'mh', '-b', 'mh-fallback', '-p', '--pe', 'sip'],
  ['-E', '-t', '10.0.0.1:80', '-s', 'wrr'],
  ['-D', '-t', '10.0.0.1:80'],
  ['-a', '-t', '10.0.0.1:80', '-r', '192.168.1.2:80', '-m', '-w', '3'],
  ['-a', '-t', '10.0.0.1:80', '-r', '192.168.1.3', '-g', '-x', '10', '-y', '2'],
  ['-a', '-u', '10.0.0.1:53', '-r', '192.168.1.4:53', '-i', '--tun-type', 'gue', '--tun-port', '6080', '--tun-csum'],
  ['-e', '-t', '10.0.0.1:80', '-r', '192.168.1.2:80', '-m', '-w', '0'],
  ['-d', '-t', '10.0.0.1:80', '-r', '192.168.1.2:80'],
  ['-Z', '-t', '10.0.0.1:80'],
  ['-C'],
  ['-Ln', '--stats'],
  ['-Lnc'],
  ['-L', '--timeout'],
  ['-Sn'],
  ['--set', '900', '120', '300'],
  ['--start-daemon', 'master', '--mcast-interface', 'lo', '--syncid', '5'],
];

const mutatedArgv = fc
  .tuple(
    fc.constantFrom(...VALID),
    fc.array(fc.record({ kind: fc.constantFrom('replace', 'insert', 'delete', 'swap', 'glue'), at: fc.nat(), w: word }), { maxLength: 4 }),
  )
  .map(([argv, edits]) => {
    const a = [...argv];
    for (const e of edits) {
      const i = a.length ? e.at % a.length : 0;
      if (e.kind === 'replace') a[i] = e.w;
      else if (e.kind === 'insert') a.splice(i, 0, e.w);
      else if (e.kind === 'delete') a.splice(i, 1);
      else if (e.kind === 'swap' && a.length > 1) [a[i], a[(i + 1) % a.length]] = [a[(i + 1) % a.length]!, a[i]!];
      else if (e.kind === 'glue' && i + 1 < a.length) a.splice(i, 2, a[i]! + a[i + 1]!);
    }
    return a.length ? a : ['-L'];
  });

/** Argv: mutations of valid command lines, and sequences of words from the grammar. */
export const argvArb = fc.oneof(
  { weight: 3, arbitrary: mutatedArgv },
  {
    weight: 1,
    arbitrary: fc.tuple(fc.constantFrom(...COMMANDS, ...LONG), fc.array(word, { maxLength: 10 })).map(([c, rest]) => [c, ...rest]),
  },
  { weight: 1, arbitrary: fc.array(word, { minLength: 1, maxLength: 8 }) },
);

async function parse(argv: readonly string[]): Promise<Command | ParseError> {
  let r: Command | ParseError;
  try {
    r = await parseCommand(argv, env);
  } catch (e) {
    throw new Error(`parseCommand threw on ${JSON.stringify(argv)}: ${describeError(e)}`);
  }
  if (r.cmd === 'error') {
    if (typeof r.text !== 'string' || !r.text.endsWith('\n') || !Number.isInteger(r.exitCode) || r.exitCode === 0)
      throw new Error(`bad ParseError for ${JSON.stringify(argv)}: ${JSON.stringify(r)}`);
  }
  return r;
}

/** A table with two services and a server, for the changes to hit or miss. */
function seededTable(): IpvsTable {
  const t = newTable();
  const svc = { af: 4 as const, protocol: 'tcp' as const, addr: '10.0.0.1', port: 80, fwmark: 0 };
  const cfg = { scheduler: 'wlc', schedFlags: 0, persistent: 0, netmask: 0xffffffff, ops: false, pe: '' };
  t.applyAll([
    { op: 'add-service', service: { ...svc, ...cfg } },
    { op: 'add-service', service: { af: 4, protocol: 'tcp', addr: '0.0.0.0', port: 0, fwmark: 7, ...cfg } },
    {
      op: 'add-server',
      service: svc,
      dest: { af: 4, addr: '192.168.1.2', port: 80, weight: 1, fwd: 'masq', uThreshold: 0, lThreshold: 0 },
    },
  ]);
  return t;
}

/** Applies `op`; returns whether it was applied. A refusal must be a TsvsError that left the table as it was. */
export function applyOrRefuse(t: IpvsTable, op: Op, what: string): boolean {
  const before = JSON.stringify(t.config());
  try {
    t.apply(op);
    return true;
  } catch (e) {
    if (!isTsvsError(e)) throw new Error(`${what}: the table threw something other than a TsvsError: ${describeError(e)}`);
    const after = JSON.stringify(t.config());
    if (after !== before) throw new Error(`${what}: refused (${e.detail}) but the table changed`);
    return false;
  }
}

export const ipvsadmTarget: FuzzTarget = {
  name: 'ipvsadm argv',
  properties: [
    {
      name: 'never throws; every refusal is a ParseError with text and a non-zero exit status',
      runs: 500,
      property: () =>
        fc.asyncProperty(argvArb, async (argv) => {
          await parse(argv);
          return true;
        }),
    },
    {
      name: 'a parsed change is applied, or refused with a TsvsError that leaves the table unchanged',
      runs: 400,
      property: () =>
        fc.asyncProperty(argvArb, async (argv) => {
          const r = await parse(argv);
          if (r.cmd === 'apply') applyOrRefuse(seededTable(), r.op, `tsvsadm ${argv.join(' ')}`);
          return true;
        }),
    },
    {
      name: 'round trip: -S of a table built by random commands re-parses to a table with the same -S',
      runs: 150,
      property: () =>
        fc.asyncProperty(fc.array(argvArb, { minLength: 1, maxLength: 12 }), async (batch) => {
          const t = newTable();
          for (const argv of batch) {
            const r = await parse(argv);
            if (r.cmd === 'apply') applyOrRefuse(t, r.op, `tsvsadm ${argv.join(' ')}`);
          }
          const saved = formatRules(t.view());
          const again = newTable();
          for (const line of saved.split('\n').filter(Boolean)) {
            const r = await parse(line.split(' '));
            if (r.cmd !== 'apply') throw new Error(`-S line "${line}" did not parse to a change: ${JSON.stringify(r)}`);
            again.apply(r.op);
          }
          const resaved = formatRules(again.view());
          if (resaved !== saved) throw new Error(`-S round trip differs:\n${saved}---\n${resaved}`);
          return true;
        }),
    },
  ],
};
