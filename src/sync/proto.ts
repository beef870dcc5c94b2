/**
 * The IPVS connection synchronisation protocol, version 1, as the kernel speaks it
 * (net/netfilter/ipvs/ip_vs_sync.c): a pure codec, no sockets. Using the kernel's wire
 * format means a tcpdump of tsvs sync traffic reads like a kernel director's, and the
 * layout is a known, documented one rather than something new.
 *
 * Message (all fields big-endian, 8-byte header):
 *
 *   | 0 (reserved: v0 receivers drop) | syncid | size (whole message, bytes) |
 *   | nr_conns | version = 1 | spare = 0 (16 bits) |
 *   then nr_conns entries, each starting on a 4-byte boundary (zero padding before it).
 *
 * Entry (36 bytes for IPv4, type 0; 72 for IPv6, type bit 0 = STYPE_F_INET6):
 *
 *   type u8 | protocol u8 | ver_size be16 (version: top 4 bits = 0, size: low 12 bits,
 *   the entry with its options, without padding) | flags be32 | state be16 | cport be16 |
 *   vport be16 | dport be16 | fwmark be32 | timeout be32 (seconds) | caddr | vaddr | daddr
 *   then options, type u8 | len u8 | data: 1 = sequence data (24 bytes, in_seq and out_seq,
 *   each init_seq, delta, previous_delta), 2 = persistence-engine data, 3 = its name.
 *   An unknown option is skipped when its type has bit 6 set (IPVS_OPT_F_PARAM), and
 *   makes the entry unusable otherwise.
 *
 * Flags are the kernel's IP_VS_CONN_F_* values (not the core's own bit layout).
 *
 * Receiving differs from the kernel in one deliberate way: a structurally broken message
 * (bad size, truncated entry, entry version != 0, bad option framing) is dropped whole,
 * where the kernel has already applied the entries before the broken one. Version-0
 * messages (IPv4 only, no timeouts) are recognised and dropped.
 */
import { formatIPv4, formatIPv6, parseIPv4, parseIPv6 } from '../core/addr.js';
import type { Family } from '../core/types.js';

/** IP_VS_SYNC_GROUP, IP_VS_SYNC_PORT, SYNC_PROTO_VER. */
export const SYNC_GROUP = '224.0.0.81';
export const SYNC_PORT = 8848;
export const SYNC_PROTO_VER = 1;
/** ipvsadm's documented default --sync-maxlen: a 1500-byte MTU less the IP and UDP headers. */
export const DEFAULT_SYNC_MAXLEN = 1472;
/** ipvsadm accepts --sync-maxlen 1..65535-20-8. */
export const MAX_SYNC_MAXLEN = 65535 - 20 - 8;
export const MESG_HEADER_LEN = 8;
/** nr_conns is 8 bits. */
export const MAX_CONNS_PER_MESG = 255;
export const ENTRY_V4_LEN = 36;
export const ENTRY_V6_LEN = 72;

/** Kernel connection flags (include/uapi/linux/ip_vs.h). */
export const IPVS_CONN_F = {
  FWD_MASK: 0x0007,
  MASQ: 0x0000,
  LOCALNODE: 0x0001,
  TUNNEL: 0x0002,
  DROUTE: 0x0003,
  BYPASS: 0x0004,
  SYNC: 0x0020,
  HASHED: 0x0040,
  NOOUTPUT: 0x0080,
  INACTIVE: 0x0100,
  OUT_SEQ: 0x0200,
  IN_SEQ: 0x0400,
  SEQ_MASK: 0x0600,
  NO_CPORT: 0x0800,
  TEMPLATE: 0x1000,
  ONE_PACKET: 0x2000,
} as const;
/** Bits a backup takes from a synced entry (IP_VS_CONN_F_BACKUP_MASK). */
export const IPVS_CONN_F_BACKUP_MASK =
  IPVS_CONN_F.FWD_MASK | IPVS_CONN_F.NOOUTPUT | IPVS_CONN_F.INACTIVE | IPVS_CONN_F.SEQ_MASK | IPVS_CONN_F.NO_CPORT | IPVS_CONN_F.TEMPLATE;

const STYPE_F_INET6 = 1;
const SVER_SHIFT = 12;
const SVER_MASK = 0x0fff;
const OPT_SEQ_DATA = 1;
const OPT_PE_DATA = 2;
const OPT_PE_NAME = 3;
/** IPVS_OPT_F_PARAM: an unknown option with this bit set is optional. */
const OPT_F_PARAM = 1 << (7 - 1);
const SEQ_OPT_LEN = 24;
/** IP_VS_PENAME_MAXLEN, IP_VS_PEDATA_MAXLEN. */
const PENAME_MAXLEN = 16;
const PEDATA_MAXLEN = 255;

/** IP protocol numbers the sync protocol carries. */
export const PROTO = { ip: 0, tcp: 6, udp: 17, sctp: 132 } as const;
export type SyncProtocolName = keyof typeof PROTO;
export function protocolName(n: number): SyncProtocolName | null {
  for (const [k, v] of Object.entries(PROTO)) if (v === n) return k as SyncProtocolName;
  return null;
}

/** Number of states per protocol on the kernel (IP_VS_*_S_LAST); a synced state must be below it. */
const NUM_STATES: Record<number, number> = { [PROTO.tcp]: 11, [PROTO.udp]: 1, [PROTO.sctp]: 13 };
/** Template states: NONE and ASSURED (IP_VS_CTPL_S_LAST = 2). */
const TEMPLATE_STATES = 2;

/** One direction's TCP sequence adjustment (struct ip_vs_seq). */
export interface SyncSeq {
  initSeq: number;
  delta: number;
  previousDelta: number;
}

/** One connection entry or persistence template, as carried on the wire. */
export interface SyncConn {
  af: Family;
  /** IP protocol number (6 TCP, 17 UDP, 132 SCTP, 0 for fwmark templates). */
  protocol: number;
  /** IP_VS_CONN_F_* bits. */
  flags: number;
  state: number;
  cport: number;
  vport: number;
  dport: number;
  fwmark: number;
  /** Seconds; 0 means "use the protocol's timeout for the state". */
  timeout: number;
  caddr: string;
  vaddr: string;
  daddr: string;
  seq?: { in: SyncSeq; out: SyncSeq };
  peName?: string;
  peData?: Buffer;
}

/** Bytes the entry takes without padding (what ver_size carries). */
export function entryLength(c: SyncConn): number {
  let len = c.af === 6 ? ENTRY_V6_LEN : ENTRY_V4_LEN;
  if (c.seq) len += SEQ_OPT_LEN + 2;
  if (c.peData?.length) {
    len += c.peData.length + 2;
    if (c.peName) len += Buffer.byteLength(c.peName) + 2;
  }
  return len;
}

function writeAddr(buf: Buffer, off: number, af: Family, addr: string): void {
  if (af === 4) {
    const v = parseIPv4(addr);
    if (v === null) throw new Error(`sync entry: "${addr}" is not an IPv4 address`);
    buf.writeUInt32BE(v, off);
    return;
  }
  const g = parseIPv6(addr);
  if (!g) throw new Error(`sync entry: "${addr}" is not an IPv6 address`);
  for (let i = 0; i < 8; i++) buf.writeUInt16BE(g[i]!, off + 2 * i);
}

function readAddr(buf: Buffer, off: number, af: Family): string {
  if (af === 4) return formatIPv4(buf.readUInt32BE(off));
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push(buf.readUInt16BE(off + 2 * i));
  return formatIPv6(g);
}

/** Writes one entry at `off` of `buf`; returns its length. */
function writeEntry(buf: Buffer, off: number, c: SyncConn): number {
  const len = entryLength(c);
  if (len > SVER_MASK) throw new Error(`sync entry of ${len} bytes does not fit the 12-bit size field`);
  buf.writeUInt8(c.af === 6 ? STYPE_F_INET6 : 0, off);
  buf.writeUInt8(c.protocol, off + 1);
  buf.writeUInt16BE(len & SVER_MASK, off + 2); // version 0 in the top bits
  buf.writeUInt32BE((c.flags & ~IPVS_CONN_F.HASHED) >>> 0, off + 4);
  buf.writeUInt16BE(c.state, off + 8);
  buf.writeUInt16BE(c.cport, off + 10);
  buf.writeUInt16BE(c.vport, off + 12);
  buf.writeUInt16BE(c.dport, off + 14);
  buf.writeUInt32BE(c.fwmark >>> 0, off + 16);
  buf.writeUInt32BE(c.timeout >>> 0, off + 20);
  const w = c.af === 6 ? 16 : 4;
  writeAddr(buf, off + 24, c.af, c.caddr);
  writeAddr(buf, off + 24 + w, c.af, c.vaddr);
  writeAddr(buf, off + 24 + 2 * w, c.af, c.daddr);
  let p = off + 24 + 3 * w;
  if (c.seq) {
    buf.writeUInt8(OPT_SEQ_DATA, p++);
    buf.writeUInt8(SEQ_OPT_LEN, p++);
    for (const s of [c.seq.in, c.seq.out]) {
      buf.writeUInt32BE(s.initSeq >>> 0, p);
      buf.writeUInt32BE(s.delta >>> 0, p + 4);
      buf.writeUInt32BE(s.previousDelta >>> 0, p + 8);
      p += 12;
    }
  }
  if (c.peData?.length) {
    buf.writeUInt8(OPT_PE_DATA, p++);
    buf.writeUInt8(c.peData.length, p++);
    c.peData.copy(buf, p);
    p += c.peData.length;
    if (c.peName) {
      const name = Buffer.from(c.peName);
      buf.writeUInt8(OPT_PE_NAME, p++);
      buf.writeUInt8(name.length, p++);
      name.copy(buf, p);
      p += name.length;
    }
  }
  return len;
}

/**
 * Packs entries into messages the way the kernel's sync buffer fills: each entry starts
 * on a 4-byte boundary, and a message is closed when the next entry (with its padding)
 * would pass `maxlen` bytes or it holds 255 entries. An entry too big for `maxlen` on its
 * own is sent alone.
 */
export function encodeMessages(syncid: number, conns: readonly SyncConn[], maxlen = DEFAULT_SYNC_MAXLEN): Buffer[] {
  const out: Buffer[] = [];
  let buf = Buffer.alloc(Math.max(maxlen, MESG_HEADER_LEN));
  let head = MESG_HEADER_LEN;
  let n = 0;
  const close = () => {
    if (!n) return;
    const m = buf.subarray(0, head);
    m.writeUInt8(0, 0);
    m.writeUInt8(syncid & 0xff, 1);
    m.writeUInt16BE(head, 2);
    m.writeUInt8(n, 4);
    m.writeInt8(SYNC_PROTO_VER, 5);
    m.writeUInt16BE(0, 6);
    out.push(Buffer.from(m));
    buf.fill(0);
    head = MESG_HEADER_LEN;
    n = 0;
  };
  for (const c of conns) {
    const len = entryLength(c);
    let pad = (4 - head) & 3;
    if (n === MAX_CONNS_PER_MESG || (n > 0 && head + pad + len > maxlen)) {
      close();
      pad = 0;
    }
    if (MESG_HEADER_LEN + len > buf.length) buf = Buffer.alloc(MESG_HEADER_LEN + len);
    head += pad;
    head += writeEntry(buf, head, c);
    n++;
  }
  close();
  return out;
}

/** Why a whole message was dropped, for counters and debug logs. */
export type DropReason = 'too-short' | 'bad-size' | 'version-0' | 'truncated-entry' | 'entry-version' | 'bad-type' | 'bad-option';

/** Why one entry of an otherwise good message was skipped (the kernel's positive codes). */
export type SkipReason = 'unknown-protocol' | 'bad-state' | 'mandatory-option' | 'bad-pe';

export type Decoded =
  | { ok: true; syncid: number; conns: SyncConn[]; skipped: SkipReason[] }
  | { ok: false; syncid: number | null; reason: DropReason; detail: string };

function drop(reason: DropReason, detail: string, syncid: number | null = null): Decoded {
  return { ok: false, syncid, reason, detail };
}

/**
 * Decodes one datagram. The caller filters on syncid (the kernel's backup ignores a
 * message whose syncid differs from its own when its own is not 0).
 */
export function decodeMessage(buf: Buffer): Decoded {
  if (buf.length < 4) return drop('too-short', `message of ${buf.length} bytes is shorter than a header`);
  const size = buf.readUInt16BE(2);
  const syncid = buf.readUInt8(1);
  if (size !== buf.length) return drop('bad-size', `header says ${size} bytes, datagram has ${buf.length}`, syncid);
  if (buf.length < MESG_HEADER_LEN || buf.readUInt8(0) !== 0 || buf.readInt8(5) !== SYNC_PROTO_VER || buf.readUInt16BE(6) !== 0) {
    return drop('version-0', 'not a version-1 message (reserved, version or spare field); version 0 is not supported', syncid);
  }
  const nr = buf.readUInt8(4);
  const conns: SyncConn[] = [];
  const skipped: SkipReason[] = [];
  let p = MESG_HEADER_LEN;
  for (let i = 0; i < nr; i++) {
    if (p + ENTRY_V4_LEN > buf.length)
      return drop('truncated-entry', `entry ${i + 1} of ${nr} starts at ${p} but the message ends at ${buf.length}`, syncid);
    const verSize = buf.readUInt16BE(p + 2);
    const size = verSize & SVER_MASK;
    const end = p + size;
    if (end > buf.length)
      return drop('truncated-entry', `entry ${i + 1} of ${nr}: ${size} bytes at ${p} run past the message end ${buf.length}`, syncid);
    if (verSize >> SVER_SHIFT) return drop('entry-version', `entry ${i + 1}: version ${verSize >> SVER_SHIFT}, only 0 is known`, syncid);
    const r = decodeEntry(buf, p, end);
    if (typeof r === 'string') return drop(r, `entry ${i + 1} of ${nr} at offset ${p}: ${DROP_TEXT[r]}`, syncid);
    if ('skip' in r) skipped.push(r.skip);
    else conns.push(r.conn);
    p += (size + 3) & ~3;
  }
  return { ok: true, syncid, conns, skipped };
}

const DROP_TEXT = {
  'bad-type': 'unknown entry type',
  'truncated-entry': 'size is smaller than the fixed part of the entry',
  'bad-option': 'option framing is broken (zero or overlong length, bad sequence-data length, or an option twice)',
} as const;

function decodeEntry(buf: Buffer, start: number, end: number): { conn: SyncConn } | { skip: SkipReason } | keyof typeof DROP_TEXT {
  const type = buf.readUInt8(start);
  let af: Family;
  if (type & STYPE_F_INET6) af = 6;
  else if (type === 0) af = 4;
  else return 'bad-type';
  const w = af === 6 ? 16 : 4;
  let p = start + 24 + 3 * w;
  if (p > end) return 'truncated-entry';
  let seq: SyncConn['seq'];
  let peData: Buffer | undefined;
  let peName: string | undefined;
  let mandatoryUnknown = false;
  while (p < end) {
    if (p + 2 > end) return 'bad-option';
    const ptype = buf.readUInt8(p);
    const plen = buf.readUInt8(p + 1);
    p += 2;
    if (!plen || p + plen > end) return 'bad-option';
    switch (ptype & ~OPT_F_PARAM) {
      case OPT_SEQ_DATA: {
        if (plen !== SEQ_OPT_LEN || seq) return 'bad-option';
        const rd = (o: number): SyncSeq => ({
          initSeq: buf.readUInt32BE(o),
          delta: buf.readUInt32BE(o + 4),
          previousDelta: buf.readUInt32BE(o + 8),
        });
        seq = { in: rd(p), out: rd(p + 12) };
        break;
      }
      case OPT_PE_DATA:
        if (plen > PEDATA_MAXLEN || peData) return 'bad-option';
        peData = Buffer.from(buf.subarray(p, p + plen));
        break;
      case OPT_PE_NAME:
        if (plen > PENAME_MAXLEN || peName !== undefined) return 'bad-option';
        peName = buf.toString('latin1', p, p + plen);
        break;
      default:
        if (!(ptype & OPT_F_PARAM)) mandatoryUnknown = true;
    }
    p += plen;
  }
  if (mandatoryUnknown) return { skip: 'mandatory-option' };
  const flags = (buf.readUInt32BE(start + 4) & IPVS_CONN_F_BACKUP_MASK) >>> 0;
  const protocol = buf.readUInt8(start + 1);
  let state = buf.readUInt16BE(start + 8);
  if (!(flags & IPVS_CONN_F.TEMPLATE)) {
    const n = NUM_STATES[protocol];
    if (n === undefined) return { skip: 'unknown-protocol' };
    if (state >= n) return { skip: 'bad-state' };
  } else if (state >= TEMPLATE_STATES) {
    state = 0; // the kernel resets a template's unknown state rather than dropping it
  }
  if (peData && !peName) return { skip: 'bad-pe' };
  const conn: SyncConn = {
    af,
    protocol,
    flags,
    state,
    cport: buf.readUInt16BE(start + 10),
    vport: buf.readUInt16BE(start + 12),
    dport: buf.readUInt16BE(start + 14),
    fwmark: buf.readUInt32BE(start + 16),
    timeout: buf.readUInt32BE(start + 20),
    caddr: readAddr(buf, start + 24, af),
    vaddr: readAddr(buf, start + 24 + w, af),
    daddr: readAddr(buf, start + 24 + 2 * w, af),
  };
  if (seq) conn.seq = seq;
  if (peData) conn.peData = peData;
  if (peName !== undefined) conn.peName = peName;
  return { conn };
}
