/**
 * What the chaos tests share: a YAML config for services on loopback with TCP checks,
 * waiting, SIGHUP with its logged outcome, and a bounded HTTP load loop that counts every
 * failure with its reason.
 */
import { request } from 'node:http';
import type { Tsvsd } from '../daemon/spawn.js';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface Svc {
  vport: number;
  scheduler?: string;
  /** Seconds between checks (0.2 unless told). */
  interval?: number;
  servers: Array<{ port: number; weight?: number; inhibit?: boolean }>;
}

/** A tsvs YAML config: each service on 127.0.0.1 with a TCP check on each real server. */
export function yaml(svcs: Svc[]): string {
  const server = (r: Svc['servers'][number]) =>
    `      - address: 127.0.0.1\n        port: ${r.port}\n        weight: ${r.weight ?? 1}\n${r.inhibit ? '        inhibit_on_failure: true\n' : ''}        checks: [{ type: tcp }]\n`;
  const svc = (s: Svc) =>
    `  - address: 127.0.0.1\n    port: ${s.vport}\n    scheduler: ${s.scheduler ?? 'rr'}\n    check_defaults: { interval: ${s.interval ?? 0.2}, timeout: 0.5, retry: 1, delay_before_retry: 0.1 }\n    real_servers:\n${s.servers.map(server).join('')}`;
  return `services:\n${svcs.map(svc).join('')}`;
}

/** Polls `f` every 25 ms until it holds; throws naming `what` after `ms`. */
export async function until(f: () => Promise<boolean> | boolean, ms: number, what: string): Promise<void> {
  const t0 = Date.now();
  while (!(await f())) {
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(25);
  }
}

/** Sends SIGHUP and waits for the daemon to log the outcome; returns the new log text. */
export async function hup(d: Tsvsd): Promise<string> {
  const before = d.logs().length;
  d.proc.kill('SIGHUP');
  await until(() => /"msg":"(reloaded|reload refused)/.test(d.logs().slice(before)), 10_000, 'the reload outcome');
  return d.logs().slice(before);
}

/** One HTTP GET on 127.0.0.1 over a new connection; resolves with status and body. */
export function get(port: number, path = '/', timeoutMs = 5000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

export interface LoadStats {
  ok: number;
  failed: number;
  errors: string[];
  /** Requests answered, by the real server's name (its body). */
  by: Map<string, number>;
  /** When each failed request started (performance.now()), to tell in-flight ones from new ones. */
  failedStarts: number[];
}

/** Keeps `workers` loops of new-connection GETs through the VIP running until `stop()` (bounded by `maxMs`). */
export function load(vport: number, workers: number, maxMs = 60_000) {
  let running = true;
  const end = Date.now() + maxMs;
  const stats: LoadStats = { ok: 0, failed: 0, errors: [], by: new Map(), failedStarts: [] };
  const loops = Array.from({ length: workers }, async () => {
    while (running && Date.now() < end) {
      const started = performance.now();
      try {
        const r = await get(vport, '/', 5000);
        if (r.status === 200) {
          stats.ok++;
          const who = r.body.trim();
          stats.by.set(who, (stats.by.get(who) ?? 0) + 1);
        } else {
          stats.failed++;
          stats.failedStarts.push(started);
          stats.errors.push(`HTTP ${r.status}`);
        }
      } catch (e) {
        stats.failed++;
        stats.failedStarts.push(started);
        stats.errors.push((e as Error).message);
      }
    }
  });
  return {
    stats,
    stop: async () => {
      running = false;
      await Promise.all(loops);
      return stats;
    },
  };
}
