/**
 * The one libc binding of tsvs, through koffi (Node has no netlink, AF_PACKET,
 * IP_TRANSPARENT or setns): the union of the calls that the netlink sockets
 * (dataplane/nftables/netsock.ts, ha/rtnl.ts) and the socket-option helpers
 * (net/socket.ts) make, with the same C signatures. Loaded on first use, so importing
 * this file costs nothing on hosts or planes that never call it; `available()` says
 * whether koffi's prebuilt binary and glibc load here. A failed call becomes a LibcError
 * that carries the call and the errno.
 */
import { createRequire } from 'node:module';

export interface Libc {
  socket: (d: number, t: number, p: number) => number;
  bind: (fd: number, addr: Buffer, len: number) => number;
  connect: (fd: number, addr: Buffer, len: number) => number;
  send: (fd: number, buf: Buffer, len: number, flags: number) => number;
  sendto: (fd: number, buf: Buffer, len: number, flags: number, addr: Buffer, alen: number) => number;
  recv: (fd: number, buf: Buffer, len: number, flags: number) => number;
  close: (fd: number) => number;
  setsockopt: (fd: number, level: number, name: number, val: Buffer, len: number) => number;
  getsockopt: (fd: number, level: number, name: number, val: Buffer, len: number[]) => number;
  poll: (fds: Buffer, n: number, timeout: number) => number;
  open: (path: string, flags: number) => number;
  setns: (fd: number, nstype: number) => number;
  strerror: (e: number) => string;
  /** errno of the last call on this thread. */
  errno: () => number;
  /** The errno's name ("EADDRINUSE"), or `errno N`. */
  errnoName: (n: number) => string;
}

// errno values (asm-generic/errno-base.h, errno.h)
export const EINTR = 4;
export const EAGAIN = 11;
export const EEXIST = 17;
export const EADDRNOTAVAIL = 99;
export const ETIMEDOUT = 110;
export const EINPROGRESS = 115;

// socket constants shared by the users of this binding
export const AF_INET = 2;
export const AF_INET6 = 10;
export const AF_NETLINK = 16;
export const AF_PACKET = 17;
export const SOCK_STREAM = 1;
export const SOCK_RAW = 3;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
export const SOL_SOCKET = 1;
export const SO_RCVTIMEO = 20;

let libc: Libc | null = null;

/** libc through koffi, loaded once; throws (koffi or glibc missing) on a host that cannot. */
export function lib(): Libc {
  if (libc) return libc;
  const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi');
  const l = koffi.load('libc.so.6');
  const names = new Map<number, string>();
  for (const [k, v] of Object.entries(koffi.os.errno)) if (!names.has(v)) names.set(v, k);
  libc = {
    socket: l.func('int socket(int, int, int)'),
    bind: l.func('int bind(int, const void *, uint32_t)'),
    connect: l.func('int connect(int, const void *, uint32_t)'),
    send: l.func('intptr_t send(int, const void *, size_t, int)'),
    sendto: l.func('intptr_t sendto(int, const void *, size_t, int, const void *, uint32_t)'),
    recv: l.func('intptr_t recv(int, void *, size_t, int)'),
    close: l.func('int close(int)'),
    setsockopt: l.func('int setsockopt(int, int, int, const void *, uint32_t)'),
    getsockopt: l.func('int getsockopt(int, int, int, _Out_ void *, _Inout_ uint32_t *)'),
    poll: l.func('int poll(_Inout_ void *, unsigned long, int)'),
    open: l.func('int open(const char *, int)'),
    setns: l.func('int setns(int, int)'),
    strerror: l.func('const char *strerror(int)'),
    errno: () => koffi.errno(),
    errnoName: (n) => names.get(n) ?? `errno ${n}`,
  };
  return libc;
}

/** Whether libc loads here through koffi. */
export function available(): boolean {
  try {
    lib();
    return true;
  } catch {
    return false;
  }
}

/** A failed libc call (or a kernel's netlink error): `${call}: ${strerror} (errno N)`. */
export class LibcError extends Error {
  constructor(
    readonly call: string,
    readonly errno: number,
  ) {
    super(`${call}: ${lib().strerror(errno)} (errno ${errno})`);
  }
}

/** `r` when it is not negative; otherwise throws a LibcError with this thread's errno. */
export function check(call: string, r: number): number {
  if (r < 0) throw new LibcError(call, lib().errno());
  return r;
}

/** struct timeval for `ms` milliseconds (SO_RCVTIMEO). */
export function timeval(ms: number): Buffer {
  const tv = Buffer.alloc(16);
  tv.writeBigInt64LE(BigInt(Math.floor(ms / 1000)), 0);
  tv.writeBigInt64LE(BigInt((ms % 1000) * 1000), 8);
  return tv;
}
