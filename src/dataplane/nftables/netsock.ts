/**
 * The thin I/O adapter under netlink.ts: a NETLINK_NETFILTER socket through libc via
 * koffi (Node has no netlink sockets), optionally created inside another network
 * namespace (setns on the calling thread only, switched back at once: tests drive a
 * director that is a namespace of theirs). Calls are synchronous and bounded by
 * SO_RCVTIMEO; the queue reader uses them from its own worker thread.
 */
import {
  AF_NETLINK,
  check,
  EAGAIN,
  EINTR,
  ETIMEDOUT,
  lib,
  LibcError,
  SOCK_CLOEXEC,
  SOCK_RAW,
  SOL_SOCKET,
  SO_RCVTIMEO,
  timeval,
} from '../../net/libc.js';
import {
  chainGetRequest,
  errorCode,
  NETLINK_NETFILTER,
  NLMSG_DONE,
  NLMSG_ERROR,
  nfqueueFromTarget,
  nfqueueRuleBatch,
  parseMessages,
  parseRuleTargets,
  ruleDumpRequest,
  type NfqueueTarget,
  type NlMessage,
} from './netlink.js';

const SO_RCVBUF = 8;
const SO_SNDBUFFORCE = 32;
const SO_RCVBUFFORCE = 33;
const SOL_NETLINK = 270;
const NETLINK_NO_ENOBUFS = 5;
const CLONE_NEWNET = 0x40000000;
const O_RDONLY = 0;
const MSG_DONTWAIT = 0x40;

export { EAGAIN, EINTR };
/** A failed call or a kernel error (the shared LibcError of src/net/libc.ts). */
export { LibcError as SysError };

/** Runs `f` with this thread in the network namespace at `nsPath` (e.g. /run/netns/NAME), then switches back. */
export function inNetns<T>(nsPath: string | undefined, f: () => T): T {
  if (!nsPath) return f();
  const c = lib();
  const own = check('open /proc/thread-self/ns/net', c.open('/proc/thread-self/ns/net', O_RDONLY));
  let target = -1;
  try {
    target = check(`open ${nsPath}`, c.open(nsPath, O_RDONLY));
    check('setns', c.setns(target, CLONE_NEWNET));
    try {
      return f();
    } finally {
      check('setns back', c.setns(own, CLONE_NEWNET));
    }
  } finally {
    if (target >= 0) c.close(target);
    c.close(own);
  }
}

/** Enters the namespace for good (the queue worker's own thread). */
export function enterNetns(nsPath: string): void {
  const c = lib();
  const fd = check(`open ${nsPath}`, c.open(nsPath, O_RDONLY));
  try {
    check('setns', c.setns(fd, CLONE_NEWNET));
  } finally {
    c.close(fd);
  }
}

/** A bound NETLINK_NETFILTER socket. */
export class NetfilterSocket {
  readonly fd: number;
  private closed = false;

  constructor(opts: { rcvTimeoutMs?: number; rcvBuf?: number } = {}) {
    const c = lib();
    this.fd = check('socket(AF_NETLINK, NETLINK_NETFILTER)', c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER));
    try {
      const sa = Buffer.alloc(12);
      sa.writeUInt16LE(AF_NETLINK, 0);
      check('bind(netlink)', c.bind(this.fd, sa, sa.length));
      check('setsockopt(SO_RCVTIMEO)', c.setsockopt(this.fd, SOL_SOCKET, SO_RCVTIMEO, timeval(opts.rcvTimeoutMs ?? 1000), 16));
      if (opts.rcvBuf) this.setInt(SOL_SOCKET, SO_RCVBUF, opts.rcvBuf);
      // A burst that overflows the socket must not poison it with ENOBUFS.
      this.setInt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1);
    } catch (e) {
      c.close(this.fd);
      throw e;
    }
  }

  /**
   * Room for one large batch (send) and its error replies (receive). The *FORCE options
   * (root) pass the net.core limits, as nft does for a big ruleset.
   */
  setBuffers(sndBytes: number, rcvBytes: number): void {
    this.setInt(SOL_SOCKET, SO_SNDBUFFORCE, Math.min(sndBytes, 0x3fffffff));
    this.setInt(SOL_SOCKET, SO_RCVBUFFORCE, Math.min(rcvBytes, 0x3fffffff));
  }

  private setInt(level: number, name: number, v: number): void {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    check('setsockopt', lib().setsockopt(this.fd, level, name, b, 4));
  }

  send(buf: Buffer): void {
    check('send(netlink)', lib().send(this.fd, buf, buf.length, 0));
  }

  /** Bytes received into `buf`, or 0 on timeout/interrupt (at once when nothing waits, with `noWait`). */
  recv(buf: Buffer, noWait = false): number {
    const n = lib().recv(this.fd, buf, buf.length, noWait ? MSG_DONTWAIT : 0);
    if (n < 0) {
      const e = lib().errno();
      if (e === EAGAIN || e === EINTR) return 0;
      throw new LibcError('recv(netlink)', e);
    }
    return n;
  }

  /**
   * Sends `msg` and waits for the ACK (or error) of the message with sequence `seq`.
   * Throws SysError (LibcError) with the kernel's errno.
   */
  request(msg: Buffer, seq: number, what: string, timeoutMs = 2000): void {
    this.exchange(msg, seq, what, timeoutMs, null);
  }

  /**
   * Sends a dump request and returns the answers to `seq` up to NLMSG_DONE. At most
   * `maxMessages` are kept (a bound on memory: more is an error, not a silent cut), and
   * the whole dump must arrive within `timeoutMs`. Throws SysError with the kernel's errno.
   */
  dump(msg: Buffer, seq: number, what: string, opts: { timeoutMs?: number; maxMessages?: number } = {}): NlMessage[] {
    const out: NlMessage[] = [];
    this.exchange(msg, seq, what, opts.timeoutMs ?? 2000, { out, max: opts.maxMessages ?? 1024 });
    return out;
  }

  /**
   * Sends `msg` and reads the answers to `seq` until its ACK (a request's end), NLMSG_DONE
   * or an error; a dump's answers go to `into`.
   */
  private exchange(msg: Buffer, seq: number, what: string, timeoutMs: number, into: { out: NlMessage[]; max: number } | null): void {
    this.send(msg);
    const buf = Buffer.alloc(65536);
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      const n = this.recv(buf);
      if (!n) continue;
      for (const m of parseMessages(buf.subarray(0, n))) {
        if (m.seq !== seq) continue;
        if (m.type === NLMSG_ERROR) {
          const e = errorCode(m);
          if (e) throw new LibcError(what, e);
          if (!into) return;
          continue;
        }
        if (m.type === NLMSG_DONE) return;
        if (!into) continue;
        if (into.out.length >= into.max) throw new Error(`${what}: more than ${into.max} messages in the answer`);
        // Copies: the receive buffer is reused by the next recv.
        into.out.push({ ...m, payload: Buffer.from(m.payload) });
      }
    }
    throw new LibcError(what, ETIMEDOUT);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    lib().close(this.fd);
  }
}

/**
 * Appends the xtables NFQUEUE target to `family tsvs <chain>` over nf_tables netlink (one
 * batch, atomic). `nsPath`: the director's namespace when it is not this one.
 */
export function installNfqueueRule(
  nsPath: string | undefined,
  family: 'ip' | 'ip6',
  table: string,
  chain: string,
  target: NfqueueTarget,
): void {
  const sock = inNetns(nsPath, () => new NetfilterSocket({ rcvTimeoutMs: 200 }));
  try {
    const seq = (Date.now() & 0x3fffffff) >>> 0;
    sock.request(nfqueueRuleBatch(family, table, chain, target, seq), seq + 1, `add NFQUEUE rule to ${family} ${table} ${chain}`);
  } finally {
    sock.close();
  }
}

/**
 * The NFQUEUE targets in the rules of `family table chain`, in rule order, read back from
 * the kernel over nf_tables netlink (NFT_MSG_GETRULE dump; a missing table or chain throws
 * SysError ENOENT). This is what the kernel holds,
 * whatever `nft list` can print: Debian's nft shows an xtables target only with the
 * iptables package's libxt extensions installed.
 */
export function readNfqueueRules(nsPath: string | undefined, family: 'ip' | 'ip6', table: string, chain: string): NfqueueTarget[] {
  const sock = inNetns(nsPath, () => new NetfilterSocket({ rcvTimeoutMs: 200 }));
  try {
    const seq = (Date.now() & 0x3fffffff) >>> 0;
    const what = `list the rules of ${family} ${table} ${chain}`;
    // The dump of a missing chain is just empty: ask for the chain first, for ENOENT.
    sock.request(chainGetRequest(family, table, chain, seq), seq, what);
    const out: NfqueueTarget[] = [];
    for (const m of sock.dump(ruleDumpRequest(family, table, chain, seq + 1), seq + 1, what)) {
      for (const t of parseRuleTargets(m) ?? []) {
        const q = nfqueueFromTarget(t);
        if (q) out.push(q);
      }
    }
    return out;
  } finally {
    sock.close();
  }
}

/** `queue num Q [bypass]`, as nft prints the target (for messages). */
function nfqueueText(t: NfqueueTarget): string {
  return `queue num ${t.queue}${t.total > 1 ? `-${t.queue + t.total - 1}` : ''}${t.bypass ? ' bypass' : ''}`;
}

/**
 * Reads `family table chain` back from the kernel and throws, naming the chain, what was
 * wanted and what is there, unless its first NFQUEUE rule is exactly `want`.
 */
export function checkNfqueueRule(
  nsPath: string | undefined,
  family: 'ip' | 'ip6',
  table: string,
  chain: string,
  want: NfqueueTarget,
): void {
  const got = readNfqueueRules(nsPath, family, table, chain);
  const first = got[0];
  if (first && first.queue === want.queue && first.total === want.total && first.bypass === want.bypass) return;
  const found = got.length ? got.map(nfqueueText).join(', ') : 'no NFQUEUE rule';
  throw new Error(`${family} ${table} ${chain} read back over netlink holds ${found}, not ${nfqueueText(want)}`);
}
