/**
 * The generic part of netlink (linux/netlink.h), pure: attributes (nlattr, 4-byte
 * aligned, nested), the 16-byte nlmsghdr, splitting a received buffer into messages and
 * the errno of an NLMSG_ERROR. nf_tables/nfnetlink_queue specifics stay in
 * dataplane/nftables/netlink.ts, RTM_* ones in ha/rtnl.ts. Netlink headers and attribute
 * headers are host (little) endian.
 */

export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const NLM_F_REQUEST = 0x1;
export const NLM_F_ACK = 0x4;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
export const NLM_F_APPEND = 0x800;
export const NLA_F_NESTED = 0x8000;
export const NLMSG_HDRLEN = 16;
export const align4 = (n: number): number => (n + 3) & ~3;

/** A netlink attribute: type, and a payload or nested attributes. */
export type Attr = { type: number; data: Buffer } | { type: number; nested: Attr[] };

/** Attributes, each header + payload padded to 4 bytes (nested ones with NLA_F_NESTED). */
export function encodeAttrs(attrs: readonly Attr[]): Buffer {
  const parts: Buffer[] = [];
  for (const a of attrs) {
    const body = 'nested' in a ? encodeAttrs(a.nested) : a.data;
    const hdr = Buffer.alloc(4);
    hdr.writeUInt16LE(4 + body.length, 0);
    hdr.writeUInt16LE('nested' in a ? a.type | NLA_F_NESTED : a.type, 2);
    parts.push(hdr, body, Buffer.alloc(align4(body.length) - body.length));
  }
  return Buffer.concat(parts);
}

/** One netlink message: nlmsghdr (length, type, flags, seq, pid 0) followed by `body`. */
export function nlMessage(type: number, flags: number, seq: number, body: Buffer): Buffer {
  const b = Buffer.alloc(NLMSG_HDRLEN + body.length);
  b.writeUInt32LE(b.length, 0);
  b.writeUInt16LE(type, 4);
  b.writeUInt16LE(flags, 6);
  b.writeUInt32LE(seq >>> 0, 8);
  b.writeUInt32LE(0, 12);
  body.copy(b, NLMSG_HDRLEN);
  return b;
}

export interface NlMessage {
  type: number;
  flags: number;
  seq: number;
  /** Everything after the 16-byte header. */
  payload: Buffer;
}

/** Splits a received buffer into its netlink messages (stops at a truncated one). */
export function parseMessages(buf: Buffer): NlMessage[] {
  const out: NlMessage[] = [];
  let off = 0;
  while (off + NLMSG_HDRLEN <= buf.length) {
    const len = buf.readUInt32LE(off);
    if (len < NLMSG_HDRLEN || off + len > buf.length) break;
    out.push({
      type: buf.readUInt16LE(off + 4),
      flags: buf.readUInt16LE(off + 6),
      seq: buf.readUInt32LE(off + 8),
      payload: buf.subarray(off + NLMSG_HDRLEN, off + len),
    });
    off += align4(len);
  }
  return out;
}

/** Attributes of a payload (from `start`), by type (the NESTED/BYTEORDER bits masked off). */
export function parseAttrs(buf: Buffer, start = 0): Map<number, Buffer> {
  return new Map(parseAttrList(buf, start).map((a) => [a.type, a.data]));
}

/**
 * Attributes of a payload in order, repeats kept (a nested list such as nf_tables'
 * NFTA_LIST_ELEM repeats one type); stops at a truncated one.
 */
export function parseAttrList(buf: Buffer, start = 0): Array<{ type: number; data: Buffer }> {
  const out: Array<{ type: number; data: Buffer }> = [];
  let off = start;
  while (off + 4 <= buf.length) {
    const len = buf.readUInt16LE(off);
    if (len < 4 || off + len > buf.length) break;
    out.push({ type: buf.readUInt16LE(off + 2) & 0x3fff, data: buf.subarray(off + 4, off + len) });
    off += align4(len);
  }
  return out;
}

/** An NLMSG_ERROR's errno (0 = the ACK of success), as a positive number. */
export function errorCode(m: NlMessage): number {
  return m.payload.length >= 4 ? Math.abs(m.payload.readInt32LE(0)) : 0;
}
