/**
 * `tsvs realserver setup`: the printed real-server side of DR and TUN, the errors, and
 * (as root, in a scratch namespace of this test's own) --apply for DR.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runRealserver } from '../../src/cli/realserver.js';
import { drSteps, tunSteps } from '../../src/realserver/steps.js';
import { findModule } from '../../src/dataplane/tunnel/support.js';
import { privileged } from '../privileged.js';

function capture(argv: string[]): { code: number; out: string; err: string } {
  let out = '';
  let err = '';
  const o = process.stdout.write.bind(process.stdout);
  const e = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((s: string) => ((out += s), true)) as typeof process.stdout.write;
  process.stderr.write = ((s: string) => ((err += s), true)) as typeof process.stderr.write;
  try {
    return { code: runRealserver(argv), out, err };
  } finally {
    process.stdout.write = o;
    process.stderr.write = e;
  }
}

describe('tsvs realserver setup', () => {
  it('--mode dr prints the VIP on lo and the ARP sysctls, with reasons', () => {
    const r = capture(['setup', '--mode', 'dr', '198.19.0.100']);
    assert.equal(r.code, 0, r.err);
    const cmds = r.out
      .split('\n')
      .filter((l) => l && !l.startsWith('#'))
      .map((l) => l.split('    #')[0]);
    assert.deepEqual(cmds, [
      'ip addr add 198.19.0.100/32 dev lo',
      'sysctl -w net.ipv4.conf.all.arp_ignore=1',
      'sysctl -w net.ipv4.conf.all.arp_announce=2',
    ]);
    assert.match(r.out, /# answer ARP only for addresses of the interface asked on, so never for the VIP/);
  });

  it('--dev adds the per-interface sysctls; IPv6 needs no ARP settings', () => {
    assert.deepEqual(
      drSteps('198.19.0.100', 'eth1')
        .map((s) => s.argv.join(' '))
        .slice(3),
      ['sysctl -w net.ipv4.conf.eth1.arp_ignore=1', 'sysctl -w net.ipv4.conf.eth1.arp_announce=2'],
    );
    assert.deepEqual(
      drSteps('2001:db8:19::100').map((s) => s.argv.join(' ')),
      ['ip addr add 2001:db8:19::100/128 dev lo'],
    );
  });

  it('--mode tun prints the modules, the tunnel device and rp_filter, and says what this host lacks', () => {
    const r = capture(['setup', '--mode', 'tun', '--tun-type', 'gue', '--tun-port', '6080', '198.19.0.100']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^modprobe fou /m);
    assert.match(r.out, /^ip fou add port 6080 gue /m);
    assert.match(r.out, /^ip addr add 198\.19\.0\.100\/32 dev tunl0 /m);
    assert.match(r.out, /^sysctl -w net\.ipv4\.conf\.tunl0\.rp_filter=0 /m);
    if (!findModule('fou').present)
      assert.match(r.out, /# NOTE: this host cannot do it: tunnel type gue \(IPv4\) needs the kernel modules? .*fou/);
    assert.deepEqual(
      tunSteps('198.19.0.100', 'gre')
        .steps.slice(0, 3)
        .map((s) => s.argv.join(' ')),
      ['modprobe ip_gre', 'ip link set gre0 up', 'ip addr add 198.19.0.100/32 dev gre0'],
    );
  });

  it('bad input is refused with a message naming it', () => {
    assert.match(capture(['setup', '--mode', 'dr']).err, /expected one VIP/);
    assert.match(capture(['setup', '--mode', 'xx', '1.2.3.4']).err, /--mode must be dr or tun \(not "xx"\)/);
    assert.match(capture(['setup', '--mode', 'dr', 'vip.example']).err, /"vip\.example" is not an IPv4 or IPv6 address/);
    assert.match(capture(['setup', '--mode', 'tun', '--tun-type', 'gue', '1.2.3.4']).err, /--tun-type gue needs --tun-port/);
    assert.match(capture(['setup', '--mode', 'tun', '--tun-type', 'vxlan', '1.2.3.4']).err, /--tun-type "vxlan": use ipip, gue or gre/);
    assert.equal(capture(['nope']).code, 2);
  });
});

describe('tsvs realserver setup --apply', privileged(['ip']), () => {
  const ns = `tsvs-rs-${(process.pid % 100000).toString(36)}`;
  before(() => {
    spawnSync('ip', ['netns', 'add', ns]);
  });
  after(() => {
    spawnSync('ip', ['netns', 'del', ns]);
  });

  it('--mode dr applies the VIP on lo and the ARP sysctls in this namespace; a second run is harmless', () => {
    const root = join(import.meta.dirname, '..', '..');
    for (let i = 0; i < 2; i++) {
      const r = spawnSync(
        'ip',
        [
          'netns',
          'exec',
          ns,
          process.execPath,
          '--import',
          'tsx',
          'bin/tsvs.ts',
          'realserver',
          'setup',
          '--mode',
          'dr',
          '198.19.0.100',
          '--apply',
        ],
        { cwd: root, encoding: 'utf8', timeout: 30_000 },
      );
      assert.equal(r.status, 0, r.stderr);
    }
    const inNs = (...a: string[]) => spawnSync('ip', ['netns', 'exec', ns, ...a], { encoding: 'utf8' }).stdout;
    assert.match(inNs('ip', '-4', 'addr', 'show', 'dev', 'lo'), /inet 198\.19\.0\.100\/32/);
    assert.equal(inNs('cat', '/proc/sys/net/ipv4/conf/all/arp_ignore').trim(), '1');
    assert.equal(inNs('cat', '/proc/sys/net/ipv4/conf/all/arp_announce').trim(), '2');
  });
});
