/**
 * The netlink codecs of the first-packet path, without root: the nf_tables batch that
 * adds the xt NFQUEUE target (checked field by field against the UAPI layouts), the
 * nfnetlink_queue config and verdict messages, and the parsing of a queued packet.
 */
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import {
  encodeAttrs,
  errorCode,
  ipv6String,
  nfnlMessage,
  nfqCommand,
  nfqInfoV3,
  nfqParams,
  nfqueueRuleBatch,
  nfqVerdict,
  parseAttrs,
  parseIpTuple,
  parseMessages,
  parseQueuedPacket,
  NFQNL_CFG_CMD_BIND,
} from '../../src/dataplane/nftables/netlink.js';

const nested = (b: Buffer) => parseAttrs(b);
const str = (b: Buffer | undefined) => b!.subarray(0, b!.indexOf(0)).toString();

describe('netlink: the NFQUEUE rule batch (nf_tables over nfnetlink)', () => {
  const buf = nfqueueRuleBatch('ip6', 'tsvs', 'nfq', { queue: 4242, total: 1, bypass: true }, 100);
  const msgs = parseMessages(buf);

  test('three messages: BATCH_BEGIN (res_id NFTABLES), NEWRULE, BATCH_END, with consecutive sequence numbers', () => {
    assert.equal(msgs.length, 3);
    assert.deepEqual(
      msgs.map((m) => m.type),
      [0x10, (10 << 8) | 6, 0x11],
    );
    assert.deepEqual(
      msgs.map((m) => m.seq),
      [100, 101, 102],
    );
    // nfgenmsg: family, version 0, res_id big endian
    assert.deepEqual([...msgs[0]!.payload.subarray(0, 4)], [0, 0, 0, 10]);
    assert.equal(msgs[1]!.payload[0], 10, 'NFPROTO_IPV6');
    // NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND
    assert.equal(msgs[1]!.flags, 0x1 | 0x4 | 0x400 | 0x800);
    assert.equal(buf.readUInt32LE(0), 20, 'a bare batch header is nlmsghdr + nfgenmsg');
  });

  test('the rule: table, chain, and one "target" expression NFQUEUE rev 3 with xt_NFQ_info_v3', () => {
    const rule = parseAttrs(msgs[1]!.payload, 4);
    assert.equal(str(rule.get(1)), 'tsvs');
    assert.equal(str(rule.get(2)), 'nfq');
    const exprs = rule.get(4)!;
    // NLA_F_NESTED is set on the expressions list: after nfgenmsg, "tsvs\0" (4+5 -> 12), "nfq\0" (4+4 -> 8).
    assert.equal(msgs[1]!.payload.readUInt16LE(4 + 12 + 8 + 2), 4 | 0x8000);
    const elem = nested(exprs).get(1)!;
    const e = nested(elem);
    assert.equal(str(e.get(1)), 'target');
    const t = nested(e.get(2)!);
    assert.equal(str(t.get(1)), 'NFQUEUE');
    assert.equal(t.get(2)!.readUInt32BE(0), 3);
    assert.deepEqual(
      [...t.get(3)!],
      [0x92, 0x10, 1, 0, 1, 0, 0, 0],
      'queuenum 4242, queues_total 1, flags BYPASS (host order), padded to 8',
    );
  });

  test('nested attributes carry NLA_F_NESTED, lengths are 4-aligned', () => {
    const b = encodeAttrs([{ type: 4, nested: [{ type: 1, data: Buffer.from([1, 2, 3]) }] }]);
    assert.equal(b.readUInt16LE(2), 4 | 0x8000);
    assert.equal(b.readUInt16LE(0), 12, 'the nest covers its padded contents');
    assert.equal(b.readUInt16LE(4), 7, 'an attribute length excludes its padding');
    assert.equal(b.length, 12);
    assert.equal(nfqInfoV3({ queue: 1, total: 1, bypass: false }).readUInt16LE(4), 0);
  });
});

describe('netlink: nfnetlink_queue', () => {
  test('bind: NFQNL_MSG_CONFIG for the queue (res_id), command BIND, acked', () => {
    const [m] = parseMessages(nfqCommand(7, NFQNL_CFG_CMD_BIND, 5));
    assert.equal(m!.type, (3 << 8) | 2);
    assert.equal(m!.flags, 0x1 | 0x4);
    assert.equal(m!.payload.readUInt16BE(2), 7);
    assert.deepEqual([...parseAttrs(m!.payload, 4).get(1)!], [1, 0, 0, 0]);
  });

  test('params: copy 128 bytes of the packet, fail-open flag with its mask', () => {
    const [m] = parseMessages(nfqParams(7, 128, 4096, 6));
    const a = parseAttrs(m!.payload, 4);
    assert.deepEqual([...a.get(2)!], [0, 0, 0, 128, 2]);
    assert.equal(a.get(3)!.readUInt32BE(0), 4096);
    assert.equal(a.get(5)!.readUInt32BE(0), 1);
    assert.equal(a.get(4)!.readUInt32BE(0), 1);
  });

  test('verdict: ACCEPT for the packet id, with the mark; without one, no NFQA_MARK', () => {
    const [m] = parseMessages(nfqVerdict(7, 0x01020304, 0x80000000, 9));
    assert.equal(m!.type, (3 << 8) | 1);
    const a = parseAttrs(m!.payload, 4);
    assert.deepEqual([...a.get(2)!], [0, 0, 0, 1, 1, 2, 3, 4]);
    assert.equal(a.get(3)!.readUInt32BE(0), 0x80000000);
    const [n] = parseMessages(nfqVerdict(7, 1, null, 10));
    assert.equal(parseAttrs(n!.payload, 4).has(3), false);
  });

  function packetMsg(id: number, payload: Buffer): Buffer {
    const hdr = Buffer.alloc(7);
    hdr.writeUInt32BE(id, 0);
    hdr.writeUInt16BE(0x0800, 4);
    return nfnlMessage(3, 0, 0, 0, 2, 7, [
      { type: 1, data: hdr },
      { type: 3, data: Buffer.from([0, 0, 0, 0]) },
      { type: 10, data: payload },
    ]);
  }

  test('a queued IPv4 TCP SYN gives its id and tuple (IHL honoured)', () => {
    const ip = Buffer.alloc(24 + 20);
    ip[0] = 0x46; // IHL 6: 4 bytes of options
    ip[9] = 6;
    ip.set([198, 18, 0, 10], 12);
    ip.set([198, 18, 0, 1], 16);
    ip.writeUInt16BE(40000, 24);
    ip.writeUInt16BE(80, 26);
    ip[24 + 13] = 0x02; // SYN
    const msgs = parseMessages(Buffer.concat([packetMsg(42, ip), packetMsg(43, ip)]));
    assert.equal(msgs.length, 2);
    assert.deepEqual(parseQueuedPacket(msgs[0]!), {
      id: 42,
      af: 4,
      protocol: 'tcp',
      caddr: '198.18.0.10',
      cport: 40000,
      vaddr: '198.18.0.1',
      vport: 80,
      syn: true,
    });
    // A mid-stream segment (ACK only) of a flow conntrack does not know: not a SYN.
    ip[24 + 13] = 0x10;
    assert.equal((parseQueuedPacket(parseMessages(packetMsg(44, ip))[0]!) as { syn: boolean }).syn, false);
  });

  test('IPv6 UDP; ICMP and truncated packets give only the id (accepted as they are)', () => {
    const ip6 = Buffer.alloc(48);
    ip6[0] = 0x60;
    ip6[6] = 17;
    Buffer.from('20010002000000180000000000000010', 'hex').copy(ip6, 8);
    Buffer.from('20010002000000180000000000000001', 'hex').copy(ip6, 24);
    ip6.writeUInt16BE(5353, 40);
    ip6.writeUInt16BE(53, 42);
    assert.deepEqual(parseIpTuple(ip6), {
      af: 6,
      protocol: 'udp',
      caddr: '2001:2:0:18::10',
      cport: 5353,
      vaddr: '2001:2:0:18::1',
      vport: 53,
      syn: true,
    });
    const icmp = Buffer.alloc(28);
    icmp[0] = 0x45;
    icmp[9] = 1;
    assert.deepEqual(parseQueuedPacket(parseMessages(packetMsg(5, icmp))[0]!), { id: 5 });
    assert.equal(parseIpTuple(Buffer.from([0x45, 0, 0])), null);
  });

  test('IPv6 text is RFC 5952 (as conntrack and the core print it)', () => {
    const h = (s: string) => ipv6String(Buffer.from(s, 'hex'));
    assert.equal(h('00000000000000000000000000000000'), '::');
    assert.equal(h('00000000000000000000000000000001'), '::1');
    assert.equal(h('20010db8000000000000000000000001'), '2001:db8::1');
    assert.equal(h('20010db8000000010001000100010001'), '2001:db8:0:1:1:1:1:1', 'a single zero group is not compressed');
    assert.equal(h('00010000000000020000000000000003'), '1:0:0:2::3', 'the longest run');
    assert.equal(h('00010000000000020000000000030004'), '1::2:0:0:3:4', 'the first of equal runs');
    assert.equal(h('fe800000000000000000000000000000'), 'fe80::');
  });

  test('an NLMSG_ERROR carries a negative errno; 0 is the ACK', () => {
    const b = Buffer.alloc(36);
    b.writeUInt32LE(36, 0);
    b.writeUInt16LE(2, 4);
    b.writeInt32LE(-16, 16);
    assert.equal(errorCode(parseMessages(b)[0]!), 16);
    b.writeInt32LE(0, 16);
    assert.equal(errorCode(parseMessages(b)[0]!), 0);
    // A truncated trailing message is not returned.
    assert.equal(parseMessages(b.subarray(0, 30)).length, 0);
  });
});
