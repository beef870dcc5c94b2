/**
 * The in-process host operations of the failover path (src/ha/rtnl.ts), byte for byte:
 * RTM_NEWADDR / RTM_DELADDR (linux/if_addr.h, rtnetlink.h) and the gratuitous ARP frame
 * (RFC 826 request, sender = target = the VIP, as `arping -U` sends it). The privileged
 * tests in failover.test.ts run them for real (tsvsd adds the VIPs and announces them so).
 */
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { addrMessage, garpFrame } from '../../src/ha/rtnl.js';

describe('rtnetlink and gratuitous ARP encoding', () => {
  test('RTM_NEWADDR 10.0.0.1/24 on ifindex 5: header, ifaddrmsg, IFA_LOCAL, IFA_ADDRESS', () => {
    const m = addrMessage('add', 5, '10.0.0.1', 24, 7);
    assert.equal(
      m.toString('hex'),
      [
        '28000000',
        '1400',
        '0506',
        '07000000',
        '00000000', // len 40, RTM_NEWADDR, REQUEST|ACK|EXCL|CREATE, seq 7, pid 0
        '02',
        '18',
        '00',
        '00',
        '05000000', // AF_INET, /24, flags, scope universe, ifindex 5
        '0800',
        '0200',
        '0a000001', // IFA_LOCAL
        '0800',
        '0100',
        '0a000001', // IFA_ADDRESS
      ].join(''),
    );
  });
  test('RTM_DELADDR has no CREATE/EXCL', () => {
    const m = addrMessage('del', 5, '10.0.0.1', 32, 8);
    assert.equal(m.readUInt16LE(4), 21);
    assert.equal(m.readUInt16LE(6), 0x0005);
    assert.equal(m[17], 32);
  });
  test('gratuitous ARP: broadcast, ARP request, sender and target the VIP', () => {
    const f = garpFrame('02:00:00:00:00:0a', '198.18.0.1');
    assert.equal(
      f.toString('hex'),
      [
        'ffffffffffff',
        '02000000000a',
        '0806', // Ethernet: broadcast, from us, ARP
        '0001',
        '0800',
        '06',
        '04',
        '0001', // Ethernet/IPv4, request
        '02000000000a',
        'c6120001', // sender MAC, sender IP
        'ffffffffffff',
        'c6120001', // target MAC (as arping -U), target IP = sender IP
      ].join(''),
    );
    assert.throws(() => garpFrame('02:00', '198.18.0.1'), /not a MAC/);
  });
});
