import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { addrFold, canonicalAddr, compareAddr, familyOf, formatAddrPort, maskAddr, unmapAddr } from '../../src/core/addr.js';

test('canonical forms of IPv4 and IPv6 (RFC 5952)', () => {
  assert.equal(canonicalAddr('10.0.0.1'), '10.0.0.1');
  assert.equal(canonicalAddr('2001:DB8:0:0:0:0:0:1'), '2001:db8::1');
  assert.equal(canonicalAddr('2001:db8:0:0:1:0:0:1'), '2001:db8::1:0:0:1');
  assert.equal(canonicalAddr('::'), '::');
  assert.equal(canonicalAddr('::ffff:1.2.3.4'), '::ffff:1.2.3.4');
  assert.equal(canonicalAddr('::FFFF:0102:0304'), '::ffff:1.2.3.4');
  assert.equal(canonicalAddr('fe80:0:0:0:0:0:0:0'), 'fe80::');
  for (const bad of ['256.1.1.1', '1.2.3', '1.2.3.4.5', '01.2.3.4x', ':::', '1::2::3', 'g::1', '', 'localhost', '1:2:3:4:5:6:7:8:9']) {
    assert.equal(canonicalAddr(bad), null, bad);
  }
  assert.equal(familyOf('::1'), 6);
  assert.equal(familyOf('127.0.0.1'), 4);
  assert.equal(unmapAddr('::ffff:127.0.0.1'), '127.0.0.1');
  assert.equal(unmapAddr('::1'), '::1');
});

test('address fold is ntohl for IPv4 and the XOR of words for IPv6', () => {
  assert.equal(addrFold('1.2.3.4'), 0x01020304);
  assert.equal(addrFold('255.255.255.255'), 0xffffffff);
  assert.equal(addrFold('2001:db8::1'), (0x20010db8 ^ 0 ^ 0 ^ 1) >>> 0);
});

test('persistence masks group clients as the kernel does', () => {
  assert.equal(maskAddr('192.168.7.42', 4, 0xffffff00), '192.168.7.0');
  assert.equal(maskAddr('192.168.7.42', 4, 0xffffffff), '192.168.7.42');
  assert.equal(maskAddr('2001:db8:1:2::5', 6, 48), '2001:db8:1::');
  assert.equal(maskAddr('2001:db8:1:2::5', 6, 128), '2001:db8:1:2::5');
  assert.equal(maskAddr('2001:db8:ffff::', 6, 36), '2001:db8:f000::');
});

test('sort order: IPv4 before IPv6, numeric within a family', () => {
  const xs = ['10.0.0.10', '::1', '10.0.0.9', '2001:db8::1', '9.255.255.255'];
  xs.sort(compareAddr);
  assert.deepEqual(xs, ['9.255.255.255', '10.0.0.9', '10.0.0.10', '::1', '2001:db8::1']);
  assert.equal(formatAddrPort('::1', 80), '[::1]:80');
});
