/**
 * keepalived.conf checkers (keepalived's check/ folder): TCP_CHECK, HTTP_GET, SSL_GET,
 * UDP_CHECK, DNS_CHECK and MISC_CHECK, with keepalived's defaults and the settings a
 * checker inherits from its virtual server and real server (delay_loop, connect_timeout,
 * retry, ...). SMTP_CHECK, PING_CHECK, BFD_CHECK and FILE_CHECK are reported unsupported.
 */
import { DNS_TYPES } from '../../health/dns.js';
import { checkerDefaults, type CheckerConfig, type CheckerType, type HttpUrl } from '../../health/model.js';
import type { Stmt } from './lexer.js';
import { setIf, type Reader } from './reader.js';
import { quote } from '../../core/quote.js';

/** Checker keywords tsvs runs, to the checker type. */
export const CHECKER_KEYWORDS: Record<string, CheckerType> = {
  TCP_CHECK: 'tcp',
  HTTP_GET: 'http',
  SSL_GET: 'https',
  UDP_CHECK: 'udp',
  DNS_CHECK: 'dns',
  MISC_CHECK: 'misc',
};

/** Checker keywords keepalived has and tsvs does not run. */
export const UNSUPPORTED_CHECKERS: ReadonlySet<string> = new Set(['SMTP_CHECK', 'PING_CHECK', 'BFD_CHECK', 'FILE_CHECK']);

/** Checker settings inherited from the virtual server and the real server. */
export interface Inherit {
  interval?: number;
  timeout?: number;
  retry?: number;
  delayBeforeRetry?: number;
  alpha?: boolean;
  inhibit?: boolean;
  virtualhost?: string;
}

/** Checker settings valid on a virtual server, a real server and a checker; false if `s` is not one. */
export function readCommon(r: Reader, s: Stmt, inh: Inherit): boolean {
  switch (s.words[0]) {
    case 'delay_loop':
      setIf(inh, 'interval', r.timerArg(s));
      return true;
    case 'connect_timeout':
      setIf(inh, 'timeout', r.timerArg(s));
      return true;
    case 'retry':
    case 'nb_get_retry':
      setIf(inh, 'retry', r.intArg(s, 'a count', 0, 1000));
      return true;
    case 'delay_before_retry':
      setIf(inh, 'delayBeforeRetry', r.timerArg(s));
      return true;
    case 'alpha':
      if (r.flag(s)) inh.alpha = true;
      return true;
    case 'inhibit_on_failure':
      if (r.flag(s)) inh.inhibit = true;
      return true;
    case 'warmup':
      r.unsupportedKw(s, 'a checker setting', 'tsvs always spreads first checks over up to one second');
      return true;
  }
  return false;
}

/** Reads one checker block (`st` is a CHECKER_KEYWORDS statement) of the real server `rsWhere`. */
export function readChecker(r: Reader, st: Stmt, rsWhere: string, rsInh: Inherit): CheckerConfig | undefined {
  const kw = st.words[0]!;
  const type = CHECKER_KEYWORDS[kw]!;
  if (!r.args(st, 0, 0, 'a block')) return undefined;
  const where = `${kw} of ${rsWhere}`;
  const inh: Inherit = { ...rsInh };
  const d = checkerDefaults(type);
  const c: CheckerConfig = { type, ...d };
  const urls: HttpUrl[] = [];
  let sni = false;
  let misc: CheckerConfig['misc'] | undefined;
  const udp = { requireReply: false, minReplyLength: 0, maxReplyLength: 255 } as NonNullable<CheckerConfig['udp']>;
  const dns = { type: 'SOA', name: '.' };
  for (const s of st.block ?? []) {
    const k = s.words[0]!;
    if (readCommon(r, s, inh)) continue;
    switch (k) {
      case 'connect_ip':
        setIf(c, 'connectIp', r.addrArg(s));
        continue;
      case 'connect_port':
        setIf(c, 'connectPort', r.intArg(s, 'a port', 1, 65535));
        continue;
      case 'bindto':
        setIf(c, 'bindto', r.addrArg(s));
        continue;
    }
    if ((type === 'http' || type === 'https') && readHttpKeyword(r, s, urls, inh, where)) {
      if (k === 'enable_sni') sni = true;
      continue;
    }
    if (type === 'udp' && ['payload', 'require_reply', 'min_reply_length', 'max_reply_length'].includes(k)) {
      if (k === 'payload') {
        if (r.args(s, 1, 1, 'hex bytes') && /^([0-9a-fA-F]{2})+$/.test(s.words[1]!)) udp.payload = s.words[1]!.toLowerCase();
        else if (s.words.length === 2) r.error(s, `payload: expected hex bytes like 0a1b, got ${quote(s.words[1])}`);
      } else if (k === 'require_reply') {
        if (r.flag(s)) udp.requireReply = true;
      } else setIf(udp, k === 'min_reply_length' ? 'minReplyLength' : 'maxReplyLength', r.intArg(s, 'a length', 0, 65535));
      continue;
    }
    if (type === 'dns' && (k === 'type' || k === 'name')) {
      if (!r.args(s, 1, 1, k === 'type' ? 'a query type' : 'a domain name')) continue;
      if (k === 'type') {
        const t = s.words[1]!.toUpperCase();
        if (t in DNS_TYPES) dns.type = t;
        else r.error(s, `type: expected one of ${Object.keys(DNS_TYPES).join(', ')}, got ${quote(s.words[1])}`);
      } else dns.name = s.words[1]!;
      continue;
    }
    if (type === 'misc' && ['misc_path', 'misc_timeout', 'misc_dynamic', 'user'].includes(k)) {
      misc ??= { path: '', timeout: 0, dynamic: false };
      if (k === 'misc_path') setIf(misc, 'path', r.word(s, 'a command line (quote it when it has arguments)'));
      else if (k === 'misc_timeout') setIf(misc, 'timeout', r.timerArg(s));
      else if (k === 'misc_dynamic') {
        if (r.flag(s)) misc.dynamic = true;
      } else r.unsupportedKw(s, where, "the script runs as tsvsd's user");
      continue;
    }
    if (['bind_port', 'bind_if', 'fwmark', 'log_all_failures'].includes(k)) {
      r.unsupportedKw(s, where);
      continue;
    }
    r.other(s, where);
  }
  c.interval = inh.interval ?? d.interval;
  c.timeout = inh.timeout ?? d.timeout;
  c.retry = inh.retry ?? d.retry;
  c.delayBeforeRetry = inh.delayBeforeRetry ?? (type === 'dns' ? c.interval : d.delayBeforeRetry);
  c.alpha = inh.alpha ?? false;
  if (type === 'http' || type === 'https') {
    c.http = { urls: urls.length ? urls : [{ path: '/', statusCodes: [[200, 299]] }], sni };
    if (inh.virtualhost) c.http.virtualhost = inh.virtualhost;
  } else if (type === 'udp') c.udp = udp;
  else if (type === 'dns') c.dns = dns;
  else if (type === 'misc') {
    if (!misc?.path) {
      r.error(st, `${where}: misc_path is required`);
      return undefined;
    }
    c.misc = misc;
  }
  return c;
}

/** HTTP_GET / SSL_GET keywords: url blocks, virtualhost, ...; false if `s` is not one. */
function readHttpKeyword(r: Reader, s: Stmt, urls: HttpUrl[], inh: Inherit, where: string): boolean {
  switch (s.words[0]) {
    case 'url':
      if (r.needBlock(s)) urls.push(readUrl(r, s, where));
      return true;
    case 'virtualhost':
      setIf(inh, 'virtualhost', r.word(s, 'a host name'));
      return true;
    case 'enable_sni':
      r.flag(s);
      return true;
    case 'http_protocol':
      if (r.args(s, 1, 1, '1.0, 1.0C or 1.1') && !['1.0', '1.0C', '1.1', '1.0c'].includes(s.words[1]!))
        r.error(s, `http_protocol: expected 1.0, 1.0C or 1.1, got ${quote(s.words[1])}`);
      else r.unsupportedKw(s, where, 'tsvs sends HTTP/1.1 with Connection: close');
      return true;
    case 'fast_recovery':
      r.unsupportedKw(s, where);
      return true;
  }
  return false;
}

/** One `url { path ...; status_code ...; digest ... }` block. */
function readUrl(r: Reader, s: Stmt, where: string): HttpUrl {
  const url: HttpUrl = { path: '/', statusCodes: [] };
  let hasPath = false;
  for (const u of s.block ?? []) {
    const k = u.words[0]!;
    if (k === 'path') {
      if (r.args(u, 1, 1, 'a path')) {
        url.path = u.words[1]!;
        hasPath = true;
      }
    } else if (k === 'digest') {
      if (r.args(u, 1, 1, 'an MD5 digest') && /^[0-9a-fA-F]{32}$/.test(u.words[1]!)) url.digest = u.words[1]!.toLowerCase();
      else if (u.words.length === 2) r.error(u, `digest: expected an MD5 digest (32 hex digits), got ${quote(u.words[1])}`);
    } else if (k === 'status_code') {
      if (!r.args(u, 1, 100, 'status codes or ranges')) continue;
      for (const code of u.words.slice(1)) {
        const m = /^(\d{3})(?:-(\d{3}))?$/.exec(code);
        const lo = m ? Number(m[1]) : NaN;
        const hi = m ? Number(m[2] ?? m[1]) : NaN;
        if (!m || lo < 100 || hi > 599 || lo > hi)
          r.error(u, `status_code: expected a code or range like 200 or 200-299, got ${quote(code)}`);
        else url.statusCodes.push([lo, hi]);
      }
    } else if (k === 'virtualhost') {
      setIf(url, 'virtualhost', r.word(u, 'a host name'));
    } else if (['regex', 'regex_no_match', 'regex_options', 'regex_stack', 'regex_min_offset', 'regex_max_offset'].includes(k)) {
      r.unsupportedKw(u, `url of ${where}`, 'body regex not checked');
    } else r.other(u, `url of ${where}`);
  }
  if (!hasPath) r.error(s, `url of ${where}: path is required`);
  if (!url.statusCodes.length) url.statusCodes = [[200, 299]];
  return url;
}
