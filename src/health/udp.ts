/**
 * UDP_CHECK: sends the payload (hex, default empty datagram). With require_reply the server
 * must answer within connect_timeout with a reply whose length is within
 * [min_reply_length, max_reply_length]; without it the server is down only when an ICMP
 * port-unreachable comes back (ECONNREFUSED on the connected socket).
 */
import type { CheckerConfig } from './model.js';
import { udpExchange, type CheckResult, type CheckTarget } from './checker.js';

export function udpCheck(cfg: CheckerConfig, t: CheckTarget): Promise<CheckResult> {
  const o = cfg.udp ?? { requireReply: false, minReplyLength: 0, maxReplyLength: 255 };
  const payload = o.payload ? Buffer.from(o.payload, 'hex') : Buffer.alloc(0);
  return udpExchange(
    cfg,
    t,
    payload,
    (msg) =>
      msg.length < o.minReplyLength || msg.length > o.maxReplyLength
        ? { ok: false, reason: `reply of ${msg.length} bytes, expected ${o.minReplyLength}-${o.maxReplyLength}` }
        : { ok: true, reason: `reply of ${msg.length} bytes` },
    o.requireReply ? { ok: false, reason: `no reply within ${cfg.timeout}s` } : { ok: true, reason: 'no ICMP error' },
  );
}
