/**
 * The three LVS forwarding methods in tsvsadm's output, checked against ipvsadm 1.31's
 * format strings (reference/ipvsadm.md 5.4, 5.6): -Ln names Masq / Route / Tunnel per real
 * server, --tun-info shows `ipip`, `gue:PORT:FLAG` and `gre:FLAG` (flags `-c`, `+c`,
 * `r+c`), and -S writes `-m` / `-g` / `-i` with every tunnel option, which -R reads back
 * into the same servers.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Op, TableView } from '../../src/core/types.js';
import { FakeApi, dest, emptyTable, run, svc } from './fake-api.js';

function table(): TableView {
  return {
    ...emptyTable(),
    services: [
      svc({
        addr: '198.19.0.100',
        port: 80,
        scheduler: 'rr',
        // Kernel list order, newest first.
        dests: [
          dest({ addr: '198.19.0.16', port: 80, fwd: 'tunnel', tunnel: { type: 'gre', csum: 'nocsum' } }),
          dest({ addr: '198.19.0.15', port: 80, fwd: 'tunnel', tunnel: { type: 'gre', csum: 'csum' } }),
          dest({ addr: '198.19.0.14', port: 80, fwd: 'tunnel', weight: 2, tunnel: { type: 'gue', port: 6080, csum: 'remcsum' } }),
          dest({ addr: '198.19.0.13', port: 80, fwd: 'tunnel', tunnel: { type: 'gue', port: 6081, csum: 'csum' } }),
          dest({ addr: '198.19.0.12', port: 80, fwd: 'tunnel', tunnel: { type: 'gue', port: 6080, csum: 'nocsum' } }),
          dest({ addr: '198.19.0.11', port: 80, fwd: 'tunnel', tunnel: { type: 'ipip' } }),
          dest({ addr: '198.19.0.10', port: 80, fwd: 'route' }),
          dest({ addr: '198.19.0.9', port: 8080, fwd: 'masq' }),
        ],
      }),
    ],
  };
}

describe('forwarding methods in tsvsadm output', () => {
  it('-Ln: Masq, Route, Tunnel per real server, in ipvsadm columns', async () => {
    const r = await run(['-Ln'], new FakeApi(table()));
    assert.equal(r.code, 0, r.stderr);
    const rows = r.stdout.split('\n').filter((l) => l.startsWith('  -> '));
    const fwd = rows.slice(1).map((l) => l.slice(5 + 29, 5 + 29 + 8));
    assert.deepEqual(fwd, ['Masq    ', 'Route   ', 'Tunnel  ', 'Tunnel  ', 'Tunnel  ', 'Tunnel  ', 'Tunnel  ', 'Tunnel  ']);
    // printf("  -> %-28s %-7s %-6d %-10u %-10u\n"): exact bytes, trailing blanks included.
    assert.ok(
      rows.includes(`  -> ${'198.19.0.10:80'.padEnd(28)} ${'Route'.padEnd(7)} ${'1'.padEnd(6)} ${'0'.padEnd(10)} ${'0'.padEnd(10)}`),
      rows.join('\n'),
    );
    assert.ok(
      rows.includes(`  -> ${'198.19.0.9:8080'.padEnd(28)} ${'Masq'.padEnd(7)} ${'1'.padEnd(6)} ${'0'.padEnd(10)} ${'0'.padEnd(10)}`),
    );
    assert.ok(
      rows.includes(`  -> ${'198.19.0.14:80'.padEnd(28)} ${'Tunnel'.padEnd(7)} ${'2'.padEnd(6)} ${'0'.padEnd(10)} ${'0'.padEnd(10)}`),
    );
  });

  it('--tun-info: ipip, gue:PORT:-c|+c|r+c, gre:-c|+c, n/a for the others', async () => {
    const r = await run(['-Ln', '--tun-info'], new FakeApi(table()));
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split('\n');
    assert.equal(lines[2], '  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn');
    const info = (addr: string) => {
      const l = lines.find((x) => x.startsWith(`  -> ${addr}:`))!;
      return [l.slice(34, 42), l.slice(42, 56)];
    };
    assert.deepEqual(info('198.19.0.9'), ['Masq    ', 'n/a           ']);
    assert.deepEqual(info('198.19.0.10'), ['Route   ', 'n/a           ']);
    assert.deepEqual(info('198.19.0.11'), ['Tunnel  ', 'ipip          ']);
    assert.deepEqual(info('198.19.0.12'), ['Tunnel  ', 'gue:6080:-c   ']);
    assert.deepEqual(info('198.19.0.13'), ['Tunnel  ', 'gue:6081:+c   ']);
    assert.deepEqual(info('198.19.0.14'), ['Tunnel  ', 'gue:6080:r+c  ']);
    assert.deepEqual(info('198.19.0.15'), ['Tunnel  ', 'gre:+c        ']);
    assert.deepEqual(info('198.19.0.16'), ['Tunnel  ', 'gre:-c        ']);
  });

  it('-Sn writes each method and tunnel option as ipvsadm does, and -R reads them back', async () => {
    const r = await run(['-Sn'], new FakeApi(table()));
    assert.equal(r.code, 0, r.stderr);
    const S = '-a -t 198.19.0.100:80 -r';
    assert.equal(
      r.stdout,
      [
        '-A -t 198.19.0.100:80 -s rr',
        `${S} 198.19.0.9:8080 -m -w 1`,
        `${S} 198.19.0.10:80 -g -w 1`,
        `${S} 198.19.0.11:80 -i -w 1 --tun-type ipip`,
        `${S} 198.19.0.12:80 -i -w 1 --tun-type gue --tun-port 6080 --tun-nocsum`,
        `${S} 198.19.0.13:80 -i -w 1 --tun-type gue --tun-port 6081 --tun-csum`,
        `${S} 198.19.0.14:80 -i -w 2 --tun-type gue --tun-port 6080 --tun-remcsum`,
        `${S} 198.19.0.15:80 -i -w 1 --tun-type gre --tun-csum`,
        `${S} 198.19.0.16:80 -i -w 1 --tun-type gre --tun-nocsum`,
        '',
      ].join('\n'),
    );
    const api = new FakeApi();
    const back = await run(['-R'], api, { stdin: r.stdout });
    assert.equal(back.code, 0, back.stderr);
    const added = api.applied[0]!.filter((o): o is Extract<Op, { op: 'add-server' }> => o.op === 'add-server');
    assert.deepEqual(
      added.map((o) => [o.dest.addr, o.dest.port, o.dest.fwd, o.dest.weight, o.dest.tunnel ?? null]),
      // -S lists servers sorted by address (ipvsadm sorts unless --nosort).
      [...table().services[0]!.dests].reverse().map((d) => [d.addr, d.port, d.fwd, d.weight, d.tunnel ?? null]),
    );
  });

  it('-a -g with another port keeps the virtual port, as ipvsadm does (DR cannot map ports)', async () => {
    const api = new FakeApi(table());
    const r = await run(['-a', '-t', '198.19.0.100:80', '-r', '198.19.0.20:8080', '-g'], api);
    assert.equal(r.code, 0, r.stderr);
    const op = api.applied[0]![0] as Extract<Op, { op: 'add-server' }>;
    assert.deepEqual([op.dest.addr, op.dest.port, op.dest.fwd], ['198.19.0.20', 80, 'route']);
  });
});
