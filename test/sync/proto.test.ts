/**
 * The IPVS sync protocol v1 codec against hand-assembled bytes (the kernel's layout,
 * ip_vs_sync.c), and a corpus of malformed messages that must all be dropped.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeMessage, encodeMessages, IPVS_CONN_F, MAX_CONNS_PER_MESG, type SyncConn } from '../../src/sync/proto.js';

const hex = (s: string) => Buffer.from(s.replace(/[\s|]/g, ''), 'hex');

const CONN: SyncConn = {
  af: 4,
  protocol: 6,
  flags: IPVS_CONN_F.DROUTE | IPVS_CONN_F.INACTIVE,
  state: 1,
  cport: 40000,
  vport: 80,
  dport: 8080,
  fwmark: 0,
  timeout: 900,
  caddr: '198.18.0.10',
  vaddr: '198.18.0.1',
  daddr: '198.19.0.11',
};
const TEMPLATE: SyncConn = {
  af: 4,
  protocol: 6,
  flags: IPVS_CONN_F.TEMPLATE,
  state: 0,
  cport: 0,
  vport: 80,
  dport: 80,
  fwmark: 0,
  timeout: 360,
  caddr: '198.18.0.10',
  vaddr: '198.18.0.1',
  daddr: '198.19.0.12',
};
// Header: reserved 0, syncid 5, size 80, 2 conns, version 1, spare 0; then two 36-byte entries.
const GOLDEN_V4 = hex(`
  00 05 0050 | 02 01 0000
  00 06 0024 | 00000103 | 0001 9c40 | 0050 1f90 | 00000000 | 00000384 | c612000a | c6120001 | c613000b
  00 06 0024 | 00001000 | 0000 0000 | 0050 0050 | 00000000 | 00000168 | c612000a | c6120001 | c613000c
`);

const V6_SEQ: SyncConn = {
  af: 6,
  protocol: 6,
  flags: IPVS_CONN_F.MASQ | IPVS_CONN_F.IN_SEQ,
  state: 4,
  cport: 1234,
  vport: 443,
  dport: 443,
  fwmark: 7,
  timeout: 120,
  caddr: '2001:db8::10',
  vaddr: '2001:db8::1',
  daddr: 'fd00::b',
  seq: { in: { initSeq: 0x11111111, delta: 4, previousDelta: 0 }, out: { initSeq: 0x22222222, delta: 0xfffffffc, previousDelta: 1 } },
};
// 72-byte IPv6 entry + 26 bytes of sequence option = 98 (0x62); 2 bytes of padding follow
// before the next entry, which starts at 108. Size = 108 + 36 = 144 (0x90).
const GOLDEN_V6 = hex(`
  00 09 0090 | 02 01 0000
  01 06 0062 | 00000400 | 0004 04d2 | 01bb 01bb | 00000007 | 00000078
  20010db8000000000000000000000010 | 20010db8000000000000000000000001 | fd00000000000000000000000000000b
  01 18 | 11111111 00000004 00000000 | 22222222 fffffffc 00000001
  0000
  00 11 0024 | 00000000 | 0000 0035 | 0035 0035 | 00000000 | 0000012c | c612000a | c6120001 | c613000b
`);
const UDP: SyncConn = { ...CONN, protocol: 17, flags: 0, state: 0, cport: 53, vport: 53, dport: 53, timeout: 300 };

describe('sync protocol v1: golden bytes', () => {
  it('encodes a connection and a template as the kernel lays them out', () => {
    const msgs = encodeMessages(5, [CONN, TEMPLATE]);
    assert.equal(msgs.length, 1);
    assert.equal(msgs[0]!.toString('hex'), GOLDEN_V4.toString('hex'));
  });

  it('decodes the same bytes back', () => {
    const d = decodeMessage(GOLDEN_V4);
    assert.ok(d.ok);
    assert.equal(d.syncid, 5);
    assert.deepEqual(d.conns, [CONN, TEMPLATE]);
    assert.deepEqual(d.skipped, []);
  });

  it('IPv6 with sequence data: option, 4-byte alignment padding, and the next entry', () => {
    const msgs = encodeMessages(9, [V6_SEQ, UDP]);
    assert.equal(msgs[0]!.toString('hex'), GOLDEN_V6.toString('hex'));
    const d = decodeMessage(GOLDEN_V6);
    assert.ok(d.ok);
    assert.deepEqual(d.conns, [V6_SEQ, UDP]);
  });

  it('persistence-engine data and name round-trip as options 2 and 3', () => {
    const sip: SyncConn = { ...TEMPLATE, protocol: 17, peName: 'sip', peData: Buffer.from('call-id-42') };
    const [m] = encodeMessages(1, [sip]);
    // 36 + (2 + 10) + (2 + 3) = 53 bytes of entry; the message is not padded after the last one.
    assert.equal(m!.length, 8 + 53);
    assert.equal(
      m!.subarray(8 + 36).toString('hex'),
      `020a${Buffer.from('call-id-42').toString('hex')}0303${Buffer.from('sip').toString('hex')}`,
    );
    const d = decodeMessage(m!);
    assert.ok(d.ok);
    assert.deepEqual(d.conns[0], sip);
  });

  it('the HASHED flag is never sent, and a backup keeps only IP_VS_CONN_F_BACKUP_MASK bits', () => {
    const [m] = encodeMessages(0, [{ ...CONN, flags: CONN.flags | IPVS_CONN_F.HASHED | IPVS_CONN_F.ONE_PACKET }]);
    assert.equal(m!.readUInt32BE(8 + 4), CONN.flags | IPVS_CONN_F.ONE_PACKET);
    const d = decodeMessage(m!);
    assert.ok(d.ok);
    assert.equal(d.conns[0]!.flags, CONN.flags); // ONE_PACKET is not in the backup mask
  });

  it('packs up to maxlen bytes and at most 255 entries per message', () => {
    const many = Array.from({ length: 600 }, (_, i) => ({ ...CONN, cport: 1024 + i }));
    const msgs = encodeMessages(1, many, 1472);
    // (1472 - 8) / 36 = 40 entries per message
    assert.equal(msgs[0]!.readUInt8(4), 40);
    assert.ok(msgs.every((m) => m.length <= 1472));
    const big = encodeMessages(1, many, 65000);
    assert.deepEqual(
      big.map((m) => m.readUInt8(4)),
      [MAX_CONNS_PER_MESG, MAX_CONNS_PER_MESG, 600 - 2 * MAX_CONNS_PER_MESG],
    );
    const back = [...msgs, ...big].flatMap((m) => {
      const d = decodeMessage(m);
      assert.ok(d.ok);
      return d.conns;
    });
    assert.equal(back.length, 1200);
    assert.deepEqual(
      back.slice(0, 600).map((c) => c.cport),
      many.map((c) => c.cport),
    );
  });
});

/** GOLDEN_V4 with bytes replaced at an offset. */
function patched(at: number, bytes: string, base = GOLDEN_V4): Buffer {
  const b = Buffer.from(base);
  hex(bytes).copy(b, at);
  return b;
}

/** One v4 entry with options appended, as a whole message. */
function withOptions(
  opts: string,
  entry = '00 06 LLLL | 00000000 | 0001 9c40 | 0050 0050 | 00000000 | 00000384 | c612000a | c6120001 | c613000b',
): Buffer {
  const o = hex(opts);
  const e = hex(entry.replace('LLLL', (36 + o.length).toString(16).padStart(4, '0')));
  const body = Buffer.concat([e, o]);
  const h = hex(`00 01 ${(8 + body.length).toString(16).padStart(4, '0')} 01 01 0000`);
  return Buffer.concat([h, body]);
}

describe('sync protocol v1: malformed messages are dropped', () => {
  const corpus: Array<[string, Buffer, string]> = [
    ['empty datagram', Buffer.alloc(0), 'too-short'],
    ['3 bytes', hex('000100'), 'too-short'],
    ['size field larger than the datagram', patched(2, '0051'), 'bad-size'],
    ['size field smaller than the datagram', patched(2, '004f'), 'bad-size'],
    ['trailing garbage', Buffer.concat([GOLDEN_V4, hex('00')]), 'bad-size'],
    ['version-0 header (first byte is a count)', patched(0, '02'), 'version-0'],
    ['version 2', patched(5, '02'), 'version-0'],
    ['spare not zero', patched(6, '0001'), 'version-0'],
    ['header only, 4 bytes, size 4', hex('0001 0004'), 'version-0'],
    ['count says 3, two entries present', patched(4, '03'), 'truncated-entry'],
    ['entry size runs past the end', patched(8 + 36 + 2, '0040'), 'truncated-entry'],
    ['first entry size swallows the second: its bytes read as options', patched(8 + 2, '0040'), 'bad-option'],
    ['entry size smaller than the fixed part', patched(8 + 36 + 2, '0014'), 'truncated-entry'],
    ['entry version 1', patched(8 + 2, '1024'), 'entry-version'],
    ['entry type 2', patched(8, '02'), 'bad-type'],
    ['option with length 0', withOptions('01 00 0000'), 'bad-option'],
    ['option longer than the entry', withOptions('02 09 0000'), 'bad-option'],
    ['half an option header', withOptions('02'), 'bad-option'],
    ['sequence option of 20 bytes', withOptions(`01 14 ${'00'.repeat(20)}`), 'bad-option'],
    ['sequence option twice', withOptions(`01 18 ${'00'.repeat(24)} 01 18 ${'00'.repeat(24)}`), 'bad-option'],
    ['persistence-engine name of 17 bytes', withOptions(`03 11 ${'61'.repeat(17)}`), 'bad-option'],
  ];
  for (const [name, buf, reason] of corpus) {
    it(`${name}: ${reason}`, () => {
      const d = decodeMessage(buf);
      assert.equal(d.ok, false, `${name} was accepted`);
      if (!d.ok) assert.equal(d.reason, reason, d.detail);
    });
  }

  it('a bad entry drops the whole message, also the good entry before it', () => {
    const d = decodeMessage(patched(8 + 36, '07'));
    assert.equal(d.ok, false);
  });
});

describe('sync protocol v1: entries a backup skips inside a good message', () => {
  const cases: Array<[string, Buffer, string]> = [
    ['unknown protocol 47 (GRE)', patched(8 + 1, '2f'), 'unknown-protocol'],
    ['TCP state 11 (past LAST)', patched(8 + 8, '000b'), 'bad-state'],
    ['UDP state 1', patched(8 + 1, '11'), 'bad-state'],
    ['unknown mandatory option 5', withOptions('05 02 abcd'), 'mandatory-option'],
    ['persistence-engine data without a name', withOptions('02 02 abcd'), 'bad-pe'],
  ];
  for (const [name, buf, reason] of cases) {
    it(`${name}: ${reason}`, () => {
      const d = decodeMessage(buf);
      assert.ok(d.ok, 'message dropped');
      assert.deepEqual(d.skipped, [reason]);
    });
  }

  it('an unknown optional option (IPVS_OPT_F_PARAM bit) is ignored and the entry kept', () => {
    const d = decodeMessage(withOptions('45 02 abcd'));
    assert.ok(d.ok);
    assert.equal(d.conns.length, 1);
    assert.deepEqual(d.skipped, []);
  });

  it('a template with an unknown state is kept with state 0, as the kernel does', () => {
    const d = decodeMessage(patched(8 + 36 + 8, '0007'));
    assert.ok(d.ok);
    assert.equal(d.conns[1]!.state, 0);
  });
});
