/**
 * IP address helpers for the core: parsing to canonical text, the integer forms that the
 * kernel's hash functions and sort order use, and persistence masks. Pure functions.
 */
import type { Family } from './types.js';

/** Parses a dotted quad to an unsigned 32-bit number, or returns null. */
export function parseIPv4(s: string): number | null {
  const parts = s.split('.');
  if (parts.length !== 4) return null;
  let v = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) return null;
    const n = Number(p);
    if (n > 255) return null;
    v = v * 256 + n;
  }
  return v;
}

export function formatIPv4(v: number): string {
  return `${(v >>> 24) & 255}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

/** Parses an IPv6 address (with optional embedded IPv4 tail) into eight 16-bit groups, or null. */
export function parseIPv6(s: string): number[] | null {
  if (s.length === 0 || s.length > 45) return null;
  if (s.includes('%')) return null; // zone ids are not valid service addresses
  let str = s;
  const lastColon = str.lastIndexOf(':');
  if (lastColon >= 0 && str.includes('.', lastColon)) {
    // Embedded IPv4 tail ("::ffff:1.2.3.4"): rewrite it as two hex groups.
    const v4 = parseIPv4(str.slice(lastColon + 1));
    if (v4 === null) return null;
    str = `${str.slice(0, lastColon + 1)}${(v4 >>> 16).toString(16)}:${(v4 & 0xffff).toString(16)}`;
  }
  return parseGroups(str, 8);
}

function parseGroups(str: string, want: number): number[] | null {
  const dbl = str.indexOf('::');
  if (dbl !== str.lastIndexOf('::')) return null;
  const toNums = (part: string): number[] | null => {
    if (part === '') return [];
    const out: number[] = [];
    for (const g of part.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  if (dbl < 0) {
    const g = toNums(str);
    return g && g.length === want ? g : null;
  }
  const head = toNums(str.slice(0, dbl));
  const tail = toNums(str.slice(dbl + 2));
  if (!head || !tail) return null;
  const fill = want - head.length - tail.length;
  if (fill < 1) return null;
  return [...head, ...new Array<number>(fill).fill(0), ...tail];
}

/** RFC 5952 text form of eight 16-bit groups (IPv4-mapped addresses keep the dotted tail, §5). */
export function formatIPv6(g: readonly number[]): string {
  if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff) {
    return `::ffff:${g[6]! >>> 8}.${g[6]! & 255}.${g[7]! >>> 8}.${g[7]! & 255}`;
  }
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (a: readonly number[]) => a.map((x) => x.toString(16)).join(':');
  if (bestStart < 0) return hex(g);
  return `${hex(g.slice(0, bestStart))}::${hex(g.slice(bestStart + bestLen))}`;
}

/** Family of a textual address, or null if it is neither. Accepts IPv4-mapped IPv6. */
export function familyOf(s: string): Family | null {
  if (parseIPv4(s) !== null) return 4;
  if (parseIPv6(s) !== null) return 6;
  return null;
}

/** Canonical text form of an address, or null if it does not parse. */
export function canonicalAddr(s: string): string | null {
  const v4 = parseIPv4(s);
  if (v4 !== null) return formatIPv4(v4);
  const v6 = parseIPv6(s);
  return v6 ? formatIPv6(v6) : null;
}

/**
 * Socket addresses of IPv4 clients on a dual-stack listener come as "::ffff:a.b.c.d";
 * the kernel sees them as IPv4, so we do too.
 */
export function unmapAddr(s: string): string {
  return s.startsWith('::ffff:') && s.includes('.') ? s.slice(7) : s;
}

/** The address as four 32-bit words in host order (IPv4: [0, 0, 0, v]). */
export function addrWords(s: string): [number, number, number, number] {
  const v4 = parseIPv4(s);
  if (v4 !== null) return [0, 0, 0, v4];
  const g = parseIPv6(s);
  if (!g) throw new Error(`not an IP address: ${s}`);
  return [((g[0]! << 16) | g[1]!) >>> 0, ((g[2]! << 16) | g[3]!) >>> 0, ((g[4]! << 16) | g[5]!) >>> 0, ((g[6]! << 16) | g[7]!) >>> 0];
}

/**
 * The kernel's "address fold" used by the hashing schedulers: ntohl(ip) for IPv4, and
 * the XOR of the four 32-bit words for IPv6 (ip_vs_sh.c, ip_vs_dh.c, ip_vs_lblc.c).
 */
export function addrFold(s: string): number {
  const v4 = parseIPv4(s);
  if (v4 !== null) return v4;
  const [a, b, c, d] = addrWords(s);
  return (a ^ b ^ c ^ d) >>> 0;
}

/** Orders addresses as libipvs sorts them: IPv4 before IPv6, then numerically. */
export function compareAddr(a: string, b: string): number {
  const fa = familyOf(a);
  const fb = familyOf(b);
  if (fa !== fb) return (fa ?? 0) - (fb ?? 0);
  const wa = addrWords(a);
  const wb = addrWords(b);
  for (let i = 0; i < 4; i++) if (wa[i] !== wb[i]) return wa[i]! - wb[i]!;
  return 0;
}

/** Converts an IPv4 dotted mask to its 32-bit value, or null. Non-contiguous masks are allowed, as in the kernel. */
export function parseMask4(s: string): number | null {
  return parseIPv4(s);
}

/**
 * Applies a persistence netmask to a client address: the `snet` of ip_vs_sched_persist.
 * IPv4: `addr & mask`; IPv6: the first `plen` bits.
 */
export function maskAddr(s: string, af: Family, netmask: number): string {
  if (af === 4) {
    const v = parseIPv4(s);
    if (v === null) return s;
    return formatIPv4((v & netmask) >>> 0);
  }
  const g = parseIPv6(s);
  if (!g) return s;
  const out = g.map((x, i) => {
    const bits = Math.max(0, Math.min(16, netmask - i * 16));
    const m = bits === 0 ? 0 : (0xffff << (16 - bits)) & 0xffff;
    return x & m;
  });
  return formatIPv6(out);
}

/** "addr:port" with IPv6 in brackets, as ipvsadm prints numeric addresses. */
export function formatAddrPort(addr: string, port: number): string {
  return familyOf(addr) === 6 ? `[${addr}]:${port}` : `${addr}:${port}`;
}

/** The unspecified address of a family, used as the address of fwmark services. */
export function anyAddr(af: Family): string {
  return af === 4 ? '0.0.0.0' : '::';
}
