/**
 * `tsvs top`: a terminal view in the spirit of top. Every interval it reads /v1/status
 * from the API (the same call the dashboard's event stream carries) and shows, per virtual
 * service and real server, the rates, the connections, health and failed connects.
 * Rates are counter deltas over the last interval; the first frame (and `--once`) shows
 * the kernel-style estimator's rates instead, as `ipvsadm --rate` would.
 */
import { parseArgs } from 'node:util';
import { ConnectError, HttpControlClient } from '../api/client.js';
import type { StatusView } from '../api/routes/view.js';
import { defaultSocketPath } from '../api/socket.js';
import { isTsvsError } from '../core/errors.js';
import type { Rates, Stats } from '../core/types.js';

/** Options every API client command takes: where the daemon is and the token. */
export const CLIENT_OPTIONS = {
  socket: { type: 'string' },
  api: { type: 'string' },
  token: { type: 'string' },
} as const;

export const CLIENT_USAGE = `  --socket PATH    tsvsd's control socket (default: $TSVS_SOCKET or tsvsd's default)
  --api URL        use the TCP API instead, e.g. http://127.0.0.1:9180 (also $TSVS_API)
  --token TOKEN    bearer token for changes over TCP (also $TSVS_API_TOKEN)`;

export function clientFrom(values: { socket?: string | undefined; api?: string | undefined; token?: string | undefined }, env: NodeJS.ProcessEnv = process.env): HttpControlClient {
  const api = values.api ?? env.TSVS_API;
  const token = values.token ?? env.TSVS_API_TOKEN;
  if (api) {
    const baseUrl = /^https?:\/\//.test(api) ? api : `http://${api}`;
    return new HttpControlClient({ baseUrl, ...(token ? { token } : {}), timeoutMs: 10_000 });
  }
  return new HttpControlClient({ socketPath: values.socket ?? defaultSocketPath(env), timeoutMs: 10_000 });
}

/** A message for a failed API call, for stderr. */
export function clientError(e: unknown): string {
  if (e instanceof ConnectError) return `${e.message}\nIs tsvsd running? Set TSVS_SOCKET, or --api for the TCP API.`;
  if (isTsvsError(e)) return `${e.message} (${e.detail})`;
  return (e as Error).message;
}

const USAGE = `Usage: tsvs top [options]

A live view of the director: rates and connections per virtual service and real server.
Press q (or Ctrl-C) to quit.

Options:
  -d, --interval SECS  seconds between refreshes (default 1)
  -n, --iterations N   stop after N frames
  --once               print one frame and exit (no screen clearing)
${CLIENT_USAGE}
  -h, --help           this text
`;

function fmtCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)}G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e5) return `${(n / 1e3).toFixed(0)}K`;
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}

function fmtBytes(n: number): string {
  const units = ['B', 'K', 'M', 'G', 'T'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return i === 0 ? `${Math.round(n)}B` : `${n.toFixed(1)}${units[i]}`;
}

/** Per-second rates between two counter snapshots, or the estimator's when there is no previous one. */
function ratesOf(cur: Stats, prev: Stats | undefined, dt: number, estimator: Rates): Rates {
  if (!prev || dt <= 0) return estimator;
  const d = (a: number, b: number) => Math.max(0, a - b) / dt;
  return { cps: d(cur.conns, prev.conns), inpps: d(cur.inpkts, prev.inpkts), outpps: d(cur.outpkts, prev.outpkts), inbps: d(cur.inbytes, prev.inbytes), outbps: d(cur.outbytes, prev.outbytes) };
}

const COLS = '%-34s %7s %-10s %7s %7s %7s %8s %8s %9s %7s';

function row(cols: string[]): string {
  let i = 0;
  return COLS.replace(/%(-?)(\d+)s/g, (_, left: string, w: string) => {
    const v = cols[i++] ?? '';
    return left ? v.padEnd(Number(w)) : v.padStart(Number(w));
  }).trimEnd();
}

/** One frame of `tsvs top` as text. `prev` is the previous snapshot, for measured rates. */
export function renderTop(st: StatusView, prev: StatusView | null): string {
  const dt = prev ? (Date.parse(st.at) - Date.parse(prev.at)) / 1000 : 0;
  const prevSvc = new Map(prev?.services.map((s) => [s.id, s]) ?? []);
  const total = ratesOf(st.stats, prev?.stats, dt, st.rates);
  const measured = prev && dt > 0 ? `rates over the last ${dt.toFixed(1)}s` : 'rates: 2s estimator';
  const active = st.services.reduce((a, s) => a + s.dests.reduce((b, d) => b + d.activeconns, 0), 0);
  const inactive = st.services.reduce((a, s) => a + s.dests.reduce((b, d) => b + d.inactconns, 0), 0);
  const lines = [
    `tsvs top - ${st.at.slice(11, 19)} UTC  ${st.dataplane} data plane  VRRP ${st.vrrp.configured ? st.vrrp.instances.map((i) => `${i.name} ${i.state}`).join(', ') : 'not configured'}  (${measured})`,
    `Total: ${fmtCount(total.cps)} conn/s  in ${fmtBytes(total.inbps)}/s  out ${fmtBytes(total.outbps)}/s  ` +
      `active ${active}  inactive ${inactive}  connections ${st.stats.conns}  no-destination ${st.dataplaneCounters?.noDestination ?? 0}`,
    '',
    row(['SERVICE / REAL SERVER', 'WEIGHT', 'HEALTH', 'ACTIVE', 'INACT', 'CONN/S', 'IN/S', 'OUT/S', 'CONNS', 'FAILED']),
  ];
  if (!st.services.length) lines.push('(no virtual services)');
  for (const s of st.services) {
    const ps = prevSvc.get(s.id);
    const r = ratesOf(s.stats, ps?.stats, dt, s.rates);
    lines.push(
      row([
        `${s.label} ${s.scheduler}`,
        '',
        '',
        String(s.dests.reduce((a, d) => a + d.activeconns, 0)),
        String(s.dests.reduce((a, d) => a + d.inactconns, 0)),
        fmtCount(r.cps),
        fmtBytes(r.inbps),
        fmtBytes(r.outbps),
        String(s.stats.conns),
        String(s.dests.reduce((a, d) => a + d.connectFailures, 0)),
      ]),
    );
    const prevDest = new Map(ps?.dests.map((d) => [d.id, d]) ?? []);
    for (const d of s.dests) {
      const dr = ratesOf(d.stats, prevDest.get(d.id)?.stats, dt, d.rates);
      const health = d.health.state + (d.health.lastCheck && !d.health.lastCheck.ok ? '*' : '');
      lines.push(
        row([
          `  -> ${d.id}`,
          d.weight === 0 && d.drainedFrom !== undefined ? `0 (${d.drainedFrom})` : String(d.weight),
          health,
          String(d.activeconns),
          String(d.inactconns),
          fmtCount(dr.cps),
          fmtBytes(dr.inbps),
          fmtBytes(dr.outbps),
          String(d.stats.conns),
          String(d.connectFailures),
        ]),
      );
      if (d.health.lastCheck && !d.health.lastCheck.ok) lines.push(`       * ${d.health.lastCheck.reason}`);
    }
    for (const x of s.removed ?? []) {
      lines.push(row([`  -> ${x.id}`, '-', `${x.health.state}*`, '', '', '', '', '', '', '']) + '  (removed by health checking)');
      if (x.health.lastCheck && !x.health.lastCheck.ok) lines.push(`       * ${x.health.lastCheck.reason}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

export async function runTop(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        ...CLIENT_OPTIONS,
        interval: { type: 'string', short: 'd' },
        iterations: { type: 'string', short: 'n' },
        once: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (e) {
    process.stderr.write(`tsvs top: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const interval = Number(values.interval ?? 1);
  if (!Number.isFinite(interval) || interval < 0.1) {
    process.stderr.write(`tsvs top: --interval "${values.interval}": must be a number of seconds >= 0.1\n`);
    return 2;
  }
  const iterations = values.once ? 1 : values.iterations === undefined ? Infinity : Number(values.iterations);
  if (!(iterations >= 1)) {
    process.stderr.write(`tsvs top: --iterations "${values.iterations}": must be a number >= 1\n`);
    return 2;
  }
  const client = clientFrom(values);
  const tty = !values.once && process.stdout.isTTY;
  let quit = false;
  let wake: (() => void) | null = null;
  const stop = () => {
    quit = true;
    wake?.();
  };
  const onKey = (k: Buffer) => {
    if (k[0] === 0x71 || k[0] === 0x03) stop(); // q or Ctrl-C
  };
  if (tty && process.stdin.isTTY) {
    process.stdin.setRawMode(true);
    process.stdin.on('data', onKey);
  }
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  let prev: StatusView | null = null;
  try {
    for (let i = 0; i < iterations && !quit; i++) {
      let st: StatusView;
      try {
        st = await client.status();
      } catch (e) {
        process.stderr.write(`tsvs top: ${clientError(e)}\n`);
        return 1;
      }
      const frame = renderTop(st, prev);
      // Home and clear-to-end, so the screen does not flicker.
      process.stdout.write(tty ? `\x1b[H\x1b[2J${frame}` : i > 0 ? `\n${frame}` : frame);
      prev = st;
      if (i + 1 < iterations && !quit) {
        await new Promise<void>((r) => {
          const t = setTimeout(r, interval * 1000);
          wake = () => {
            clearTimeout(t);
            r();
          };
        });
      }
    }
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    if (tty && process.stdin.isTTY) {
      process.stdin.off('data', onKey);
      process.stdin.setRawMode(false);
      process.stdin.pause();
    }
  }
  return 0;
}
