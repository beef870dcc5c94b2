/**
 * LVS-TUN encapsulation (src/dataplane/tunnel/encap.ts), without root: golden bytes for
 * every tunnel type and checksum option over IPv4 and IPv6 (fixtures/tunnel.json,
 * UPDATE_GOLDEN=1 rewrites it), the outer header rules of ip_vs_tunnel_xmit checked field
 * by field against hand-written values, decapsulation round trips, and the kernel-support
 * check that refuses -i naming the missing module (with a fake module probe, and on this
 * host).
 */
import { strict as assert } from 'node:assert';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { decapsulate, encapDsfield, encapsulate, onesSum } from '../../src/dataplane/tunnel/encap.js';
import { findModule, hostProbe, missingTunnelModules, tunnelRefusal, type ModuleProbe } from '../../src/dataplane/tunnel/support.js';
import { ipv4Syn, ipv6Syn, tunnelCases } from './packets.js';

const FIXTURE = join(import.meta.dirname, 'fixtures', 'tunnel.json');

describe('tunnel encapsulation', () => {
  test('golden bytes for every type and checksum option', () => {
    const got = Object.fromEntries(tunnelCases().map((c) => [c.name, encapsulate(c.inner, c.opts).toString('hex')]));
    if (process.env.UPDATE_GOLDEN === '1') writeFileSync(FIXTURE, `${JSON.stringify(got, null, 2)}\n`);
    assert.deepEqual(got, JSON.parse(readFileSync(FIXTURE, 'utf8')));
  });

  test('ipip over IPv4: the outer header field by field (hand-written)', () => {
    const inner = ipv4Syn({ tos: 0x2b, ttl: 63 });
    const p = encapsulate(inner, { type: 'ipip', src: '198.19.0.1', dst: '198.19.0.11', id: 0xbeef });
    const expect = Buffer.from(
      [
        '45', // v4, ihl 5
        '2a', // DSCP 0x28 copied; ECN CE (3) becomes ECT(0) (2)
        (20 + inner.length).toString(16).padStart(4, '0'),
        'beef', // id
        '4000', // DF copied from the inner packet
        '3f', // TTL copied
        '04', // IPIP
        'xxxx', // checksum, below
        'c6130001', // 198.19.0.1
        'c613000b', // 198.19.0.11
      ]
        .join('')
        .replace('xxxx', '0000'),
      'hex',
    );
    assert.deepEqual(p.subarray(0, 10), expect.subarray(0, 10));
    assert.deepEqual(p.subarray(12, 20), expect.subarray(12, 20));
    assert.equal(onesSum(p.subarray(0, 20)), 0xffff, 'header checksum verifies');
    assert.deepEqual(p.subarray(20), inner, 'the inner packet is unchanged');
  });

  test('DF: copied from IPv4 (only with pmtu_disc), never set for IPv6 inner; TTL from the hop limit', () => {
    const o = { type: 'ipip' as const, src: '198.19.0.1', dst: '198.19.0.11' };
    assert.equal(encapsulate(ipv4Syn({ df: false }), o).readUInt16BE(6), 0);
    assert.equal(encapsulate(ipv4Syn({ df: true }), o).readUInt16BE(6), 0x4000);
    assert.equal(encapsulate(ipv4Syn({ df: true }), { ...o, pmtuDisc: false }).readUInt16BE(6), 0);
    const v6 = encapsulate(ipv6Syn({ hops: 57, tc: 0xb9 }), o);
    assert.equal(v6.readUInt16BE(6), 0);
    assert.equal(v6[8], 57);
    assert.equal(v6[9], 41, 'IPv6 in IPv4: protocol 41');
    assert.equal(v6[1], 0xb9, 'ECT(1) is copied');
    assert.deepEqual(
      [0, 1, 2, 3].map((e) => encapDsfield(0xb8 | e)),
      [0xb8, 0xb9, 0xba, 0xba],
    );
  });

  test('IPv6 outer: traffic class, flow label 0, hop limit, payload length, next header', () => {
    const inner = ipv4Syn({ tos: 0x2b, ttl: 63 });
    const p = encapsulate(inner, { type: 'ipip', src: '2001:db8:19::1', dst: '2001:db8:19::11' });
    assert.equal(p.readUInt32BE(0), ((6 << 28) | (0x2a << 20)) >>> 0);
    assert.equal(p.readUInt16BE(4), inner.length);
    assert.equal(p[6], 4);
    assert.equal(p[7], 63);
    assert.equal(p.subarray(8, 24).toString('hex'), '20010db8001900000000000000000001');
    assert.deepEqual(p.subarray(40), inner);
  });

  test('GUE: UDP to the tunnel port, 4-byte header, checksum 0 with nocsum and valid with csum', () => {
    const inner = ipv4Syn();
    const base = { type: 'gue' as const, port: 6080, sport: 49152, src: '198.19.0.1', dst: '198.19.0.11' };
    const no = encapsulate(inner, { ...base, csum: 'nocsum' });
    assert.equal(no[9], 17);
    assert.equal(
      no.subarray(20, 32).toString('hex'),
      ['c000', '17c0', (8 + 4 + inner.length).toString(16).padStart(4, '0'), '0000', '00', '04', '0000'].join(''),
    );
    const yes = encapsulate(inner, { ...base, csum: 'csum' });
    assert.notEqual(yes.readUInt16BE(26), 0);
    const d = decapsulate(yes, 6080);
    assert.deepEqual(d.gue, { hlen: 0, proto: 4, flags: 0 });
    assert.deepEqual(d.inner, inner);
    // remcsum with a complete inner checksum: no option (the kernel adds it only for CHECKSUM_PARTIAL), UDP checksum on.
    const rem = encapsulate(inner, { ...base, csum: 'remcsum' });
    assert.deepEqual(rem, yes);
    // A corrupted byte is caught by the UDP checksum.
    const bad = Buffer.from(yes);
    bad[bad.length - 1]! ^= 1;
    assert.throws(() => decapsulate(bad), /UDP checksum is wrong/);
  });

  test('GUE remote checksum offload: private flags and start/offset of the partial inner checksum', () => {
    const inner = ipv6Syn({ partial: true });
    const p = encapsulate(inner, {
      type: 'gue',
      port: 6080,
      sport: 1,
      src: '198.19.0.1',
      dst: '198.19.0.11',
      csum: 'remcsum',
      partial: { start: 40, offset: 16 },
    });
    // hlen 2 words; proto 41; flags PRIV; private flags REMCSUM; start 40 (the TCP header), 56 (its checksum field).
    assert.equal(p.subarray(28, 40).toString('hex'), '02290001' + '80000000' + '0028' + '0038');
    const d = decapsulate(p);
    assert.deepEqual(d.gue?.remcsum, { start: 40, offset: 16 });
    assert.deepEqual(d.inner, inner, 'the inner checksum stays partial for the receiver');
  });

  test('GRE: 4-byte header without checksum; 8 bytes with a valid checksum', () => {
    const inner = ipv4Syn();
    const o = { type: 'gre' as const, src: '198.19.0.1', dst: '198.19.0.11' };
    const no = encapsulate(inner, { ...o, csum: 'nocsum' });
    assert.equal(no[9], 47);
    assert.equal(no.subarray(20, 24).toString('hex'), '00000800');
    assert.deepEqual(no.subarray(24), inner);
    const yes = encapsulate(inner, { ...o, csum: 'csum' });
    assert.equal(yes.readUInt16BE(20), 0x8000);
    assert.equal(yes.readUInt16BE(22), 0x0800);
    assert.equal(onesSum(yes.subarray(20)), 0xffff);
    assert.equal(yes.readUInt16BE(26), 0, 'reserved1');
    assert.deepEqual(decapsulate(yes).inner, inner);
    assert.equal(encapsulate(ipv6Syn(), { ...o, csum: 'nocsum' }).readUInt16BE(22), 0x86dd);
  });

  test('every golden decapsulates back to its inner packet', () => {
    for (const c of tunnelCases()) {
      const d = decapsulate(encapsulate(c.inner, c.opts));
      assert.equal(d.type, c.opts.type, c.name);
      assert.deepEqual(d.inner, c.inner, c.name);
    }
  });
});

describe('kernel support for tunnels', () => {
  const fake = (present: string[]): ModuleProbe => ({
    exists: (p) => present.some((m) => p === `/sys/module/${m}`),
    read: () => null,
    modprobeDryRun: () => null,
    release: '6.1.0-test',
  });

  test('the modules each type needs, and a refusal naming exactly the missing ones', () => {
    assert.deepEqual(missingTunnelModules('ipip', 4, fake(['ipip'])), []);
    assert.deepEqual(
      missingTunnelModules('gue', 4, fake(['ipip'])).map((m) => m.name),
      ['fou'],
    );
    assert.deepEqual(
      missingTunnelModules('gre', 6, fake([])).map((m) => m.name),
      ['ip6_gre'],
    );
    assert.equal(tunnelRefusal('ipip', 4, fake(['ipip'])), null);
    const msg = tunnelRefusal('gue', 4, fake([]))!;
    assert.match(msg, /^tunnel type gue \(IPv4\) needs the kernel modules fou, ipip, which this kernel \(6\.1\.0-test\) does not have/);
    assert.match(
      msg,
      /\/sys\/module\/fou: absent; \/proc\/modules: not readable; \/lib\/modules\/6\.1\.0-test: absent; modprobe: not installed/,
    );
  });

  test('other sources count: /proc/modules, modules.builtin, modprobe -n', () => {
    const base = fake([]);
    assert.equal(
      findModule('ipip', { ...base, read: (p) => (p === '/proc/modules' ? 'ipip 32768 0 - Live 0x0\n' : null) }).how,
      '/proc/modules',
    );
    assert.equal(
      findModule('ip_gre', { ...base, read: (p) => (p.endsWith('modules.builtin') ? 'kernel/net/ipv4/ip_gre.ko\n' : null) }).how,
      'modules.builtin',
    );
    assert.equal(findModule('fou', { ...base, modprobeDryRun: () => true }).how, 'modprobe -n fou');
  });

  test('this host: -i is refused naming the missing module', (t) => {
    const m = findModule('ipip', hostProbe);
    if (m.present) {
      t.skip(`this kernel has ipip (${m.how})`);
      return;
    }
    assert.match(tunnelRefusal('ipip', 4)!, /needs the kernel module ipip, which this kernel/);
    assert.match(tunnelRefusal('gre', 4)!, /ip_gre/);
  });
});
