/** TCP_CHECK: the real server is up when a TCP connection to it completes within connect_timeout. */
import { connect } from 'node:net';
import type { CheckerConfig } from './model.js';
import { errText } from '../core/log.js';
import { since, type CheckResult, type CheckTarget } from './checker.js';

export function tcpCheck(cfg: CheckerConfig, t: CheckTarget): Promise<CheckResult> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const sock = connect({ host: t.host, port: t.port, ...(cfg.bindto ? { localAddress: cfg.bindto } : {}) });
    const done = (ok: boolean, reason: string) => {
      clearTimeout(timer);
      sock.destroy();
      resolve({ ok, reason, latencyMs: since(t0) });
    };
    const timer = setTimeout(() => done(false, `connect timeout after ${cfg.timeout}s`), cfg.timeout * 1000);
    sock.once('connect', () => done(true, 'connected'));
    sock.once('error', (e) => done(false, `connect: ${errText(e)}`));
  });
}
