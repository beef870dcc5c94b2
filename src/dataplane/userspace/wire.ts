/**
 * The messages between the userspace plane's main thread (which holds the table and the one
 * scheduler) and its worker threads (which carry the bytes, --workers N). Plain arrays and
 * objects, so they cross a MessagePort by structured clone cheaply.
 *
 * Worker -> main, sent in batches (one postMessage per event-loop turn; an 'open' is
 * posted at once, since its client waits):
 *   ['ready']                                   the worker is up
 *   ['listening', req, errCode | null]          its listener for a service took the descriptor
 *   ['open', req, sid, caddr, cport]            a client arrived: pick a real server
 *   ['ev', cid, dir, flag]                      a TCP event of the connection (tcpstate.ts)
 *   ['cnt', cid, inPkts, inBytes, outPkts, outBytes]   traffic since the last report
 *   ['drop', cid]                               remove the entry now
 *   ['fail', cid, reason]                       the connect to the real server failed
 *   ['redispatch', req, cid]                    after a 'fail': pick another server (answered by 'sched', same cid)
 *   ['closed', cid]                             both sockets are closed
 *   ['log', level, key, msg, fields]
 * Main -> worker, posted at once (as a one-element array, the shape workers read):
 *   { t: 'listen', req, sid, fd, svc }          listen on a SO_REUSEPORT descriptor
 *   { t: 'attach' | 'detach' | 'stop' | 'close', sid, svc? }
 *   { t: 'sched', req, cid, daddr, dport }      the pick (cid 0: refused)
 *   { t: 'kill', cid, how }                     tear a session down (rst, expired)
 */
import type { LogLevel } from '../../core/log.js';
import type { TcpDir, TcpFlag } from '../../core/tcpstate.js';

/** The fields of a service a worker's listener needs (see ListenerService). */
export interface WireService {
  id: string;
  label: string;
  addr: string;
  port: number;
  proxyProtocol?: 'v1' | 'v2' | undefined;
  transparent?: boolean | undefined;
}

export type UpMsg =
  | ['ready']
  | ['listening', number, string | null]
  | ['open', number, string, string, number]
  | ['ev', number, TcpDir, TcpFlag]
  | ['cnt', number, number, number, number, number]
  | ['drop', number]
  | ['fail', number, string]
  | ['redispatch', number, number]
  | ['closed', number]
  | ['log', LogLevel, string, string, Record<string, unknown>];

export type DownMsg =
  | { t: 'listen'; req: number; sid: string; fd: number; svc: WireService }
  | { t: 'attach'; sid: string; svc: WireService }
  | { t: 'detach' | 'stop' | 'close'; sid: string }
  | { t: 'sched'; req: number; cid: number; daddr: string; dport: number }
  | { t: 'kill'; cid: number; how: 'rst' | 'expired' };

/** How a connection is torn down from the main thread. */
export type KillHow = 'rst' | 'expired';

export interface WorkerInit {
  /** URL of worker.ts / worker.js, imported by the .mjs bootstrap. */
  entry: string;
  index: number;
  connectTimeoutMs: number;
  /** Other servers a connection tries after a failed connect. */
  redispatchRetries: number;
}

export function wireService(s: WireService): WireService {
  return { id: s.id, label: s.label, addr: s.addr, port: s.port, proxyProtocol: s.proxyProtocol, transparent: s.transparent };
}
