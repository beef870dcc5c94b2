/**
 * Netlink reads for the nftables plane's read-back (ctnetlink dumps, nf_tables object and
 * set element dumps, batched gets): a NETLINK_NETFILTER socket opened in the plane's
 * namespace with a large receive buffer, one request sent, and the replies walked until
 * NLMSG_DONE (or every ACK). Bounded in messages, bytes per read and time; between reads
 * it yields to the event loop, so that a large dump never holds up the first-packet path.
 *
 * Why a 64 KiB read: the kernel sizes each dump chunk after the largest read it has seen
 * (capped at 32 KiB), and nf_tables restarts its list walk for every chunk, so reads of a
 * page or two (nft's) make a dump of N objects cost N^2/30 steps in the kernel.
 */
import { lib, LibcError, SOL_SOCKET } from '../../net/libc.js';
import { errorCode, NLMSG_DONE, NLMSG_ERROR, parseMessages, type NlMessage } from './netlink.js';
import { inNetns, NetfilterSocket } from './netsock.js';

const SO_RCVBUFFORCE = 33;
/** Read size: above the kernel's 32 KiB dump chunk, so that every chunk arrives whole. */
const READ_BYTES = 64 * 1024;

/** Bounds of the netlink read-back (setReadLimits). */
export interface ReadLimits {
  /** Entries one conntrack dump passes on; more are counted as dropped and logged. */
  maxCtEntries: number;
  /** Objects (named counters) one nf_tables dump passes on. */
  maxObjects: number;
  /** Elements one set dump passes on. */
  maxSetElements: number;
  /** Socket receive buffer (SO_RCVBUFFORCE as root, else SO_RCVBUF capped by rmem_max). */
  rcvBufBytes: number;
  /** A dump that has not finished after this long is abandoned (its socket closed). */
  timeoutMs: number;
  /**
   * Reads between two yields to the event loop. Each read is one kernel dump chunk, which
   * for nf_tables objects includes a walk of the table (tens of ms at 100,000 counters).
   */
  readsPerYield: number;
}

const DEFAULT_LIMITS: ReadLimits = {
  maxCtEntries: 2_000_000,
  maxObjects: 1_000_000,
  maxSetElements: 1_000_000,
  rcvBufBytes: 8 << 20,
  timeoutMs: 30_000,
  readsPerYield: 1,
};

let limits: ReadLimits = { ...DEFAULT_LIMITS };
type LimitLog = (msg: string) => void;
let limitLog: LimitLog = () => {};

/** How often a bound cut a read short, by what (for /metrics and tests). */
export const readStats = { ctTruncated: 0, objTruncated: 0, setTruncated: 0 };

/** Changes the bounds (only the given ones); `log` hears when a bound cuts a read short. */
export function setReadLimits(l: Partial<ReadLimits>, log?: LimitLog): void {
  limits = { ...limits, ...l };
  if (log) limitLog = log;
}

export function readLimits(): Readonly<ReadLimits> {
  return limits;
}

/** Counts and logs a read cut short by a bound. */
export function reportTruncated(what: keyof typeof readStats, detail: string): void {
  readStats[what]++;
  limitLog(detail);
}

let seqNo = (Date.now() & 0xffffff) >>> 0;

/** `n` consecutive netlink sequence numbers (the first is returned; a block never wraps), unique in this process. */
export function nextSeq(n = 1): number {
  if (seqNo + n > 0x3fffffff) seqNo = 1;
  const s = seqNo;
  seqNo += n;
  return s;
}

const yieldLoop = () => new Promise<void>((r) => setImmediate(r));

/** A NETLINK_NETFILTER socket in `nsPath` (or here) with the configured receive buffer. */
export function openReadSocket(nsPath: string | undefined): NetfilterSocket {
  const sock = inNetns(nsPath, () => new NetfilterSocket({ rcvTimeoutMs: 1000, rcvBuf: limits.rcvBufBytes }));
  // SO_RCVBUF is capped by net.core.rmem_max; root may go past it.
  const b = Buffer.alloc(4);
  b.writeInt32LE(limits.rcvBufBytes);
  lib().setsockopt(sock.fd, SOL_SOCKET, SO_RCVBUFFORCE, b, 4);
  return sock;
}

/** Why a dump ended. */
export type DumpEnd = 'done' | 'stopped';

/**
 * Sends `request` (sequence `seq`) and hands every reply message to `onMessage` until
 * NLMSG_DONE. `onMessage` returns false to stop early (a bound was hit): the socket is
 * closed, which ends the kernel's dump. Throws LibcError for a kernel error, and ETIMEDOUT
 * past the time bound.
 */
export async function dump(
  nsPath: string | undefined,
  request: Buffer,
  seq: number,
  what: string,
  onMessage: (m: NlMessage) => boolean | undefined,
): Promise<DumpEnd> {
  const sock = openReadSocket(nsPath);
  try {
    sock.send(request);
    return await readUntilDone(sock, seq, what, onMessage);
  } finally {
    sock.close();
  }
}

async function readUntilDone(
  sock: NetfilterSocket,
  seq: number,
  what: string,
  onMessage: (m: NlMessage) => boolean | undefined,
): Promise<DumpEnd> {
  const buf = Buffer.allocUnsafe(READ_BYTES);
  const until = Date.now() + limits.timeoutMs;
  for (let reads = 1; ; reads++) {
    if (Date.now() > until) throw new LibcError(`${what}: no end after ${limits.timeoutMs} ms`, 110);
    const n = sock.recv(buf);
    if (!n) continue;
    for (const m of parseMessages(buf.subarray(0, n))) {
      if (m.seq !== seq) continue;
      if (m.type === NLMSG_DONE) return 'done';
      if (m.type === NLMSG_ERROR) {
        const e = errorCode(m);
        if (e) throw new LibcError(what, e);
        return 'done';
      }
      if (onMessage(m) === false) return 'stopped';
    }
    if (reads % limits.readsPerYield === 0) await yieldLoop();
  }
}

/**
 * Sends many acknowledged requests (sequence numbers `seq0`, `seq0 + 1`, ...) in chunks
 * whose replies fit the receive buffer (each reply skb takes up to about 8 KiB of it, or
 * the kernel drops it), handing each reply message to `onReply` and each NLMSG_ERROR to
 * `onError(index, errno)`. Resolves when every request was answered.
 */
export async function requestMany(
  nsPath: string | undefined,
  requests: readonly Buffer[],
  seq0: number,
  what: string,
  onReply: (index: number, m: NlMessage) => void,
  onError: (index: number, errno: number) => void,
  perSend = Math.max(16, Math.min(1024, Math.floor(limits.rcvBufBytes / 8192))),
): Promise<void> {
  if (!requests.length) return;
  const sock = openReadSocket(nsPath);
  const buf = Buffer.allocUnsafe(READ_BYTES);
  const until = Date.now() + limits.timeoutMs;
  try {
    for (let start = 0; start < requests.length; start += perSend) {
      const end = Math.min(requests.length, start + perSend);
      sock.send(Buffer.concat(requests.slice(start, end)));
      let pending = end - start;
      while (pending > 0) {
        if (Date.now() > until) throw new LibcError(`${what}: ${pending} replies missing after ${limits.timeoutMs} ms`, 110);
        const n = sock.recv(buf);
        for (const m of parseMessages(buf.subarray(0, n))) {
          const i = (m.seq - seq0) >>> 0;
          if (i < start || i >= end) continue;
          if (m.type === NLMSG_ERROR) {
            const e = errorCode(m);
            if (e) onError(i, e);
            pending--;
          } else {
            onReply(i, m);
          }
        }
      }
      await yieldLoop();
    }
  } finally {
    sock.close();
  }
}
