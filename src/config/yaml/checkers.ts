/**
 * YAML `checks:` of a real server (and a service's `check_defaults`) to the model's
 * checkers. Bounds and allowed values come from the checker schema (health/schema.ts).
 */
import { isScalar, isSeq, type Node } from 'yaml';
import { bounds } from '../../core/schema.js';
import {
  CheckerSchema,
  CheckerTypeSchema,
  DigestSchema,
  DnsTypeSchema,
  HexBytesSchema,
  MIN_INTERVAL,
  StatusCodeSchema,
} from '../../health/schema.js';
import { checkerDefaults, type CheckerConfig, type CheckerType, type HttpUrl } from '../../health/model.js';
import { asMap, show, type Ctx, type MapReader } from './reader.js';

const C = CheckerSchema.shape;
const INTERVAL = bounds(C.interval);
const TIMEOUT = bounds(C.timeout);
const RETRY = bounds(C.retry);
const DELAY_BEFORE_RETRY = bounds(C.delayBeforeRetry);
const RISE = bounds(C.rise);
const FALL = bounds(C.fall);
const CONNECT_PORT = bounds(C.connectPort);
const UDP = C.udp.unwrap().shape;
const MIN_REPLY = bounds(UDP.minReplyLength);
const MAX_REPLY = bounds(UDP.maxReplyLength);
const MISC = C.misc.unwrap().shape;
const STATUS = bounds(StatusCodeSchema);

/** Checker settings a service can give its real servers' checkers (keepalived: "the virtual server setting is the default"). */
export interface CheckDefaults {
  interval?: number | undefined;
  timeout?: number | undefined;
  retry?: number | undefined;
  delayBeforeRetry?: number | undefined;
  rise?: number | undefined;
  fall?: number | undefined;
  alpha?: boolean | undefined;
  virtualhost?: string | undefined;
}

/** A service's `check_defaults:`, `alpha` and `virtualhost`, which its real servers' checkers inherit. */
export function readCheckDefaults(m: MapReader): CheckDefaults {
  const defaults: CheckDefaults = {};
  const cd = m.map('check_defaults');
  if (cd) {
    defaults.interval = cd.seconds('interval', INTERVAL);
    defaults.timeout = cd.seconds('timeout', TIMEOUT);
    defaults.retry = cd.int('retry', RETRY);
    defaults.delayBeforeRetry = cd.seconds('delay_before_retry', DELAY_BEFORE_RETRY);
    defaults.rise = cd.int('rise', RISE);
    defaults.fall = cd.int('fall', FALL);
    cd.done(['interval', 'timeout', 'retry', 'delay_before_retry', 'rise', 'fall']);
  }
  defaults.alpha = m.bool('alpha');
  defaults.virtualhost = m.str('virtualhost');
  return defaults;
}

const CHECK_KEYS: Record<CheckerType | 'common', string[]> = {
  common: ['type', 'interval', 'timeout', 'retry', 'delay_before_retry', 'rise', 'fall', 'alpha', 'connect_ip', 'connect_port', 'bindto'],
  tcp: [],
  http: ['path', 'status', 'digest', 'virtualhost', 'urls'],
  https: ['path', 'status', 'digest', 'virtualhost', 'urls', 'sni'],
  udp: ['payload', 'require_reply', 'min_reply_length', 'max_reply_length'],
  dns: ['query_type', 'query_name'],
  misc: ['command', 'command_timeout', 'dynamic'],
};

/** One entry of a real server's `checks:`, with the service's check_defaults. */
export function readChecker(ctx: Ctx, n: Node, path: string, d: CheckDefaults): CheckerConfig | undefined {
  const m = asMap(ctx, n, path);
  if (!m) return undefined;
  if (!m.require('type')) return undefined;
  const type = m.oneOf('type', CheckerTypeSchema.options);
  if (!type) return undefined;
  const base = checkerDefaults(type);
  const interval = m.seconds('interval', INTERVAL) ?? d.interval ?? base.interval;
  const c: CheckerConfig = {
    type,
    ...base,
    interval,
    timeout: m.seconds('timeout', TIMEOUT) ?? d.timeout ?? base.timeout,
    retry: m.int('retry', RETRY) ?? d.retry ?? base.retry,
    // keepalived: DNS_CHECK retries after delay_loop by default.
    delayBeforeRetry:
      m.seconds('delay_before_retry', DELAY_BEFORE_RETRY) ?? d.delayBeforeRetry ?? (type === 'dns' ? interval : base.delayBeforeRetry),
    rise: m.int('rise', RISE) ?? d.rise ?? 1,
    fall: m.int('fall', FALL) ?? d.fall ?? 1,
    alpha: m.bool('alpha') ?? d.alpha ?? false,
  };
  const cip = m.addr('connect_ip');
  const cport = m.int('connect_port', CONNECT_PORT);
  const bind = m.addr('bindto');
  if (cip) c.connectIp = cip;
  if (cport !== undefined) c.connectPort = cport;
  if (bind) c.bindto = bind;
  if (type === 'http' || type === 'https') {
    const urls: HttpUrl[] = [];
    if (m.has('urls')) {
      urls.push(
        ...(m.list('urls', (item, p) => {
          const u = asMap(ctx, item, p);
          return u ? readUrl(ctx, u, true) : undefined;
        }) ?? []),
      );
    }
    if (m.has('path') || m.has('status') || m.has('digest') || !m.has('urls')) urls.unshift(readUrl(ctx, m, false)!);
    const vh = m.str('virtualhost') ?? d.virtualhost;
    c.http = { urls, sni: m.bool('sni') ?? false };
    if (vh) c.http.virtualhost = vh;
  } else if (type === 'udp') {
    const payload = m.str('payload');
    if (payload !== undefined && !HexBytesSchema.safeParse(payload).success)
      ctx.error(m.node_('payload'), m.sub('payload'), `expected hex bytes like "0a1b", got ${show(payload)}`);
    c.udp = {
      requireReply: m.bool('require_reply') ?? false,
      minReplyLength: m.int('min_reply_length', MIN_REPLY) ?? 0,
      maxReplyLength: m.int('max_reply_length', MAX_REPLY) ?? 255,
    };
    if (payload) c.udp.payload = payload;
  } else if (type === 'dns') {
    c.dns = { type: m.oneOf('query_type', DnsTypeSchema.options) ?? 'SOA', name: m.str('query_name') ?? '.' };
  } else if (type === 'misc') {
    m.require('command', 'is required for a misc check');
    c.misc = {
      path: m.str('command') ?? '',
      timeout: m.seconds('command_timeout', { ...bounds(MISC.timeout), min: MIN_INTERVAL }) ?? 0,
      dynamic: m.bool('dynamic') ?? false,
    };
  }
  m.done([...CHECK_KEYS.common, ...CHECK_KEYS[type]]);
  return c;
}

/** `status`: 200, "200-299", or a list of those. */
function readUrl(ctx: Ctx, m: MapReader, own: boolean): HttpUrl | undefined {
  const url: HttpUrl = { path: m.str('path') ?? '/', statusCodes: [[200, 299]] };
  if (m.has('status')) {
    const node = m.node_('status')!;
    const items = isSeq(node) ? (node.items as Node[]) : [node];
    const codes: Array<[number, number]> = [];
    for (const it of items) {
      const v = isScalar(it) ? it.value : undefined;
      const mm =
        typeof v === 'number' ? [String(v), String(v), String(v)] : typeof v === 'string' ? /^(\d{3})(?:-(\d{3}))?$/.exec(v.trim()) : null;
      const lo = mm ? Number(mm[1]) : NaN;
      const hi = mm ? Number(mm[2] ?? mm[1]) : NaN;
      if (!mm || lo < STATUS.min || hi > STATUS.max || lo > hi)
        ctx.error(it, m.sub('status'), `expected an HTTP status code or range like 200 or "200-299", got ${show(v)}`);
      else codes.push([lo, hi]);
    }
    if (codes.length) url.statusCodes = codes;
  }
  const digest = m.str('digest');
  if (digest !== undefined) {
    if (!DigestSchema.safeParse(digest).success)
      ctx.error(m.node_('digest'), m.sub('digest'), `expected an MD5 digest (32 hex digits), got ${show(digest)}`);
    else url.digest = digest.toLowerCase();
  }
  if (own) {
    const vh = m.str('virtualhost');
    if (vh) url.virtualhost = vh;
    m.done(['path', 'status', 'digest', 'virtualhost']);
  }
  return url;
}
