/**
 * UDP_CHECK: sends the payload (hex, default empty datagram). With require_reply the server
 * must answer within connect_timeout with a reply whose length is within
 * [min_reply_length, max_reply_length]; without it the server is down only when an ICMP
 * port-unreachable comes back (ECONNREFUSED on the connected socket).
 */
import { createSocket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import type { CheckerConfig } from '../config/model.js';
import { errText, since, type CheckResult, type CheckTarget } from './checker.js';

export function udpCheck(cfg: CheckerConfig, t: CheckTarget): Promise<CheckResult> {
  const t0 = performance.now();
  const o = cfg.udp ?? { requireReply: false, minReplyLength: 0, maxReplyLength: 255 };
  const payload = o.payload ? Buffer.from(o.payload, 'hex') : Buffer.alloc(0);
  return new Promise((resolve) => {
    const sock = createSocket(isIPv6(t.host) ? 'udp6' : 'udp4');
    let settled = false;
    const done = (ok: boolean, reason: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      try {
        sock.close();
      } catch {
        /* already closed */
      }
      resolve({ ok, reason, latencyMs: since(t0) });
    };
    const timer = setTimeout(
      () => (o.requireReply ? done(false, `no reply within ${cfg.timeout}s`) : done(true, 'no ICMP error')),
      cfg.timeout * 1000,
    );
    sock.once('error', (e) => done(false, errText(e)));
    sock.on('message', (msg) => {
      if (msg.length < o.minReplyLength || msg.length > o.maxReplyLength) {
        done(false, `reply of ${msg.length} bytes, expected ${o.minReplyLength}-${o.maxReplyLength}`);
      } else done(true, `reply of ${msg.length} bytes`);
    });
    const go = () =>
      sock.connect(t.port, t.host, () => {
        sock.send(payload, (e) => e && done(false, errText(e)));
      });
    if (cfg.bindto) sock.bind(0, cfg.bindto, go);
    else go();
  });
}
