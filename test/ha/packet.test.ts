/**
 * VRRPv3 packets: round trips, the checksum with its pseudo-header, and a corpus of
 * malformed packets, each rejected with its own reason (RFC 5798 7.1 as keepalived
 * applies it).
 */
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import {
  checkForInstance,
  decodeIpv4Packet,
  decodeVrrp,
  DROP_REASONS,
  encodeAdvert,
  encodeIpv4Packet,
  vrrpChecksum,
  VRRP_GROUP4,
  type DropReason,
  type InstanceView,
} from '../../src/ha/packet.js';

const SRC = '198.18.0.2';
const ADV = { vrid: 51, priority: 150, maxAdverIntCs: 20, addrs: ['198.18.0.1', '198.19.0.1'] };
const INST: InstanceView = { vrid: 51, family: 4, vips: ['198.19.0.1', '198.18.0.1'], own: ['198.18.0.3'] };

/** A good multicast packet, then `edit` applied to it; `fix` recomputes the IP length and the VRRP checksum. */
function pkt(edit: (b: Buffer) => unknown = () => undefined, fix = false, adv = ADV, dst = VRRP_GROUP4): Buffer {
  let b = encodeIpv4Packet(adv, SRC, dst, 7);
  b = (edit(b) as Buffer | undefined) ?? b;
  if (fix) {
    b.writeUInt16BE(b.length, 2);
    const v = b.subarray(20);
    v.writeUInt16BE(0, 6);
    v.writeUInt16BE(vrrpChecksum(v, SRC, dst), 6);
  }
  return b;
}

function reasonOf(b: Buffer): DropReason | 'ok' {
  const r = decodeIpv4Packet(b);
  if (!r.ok) return r.reason;
  const c = checkForInstance(r.advert, INST);
  return c.ok ? 'ok' : c.reason;
}

describe('VRRPv3 encoding', () => {
  test('fields land where RFC 5798 5.2 puts them', () => {
    const v = encodeAdvert(ADV, SRC, VRRP_GROUP4);
    assert.equal(v.length, 8 + 2 * 4);
    assert.equal(v[0], 0x31); // version 3, type 1
    assert.deepEqual([v[1], v[2], v[3]], [51, 150, 2]);
    assert.equal(v.readUInt16BE(4), 20); // centiseconds, rsvd bits zero
    assert.deepEqual([...v.subarray(8, 12)], [198, 18, 0, 1]);
  });
  test('the checksum includes the pseudo-header: it differs by destination and verifies to 0', () => {
    const a = encodeAdvert(ADV, SRC, VRRP_GROUP4);
    const b = encodeAdvert(ADV, SRC, '198.18.0.3');
    assert.notEqual(a.readUInt16BE(6), b.readUInt16BE(6));
    assert.equal(vrrpChecksum(a, SRC, VRRP_GROUP4), 0);
    assert.equal(vrrpChecksum(b, SRC, '198.18.0.3'), 0);
    assert.notEqual(vrrpChecksum(a, '198.18.0.9', VRRP_GROUP4), 0);
  });
  test('a hand-computed vector: one address, priority 100, 1 s', () => {
    // pseudo: c612 0002 e000 0012 0070 000c; vrrp: 3101 6401 0064 (0000) c612 0001
    // sum = 0x3021b -> fold 021e -> one's complement fde1
    const v = encodeAdvert({ vrid: 1, priority: 100, maxAdverIntCs: 100, addrs: ['198.18.0.1'] }, SRC, VRRP_GROUP4);
    assert.equal(v.readUInt16BE(6).toString(16).padStart(4, '0'), 'fde1');
  });
  test('IPv4 packet: TTL 255, protocol 112, valid header checksum; decode gives the advert back', () => {
    const b = encodeIpv4Packet(ADV, SRC, VRRP_GROUP4, 9);
    assert.deepEqual([b[8], b[9], b.readUInt16BE(2)], [255, 112, 36]);
    let s = 0;
    for (let i = 0; i < 20; i += 2) s += b.readUInt16BE(i);
    while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
    assert.equal(s, 0xffff);
    const r = decodeIpv4Packet(b);
    assert.ok(r.ok);
    assert.deepEqual(
      {
        vrid: r.advert.vrid,
        priority: r.advert.priority,
        int: r.advert.maxAdverIntCs,
        addrs: r.advert.addrs,
        src: r.advert.src,
        ttl: r.advert.ttl,
        old: r.advert.oldUnicastChecksum,
      },
      { vrid: 51, priority: 150, int: 20, addrs: ADV.addrs, src: SRC, ttl: 255, old: false },
    );
    assert.equal(reasonOf(b), 'ok');
  });
  test('IPv6 adverts encode and decode (hop limit supplied by the caller)', () => {
    const src = 'fe80::1';
    const v = encodeAdvert({ vrid: 7, priority: 100, maxAdverIntCs: 100, addrs: ['2001:db8::1'] }, src, 'ff02::12');
    assert.equal(v.length, 8 + 16);
    const r = decodeVrrp(v, 6, src, 'ff02::12', 255);
    assert.ok(r.ok && r.advert.addrs[0] === '2001:db8::1');
    const bad = decodeVrrp(v, 6, src, 'ff02::12', 64);
    assert.ok(!bad.ok && bad.reason === 'ttl');
  });
  test('out-of-range values are refused at encode time', () => {
    assert.throws(() => encodeAdvert({ ...ADV, vrid: 0 }, SRC, VRRP_GROUP4), /VRID/);
    assert.throws(() => encodeAdvert({ ...ADV, maxAdverIntCs: 4096 }, SRC, VRRP_GROUP4), /interval/);
    assert.throws(() => encodeAdvert({ ...ADV, addrs: ['2001:db8::1'] }, SRC, VRRP_GROUP4), /family/);
  });
});

describe('what is accepted although odd (as keepalived does)', () => {
  test('reserved bits set are ignored (RFC: ignored on reception)', () => {
    assert.equal(reasonOf(pkt((b) => void (b[24] = b[24]! | 0xf0), true)), 'ok');
  });
  test('a unicast advert with TTL 64 is accepted (keepalived checks TTL only on multicast)', () => {
    const b = encodeIpv4Packet(ADV, SRC, '198.18.0.3', 1, 64);
    assert.equal(reasonOf(b), 'ok');
  });
  test('a unicast advert with keepalived <= 1.3.6 checksum (group in the pseudo-header) is accepted and flagged', () => {
    const b = encodeIpv4Packet(ADV, SRC, '198.18.0.3', 1);
    const v = b.subarray(20);
    v.writeUInt16BE(0, 6);
    v.writeUInt16BE(vrrpChecksum(v, SRC, VRRP_GROUP4), 6);
    const r = decodeIpv4Packet(b);
    assert.ok(r.ok && r.advert.oldUnicastChecksum);
  });
  test('an advert interval different from ours is not a drop (v3: the backup learns it)', () => {
    assert.equal(reasonOf(pkt(undefined, false, { ...ADV, maxAdverIntCs: 300 })), 'ok');
  });
});

describe('malformed packet corpus: every one rejected with the right reason', () => {
  const corpus: Array<[string, Buffer, DropReason]> = [
    ['empty', Buffer.alloc(0), 'short'],
    ['IP header only', pkt((b) => b.subarray(0, 20)), 'short'],
    ['IPv6 version nibble', pkt((b) => void (b[0] = 0x65)), 'ip-header'],
    ['IHL 4 (16 bytes)', pkt((b) => void (b[0] = 0x44)), 'ip-header'],
    ['IHL 15 beyond the packet', pkt((b) => void (b[0] = 0x4f)), 'ip-header'],
    ['protocol TCP', pkt((b) => void (b[9] = 6)), 'protocol'],
    ['protocol 51 (AH)', pkt((b) => void (b[9] = 51)), 'protocol'],
    ['IP total length too long', pkt((b) => void b.writeUInt16BE(b.length + 4, 2)), 'ip-length'],
    ['IP total length too short', pkt((b) => void b.writeUInt16BE(b.length - 4, 2)), 'ip-length'],
    ['TTL 254 (one router hop)', pkt((b) => void (b[8] = 254)), 'ttl'],
    ['TTL 1', pkt((b) => void (b[8] = 1)), 'ttl'],
    ['TTL 0', pkt((b) => void (b[8] = 0)), 'ttl'],
    [
      'VRRP header cut to 7 bytes',
      pkt((b) => {
        const c = Buffer.from(b.subarray(0, 27));
        c.writeUInt16BE(27, 2);
        return c;
      }),
      'short',
    ],
    ['version 2', pkt((b) => void (b[20] = 0x21), true), 'version'],
    ['version 0', pkt((b) => void (b[20] = 0x01), true), 'version'],
    ['version 15', pkt((b) => void (b[20] = 0xf1), true), 'version'],
    ['type 0', pkt((b) => void (b[20] = 0x30), true), 'type'],
    ['type 2', pkt((b) => void (b[20] = 0x32), true), 'type'],
    ['count 3 with 2 addresses', pkt((b) => void (b[23] = 3), true), 'length'],
    ['count 0 with 2 addresses', pkt((b) => void (b[23] = 0), true), 'length'],
    ['trailing garbage', pkt((b) => Buffer.concat([b, Buffer.from([1, 2, 3, 4])]), true), 'length'],
    ['half an address', pkt((b) => b.subarray(0, b.length - 2), true), 'length'],
    ['checksum off by one', pkt((b) => void b.writeUInt16BE((b.readUInt16BE(26) + 1) & 0xffff, 26)), 'checksum'],
    ['checksum zero', pkt((b) => void b.writeUInt16BE(0, 26)), 'checksum'],
    ['priority changed after checksum', pkt((b) => void (b[22] = 255)), 'checksum'],
    ['address changed after checksum', pkt((b) => void (b[31] = 9)), 'checksum'],
    [
      'VRRPv2-style checksum (no pseudo-header)',
      pkt((b) => {
        const v = b.subarray(20);
        v.writeUInt16BE(0, 6);
        let s = 0;
        for (let i = 0; i < v.length; i += 2) s += v.readUInt16BE(i);
        while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
        v.writeUInt16BE(~s & 0xffff, 6);
      }),
      'checksum',
    ],
    ['source spoofed after checksum', pkt((b) => void (b[15] = 99)), 'checksum'],
    ['Max Adver Int 0', pkt((b) => void b.writeUInt16BE(0, 24), true), 'interval'],
    ['Max Adver Int 0 with reserved bits', pkt((b) => void b.writeUInt16BE(0xf000, 24), true), 'interval'],
    ['VRID 52 (not ours)', pkt(undefined, false, { ...ADV, vrid: 52 }), 'vrid'],
    ['one VIP missing', pkt(undefined, false, { ...ADV, addrs: ['198.18.0.1'] }), 'addr-count'],
    ['one VIP extra', pkt(undefined, false, { ...ADV, addrs: [...ADV.addrs, '198.18.0.7'] }), 'addr-count'],
    ['a foreign VIP', pkt(undefined, false, { ...ADV, addrs: ['198.18.0.1', '198.19.0.9'] }), 'addr-list'],
    ['our own advert looped back', (() => encodeIpv4Packet(ADV, '198.18.0.3', VRRP_GROUP4))(), 'own'],
  ];
  test('the corpus covers every reason a packet can carry', () => {
    const covered = new Set(corpus.map((c) => c[2]));
    for (const r of DROP_REASONS) if (r !== 'family') assert.ok(covered.has(r), `no corpus packet for "${r}"`);
    assert.ok(corpus.length >= 30);
  });
  for (const [name, b, reason] of corpus) {
    test(`${name} -> ${reason}`, () => {
      const r = decodeIpv4Packet(b);
      const got = r.ok ? checkForInstance(r.advert, INST) : r;
      assert.ok(!got.ok, `${name} was accepted`);
      assert.equal(got.reason, reason, got.detail);
      assert.ok(got.detail.length > 0);
    });
  }
  test('an IPv6 advert for an IPv4 instance -> family', () => {
    const v = encodeAdvert({ vrid: 51, priority: 100, maxAdverIntCs: 100, addrs: ['2001:db8::1', '2001:db8::2'] }, 'fe80::1', 'ff02::12');
    const r = decodeVrrp(v, 6, 'fe80::1', 'ff02::12', 255);
    assert.ok(r.ok);
    const c = checkForInstance(r.advert, INST);
    assert.ok(!c.ok && c.reason === 'family');
  });
});
