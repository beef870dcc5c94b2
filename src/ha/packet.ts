/**
 * VRRPv3 advertisements on the wire (RFC 5798 section 5), pure: encode and decode, and the
 * receive checks of section 7.1. Nothing here acts on a packet; a rejected one comes back
 * with a reason from a fixed list (DROP_REASONS), which the speaker counts and logs.
 *
 *    0                   1                   2                   3
 *   |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
 *   |(rsvd) |     Max Adver Int     |          Checksum             |
 *   |                       IPvX Address(es)                        |
 *
 * The checksum covers the VRRP message plus the IPv4/IPv6 pseudo-header (source,
 * destination, zero, protocol 112, VRRP length), which v3 added over v2. keepalived up to
 * 1.3.6 put the multicast group instead of the unicast peer in the IPv4 pseudo-header of
 * unicast adverts; keepalived 2.x still accepts that form (and then answers in it,
 * `old_unicast_checksum`), so the decoder accepts it too and says so.
 */
import { formatIPv4, formatIPv6, parseIPv4, parseIPv6 } from '../core/addr.js';

export const IPPROTO_VRRP = 112;
export const VRRP_GROUP4 = '224.0.0.18';
export const VRRP_GROUP6 = 'ff02::12';
export const VRRP_TTL = 255;
export const VRRP_VERSION = 3;
export const VRRP_TYPE_ADVERT = 1;
/** Priority of the address owner, and the "master is stopping" priority. */
export const PRIO_OWNER = 255;
export const PRIO_STOP = 0;
/** VRRP header without addresses. */
export const VRRP_HEADER_LEN = 8;
/** Max Adver Int: 12 bits of centiseconds. */
export const MAX_ADVER_INT_CS = 0xfff;

/** Why a received packet was dropped. Every reason is a label of tsvs_vrrp_dropped_total. */
export const DROP_REASONS = [
  'short', // shorter than an IP header plus the VRRP header
  'ip-header', // not IPv4, or a bad header length
  'protocol', // not protocol 112
  'ip-length', // IP total length differs from what was received
  'ttl', // TTL / hop limit not 255 on a multicast advert (RFC 5798 7.1)
  'version', // VRRP version not 3
  'type', // not an ADVERTISEMENT
  'length', // VRRP length does not match the address count
  'checksum', // bad checksum (with either pseudo-header form)
  'interval', // Max Adver Int of 0
  'vrid', // no instance with this VRID on the receiving interface
  'addr-count', // address count differs from the instance's VIPs (keepalived: addr_list_err)
  'addr-list', // the addresses differ from the instance's VIPs
  'own', // our own advert, looped back
  'family', // an IPv6 advert for an IPv4 instance or the reverse
] as const;
export type DropReason = (typeof DROP_REASONS)[number];

/** The VRRP part of an advertisement. */
export interface Advert {
  vrid: number;
  priority: number;
  /** Max Adver Int in centiseconds (1..4095). */
  maxAdverIntCs: number;
  /** The virtual addresses, IPv4 or IPv6 (one family per advert). */
  addrs: string[];
}

/** An advertisement as received, with the IP fields the receive checks need. */
export interface ReceivedAdvert extends Advert {
  family: 4 | 6;
  src: string;
  dst: string;
  ttl: number;
  /** The checksum matched only with keepalived <= 1.3.6's unicast pseudo-header (group as destination). */
  oldUnicastChecksum: boolean;
}

export type DecodeResult = { ok: true; advert: ReceivedAdvert } | { ok: false; reason: DropReason; detail: string };

function drop(reason: DropReason, detail: string): DecodeResult {
  return { ok: false, reason, detail };
}

/** RFC 1071 one's complement sum of 16-bit words, folded; `odd` bytes are padded with zero. */
function sum16(buf: Buffer, acc = 0): number {
  let s = acc;
  const n = buf.length & ~1;
  for (let i = 0; i < n; i += 2) s += buf.readUInt16BE(i);
  if (buf.length & 1) s += buf[buf.length - 1]! << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

function addrBytes(a: string): Buffer {
  const v4 = parseIPv4(a);
  if (v4 !== null) {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v4 >>> 0);
    return b;
  }
  const v6 = parseIPv6(a);
  if (!v6) throw new Error(`VRRP: "${a}" is not an IP address`);
  const b = Buffer.alloc(16);
  v6.forEach((g, i) => {
    b.writeUInt16BE(g, i * 2);
  });
  return b;
}

/** The pseudo-header of RFC 5798 5.2.8 (RFC 768 form for IPv4, RFC 8200 8.1 for IPv6). */
function pseudoHeader(src: string, dst: string, len: number): Buffer {
  const s = addrBytes(src);
  const d = addrBytes(dst);
  if (s.length === 4) {
    const p = Buffer.alloc(12);
    s.copy(p, 0);
    d.copy(p, 4);
    p[9] = IPPROTO_VRRP;
    p.writeUInt16BE(len, 10);
    return p;
  }
  const p = Buffer.alloc(40);
  s.copy(p, 0);
  d.copy(p, 16);
  p.writeUInt32BE(len, 32);
  p[39] = IPPROTO_VRRP;
  return p;
}

/** The checksum of a VRRP message (its checksum field taken as is) with the pseudo-header. */
export function vrrpChecksum(vrrp: Buffer, src: string, dst: string): number {
  return ~sum16(vrrp, sum16(pseudoHeader(src, dst, vrrp.length))) & 0xffff;
}

/** Encodes the VRRP message of an advert sent from `src` to `dst` (the group or a unicast peer). */
export function encodeAdvert(a: Advert, src: string, dst: string): Buffer {
  if (!Number.isInteger(a.vrid) || a.vrid < 1 || a.vrid > 255) throw new Error(`VRRP: VRID ${a.vrid} out of range 1-255`);
  if (!Number.isInteger(a.priority) || a.priority < 0 || a.priority > 255)
    throw new Error(`VRRP: priority ${a.priority} out of range 0-255`);
  if (!Number.isInteger(a.maxAdverIntCs) || a.maxAdverIntCs < 1 || a.maxAdverIntCs > MAX_ADVER_INT_CS) {
    throw new Error(`VRRP: advert interval ${a.maxAdverIntCs} cs out of range 1-${MAX_ADVER_INT_CS}`);
  }
  if (a.addrs.length > 255) throw new Error('VRRP: at most 255 addresses per advert');
  const addrs = a.addrs.map(addrBytes);
  const alen = addrBytes(src).length;
  if (addrs.some((b) => b.length !== alen)) throw new Error('VRRP: every address of an advert must be of the source address family');
  const buf = Buffer.alloc(VRRP_HEADER_LEN + alen * addrs.length);
  buf[0] = (VRRP_VERSION << 4) | VRRP_TYPE_ADVERT;
  buf[1] = a.vrid;
  buf[2] = a.priority;
  buf[3] = addrs.length;
  buf.writeUInt16BE(a.maxAdverIntCs & MAX_ADVER_INT_CS, 4);
  addrs.forEach((b, i) => {
    b.copy(buf, VRRP_HEADER_LEN + i * alen);
  });
  buf.writeUInt16BE(vrrpChecksum(buf, src, dst), 6);
  return buf;
}

/** The IPv4 header checksum (RFC 791). */
function ipv4HeaderChecksum(h: Buffer): number {
  return ~sum16(h) & 0xffff;
}

/**
 * A whole IPv4 packet for a raw socket with IP_HDRINCL: TTL 255, protocol 112, TOS 0xc0
 * (internetwork control, as keepalived sends), DF clear, the given IP id.
 */
export function encodeIpv4Packet(a: Advert, src: string, dst: string, id = 0, ttl = VRRP_TTL): Buffer {
  const vrrp = encodeAdvert(a, src, dst);
  const h = Buffer.alloc(20);
  h[0] = 0x45;
  h[1] = 0xc0;
  h.writeUInt16BE(20 + vrrp.length, 2);
  h.writeUInt16BE(id & 0xffff, 4);
  h[8] = ttl;
  h[9] = IPPROTO_VRRP;
  addrBytes(src).copy(h, 12);
  addrBytes(dst).copy(h, 16);
  h.writeUInt16BE(ipv4HeaderChecksum(h), 10);
  return Buffer.concat([h, vrrp]);
}

function isMulticast(addr: string): boolean {
  const v4 = parseIPv4(addr);
  if (v4 !== null) return v4 >>> 28 === 0xe;
  return addr.toLowerCase().startsWith('ff');
}

/**
 * Checks and decodes the VRRP message of a packet whose IP fields are known (IPv6 raw
 * sockets give no header; the caller supplies src, dst and hop limit from ancillary data).
 */
export function decodeVrrp(vrrp: Buffer, family: 4 | 6, src: string, dst: string, ttl: number): DecodeResult {
  if (vrrp.length < VRRP_HEADER_LEN) return drop('short', `${vrrp.length} bytes, shorter than the 8-byte VRRP header`);
  // RFC 5798 7.1: TTL 255 on multicast. keepalived skips the check for unicast (peers may be routed).
  if (ttl !== VRRP_TTL && isMulticast(dst)) return drop('ttl', `TTL ${ttl}, must be 255`);
  const version = vrrp[0]! >> 4;
  if (version !== VRRP_VERSION) return drop('version', `version ${version}, expected 3`);
  const type = vrrp[0]! & 0x0f;
  if (type !== VRRP_TYPE_ADVERT) return drop('type', `type ${type}, expected 1 (ADVERTISEMENT)`);
  const count = vrrp[3]!;
  const alen = family === 4 ? 4 : 16;
  const want = VRRP_HEADER_LEN + count * alen;
  if (vrrp.length !== want) return drop('length', `${vrrp.length} bytes for ${count} address(es), expected ${want}`);
  let old = false;
  if (vrrpChecksum(vrrp, src, dst) !== 0) {
    // vrrpChecksum over a message that carries its checksum is 0 when it is right.
    if (family === 4 && !isMulticast(dst) && vrrpChecksum(vrrp, src, VRRP_GROUP4) === 0) old = true;
    else return drop('checksum', `bad checksum 0x${vrrp.readUInt16BE(6).toString(16).padStart(4, '0')}`);
  }
  const maxAdverIntCs = vrrp.readUInt16BE(4) & MAX_ADVER_INT_CS;
  if (maxAdverIntCs === 0) return drop('interval', 'Max Adver Int 0');
  const addrs: string[] = [];
  for (let i = 0; i < count; i++) {
    const off = VRRP_HEADER_LEN + i * alen;
    if (family === 4) addrs.push(formatIPv4(vrrp.readUInt32BE(off)));
    else {
      const g: number[] = [];
      for (let j = 0; j < 8; j++) g.push(vrrp.readUInt16BE(off + j * 2));
      addrs.push(formatIPv6(g));
    }
  }
  return { ok: true, advert: { family, src, dst, ttl, vrid: vrrp[1]!, priority: vrrp[2]!, maxAdverIntCs, addrs, oldUnicastChecksum: old } };
}

/** Checks and decodes an IPv4 packet as an IPv4 raw socket delivers it (IP header included). */
export function decodeIpv4Packet(pkt: Buffer): DecodeResult {
  if (pkt.length < 20 + VRRP_HEADER_LEN) return drop('short', `${pkt.length} bytes`);
  if (pkt[0]! >> 4 !== 4) return drop('ip-header', `IP version ${pkt[0]! >> 4}`);
  const ihl = (pkt[0]! & 0x0f) * 4;
  if (ihl < 20 || ihl + VRRP_HEADER_LEN > pkt.length) return drop('ip-header', `IP header length ${ihl}`);
  if (pkt[9] !== IPPROTO_VRRP) return drop('protocol', `protocol ${pkt[9]}, expected 112`);
  const total = pkt.readUInt16BE(2);
  if (total !== pkt.length) return drop('ip-length', `IP total length ${total}, received ${pkt.length}`);
  const src = formatIPv4(pkt.readUInt32BE(12));
  const dst = formatIPv4(pkt.readUInt32BE(16));
  return decodeVrrp(pkt.subarray(ihl), 4, src, dst, pkt[8]!);
}

/** What an instance expects of adverts for it. */
export interface InstanceView {
  vrid: number;
  family: 4 | 6;
  /** Its virtual addresses, canonical, in any order. */
  vips: readonly string[];
  /** Addresses of this director (its own adverts, looped back, are dropped). */
  own: readonly string[];
}

/**
 * The per-instance part of RFC 5798 7.1 for a decoded advert: VRID (the caller picks the
 * instance by VRID and reports 'vrid' when none has it), family, our own advert, address
 * count and list (keepalived checks both and drops on a mismatch). The advert interval is
 * not checked: in v3 a backup learns the master's interval (keepalived logs the mismatch).
 */
export function checkForInstance(a: ReceivedAdvert, inst: InstanceView): { ok: true } | { ok: false; reason: DropReason; detail: string } {
  if (a.vrid !== inst.vrid) return { ok: false, reason: 'vrid', detail: `VRID ${a.vrid}, expected ${inst.vrid}` };
  if (a.family !== inst.family) return { ok: false, reason: 'family', detail: `IPv${a.family} advert for an IPv${inst.family} instance` };
  if (inst.own.includes(a.src)) return { ok: false, reason: 'own', detail: `own advert from ${a.src}` };
  if (a.addrs.length !== inst.vips.length) {
    return { ok: false, reason: 'addr-count', detail: `${a.addrs.length} address(es), expected ${inst.vips.length}` };
  }
  const want = new Set(inst.vips);
  const missing = a.addrs.find((x) => !want.has(x));
  if (missing !== undefined)
    return { ok: false, reason: 'addr-list', detail: `address ${missing} is not one of this instance's (${inst.vips.join(', ')})` };
  return { ok: true };
}
