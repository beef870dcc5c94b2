/** Inner packets for the tunnel tests: a client's TCP SYN to the VIP, IPv4 and IPv6, with valid checksums. */
import { addrBytes, inetChecksum, onesSum, type EncapOptions } from '../../src/dataplane/tunnel/encap.js';

function tcpSyn(sport: number, dport: number): Buffer {
  const t = Buffer.alloc(20);
  t.writeUInt16BE(sport, 0);
  t.writeUInt16BE(dport, 2);
  t.writeUInt32BE(0x11223344, 4);
  t[12] = 5 << 4;
  t[13] = 0x02; // SYN
  t.writeUInt16BE(64240, 14);
  return t;
}

/** IPv4: TOS `tos`, TTL `ttl`, DF as given, ID 0x1234. */
export function ipv4Syn(opts: { tos?: number; ttl?: number; df?: boolean } = {}): Buffer {
  const src = addrBytes('198.18.0.10');
  const dst = addrBytes('198.19.0.100');
  const tcp = tcpSyn(40000, 80);
  const ph = Buffer.concat([src, dst, Buffer.from([0, 6, 0, tcp.length])]);
  tcp.writeUInt16BE(inetChecksum(tcp, onesSum(ph)), 16);
  const h = Buffer.alloc(20);
  h[0] = 0x45;
  h[1] = opts.tos ?? 0;
  h.writeUInt16BE(20 + tcp.length, 2);
  h.writeUInt16BE(0x1234, 4);
  h.writeUInt16BE(opts.df === false ? 0 : 0x4000, 6);
  h[8] = opts.ttl ?? 64;
  h[9] = 6;
  src.copy(h, 12);
  dst.copy(h, 16);
  h.writeUInt16BE(inetChecksum(h), 10);
  return Buffer.concat([h, tcp]);
}

/** IPv6: traffic class `tc`, hop limit `hops`; a partial checksum (pseudo-header only) when `partial`. */
export function ipv6Syn(opts: { tc?: number; hops?: number; partial?: boolean } = {}): Buffer {
  const src = addrBytes('2001:db8:18::10');
  const dst = addrBytes('2001:db8:19::100');
  const tcp = tcpSyn(40000, 80);
  const ph = Buffer.alloc(40);
  src.copy(ph, 0);
  dst.copy(ph, 16);
  ph.writeUInt32BE(tcp.length, 32);
  ph[39] = 6;
  // CHECKSUM_PARTIAL leaves the folded pseudo-header sum in the field, not inverted.
  tcp.writeUInt16BE(opts.partial ? onesSum(ph) : inetChecksum(tcp, onesSum(ph)), 16);
  const h = Buffer.alloc(40);
  h.writeUInt32BE(((6 << 28) | ((opts.tc ?? 0) << 20) | 0x12345) >>> 0, 0);
  h.writeUInt16BE(tcp.length, 4);
  h[6] = 6;
  h[7] = opts.hops ?? 64;
  src.copy(h, 8);
  dst.copy(h, 24);
  return Buffer.concat([h, tcp]);
}

/** The cases of the golden file: name, inner packet, options. */
export function tunnelCases(): Array<{ name: string; inner: Buffer; opts: EncapOptions }> {
  const v4 = ipv4Syn({ tos: 0x2b, ttl: 63 });
  const v6 = ipv6Syn({ tc: 0xb8, hops: 57 });
  const o4 = { src: '198.19.0.1', dst: '198.19.0.11', id: 0xbeef };
  const o6 = { src: '2001:db8:19::1', dst: '2001:db8:19::11' };
  return [
    { name: 'ipip-v4-in-v4', inner: v4, opts: { type: 'ipip', ...o4 } },
    { name: 'ipip-v6-in-v4', inner: v6, opts: { type: 'ipip', ...o4 } },
    { name: 'ipip-v4-in-v6', inner: v4, opts: { type: 'ipip', ...o6 } },
    { name: 'gue-nocsum', inner: v4, opts: { type: 'gue', port: 6080, sport: 49152, csum: 'nocsum', ...o4 } },
    { name: 'gue-csum', inner: v4, opts: { type: 'gue', port: 6080, sport: 49152, csum: 'csum', ...o4 } },
    {
      name: 'gue-remcsum-partial-v6',
      inner: ipv6Syn({ partial: true }),
      opts: { type: 'gue', port: 6080, sport: 49153, csum: 'remcsum', partial: { start: 40, offset: 16 }, ...o4 },
    },
    { name: 'gue-csum-v6-outer', inner: v4, opts: { type: 'gue', port: 6080, sport: 49152, csum: 'csum', ...o6 } },
    { name: 'gre-nocsum', inner: v4, opts: { type: 'gre', csum: 'nocsum', ...o4 } },
    { name: 'gre-csum', inner: v4, opts: { type: 'gre', csum: 'csum', ...o4 } },
    { name: 'gre-csum-v6-in-v6', inner: v6, opts: { type: 'gre', csum: 'csum', ...o6 } },
  ];
}
