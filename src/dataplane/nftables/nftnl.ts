/**
 * The NAT plane's commands (nat.ts) as one nf_tables netlink batch: what `nft -f` would
 * send for the same text (nfttext.ts), without nft. Spawning nft costs the table, not the
 * change: before it sends anything it lists the kernel's objects to fill its cache, and
 * with 10,000 services that took 2.2-2.4 s per command here, against 4 ms for the element
 * itself over netlink (docs/nftables.md). Pure: bytes out, no I/O; nftsend.ts sends them.
 *
 * Registers follow nft's habits: a value is loaded into NFT_REG_1 (the first 32-bit word),
 * a concatenation fills consecutive 32-bit words from there, and the jhash input sits in
 * NFT_REG_2. Marks are host-endian (they are in the kernel), addresses and ports network
 * order, numgen and jhash results are turned to network order before an interval lookup,
 * as nft does.
 */
import { parseIPv4, parseIPv6 } from '../../core/addr.js';
import type { Family } from '../../core/types.js';
import { nlMessage, NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST } from '../../net/netlink.js';
import { NlWriter, type WAttr } from '../../net/nlwriter.js';
import { commandsText } from './nfttext.js';
import type { Cmd, Elem, ElemData, ElemKey, Item, Mask, MarkValue, SetDef } from './nat.js';
import {
  NFNL_MSG_BATCH_BEGIN,
  NFNL_MSG_BATCH_END,
  NFNL_SUBSYS_NFTABLES,
  NFPROTO_IPV4,
  NFPROTO_IPV6,
  NFPROTO_UNSPEC,
  u32be,
} from './netlink.js';
import { TABLE } from './ruleset.js';

// linux/netfilter/nf_tables.h
const MSG = {
  NEWTABLE: 0,
  DELTABLE: 2,
  NEWCHAIN: 3,
  DELCHAIN: 5,
  NEWRULE: 6,
  DELRULE: 8,
  NEWSET: 9,
  DELSET: 11,
  NEWSETELEM: 12,
  DELSETELEM: 14,
  GETGEN: 16,
  NEWOBJ: 18,
  DELOBJ: 20,
} as const;
const NFTA_LIST_ELEM = 1;
const NFTA_EXPR_NAME = 1;
const NFTA_EXPR_DATA = 2;
const NFTA_DATA_VALUE = 1;
const NFTA_DATA_VERDICT = 2;
const NFTA_VERDICT_CODE = 1;
const NFTA_VERDICT_CHAIN = 2;
const NFT_JUMP = -3;
const NFT_GOTO = -4;
const NFT_RETURN = -5;
const NF_DROP = 0;
const NFT_DATA_VERDICT = 0xffffff00;
const NFT_OBJECT_COUNTER = 1;
const SET_F = { ANONYMOUS: 0x1, CONSTANT: 0x2, INTERVAL: 0x4, MAP: 0x8, TIMEOUT: 0x10, EVAL: 0x20, OBJECT: 0x40 } as const;
const NFT_SET_ELEM_INTERVAL_END = 1;
// nft's data types (src/datatype.h), which `nft list` uses to print keys and values.
const TYPE = { INTEGER: 4, IPADDR: 7, IP6ADDR: 8, INET_PROTOCOL: 12, INET_SERVICE: 13, MARK: 19 } as const;
const concatType = (...t: number[]) => t.reduce((acc, x) => (acc << 6) | x, 0);
const HOOK = { prerouting: 0, forward: 2, postrouting: 4 } as const;
const REG_VERDICT = 0;
const REG_1 = 1;
const REG_2 = 2;
/** The 32-bit register at word `w` (NFT_REG32_00 + w). */
const reg32 = (w: number) => 8 + w;

// ------------------------------------------------------------------ values

const u8 = (v: number) => Buffer.from([v & 255]);
const s32be = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(v);
  return b;
};
const u64be = (v: number) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(v));
  return b;
};
/** A mark as the kernel holds it (host order; Linux on x86 and arm64 is little-endian). */
const markBytes = (m: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(m >>> 0);
  return b;
};

/** An address in network order (4 or 16 bytes). */
export function addrBytes(addr: string): Buffer {
  const v4 = parseIPv4(addr);
  if (v4 !== null) return u32be(v4);
  const v6 = parseIPv6(addr);
  if (!v6) throw new Error(`not an address: ${addr}`);
  const b = Buffer.alloc(16);
  v6.forEach((g, i) => {
    b.writeUInt16BE(g, i * 2);
  });
  return b;
}

const addrLen = (af: Family) => (af === 6 ? 16 : 4);
const protoNum = (p: 'tcp' | 'udp') => (p === 'tcp' ? 6 : 17);
/** A concatenation: each field padded to a 4-byte word, as the kernel stores set keys. */
const concat = (...parts: Buffer[]) => Buffer.concat(parts.map((p) => Buffer.concat([p, Buffer.alloc((4 - (p.length % 4)) % 4)])));
const port2 = (p: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(p);
  return b;
};

function prefixMask(m: Mask): Buffer {
  const b = Buffer.alloc(addrLen(m.af));
  for (let bit = 0; bit < m.len && bit < b.length * 8; bit++) b[bit >> 3]! |= 0x80 >> (bit & 7);
  return b;
}

// ------------------------------------------------------------------ expressions

const a = (type: number, data: Buffer): WAttr => ({ type, data });
const str = (type: number, s: string): WAttr => ({ type, str: s });
const u = (type: number, v: number): WAttr => ({ type, u32: v });
const n = (type: number, nested: WAttr[]): WAttr => ({ type, nested });
const value = (type: number, data: Buffer): WAttr => n(type, [a(NFTA_DATA_VALUE, data)]);
const verdict = (code: number, chain?: string): WAttr[] => [
  n(NFTA_DATA_VERDICT, [a(NFTA_VERDICT_CODE, s32be(code)), ...(chain ? [str(NFTA_VERDICT_CHAIN, chain)] : [])]),
];
const expr = (name: string, attrs: WAttr[]): WAttr => n(NFTA_LIST_ELEM, [str(NFTA_EXPR_NAME, name), n(NFTA_EXPR_DATA, attrs)]);

const payload = (dreg: number, base: 'nh' | 'th', offset: number, len: number) =>
  expr('payload', [u(1, dreg), u(2, base === 'nh' ? 1 : 2), u(3, offset), u(4, len)]);
const meta = (dreg: number, key: 'mark' | 'l4proto') => expr('meta', [u(1, dreg), u(2, key === 'mark' ? 3 : 16)]);
const ctLoad = (dreg: number, key: 'state' | 'direction' | 'mark') =>
  expr('ct', [u(1, dreg), u(2, key === 'state' ? 0 : key === 'direction' ? 1 : 3)]);
const ctSetMark = (sreg: number) => expr('ct', [u(2, 3), u(4, sreg)]);
const cmp = (sreg: number, op: 'eq' | 'neq', data: Buffer) => expr('cmp', [u(1, sreg), u(2, op === 'eq' ? 0 : 1), value(3, data)]);
const bitwise = (reg: number, mask: Buffer) =>
  expr('bitwise', [u(1, reg), u(2, reg), u(3, mask.length), value(4, mask), value(5, Buffer.alloc(mask.length))]);
const lookup = (set: string, sreg: number, dreg?: number) =>
  expr('lookup', [str(1, set), u(2, sreg), ...(dreg !== undefined ? [u(3, dreg)] : [])]);
/** NFTA_CONNLIMIT_COUNT, NFTA_CONNLIMIT_FLAGS with NFT_CONNLIMIT_F_INV: "ct count over N". */
const connlimitAttrs = (count: number): WAttr[] => [u(1, count), u(2, 1)];
const connlimit = (count: number) => expr('connlimit', connlimitAttrs(count));
const immediate = (dreg: number, data: WAttr[]) => expr('immediate', [u(1, dreg), n(2, data)]);

const saddrOffset = (af: Family) => (af === 6 ? 8 : 12);
const daddrOffset = (af: Family) => (af === 6 ? 24 : 16);

/** The client's address under `mask`, into NFT_REG_1. */
function maskedSaddr(m: Mask): WAttr[] {
  const out = [payload(REG_1, 'nh', saddrOffset(m.af), addrLen(m.af))];
  if (m.len < addrLen(m.af) * 8) out.push(bitwise(REG_1, prefixMask(m)));
  return out;
}

/**
 * An anonymous map the batch creates just before the rule that uses it. It gets a name of
 * its own (unique in the process: the batch's sequence number) rather than nft's "__map%d"
 * plus a set ID: the kernel resolves "%d" by scanning every set of the table and a set ID by
 * walking the whole transaction, which made a 10,000-service load quadratic (measured:
 * 10 minutes of kernel time for 190,000 messages).
 */
interface AnonSet {
  name: string;
  flags: number;
  keyType: number;
  keyLen: number;
  /** Elements, already encoded (interval ends included). */
  elems: WAttr[];
}

/** The `ct mark set` value; an anonymous map goes to `anon`. */
function markValueExprs(v: MarkValue, anon: (s: Omit<AnonSet, 'name'>) => string): WAttr[] {
  if (v.v === 'imm') return [immediate(REG_1, [a(NFTA_DATA_VALUE, markBytes(v.mark))])];
  if (v.v === 'metamark') return [meta(REG_1, 'mark')];
  const k = v.key;
  const out: WAttr[] = [];
  if (k.k === 'octet') {
    out.push(payload(REG_1, 'nh', 12, 4), bitwise(REG_1, Buffer.from([0, 0, 0, 255])));
    const elems = v.elems.map(([o, m]) => elemAttr(Buffer.from([0, 0, 0, o as number]), markBytes(m)));
    const name = anon({ flags: SET_F.ANONYMOUS | SET_F.CONSTANT | SET_F.MAP, keyType: TYPE.IPADDR, keyLen: 4, elems });
    out.push(lookup(name, REG_1, REG_1));
  } else {
    if (k.k === 'numgen') {
      out.push(expr('numgen', [u(1, REG_1), u(2, k.mod), u(3, 0), u(4, 0)]));
    } else {
      const alen = addrLen(k.af);
      out.push(payload(REG_2, 'nh', saddrOffset(k.af), alen));
      if (k.sport) out.push(payload(reg32(4 + alen / 4), 'th', 0, 2));
      out.push(expr('hash', [u(1, REG_2), u(2, REG_1), u(3, alen + (k.sport ? 4 : 0)), u(4, k.mod), u(5, 0), u(7, 0)]));
    }
    // byteorder hton: interval keys are compared in network order.
    out.push(expr('byteorder', [u(1, REG_1), u(2, REG_1), u(3, 1), u(4, 4), u(5, 4)]));
    const name = anon({
      flags: SET_F.ANONYMOUS | SET_F.CONSTANT | SET_F.INTERVAL | SET_F.MAP,
      keyType: TYPE.INTEGER,
      keyLen: 4,
      elems: intervalElems(v.elems),
    });
    out.push(lookup(name, REG_1, REG_1));
  }
  return out;
}

/** Index runs as interval elements: a start with its mark, and an end where a gap or the table's end follows. */
function intervalElems(elems: ReadonlyArray<[number | [number, number], number]>): WAttr[] {
  const out: WAttr[] = [];
  const runs = elems.map(([k, m]) => ({ lo: Array.isArray(k) ? k[0] : k, hi: Array.isArray(k) ? k[1] : k, m })).sort((x, y) => x.lo - y.lo);
  runs.forEach((r, i) => {
    out.push(elemAttr(u32be(r.lo), markBytes(r.m)));
    const next = runs[i + 1];
    if (!next || next.lo !== r.hi + 1) out.push(n(NFTA_LIST_ELEM, [n(1, [u(NFTA_DATA_VALUE, r.hi + 1)]), u(3, NFT_SET_ELEM_INTERVAL_END)]));
  });
  return out;
}

function elemAttr(key: Buffer, data?: Buffer): WAttr {
  return n(NFTA_LIST_ELEM, [value(1, key), ...(data ? [value(2, data)] : [])]);
}

/** A rule's expressions; anonymous maps it needs are reported through `anon`. */
function ruleExprs(rule: readonly Item[], anon: (s: Omit<AnonSet, 'name'>) => string): WAttr[] {
  const out: WAttr[] = [];
  for (const it of rule) {
    switch (it.i) {
      case 'l4proto':
        out.push(meta(REG_1, 'l4proto'), cmp(REG_1, 'eq', u8(protoNum(it.proto))));
        break;
      case 'ctmark':
        out.push(ctLoad(REG_1, 'mark'), cmp(REG_1, it.op, markBytes(it.mark)));
        break;
      case 'ctnew':
        // ct state new: the NEW bit (1 << IP_CT_NEW) of the state bitmask.
        out.push(ctLoad(REG_1, 'state'), bitwise(REG_1, markBytes(8)), cmp(REG_1, 'neq', markBytes(0)));
        break;
      case 'ctdir':
        out.push(ctLoad(REG_1, 'direction'), cmp(REG_1, 'eq', u8(it.dir === 'original' ? 0 : 1)));
        break;
      case 'saddr-net': {
        const m: Mask = { af: it.af, len: it.len };
        const net = addrBytes(it.net);
        const mask = prefixMask(m);
        out.push(...maskedSaddr(m), cmp(REG_1, 'eq', Buffer.from(net.map((x, i) => x & mask[i]!))));
        break;
      }
      case 'persist-hit':
        out.push(...maskedSaddr(it.mask), lookup(it.set, REG_1));
        break;
      case 'metamark-in':
        out.push(meta(REG_1, 'mark'), lookup(it.set, REG_1));
        break;
      case 'vmap': {
        const w = addrLen(it.af) / 4;
        out.push(payload(REG_1, 'nh', daddrOffset(it.af), addrLen(it.af)), meta(reg32(w), 'l4proto'));
        if (it.port) out.push(payload(reg32(w + 1), 'th', 2, 2));
        out.push(lookup(it.map, REG_1, REG_VERDICT));
        break;
      }
      case 'setmark':
        out.push(...markValueExprs(it.value, anon), ctSetMark(REG_1));
        break;
      case 'update':
        out.push(...maskedSaddr(it.mask), expr('dynset', [str(1, it.set), u(3, 1), u(4, REG_1)]));
        break;
      case 'counter-map':
        out.push(ctLoad(REG_1, 'mark'), expr('objref', [u(3, REG_1), str(4, it.map)]));
        break;
      case 'dnat-map': {
        const nat = [u(1, 1), u(2, it.af === 6 ? NFPROTO_IPV6 : NFPROTO_IPV4), u(3, REG_1)];
        if (it.port) nat.push(u(5, reg32(addrLen(it.af) / 4)));
        out.push(ctLoad(REG_1, 'mark'), lookup(it.map, REG_1, REG_1), expr('nat', nat));
        break;
      }
      case 'masq':
        out.push(expr('masq', []));
        break;
      case 'reject':
        // NFT_REJECT_ICMP_UNREACH with port unreachable: ICMP code 3, ICMPv6 code 4.
        out.push(expr('reject', [u(1, 0), a(2, u8(it.af === 6 ? 4 : 3))]));
        break;
      case 'ctcount-over':
        out.push(connlimit(it.count));
        break;
      case 'ctcount-set-over':
        // dynset ADD of the client address, with a connlimit of its own per element.
        out.push(
          payload(REG_1, 'nh', saddrOffset(it.af), addrLen(it.af)),
          expr('dynset', [
            str(1, it.set),
            u(3, 0),
            u(4, REG_1),
            n(7, [str(NFTA_EXPR_NAME, 'connlimit'), n(NFTA_EXPR_DATA, connlimitAttrs(it.count))]),
          ]),
        );
        break;
      case 'counter-named':
        out.push(expr('objref', [u(1, NFT_OBJECT_COUNTER), str(2, it.name)]));
        break;
      case 'drop':
        out.push(immediate(REG_VERDICT, verdict(NF_DROP)));
        break;
      case 'goto':
        out.push(immediate(REG_VERDICT, verdict(NFT_GOTO, it.chain)));
        break;
      case 'jump':
        out.push(immediate(REG_VERDICT, verdict(NFT_JUMP, it.chain)));
        break;
      case 'return':
        out.push(immediate(REG_VERDICT, verdict(NFT_RETURN)));
        break;
    }
  }
  return out;
}

// ------------------------------------------------------------------ sets and elements

function keyBytes(k: ElemKey): Buffer {
  if (typeof k === 'number') return markBytes(k);
  return k.port !== undefined
    ? concat(addrBytes(k.addr), u8(protoNum(k.proto)), port2(k.port))
    : concat(addrBytes(k.addr), u8(protoNum(k.proto)));
}

function dataAttr(d: ElemData): WAttr {
  if ('goto' in d) return n(2, verdict(NFT_GOTO, d.goto));
  if ('jump' in d) return n(2, verdict(NFT_JUMP, d.jump));
  if ('counter' in d) return str(9, d.counter); // NFTA_SET_ELEM_OBJREF
  return value(2, d.port !== undefined ? concat(addrBytes(d.addr), port2(d.port)) : addrBytes(d.addr));
}

function elemAttrs(e: Elem, keyOnly: boolean): WAttr {
  return n(NFTA_LIST_ELEM, [value(1, keyBytes(e.key)), ...(e.data && !keyOnly ? [dataAttr(e.data)] : [])]);
}

/** NFTNL_UDATA_SET_KEYBYTEORDER / DATABYTEORDER TLVs (1: host, 2: network), which nft reads to print values. */
function udata(keyOrder: 1 | 2, dataOrder?: 1 | 2): Buffer {
  const tlv = (type: number, v: number) => {
    const b = Buffer.alloc(6);
    b.writeUInt8(type, 0);
    b.writeUInt8(4, 1);
    b.writeUInt32LE(v, 2);
    return b;
  };
  return Buffer.concat([tlv(0, keyOrder), ...(dataOrder ? [tlv(1, dataOrder)] : [])]);
}

function setAttrs(s: SetDef, id: number): WAttr[] {
  const al = addrLen(s.af);
  const at = s.af === 6 ? TYPE.IP6ADDR : TYPE.IPADDR;
  const key =
    s.key === 'vip3'
      ? { type: concatType(at, TYPE.INET_PROTOCOL, TYPE.INET_SERVICE), len: al + 8, order: 2 as const }
      : s.key === 'vip2'
        ? { type: concatType(at, TYPE.INET_PROTOCOL), len: al + 4, order: 2 as const }
        : s.key === 'mark'
          ? { type: TYPE.MARK, len: 4, order: 1 as const }
          : { type: at, len: al, order: 2 as const };
  const attrs: WAttr[] = [str(1, TABLE), str(2, s.name)];
  let flags = 0;
  let dataOrder: 1 | 2 | undefined;
  const tail: WAttr[] = [];
  if (s.timeout !== undefined) {
    flags |= SET_F.TIMEOUT | SET_F.EVAL;
    tail.push(a(11, u64be(s.timeout * 1000)), n(9, [u(1, 65535)]));
  } else if (s.dynamic) {
    flags |= SET_F.EVAL;
    tail.push(n(9, [u(1, 65535)]));
  } else if (s.data === 'verdict') {
    flags |= SET_F.MAP;
    tail.push(u(6, NFT_DATA_VERDICT));
  } else if (s.data === 'counter') {
    flags |= SET_F.OBJECT;
    tail.push(u(15, NFT_OBJECT_COUNTER));
  } else if (s.data) {
    flags |= SET_F.MAP;
    dataOrder = 2;
    tail.push(s.data === 'addrport' ? u(6, concatType(at, TYPE.INET_SERVICE)) : u(6, at), u(7, s.data === 'addrport' ? al + 4 : al));
  }
  attrs.push(u(3, flags), u(4, key.type), u(5, key.len), ...tail, u(10, id), a(13, udata(key.order, dataOrder)));
  return attrs;
}

// ------------------------------------------------------------------ the batch

/**
 * Elements per message: the element list is one attribute, whose length is 16 bits. The
 * largest element here (an IPv6 service key with a goto) takes under 100 bytes.
 */
const ELEMS_PER_MESSAGE = 400;

export interface Batch {
  /** The batch, BATCH_BEGIN ... BATCH_END. */
  bytes: Buffer;
  /**
   * A GETGEN request with an ACK, sent after the batch (in a send of its own: the kernel
   * reads one batch per send and ignores what follows it). Its answer says every message
   * of the batch was processed, and their errors, if any, came before it.
   */
  sync: Buffer;
  syncSeq: number;
  /** What the message with sequence number `seq` does, for error messages. */
  what(seq: number): string;
  /** Number of nf_tables messages in the batch. */
  messages: number;
}

/** Encodes commands as one atomic nf_tables batch. `seq0` numbers the messages. */
export function encodeBatch(cmds: readonly Cmd[], seq0: number): Batch {
  const w = new NlWriter();
  // The command behind each message, by sequence number: a description is made only for an error.
  const first = (seq0 >>> 0) + 1;
  const cmdOf: number[] = [];
  let ci = 0;
  let seq = seq0 >>> 0;
  let setId = 1;
  const nfgen = { [NFPROTO_IPV4]: Buffer.from([NFPROTO_IPV4, 0, 0, 0]), [NFPROTO_IPV6]: Buffer.from([NFPROTO_IPV6, 0, 0, 0]) } as Record<
    number,
    Buffer
  >;
  const nft = (family: number, type: number, flags: number, attrs: WAttr[]) => {
    const at = w.begin((NFNL_SUBSYS_NFTABLES << 8) | type, NLM_F_REQUEST | flags, seq++, nfgen[family]!);
    w.attrs(attrs);
    w.end(at);
    cmdOf.push(ci);
  };
  const begin = Buffer.alloc(4);
  begin.writeUInt16BE(NFNL_SUBSYS_NFTABLES, 2);
  w.end(w.begin(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq++, begin));
  const T = str(1, TABLE);
  const elemMessages = (fam: number, type: number, flags: number, setRef: WAttr, list: WAttr[]) => {
    for (let i = 0; i < list.length; i += ELEMS_PER_MESSAGE) nft(fam, type, flags, [T, setRef, n(3, list.slice(i, i + ELEMS_PER_MESSAGE))]);
  };
  for (; ci < cmds.length; ci++) {
    const c = cmds[ci]!;
    const fam = c.f === 'ip6' ? NFPROTO_IPV6 : NFPROTO_IPV4;
    switch (c.c) {
      case 'add-table':
        nft(fam, MSG.NEWTABLE, NLM_F_CREATE, [T]);
        break;
      case 'delete-table':
        nft(fam, MSG.DELTABLE, 0, [T]);
        break;
      case 'add-chain': {
        const b = c.chain.base;
        const attrs: WAttr[] = [T, str(3, c.chain.name)];
        if (b) attrs.push(n(4, [u(1, HOOK[b.hook]), u(2, b.prio >>> 0)]), u(5, 1), str(7, b.type));
        nft(fam, MSG.NEWCHAIN, NLM_F_CREATE, attrs);
        break;
      }
      case 'delete-chain':
        nft(fam, MSG.DELCHAIN, 0, [T, str(3, c.name)]);
        break;
      case 'flush-chain':
        nft(fam, MSG.DELRULE, 0, [T, str(2, c.name)]);
        break;
      case 'add-rule': {
        const sets: AnonSet[] = [];
        const exprs = ruleExprs(c.rule, (s) => {
          const name = `__map${seq}_${sets.length}`;
          sets.push({ ...s, name });
          return name;
        });
        for (const s of sets) {
          const attrs: WAttr[] = [
            T,
            str(2, s.name),
            u(3, s.flags),
            u(4, s.keyType),
            u(5, s.keyLen),
            u(6, TYPE.MARK),
            u(7, 4),
            u(10, setId++),
          ];
          attrs.push(n(9, [u(1, s.elems.length)]), a(13, udata(2, 1)));
          nft(fam, MSG.NEWSET, NLM_F_CREATE, attrs);
          elemMessages(fam, MSG.NEWSETELEM, NLM_F_CREATE, str(2, s.name), s.elems);
        }
        nft(fam, MSG.NEWRULE, NLM_F_CREATE | NLM_F_APPEND, [T, str(2, c.chain), n(4, exprs)]);
        break;
      }
      case 'add-counter':
        nft(fam, MSG.NEWOBJ, NLM_F_CREATE, [T, str(2, c.name), u(3, NFT_OBJECT_COUNTER), n(4, [a(1, u64be(0)), a(2, u64be(0))])]);
        break;
      case 'delete-counter':
        nft(fam, MSG.DELOBJ, 0, [T, str(2, c.name), u(3, NFT_OBJECT_COUNTER)]);
        break;
      case 'add-set':
        nft(fam, MSG.NEWSET, NLM_F_CREATE, setAttrs(c.set, setId++));
        break;
      case 'delete-set':
        nft(fam, MSG.DELSET, 0, [T, str(2, c.name)]);
        break;
      case 'add-elems':
        elemMessages(
          fam,
          MSG.NEWSETELEM,
          NLM_F_CREATE,
          str(2, c.set),
          c.elems.map((e) => elemAttrs(e, false)),
        );
        break;
      case 'delete-elems':
        elemMessages(
          fam,
          MSG.DELSETELEM,
          0,
          str(2, c.set),
          c.elems.map((e) => elemAttrs(e, true)),
        );
        break;
    }
  }
  const messages = cmdOf.length;
  const what = (sq: number) => {
    const c = cmds[cmdOf[sq - first] ?? -1];
    return c ? commandsText([c]).trim().slice(0, 200) : `message ${sq}`;
  };
  w.end(w.begin(NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq++, begin));
  const syncSeq = seq++;
  const gen = Buffer.alloc(4);
  gen.writeUInt8(NFPROTO_UNSPEC, 0);
  const sync = nlMessage((NFNL_SUBSYS_NFTABLES << 8) | MSG.GETGEN, NLM_F_REQUEST | NLM_F_ACK, syncSeq, gen);
  return { bytes: w.bytes(), sync, syncSeq, what, messages };
}
