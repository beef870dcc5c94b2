/**
 * `tsvs drain RIP[:PORT] [--service VIP]`: sets the real server's weight to 0 through the
 * API (open connections continue, new ones go elsewhere), then shows the connections
 * still open on it until none are left or the timeout passes. `--restore` puts back the
 * weight from before the drain.
 */
import { parseArgs } from 'node:util';
import type { HttpControlClient } from '../api/client.js';
import { openConnections, type ServiceStatus, type StatusView } from '../api/routes/view.js';
import { canonicalAddr, formatAddrPort } from '../core/addr.js';
import { CLIENT_OPTIONS, CLIENT_USAGE, clientError, clientFrom } from './top.js';

const USAGE = `Usage: tsvs drain RIP[:PORT] [options]

Drains a real server: weight 0 through the API, so that it gets no new connections
while open ones finish, then shows the connections left until none are (exit 0) or
the timeout passes (exit 1; the weight stays 0). Without --service, the real server
is drained in every virtual service that has it.

Options:
  --service VIP      only in this virtual service: ADDR:PORT, ADDR, or an API id
                     such as tcp:10.0.0.1:80
  --timeout SECS     give up waiting after this long (default 300)
  --interval SECS    seconds between progress updates (default 1)
  --no-wait          set the weight and report the connections open now, then exit
  --restore          put back the weight from before the drain instead
${CLIENT_USAGE}
  -h, --help         this text
`;

interface Target {
  svc: ServiceStatus;
  serverId: string;
}

/** Parses "10.0.0.5", "10.0.0.5:80", "[2001:db8::5]:80" or "2001:db8::5". */
function parseRip(s: string): { addr: string; port: number | null } | null {
  let m = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
  if (!m) m = /^(\d+\.\d+\.\d+\.\d+)(?::(\d+))?$/.exec(s);
  if (!m && s.includes(':') && canonicalAddr(s)) return { addr: canonicalAddr(s)!, port: null };
  if (!m) return null;
  const addr = canonicalAddr(m[1]!);
  const port = m[2] === undefined ? null : Number(m[2]);
  if (!addr || (port !== null && port > 65535)) return null;
  return { addr, port };
}

function serviceMatches(s: ServiceStatus, want: string): boolean {
  if (s.id === want) return true;
  const canon = canonicalAddr(want.replace(/^\[|\]$/g, ''));
  if (canon && !s.fwmark) return s.addr === canon;
  const m = /^(.*):(\d+)$/.exec(want);
  if (m) {
    const a = canonicalAddr(m[1]!.replace(/^\[|\]$/g, ''));
    return !!a && !s.fwmark && s.addr === a && s.port === Number(m[2]);
  }
  return false;
}

function findTargets(st: StatusView, rip: { addr: string; port: number | null }, service: string | undefined): Target[] {
  const out: Target[] = [];
  for (const svc of st.services) {
    if (service !== undefined && !serviceMatches(svc, service)) continue;
    for (const d of svc.dests) {
      if (d.addr === rip.addr && (rip.port === null || d.port === rip.port)) out.push({ svc, serverId: d.id });
    }
  }
  return out;
}

async function remaining(client: HttpControlClient, t: Target): Promise<number> {
  const page = await client.connectionsPage({ service: t.svc.id, server: t.serverId });
  return openConnections(page.items);
}

export async function runDrain(argv: string[]): Promise<number> {
  let values;
  let positionals;
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        ...CLIENT_OPTIONS,
        service: { type: 'string' },
        timeout: { type: 'string' },
        interval: { type: 'string' },
        'no-wait': { type: 'boolean' },
        restore: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (e) {
    process.stderr.write(`tsvs drain: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (positionals.length !== 1) {
    process.stderr.write(`tsvs drain: expected one real server, e.g. tsvs drain 10.0.0.5:80\n${USAGE}`);
    return 2;
  }
  const rip = parseRip(positionals[0]!);
  if (!rip) {
    process.stderr.write(`tsvs drain: "${positionals[0]}": expected ADDR or ADDR:PORT ([V6ADDR]:PORT for IPv6)\n`);
    return 2;
  }
  const timeout = Number(values.timeout ?? 300);
  const interval = Number(values.interval ?? 1);
  if (!(timeout >= 0) || !(interval > 0)) {
    process.stderr.write('tsvs drain: --timeout and --interval must be numbers of seconds (interval > 0)\n');
    return 2;
  }
  const client = clientFrom(values);
  const out = process.stdout;
  try {
    const targets = findTargets(await client.status(), rip, values.service);
    const what = `${rip.port === null ? rip.addr : formatAddrPort(rip.addr, rip.port)}${values.service ? ` in ${values.service}` : ''}`;
    if (!targets.length) {
      process.stderr.write(`tsvs drain: no real server ${what} in any virtual service\n`);
      return 1;
    }
    if (values.restore) {
      for (const t of targets) {
        const r = await client.restore(t.svc.id, t.serverId);
        out.write(`restored ${t.serverId} in ${t.svc.label}: weight ${r.weight}\n`);
      }
      return 0;
    }
    for (const t of targets) {
      const r = await client.drain(t.svc.id, t.serverId);
      out.write(
        `draining ${t.serverId} in ${t.svc.label}: weight ${r.previousWeight} -> 0, ${r.remaining} connection${r.remaining === 1 ? '' : 's'} open\n`,
      );
    }
    const started = Date.now();
    const tty = out.isTTY;
    let last = '';
    for (;;) {
      const counts = await Promise.all(targets.map((t) => remaining(client, t)));
      const left = counts.reduce((a, b) => a + b, 0);
      const elapsed = (Date.now() - started) / 1000;
      const detail = targets.length > 1 ? ` (${targets.map((t, i) => `${t.svc.label}: ${counts[i]}`).join(', ')})` : '';
      const line = `remaining: ${left} connection${left === 1 ? '' : 's'}${detail}`;
      if (tty) out.write(`\r\x1b[K${line}  [${Math.floor(elapsed)}s/${timeout}s]`);
      else if (line !== last) out.write(`${line}\n`);
      last = line;
      if (left === 0) {
        if (tty) out.write('\n');
        out.write(
          `drained: no connections left on ${what}. Restore with: tsvs drain ${positionals[0]}${values.service ? ` --service ${values.service}` : ''} --restore\n`,
        );
        return 0;
      }
      if (values['no-wait']) {
        if (tty) out.write('\n');
        return 0;
      }
      if (elapsed >= timeout) {
        if (tty) out.write('\n');
        out.write(`timed out after ${timeout}s with ${left} connection${left === 1 ? '' : 's'} still open; the weight stays 0\n`);
        return 1;
      }
      await new Promise((r) => setTimeout(r, Math.min(interval, Math.max(0.05, timeout - elapsed)) * 1000));
    }
  } catch (e) {
    if (out.isTTY) out.write('\n');
    process.stderr.write(`tsvs drain: ${clientError(e)}\n`);
    return 1;
  }
}
