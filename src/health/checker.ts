/**
 * What every checker file exports: one attempt against one target, resolving (never
 * rejecting) with the outcome. The engine (engine.ts) owns timing, retries and state.
 */
import { errText } from '../core/log.js';
import { createSocket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import type { CheckerConfig } from './model.js';

export interface CheckResult {
  ok: boolean;
  /** Why it failed, or a short note of what passed ("HTTP 200"). */
  reason: string;
  latencyMs: number;
  /** MISC_CHECK with misc_dynamic: the weight the script asked for. */
  weight?: number;
}

export interface CheckTarget {
  host: string;
  port: number;
  /** The real server's address, for checkers that need it (MISC_CHECK env). */
  serverAddr: string;
  serverPort: number;
}

export type CheckFn = (cfg: CheckerConfig, target: CheckTarget) => Promise<CheckResult>;

/** Milliseconds since `t0` (performance.now()), rounded to 0.1 ms. */
export function since(t0: number): number {
  return Math.round((performance.now() - t0) * 10) / 10;
}

/**
 * Why a target cannot be probed at all, or null: port 0 comes from a real server without a
 * port (fwmark services, DR) checked without connect_port.
 */
export function targetProblem(t: CheckTarget): string | null {
  if (!Number.isInteger(t.port) || t.port < 1 || t.port > 65535)
    return `no port to check (port ${t.port}): give the checker a connect_port, or the real server a port`;
  return null;
}

/** A verdict on one probe: up or down, and why. */
export interface Verdict {
  ok: boolean;
  reason: string;
}

/**
 * One UDP exchange for a checker: sends `payload` from a socket connected to the target
 * (bound to `cfg.bindto` when set) and settles on the first reply, which `judge` rules on,
 * on an ICMP error (ECONNREFUSED: down), or on the timeout, where `silence` is the verdict.
 * The socket is always closed.
 */
export function udpExchange(
  cfg: Pick<CheckerConfig, 'timeout' | 'bindto'>,
  t: CheckTarget,
  payload: Buffer,
  judge: (reply: Buffer) => Verdict,
  silence: Verdict,
): Promise<CheckResult> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const sock = createSocket(isIPv6(t.host) ? 'udp6' : 'udp4');
    let settled = false;
    const done = ({ ok, reason }: Verdict) => {
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
    const timer = setTimeout(() => done(silence), cfg.timeout * 1000);
    sock.once('error', (e) => done({ ok: false, reason: errText(e) }));
    sock.on('message', (msg) => done(judge(msg)));
    // connect() and send() throw synchronously on a bad port or address (ERR_SOCKET_BAD_PORT):
    // inside a bind callback that would be an uncaught exception, so every throw is a failed check.
    const go = () => {
      try {
        sock.connect(t.port, t.host, () => {
          try {
            sock.send(payload, (e) => e && done({ ok: false, reason: errText(e) }));
          } catch (e) {
            done({ ok: false, reason: errText(e) });
          }
        });
      } catch (e) {
        done({ ok: false, reason: errText(e) });
      }
    };
    const bad = targetProblem(t);
    if (bad) done({ ok: false, reason: bad });
    else if (cfg.bindto) {
      try {
        sock.bind(0, cfg.bindto, go);
      } catch (e) {
        done({ ok: false, reason: errText(e) });
      }
    } else go();
  });
}
