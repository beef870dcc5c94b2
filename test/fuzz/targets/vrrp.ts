/**
 * Target: VRRPv3 packets (src/ha/packet.ts decodeVrrp, decodeIpv4Packet).
 *
 * Properties: decoding never throws, and a packet is either an advert or dropped with a
 * reason from DROP_REASONS; encode then decode gives the advert back (IPv4 with its IP
 * header, and IPv6 as the raw socket gives it). Inputs: valid packets with bytes set,
 * flipped, cut or appended, and random bytes.
 */
import fc from 'fast-check';
import { formatIPv4, formatIPv6 } from '../../../src/core/addr.js';
import {
  DROP_REASONS,
  VRRP_GROUP4,
  VRRP_GROUP6,
  decodeIpv4Packet,
  decodeVrrp,
  encodeAdvert,
  encodeIpv4Packet,
  vrrpChecksum,
  type Advert,
  type DecodeResult,
} from '../../../src/ha/packet.js';
import { describeError, mutatedBytes, type FuzzTarget } from '../fuzz.js';

const v4 = fc.nat({ max: 0xffffffff }).map(formatIPv4);
const v6 = fc.array(fc.nat({ max: 0xffff }), { minLength: 8, maxLength: 8 }).map(formatIPv6);
const advert = (addr: fc.Arbitrary<string>): fc.Arbitrary<Advert> =>
  fc.record({
    vrid: fc.integer({ min: 1, max: 255 }),
    priority: fc.integer({ min: 0, max: 255 }),
    maxAdverIntCs: fc.integer({ min: 1, max: 0xfff }),
    addrs: fc.array(addr, { maxLength: 20 }),
  });
const case4 = fc.record({ a: advert(v4), src: v4, dst: fc.oneof(fc.constant(VRRP_GROUP4), v4), id: fc.nat({ max: 0xffff }) });
const case6 = fc.record({ a: advert(v6), src: v6, dst: fc.oneof(fc.constant(VRRP_GROUP6), v6) });

function checked(what: string, buf: Buffer, f: () => DecodeResult): DecodeResult {
  let r: DecodeResult;
  try {
    r = f();
  } catch (e) {
    throw new Error(`${what} threw on ${buf.toString('hex')}: ${describeError(e)}`);
  }
  if (!r.ok && !(DROP_REASONS as readonly string[]).includes(r.reason)) throw new Error(`${what}: unknown drop reason ${r.reason}`);
  return r;
}

const same = (a: Advert, b: Advert) =>
  a.vrid === b.vrid && a.priority === b.priority && a.maxAdverIntCs === b.maxAdverIntCs && a.addrs.join() === b.addrs.join();

export const vrrpTarget: FuzzTarget = {
  name: 'VRRP packets',
  properties: [
    {
      name: 'IPv4: encode then decode gives the advert back',
      runs: 300,
      property: () =>
        fc.property(case4, ({ a, src, dst, id }) => {
          const pkt = encodeIpv4Packet(a, src, dst, id);
          const r = checked('decodeIpv4Packet', pkt, () => decodeIpv4Packet(pkt));
          if (!r.ok || !same(r.advert, a) || r.advert.src !== src || r.advert.dst !== dst)
            throw new Error(`round trip: ${JSON.stringify(a)} ${src} -> ${dst} gave ${JSON.stringify(r)}`);
          return true;
        }),
    },
    {
      name: 'IPv6: encode then decode gives the advert back',
      runs: 200,
      property: () =>
        fc.property(case6, ({ a, src, dst }) => {
          const msg = encodeAdvert(a, src, dst);
          const r = checked('decodeVrrp', msg, () => decodeVrrp(msg, 6, src, dst, 255));
          if (!r.ok || !same(r.advert, a)) throw new Error(`round trip: ${JSON.stringify(a)} gave ${JSON.stringify(r)}`);
          return true;
        }),
    },
    {
      name: 'decoding mutated or random packets never throws, and every drop has a known reason',
      runs: 500,
      property: () =>
        fc.property(
          fc.oneof(
            {
              weight: 4,
              // Half of them with the IP length and the VRRP checksum made right again, to reach the later checks.
              arbitrary: fc
                .tuple(mutatedBytes(case4.map(({ a, src, dst, id }) => encodeIpv4Packet(a, src, dst, id))), fc.boolean())
                .map(([b, fix]) => {
                  if (fix && b.length >= 28 && b.length <= 0xffff) {
                    b.writeUInt16BE(b.length, 2);
                    const ihl = (b[0]! & 15) * 4;
                    if (ihl >= 20 && ihl + 8 <= b.length) {
                      const vrrp = b.subarray(ihl);
                      vrrp.writeUInt16BE(0, 6);
                      vrrp.writeUInt16BE(vrrpChecksum(vrrp, formatIPv4(b.readUInt32BE(12)), formatIPv4(b.readUInt32BE(16))), 6);
                    }
                  }
                  return b;
                }),
            },
            { weight: 1, arbitrary: fc.uint8Array({ maxLength: 120 }).map((u) => Buffer.from(u)) },
          ),
          fc.tuple(
            mutatedBytes(case6.map(({ a, src, dst }) => encodeAdvert(a, src, dst))),
            v6,
            fc.oneof(fc.constant(VRRP_GROUP6), v6),
            fc.nat({ max: 255 }),
          ),
          (pkt4, [msg6, src6, dst6, hops]) => {
            checked('decodeIpv4Packet', pkt4, () => decodeIpv4Packet(pkt4));
            checked('decodeVrrp', pkt4, () => decodeVrrp(pkt4, 4, '10.0.0.1', VRRP_GROUP4, 255));
            checked('decodeVrrp (IPv6)', msg6, () => decodeVrrp(msg6, 6, src6, dst6, hops));
            return true;
          },
        ),
    },
  ],
};
