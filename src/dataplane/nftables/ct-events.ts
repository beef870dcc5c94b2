/**
 * The owner of the conntrack event reader (ct-worker.ts) on the main thread: starts the
 * worker in the plane's namespace, hands each batch of events to the caller, reports lost
 * events (the caller resyncs from a dump) and stops it. Started the same way as the
 * NFQUEUE reader (nfqueue.ts's bootstrap: Node 20 workers do not inherit `--import tsx`).
 */
import type { Worker } from 'node:worker_threads';
import { NFNLGRP_CONNTRACK_DESTROY, NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_UPDATE, type CtEvent } from './ctnetlink.js';
import { CT_SHARED_BYTES, CTRL_INFLIGHT, CTRL_STOP, type CtWorkerConfig, type CtWorkerMessage } from './ct-shared.js';
import { startWorker } from './nfqueue.js';

export interface CtEventOptions {
  /** Network namespace file (/run/netns/NAME); absent: this process's namespace. */
  nsPath?: string;
  /** Which events (default: all three). */
  kinds?: ReadonlyArray<CtEvent['kind']>;
  /** Receive buffer of the event socket (default 8 MiB). */
  rcvBufBytes?: number;
  /** Events per batch (default 4096). */
  maxBatch?: number;
  /** Batches waiting for this thread before the reader stops reading (default 64; then the kernel drops and onLost tells). */
  maxInflight?: number;
  /** Only events of entries with a non-zero mark reach the reader (a socket filter; default true). */
  markedOnly?: boolean;
  /** Tests: the reader waits this long after joining before it reads (to overflow its socket). */
  holdMs?: number;
  onEvents: (events: CtEvent[]) => void;
  /** The kernel dropped events (the socket overflowed): the caller's picture is stale until a dump. */
  onLost?: (count: number) => void;
  /** The reader failed or exited after it had started. */
  onError?: (message: string) => void;
}

const GROUPS: Record<CtEvent['kind'], number> = {
  new: NFNLGRP_CONNTRACK_NEW,
  update: NFNLGRP_CONNTRACK_UPDATE,
  destroy: NFNLGRP_CONNTRACK_DESTROY,
};

/** A running conntrack event reader. */
export class CtEventReader {
  private worker: Worker | null = null;
  private readonly shared = new SharedArrayBuffer(CT_SHARED_BYTES);
  private readonly ctrl = new Int32Array(this.shared);
  /** Event messages the reader received, tsvs's or not (with markedOnly, only marked ones arrive). */
  rawMessages = 0;

  constructor(private readonly opts: CtEventOptions) {}

  get running(): boolean {
    return this.worker !== null;
  }

  /** Starts the reader; resolves once it listens, rejects with the reason it cannot. */
  start(): Promise<void> {
    if (this.worker) return Promise.resolve();
    const cfg: CtWorkerConfig = {
      groups: (this.opts.kinds ?? ['new', 'update', 'destroy']).map((k) => GROUPS[k]),
      rcvBufBytes: this.opts.rcvBufBytes ?? 8 << 20,
      maxBatch: this.opts.maxBatch ?? 4096,
      maxInflight: this.opts.maxInflight ?? 64,
      markedOnly: this.opts.markedOnly ?? true,
      holdMs: this.opts.holdMs ?? 0,
      shared: this.shared,
      ...(this.opts.nsPath ? { nsPath: this.opts.nsPath } : {}),
    };
    Atomics.store(this.ctrl, CTRL_STOP, 0);
    Atomics.store(this.ctrl, CTRL_INFLIGHT, 0);
    const w = startWorker('ct-worker', cfg, 'tsvs-ctevents');
    this.worker = w;
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const fail = (msg: string) => {
        const why = `conntrack event reader: ${msg}`;
        if (!settled) {
          settled = true;
          void w.terminate();
          if (this.worker === w) this.worker = null;
          reject(new Error(why));
        } else {
          this.opts.onError?.(why);
        }
      };
      w.on('message', (m: CtWorkerMessage) => {
        switch (m.kind) {
          case 'ready':
            settled = true;
            resolve();
            break;
          case 'events':
            Atomics.sub(this.ctrl, CTRL_INFLIGHT, 1);
            Atomics.notify(this.ctrl, CTRL_INFLIGHT);
            this.rawMessages += m.raw;
            if (m.events.length) this.opts.onEvents(m.events);
            break;
          case 'lost':
            this.opts.onLost?.(m.count);
            break;
          case 'error':
            fail(m.message);
            break;
          case 'stopped':
            break;
        }
      });
      w.on('error', (e) => fail(e.message));
      w.on('exit', () => {
        const mine = this.worker === w;
        if (mine) this.worker = null;
        if (!settled) fail('the worker exited');
        else if (mine) this.opts.onError?.('conntrack event reader: the worker exited');
      });
    });
  }

  /** Asks the worker to exit (within its 200 ms read bound); terminates it after 1 s. */
  async stop(): Promise<void> {
    const w = this.worker;
    if (!w) return;
    this.worker = null;
    Atomics.store(this.ctrl, CTRL_STOP, 1);
    Atomics.notify(this.ctrl, CTRL_STOP);
    const exited = new Promise<void>((r) => w.once('exit', () => r()));
    const timer = setTimeout(() => void w.terminate(), 1000);
    await exited;
    clearTimeout(timer);
  }
}
