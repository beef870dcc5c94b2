/**
 * Pure codec for ctnetlink (nfnetlink subsystem NFNL_SUBSYS_CTNETLINK): the requests tsvs
 * sends (a dump filtered by mark, a flush or a delete by mark, a per-tuple delete, the
 * stats probe) and the parsing of the kernel's conntrack messages (dump replies and
 * events) into tsvs's CtEntry. No I/O: ctread.ts moves the bytes, ct-worker.ts follows
 * events. Numbers are from the kernel's UAPI headers: linux/netfilter/nfnetlink.h,
 * nfnetlink_conntrack.h and nf_conntrack_tcp.h. Attribute values are big endian, netlink
 * and attribute headers host (little) endian.
 */
import type { Attr } from '../../net/netlink.js';
import { formatIPv6, parseIPv4, parseIPv6 } from '../../core/addr.js';
import type { ConnTuple } from '../../core/types.js';
import { nfnlMessage, NLM_F_ACK, NLM_F_REQUEST, u32be } from './netlink.js';

// linux/netlink.h: NLM_F_ROOT | NLM_F_MATCH
export const NLM_F_DUMP = 0x300;
export const NLM_F_CREATE = 0x400;
// netfilter/nfnetlink.h
const NFNL_SUBSYS_CTNETLINK = 1;
export const NFNLGRP_CONNTRACK_NEW = 1;
export const NFNLGRP_CONNTRACK_UPDATE = 2;
export const NFNLGRP_CONNTRACK_DESTROY = 3;
const AF_UNSPEC = 0;
const AF_INET = 2;
const AF_INET6 = 10;
// netfilter/nfnetlink_conntrack.h: enum cntl_msg_types
const IPCTNL_MSG_CT_NEW = 0;
export const IPCTNL_MSG_CT_GET = 1;
export const IPCTNL_MSG_CT_DELETE = 2;
export const IPCTNL_MSG_CT_GET_STATS = 5;
// enum ctattr_type
const CTA_TUPLE_ORIG = 1;
const CTA_TUPLE_REPLY = 2;
const CTA_PROTOINFO = 4;
const CTA_TIMEOUT = 7;
export const CTA_MARK = 8;
export const CTA_MARK_MASK = 21;
// enum ctattr_tuple
const CTA_TUPLE_IP = 1;
const CTA_TUPLE_PROTO = 2;
// enum ctattr_ip
const CTA_IP_V4_SRC = 1;
const CTA_IP_V4_DST = 2;
const CTA_IP_V6_SRC = 3;
const CTA_IP_V6_DST = 4;
// enum ctattr_l4proto
const CTA_PROTO_NUM = 1;
const CTA_PROTO_SRC_PORT = 2;
const CTA_PROTO_DST_PORT = 3;
// enum ctattr_protoinfo, ctattr_protoinfo_tcp
export const CTA_PROTOINFO_TCP = 1;
const CTA_PROTOINFO_TCP_STATE = 1;
const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;

/** enum tcp_conntrack by value, named as conntrack(8) prints them (9 is SYN_SENT2, formerly LISTEN). */
const TCP_STATES = [
  'NONE',
  'SYN_SENT',
  'SYN_RECV',
  'ESTABLISHED',
  'FIN_WAIT',
  'CLOSE_WAIT',
  'LAST_ACK',
  'TIME_WAIT',
  'CLOSE',
  'SYN_SENT2',
] as const;

/** A tsvs connection as conntrack holds it; `daddr:dport` (the real server) is the reply tuple's source. */
export interface CtEntry extends ConnTuple {
  af: 4 | 6;
  protocol: 'tcp' | 'udp';
  /** Seconds until conntrack expires the entry. */
  timeout: number;
  /** conntrack's TCP state name (ESTABLISHED, TIME_WAIT, ...), '' for UDP. */
  state: string;
  mark: number;
}

export interface CtEvent {
  kind: 'new' | 'update' | 'destroy';
  entry: CtEntry;
}

/** The kernel's mark filter: an entry matches when `(ctmark & mask) === value`. */
export interface CtMarkFilter {
  value: number;
  mask: number;
}

const markAttrs = (f: CtMarkFilter): Attr[] => [
  { type: CTA_MARK, data: u32be(f.value) },
  { type: CTA_MARK_MASK, data: u32be(f.mask) },
];

/**
 * IPCTNL_MSG_CT_GET with NLM_F_DUMP: every entry of both families (`af` narrows it), or only
 * those matching `mark`, filtered in the kernel so that other entries never cross.
 */
export function ctDumpRequest(seq: number, opts: { af?: 4 | 6; mark?: CtMarkFilter } = {}): Buffer {
  const family = opts.af === 4 ? AF_INET : opts.af === 6 ? AF_INET6 : AF_UNSPEC;
  return nfnlMessage(
    NFNL_SUBSYS_CTNETLINK,
    IPCTNL_MSG_CT_GET,
    NLM_F_REQUEST | NLM_F_DUMP,
    seq,
    family,
    0,
    opts.mark ? markAttrs(opts.mark) : [],
  );
}

/**
 * IPCTNL_MSG_CT_DELETE without a tuple: the kernel flushes every entry whose mark matches,
 * in one table walk. nfgenmsg version 0 with AF_UNSPEC covers both families.
 */
export function ctFlushMarkRequest(seq: number, mark: CtMarkFilter): Buffer {
  return nfnlMessage(NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, seq, AF_UNSPEC, 0, markAttrs(mark));
}

/** IPCTNL_MSG_CT_DELETE of one entry, by its original tuple. */
export function ctDeleteTupleRequest(seq: number, e: Pick<CtEntry, 'af' | 'protocol' | 'caddr' | 'cport' | 'vaddr' | 'vport'>): Buffer {
  const v4 = e.af === 4;
  const ip: Attr[] = [
    { type: v4 ? CTA_IP_V4_SRC : CTA_IP_V6_SRC, data: addrBytes(e.caddr, e.af) },
    { type: v4 ? CTA_IP_V4_DST : CTA_IP_V6_DST, data: addrBytes(e.vaddr, e.af) },
  ];
  const proto: Attr[] = [
    { type: CTA_PROTO_NUM, data: Buffer.from([e.protocol === 'tcp' ? IPPROTO_TCP : IPPROTO_UDP]) },
    { type: CTA_PROTO_SRC_PORT, data: be16(e.cport) },
    { type: CTA_PROTO_DST_PORT, data: be16(e.vport) },
  ];
  return nfnlMessage(NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, seq, v4 ? AF_INET : AF_INET6, 0, [
    {
      type: CTA_TUPLE_ORIG,
      nested: [
        { type: CTA_TUPLE_IP, nested: ip },
        { type: CTA_TUPLE_PROTO, nested: proto },
      ],
    },
  ]);
}

/** IPCTNL_MSG_CT_GET_STATS (acknowledged): answers only where the kernel has ctnetlink. */
export function ctStatsRequest(seq: number): Buffer {
  return nfnlMessage(NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_GET_STATS, NLM_F_REQUEST | NLM_F_ACK, seq, AF_UNSPEC, 0, []);
}

const be16 = (v: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v);
  return b;
};

function addrBytes(a: string, af: 4 | 6): Buffer {
  const b = Buffer.alloc(af === 4 ? 4 : 16);
  if (af === 4) {
    const v = parseIPv4(a);
    if (v === null) throw new TypeError(`conntrack tuple: not an IPv4 address: ${a.slice(0, 64)}`);
    b.writeUInt32BE(v >>> 0);
  } else {
    const g = parseIPv6(a);
    if (!g) throw new TypeError(`conntrack tuple: not an IPv6 address: ${a.slice(0, 64)}`);
    g.forEach((w, i) => {
      b.writeUInt16BE(w, i * 2);
    });
  }
  return b;
}

// ------------------------------------------------------------------ parsing

/** Attribute types kept by scan(): every ctnetlink type parsed here is below it. */
const SLOTS = 16;

/**
 * Payload offset and length of each attribute type (< SLOTS) of one flat attribute run, in
 * `slots` (2 per type: offset, length; offset -1 when absent). Offsets avoid a Buffer or a
 * Map per attribute: a dump of 100,000 entries walks 2 million attributes.
 */
function scan(buf: Buffer, off: number, end: number, slots: Int32Array): void {
  slots.fill(-1);
  while (off + 4 <= end) {
    // Little-endian u16s by hand: no bounds-checked call per attribute.
    const len = buf[off]! | (buf[off + 1]! << 8);
    if (len < 4 || off + len > end) break;
    const type = (buf[off + 2]! | (buf[off + 3]! << 8)) & 0x3fff;
    if (type < SLOTS) {
      slots[type * 2] = off + 4;
      slots[type * 2 + 1] = len - 4;
    }
    off += (len + 3) & ~3;
  }
}

// One scratch array per nesting level: parsing is synchronous, so they are never shared.
const top = new Int32Array(SLOTS * 2);
const tup = new Int32Array(SLOTS * 2);
const sub = new Int32Array(SLOTS * 2);

interface Tuple {
  src: string;
  dst: string;
  proto: number;
  sport: number;
  dport: number;
}

function readTuple(buf: Buffer, off: number, len: number, af: 4 | 6): Tuple | null {
  scan(buf, off, off + len, tup);
  const ipOff = tup[CTA_TUPLE_IP * 2]!;
  const protoOff = tup[CTA_TUPLE_PROTO * 2]!;
  if (ipOff < 0 || protoOff < 0) return null;
  const ipLen = tup[CTA_TUPLE_IP * 2 + 1]!;
  const protoLen = tup[CTA_TUPLE_PROTO * 2 + 1]!;
  scan(buf, ipOff, ipOff + ipLen, sub);
  let src: string;
  let dst: string;
  if (af === 4) {
    const s = sub[CTA_IP_V4_SRC * 2]!;
    const d = sub[CTA_IP_V4_DST * 2]!;
    if (s < 0 || d < 0) return null;
    src = `${buf[s]}.${buf[s + 1]}.${buf[s + 2]}.${buf[s + 3]}`;
    dst = `${buf[d]}.${buf[d + 1]}.${buf[d + 2]}.${buf[d + 3]}`;
  } else {
    const s = sub[CTA_IP_V6_SRC * 2]!;
    const d = sub[CTA_IP_V6_DST * 2]!;
    if (s < 0 || d < 0) return null;
    src = v6(buf, s);
    dst = v6(buf, d);
  }
  scan(buf, protoOff, protoOff + protoLen, sub);
  const num = sub[CTA_PROTO_NUM * 2]!;
  const sp = sub[CTA_PROTO_SRC_PORT * 2]!;
  const dp = sub[CTA_PROTO_DST_PORT * 2]!;
  if (num < 0) return null;
  return { src, dst, proto: buf[num]!, sport: sp < 0 ? 0 : buf.readUInt16BE(sp), dport: dp < 0 ? 0 : buf.readUInt16BE(dp) };
}

function v6(buf: Buffer, off: number): string {
  const g: number[] = [];
  for (let i = 0; i < 16; i += 2) g.push(buf.readUInt16BE(off + i));
  return formatIPv6(g);
}

/**
 * The mark of a conntrack message (nfgenmsg + attributes) without parsing the rest: 0 when
 * it carries none (events leave CTA_MARK out for a zero mark). Lets a dump skip other
 * entries cheaply.
 */
export function ctMessageMark(payload: Buffer): number {
  scan(payload, 4, payload.length, top);
  const m = top[CTA_MARK * 2]!;
  return m >= 0 && top[CTA_MARK * 2 + 1]! >= 4 ? payload.readUInt32BE(m) : 0;
}

/**
 * One conntrack message's payload (nfgenmsg + attributes) as a CtEntry: null unless it is a
 * TCP or UDP entry over IPv4/IPv6 with a non-zero mark (tsvs marks every connection it
 * scheduled).
 */
export function parseCtEntry(payload: Buffer): CtEntry | null {
  if (payload.length < 4) return null;
  const family = payload[0];
  const af = family === AF_INET ? 4 : family === AF_INET6 ? 6 : 0;
  if (!af) return null;
  scan(payload, 4, payload.length, top);
  const markOff = top[CTA_MARK * 2]!;
  const mark = markOff >= 0 ? payload.readUInt32BE(markOff) : 0;
  if (!mark) return null;
  const timeoutOff = top[CTA_TIMEOUT * 2]!;
  const timeout = timeoutOff >= 0 ? payload.readUInt32BE(timeoutOff) : 0;
  const protoinfoOff = top[CTA_PROTOINFO * 2]!;
  const protoinfoLen = top[CTA_PROTOINFO * 2 + 1]!;
  const origOff = top[CTA_TUPLE_ORIG * 2]!;
  const origLen = top[CTA_TUPLE_ORIG * 2 + 1]!;
  const replyOff = top[CTA_TUPLE_REPLY * 2]!;
  const replyLen = top[CTA_TUPLE_REPLY * 2 + 1]!;
  if (origOff < 0 || replyOff < 0) return null;
  const o = readTuple(payload, origOff, origLen, af);
  if (!o || (o.proto !== IPPROTO_TCP && o.proto !== IPPROTO_UDP)) return null;
  const r = readTuple(payload, replyOff, replyLen, af);
  if (!r) return null;
  let state = '';
  if (o.proto === IPPROTO_TCP && protoinfoOff >= 0) {
    scan(payload, protoinfoOff, protoinfoOff + protoinfoLen, sub);
    const tcpOff = sub[CTA_PROTOINFO_TCP * 2]!;
    if (tcpOff >= 0) {
      scan(payload, tcpOff, tcpOff + sub[CTA_PROTOINFO_TCP * 2 + 1]!, sub);
      const s = sub[CTA_PROTOINFO_TCP_STATE * 2]!;
      if (s >= 0) state = TCP_STATES[payload[s]!] ?? `STATE${payload[s]}`;
    }
  }
  return {
    af,
    protocol: o.proto === IPPROTO_TCP ? 'tcp' : 'udp',
    timeout,
    state,
    caddr: o.src,
    cport: o.sport,
    vaddr: o.dst,
    vport: o.dport,
    daddr: r.src,
    dport: r.sport,
    mark,
  };
}

/**
 * What a ctnetlink event message says: IPCTNL_MSG_CT_NEW with NLM_F_CREATE is a new entry,
 * without it an update; IPCTNL_MSG_CT_DELETE a destroyed one. Null for anything else and for
 * entries parseCtEntry leaves out.
 */
export function parseCtEvent(type: number, flags: number, payload: Buffer): CtEvent | null {
  if (type >> 8 !== NFNL_SUBSYS_CTNETLINK) return null;
  const msg = type & 0xff;
  let kind: CtEvent['kind'];
  if (msg === IPCTNL_MSG_CT_NEW) kind = flags & NLM_F_CREATE ? 'new' : 'update';
  else if (msg === IPCTNL_MSG_CT_DELETE) kind = 'destroy';
  else return null;
  const entry = parseCtEntry(payload);
  return entry ? { kind, entry } : null;
}
