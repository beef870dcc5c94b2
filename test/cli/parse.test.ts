/**
 * The parser: popt's scanning rules, ipvsadm's defaults and gotchas, and the Op each
 * command produces. Expected values were cross-checked against what the real ipvsadm
 * 1.31 sent to the (stubbed) kernel for the same command lines.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { inetAton, stringToNumber } from '../../src/ipvsadm/libc.js';
import { parseCommand, type Command, type ParseEnv } from '../../src/ipvsadm/parse.js';
import { builtinServices, parseServices } from '../../src/ipvsadm/services.js';
import { SCHED_FLAG_1, SCHED_FLAG_2, SCHED_FLAG_3, type Op } from '../../src/core/types.js';
import { stubResolver } from './fake-api.js';

const env: ParseEnv = { progName: 'ipvsadm', services: builtinServices, lookupHost: stubResolver.lookupHost };

async function parse(...argv: string[]): Promise<Command> {
  const c = await parseCommand(argv, env);
  assert.notEqual(c.cmd, 'error', `unexpected error: ${'text' in c ? c.text : ''}`);
  return c as Command;
}

async function op(...argv: string[]): Promise<Op> {
  const c = await parse(...argv);
  assert.equal(c.cmd, 'apply');
  return (c as Extract<Command, { cmd: 'apply' }>).op;
}

const tcp80 = { af: 4, protocol: 'tcp', addr: '1.2.3.4', port: 80, fwmark: 0 } as const;
const svcDefaults = { scheduler: 'wlc', schedFlags: 0, persistent: 0, netmask: 0xffffffff, ops: false, pe: '' };

describe('popt scanning', () => {
  it('bundles short options: -Ln, -Lnc, -Sn', async () => {
    const ln = await parse('-Ln');
    assert.equal(ln.cmd, 'list');
    assert.equal((ln as { opts: { numeric: boolean } }).opts.numeric, true);
    const lnc = await parse('-Lnc');
    assert.deepEqual([lnc.cmd, (lnc as { view: string }).view], ['list', 'connections']);
    const sn = await parse('-Sn');
    assert.deepEqual([sn.cmd, (sn as { opts: { numeric: boolean } }).opts.numeric], ['save', true]);
  });

  it('an option argument may be glued, =-attached or the next word', async () => {
    const want = { op: 'add-service', service: { ...tcp80, ...svcDefaults, scheduler: 'rr' } };
    assert.deepEqual(await op('-A', '-t1.2.3.4:80', '-srr'), want);
    assert.deepEqual(await op('-At', '1.2.3.4:80', '-s', 'rr'), want);
    assert.deepEqual(await op('-A', '-t=1.2.3.4:80', '-s=rr'), want);
    assert.deepEqual(await op('--add-service', '--tcp-service=1.2.3.4:80', '--scheduler', 'rr'), want);
  });

  it('a required argument is the next word even if it starts with "-"', async () => {
    const r = await parseCommand(['-A', '-t', '-n'], env);
    assert.deepEqual(r, { cmd: 'error', text: 'illegal virtual server address[:port] specified\n', exitCode: 2 });
  });

  it('-p without a value is 360 s', async () => {
    const o = await op('-A', '-t', '1.2.3.4:80', '-p');
    assert.deepEqual(o, { op: 'add-service', service: { ...tcp80, ...svcDefaults, persistent: 360 } });
  });

  it('-p takes the next word unless it starts with "-"', async () => {
    assert.equal(((await op('-A', '-t', '1.2.3.4:80', '-p', '60')) as { service: { persistent: number } }).service.persistent, 60);
    const o = await op('-A', '-t', '1.2.3.4:80', '-p', '-s', 'rr');
    assert.deepEqual(o, { op: 'add-service', service: { ...tcp80, ...svcDefaults, scheduler: 'rr', persistent: 360 } });
    for (const argv of [['-p60'], ['-p=60'], ['--persistent=60'], ['--persistent', '60']]) {
      const p = (await op('-A', '-t', '1.2.3.4:80', ...argv)) as { service: { persistent: number } };
      assert.equal(p.service.persistent, 60, argv.join(' '));
    }
    // "-Ap" then the service: -p gets no value because nothing follows it in its word
    // and the next word is an option.
    const ap = (await op('-Ap', '-t', '1.2.3.4:80')) as { service: { persistent: number } };
    assert.equal(ap.service.persistent, 360);
    // "--" ends options and is not taken as -p's value.
    assert.equal(((await op('-A', '-t', '1.2.3.4:80', '-p', '--')) as { service: { persistent: number } }).service.persistent, 360);
  });

  it('--sort is a no-op that may repeat; -h and -v win only as the first option', async () => {
    assert.equal((await parse('-L', '--sort', '--sort')).cmd, 'list');
    assert.equal((await parse('-h', '-n')).cmd, 'help');
    assert.equal((await parse('-vh')).cmd, 'version');
    assert.equal((await parse('--help')).cmd, 'help');
  });
});

describe('ops for each command', () => {
  it('-A', async () => {
    assert.deepEqual(await op('-A', '-t', '1.2.3.4:http'), { op: 'add-service', service: { ...tcp80, ...svcDefaults } });
    assert.deepEqual(await op('-A', '-u', '1.2.3.4:domain', '-s', 'rr', '-o'), {
      op: 'add-service',
      service: { ...tcp80, protocol: 'udp', port: 53, ...svcDefaults, scheduler: 'rr', ops: true },
    });
    assert.deepEqual(await op('-A', '--sctp-service', '1.2.3.4:80', '-s', 'mh', '-b', 'mh-port,mh-fallback,flag-3'), {
      op: 'add-service',
      service: { ...tcp80, protocol: 'sctp', ...svcDefaults, scheduler: 'mh', schedFlags: SCHED_FLAG_1 | SCHED_FLAG_2 | SCHED_FLAG_3 },
    });
    assert.deepEqual(await op('-A', '-t', '1.2.3.4:80', '-p', '600', '-M', '255.255.255.0', '--pe', 'sip'), {
      op: 'add-service',
      service: { ...tcp80, ...svcDefaults, persistent: 600, netmask: 0xffffff00, pe: 'sip' },
    });
    // Zero port is fine when persistent.
    assert.deepEqual(await op('-A', '-t', '1.2.3.4', '-p'), {
      op: 'add-service',
      service: { ...tcp80, port: 0, ...svcDefaults, persistent: 360 },
    });
  });

  it('-A with IPv6 and fwmark services', async () => {
    assert.deepEqual(await op('-A', '-t', '[2001:DB8::1]:443', '-p', '-M', '64'), {
      op: 'add-service',
      service: { af: 6, protocol: 'tcp', addr: '2001:db8::1', port: 443, fwmark: 0, ...svcDefaults, persistent: 360, netmask: 64 },
    });
    assert.deepEqual(await op('-A', '-f', '7', '-s', 'sh', '-b', 'sh-fallback,sh-port'), {
      op: 'add-service',
      service: {
        af: 4,
        protocol: 'tcp',
        addr: '0.0.0.0',
        port: 0,
        fwmark: 7,
        ...svcDefaults,
        scheduler: 'sh',
        schedFlags: SCHED_FLAG_1 | SCHED_FLAG_2,
      },
    });
    assert.deepEqual(await op('-A', '-f', '7', '-6', '-o'), {
      op: 'add-service',
      service: { af: 6, protocol: 'tcp', addr: '::', port: 0, fwmark: 7, ...svcDefaults, netmask: 128, ops: true },
    });
    // -M before an IPv6 -t is read as an IPv4 mask, then the IPv6 service resets it to 128.
    const m = (await op('-A', '-M', '64', '-t', '[::1]:80', '-p')) as { service: { netmask: number } };
    assert.equal(m.service.netmask, 128);
  });

  it('-E re-applies every service parameter: no -s means wlc, no -p means not persistent', async () => {
    assert.deepEqual(await op('-E', '-t', '1.2.3.4:80'), { op: 'edit-service', service: { ...tcp80, ...svcDefaults } });
    assert.deepEqual(await op('-E', '-t', '1.2.3.4:80', '-s', 'sh', '-b', 'sh-port'), {
      op: 'edit-service',
      service: { ...tcp80, ...svcDefaults, scheduler: 'sh', schedFlags: SCHED_FLAG_2 },
    });
  });

  it('-D, -C, -Z, --set', async () => {
    assert.deepEqual(await op('-D', '-t', '1.2.3.4:80'), { op: 'delete-service', service: tcp80 });
    assert.deepEqual(await op('-C'), { op: 'flush' });
    assert.deepEqual(await op('--clear'), { op: 'flush' });
    assert.deepEqual(await op('-Z'), { op: 'zero' });
    assert.deepEqual(await op('-Z', '-f', '9'), { op: 'zero', service: { af: 4, protocol: 'tcp', addr: '0.0.0.0', port: 0, fwmark: 9 } });
    assert.deepEqual(await op('--set', '900', '0', '300'), { op: 'set-timeouts', timeouts: { tcp: 900, tcpfin: 0, udp: 300 } });
  });

  it('-a: defaults weight 1, route; the port follows the virtual one unless NAT says otherwise', async () => {
    const base = { af: 4, addr: '10.0.0.2', uThreshold: 0, lThreshold: 0 } as const;
    assert.deepEqual(await op('-a', '-t', '1.2.3.4:80', '-r', '10.0.0.2'), {
      op: 'add-server',
      service: tcp80,
      dest: { ...base, port: 80, weight: 1, fwd: 'route' },
    });
    // DR and tunnelling force the virtual port even when another is given.
    assert.deepEqual(await op('-a', '-t', '1.2.3.4:80', '-r', '10.0.0.2:8080'), {
      op: 'add-server',
      service: tcp80,
      dest: { ...base, port: 80, weight: 1, fwd: 'route' },
    });
    assert.deepEqual(await op('-a', '-t', '1.2.3.4:80', '-r', '10.0.0.2:8080', '-m', '-w', '0', '-x', '100', '-y', '10'), {
      op: 'add-server',
      service: tcp80,
      dest: { ...base, port: 8080, weight: 0, fwd: 'masq', uThreshold: 100, lThreshold: 10 },
    });
    assert.deepEqual(await op('-a', '-t', '1.2.3.4:80', '-r', '10.0.0.2', '-m'), {
      op: 'add-server',
      service: tcp80,
      dest: { ...base, port: 80, weight: 1, fwd: 'masq' },
    });
    // Port names are looked up for the service's protocol...
    assert.deepEqual(await op('-a', '-t', '1.2.3.4:80', '-r', '10.0.0.2:http-alt', '-m'), {
      op: 'add-server',
      service: tcp80,
      dest: { ...base, port: 8080, weight: 1, fwd: 'masq' },
    });
    // ...and -r before -t sees no virtual port yet (ipvsadm copies it at -r time).
    assert.deepEqual(await op('-a', '-r', '10.0.0.2', '-t', '1.2.3.4:80', '-m'), {
      op: 'add-server',
      service: tcp80,
      dest: { ...base, port: 0, weight: 1, fwd: 'masq' },
    });
    // fwmark services keep the given port, whatever the method.
    assert.deepEqual(await op('-a', '-f', '1', '-r', '10.0.0.2:8080'), {
      op: 'add-server',
      service: { af: 4, protocol: 'tcp', addr: '0.0.0.0', port: 0, fwmark: 1 },
      dest: { ...base, port: 8080, weight: 1, fwd: 'route' },
    });
  });

  it('-a with tunnels, including an IPv6 server behind an IPv4 service', async () => {
    assert.deepEqual(await op('-a', '-t', '1.2.3.4:80', '-r', '[2001:db8::9]:80', '-i'), {
      op: 'add-server',
      service: tcp80,
      dest: { af: 6, addr: '2001:db8::9', port: 80, weight: 1, fwd: 'tunnel', uThreshold: 0, lThreshold: 0, tunnel: { type: 'ipip' } },
    });
    const gue = (await op(
      '-a',
      '-t',
      '1.2.3.4:80',
      '-r',
      '10.0.0.2',
      '-i',
      '--tun-type',
      'gue',
      '--tun-port',
      '6080',
      '--tun-remcsum',
    )) as {
      dest: { tunnel: unknown };
    };
    assert.deepEqual(gue.dest.tunnel, { type: 'gue', port: 6080, csum: 'remcsum' });
    const gueDefault = (await op('-a', '-t', '1.2.3.4:80', '-r', '10.0.0.2', '-i', '--tun-type', 'gue', '--tun-port', '6080')) as {
      dest: { tunnel: unknown };
    };
    assert.deepEqual(gueDefault.dest.tunnel, { type: 'gue', port: 6080, csum: 'nocsum' });
    const gre = (await op('-a', '-t', '1.2.3.4:80', '-r', '10.0.0.2', '-i', '--tun-type', 'gre', '--tun-csum')) as {
      dest: { tunnel: unknown };
    };
    assert.deepEqual(gre.dest.tunnel, { type: 'gre', csum: 'csum' });
  });

  it('-e re-applies every server parameter: no -m/-i means route, no -w means weight 1', async () => {
    assert.deepEqual(await op('-e', '-t', '1.2.3.4:80', '-r', '10.0.0.2:8080'), {
      op: 'edit-server',
      service: tcp80,
      dest: { af: 4, addr: '10.0.0.2', port: 80, weight: 1, fwd: 'route', uThreshold: 0, lThreshold: 0 },
    });
  });

  it('-d keeps the given port (no forcing) and sends only the key', async () => {
    assert.deepEqual(await op('-d', '-t', '1.2.3.4:80', '-r', '10.0.0.2:8080'), {
      op: 'delete-server',
      service: tcp80,
      dest: { af: 4, addr: '10.0.0.2', port: 8080 },
    });
    assert.deepEqual(await op('-d', '-t', '1.2.3.4:80', '-r', '10.0.0.2'), {
      op: 'delete-server',
      service: tcp80,
      dest: { af: 4, addr: '10.0.0.2', port: 80 },
    });
  });

  it('listing commands', async () => {
    const one = await parse('-L', '-t', '[::1]:443', '--stats', '--exact');
    assert.deepEqual(one, {
      cmd: 'list',
      view: 'services',
      service: { af: 6, protocol: 'tcp', addr: '::1', port: 443, fwmark: 0 },
      opts: {
        numeric: false,
        stats: true,
        rate: false,
        thresholds: false,
        persistentConn: false,
        tunInfo: false,
        nosort: false,
        exact: true,
        json: false,
      },
    });
    assert.equal(((await parse('-L', '--timeout')) as { view: string }).view, 'timeout');
    assert.equal(((await parse('-l', '--daemon')) as { view: string }).view, 'daemon');
    assert.equal((await parse('-R')).cmd, 'restore');
  });
});

describe('addresses, names and numbers', () => {
  it('host names resolve through the injected lookup (IPv4 only)', async () => {
    const o = (await op('-A', '-t', 'www.example.com:https')) as { service: { addr: string; port: number } };
    assert.deepEqual([o.service.addr, o.service.port], ['192.0.2.80', 443]);
    const looked: string[] = [];
    const e: ParseEnv = { ...env, lookupHost: async (n) => (looked.push(n), null) };
    await parseCommand(['-A', '-t', '10.0.0.1:80'], e);
    assert.deepEqual(looked, [], 'numeric addresses never reach the resolver');
  });

  it('inet_aton forms are accepted as ipvsadm accepts them', () => {
    assert.equal(inetAton('10.1'), 0x0a000001);
    assert.equal(inetAton('1.2.3'), 0x01020003);
    assert.equal(inetAton('0x0a000001'), 0x0a000001);
    assert.equal(inetAton('010.0.0.1'), 0x08000001);
    assert.equal(inetAton('1.2.3.08'), null);
    assert.equal(inetAton('1.2.3.4.'), null);
    assert.equal(inetAton('256.1.1.1'), null);
    assert.equal(inetAton(''), null);
  });

  it('strtol-style numbers: leading blanks and + are fine, trailing junk is not', () => {
    assert.equal(stringToNumber(' 5', 0, 10), 5);
    assert.equal(stringToNumber('+5', 0, 10), 5);
    assert.equal(stringToNumber('5 ', 0, 10), null);
    assert.equal(stringToNumber('', 0, 10), null);
    assert.equal(stringToNumber('-0', 0, 10), 0);
    assert.equal(stringToNumber('99999999999999999999', 0, 10), null);
  });

  it('/etc/services parsing: aliases, first entry wins, comments', () => {
    const db = parseServices('# c\nhttp 80/tcp www # web\nhttp 80/udp\nwww-alt 80/tcp\nsip 5060/udp\n');
    assert.equal(db.portOf('www', 'tcp'), 80);
    assert.equal(db.nameOf(80, 'tcp'), 'http');
    assert.equal(db.portOf('sip', 'tcp'), null);
    assert.equal(db.nameOf(5060, 'udp'), 'sip');
  });

  it('the scheduler name is cut at 15 characters and an empty one means wlc', async () => {
    const long = (await op('-A', '-t', '1.2.3.4:80', '-s', 'verylongschedulername123')) as { service: { scheduler: string } };
    assert.equal(long.service.scheduler, 'verylongschedul');
    const empty = (await op('-A', '-t', '1.2.3.4:80', '-s=')) as { service: { scheduler: string } };
    assert.equal(empty.service.scheduler, 'wlc');
  });

  it('-b skips empty items; an empty -b is ignored', async () => {
    const a = (await op('-A', '-t', '1.2.3.4:80', '-s', 'sh', '-b', ',sh-port,,')) as { service: { schedFlags: number } };
    assert.equal(a.service.schedFlags, SCHED_FLAG_2);
    const b = (await op('-A', '-t', '1.2.3.4:80', '-b', '')) as { service: { schedFlags: number } };
    assert.equal(b.service.schedFlags, 0);
  });
});
