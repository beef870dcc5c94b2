/**
 * Reading tsvs's connections back from conntrack (`conntrack -L -o extended`), and
 * deleting the entries of a removed real server (`conntrack -D --mark`). Each connection
 * the nftables plane scheduled carries its real server's mark in the conntrack entry.
 */
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

/** Every marked TCP/UDP conntrack entry, both families. */
export async function conntrackDump(run: Runner): Promise<CtEntry[]> {
  const out: CtEntry[] = [];
  for (const family of ['ipv4', 'ipv6']) {
    const r = await run('conntrack', ['-L', '-f', family, '-o', 'extended']);
    if (r.code !== 0) continue;
    for (const line of r.stdout.split('\n')) {
      const e = parseConntrackLine(line);
      if (e) out.push(e);
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
