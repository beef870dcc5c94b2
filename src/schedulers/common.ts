/**
 * Arithmetic the kernel's schedulers share (include/net/ip_vs.h and the bodies of
 * ip_vs_wlc.c / ip_vs_lblc.c / ip_vs_mh.c), kept in one place so that every scheduler
 * computes load, hashes and availability the same way.
 *
 * Everything is integer arithmetic as in the kernel. Loads are compared by
 * cross-multiplication, never by division ("no floats in kernel mode", and no rounding
 * surprises for us). Plain JS numbers are exact up to 2^53; a weight is at most 65535
 * (< 2^16), so a product overhead * weight is exact while the overhead stays below
 * 2^37, i.e. below ~5 * 10^8 active connections on one server - far more than one
 * process can hold. (The kernel computes the overhead in an `int` and would overflow
 * already past 2^23 active connections; we do not reproduce that.)
 */
import { addrFold, addrWords, parseIPv4 } from '../core/addr.js';
import type { Family } from '../core/types.js';
import type { SchedDest } from '../core/scheduler.js';

/**
 * ip_vs_dest_conn_overhead(): an active connection is taken to cost 256 times an
 * inactive one. Multiplying instead of shifting keeps the result exact beyond 2^31.
 */
export function connOverhead(d: SchedDest): number {
  return d.activeconns * 256 + d.inactconns;
}

/**
 * The test the kernel's schedulers apply before picking a server for a new connection:
 * not quiesced (weight > 0) and not over its upper threshold (IP_VS_DEST_F_OVERLOAD).
 * Where a scheduler asks more, it says so next to its own use: dh, lblc and lblcr also
 * want the server still in the service (`available`), ovf wants it not full, wrr wants
 * its weight at the current threshold.
 */
export function usable(d: SchedDest): boolean {
  return !d.overloaded && d.weight > 0;
}

/** Knuth's multiplicative constant 2654435761 (0x9E3779B1) used by sh, dh and lblc. */
export const GOLDEN_PRIME = 0x9e3779b1;

/**
 * `(x * 2654435761) mod 2^32` as an unsigned number. The kernel multiplies a u32 by an
 * unsigned long and masks the low bits; the low 32 bits of that product are what
 * Math.imul returns, so `mulHash(x) & mask` equals the kernel's bucket index.
 */
export function mulHash(x: number): number {
  return Math.imul(x, GOLDEN_PRIME) >>> 0;
}

/** GOLDEN_RATIO_32 of include/linux/hash.h (kernel >= 4.7), used by hash_32(). */
const GOLDEN_RATIO_32 = 0x61c88647;

/** hash_32(val, bits): the high `bits` bits of val * GOLDEN_RATIO_32 mod 2^32 (lblcr). */
export function hash32(val: number, bits: number): number {
  return Math.imul(val, GOLDEN_RATIO_32) >>> (32 - bits);
}

/**
 * The hashing schedulers' `ntohl(addr_fold)` of a client or virtual address: the IPv4
 * address as a number, or the XOR of the four words of an IPv6 address. Same result as
 * addrFold() in core/addr.ts; the dotted-quad case is parsed by hand because this runs
 * once per scheduled connection and the general parser splits and tests regexps.
 */
export function foldAddr(addr: string): number {
  let v = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  const len = addr.length;
  for (let i = 0; i < len; i++) {
    const c = addr.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      part = part * 10 + (c - 48);
      if (++digits > 3) return addrFold(addr);
    } else if (c === 46 && digits > 0 && part <= 255 && dots < 3) {
      v = v * 256 + part;
      part = 0;
      digits = 0;
      dots++;
    } else {
      return addrFold(addr);
    }
  }
  if (dots !== 3 || digits === 0 || part > 255) return addrFold(addr);
  return v * 256 + part;
}

/**
 * The fold of a real server's address as the kernel computes it with the *service's*
 * family (ip_vs_mh_hashkey is called with svc->af): in an IPv4 service only the first
 * 32-bit word of the address union counts. Mixed families only occur with tunnelling.
 */
export function foldForFamily(af: Family, addr: string): number {
  if (af === 6) return addrFold(addr);
  const v4 = parseIPv4(addr);
  return v4 !== null ? v4 : addrWords(addr)[0];
}

/** Greatest common divisor of two positive integers (lib/math/gcd.c). */
export function gcd(a: number, b: number): number {
  while (b !== 0) {
    const t = a % b;
    a = b;
    b = t;
  }
  return a;
}

/** fls(): 1-based index of the most significant set bit, 0 for 0. */
export function fls(x: number): number {
  return 32 - Math.clz32(x);
}

/**
 * What a least-load scheduler counts as a server's overhead, the numerator of its load:
 * - `conn`: connOverhead, activeconns * 256 + inactconns (wlc, lc, lblc/lblcr);
 * - `sed`: activeconns + 1, the delay a new job would see (sed, nq);
 * - `flat`: 1 for every server, so the highest weight has the smallest load (fo, ovf).
 */
export type Overhead = 'conn' | 'sed' | 'flat';

/**
 * What a least-load scheduler asks of a server on top of usable():
 * - `none`;
 * - `room`: not full, activeconns <= weight (ovf);
 * - `in-service`: still in the service, IP_VS_DEST_F_AVAILABLE (lblcr's server sets,
 *   which may hold removed servers).
 */
export type AlsoTest = 'none' | 'room' | 'in-service';

/**
 * The one least-load loop of the kernel's schedulers: among the usable servers that pass
 * `also`, in list order, the one with the smallest overhead / weight. The first of them
 * seeds the search and a later one wins only with a strictly smaller load, so ties go
 * to the earlier server. Loads are compared by cross-multiplication
 * (`loh * w > doh * lw`), never divided, as ip_vs_wlc.c does. `weighted` false counts
 * every server as weight 1 (lc: the plain overhead decides).
 *
 * The variations are names, not callbacks, on purpose: with callbacks V8 ran this loop
 * three to eight times slower once several schedulers shared it.
 */
export function leastLoaded<D extends SchedDest>(dests: readonly D[], overhead: Overhead, also: AlsoTest, weighted: boolean): D | null {
  let least: D | null = null;
  let loh = 0;
  let lw = 0;
  for (let i = 0; i < dests.length; i++) {
    const d = dests[i]!;
    if (!usable(d) || (also === 'room' ? d.activeconns > d.weight : also === 'in-service' && !d.available)) continue;
    const doh = overhead === 'conn' ? connOverhead(d) : overhead === 'sed' ? d.activeconns + 1 : 1;
    const dw = weighted ? d.weight : 1;
    if (least === null || loh * dw > doh * lw) {
      least = d;
      loh = doh;
      lw = dw;
    }
  }
  return least;
}

/** ip_vs_wlc_schedule: the smallest connOverhead / weight (also lblc's and lblcr's choice). */
export function wlcPick<D extends SchedDest>(dests: readonly D[]): D | null {
  return leastLoaded(dests, 'conn', 'none', true);
}

/**
 * lblc/lblcr's own is_overloaded(): the server has more active connections than its
 * weight *and* some server of the service is below half of its weight. Both must hold,
 * so a uniformly busy cluster keeps its locality.
 */
export function localityOverloaded(dest: SchedDest, dests: readonly SchedDest[]): boolean {
  if (dest.activeconns <= dest.weight) return false;
  for (let i = 0; i < dests.length; i++) {
    const d = dests[i]!;
    if (d.activeconns * 2 < d.weight) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------
// hsiphash, as the kernel builds it on 64-bit machines (lib/siphash.c): SipHash-1-3 with
// 64-bit words and the result truncated to 32 bits. mh hashes exactly one u32, so only
// that case is implemented. 64-bit words are kept as (high, low) int32 pairs so that the
// per-connection lookup needs no BigInt.

/** A precomputed hsiphash key: the four SipHash state words after keying, as hi/lo int32. */
export interface HsipKey {
  readonly v: Int32Array;
}

/**
 * Keys the SipHash state. `k0`/`k1` are the two 64-bit key words given as high and low
 * 32-bit halves (the kernel's hsiphash_key_t on 64-bit is `unsigned long key[2]`).
 */
export function hsiphashKey(k0hi: number, k0lo: number, k1hi: number, k1lo: number): HsipKey {
  // "somepseudorandomlygeneratedbytes", the SipHash initialisation constants.
  return {
    v: Int32Array.of(
      0x736f6d65 ^ k0hi,
      0x70736575 ^ k0lo,
      0x646f7261 ^ k1hi,
      0x6e646f6d ^ k1lo,
      0x6c796765 ^ k0hi,
      0x6e657261 ^ k0lo,
      0x74656462 ^ k1hi,
      0x79746573 ^ k1lo,
    ),
  };
}

/**
 * hsiphash(&m, 4, key) on a 64-bit little-endian kernel: a 4-byte message has no full
 * 8-byte block, so it goes straight into the final word `b = 4 << 56 | m`, followed by
 * one compression round and three finalisation rounds. Returns an unsigned 32-bit value.
 */
export function hsiphash32(key: HsipKey, m: number): number {
  const k = key.v;
  let v0h = k[0]!,
    v0l = k[1]!,
    v1h = k[2]!,
    v1l = k[3]!;
  let v2h = k[4]!,
    v2l = k[5]!,
    v3h = k[6]!,
    v3l = k[7]!;
  const bh = 0x04000000; // length 4 in the top byte
  const bl = m | 0;
  v3h ^= bh;
  v3l ^= bl;
  let s: number;
  let t: number;
  for (let r = 0; r < 4; r++) {
    if (r === 1) {
      v0h ^= bh;
      v0l ^= bl;
      v2l ^= 0xff;
    }
    // v0 += v1; v1 = rol64(v1, 13); v1 ^= v0; v0 = rol64(v0, 32)
    s = (v0l >>> 0) + (v1l >>> 0);
    v0h = (v0h + v1h + (s > 0xffffffff ? 1 : 0)) | 0;
    v0l = s | 0;
    t = (v1h << 13) | (v1l >>> 19);
    v1l = (v1l << 13) | (v1h >>> 19);
    v1h = t ^ v0h;
    v1l ^= v0l;
    t = v0h;
    v0h = v0l;
    v0l = t;
    // v2 += v3; v3 = rol64(v3, 16); v3 ^= v2
    s = (v2l >>> 0) + (v3l >>> 0);
    v2h = (v2h + v3h + (s > 0xffffffff ? 1 : 0)) | 0;
    v2l = s | 0;
    t = (v3h << 16) | (v3l >>> 16);
    v3l = (v3l << 16) | (v3h >>> 16);
    v3h = t ^ v2h;
    v3l ^= v2l;
    // v0 += v3; v3 = rol64(v3, 21); v3 ^= v0
    s = (v0l >>> 0) + (v3l >>> 0);
    v0h = (v0h + v3h + (s > 0xffffffff ? 1 : 0)) | 0;
    v0l = s | 0;
    t = (v3h << 21) | (v3l >>> 11);
    v3l = (v3l << 21) | (v3h >>> 11);
    v3h = t ^ v0h;
    v3l ^= v0l;
    // v2 += v1; v1 = rol64(v1, 17); v1 ^= v2; v2 = rol64(v2, 32)
    s = (v2l >>> 0) + (v1l >>> 0);
    v2h = (v2h + v1h + (s > 0xffffffff ? 1 : 0)) | 0;
    v2l = s | 0;
    t = (v1h << 17) | (v1l >>> 15);
    v1l = (v1l << 17) | (v1h >>> 15);
    v1h = t ^ v2h;
    v1l ^= v2l;
    t = v2h;
    v2h = v2l;
    v2l = t;
  }
  // (v0 ^ v1) ^ (v2 ^ v3), truncated to u32: only the low halves matter.
  return (v0l ^ v1l ^ v2l ^ v3l) >>> 0;
}
