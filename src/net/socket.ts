/**
 * Socket options Node 20 does not offer, reached through libc with koffi: listening sockets
 * with SO_REUSEPORT (Node 20 ignores `reusePort`), and outbound TCP connections from a
 * foreign address with IP_TRANSPARENT / IPV6_TRANSPARENT (Node has no such option). Each
 * creates the socket itself and hands the file descriptor to Node (`listen({ fd })`,
 * `new net.Socket({ fd })`), after which Node owns and closes it.
 *
 * libc is loaded on first use, so importing this file costs nothing on hosts or planes
 * that never call it; a host without koffi's prebuilt binary or glibc gets a NetError
 * naming the problem.
 */
import net from 'node:net';
import { familyOf, parseIPv4, parseIPv6 } from '../core/addr.js';
import { AF_INET, AF_INET6, EINPROGRESS, lib as libcLib, SOCK_CLOEXEC, SOCK_NONBLOCK, SOCK_STREAM, SOL_SOCKET, type Libc } from './libc.js';

/** A failed system call: `code` is the errno name ("EADDRINUSE"), as Node's errors have it. */
export class NetError extends Error {
  constructor(
    readonly code: string,
    readonly syscall: string,
    message: string,
  ) {
    super(message);
  }
}

const SO_REUSEADDR = 2;
const SO_ERROR = 4;
const SO_REUSEPORT = 15;
const SOL_IP = 0;
const IP_TRANSPARENT = 19;
const SOL_IPV6 = 41;
const IPV6_V6ONLY = 26;
const IPV6_TRANSPARENT = 75;
const POLLOUT = 0x4;

let libc: Libc | null = null;
let loadProblem: string | null = null;

/** libc through koffi (the shared binding of ./libc.ts), loaded once. */
async function lib(): Promise<Libc> {
  if (libc) return libc;
  if (loadProblem) throw new NetError('ENOSYS', 'dlopen', loadProblem);
  try {
    libc = libcLib();
    return libc;
  } catch (e) {
    loadProblem = `cannot reach libc through koffi (${(e as Error).message}); SO_REUSEPORT and IP_TRANSPARENT need it (npm install koffi, glibc)`;
    throw new NetError('ENOSYS', 'dlopen', loadProblem);
  }
}

/** Makes libc usable synchronously afterwards (call once before the hot path). */
export async function loadSocketLib(): Promise<void> {
  await lib();
}

function need(): Libc {
  if (!libc) throw new NetError('ENOSYS', 'dlopen', loadProblem ?? 'socket helpers used before loadSocketLib()');
  return libc;
}

/** struct sockaddr_in / sockaddr_in6 for an address and port. */
export function sockaddr(addr: string, port: number): Buffer {
  const af = familyOf(addr);
  if (af === 4) {
    const b = Buffer.alloc(16);
    b.writeUInt16LE(AF_INET, 0);
    b.writeUInt16BE(port, 2);
    b.writeUInt32BE(parseIPv4(addr)!, 4);
    return b;
  }
  if (af === 6) {
    const b = Buffer.alloc(28);
    b.writeUInt16LE(AF_INET6, 0);
    b.writeUInt16BE(port, 2);
    const g = parseIPv6(addr)!;
    for (let i = 0; i < 8; i++) b.writeUInt16BE(g[i]!, 8 + 2 * i);
    return b;
  }
  throw new NetError('EINVAL', 'sockaddr', `not an IP address: ${JSON.stringify(addr)}`);
}

function fail(c: Libc, fd: number, syscall: string, what: string): never {
  const n = c.errno();
  if (fd >= 0) c.close(fd);
  const code = c.errnoName(n);
  throw new NetError(code, syscall, `${what}: ${syscall}: ${code}`);
}

function setInt(c: Libc, fd: number, level: number, name: number, v: number, syscall: string, what: string): void {
  const b = Buffer.alloc(4);
  b.writeInt32LE(v, 0);
  if (c.setsockopt(fd, level, name, b, 4) < 0) fail(c, fd, syscall, what);
}

/**
 * A TCP socket bound to addr:port with SO_REUSEPORT (and SO_REUSEADDR), not yet listening:
 * give it to `server.listen({ fd })`. Several such sockets on one address:port, owned by one
 * user, form a group among which the kernel spreads new connections (by a hash of the
 * 4-tuple). Throws NetError (code EADDRINUSE, EADDRNOTAVAIL, EACCES, ...) like Node's bind.
 */
export function reusePortSocket(addr: string, port: number): number {
  const c = need();
  const af = familyOf(addr) === 6 ? AF_INET6 : AF_INET;
  const what = `TCP ${addr}:${port}`;
  const fd = c.socket(af, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) fail(c, -1, 'socket', what);
  setInt(c, fd, SOL_SOCKET, SO_REUSEADDR, 1, 'setsockopt(SO_REUSEADDR)', what);
  setInt(c, fd, SOL_SOCKET, SO_REUSEPORT, 1, 'setsockopt(SO_REUSEPORT)', what);
  if (af === AF_INET6) setInt(c, fd, SOL_IPV6, IPV6_V6ONLY, 1, 'setsockopt(IPV6_V6ONLY)', what);
  const sa = sockaddr(addr, port);
  if (c.bind(fd, sa, sa.length) < 0) fail(c, fd, 'bind', what);
  return fd;
}

/** Closes a descriptor that was never handed to Node. */
export function closeFd(fd: number): void {
  need().close(fd);
}

export interface TransparentConnect {
  /** The address the connection comes from: the client's, not one of this host's. */
  srcAddr: string;
  /** 0 lets the kernel choose the port. */
  srcPort: number;
  dstAddr: string;
  dstPort: number;
  /** Give up after this long (ETIMEDOUT). */
  timeoutMs: number;
}

/**
 * Connects to dst from a foreign source address (IP_TRANSPARENT; needs CAP_NET_ADMIN), and
 * resolves with a connected net.Socket that owns the descriptor. The connect runs
 * non-blocking; its completion is found by poll(2) with a zero timeout, first on the next
 * turn of the event loop (on a LAN the handshake is usually done by then), then at growing
 * intervals up to 20 ms. Replies to the foreign address reach this socket only with the
 * routing that docs/userspace.md describes (nft `socket transparent`, a local route).
 */
export function connectTransparent(o: TransparentConnect): Promise<net.Socket> {
  try {
    return startTransparent(o);
  } catch (e) {
    // socket / setsockopt / bind / connect failed at once (EPERM, EADDRNOTAVAIL, ...).
    return Promise.reject(e);
  }
}

function startTransparent(o: TransparentConnect): Promise<net.Socket> {
  const c = need();
  const v6 = familyOf(o.dstAddr) === 6;
  const what = `connect to ${o.dstAddr}:${o.dstPort} from ${o.srcAddr}`;
  const fd = c.socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) fail(c, -1, 'socket', what);
  if (v6) setInt(c, fd, SOL_IPV6, IPV6_TRANSPARENT, 1, 'setsockopt(IPV6_TRANSPARENT)', what);
  else setInt(c, fd, SOL_IP, IP_TRANSPARENT, 1, 'setsockopt(IP_TRANSPARENT)', what);
  if (o.srcPort !== 0) setInt(c, fd, SOL_SOCKET, SO_REUSEADDR, 1, 'setsockopt(SO_REUSEADDR)', what);
  const src = sockaddr(o.srcAddr, o.srcPort);
  if (c.bind(fd, src, src.length) < 0) fail(c, fd, 'bind', what);
  const dst = sockaddr(o.dstAddr, o.dstPort);
  if (c.connect(fd, dst, dst.length) === 0) return Promise.resolve(adopt(fd));
  if (c.errno() !== EINPROGRESS) fail(c, fd, 'connect', what);
  return new Promise((resolve, reject) => {
    const deadline = performance.now() + o.timeoutMs;
    const pfd = Buffer.alloc(8);
    let wait = 0;
    const check = (): void => {
      pfd.writeInt32LE(fd, 0);
      pfd.writeInt16LE(POLLOUT, 4);
      pfd.writeInt16LE(0, 6);
      const n = c.poll(pfd, 1, 0);
      if (n < 0) {
        reject(errorOf(c, fd, 'poll', what));
        return;
      }
      if (n === 0) {
        if (performance.now() >= deadline) {
          c.close(fd);
          reject(new NetError('ETIMEDOUT', 'connect', `${what}: no answer within ${o.timeoutMs} ms`));
          return;
        }
        wait = Math.min(20, wait + 1 + (wait >> 1));
        setTimeout(check, wait);
        return;
      }
      const err = Buffer.alloc(4);
      if (c.getsockopt(fd, SOL_SOCKET, SO_ERROR, err, [4]) < 0) {
        reject(errorOf(c, fd, 'getsockopt', what));
        return;
      }
      const so = err.readInt32LE(0);
      if (so !== 0) {
        c.close(fd);
        const code = c.errnoName(so);
        reject(new NetError(code, 'connect', `${what}: ${code}`));
        return;
      }
      resolve(adopt(fd));
    };
    setImmediate(check);
  });
}

function errorOf(c: Libc, fd: number, syscall: string, what: string): NetError {
  try {
    fail(c, fd, syscall, what);
  } catch (e) {
    return e as NetError;
  }
}

function adopt(fd: number): net.Socket {
  return new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: true });
}

/** Whether this process may create transparent sockets (CAP_NET_ADMIN); the problem in words when not. */
export async function transparentProblem(): Promise<string | null> {
  let c: Libc;
  try {
    c = await lib();
  } catch (e) {
    return (e as Error).message;
  }
  const fd = c.socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return `socket: ${c.errnoName(c.errno())}`;
  const b = Buffer.alloc(4);
  b.writeInt32LE(1, 0);
  const r = c.setsockopt(fd, SOL_IP, IP_TRANSPARENT, b, 4);
  const n = c.errno();
  c.close(fd);
  if (r < 0) {
    const code = c.errnoName(n);
    return code === 'EPERM'
      ? 'IP_TRANSPARENT needs CAP_NET_ADMIN (run tsvsd as root, or with AmbientCapabilities=CAP_NET_ADMIN)'
      : `setsockopt(IP_TRANSPARENT): ${code}`;
  }
  return null;
}
