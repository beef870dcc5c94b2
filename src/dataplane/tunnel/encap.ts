/**
 * LVS-TUN encapsulation as bytes: what kernel IPVS's ip_vs_tunnel_xmit (IPv4 outer) and
 * ip_vs_tunnel_xmit_v6 (IPv6 outer) put in front of the client's packet, for each
 * ipvsadm 1.31 tunnel type. Pure functions over Buffers, golden-tested byte for byte
 * (test/dr/tunnel.test.ts) and checked on the wire by capture (test/dr/tunnel-wire.test.ts).
 *
 * The outer header, as the kernel builds it:
 *   - IPv4: ihl 5, no options; TOS = the inner DSCP with ECN per INET_ECN_encapsulate
 *     (CE becomes ECT(0), anything else is copied); TTL = the inner TTL / hop limit;
 *     DF = the inner packet's DF when net.ipv4.vs.pmtu_disc=1 (the default), 0 for an IPv6
 *     inner packet; MF and offset 0; ID from the caller (the kernel's ip_select_ident).
 *   - IPv6: traffic class as the TOS above, flow label 0, hop limit = inner TTL.
 *   - protocol / next header: 4 (IPv4 in IP) or 41 (IPv6 in IP) for ipip; 17 for gue;
 *     47 for gre.
 *   - gue: UDP from the caller's source port (the kernel hashes the flow into its
 *     ephemeral range) to --tun-port; a 4-byte GUE header (version 0, C=0, hlen, proto =
 *     4/41, flags); UDP checksum 0 with --tun-nocsum, computed with --tun-csum and
 *     --tun-remcsum. With --tun-remcsum and an inner checksum left partial (CHECKSUM_PARTIAL,
 *     i.e. offloaded), the remote checksum offload option: the private-flags word
 *     (GUE_FLAG_PRIV / GUE_PFLAG_REMCSUM) and the start and position of the inner checksum;
 *     the inner checksum field then stays partial for the receiver to finish.
 *   - gre: a 4-byte GRE header (version 0, protocol 0x0800 / 0x86dd), plus checksum and
 *     reserved (8 bytes) with --tun-csum; no key, no sequence number.
 */
import { isIPv4 } from 'node:net';
import type { TunCsum, TunType } from '../../core/types.js';

const IPPROTO_IPIP = 4;
export const IPPROTO_IPV6 = 41;
export const IPPROTO_UDP = 17;
const IPPROTO_GRE = 47;
const GUE_FLAG_PRIV = 0x0001;
const GUE_PFLAG_REMCSUM = 0x80000000;
const GRE_CSUM = 0x8000;

export interface EncapOptions {
  type: TunType;
  /** --tun-nocsum (default), --tun-csum, --tun-remcsum (ignored by ipip). */
  csum?: TunCsum;
  /** --tun-port: the GUE UDP destination port. */
  port?: number;
  /** Outer source (the director) and destination (the real server); their family picks the outer header. */
  src: string;
  dst: string;
  /** IPv4 outer: the identification field. */
  id?: number;
  /** GUE: the UDP source port. */
  sport?: number;
  /** net.ipv4.vs.pmtu_disc (default true): copy DF from the inner IPv4 packet. */
  pmtuDisc?: boolean;
  /**
   * The inner packet's transport checksum was left partial (offloaded): where its
   * checksummed region starts and where the checksum field sits in it, in bytes from the
   * start of the inner packet and from that start. Only GUE with remcsum uses it.
   */
  partial?: { start: number; offset: number };
}

/** 16-bit ones' complement sum of `buf` (odd length padded), folded, not inverted. */
export function onesSum(buf: Uint8Array, initial = 0): number {
  let s = initial;
  for (let i = 0; i + 1 < buf.length; i += 2) s += (buf[i]! << 8) | buf[i + 1]!;
  if (buf.length & 1) s += buf[buf.length - 1]! << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

/** The Internet checksum of `buf` (RFC 1071). */
export function inetChecksum(buf: Uint8Array, initial = 0): number {
  return ~onesSum(buf, initial) & 0xffff;
}

export function addrBytes(addr: string): Buffer {
  if (isIPv4(addr)) return Buffer.from(addr.split('.').map(Number));
  const [head, tail] = addr.includes('::') ? addr.split('::') : [addr, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  if (groups.length !== 8) throw new Error(`bad IPv6 address ${addr}`);
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => {
    b.writeUInt16BE(parseInt(g, 16), i * 2);
  });
  return b;
}

/** INET_ECN_encapsulate(inner, inner): the DSCP copied; CE becomes ECT(0). */
export function encapDsfield(inner: number): number {
  return (inner & 3) === 3 ? (inner & ~3) | 2 : inner;
}

interface InnerInfo {
  af: 4 | 6;
  dsfield: number;
  ttl: number;
  df: boolean;
}

function innerInfo(pkt: Buffer): InnerInfo {
  const v = pkt[0]! >> 4;
  if (v === 4) return { af: 4, dsfield: pkt[1]!, ttl: pkt[8]!, df: (pkt.readUInt16BE(6) & 0x4000) !== 0 };
  if (v === 6) return { af: 6, dsfield: (pkt.readUInt16BE(0) >> 4) & 0xff, ttl: pkt[7]!, df: false };
  throw new Error(`inner packet: IP version ${v} is neither 4 nor 6`);
}

/** The pseudo-header sum for a UDP checksum. */
function pseudoSum(src: Buffer, dst: Buffer, proto: number, len: number): number {
  const p = Buffer.alloc(src.length === 4 ? 12 : 40);
  if (src.length === 4) {
    src.copy(p, 0);
    dst.copy(p, 4);
    p[9] = proto;
    p.writeUInt16BE(len, 10);
  } else {
    src.copy(p, 0);
    dst.copy(p, 16);
    p.writeUInt32BE(len, 32);
    p[39] = proto;
  }
  return onesSum(p);
}

/** The tunnel payload (everything after the outer IP header) and the outer protocol. */
function tunnelPayload(inner: Buffer, info: InnerInfo, o: EncapOptions, src: Buffer, dst: Buffer): { proto: number; payload: Buffer } {
  const innerProto = info.af === 4 ? IPPROTO_IPIP : IPPROTO_IPV6;
  const csum = o.csum ?? 'nocsum';
  switch (o.type) {
    case 'ipip':
      return { proto: innerProto, payload: inner };
    case 'gre': {
      const withCsum = csum === 'csum';
      const h = Buffer.alloc(withCsum ? 8 : 4);
      h.writeUInt16BE(withCsum ? GRE_CSUM : 0, 0);
      h.writeUInt16BE(info.af === 4 ? 0x0800 : 0x86dd, 2);
      const payload = Buffer.concat([h, inner]);
      if (withCsum) payload.writeUInt16BE(inetChecksum(payload), 4);
      return { proto: IPPROTO_GRE, payload };
    }
    case 'gue': {
      if (!o.port) throw new Error('gue needs the tunnel port (--tun-port)');
      const remcsum = csum === 'remcsum' && o.partial !== undefined;
      const optlen = remcsum ? 8 : 0;
      const gue = Buffer.alloc(4 + optlen);
      gue[0] = optlen >> 2; // C=0, version 0, hlen in 32-bit words
      gue[1] = innerProto;
      gue.writeUInt16BE(remcsum ? GUE_FLAG_PRIV : 0, 2);
      if (remcsum) {
        gue.writeUInt32BE(GUE_PFLAG_REMCSUM, 4);
        // The kernel's csum_start counts from the GUE header's end: the inner packet's start.
        gue.writeUInt16BE(o.partial!.start, 8);
        gue.writeUInt16BE(o.partial!.start + o.partial!.offset, 10);
      }
      const udp = Buffer.alloc(8);
      const len = 8 + gue.length + inner.length;
      udp.writeUInt16BE(o.sport ?? 0, 0);
      udp.writeUInt16BE(o.port, 2);
      udp.writeUInt16BE(len, 4);
      const payload = Buffer.concat([udp, gue, inner]);
      if (csum === 'csum' || csum === 'remcsum') {
        const c = inetChecksum(payload, pseudoSum(src, dst, IPPROTO_UDP, len));
        payload.writeUInt16BE(c === 0 ? 0xffff : c, 6);
      }
      return { proto: IPPROTO_UDP, payload };
    }
  }
}

/** The packet the director sends to the real server: outer header + tunnel header + `inner`. */
export function encapsulate(inner: Buffer, o: EncapOptions): Buffer {
  const info = innerInfo(inner);
  const src = addrBytes(o.src);
  const dst = addrBytes(o.dst);
  if (src.length !== dst.length) throw new Error(`outer addresses ${o.src} and ${o.dst} are of different families`);
  const { proto, payload } = tunnelPayload(inner, info, o, src, dst);
  const tos = encapDsfield(info.dsfield);
  if (src.length === 4) {
    const h = Buffer.alloc(20);
    h[0] = 0x45;
    h[1] = tos;
    h.writeUInt16BE(20 + payload.length, 2);
    h.writeUInt16BE((o.id ?? 0) & 0xffff, 4);
    h.writeUInt16BE(info.df && o.pmtuDisc !== false ? 0x4000 : 0, 6);
    h[8] = info.ttl;
    h[9] = proto;
    src.copy(h, 12);
    dst.copy(h, 16);
    h.writeUInt16BE(inetChecksum(h), 10);
    return Buffer.concat([h, payload]);
  }
  const h = Buffer.alloc(40);
  h.writeUInt32BE(((6 << 28) | (tos << 20)) >>> 0, 0);
  h.writeUInt16BE(payload.length, 4);
  h[6] = proto;
  h[7] = info.ttl;
  src.copy(h, 8);
  dst.copy(h, 24);
  return Buffer.concat([h, payload]);
}

/** What a real server's decapsulation sees: the outer fields, the tunnel header, the inner packet. */
export interface Decapsulated {
  af: 4 | 6;
  tos: number;
  ttl: number;
  df: boolean;
  proto: number;
  src: Buffer;
  dst: Buffer;
  type: TunType;
  /** gue: UDP ports and checksum; GUE hlen, proto, flags, remcsum start/offset. */
  udp?: { sport: number; dport: number; checksum: number };
  gue?: { hlen: number; proto: number; flags: number; remcsum?: { start: number; offset: number } };
  /** gre: flags, protocol, checksum (present with GRE_CSUM). */
  gre?: { flags: number; protocol: number; checksum?: number };
  inner: Buffer;
}

/**
 * Parses an encapsulated packet (IPv4 or IPv6 outer) and checks its framing: lengths,
 * the IPv4 header checksum, and the GRE / UDP checksums when present. Throws on a packet
 * that is not a well-formed tunnel packet.
 */
export function decapsulate(pkt: Buffer, guePort?: number): Decapsulated {
  const v = pkt[0]! >> 4;
  let off: number;
  let out: Omit<Decapsulated, 'type' | 'inner'>;
  if (v === 4) {
    const ihl = (pkt[0]! & 15) * 4;
    if (pkt.readUInt16BE(2) !== pkt.length) throw new Error(`outer IPv4 total length ${pkt.readUInt16BE(2)} != ${pkt.length}`);
    if (onesSum(pkt.subarray(0, ihl)) !== 0xffff) throw new Error('outer IPv4 header checksum is wrong');
    out = {
      af: 4,
      tos: pkt[1]!,
      ttl: pkt[8]!,
      df: (pkt.readUInt16BE(6) & 0x4000) !== 0,
      proto: pkt[9]!,
      src: pkt.subarray(12, 16),
      dst: pkt.subarray(16, 20),
    };
    off = ihl;
  } else if (v === 6) {
    if (pkt.readUInt16BE(4) + 40 !== pkt.length) throw new Error(`outer IPv6 payload length ${pkt.readUInt16BE(4)} != ${pkt.length - 40}`);
    out = {
      af: 6,
      tos: (pkt.readUInt16BE(0) >> 4) & 0xff,
      ttl: pkt[7]!,
      df: false,
      proto: pkt[6]!,
      src: pkt.subarray(8, 24),
      dst: pkt.subarray(24, 40),
    };
    off = 40;
  } else {
    throw new Error(`not an IP packet (version ${v})`);
  }
  const rest = pkt.subarray(off);
  if (out.proto === IPPROTO_IPIP || out.proto === IPPROTO_IPV6) return { ...out, type: 'ipip', inner: rest };
  if (out.proto === IPPROTO_GRE) {
    const flags = rest.readUInt16BE(0);
    const protocol = rest.readUInt16BE(2);
    if (flags & ~GRE_CSUM) throw new Error(`GRE flags ${flags.toString(16)}: only the checksum flag is expected`);
    let checksum: number | undefined;
    let hlen = 4;
    if (flags & GRE_CSUM) {
      checksum = rest.readUInt16BE(4);
      if (onesSum(rest) !== 0xffff) throw new Error('GRE checksum is wrong');
      hlen = 8;
    }
    return { ...out, type: 'gre', gre: { flags, protocol, ...(checksum === undefined ? {} : { checksum }) }, inner: rest.subarray(hlen) };
  }
  if (out.proto === IPPROTO_UDP) {
    const sport = rest.readUInt16BE(0);
    const dport = rest.readUInt16BE(2);
    if (guePort !== undefined && dport !== guePort) throw new Error(`UDP port ${dport} is not the GUE port ${guePort}`);
    if (rest.readUInt16BE(4) !== rest.length) throw new Error(`UDP length ${rest.readUInt16BE(4)} != ${rest.length}`);
    const checksum = rest.readUInt16BE(6);
    if (checksum !== 0 && onesSum(rest, pseudoSum(out.src, out.dst, IPPROTO_UDP, rest.length)) !== 0xffff)
      throw new Error('UDP checksum is wrong');
    const g = rest.subarray(8);
    if (g[0]! >> 6 !== 0) throw new Error('GUE version/control bits are not 0');
    const hlen = g[0]! & 31;
    const flags = g.readUInt16BE(2);
    let remcsum: { start: number; offset: number } | undefined;
    if (flags & GUE_FLAG_PRIV && g.readUInt32BE(4) & GUE_PFLAG_REMCSUM) {
      const start = g.readUInt16BE(8);
      remcsum = { start, offset: g.readUInt16BE(10) - start };
    }
    return {
      ...out,
      type: 'gue',
      udp: { sport, dport, checksum },
      gue: { hlen, proto: g[1]!, flags, ...(remcsum ? { remcsum } : {}) },
      inner: g.subarray(4 + hlen * 4),
    };
  }
  throw new Error(`protocol ${out.proto} is not a tunnel protocol`);
}
