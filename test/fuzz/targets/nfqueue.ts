/**
 * Target: the first-packet path's reader of queued packets (src/dataplane/nftables/
 * netlink.ts: parseMessages, then parseQueuedPacket for each NFQNL_MSG_PACKET, as the
 * NFQUEUE worker thread does with what it receives). A throw there would stop the reader.
 *
 * Properties: it never throws; the tuple of a well-formed IPv4/IPv6 TCP/UDP packet comes
 * back exactly; a tuple is read only from a packet whose headers are really there (no
 * ports taken from inside an IPv4 header shorter than 20 bytes). Inputs: valid netlink
 * messages around valid packets, with bytes set, flipped, cut or appended, and random bytes.
 */
import fc from 'fast-check';
import { formatIPv4, formatIPv6 } from '../../../src/core/addr.js';
import { nfnlMessage, parseMessages, parseQueuedPacket, type QueuedPacket } from '../../../src/dataplane/nftables/netlink.js';
import { describeError, mutatedBytes, type FuzzTarget } from '../fuzz.js';

const NFNL_SUBSYS_QUEUE = 3;
const NFQNL_MSG_PACKET = 0;
const NFQA_PACKET_HDR = 1;
const NFQA_MARK = 3;
const NFQA_PAYLOAD = 10;

const u16 = fc.nat({ max: 0xffff });
interface Pkt {
  id: number;
  af: 4 | 6;
  protocol: 'tcp' | 'udp';
  src: number[];
  dst: number[];
  cport: number;
  vport: number;
  flags: number;
  /** IPv4 options, in 4-byte words. */
  optWords: number;
  /** How much of the L4 header the queue copied (at least the ports). */
  l4len: number;
}
const pkt: fc.Arbitrary<Pkt> = fc.record({
  id: fc.nat({ max: 0xffffffff }),
  af: fc.constantFrom(4 as const, 6 as const),
  protocol: fc.constantFrom('tcp' as const, 'udp' as const),
  src: fc.array(fc.nat({ max: 255 }), { minLength: 16, maxLength: 16 }),
  dst: fc.array(fc.nat({ max: 255 }), { minLength: 16, maxLength: 16 }),
  cport: u16,
  vport: u16,
  flags: fc.nat({ max: 255 }),
  optWords: fc.nat({ max: 10 }),
  l4len: fc.integer({ min: 4, max: 20 }),
});

/** The IP packet (headers only, as the queue copies them) of `p`. */
function ipPacket(p: Pkt): Buffer {
  const l4 = Buffer.alloc(p.protocol === 'tcp' ? 20 : 8);
  l4.writeUInt16BE(p.cport, 0);
  l4.writeUInt16BE(p.vport, 2);
  if (p.protocol === 'tcp') l4[13] = p.flags;
  const l4cut = l4.subarray(0, Math.min(l4.length, p.l4len));
  if (p.af === 4) {
    const ihl = 5 + p.optWords;
    const h = Buffer.alloc(ihl * 4);
    h[0] = 0x40 | ihl;
    h.writeUInt16BE(h.length + l4.length, 2);
    h[8] = 64;
    h[9] = p.protocol === 'tcp' ? 6 : 17;
    Buffer.from(p.src.slice(0, 4)).copy(h, 12);
    Buffer.from(p.dst.slice(0, 4)).copy(h, 16);
    return Buffer.concat([h, l4cut]);
  }
  const h = Buffer.alloc(40);
  h[0] = 0x60;
  h.writeUInt16BE(l4.length, 4);
  h[6] = p.protocol === 'tcp' ? 6 : 17;
  h[7] = 64;
  Buffer.from(p.src).copy(h, 8);
  Buffer.from(p.dst).copy(h, 24);
  return Buffer.concat([h, l4cut]);
}

/** The NFQNL_MSG_PACKET netlink message that carries `p`. */
function queued(p: Pkt, payload = ipPacket(p)): Buffer {
  const hdr = Buffer.alloc(7); // struct nfqnl_msg_packet_hdr { be32 packet_id; be16 hw_protocol; u8 hook; }
  hdr.writeUInt32BE(p.id >>> 0, 0);
  hdr.writeUInt16BE(p.af === 4 ? 0x0800 : 0x86dd, 4);
  return nfnlMessage(NFNL_SUBSYS_QUEUE, NFQNL_MSG_PACKET, 0, 1, p.af === 4 ? 2 : 10, 0, [
    { type: NFQA_PACKET_HDR, data: hdr },
    { type: NFQA_MARK, data: Buffer.alloc(4) },
    { type: NFQA_PAYLOAD, data: payload },
  ]);
}

const v6words = (b: number[]) => Array.from({ length: 8 }, (_, i) => (b[2 * i]! << 8) | b[2 * i + 1]!);
const addr = (af: 4 | 6, b: number[]) =>
  af === 4 ? formatIPv4(((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0) : formatIPv6(v6words(b));

/** What the worker does with one received buffer. */
function read(buf: Buffer): Array<QueuedPacket | { id: number }> {
  const out: Array<QueuedPacket | { id: number }> = [];
  try {
    for (const m of parseMessages(buf)) {
      const p = parseQueuedPacket(m);
      if (p) out.push(p);
    }
  } catch (e) {
    throw new Error(`the NFQUEUE reader threw on ${buf.toString('hex')}: ${describeError(e)}`);
  }
  return out;
}

export const nfqueueTarget: FuzzTarget = {
  name: 'NFQUEUE packets',
  properties: [
    {
      name: "a queued TCP/UDP packet's tuple, id and SYN flag come back exactly",
      runs: 300,
      property: () =>
        fc.property(fc.array(pkt, { minLength: 1, maxLength: 4 }), (ps) => {
          const got = read(Buffer.concat(ps.map((p) => queued(p))));
          const want = ps.map((p) => ({
            id: p.id,
            af: p.af,
            protocol: p.protocol,
            caddr: addr(p.af, p.src),
            cport: p.cport,
            vaddr: addr(p.af, p.dst),
            vport: p.vport,
            syn: p.protocol === 'udp' || (p.l4len > 13 && (p.flags & 2) !== 0),
          }));
          if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`got ${JSON.stringify(got)}\nwant ${JSON.stringify(want)}`);
          return true;
        }),
    },
    {
      name: 'an IPv4 header shorter than 20 bytes (IHL < 5) gives no tuple',
      runs: 100,
      property: () =>
        fc.property(pkt, fc.nat({ max: 4 }), (p, ihl) => {
          const ip = ipPacket({ ...p, af: 4, optWords: 0 });
          ip[0] = 0x40 | ihl;
          const got = read(queued({ ...p, af: 4 }, ip));
          if (got.length !== 1 || 'caddr' in got[0]!) throw new Error(`IHL ${ihl}: got ${JSON.stringify(got)}`);
          return true;
        }),
    },
    {
      name: 'reading mutated or random buffers never throws',
      runs: 500,
      property: () =>
        fc.property(
          fc.oneof(
            {
              weight: 3,
              arbitrary: mutatedBytes(fc.array(pkt, { minLength: 1, maxLength: 3 }).map((ps) => Buffer.concat(ps.map((p) => queued(p))))),
            },
            // The IP packet mutated inside a well-formed message.
            { weight: 3, arbitrary: fc.tuple(pkt, mutatedBytes(pkt.map(ipPacket))).map(([p, ip]) => queued(p, ip)) },
            { weight: 1, arbitrary: fc.uint8Array({ maxLength: 200 }).map((u) => Buffer.from(u)) },
          ),
          (buf) => {
            read(buf);
            return true;
          },
        ),
    },
  ],
};
