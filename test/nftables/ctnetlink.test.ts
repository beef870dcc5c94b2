/**
 * The netlink read-back codecs, without root: ctnetlink requests and conntrack messages
 * (dump replies, events), the mark-only socket filter (run on a small classic-BPF
 * interpreter), and the nf_tables object and set element messages. The messages are built
 * here byte by byte from the kernel's layouts (nlattr: u16 length, u16 type, payload
 * padded to 4; values big endian), with the UAPI numbering written out as literals
 * (nfnetlink_conntrack.h, nf_tables.h), independently of the encoder under test.
 */
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import {
  ctDeleteTupleRequest,
  ctDumpRequest,
  ctFlushMarkRequest,
  ctMessageMark,
  ctStatsRequest,
  parseCtEntry,
  parseCtEvent,
} from '../../src/dataplane/nftables/ctnetlink.js';
import { markedOnlyProgram } from '../../src/dataplane/nftables/ct-filter.js';
import { objDumpRequest, objGetRequest, parseCounterObj, parseSetElems, setElemDumpRequest } from '../../src/dataplane/nftables/nftread.js';

// ------------------------------------------------------------------ byte builders

/** One nlattr: header (length incl. header, type) + payload + padding. */
function nla(type: number, payload: Buffer, nested = false): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt16LE(4 + payload.length, 0);
  h.writeUInt16LE(type | (nested ? 0x8000 : 0), 2);
  return Buffer.concat([h, payload, Buffer.alloc((4 - (payload.length % 4)) % 4)]);
}
const nest = (type: number, ...kids: Buffer[]) => nla(type, Buffer.concat(kids), true);
const be32 = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return b;
};
const be16 = (v: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v);
  return b;
};
const be64 = (v: bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(v);
  return b;
};
const ip4 = (s: string) => Buffer.from(s.split('.').map(Number));
const z = (s: string) => Buffer.from(`${s}\0`);
/** nfgenmsg: family, version 0, res_id 0. */
const nfgen = (family: number) => Buffer.from([family, 0, 0, 0]);
const hex = (b: Buffer) => b.toString('hex');

// nfnetlink_conntrack.h numbering, written out
const CTA = { TUPLE_ORIG: 1, TUPLE_REPLY: 2, PROTOINFO: 4, TIMEOUT: 7, MARK: 8, ID: 12, MARK_MASK: 21 };
const TUPLE = { IP: 1, PROTO: 2 };
const IP = { V4_SRC: 1, V4_DST: 2, V6_SRC: 3, V6_DST: 4 };
const PROTO = { NUM: 1, SRC_PORT: 2, DST_PORT: 3 };

function tuple4(src: string, dst: string, proto: number, sport: number, dport: number): Buffer {
  return Buffer.concat([
    nest(TUPLE.IP, nla(IP.V4_SRC, ip4(src)), nla(IP.V4_DST, ip4(dst))),
    nest(TUPLE.PROTO, nla(PROTO.NUM, Buffer.from([proto])), nla(PROTO.SRC_PORT, be16(sport)), nla(PROTO.DST_PORT, be16(dport))),
  ]);
}

/** The attributes ctnetlink_fill_info puts in a TCP entry: tuples, status, timeout, protoinfo, mark, id. */
function tcpEntry(mark: number | null, state = 3): Buffer {
  return Buffer.concat([
    nfgen(2),
    nest(CTA.TUPLE_ORIG, tuple4('198.18.0.10', '198.18.0.1', 6, 39912, 80)),
    nest(CTA.TUPLE_REPLY, tuple4('198.19.0.11', '198.18.0.10', 6, 8080, 39912)),
    nla(3, be32(0x18e)), // CTA_STATUS
    nla(CTA.TIMEOUT, be32(118)),
    nest(CTA.PROTOINFO, nest(1, nla(1, Buffer.from([state])), nla(2, Buffer.from([7])), nla(3, Buffer.from([7])))),
    ...(mark === null ? [] : [nla(CTA.MARK, be32(mark))]),
    nla(CTA.ID, be32(0xdeadbeef)),
  ]);
}

function udp6Entry(mark: number): Buffer {
  const v6 = (s: string) => {
    // 2001:2::10 style only: head groups, then the last group.
    const [h, t] = s.split('::');
    const g = [...h!.split(':').map((x) => parseInt(x, 16))];
    while (g.length < 7) g.push(0);
    g.push(parseInt(t!, 16));
    return Buffer.concat(g.map(be16));
  };
  const t6 = (src: string, dst: string, sp: number, dp: number) =>
    Buffer.concat([
      nest(TUPLE.IP, nla(IP.V6_SRC, v6(src)), nla(IP.V6_DST, v6(dst))),
      nest(TUPLE.PROTO, nla(PROTO.NUM, Buffer.from([17])), nla(PROTO.SRC_PORT, be16(sp)), nla(PROTO.DST_PORT, be16(dp))),
    ]);
  return Buffer.concat([
    nfgen(10),
    nest(CTA.TUPLE_ORIG, t6('2001:2::10', '2001:2::1', 5000, 53)),
    nest(CTA.TUPLE_REPLY, t6('2001:2:1::11', '2001:2::10', 53, 5000)),
    nla(CTA.TIMEOUT, be32(29)),
    nla(CTA.MARK, be32(mark)),
  ]);
}

// ------------------------------------------------------------------ ctnetlink requests

describe('ctnetlink requests', () => {
  test('dump filtered by mark: IPCTNL_MSG_CT_GET (subsys 1, msg 1), NLM_F_REQUEST|NLM_F_DUMP, AF_UNSPEC, CTA_MARK + CTA_MARK_MASK', () => {
    const b = ctDumpRequest(7, { mark: { value: 5, mask: 0x7fffffff } });
    const want = Buffer.concat([
      Buffer.from('24000000' + '0101' + '0103' + '07000000' + '00000000', 'hex'),
      nfgen(0),
      nla(CTA.MARK, be32(5)),
      nla(CTA.MARK_MASK, be32(0x7fffffff)),
    ]);
    assert.equal(hex(b), hex(want));
  });

  test('unfiltered dump of one family: no attributes, nfgenmsg family AF_INET6', () => {
    const b = ctDumpRequest(1, { af: 6 });
    assert.equal(b.length, 20);
    assert.equal(b[16], 10);
  });

  test('flush by mark: IPCTNL_MSG_CT_DELETE (msg 2) acknowledged, version 0 + AF_UNSPEC (both families), exact mark', () => {
    const b = ctFlushMarkRequest(9, { value: 0x1234, mask: 0xffffffff });
    assert.equal(
      hex(b),
      hex(
        Buffer.concat([
          Buffer.from('24000000' + '0201' + '0500' + '09000000' + '00000000', 'hex'),
          nfgen(0),
          nla(CTA.MARK, be32(0x1234)),
          nla(CTA.MARK_MASK, be32(0xffffffff)),
        ]),
      ),
    );
  });

  test('delete one entry by its original tuple', () => {
    const b = ctDeleteTupleRequest(3, { af: 4, protocol: 'tcp', caddr: '198.18.0.10', cport: 39912, vaddr: '198.18.0.1', vport: 80 });
    const body = Buffer.concat([nfgen(2), nest(CTA.TUPLE_ORIG, tuple4('198.18.0.10', '198.18.0.1', 6, 39912, 80))]);
    assert.equal(hex(b.subarray(16)), hex(body));
    assert.equal(b.readUInt16LE(4), 0x0102);
    assert.equal(b.readUInt16LE(6), 0x0005);
    assert.throws(
      () => ctDeleteTupleRequest(3, { af: 4, protocol: 'tcp', caddr: 'nope', cport: 1, vaddr: '198.18.0.1', vport: 80 }),
      /not an IPv4 address: nope/,
    );
  });

  test('the stats probe: IPCTNL_MSG_CT_GET_STATS (msg 5), acknowledged', () => {
    const b = ctStatsRequest(4);
    assert.equal(b.readUInt16LE(4), 0x0105);
    assert.equal(b.readUInt16LE(6), 0x0005);
  });
});

// ------------------------------------------------------------------ ctnetlink messages

describe('conntrack messages into CtEntry', () => {
  test('a DNATed TCP entry: client and VIP from the original tuple, real server from the reply, state from CTA_PROTOINFO_TCP', () => {
    assert.deepEqual(parseCtEntry(tcpEntry(0x4242)), {
      af: 4,
      protocol: 'tcp',
      timeout: 118,
      state: 'ESTABLISHED',
      caddr: '198.18.0.10',
      cport: 39912,
      vaddr: '198.18.0.1',
      vport: 80,
      daddr: '198.19.0.11',
      dport: 8080,
      mark: 0x4242,
    });
  });

  test('TCP states by their tcp_conntrack number, as conntrack(8) names them', () => {
    const names = ['NONE', 'SYN_SENT', 'SYN_RECV', 'ESTABLISHED', 'FIN_WAIT', 'CLOSE_WAIT', 'LAST_ACK', 'TIME_WAIT', 'CLOSE', 'SYN_SENT2'];
    names.forEach((n, i) => {
      assert.equal(parseCtEntry(tcpEntry(1, i))?.state, n);
    });
  });

  test('a UDP entry over IPv6: no state, RFC 5952 addresses', () => {
    const e = parseCtEntry(udp6Entry(0x80000000));
    assert.equal(e?.af, 6);
    assert.equal(e?.protocol, 'udp');
    assert.equal(e?.state, '');
    assert.equal(e?.caddr, '2001:2::10');
    assert.equal(e?.daddr, '2001:2:1::11');
    assert.equal(e?.dport, 53);
    assert.equal(e?.mark, 0x80000000);
  });

  test('unmarked entries, other protocols and truncated messages are left out', () => {
    assert.equal(parseCtEntry(tcpEntry(null)), null);
    assert.equal(parseCtEntry(tcpEntry(0)), null);
    const icmp = Buffer.concat([
      nfgen(2),
      nest(CTA.TUPLE_ORIG, tuple4('1.1.1.1', '2.2.2.2', 1, 0, 0)),
      nest(CTA.TUPLE_REPLY, tuple4('2.2.2.2', '1.1.1.1', 1, 0, 0)),
      nla(CTA.MARK, be32(5)),
    ]);
    assert.equal(parseCtEntry(icmp), null);
    const full = tcpEntry(9);
    for (const cut of [3, 20, 40, full.length - 30]) assert.doesNotThrow(() => parseCtEntry(full.subarray(0, cut)));
    assert.equal(parseCtEntry(full.subarray(0, 40)), null);
  });

  test('ctMessageMark reads the mark alone (0 when absent)', () => {
    assert.equal(ctMessageMark(tcpEntry(77)), 77);
    assert.equal(ctMessageMark(tcpEntry(null)), 0);
  });

  test('events: NEW with NLM_F_CREATE is new, NEW without it an update, DELETE a destroy', () => {
    const p = tcpEntry(5, 7);
    assert.equal(parseCtEvent(0x0100, 0x0600, p)?.kind, 'new');
    assert.equal(parseCtEvent(0x0100, 0, p)?.kind, 'update');
    assert.equal(parseCtEvent(0x0102, 0, p)?.kind, 'destroy');
    assert.equal(parseCtEvent(0x0102, 0, p)?.entry.state, 'TIME_WAIT');
    assert.equal(parseCtEvent(0x0a00, 0, p), null, 'another subsystem');
    assert.equal(parseCtEvent(0x0100, 0, tcpEntry(null)), null, 'unmarked');
  });
});

// ------------------------------------------------------------------ the socket filter

/**
 * The classic BPF subset the filter uses, as the kernel runs it on a netlink skb:
 * ld #k, ldx #k, ld [SKF_AD_OFF + SKF_AD_NLATTR] (nla_find from offset A for type X),
 * tax, ld [x + k] (a big-endian word), jeq #k, ret #k.
 */
function runFilter(prog: Buffer, skb: Buffer): number {
  let a = 0;
  let x = 0;
  for (let pc = 0; pc < prog.length / 8; pc++) {
    const code = prog.readUInt16LE(pc * 8);
    const jt = prog[pc * 8 + 2]!;
    const jf = prog[pc * 8 + 3]!;
    const k = prog.readUInt32LE(pc * 8 + 4);
    if (code === 0x00) a = k;
    else if (code === 0x01) x = k;
    else if (code === 0x20 && k === 0xfffff00c) {
      let found = 0;
      for (let off = a; off + 4 <= skb.length; ) {
        const len = skb.readUInt16LE(off);
        if (len < 4) break;
        if ((skb.readUInt16LE(off + 2) & 0x3fff) === x) {
          found = off;
          break;
        }
        off += (len + 3) & ~3;
      }
      a = found;
    } else if (code === 0x07) x = a;
    else if (code === 0x40) a = x + k + 4 <= skb.length ? skb.readUInt32BE(x + k) : 0;
    else if (code === 0x15) pc += a === k ? jt : jf;
    else if (code === 0x06) return k;
    else throw new Error(`opcode ${code} not expected`);
  }
  throw new Error('fell off the program');
}

test('the event socket filter passes messages with a non-zero CTA_MARK and drops the others', () => {
  const msg = (payload: Buffer) => Buffer.concat([Buffer.from('00000000' + '0001' + '0006' + '00000000' + '00000000', 'hex'), payload]);
  const prog = markedOnlyProgram();
  assert.equal(prog.length % 8, 0);
  assert.notEqual(runFilter(prog, msg(tcpEntry(5))), 0);
  assert.notEqual(runFilter(prog, msg(udp6Entry(1))), 0);
  assert.equal(runFilter(prog, msg(tcpEntry(null))), 0);
  // Entries created over ctnetlink carry CTA_MARK even when it is 0.
  assert.equal(runFilter(prog, msg(tcpEntry(0))), 0);
});

// ------------------------------------------------------------------ nf_tables reads

describe('nf_tables objects and set elements', () => {
  test('counter dump: NFT_MSG_GETOBJ (subsys 10, msg 19) with NLM_F_DUMP, filtered by table and NFT_OBJECT_COUNTER', () => {
    const b = objDumpRequest('ip6', 'tsvs', 11);
    const body = Buffer.concat([nfgen(10), nla(1, z('tsvs')), nla(3, be32(1))]);
    assert.equal(
      hex(b),
      hex(Buffer.concat([Buffer.from(`${(16 + body.length).toString(16).padStart(2, '0')}000000130a01030b00000000000000`, 'hex'), body])),
    );
  });

  test('counter by name: GETOBJ with NFTA_OBJ_NAME, acknowledged, no dump', () => {
    const b = objGetRequest('ip', 'tsvs', 'in42', 5);
    assert.equal(b.readUInt16LE(6), 0x0005);
    assert.equal(hex(b.subarray(16)), hex(Buffer.concat([nfgen(2), nla(1, z('tsvs')), nla(2, z('in42')), nla(3, be32(1))])));
  });

  test('a NEWOBJ reply (msg 18) as [name, counter] with 64-bit values', () => {
    const payload = Buffer.concat([
      nfgen(2),
      nla(1, z('tsvs')),
      nla(2, z('conns7')),
      nla(3, be32(1)),
      nest(4, nla(1, be64(98765432109876n)), nla(2, be64(123456789012n))),
      nla(5, be32(1)),
      nla(6, be64(4n)),
    ]);
    assert.deepEqual(parseCounterObj({ type: 0x0a12, flags: 2, seq: 1, payload }), [
      'conns7',
      { packets: 123456789012, bytes: 98765432109876 },
    ]);
    const quota = Buffer.concat([nfgen(2), nla(1, z('tsvs')), nla(2, z('q')), nla(3, be32(2)), nest(4, nla(1, be64(1n)))]);
    assert.equal(parseCounterObj({ type: 0x0a12, flags: 2, seq: 1, payload: quota }), null, 'not a counter');
  });

  test('set element dump: NFT_MSG_GETSETELEM (msg 13) names table and set', () => {
    const b = setElemDumpRequest('ip', 'tsvs', 'persist3_300_32', 2);
    assert.equal(b.readUInt16LE(4), 0x0a0d);
    assert.equal(b.readUInt16LE(6), 0x0301);
    assert.equal(hex(b.subarray(16)), hex(Buffer.concat([nfgen(2), nla(1, z('tsvs')), nla(2, z('persist3_300_32'))])));
  });

  test('a NEWSETELEM reply (msg 12): every NFTA_LIST_ELEM with its key, timeout and expiration (ms)', () => {
    const elem = (key: Buffer, timeout: bigint, expires: bigint) =>
      nest(1, nest(1, nla(1, key)), nla(4, be64(timeout)), nla(5, be64(expires)));
    const v6 = Buffer.from('20010002000000000000000000000010', 'hex');
    const payload = Buffer.concat([
      nfgen(2),
      nla(1, z('tsvs')),
      nla(2, z('persist3_300_32')),
      nest(3, elem(ip4('198.18.0.10'), 300000n, 298123n), elem(ip4('198.18.0.11'), 100000n, 5000n), elem(v6, 1n, 0n)),
    ]);
    assert.deepEqual(parseSetElems({ type: 0x0a0c, flags: 2, seq: 1, payload }), [
      { key: '198.18.0.10', timeoutMs: 300000, expiresMs: 298123 },
      { key: '198.18.0.11', timeoutMs: 100000, expiresMs: 5000 },
      { key: '2001:2::10', timeoutMs: 1, expiresMs: 0 },
    ]);
    assert.deepEqual(parseSetElems({ type: 0x0a12, flags: 2, seq: 1, payload }), [], 'another message type');
  });
});
