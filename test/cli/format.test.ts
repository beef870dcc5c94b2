/**
 * Golden tests of tsvsadm's listings. The ipv4-*, sort-* and conn-* goldens are the output
 * of the real ipvsadm 1.31 for the same data (fixtures/oracle/generate.ts); the others
 * were produced by tsvs and checked by hand against ipvsadm.c's printf formats
 * (fixtures/README.md lists each one's source). Trailing blanks matter and are compared.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';

import { formatConnections, mergeSort, ntop, printLargenum } from '../../src/ipvsadm/format.js';
import { FakeApi, goldenResolver, run, stubResolver } from './fake-api.js';
import { connections, ipv4Table, ipv6Table, longNameTable, sortTable } from './fixtures/tables.js';

const golden = (name: string) => readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8');

const daemons = [
  { state: 'backup' as const, mcastIfn: 'eth1', syncid: 9 },
  { state: 'master' as const, mcastIfn: 'eth0', syncid: 0, maxlen: 1472, group: '224.0.0.81', port: 8848, ttl: 1 },
];

async function listing(api: FakeApi, argv: string[], resolve = stubResolver): Promise<string> {
  const r = await run(argv, api, { resolve });
  assert.equal(r.stderr, '');
  assert.equal(r.code, 0);
  return r.stdout;
}

describe('listings match ipvsadm 1.31 (goldens from the real binary)', () => {
  const cases: Array<[string, string[]]> = [
    ['ipv4-Ln.txt', ['-Ln']],
    ['ipv4-L.txt', ['-L']],
    ['ipv4-stats.txt', ['-Ln', '--stats']],
    ['ipv4-stats-exact.txt', ['-Ln', '--stats', '--exact']],
    ['ipv4-rate.txt', ['-Ln', '--rate']],
    ['ipv4-thresholds.txt', ['-Ln', '--thresholds']],
    ['ipv4-persistent-conn.txt', ['-Ln', '--persistent-conn']],
    ['ipv4-tun-info.txt', ['-Ln', '--tun-info']],
    ['ipv4-nosort.txt', ['-Ln', '--nosort']],
    ['ipv4-Sn.txt', ['-Sn']],
    ['ipv4-S.txt', ['-S']],
    ['ipv4-one-service.txt', ['-L', '-n', '-t', '10.0.0.1:80']],
    ['ipv4-one-service-stats.txt', ['-L', '-t', '10.0.0.1:80', '--stats']],
  ];
  for (const [file, argv] of cases) {
    it(`${argv.join(' ')} = ${file}`, async () => {
      assert.equal(await listing(new FakeApi(ipv4Table()), argv, goldenResolver), golden(file));
    });
  }

  const connCases: Array<[string, string[]]> = [
    ['conn-Lnc.txt', ['-Lnc']],
    ['conn-Lc.txt', ['-Lc']],
    ['conn-Lnc-persistent.txt', ['-Lnc', '--persistent-conn']],
  ];
  for (const [file, argv] of connCases) {
    it(`${argv.join(' ')} = ${file}`, async () => {
      assert.equal(await listing(new FakeApi(ipv6Table(), connections(), daemons), argv), golden(file));
    });
  }

  it('no arguments lists like -L', async () => {
    assert.equal(await listing(new FakeApi(ipv4Table()), [], goldenResolver), golden('ipv4-L.txt'));
  });

  it('-l, --list and bundled forms are the same command', async () => {
    const api = new FakeApi(ipv4Table());
    assert.equal(await listing(api, ['-ln']), golden('ipv4-Ln.txt'));
    assert.equal(await listing(api, ['--list', '--numeric']), golden('ipv4-Ln.txt'));
    // ...but the command must come first, even inside a bundle.
    assert.deepEqual(await run(['-nL'], api), {
      code: 255,
      stdout: '',
      stderr: "Try `ipvsadm -h' or 'ipvsadm --help' for more information.\n",
    });
  });

  it('sorts as libipvs does, wrap-around quirks and all (sort-Ln.txt, sort-Sn.txt)', async () => {
    const api = new FakeApi(sortTable());
    assert.equal(await listing(api, ['-Ln']), golden('sort-Ln.txt'));
    assert.equal(await listing(api, ['-Sn']), golden('sort-Sn.txt'));
  });

  it('--nosort keeps the daemon order of services and servers', async () => {
    const out = await listing(new FakeApi(sortTable()), ['-Ln', '--nosort']);
    const lines = out.split('\n').slice(3, 9);
    assert.deepEqual(lines, [
      'TCP  10.0.0.1:80 wlc',
      '  -> 192.168.1.1:80               Masq    1      0          0         ',
      '  -> 10.0.0.5:80                  Masq    1      0          0         ',
      '  -> 100.0.0.5:80                 Masq    1      0          0         ',
      '  -> 200.0.0.5:80                 Masq    1      0          0         ',
      '  -> 10.0.0.5:79                  Masq    1      0          0         ',
    ]);
  });
});

describe('listings beyond what the oracle can show (tsvs-produced, hand-checked goldens)', () => {
  const api = () => new FakeApi(ipv6Table(), connections(), daemons);
  const cases: Array<[string, () => FakeApi, string[]]> = [
    ['ipv6-Ln.txt', api, ['-Ln']],
    ['ipv6-L.txt', api, ['-L']],
    ['ipv6-tun-info.txt', api, ['-Ln', '--tun-info']],
    ['ipv6-Sn.txt', api, ['-Sn']],
    ['ipv6-S.txt', api, ['-S']],
    ['daemon.txt', api, ['-L', '--daemon']],
    ['long-L.txt', () => new FakeApi(longNameTable()), ['-L']],
    ['long-stats.txt', () => new FakeApi(longNameTable()), ['-L', '--stats']],
    ['long-S.txt', () => new FakeApi(longNameTable()), ['-S']],
  ];
  for (const [file, mk, argv] of cases) {
    it(`${argv.join(' ')} = ${file}`, async () => {
      assert.equal(await listing(mk(), argv), golden(file));
    });
  }

  it('truncates IPv4 names to 33 (service) and 28 (server) columns, not IPv6 ones', async () => {
    const out = await listing(new FakeApi(longNameTable()), ['-L']);
    assert.match(out, /^TCP {2}frontend-vip\.example\.com:htt rr$/m);
    assert.match(out, /^ {2}-> a-rather-long-real-server-na Masq/m);
    assert.match(out, /^TCP {2}\[v6\.example\.com\]:http wlc$/m);
  });

  it('--timeout', async () => {
    assert.equal(await listing(api(), ['-L', '--timeout']), 'Timeout (tcp tcpfin udp): 900 120 300\n');
  });

  it('-Ln --rate: service line abbreviates every column, a server only its byte rates', async () => {
    const out = await listing(new FakeApi(ipv4Table()), ['-Ln', '--rate']);
    assert.ok(out.includes('  -> 192.168.1.2:80               100000000 1000000000 12345678    4294M   100000\n'));
  });

  it('connection expiry prints minutes past 59 and zero-pads both fields', () => {
    const [c] = connections();
    const out = formatConnections([
      { ...c!, expires: 7 },
      { ...c!, expires: 6000 },
    ]);
    assert.match(out, /^TCP 00:07 {2}/m);
    assert.match(out, /^TCP 100:00 /m);
  });
});

describe('print_largenum', () => {
  const cases: Array<[number, string, string]> = [
    [0, '        0', '        0'],
    [99999999, ' 99999999', ' 99999999'],
    [100000000, '  100000K', ' 100000000'],
    [804275000, '  804275K', ' 804275000'],
    [999999999, '  999999K', ' 999999999'],
    [1000000000, '    1000M', ' 1000000000'],
    [2110000000, '    2110M', ' 2110000000'],
    [99999999999, '   99999M', ' 99999999999'],
    [100000000000, '     100G', ' 100000000000'],
    [99999999999999, '   99999G', ' 99999999999999'],
    [100000000000000, '     100T', ' 100000000000000'],
  ];
  for (const [n, abbreviated, exact] of cases) {
    it(`${n}`, () => {
      assert.equal(printLargenum(n), abbreviated);
      assert.equal(printLargenum(n, true), exact);
    });
  }
});

describe('helpers', () => {
  it('ntop writes IPv6 as glibc inet_ntop does', () => {
    assert.equal(ntop('2001:db8:0:0:1:0:0:1'), '2001:db8::1:0:0:1');
    assert.equal(ntop('::ffff:10.9.9.9'), '::ffff:10.9.9.9');
    assert.equal(ntop('::ffff:a09:909'), '::ffff:10.9.9.9');
    assert.equal(ntop('::1'), '::1');
    assert.equal(ntop('::'), '::');
    assert.equal(ntop('::10.9.9.9'), '::10.9.9.9'); // IPv4-compatible: glibc dots it too
    assert.equal(ntop('::a09:909'), '::10.9.9.9');
    assert.equal(ntop('fe80::'), 'fe80::');
    assert.equal(ntop('1:0:2:3:4:5:6:7'), '1:0:2:3:4:5:6:7');
    assert.equal(ntop('10.0.0.1'), '10.0.0.1');
  });

  it('mergeSort takes ties from the left (stable) like glibc msort', () => {
    const items = [
      { k: 1, id: 'a' },
      { k: 0, id: 'b' },
      { k: 1, id: 'c' },
      { k: 0, id: 'd' },
    ];
    assert.deepEqual(
      mergeSort(items, (x, y) => x.k - y.k).map((x) => x.id),
      ['b', 'd', 'a', 'c'],
    );
  });

  it('--json lists the same data, sorted the same way, stable and pretty', async () => {
    const out = await listing(new FakeApi(sortTable()), ['-L', '--json']);
    const parsed = JSON.parse(out) as { services: Array<{ addr: string; fwmark: number; dests: Array<{ addr: string; port: number }> }> };
    const text = golden('sort-Ln.txt');
    const order = parsed.services.map((s) => (s.fwmark ? `FWM  ${s.fwmark}` : `TCP  ${s.addr}:80`));
    const textOrder = text
      .split('\n')
      .filter((l) => /^(TCP|FWM)/.test(l))
      .map((l) => l.replace(/ wlc$/, ''));
    assert.deepEqual(order, textOrder);
    assert.deepEqual(
      parsed.services.find((s) => s.addr === '10.0.0.1')!.dests.map((d) => `${d.addr}:${d.port}`),
      ['100.0.0.5:80', '192.168.1.1:80', '200.0.0.5:80', '10.0.0.5:79', '10.0.0.5:80'],
    );
    assert.ok(out.startsWith('{\n  "version": "1.2.1",\n  "size": 4096,\n  "services": [\n'));
    assert.equal(await listing(new FakeApi(sortTable()), ['-L', '--json']), out);
  });

  it('--json for -c, --timeout, --daemon, -S and -L -t', async () => {
    const a = new FakeApi(ipv6Table(), connections(), daemons);
    assert.equal(JSON.parse(await listing(a, ['-Lc', '--json'])).length, 5);
    assert.deepEqual(JSON.parse(await listing(a, ['-L', '--timeout', '--json'])), { tcp: 900, tcpfin: 120, udp: 300 });
    assert.deepEqual(
      JSON.parse(await listing(a, ['-L', '--daemon', '--json'])).map((d: { state: string }) => d.state),
      ['master', 'backup'],
    );
    const rules = JSON.parse(await listing(a, ['-S', '--json']));
    assert.equal(rules.services.length, 4);
    assert.deepEqual(rules.timeouts, { tcp: 900, tcpfin: 120, udp: 300 });
    const one = JSON.parse(await listing(a, ['-L', '-t', '[2001:db8::1]:443', '--json']));
    assert.deepEqual(
      one.dests.map((d: { port: number }) => d.port),
      [443, 8443],
    );
  });
});

describe('fixtures/README.md', () => {
  it('names the source of every golden: the real ipvsadm, or tsvs itself', () => {
    const rows = new Map(
      golden('README.md')
        .split('\n')
        .map((l) => /^\| (\S+\.txt) \| ([^|]+) \|/.exec(l))
        .filter((m) => m !== null)
        .map((m) => [m[1]!, m[2]!.trim()]),
    );
    const files = readdirSync(new URL('./fixtures/', import.meta.url)).filter((f) => f.endsWith('.txt'));
    assert.deepEqual([...rows.keys()].sort(), files.sort());
    for (const [file, source] of rows) assert.match(source, /^(oracle|produced by tsvs, not an oracle)$/, file);
  });
});
