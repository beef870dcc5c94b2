/** What the conntrack event worker (ct-worker.ts) and its owner (ct-events.ts) share. */
import type { CtEvent } from './ctnetlink.js';

/** Int32 index in the shared buffer: non-zero asks the worker to exit. */
export const CTRL_STOP = 0;
/** Int32 index: batches posted and not yet taken by the main thread. */
export const CTRL_INFLIGHT = 1;
export const CT_SHARED_BYTES = 8;

export interface CtWorkerConfig {
  /** Network namespace file to enter first; absent: this process's. */
  nsPath?: string;
  /** ctnetlink multicast groups to join (NFNLGRP_CONNTRACK_*). */
  groups: number[];
  rcvBufBytes: number;
  /** Events per message to the main thread. */
  maxBatch: number;
  /**
   * Batches the main thread may have pending; past it the worker stops reading, so the
   * kernel drops (and counts) events instead of this process queueing them without bound.
   */
  maxInflight: number;
  /** Attach the socket filter that passes only events of marked entries. */
  markedOnly: boolean;
  /** Wait this long after joining before the first read (tests overflow the socket with it). */
  holdMs: number;
  shared: SharedArrayBuffer;
}

export type CtWorkerMessage =
  | { kind: 'ready' }
  | { kind: 'stopped' }
  | { kind: 'error'; message: string; errno: number }
  /** `raw`: messages read, tsvs's or not (the socket filter keeps the others out). */
  | { kind: 'events'; events: CtEvent[]; raw: number }
  /** The kernel dropped `count` events since the last report (the socket overflowed): resync from a dump. */
  | { kind: 'lost'; count: number };
