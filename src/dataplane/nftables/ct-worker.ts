/**
 * The conntrack event reader, in its own worker thread (ct-events.ts starts it): it joins
 * ctnetlink's NEW/UPDATE/DESTROY groups, reads events in a loop (blocking reads bounded by
 * SO_RCVTIMEO, then whatever else waits), parses them and posts them to the main thread in
 * batches. The socket has NETLINK_NO_ENOBUFS and a large buffer, so an overflow never
 * poisons it; the kernel then counts the events it dropped (sk_drops, read with
 * SO_MEMINFO), and the worker reports them so that the owner can resync from a dump.
 * A socket filter (ct-filter.ts) lets only marked entries' events reach the socket.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { lib, SOL_SOCKET } from '../../net/libc.js';
import { parseCtEvent, type CtEvent } from './ctnetlink.js';
import { attachMarkedOnlyFilter } from './ct-filter.js';
import { parseMessages } from './netlink.js';
import { enterNetns, NetfilterSocket, SysError } from './netsock.js';
import { CTRL_INFLIGHT, CTRL_STOP, type CtWorkerConfig, type CtWorkerMessage } from './ct-shared.js';

const SOL_NETLINK = 270;
const NETLINK_ADD_MEMBERSHIP = 1;
const SO_RCVBUFFORCE = 33;
const SO_MEMINFO = 55;
/** struct sk_meminfo: u32[SK_MEMINFO_VARS]; SK_MEMINFO_DROPS is the 9th. */
const SK_MEMINFO_VARS = 9;
const SK_MEMINFO_DROPS = 8;

const cfg = workerData as CtWorkerConfig;
const ctrl = new Int32Array(cfg.shared);
const post = (m: CtWorkerMessage) => parentPort!.postMessage(m);
const fail = (e: unknown) => post({ kind: 'error', message: (e as Error).message, errno: e instanceof SysError ? e.errno : 0 });

function setInt(fd: number, level: number, name: number, v: number, what: string): boolean {
  const b = Buffer.alloc(4);
  b.writeInt32LE(v);
  if (lib().setsockopt(fd, level, name, b, 4) === 0) return true;
  if (what) throw new SysError(what, lib().errno());
  return false;
}

function drops(fd: number): number {
  const b = Buffer.alloc(SK_MEMINFO_VARS * 4);
  const len = [b.length];
  return lib().getsockopt(fd, SOL_SOCKET, SO_MEMINFO, b, len) === 0 ? b.readUInt32LE(SK_MEMINFO_DROPS * 4) : 0;
}

function main(): void {
  let sock: NetfilterSocket;
  try {
    if (cfg.nsPath) enterNetns(cfg.nsPath);
    sock = new NetfilterSocket({ rcvTimeoutMs: 200, rcvBuf: cfg.rcvBufBytes });
  } catch (e) {
    fail(e);
    return;
  }
  try {
    // Past net.core.rmem_max when root; SO_RCVBUF already holds what rmem_max allows.
    setInt(sock.fd, SOL_SOCKET, SO_RCVBUFFORCE, cfg.rcvBufBytes, '');
    if (cfg.markedOnly) attachMarkedOnlyFilter(sock.fd);
    for (const g of cfg.groups) setInt(sock.fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, g, `join ctnetlink group ${g}`);
  } catch (e) {
    sock.close();
    fail(e);
    return;
  }
  // The baseline comes first: drops from here on are events this reader should have seen.
  let lost = drops(sock.fd);
  post({ kind: 'ready' });
  if (cfg.holdMs > 0) Atomics.wait(ctrl, CTRL_STOP, 0, cfg.holdMs);
  const buf = Buffer.alloc(64 * 1024);
  try {
    while (Atomics.load(ctrl, CTRL_STOP) === 0) {
      const inflight = Atomics.load(ctrl, CTRL_INFLIGHT);
      if (inflight >= cfg.maxInflight) {
        // The main thread is behind: leave the events in the socket (it overflows and counts drops).
        Atomics.wait(ctrl, CTRL_INFLIGHT, inflight, 200);
        continue;
      }
      const events: CtEvent[] = [];
      let raw = 0;
      try {
        // One event per datagram: one blocking read, then whatever else already waits.
        for (let got = sock.recv(buf); got > 0 && events.length < cfg.maxBatch; got = sock.recv(buf, true)) {
          for (const m of parseMessages(buf.subarray(0, got))) {
            raw++;
            const ev = parseCtEvent(m.type, m.flags, m.payload);
            if (ev) events.push(ev);
          }
        }
      } catch (e) {
        fail(e);
        break;
      }
      if (raw) {
        Atomics.add(ctrl, CTRL_INFLIGHT, 1);
        post({ kind: 'events', events, raw });
      }
      const d = drops(sock.fd);
      if (d !== lost) {
        post({ kind: 'lost', count: (d - lost) >>> 0 });
        lost = d;
      }
    }
  } finally {
    sock.close();
  }
  post({ kind: 'stopped' });
}

main();
