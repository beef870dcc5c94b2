/**
 * Target: connection sync messages (src/sync/proto.ts decodeMessage, the IPVS sync
 * protocol version 1).
 *
 * Properties: decoding never throws, and gives entries or a drop with a reason; every
 * decoded entry is well formed (addresses of its family, 16-bit ports); encodeMessages
 * then decodeMessage gives the connections back (flags as a backup keeps them). Inputs:
 * valid messages with bytes set, flipped, cut or appended, and random bytes.
 */
import fc from 'fast-check';
import { formatIPv4, formatIPv6, parseIPv4, parseIPv6 } from '../../../src/core/addr.js';
import {
  IPVS_CONN_F,
  IPVS_CONN_F_BACKUP_MASK,
  decodeMessage,
  encodeMessages,
  type Decoded,
  type SyncConn,
} from '../../../src/sync/proto.js';
import { describeError, mutatedBytes, type FuzzTarget } from '../fuzz.js';

const u16 = fc.nat({ max: 0xffff });
const u32 = fc.nat({ max: 0xffffffff });
const v4 = u32.map(formatIPv4);
const v6 = fc.array(u16, { minLength: 8, maxLength: 8 }).map(formatIPv6);
const seq = fc.record({ initSeq: u32, delta: u32, previousDelta: u32 });
const STATES: Record<number, number> = { 6: 11, 17: 1, 132: 13 };

const conn: fc.Arbitrary<SyncConn> = fc
  .record({
    af: fc.constantFrom(4 as const, 6 as const),
    protocol: fc.constantFrom(6, 17, 132),
    template: fc.boolean(),
    flags: u32,
    state: fc.nat({ max: 12 }),
    cport: u16,
    vport: u16,
    dport: u16,
    fwmark: u32,
    timeout: u32,
    seq: fc.option(fc.record({ in: seq, out: seq }), { nil: undefined }),
    pe: fc.option(fc.record({ data: fc.uint8Array({ minLength: 1, maxLength: 40 }), name: fc.stringMatching(/^[a-z]{1,16}$/) }), {
      nil: undefined,
    }),
    a: fc.tuple(v4, v4, v4),
    b: fc.tuple(v6, v6, v6),
  })
  .map((r) => {
    const [caddr, vaddr, daddr] = r.af === 4 ? r.a : r.b;
    const flags = ((r.flags & IPVS_CONN_F_BACKUP_MASK & ~IPVS_CONN_F.TEMPLATE) | (r.template ? IPVS_CONN_F.TEMPLATE : 0)) >>> 0;
    const c: SyncConn = {
      af: r.af,
      protocol: r.protocol,
      flags,
      state: r.template ? r.state % 2 : r.state % STATES[r.protocol]!,
      cport: r.cport,
      vport: r.vport,
      dport: r.dport,
      fwmark: r.fwmark,
      timeout: r.timeout,
      caddr,
      vaddr,
      daddr,
    };
    if (r.seq) c.seq = r.seq;
    if (r.pe) {
      c.peData = Buffer.from(r.pe.data);
      c.peName = r.pe.name;
    }
    return c;
  });
const batch = fc.record({
  syncid: fc.nat({ max: 255 }),
  conns: fc.array(conn, { minLength: 1, maxLength: 40 }),
  maxlen: fc.integer({ min: 128, max: 9000 }),
});

function decode(buf: Buffer): Decoded {
  let r: Decoded;
  try {
    r = decodeMessage(buf);
  } catch (e) {
    throw new Error(`decodeMessage threw on ${buf.toString('hex')}: ${describeError(e)}`);
  }
  if (r.ok) {
    for (const c of r.conns) {
      const addrOk = (a: string) => (c.af === 4 ? parseIPv4(a) !== null : parseIPv6(a) !== null);
      if (![c.caddr, c.vaddr, c.daddr].every(addrOk) || [c.cport, c.vport, c.dport].some((p) => p < 0 || p > 0xffff))
        throw new Error(`decodeMessage gave a malformed entry ${JSON.stringify(c)} from ${buf.toString('hex')}`);
    }
  }
  return r;
}

const canon = (c: SyncConn) => JSON.stringify({ ...c, peData: c.peData ? c.peData.toString('hex') : undefined });

export const syncTarget: FuzzTarget = {
  name: 'sync messages',
  properties: [
    {
      name: 'encodeMessages then decodeMessage gives the connections back',
      runs: 200,
      property: () =>
        fc.property(batch, ({ syncid, conns, maxlen }) => {
          const got: SyncConn[] = [];
          for (const m of encodeMessages(syncid, conns, maxlen)) {
            const r = decode(m);
            if (!r.ok || r.syncid !== syncid || r.skipped.length) throw new Error(`a message we encoded was refused: ${JSON.stringify(r)}`);
            got.push(...r.conns);
          }
          const want = conns.map(canon);
          const have = got.map(canon);
          if (want.join('\n') !== have.join('\n')) throw new Error(`round trip differs:\n${want.join('\n')}\n---\n${have.join('\n')}`);
          return true;
        }),
    },
    {
      name: 'decoding mutated or random messages never throws, and decoded entries are well formed',
      runs: 500,
      property: () =>
        fc.property(
          fc.oneof(
            {
              weight: 4,
              // Half of them with the header's size set to the datagram's, to get past the first check.
              arbitrary: fc
                .tuple(mutatedBytes(batch.map(({ syncid, conns }) => encodeMessages(syncid, conns.slice(0, 4), 1472)[0]!)), fc.boolean())
                .map(([b, fix]) => {
                  if (fix && b.length >= 4 && b.length <= 0xffff) b.writeUInt16BE(b.length, 2);
                  return b;
                }),
            },
            { weight: 1, arbitrary: fc.uint8Array({ maxLength: 200 }).map((u) => Buffer.from(u)) },
          ),
          (buf) => {
            decode(buf);
            return true;
          },
        ),
    },
  ],
};
