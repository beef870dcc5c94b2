/**
 * tsvsadm against the real ipvsadm 1.31, both ways round:
 * - every listing the oracle can serve is byte for byte what the real ipvsadm prints for
 *   the same table, connections, daemons and names;
 * - `tsvsadm -S` output is accepted by the real `ipvsadm -R` and means the same to it.
 *
 * The kernel here has no ip_vs, so the real /usr/sbin/ipvsadm runs with the LD_PRELOAD
 * shim in fixtures/oracle/fake-ipvs.c, which answers ipvsadm's requests from a table
 * (fixtures/oracle/kernel.ts writes it from what tsvsadm is shown) and records every
 * change ipvsadm asks for. (The shim speaks the IPv4 socket-option interface only, so
 * the services are IPv4; connection entries may be IPv6.)
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { formatIPv4 } from '../../src/core/addr.js';
import type { Op, ServiceKey, TableView } from '../../src/core/types.js';
import { FakeApi, run, stubResolver, svc } from './fake-api.js';
import { IPVSADM, buildShim, oracleProblem, realIpvsadm, type World } from './fixtures/oracle/kernel.js';
import { connections, ipv4Table, longNameTable, sortTable } from './fixtures/tables.js';

function gate(): { skip?: string } {
  const problem = oracleProblem();
  if (!problem) return {};
  // CI installs ipvsadm; there a missing oracle must fail, not skip.
  if (process.env.TSVS_REQUIRE_PRIVILEGED === '1') throw new Error(`ipvsadm oracle required but unavailable: ${problem}`);
  return { skip: problem };
}

const FWD = { masq: 0, tunnel: 2, route: 3, fullnat: 0 } as const;

/** The shim's log line for a service key as ipvsadm sends it with a real-server command. */
function keyFields(k: ServiceKey): string {
  return k.fwmark ? `6 0.0.0.0 0 ${k.fwmark}` : `${{ tcp: 6, udp: 17, sctp: 132 }[k.protocol]} ${k.addr} ${k.port} 0`;
}

/** What the shim would log for each operation, if ipvsadm means the same thing by the text. */
function expectedLog(ops: Op[]): string[] {
  return ops.map((op) => {
    switch (op.op) {
      case 'add-service': {
        const s = op.service;
        const flags = (s.persistent ? 1 : 0) | (s.ops ? 4 : 0) | (s.schedFlags << 3);
        return `svc ADD ${keyFields(s)} ${s.scheduler} ${flags} ${s.persistent} ${formatIPv4(s.netmask)}`;
      }
      case 'add-server': {
        const d = op.dest;
        return `dest ADDDEST ${keyFields(op.service)} - 0 0 255.255.255.255 ${d.addr} ${d.port} ${FWD[d.fwd]} ${d.weight} ${d.uThreshold} ${d.lThreshold}`;
      }
      default:
        return `unexpected ${op.op}`;
    }
  });
}

/** The IPv4 fixture and more: sched flags, OPS, port-zero persistence, a wide mask, a second fwmark. */
function mixedTable(): TableView {
  const mixed = ipv4Table();
  mixed.services = [
    ...mixed.services,
    svc({ protocol: 'udp', addr: '10.9.0.53', port: 53, scheduler: 'sh', schedFlags: 3, ops: true }),
    svc({ protocol: 'tcp', addr: '10.9.0.80', port: 0, scheduler: 'mh', schedFlags: 1, persistent: 7200, netmask: 0xfffff000 }),
    svc({ fwmark: 4242, addr: '0.0.0.0', port: 0, scheduler: 'lblcr', persistent: 360 }),
  ];
  return mixed;
}

/** Tables whose -S covers methods, weights, persistence, masks, flags, ops and fwmarks. */
function tables(): Array<[string, TableView]> {
  return [
    ['ipv4 fixture and more', mixedTable()],
    ['sort fixture', sortTable()],
  ];
}

/** Daemons as the socket-option interface reports them (no maxlen, group, port or ttl). */
const daemons = [
  { state: 'backup' as const, mcastIfn: 'eth1', syncid: 9 },
  { state: 'master' as const, mcastIfn: 'eth0', syncid: 0 },
];

/** The long-name table without its IPv6 service, which the shim cannot carry. */
function longNameV4(): TableView {
  const t = longNameTable();
  return { ...t, services: t.services.filter((s) => s.af === 4) };
}

/** Services the oracle can list, with flags, persistence and names enough to show every column. */
const worlds: Array<[string, World, string[][]]> = [
  [
    'ipv4 fixture',
    { table: ipv4Table(), conns: connections(), daemons, resolve: stubResolver },
    [
      ['-L', '-t', '10.0.0.1:80'],
      ['-L', '-n', '-t', '10.0.0.1:80', '--stats'],
      ['-Ln', '-u', '192.168.100.200:53', '--rate'],
      ['-L', '-f', '7', '--thresholds'],
    ],
  ],
  [
    'ipv4 fixture, other timeouts and no daemons',
    { table: { ...ipv4Table(), timeouts: { tcp: 0, tcpfin: 5, udp: 86400 * 31 } }, resolve: stubResolver },
    [],
  ],
  [
    'ipv4 fixture and more',
    { table: mixedTable(), resolve: stubResolver },
    [
      ['-Ln', '-t', '10.9.0.80:0'],
      ['-L', '-f', '4242'],
    ],
  ],
  ['sort fixture', { table: sortTable(), resolve: stubResolver }, [['-Ln', '-f', '4294967295']]],
  ['long names', { table: longNameV4(), resolve: stubResolver }, [['-L', '-t', '10.0.0.1:8080', '--persistent-conn']]],
];

/** Every listing of the whole table, with and without names. */
const LISTINGS: string[][] = [
  [],
  ['-L'],
  ['-Ln'],
  ['-S'],
  ['-Sn'],
  ['-L', '--stats'],
  ['-Ln', '--stats'],
  ['-Ln', '--stats', '--exact'],
  ['-L', '--rate'],
  ['-Ln', '--rate'],
  ['-Ln', '--rate', '--exact'],
  ['-L', '--thresholds'],
  ['-Ln', '--thresholds'],
  ['-L', '--persistent-conn'],
  ['-Ln', '--persistent-conn'],
  ['-L', '--tun-info'],
  ['-Ln', '--tun-info'],
  ['-Ln', '--nosort'],
  ['-Ln', '--stats', '--nosort'],
  ['-Lc'],
  ['-Lnc'],
  ['-Lc', '--persistent-conn'],
  ['-Lnc', '--persistent-conn'],
  ['-L', '--timeout'],
  ['-L', '--daemon'],
];

/** Listing options that ipvsadm refuses together: the refusals must match as well. */
const REFUSALS: string[][] = [
  ['-Sn', '--nosort'],
  ['-S', '--stats'],
  ['-Lc', '--rate'],
  ['-L', '--timeout', '--stats'],
  ['-L', '--daemon', '--persistent-conn'],
];

describe('tsvsadm lists what the real ipvsadm lists, byte for byte', gate(), () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsvs-oracle-'));
  let shim = '';
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('build the shim', () => {
    shim = buildShim(dir);
  });

  for (const [name, world, extra] of worlds) {
    for (const args of [...LISTINGS, ...extra, ...REFUSALS]) {
      const refused = REFUSALS.includes(args);
      test(`${name}: ipvsadm ${args.join(' ')}${refused ? ' (refused)' : ''}`, async () => {
        const real = await realIpvsadm(shim, world, args);
        assert.equal(real.status === 0, !refused, real.stderr);
        const mine = await run(args, new FakeApi(world.table, world.conns, world.daemons), { resolve: world.resolve });
        assert.deepEqual({ status: mine.code, stdout: mine.stdout, stderr: mine.stderr }, real);
      });
    }
  }
});

describe('the real ipvsadm -R accepts tsvsadm -S output', gate(), () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsvs-oracle-'));
  let shim = '';
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('build the shim', () => {
    shim = buildShim(dir);
  });

  for (const [name, table] of tables()) {
    test(name, async () => {
      const saved = await run(['-S', '-n'], new FakeApi(table));
      assert.equal(saved.code, 0, saved.stderr);
      assert.ok(saved.stdout.split('\n').filter(Boolean).length >= 4);

      const log = join(dir, `${name.replace(/\W+/g, '-')}.log`);
      const r = spawnSync(IPVSADM, ['-R'], {
        input: saved.stdout,
        encoding: 'utf8',
        env: { ...process.env, LD_PRELOAD: shim, FAKE_LOG: log },
      });
      assert.equal(r.stderr, '', `ipvsadm -R refused tsvsadm's output:\n${saved.stdout}`);
      assert.equal(r.status, 0);
      const asked = readFileSync(log, 'utf8').trim().split('\n');

      // tsvsadm's own reading of the same text.
      const api = new FakeApi();
      const mine = await run(['-R'], api, { stdin: saved.stdout });
      assert.equal(mine.code, 0, mine.stderr);
      assert.deepEqual(asked, expectedLog(api.applied.flat()));
    });
  }
});
