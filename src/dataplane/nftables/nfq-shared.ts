/**
 * What the NFQUEUE worker (nfq-worker.ts) and its owner (nfqueue.ts) share: the layout of
 * the SharedArrayBuffer that carries answers, and the messages between them.
 */
import type { QueuedPacket } from './netlink.js';

/** Int32 index: the last batch the main thread answered. */
export const CTRL_ANSWERED = 0;
/** Int32 index: non-zero asks the worker to unbind and exit. */
export const CTRL_STOP = 1;
/** Int32 offset of the marks (Uint32, one per packet of the batch). */
export const MARKS_OFFSET = 4;
/** Packets per question; the rest of a larger read is accepted without a mark. */
export const MAX_BATCH = 1024;
export const SHARED_BYTES = (MARKS_OFFSET + MAX_BATCH) * 4;

export interface WorkerConfig {
  queue: number;
  /** Network namespace file to enter first (tests); absent: tsvsd's own. */
  nsPath?: string;
  /** How long a packet waits for the main thread's answer. */
  timeoutMs: number;
  shared: SharedArrayBuffer;
}

/** Worker -> main: the first packets of new flows, to be answered before `deadline`. */
export interface WorkerRequest {
  kind: 'decide';
  batch: number;
  deadline: number;
  pkts: QueuedPacket[];
}

export type WorkerStatus =
  | { kind: 'ready' }
  | { kind: 'stopped' }
  | { kind: 'error'; message: string; errno: number }
  /** Per second: packets asked about, answered with a mark, missed the bound; questions; total wait for answers. */
  | { kind: 'stats'; packets: number; marked: number; late: number; batches: number; waitUs: number };
