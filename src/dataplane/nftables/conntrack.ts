/**
 * Reading tsvs's connections back from conntrack (`conntrack -L -o extended`), and
 * deleting the entries of a removed real server (`conntrack -D --mark`). Each connection
 * the nftables plane scheduled carries its real server's mark in the conntrack entry.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Runner } from './exec.js';

export interface CtEntry {
  af: 4 | 6;
  protocol: 'tcp' | 'udp';
  /** Seconds until conntrack expires the entry. */
  timeout: number;
  /** conntrack's TCP state name (ESTABLISHED, TIME_WAIT, ...), '' for UDP. */
  state: string;
  caddr: string;
  cport: number;
  vaddr: string;
  vport: number;
  /** The real server: the reply tuple's source. */
  daddr: string;
  dport: number;
  mark: number;
}

/** Parses one line of `conntrack -L -o extended`. Returns null for lines that are not TCP/UDP or carry no mark. */
export function parseConntrackLine(line: string): CtEntry | null {
  const f = line.trim().split(/\s+/);
  if (f.length < 6) return null;
  const af = f[0] === 'ipv4' ? 4 : f[0] === 'ipv6' ? 6 : 0;
  const protocol = f[2];
  if (!af || (protocol !== 'tcp' && protocol !== 'udp')) return null;
  const timeout = Number(f[4]);
  const state = protocol === 'tcp' && /^[A-Z_0-9]+$/.test(f[5]!) ? f[5]! : '';
  const kv = (key: string, nth: number): string | undefined => {
    let seen = 0;
    for (const t of f) {
      if (t.startsWith(`${key}=`) && seen++ === nth) return t.slice(key.length + 1);
    }
    return undefined;
  };
  const mark = Number(kv('mark', 0) ?? 0);
  if (!mark) return null;
  const caddr = kv('src', 0);
  const vaddr = kv('dst', 0);
  const daddr = kv('src', 1);
  if (!caddr || !vaddr || !daddr) return null;
  return {
    af,
    protocol,
    timeout,
    state,
    caddr,
    cport: Number(kv('sport', 0)),
    vaddr,
    vport: Number(kv('dport', 0)),
    daddr,
    dport: Number(kv('sport', 1)),
    mark,
  };
}

/** Lines parsed between two yields to the event loop: a huge table must not hold up the first-packet path's decisions. */
export const CHUNK = 2000;
export const yieldLoop = () => new Promise<void>((r) => setImmediate(r));

/** Every marked TCP/UDP conntrack entry, both families (parsed in chunks, yielding in between). */
export async function conntrackDump(run: Runner): Promise<CtEntry[]> {
  const out: CtEntry[] = [];
  for (const family of ['ipv4', 'ipv6']) {
    const r = await run('conntrack', ['-L', '-f', family, '-o', 'extended']);
    if (r.code !== 0) continue;
    const text = r.stdout;
    let pos = 0;
    for (let n = 1; pos < text.length; n++) {
      let end = text.indexOf('\n', pos);
      if (end < 0) end = text.length;
      const e = parseConntrackLine(text.slice(pos, end));
      if (e) out.push(e);
      pos = end + 1;
      if (n % CHUNK === 0) await yieldLoop();
    }
  }
  return out;
}

/** Deletes every conntrack entry with this mark (both families); resolves with how many went. */
export async function conntrackDeleteMark(run: Runner, mark: number): Promise<number> {
  let n = 0;
  for (const family of ['ipv4', 'ipv6']) {
    const r = await run('conntrack', ['-D', '-f', family, '--mark', String(mark)]);
    const m = /(\d+) flow entries have been deleted/.exec(r.stderr);
    if (m) n += Number(m[1]);
  }
  return n;
}

/** Whether the conntrack tool is installed. */
export async function conntrackAvailable(run: Runner): Promise<boolean> {
  const r = await run('conntrack', ['--version']);
  return r.code === 0;
}

export interface CtEvent {
  kind: 'new' | 'update' | 'destroy';
  entry: CtEntry;
}

/** Parses one line of `conntrack -E -o extended` ("[UPDATE] ipv4 2 tcp 6 120 TIME_WAIT src=... mark=M"). */
export function parseConntrackEvent(line: string): CtEvent | null {
  const m = /^\s*\[(NEW|UPDATE|DESTROY)\]\s+(.*)$/.exec(line);
  if (!m) return null;
  const entry = parseConntrackLine(m[2]!);
  return entry ? { kind: m[1]!.toLowerCase() as CtEvent['kind'], entry } : null;
}

/**
 * Follows conntrack's events (`conntrack -E`, in `netns` when given) so that state changes
 * and closes reach the table before the next read-back. Restarts the child (after 1 s)
 * when it exits; `stop()` ends it. The read-back stays the source of truth: events only
 * make the counts current sooner.
 */
export function conntrackEvents(netns: string | undefined, onEvent: (e: CtEvent) => void, onExit?: (why: string) => void): { stop(): void } {
  let child: ChildProcess | null = null;
  let stopped = false;
  let timer: NodeJS.Timeout | null = null;
  const start = () => {
    const args = ['-E', '-o', 'extended', '-e', 'UPDATE,DESTROY'];
    const c = netns ? spawn('ip', ['netns', 'exec', netns, 'conntrack', ...args], { stdio: ['ignore', 'pipe', 'pipe'] }) : spawn('conntrack', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child = c;
    let buf = '';
    let err = '';
    c.stdout!.setEncoding('utf8');
    c.stdout!.on('data', (d: string) => {
      buf += d;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const ev = parseConntrackEvent(buf.slice(0, i));
        buf = buf.slice(i + 1);
        if (ev) onEvent(ev);
      }
    });
    c.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-500)));
    c.on('error', (e) => (err = e.message));
    c.on('close', (code) => {
      child = null;
      if (stopped) return;
      onExit?.(`conntrack -E exited (${code}): ${err.trim()}`);
      timer = setTimeout(start, 1000);
      timer.unref();
    });
  };
  start();
  return {
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      if (child?.pid && child.exitCode === null) child.kill('SIGTERM');
    },
  };
}
