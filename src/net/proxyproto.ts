/**
 * The PROXY protocol (haproxy's doc/proxy-protocol.txt), versions 1 and 2, as the userspace
 * plane sends it to real servers that read it (nginx `listen ... proxy_protocol`, haproxy
 * `accept-proxy`): a header in front of the relayed bytes that names the client's address
 * and port and the address the client connected to (the VIP), so a full-NAT proxy does not
 * hide the client. Pure: bytes in, bytes out; the decoder is for tests and tools.
 *
 *   v1 (text, at most 107 bytes):  "PROXY TCP4 198.18.0.10 198.18.0.1 40000 80\r\n"
 *                                  "PROXY TCP6 <src> <dst> <sport> <dport>\r\n", "PROXY UNKNOWN\r\n"
 *   v2 (binary, 16 bytes + addresses):
 *     0..11  signature 0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A
 *     12     version (2) << 4 | command (0 LOCAL, 1 PROXY)
 *     13     family << 4 | transport: AF_UNSPEC 0, AF_INET 1, AF_INET6 2; UNSPEC 0, STREAM 1, DGRAM 2
 *     14..15 length of what follows, big endian: 12 (IPv4), 36 (IPv6), 0 (UNSPEC)
 *     16..   src addr, dst addr, src port, dst port (network order)
 *
 * v1 only describes TCP; v2 also describes UDP (DGRAM), where the header goes in front of
 * every datagram. Mixed families (a v4-mapped client of an IPv6 service, once unmapped)
 * give v1 UNKNOWN and v2 \x00 (UNSPEC, no addresses), which receivers must accept and
 * then use the connection's own addresses.
 */
import { familyOf, formatIPv6, parseIPv4, parseIPv6 } from '../core/addr.js';

export type ProxyProtocolVersion = 'v1' | 'v2';

/** The v2 signature: "\r\n\r\n\0\r\nQUIT\n". */
export const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/** The longest v1 header the spec allows, CRLF included. */
export const V1_MAX_LENGTH = 107;

/** What a header says: the relayed connection, as the proxy saw it. */
export interface ProxyAddresses {
  protocol: 'tcp' | 'udp';
  /** The client. */
  srcAddr: string;
  srcPort: number;
  /** What the client connected to (the VIP). */
  dstAddr: string;
  dstPort: number;
}

/** The v1 header for a TCP connection; UNKNOWN when the two addresses' families differ. */
export function encodeV1(a: ProxyAddresses): Buffer {
  if (a.protocol !== 'tcp') throw new Error('PROXY protocol v1 describes TCP only; use v2 for UDP');
  const af = familyOf(a.srcAddr);
  if (af === null || af !== familyOf(a.dstAddr)) return Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
  checkPort(a.srcPort);
  checkPort(a.dstPort);
  return Buffer.from(`PROXY TCP${af} ${a.srcAddr} ${a.dstAddr} ${a.srcPort} ${a.dstPort}\r\n`, 'latin1');
}

/** The v2 header (command PROXY) for a TCP connection or a UDP datagram. */
export function encodeV2(a: ProxyAddresses): Buffer {
  const transport = a.protocol === 'udp' ? 0x2 : 0x1;
  const af = familyOf(a.srcAddr);
  if (af === null || af !== familyOf(a.dstAddr)) {
    const b = Buffer.alloc(16);
    V2_SIGNATURE.copy(b, 0);
    b[12] = 0x21;
    // \x00 UNSPEC: the spec lists no other byte for an unspecified family.
    b[13] = 0x00;
    return b;
  }
  checkPort(a.srcPort);
  checkPort(a.dstPort);
  const alen = af === 4 ? 4 : 16;
  const b = Buffer.alloc(16 + 2 * alen + 4);
  V2_SIGNATURE.copy(b, 0);
  b[12] = 0x21;
  b[13] = ((af === 4 ? 0x1 : 0x2) << 4) | transport;
  b.writeUInt16BE(2 * alen + 4, 14);
  writeAddr(b, 16, a.srcAddr, af);
  writeAddr(b, 16 + alen, a.dstAddr, af);
  b.writeUInt16BE(a.srcPort, 16 + 2 * alen);
  b.writeUInt16BE(a.dstPort, 16 + 2 * alen + 2);
  return b;
}

/** The header of `version` for a connection or datagram. */
export function encodeProxyHeader(version: ProxyProtocolVersion, a: ProxyAddresses): Buffer {
  return version === 'v1' ? encodeV1(a) : encodeV2(a);
}

function checkPort(p: number): void {
  if (!Number.isInteger(p) || p < 0 || p > 65535) throw new Error(`PROXY protocol: port ${p} is not 0..65535`);
}

function writeAddr(b: Buffer, at: number, addr: string, af: 4 | 6): void {
  if (af === 4) {
    b.writeUInt32BE(parseIPv4(addr)!, at);
    return;
  }
  const g = parseIPv6(addr)!;
  for (let i = 0; i < 8; i++) b.writeUInt16BE(g[i]!, at + 2 * i);
}

/** A decoded header: its addresses (null for UNKNOWN / LOCAL / AF_UNSPEC) and its length in bytes. */
export interface DecodedProxyHeader {
  version: ProxyProtocolVersion;
  /** v2 command: 'proxy' or 'local'; v1 is always 'proxy'. */
  command: 'proxy' | 'local';
  addresses: ProxyAddresses | null;
  length: number;
}

/**
 * Decodes a header at the start of `buf`. Returns null when more bytes are needed; throws
 * on a malformed header (a receiver must then close the connection).
 */
export function decodeProxyHeader(buf: Buffer): DecodedProxyHeader | null {
  if (buf.length === 0) return null;
  if (buf[0] === 0x0d) return decodeV2(buf);
  if (buf[0] === 0x50) return decodeV1(buf);
  throw new Error('not a PROXY protocol header');
}

function decodeV1(buf: Buffer): DecodedProxyHeader | null {
  const end = buf.indexOf('\r\n', 0, 'latin1');
  if (end < 0) {
    if (buf.length >= V1_MAX_LENGTH) throw new Error('PROXY v1: no CRLF within 107 bytes');
    if (
      !Buffer.from('PROXY ')
        .subarray(0, Math.min(6, buf.length))
        .equals(buf.subarray(0, Math.min(6, buf.length)))
    )
      throw new Error('PROXY v1: bad prefix');
    return null;
  }
  const line = buf.toString('latin1', 0, end);
  const length = end + 2;
  if (length > V1_MAX_LENGTH) throw new Error('PROXY v1: header longer than 107 bytes');
  const parts = line.split(' ');
  if (parts[0] !== 'PROXY') throw new Error('PROXY v1: bad prefix');
  if (parts[1] === 'UNKNOWN') return { version: 'v1', command: 'proxy', addresses: null, length };
  if ((parts[1] !== 'TCP4' && parts[1] !== 'TCP6') || parts.length !== 6)
    throw new Error(`PROXY v1: malformed line ${JSON.stringify(line)}`);
  const af = parts[1] === 'TCP4' ? 4 : 6;
  const [src, dst, sp, dp] = parts.slice(2) as [string, string, string, string];
  if (familyOf(src) !== af || familyOf(dst) !== af || !/^\d{1,5}$/.test(sp) || !/^\d{1,5}$/.test(dp) || +sp > 65535 || +dp > 65535) {
    throw new Error(`PROXY v1: malformed line ${JSON.stringify(line)}`);
  }
  return {
    version: 'v1',
    command: 'proxy',
    addresses: { protocol: 'tcp', srcAddr: src, dstAddr: dst, srcPort: +sp, dstPort: +dp },
    length,
  };
}

function decodeV2(buf: Buffer): DecodedProxyHeader | null {
  const n = Math.min(buf.length, 12);
  if (!buf.subarray(0, n).equals(V2_SIGNATURE.subarray(0, n))) throw new Error('PROXY v2: bad signature');
  if (buf.length < 16) return null;
  const vc = buf[12]!;
  if (vc >> 4 !== 2) throw new Error(`PROXY v2: version ${vc >> 4}`);
  const cmd = vc & 0xf;
  if (cmd > 1) throw new Error(`PROXY v2: unknown command ${cmd}`);
  const len = buf.readUInt16BE(14);
  if (buf.length < 16 + len) return null;
  const length = 16 + len;
  const command = cmd === 0 ? 'local' : 'proxy';
  const fam = buf[13]! >> 4;
  const tr = buf[13]! & 0xf;
  if (command === 'local' || fam === 0 || (tr !== 1 && tr !== 2)) return { version: 'v2', command, addresses: null, length };
  const protocol = tr === 2 ? 'udp' : 'tcp';
  if (fam === 1 && len >= 12) {
    const ip = (o: number) => [buf[o], buf[o + 1], buf[o + 2], buf[o + 3]].join('.');
    return {
      version: 'v2',
      command,
      length,
      addresses: { protocol, srcAddr: ip(16), dstAddr: ip(20), srcPort: buf.readUInt16BE(24), dstPort: buf.readUInt16BE(26) },
    };
  }
  if (fam === 2 && len >= 36) {
    const ip = (o: number) => {
      const g: number[] = [];
      for (let i = 0; i < 8; i++) g.push(buf.readUInt16BE(o + 2 * i));
      return formatV6(g);
    };
    return {
      version: 'v2',
      command,
      length,
      addresses: { protocol, srcAddr: ip(16), dstAddr: ip(32), srcPort: buf.readUInt16BE(48), dstPort: buf.readUInt16BE(50) },
    };
  }
  if (fam === 3) return { version: 'v2', command, addresses: null, length };
  throw new Error(`PROXY v2: family ${fam} with ${len} address bytes`);
}

function formatV6(g: number[]): string {
  return formatIPv6(g);
}
