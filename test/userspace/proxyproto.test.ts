/**
 * The PROXY protocol encoder, byte for byte against haproxy's doc/proxy-protocol.txt:
 * v1 lines (TCP4, TCP6, UNKNOWN, the 107-byte bound) and v2 blocks (signature, version and
 * command byte, family/transport byte, length, addresses and ports in network order), for
 * TCP and UDP; then the decoder on the same bytes, partial input and malformed headers.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decodeProxyHeader, encodeProxyHeader, encodeV1, encodeV2, V1_MAX_LENGTH, V2_SIGNATURE } from '../../src/net/proxyproto.js';

const hex = (b: Buffer) => b.toString('hex');

describe('PROXY protocol v1', () => {
  test('TCP4 is one text line: PROXY TCP4 src dst sport dport CRLF', () => {
    const b = encodeV1({ protocol: 'tcp', srcAddr: '198.18.0.10', srcPort: 40000, dstAddr: '198.18.0.1', dstPort: 80 });
    assert.equal(b.toString('latin1'), 'PROXY TCP4 198.18.0.10 198.18.0.1 40000 80\r\n');
  });

  test('TCP6 uses the compressed text form of both addresses', () => {
    const b = encodeV1({ protocol: 'tcp', srcAddr: '2001:db8::10', srcPort: 1, dstAddr: '2001:db8::1', dstPort: 443 });
    assert.equal(b.toString('latin1'), 'PROXY TCP6 2001:db8::10 2001:db8::1 1 443\r\n');
  });

  test('families that differ give PROXY UNKNOWN', () => {
    const b = encodeV1({ protocol: 'tcp', srcAddr: '198.18.0.10', srcPort: 1, dstAddr: '2001:db8::1', dstPort: 80 });
    assert.equal(b.toString('latin1'), 'PROXY UNKNOWN\r\n');
  });

  test('the longest possible line stays within 107 bytes', () => {
    const a = 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff';
    const b = encodeV1({ protocol: 'tcp', srcAddr: a, srcPort: 65535, dstAddr: a, dstPort: 65535 });
    assert.equal(b.length, 104);
    assert.ok(b.length <= V1_MAX_LENGTH);
  });

  test('v1 refuses UDP and bad ports', () => {
    assert.throws(() => encodeV1({ protocol: 'udp', srcAddr: '1.2.3.4', srcPort: 1, dstAddr: '1.2.3.5', dstPort: 53 }), /TCP only/);
    assert.throws(() => encodeV1({ protocol: 'tcp', srcAddr: '1.2.3.4', srcPort: 70000, dstAddr: '1.2.3.5', dstPort: 53 }), /port/);
  });
});

describe('PROXY protocol v2', () => {
  test('the signature is \\r\\n\\r\\n\\0\\r\\nQUIT\\n', () => {
    assert.equal(hex(V2_SIGNATURE), '0d0a0d0a000d0a515549540a');
  });

  test('TCP over IPv4: 0x21 (v2, PROXY), 0x11 (AF_INET, STREAM), length 12, addresses, ports', () => {
    const b = encodeV2({ protocol: 'tcp', srcAddr: '198.18.0.10', srcPort: 40000, dstAddr: '198.18.0.1', dstPort: 80 });
    assert.equal(hex(b), '0d0a0d0a000d0a515549540a' + '21' + '11' + '000c' + 'c612000a' + 'c6120001' + '9c40' + '0050');
  });

  test('UDP over IPv4: family/transport byte 0x12 (DGRAM)', () => {
    const b = encodeV2({ protocol: 'udp', srcAddr: '10.0.0.1', srcPort: 5353, dstAddr: '10.0.0.2', dstPort: 53 });
    assert.equal(hex(b.subarray(12)), '21' + '12' + '000c' + '0a000001' + '0a000002' + '14e9' + '0035');
  });

  test('TCP over IPv6: 0x21, length 36, 16-byte addresses', () => {
    const b = encodeV2({ protocol: 'tcp', srcAddr: '2001:db8::10', srcPort: 1, dstAddr: '::1', dstPort: 443 });
    assert.equal(b.length, 16 + 36);
    assert.equal(
      hex(b.subarray(12)),
      '21' + '21' + '0024' + '20010db8000000000000000000000010' + '00000000000000000000000000000001' + '0001' + '01bb',
    );
  });

  test('UDP over IPv6: family/transport byte 0x22', () => {
    const b = encodeV2({ protocol: 'udp', srcAddr: 'fe80::1', srcPort: 9, dstAddr: 'fe80::2', dstPort: 9 });
    assert.equal(b[13], 0x22);
    assert.equal(b.readUInt16BE(14), 36);
  });

  test('families that differ: \\x00 UNSPEC with no address block', () => {
    const b = encodeV2({ protocol: 'tcp', srcAddr: '198.18.0.10', srcPort: 1, dstAddr: '::1', dstPort: 80 });
    assert.equal(hex(b), '0d0a0d0a000d0a515549540a' + '21' + '00' + '0000');
  });
});

describe('PROXY protocol decoder', () => {
  const cases = [
    { protocol: 'tcp' as const, srcAddr: '198.18.0.10', srcPort: 40000, dstAddr: '198.18.0.1', dstPort: 80 },
    { protocol: 'tcp' as const, srcAddr: '2001:db8::10', srcPort: 65535, dstAddr: '2001:db8::1', dstPort: 0 },
  ];
  for (const v of ['v1', 'v2'] as const) {
    for (const a of cases) {
      test(`${v} ${a.srcAddr}: round trip, and the bytes after the header are left alone`, () => {
        const h = encodeProxyHeader(v, a);
        const d = decodeProxyHeader(Buffer.concat([h, Buffer.from('GET / HTTP/1.1\r\n')]));
        assert.deepEqual(d, { version: v, command: 'proxy', addresses: a, length: h.length });
      });
    }
  }

  test('v2 UDP round trip keeps the transport', () => {
    const a = { protocol: 'udp' as const, srcAddr: '10.1.2.3', srcPort: 7, dstAddr: '10.1.2.4', dstPort: 53 };
    assert.deepEqual(decodeProxyHeader(encodeV2(a))?.addresses, a);
  });

  test('a partial header asks for more bytes', () => {
    const h = encodeV2(cases[0]!);
    for (let n = 1; n < h.length; n++) assert.equal(decodeProxyHeader(h.subarray(0, n)), null, `v2 prefix of ${n} bytes`);
    const l = encodeV1(cases[0]!);
    for (let n = 1; n < l.length; n++) assert.equal(decodeProxyHeader(l.subarray(0, n)), null, `v1 prefix of ${n} bytes`);
  });

  test('UNKNOWN and LOCAL carry no addresses', () => {
    assert.equal(decodeProxyHeader(Buffer.from('PROXY UNKNOWN\r\n'))?.addresses, null);
    const local = Buffer.concat([V2_SIGNATURE, Buffer.from([0x20, 0x00, 0x00, 0x00])]);
    assert.deepEqual(decodeProxyHeader(local), { version: 'v2', command: 'local', addresses: null, length: 16 });
  });

  test('malformed headers are refused', () => {
    assert.throws(() => decodeProxyHeader(Buffer.from('GET / HTTP/1.1\r\n')), /not a PROXY/);
    assert.throws(() => decodeProxyHeader(Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n')), /malformed/);
    assert.throws(() => decodeProxyHeader(Buffer.from('PROXY TCP4 ::1 5.6.7.8 1 2\r\n')), /malformed/);
    assert.throws(() => decodeProxyHeader(Buffer.from(`PROXY ${'x'.repeat(120)}`)), /107/);
    const v3 = Buffer.concat([V2_SIGNATURE, Buffer.from([0x31, 0x11, 0x00, 0x00])]);
    assert.throws(() => decodeProxyHeader(v3), /version 3/);
    const badSig = Buffer.from(V2_SIGNATURE);
    badSig[11] = 0;
    assert.throws(() => decodeProxyHeader(badSig), /signature/);
  });
});
