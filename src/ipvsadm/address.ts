/**
 * Addresses on ipvsadm's command line: "host[:port]" and "[v6]:port" (parse_service) and
 * host names through gethostbyname (host_to_addr), with the lookups handed in.
 */
import { parseIPv4 } from '../core/addr.js';
import type { Family, Protocol } from '../core/types.js';
import { formatV4, inetAton, pton6, stringToNumber } from './libc.js';
import type { ServicesDb } from './services.js';

/** The name lookups an address may need. */
export interface NameLookup {
  services: ServicesDb;
  /** gethostbyname: a host name to an IPv4 address, or null. */
  lookupHost(name: string): Promise<string | null>;
}

const STR_IS_DIGIT = /^\d*$/;

/** A parsed "host[:port]". */
interface ParsedAddr {
  af: Family;
  addr: string;
  /** null: no ":port" was given. */
  port: number | null;
}

/**
 * ipvsadm's parse_service: "host[:port]" or "[v6]:port". Returns null where ipvsadm says
 * "illegal ... address[:port] specified". Quirks kept: a purely numeric word is refused
 * (so `-t 80` is an error, not 0.0.0.80); "[1.2.3.4]:80" loses its port; an unbracketed
 * IPv6 address never has a port; port names are looked up for `proto` only.
 */
export async function parseAddrPort(buf: string, proto: Protocol | null, env: NameLookup): Promise<ParsedAddr | null> {
  if (STR_IS_DIGIT.test(buf)) return null;
  let s = buf;
  let bracketPort: string | null = null;
  let bracketed = false;
  if (s.startsWith('[')) {
    const close = s.indexOf(']');
    if (close < 0) return null;
    if (s[close + 1] !== ':') return null;
    bracketPort = s.slice(close + 2);
    s = s.slice(1, close);
    bracketed = true;
  }
  let af: Family;
  let addr: string;
  let portStr: string | null;
  const v6 = pton6(s);
  if (v6 !== null) {
    af = 6;
    addr = v6;
    portStr = bracketed ? bracketPort : null;
  } else {
    const colon = s.lastIndexOf(':');
    portStr = colon >= 0 ? s.slice(colon + 1) : null;
    if (colon >= 0) s = s.slice(0, colon);
    const v4 = inetAton(s);
    if (v4 !== null) addr = formatV4(v4);
    else {
      const resolved = await lookupV4(s, env);
      if (resolved === null) return null;
      addr = resolved;
    }
    af = 4;
  }
  if (portStr === null) return { af, addr, port: null };
  let port = stringToNumber(portStr, 0, 65535);
  if (port === null && proto !== null) port = env.services.portOf(portStr, proto);
  if (port === null) return null;
  return { af, addr, port };
}

/** host_to_addr: gethostbyname, IPv4 answers only. */
export async function lookupV4(name: string, env: Pick<NameLookup, 'lookupHost'>): Promise<string | null> {
  // ASCII host names only: the resolver maps a fullwidth digit to its ASCII twin (NFKC), so
  // "127.0.0.１" would come back as 127.0.0.1; gethostbyname, as ipvsadm calls it, does not.
  if (name === '' || /[^\x21-\x7e]/.test(name)) return null;
  const a = await env.lookupHost(name);
  if (a === null) return null;
  const v = parseIPv4(a);
  return v === null ? null : formatV4(v);
}
