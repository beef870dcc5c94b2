/**
 * Pure netlink codecs for the nftables plane's first-packet path: the nf_tables batch
 * that puts the xtables NFQUEUE target into tsvs's own table (nft has no `queue`
 * statement on this kernel, and nft's JSON cannot express an xt target), and the
 * nfnetlink_queue messages (bind, copy mode, packets in, verdicts with a mark out).
 * No I/O here: netsock.ts moves the bytes. Numbers are from the kernel's UAPI headers
 * (linux/netlink.h, netfilter/nfnetlink.h, nf_tables.h, nfnetlink_queue.h,
 * xt_NFQUEUE.h); nfnetlink headers and netfilter attribute values are big endian,
 * netlink headers and attribute headers are host (little) endian.
 */

import { formatIPv6 } from '../../core/addr.js';
import {
  encodeAttrs,
  nlMessage,
  parseAttrList,
  parseAttrs,
  NLM_F_ACK,
  NLM_F_APPEND,
  NLM_F_CREATE,
  NLM_F_REQUEST,
  type Attr,
  type NlMessage,
} from '../../net/netlink.js';

// The generic netlink layer (src/net/netlink.ts), re-exported for this plane's users.
export {
  encodeAttrs,
  errorCode,
  parseAttrList,
  parseAttrs,
  parseMessages,
  NLA_F_NESTED,
  NLM_F_ACK,
  NLM_F_APPEND,
  NLM_F_CREATE,
  NLM_F_REQUEST,
  NLMSG_DONE,
  NLMSG_ERROR,
  type Attr,
  type NlMessage,
} from '../../net/netlink.js';

// linux/netlink.h
export const NETLINK_NETFILTER = 12;
// netfilter/nfnetlink.h
const NFNL_SUBSYS_QUEUE = 3;
export const NFNL_SUBSYS_NFTABLES = 10;
export const NFNL_MSG_BATCH_BEGIN = 0x10;
export const NFNL_MSG_BATCH_END = 0x11;
export const NFPROTO_UNSPEC = 0;
export const NFPROTO_IPV4 = 2;
export const NFPROTO_IPV6 = 10;
// netfilter/nf_tables.h
const NFT_MSG_NEWRULE = 6;
export const NFT_MSG_GETRULE = 7;
const NFT_MSG_GETCHAIN = 4;
const NFTA_CHAIN_TABLE = 1;
const NFTA_CHAIN_NAME = 3;
// linux/netlink.h: NLM_F_ROOT | NLM_F_MATCH, "return everything that matches".
const NLM_F_DUMP = 0x300;
const NFTA_RULE_TABLE = 1;
const NFTA_RULE_CHAIN = 2;
const NFTA_RULE_EXPRESSIONS = 4;
const NFTA_LIST_ELEM = 1;
const NFTA_EXPR_NAME = 1;
const NFTA_EXPR_DATA = 2;
const NFTA_TARGET_NAME = 1;
const NFTA_TARGET_REV = 2;
const NFTA_TARGET_INFO = 3;
// netfilter/nfnetlink_queue.h
const NFQNL_MSG_PACKET = 0;
const NFQNL_MSG_VERDICT = 1;
export const NFQNL_MSG_CONFIG = 2;
const NFQA_PACKET_HDR = 1;
const NFQA_VERDICT_HDR = 2;
const NFQA_MARK = 3;
const NFQA_PAYLOAD = 10;
const NFQA_CFG_CMD = 1;
const NFQA_CFG_PARAMS = 2;
const NFQA_CFG_QUEUE_MAXLEN = 3;
const NFQA_CFG_MASK = 4;
const NFQA_CFG_FLAGS = 5;
export const NFQNL_CFG_CMD_BIND = 1;
export const NFQNL_CFG_CMD_UNBIND = 2;
const NFQNL_COPY_PACKET = 2;
/** Accept instead of drop when the queue is full (the reader fell behind). */
const NFQA_CFG_F_FAIL_OPEN = 1;
// linux/netfilter.h
const NF_ACCEPT = 1;
// netfilter/xt_NFQUEUE.h
const NFQ_FLAG_BYPASS = 0x01;

export const u32be = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return b;
};
export const cstr = (s: string): Buffer => Buffer.concat([Buffer.from(s, 'utf8'), Buffer.alloc(1)]);

/** One nfnetlink message: nlmsghdr + nfgenmsg (family, version 0, res_id big endian) + attributes. */
export function nfnlMessage(
  subsys: number,
  msg: number,
  flags: number,
  seq: number,
  family: number,
  resId: number,
  attrs: readonly Attr[],
): Buffer {
  const nfgen = Buffer.alloc(4);
  nfgen.writeUInt8(family, 0);
  nfgen.writeUInt16BE(resId, 2);
  return nlMessage((subsys << 8) | msg, flags, seq, Buffer.concat([nfgen, encodeAttrs(attrs)]));
}

// ------------------------------------------------------------------ nf_tables: the NFQUEUE rule

export interface NfqueueTarget {
  queue: number;
  /** Number of queues (fanout); 1 here. */
  total: number;
  /** --queue-bypass: with no reader bound, the packet continues as if accepted. */
  bypass: boolean;
}

/** struct xt_NFQ_info_v3 { __u16 queuenum, queues_total, flags; } in host order, padded to XT_ALIGN (8). */
export function nfqInfoV3(t: NfqueueTarget): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt16LE(t.queue, 0);
  b.writeUInt16LE(t.total, 2);
  b.writeUInt16LE(t.bypass ? NFQ_FLAG_BYPASS : 0, 4);
  return b;
}

/**
 * The batch that appends `NFQUEUE --queue-num Q [--queue-bypass]` (xt target rev 3, via
 * nft_compat) to `table`'s regular chain `chain`:
 * BATCH_BEGIN(res_id NFTABLES), NEWRULE, BATCH_END. The NEWRULE asks for an ACK.
 */
export function nfqueueRuleBatch(family: 'ip' | 'ip6', table: string, chain: string, t: NfqueueTarget, seq: number): Buffer {
  const fam = family === 'ip' ? NFPROTO_IPV4 : NFPROTO_IPV6;
  const expr: Attr = {
    type: NFTA_LIST_ELEM,
    nested: [
      { type: NFTA_EXPR_NAME, data: cstr('target') },
      {
        type: NFTA_EXPR_DATA,
        nested: [
          { type: NFTA_TARGET_NAME, data: cstr('NFQUEUE') },
          { type: NFTA_TARGET_REV, data: u32be(3) },
          { type: NFTA_TARGET_INFO, data: nfqInfoV3(t) },
        ],
      },
    ],
  };
  return Buffer.concat([
    nfnlMessage(0, NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq, NFPROTO_UNSPEC, NFNL_SUBSYS_NFTABLES, []),
    nfnlMessage(NFNL_SUBSYS_NFTABLES, NFT_MSG_NEWRULE, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_APPEND | NLM_F_ACK, seq + 1, fam, 0, [
      { type: NFTA_RULE_TABLE, data: cstr(table) },
      { type: NFTA_RULE_CHAIN, data: cstr(chain) },
      { type: NFTA_RULE_EXPRESSIONS, nested: [expr] },
    ]),
    nfnlMessage(0, NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq + 2, NFPROTO_UNSPEC, NFNL_SUBSYS_NFTABLES, []),
  ]);
}

/**
 * NFT_MSG_GETCHAIN of `family table chain`, acknowledged: the kernel answers with the
 * chain and an ACK, or with ENOENT when the table or the chain does not exist.
 */
export function chainGetRequest(family: 'ip' | 'ip6', table: string, chain: string, seq: number): Buffer {
  return nfnlMessage(
    NFNL_SUBSYS_NFTABLES,
    NFT_MSG_GETCHAIN,
    NLM_F_REQUEST | NLM_F_ACK,
    seq,
    family === 'ip' ? NFPROTO_IPV4 : NFPROTO_IPV6,
    0,
    [
      { type: NFTA_CHAIN_TABLE, data: cstr(table) },
      { type: NFTA_CHAIN_NAME, data: cstr(chain) },
    ],
  );
}

/**
 * NFT_MSG_GETRULE as a dump of the rules of `family table chain` (the kernel filters the
 * dump by the table and chain attributes). The kernel answers with one NFT_MSG_NEWRULE
 * per rule, then NLMSG_DONE. A table or chain that does not exist is no error here, just
 * an empty dump: ask chainGetRequest first to tell the two apart.
 */
export function ruleDumpRequest(family: 'ip' | 'ip6', table: string, chain: string, seq: number): Buffer {
  return nfnlMessage(
    NFNL_SUBSYS_NFTABLES,
    NFT_MSG_GETRULE,
    NLM_F_REQUEST | NLM_F_DUMP,
    seq,
    family === 'ip' ? NFPROTO_IPV4 : NFPROTO_IPV6,
    0,
    [
      { type: NFTA_RULE_TABLE, data: cstr(table) },
      { type: NFTA_RULE_CHAIN, data: cstr(chain) },
    ],
  );
}

/** An xtables target expression of a rule, as the kernel holds it (nft_compat). */
export interface XtTarget {
  name: string;
  rev: number;
  info: Buffer;
}

/**
 * The xtables targets among the expressions of one NFT_MSG_NEWRULE message (a rule of a
 * GETRULE dump), in rule order; null when `m` is not such a message.
 */
export function parseRuleTargets(m: NlMessage): XtTarget[] | null {
  if (m.type !== ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE)) return null;
  const exprs = parseAttrs(m.payload, 4).get(NFTA_RULE_EXPRESSIONS);
  const out: XtTarget[] = [];
  // A list of NFTA_LIST_ELEM, each {NFTA_EXPR_NAME, NFTA_EXPR_DATA}: the type repeats, so walk it in order.
  for (const el of exprs ? parseAttrList(exprs) : []) {
    if (el.type !== NFTA_LIST_ELEM) continue;
    const e = parseAttrs(el.data);
    if (cstring(e.get(NFTA_EXPR_NAME)) !== 'target') continue;
    const d = parseAttrs(e.get(NFTA_EXPR_DATA) ?? Buffer.alloc(0));
    const rev = d.get(NFTA_TARGET_REV);
    out.push({
      name: cstring(d.get(NFTA_TARGET_NAME)),
      rev: rev && rev.length >= 4 ? rev.readUInt32BE(0) : -1,
      info: d.get(NFTA_TARGET_INFO) ?? Buffer.alloc(0),
    });
  }
  return out;
}

/**
 * The NFQUEUE settings of an xtables target read back from the kernel, or null when it is
 * not NFQUEUE revision 3 (the one tsvs installs: nfqInfoV3) or its info is short.
 */
export function nfqueueFromTarget(t: XtTarget): NfqueueTarget | null {
  if (t.name !== 'NFQUEUE' || t.rev !== 3 || t.info.length < 6) return null;
  return { queue: t.info.readUInt16LE(0), total: t.info.readUInt16LE(2), bypass: (t.info.readUInt16LE(4) & NFQ_FLAG_BYPASS) !== 0 };
}

/** A NUL-terminated netlink string attribute as text ('' when absent). */
function cstring(b: Buffer | undefined): string {
  if (!b) return '';
  const nul = b.indexOf(0);
  return b.toString('utf8', 0, nul < 0 ? b.length : nul);
}

// ------------------------------------------------------------------ nfnetlink_queue

/** NFQNL_MSG_CONFIG with a command (bind/unbind) for `queue`, acknowledged. */
export function nfqCommand(queue: number, cmd: number, seq: number): Buffer {
  const c = Buffer.alloc(4); // struct nfqnl_msg_config_cmd { u8 command; u8 pad; be16 pf; }
  c.writeUInt8(cmd, 0);
  return nfnlMessage(NFNL_SUBSYS_QUEUE, NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, seq, NFPROTO_UNSPEC, queue, [
    { type: NFQA_CFG_CMD, data: c },
  ]);
}

/** NFQNL_MSG_CONFIG: copy `range` bytes of each packet, queue length, fail-open. */
export function nfqParams(queue: number, range: number, maxlen: number, seq: number): Buffer {
  const p = Buffer.alloc(5); // struct nfqnl_msg_config_params { be32 copy_range; u8 copy_mode; } packed
  p.writeUInt32BE(range, 0);
  p.writeUInt8(NFQNL_COPY_PACKET, 4);
  return nfnlMessage(NFNL_SUBSYS_QUEUE, NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, seq, NFPROTO_UNSPEC, queue, [
    { type: NFQA_CFG_PARAMS, data: p },
    { type: NFQA_CFG_QUEUE_MAXLEN, data: u32be(maxlen) },
    { type: NFQA_CFG_FLAGS, data: u32be(NFQA_CFG_F_FAIL_OPEN) },
    { type: NFQA_CFG_MASK, data: u32be(NFQA_CFG_F_FAIL_OPEN) },
  ]);
}

/** NFQNL_MSG_VERDICT: ACCEPT packet `id`, with `mark` (none when null: the skb keeps its mark). */
export function nfqVerdict(queue: number, id: number, mark: number | null, seq: number): Buffer {
  const v = Buffer.alloc(8); // struct nfqnl_msg_verdict_hdr { be32 verdict; be32 id; }
  v.writeUInt32BE(NF_ACCEPT, 0);
  v.writeUInt32BE(id >>> 0, 4);
  const attrs: Attr[] = [{ type: NFQA_VERDICT_HDR, data: v }];
  if (mark !== null) attrs.push({ type: NFQA_MARK, data: u32be(mark) });
  return nfnlMessage(NFNL_SUBSYS_QUEUE, NFQNL_MSG_VERDICT, NLM_F_REQUEST, seq, NFPROTO_UNSPEC, queue, attrs);
}

/** The parts of a queued packet the scheduler needs. */
export interface QueuedPacket {
  id: number;
  af: 4 | 6;
  protocol: 'tcp' | 'udp';
  caddr: string;
  cport: number;
  vaddr: string;
  vport: number;
  /** TCP: the SYN flag is set (a connection's real first packet). Always true for UDP. */
  syn: boolean;
}

/**
 * A queued packet's id and connection tuple, from an NFQNL_MSG_PACKET's payload.
 * `{ id }` alone when the packet is not TCP/UDP over IPv4/IPv6 (it is accepted as is).
 */
export function parseQueuedPacket(m: NlMessage): QueuedPacket | { id: number } | null {
  if (m.type !== ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET)) return null;
  const attrs = parseAttrs(m.payload, 4);
  const hdr = attrs.get(NFQA_PACKET_HDR);
  if (!hdr || hdr.length < 7) return null;
  const id = hdr.readUInt32BE(0);
  const pkt = attrs.get(NFQA_PAYLOAD);
  const t = pkt ? parseIpTuple(pkt) : null;
  return t ? { id, ...t } : { id };
}

/** Source and destination of an IP packet's TCP/UDP header (IPv6: no extension headers). */
export function parseIpTuple(p: Buffer): Omit<QueuedPacket, 'id'> | null {
  if (p.length < 1) return null;
  const v = p[0]! >> 4;
  let proto: number;
  let l4: number;
  let caddr: string;
  let vaddr: string;
  if (v === 4) {
    if (p.length < 20) return null;
    l4 = (p[0]! & 15) * 4;
    // IHL below 5 is no IPv4 header: the ports would be read from inside it.
    if (l4 < 20) return null;
    proto = p[9]!;
    caddr = `${p[12]}.${p[13]}.${p[14]}.${p[15]}`;
    vaddr = `${p[16]}.${p[17]}.${p[18]}.${p[19]}`;
  } else if (v === 6) {
    if (p.length < 40) return null;
    l4 = 40;
    proto = p[6]!;
    caddr = ipv6String(p.subarray(8, 24));
    vaddr = ipv6String(p.subarray(24, 40));
  } else {
    return null;
  }
  if ((proto !== 6 && proto !== 17) || p.length < l4 + 4) return null;
  // TCP flags are byte 13 of the header; SYN is 0x02.
  const syn = proto === 17 || (p.length > l4 + 13 && (p[l4 + 13]! & 0x02) !== 0);
  return {
    af: v === 4 ? 4 : 6,
    protocol: proto === 6 ? 'tcp' : 'udp',
    caddr,
    cport: p.readUInt16BE(l4),
    vaddr,
    vport: p.readUInt16BE(l4 + 2),
    syn,
  };
}

/** RFC 5952 text of a 16-byte IPv6 address (as conntrack and the core print it: core/addr.ts). */
export function ipv6String(b: Buffer): string {
  const g: number[] = [];
  for (let i = 0; i < 16; i += 2) g.push(b.readUInt16BE(i));
  return formatIPv6(g);
}
