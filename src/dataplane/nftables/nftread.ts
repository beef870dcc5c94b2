/**
 * Reading nf_tables state back over netlink instead of `nft -j list ...`: named counters
 * (NFT_MSG_GETOBJ, dumped per table, or fetched by name in one batched send) and the
 * elements of persistence sets (NFT_MSG_GETSETELEM dumps) with their expiry. The codec
 * half is pure; the reads go through nldump.ts. Numbers are from linux/netfilter/nf_tables.h;
 * attribute values are big endian.
 */
import { parseAttrs, type Attr, type NlMessage } from '../../net/netlink.js';
import { NLM_F_DUMP } from './ctnetlink.js';
import {
  cstr,
  ipv6String,
  nfnlMessage,
  NFNL_SUBSYS_NFTABLES,
  NFPROTO_IPV4,
  NFPROTO_IPV6,
  NLM_F_ACK,
  NLM_F_REQUEST,
  u32be,
} from './netlink.js';
import { dump, nextSeq, readLimits, reportTruncated, requestMany } from './nldump.js';
import { LibcError } from '../../net/libc.js';

// enum nf_tables_msg_types
const NFT_MSG_NEWSETELEM = 12;
export const NFT_MSG_GETSETELEM = 13;
const NFT_MSG_NEWOBJ = 18;
export const NFT_MSG_GETOBJ = 19;
// enum nft_object_attributes
const NFTA_OBJ_TABLE = 1;
export const NFTA_OBJ_NAME = 2;
const NFTA_OBJ_TYPE = 3;
const NFTA_OBJ_DATA = 4;
export const NFT_OBJECT_COUNTER = 1;
// enum nft_counter_attributes
const NFTA_COUNTER_BYTES = 1;
const NFTA_COUNTER_PACKETS = 2;
// enum nft_set_elem_list_attributes, nft_set_elem_attributes, nft_data_attributes
const NFTA_SET_ELEM_LIST_TABLE = 1;
const NFTA_SET_ELEM_LIST_SET = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS = 3;
export const NFTA_LIST_ELEM = 1;
const NFTA_SET_ELEM_KEY = 1;
const NFTA_SET_ELEM_TIMEOUT = 4;
const NFTA_SET_ELEM_EXPIRATION = 5;
export const NFTA_DATA_VALUE = 1;

const ENOENT = 2;

export type NftFamily = 'ip' | 'ip6';
const nfproto = (f: NftFamily) => (f === 'ip' ? NFPROTO_IPV4 : NFPROTO_IPV6);

export interface CounterValue {
  packets: number;
  bytes: number;
}

/** NFT_MSG_GETOBJ dump of `table`'s named counters (the kernel filters by table and type). */
export function objDumpRequest(family: NftFamily, table: string, seq: number): Buffer {
  return nfnlMessage(NFNL_SUBSYS_NFTABLES, NFT_MSG_GETOBJ, NLM_F_REQUEST | NLM_F_DUMP, seq, nfproto(family), 0, [
    { type: NFTA_OBJ_TABLE, data: cstr(table) },
    { type: NFTA_OBJ_TYPE, data: u32be(NFT_OBJECT_COUNTER) },
  ]);
}

/** NFT_MSG_GETOBJ of one named counter (acknowledged: an unknown name answers ENOENT). */
export function objGetRequest(family: NftFamily, table: string, name: string, seq: number): Buffer {
  return nfnlMessage(NFNL_SUBSYS_NFTABLES, NFT_MSG_GETOBJ, NLM_F_REQUEST | NLM_F_ACK, seq, nfproto(family), 0, [
    { type: NFTA_OBJ_TABLE, data: cstr(table) },
    { type: NFTA_OBJ_NAME, data: cstr(name) },
    { type: NFTA_OBJ_TYPE, data: u32be(NFT_OBJECT_COUNTER) },
  ]);
}

/** NFT_MSG_GETSETELEM dump of one set's elements. */
export function setElemDumpRequest(family: NftFamily, table: string, set: string, seq: number): Buffer {
  const attrs: Attr[] = [
    { type: NFTA_SET_ELEM_LIST_TABLE, data: cstr(table) },
    { type: NFTA_SET_ELEM_LIST_SET, data: cstr(set) },
  ];
  return nfnlMessage(NFNL_SUBSYS_NFTABLES, NFT_MSG_GETSETELEM, NLM_F_REQUEST | NLM_F_DUMP, seq, nfproto(family), 0, attrs);
}

const str = (b: Buffer | undefined): string => {
  if (!b) return '';
  const z = b.indexOf(0);
  return b.subarray(0, z < 0 ? b.length : z).toString('utf8');
};
const u64 = (b: Buffer | undefined): number => (b && b.length >= 8 ? Number(b.readBigUInt64BE(0)) : 0);

/** A NEWOBJ message (a dump reply or a get's answer) as [name, counter], or null when it is not a counter. */
export function parseCounterObj(m: NlMessage): [string, CounterValue] | null {
  if (m.type !== ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWOBJ)) return null;
  const a = parseAttrs(m.payload, 4);
  const type = a.get(NFTA_OBJ_TYPE);
  const data = a.get(NFTA_OBJ_DATA);
  if (!type || type.readUInt32BE(0) !== NFT_OBJECT_COUNTER || !data) return null;
  const c = parseAttrs(data);
  return [str(a.get(NFTA_OBJ_NAME)), { packets: u64(c.get(NFTA_COUNTER_PACKETS)), bytes: u64(c.get(NFTA_COUNTER_BYTES)) }];
}

export interface SetElement {
  /** The key: an IPv4/IPv6 address as text for 4/16-byte keys, else hex. */
  key: string;
  /** Milliseconds left before the element expires (0: no timeout). */
  expiresMs: number;
  /** The element's timeout in milliseconds (0: none). */
  timeoutMs: number;
}

/** The elements of a NEWSETELEM message (one dump reply carries many). */
export function parseSetElems(m: NlMessage): SetElement[] {
  if (m.type !== ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSETELEM)) return [];
  const list = parseAttrs(m.payload, 4).get(NFTA_SET_ELEM_LIST_ELEMENTS);
  if (!list) return [];
  const out: SetElement[] = [];
  // Every element is an NFTA_LIST_ELEM, so walk the run by hand (a Map keeps one per type).
  for (let off = 0; off + 4 <= list.length; ) {
    const len = list.readUInt16LE(off);
    if (len < 4 || off + len > list.length) break;
    if ((list.readUInt16LE(off + 2) & 0x3fff) === NFTA_LIST_ELEM) {
      const e = parseAttrs(list.subarray(off + 4, off + len));
      const key = e.get(NFTA_SET_ELEM_KEY) ? parseAttrs(e.get(NFTA_SET_ELEM_KEY)!).get(NFTA_DATA_VALUE) : undefined;
      if (key)
        out.push({ key: keyText(key), expiresMs: u64(e.get(NFTA_SET_ELEM_EXPIRATION)), timeoutMs: u64(e.get(NFTA_SET_ELEM_TIMEOUT)) });
    }
    off += (len + 3) & ~3;
  }
  return out;
}

function keyText(k: Buffer): string {
  if (k.length === 4) return `${k[0]}.${k[1]}.${k[2]}.${k[3]}`;
  if (k.length === 16) return ipv6String(k);
  return k.toString('hex');
}

// ------------------------------------------------------------------ reads

/**
 * Every named counter of `family table` (empty when the table does not exist), by name.
 * At most ReadLimits.maxObjects; past it the read stops, counted and logged.
 */
export async function readCounters(nsPath: string | undefined, family: NftFamily, table: string): Promise<Map<string, CounterValue>> {
  const out = new Map<string, CounterValue>();
  const max = readLimits().maxObjects;
  const seq = nextSeq();
  let end;
  try {
    end = await dump(nsPath, objDumpRequest(family, table, seq), seq, `list counters ${family} ${table}`, (m) => {
      const c = parseCounterObj(m);
      if (!c) return true;
      if (out.size >= max) return false;
      out.set(c[0], c[1]);
      return true;
    });
  } catch (e) {
    if (e instanceof LibcError && e.errno === ENOENT) return out;
    throw e;
  }
  if (end === 'stopped')
    reportTruncated('objTruncated', `counter read of ${family} ${table} stopped at ${max} objects (ReadLimits.maxObjects)`);
  return out;
}

/**
 * The named counters `names` of `family table`, one GETOBJ each, sent in batches: the cost
 * follows the names asked for, not the table. Names that do not exist are left out.
 */
export async function readCountersByName(
  nsPath: string | undefined,
  family: NftFamily,
  table: string,
  names: readonly string[],
): Promise<Map<string, CounterValue>> {
  const out = new Map<string, CounterValue>();
  const seq0 = nextSeq(names.length);
  const reqs = names.map((n, i) => objGetRequest(family, table, n, seq0 + i));
  const failed: { e?: LibcError } = {};
  await requestMany(
    nsPath,
    reqs,
    seq0,
    `get counters of ${family} ${table}`,
    (_i, m) => {
      const c = parseCounterObj(m);
      if (c) out.set(c[0], c[1]);
    },
    (i, errno) => {
      // A missing counter (or table) reads as absent, like a missing table in the dump.
      if (errno !== ENOENT && !failed.e) failed.e = new LibcError(`get counter ${family} ${table} ${names[i]}`, errno);
    },
  );
  if (failed.e) throw failed.e;
  return out;
}

/** The elements of one set (empty when the set does not exist); at most ReadLimits.maxSetElements. */
export async function readSetElements(nsPath: string | undefined, family: NftFamily, table: string, set: string): Promise<SetElement[]> {
  const out: SetElement[] = [];
  const max = readLimits().maxSetElements;
  const seq = nextSeq();
  let end;
  try {
    end = await dump(nsPath, setElemDumpRequest(family, table, set, seq), seq, `list set ${family} ${table} ${set}`, (m) => {
      for (const e of parseSetElems(m)) {
        if (out.length >= max) return false;
        out.push(e);
      }
      return true;
    });
  } catch (e) {
    if (e instanceof LibcError && e.errno === ENOENT) return out;
    throw e;
  }
  if (end === 'stopped')
    reportTruncated('setTruncated', `element read of set ${family} ${table} ${set} stopped at ${max} elements (ReadLimits.maxSetElements)`);
  return out;
}
