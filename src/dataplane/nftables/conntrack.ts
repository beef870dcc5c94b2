/**
 * Reading tsvs's connections back from conntrack over ctnetlink (ctnetlink.ts codec,
 * nldump.ts reads): a dump filtered in the kernel by mark when asked, events from a worker
 * thread (ct-events.ts), and the deletion of a removed real server's entries by mark. Each
 * connection the nftables plane scheduled carries its real server's mark in its conntrack
 * entry. The text parsers of `conntrack -L/-E -o extended` stay as the tests' oracle.
 */
import { available as libcAvailable, LibcError } from '../../net/libc.js';
import { CtEventReader } from './ct-events.js';
import {
  ctDeleteTupleRequest,
  ctDumpRequest,
  ctFlushMarkRequest,
  ctStatsRequest,
  parseCtEntry,
  type CtEntry,
  type CtEvent,
  type CtMarkFilter,
} from './ctnetlink.js';
import { runnerNsPath, type Runner } from './exec.js';
import { dump, nextSeq, openReadSocket, readLimits, reportTruncated } from './nldump.js';

export type { CtEntry, CtEvent, CtMarkFilter } from './ctnetlink.js';

const EOPNOTSUPP = 95;
const ENOENT = 2;

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

export interface CtDumpOptions {
  /**
   * Only entries whose mark matches, filtered in the kernel (other entries never cross).
   * Without it every entry is walked and those with mark 0 are skipped here.
   */
  mark?: CtMarkFilter;
  /** Only this family (default both, in one dump). */
  af?: 4 | 6;
}

/**
 * Every marked TCP/UDP conntrack entry in the namespace at `nsPath` (here when undefined),
 * both families in one dump. At most ReadLimits.maxCtEntries entries are returned; past it
 * the dump stops, and the cut is counted and logged.
 */
async function conntrackDumpAt(nsPath: string | undefined, opts: CtDumpOptions = {}): Promise<CtEntry[]> {
  const out: CtEntry[] = [];
  const max = readLimits().maxCtEntries;
  const seq = nextSeq();
  const end = await dump(nsPath, ctDumpRequest(seq, opts), seq, 'conntrack dump', (m) => {
    // Unmarked entries (not tsvs's) are skipped before their tuples are parsed.
    const e = parseCtEntry(m.payload);
    if (!e) return true;
    if (out.length >= max) return false;
    out.push(e);
    return true;
  });
  if (end === 'stopped')
    reportTruncated(
      'ctTruncated',
      `conntrack dump stopped at ${max} entries (ReadLimits.maxCtEntries): connections past it are not mirrored this round`,
    );
  return out;
}

/** conntrackDumpAt in the runner's namespace. */
export function conntrackDump(run: Runner, opts: CtDumpOptions = {}): Promise<CtEntry[]> {
  return conntrackDumpAt(runnerNsPath(run), opts);
}

/**
 * Deletes every conntrack entry with this mark (both families); resolves with how many
 * there were. The kernel flushes by mark in one request; a kernel that refuses a flush
 * with a mark filter gets one delete per entry of a mark-filtered dump.
 */
async function conntrackDeleteMarkAt(nsPath: string | undefined, mark: number): Promise<number> {
  const filter = { value: mark >>> 0, mask: 0xffffffff };
  const entries = await conntrackDumpAt(nsPath, { mark: filter });
  if (!entries.length) return 0;
  const sock = openReadSocket(nsPath);
  try {
    const seq = nextSeq();
    try {
      sock.request(ctFlushMarkRequest(seq, filter), seq, `conntrack flush mark ${mark}`, 10_000);
      return entries.length;
    } catch (e) {
      if (!(e instanceof LibcError) || e.errno !== EOPNOTSUPP) throw e;
    }
    let n = 0;
    for (const e of entries) {
      const s = nextSeq();
      try {
        sock.request(ctDeleteTupleRequest(s, e), s, `conntrack delete ${e.caddr}:${e.cport}`);
        n++;
      } catch (err) {
        // Gone meanwhile (it expired or closed): nothing to delete.
        if (!(err instanceof LibcError) || err.errno !== ENOENT) throw err;
      }
    }
    return n;
  } finally {
    sock.close();
  }
}

/** conntrackDeleteMarkAt in the runner's namespace. */
export function conntrackDeleteMark(run: Runner, mark: number): Promise<number> {
  return conntrackDeleteMarkAt(runnerNsPath(run), mark);
}

/** Why conntrack cannot be read back over ctnetlink here (no koffi/glibc, no root, no ctnetlink in the kernel), or null. */
export function conntrackProblemAt(nsPath: string | undefined): string | null {
  if (!libcAvailable()) return 'koffi or glibc is not available, so netlink cannot be spoken (connections are not read back)';
  let sock;
  try {
    sock = openReadSocket(nsPath);
  } catch (e) {
    return `no netfilter netlink socket: ${(e as Error).message}`;
  }
  try {
    const seq = nextSeq();
    sock.request(ctStatsRequest(seq), seq, 'conntrack stats');
    return null;
  } catch (e) {
    const errno = e instanceof LibcError ? e.errno : 0;
    if (errno === EOPNOTSUPP || errno === ENOENT) return `the kernel has no ctnetlink (nf_conntrack_netlink): ${(e as Error).message}`;
    if (errno === 1) return `ctnetlink refused the request (needs CAP_NET_ADMIN): ${(e as Error).message}`;
    return `ctnetlink did not answer: ${(e as Error).message}`;
  } finally {
    sock.close();
  }
}

/** conntrackProblemAt in the runner's namespace. */
export async function conntrackProblem(run: Runner): Promise<string | null> {
  return conntrackProblemAt(runnerNsPath(run));
}

/** Whether conntrack can be read back here (conntrackProblem says why not). */
export async function conntrackAvailable(run: Runner): Promise<boolean> {
  return (await conntrackProblem(run)) === null;
}

/** Parses one line of `conntrack -E -o extended` ("[UPDATE] ipv4 2 tcp 6 120 TIME_WAIT src=... mark=M"). */
export function parseConntrackEvent(line: string): CtEvent | null {
  const m = /^\s*\[(NEW|UPDATE|DESTROY)\]\s+(.*)$/.exec(line);
  if (!m) return null;
  const entry = parseConntrackLine(m[2]!);
  return entry ? { kind: m[1]!.toLowerCase() as CtEvent['kind'], entry } : null;
}

/**
 * Follows conntrack's events (in `netns` when given) from a worker thread, so that state
 * changes and closes reach the table before the next read-back. Only entries with a mark
 * reach the reader (a socket filter). When the reader fails it is restarted after 1 s
 * (`onExit` says why). `more.onLost` hears that the kernel dropped events (the socket
 * overflowed), after which the caller's view is stale until its next dump; `more.onReady`
 * that the reader listens (after each start). `stop()` ends it.
 */
export function conntrackEvents(
  netns: string | undefined,
  onEvent: (e: CtEvent) => void,
  onExit?: (why: string) => void,
  more: { onLost?: (count: number) => void; onReady?: () => void } = {},
): { stop(): void } {
  let stopped = false;
  let timer: NodeJS.Timeout | null = null;
  let reader: CtEventReader | null = null;
  const restart = (why: string) => {
    if (stopped) return;
    onExit?.(why);
    void reader?.stop();
    reader = null;
    timer = setTimeout(start, 1000);
    timer.unref();
  };
  const start = () => {
    timer = null;
    if (stopped) return;
    const r = new CtEventReader({
      ...(netns ? { nsPath: `/run/netns/${netns}` } : {}),
      onEvents: (evs) => {
        for (const e of evs) onEvent(e);
      },
      ...(more.onLost ? { onLost: more.onLost } : {}),
      onError: (msg) => {
        if (reader === r) restart(msg);
      },
    });
    reader = r;
    r.start().then(
      () => {
        if (reader === r) more.onReady?.();
      },
      (e: Error) => {
        if (reader === r) restart(e.message);
      },
    );
  };
  start();
  return {
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      void reader?.stop();
      reader = null;
    },
  };
}
