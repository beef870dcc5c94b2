/**
 * The first-packet path's owner on the main thread: starts the NFQUEUE reader in a
 * worker thread (nfq-worker.ts), answers its questions with the core scheduler's choice
 * (`decide`, run on this thread where the table lives), and stops it.
 *
 * Node 20 workers do not inherit `--import tsx`, so the worker starts from a tiny eval'd
 * bootstrap: under tsx (tests, `node --import tsx`) it registers tsx's loader in the new
 * thread and imports nfq-worker.ts; from dist/ it imports the compiled nfq-worker.js. No
 * extra file has to be copied into dist/.
 */
import { Worker } from 'node:worker_threads';
import { TsvsError } from '../../core/errors.js';
import type { QueuedPacket } from './netlink.js';
import {
  CTRL_ANSWERED,
  CTRL_STOP,
  MARKS_OFFSET,
  MAX_BATCH,
  SHARED_BYTES,
  type WorkerConfig,
  type WorkerRequest,
  type WorkerStatus,
} from './nfq-shared.js';

/** The eval'd worker bootstrap (registers tsx under tests, then imports workerData.entry); ct-events.ts reuses it. */
const BOOTSTRAP = `
const { workerData } = require('node:worker_threads');
(async () => {
  if (workerData.tsx) (await import(workerData.tsx)).register();
  await import(workerData.entry);
})().catch((e) => { setImmediate(() => { throw e; }); });
`;

/**
 * A worker thread running `script` (a sibling of this file, without its extension) through
 * BOOTSTRAP: the .ts source under tsx (tests), the built .js otherwise.
 */
export function startWorker(script: string, cfg: object, name: string): Worker {
  const self = import.meta.url;
  const underTsx = self.endsWith('.ts');
  const workerData = {
    ...cfg,
    entry: new URL(`./${script}${underTsx ? '.ts' : '.js'}`, self).href,
    tsx: underTsx ? import.meta.resolve('tsx/esm/api') : null,
  };
  return new Worker(BOOTSTRAP, { eval: true, workerData, name });
}

export interface NfQueueOptions {
  queue: number;
  nsPath?: string;
  /** Bound on the main thread's answer; after it the packet goes to the kernel fallback. */
  timeoutMs: number;
  /** Marks for the packets (0: none, the fallback schedules it). Runs on the main thread. */
  decide: (pkts: readonly QueuedPacket[]) => number[];
  onStats?: (s: { packets: number; marked: number; late: number; batches: number; waitUs: number }) => void;
  onError?: (message: string) => void;
}

const EBUSY = 16;
const EPERM = 1;

export class NfQueueReader {
  private worker: Worker | null = null;
  private readonly shared = new SharedArrayBuffer(SHARED_BYTES);
  private readonly ctrl = new Int32Array(this.shared);
  private readonly marks = new Uint32Array(this.shared, MARKS_OFFSET * 4, MAX_BATCH);
  /** Questions that arrived after their deadline (the packet already went to the fallback). */
  stale = 0;

  constructor(private readonly opts: NfQueueOptions) {}

  get running(): boolean {
    return this.worker !== null;
  }

  /** Starts the reader; resolves once the queue is bound, rejects with a TsvsError saying why not. */
  start(): Promise<void> {
    if (this.worker) return Promise.resolve();
    const cfg: WorkerConfig = {
      queue: this.opts.queue,
      timeoutMs: this.opts.timeoutMs,
      shared: this.shared,
      ...(this.opts.nsPath ? { nsPath: this.opts.nsPath } : {}),
    };
    Atomics.store(this.ctrl, CTRL_STOP, 0);
    const w = startWorker('nfq-worker', cfg, 'tsvs-nfqueue');
    this.worker = w;
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const fail = (msg: string, errno = 0) => {
        // The kernel answers a bind of a queue another socket owns with EPERM (EBUSY in older kernels).
        const busy = errno === EBUSY || (errno === EPERM && process.getuid?.() === 0 && /^bind NFQUEUE/.test(msg));
        const why = busy
          ? `NFQUEUE queue ${this.opts.queue} is already bound by another reader (EBUSY/EPERM: ${msg}): is another tsvsd running in this network namespace? Stop it, or give this one another queue with TSVS_NFT_QUEUE`
          : `the NFQUEUE reader could not start: ${msg} (needs root, nfnetlink_queue and nft_compat/xt_NFQUEUE in the kernel)`;
        if (!settled) {
          settled = true;
          void w.terminate();
          if (this.worker === w) this.worker = null;
          reject(new TsvsError('DATAPLANE', why, why));
        } else {
          this.opts.onError?.(why);
        }
      };
      w.on('message', (m: WorkerStatus | WorkerRequest) => {
        switch (m.kind) {
          case 'ready':
            settled = true;
            resolve();
            break;
          case 'decide':
            this.answer(m);
            break;
          case 'stats':
            this.opts.onStats?.(m);
            break;
          case 'error':
            fail(m.message, m.errno);
            break;
          case 'stopped':
            break;
        }
      });
      w.on('error', (e) => fail(e.message));
      w.on('exit', () => {
        if (this.worker === w) this.worker = null;
        if (!settled) fail('the worker exited');
      });
    });
  }

  private answer(m: WorkerRequest): void {
    if (Date.now() > m.deadline) {
      // Too late: the packet was accepted without a mark; scheduling it now would count a
      // connection the kernel's fallback placed (the read-back would correct it, but later).
      this.stale += m.pkts.length;
      return;
    }
    let out: number[];
    try {
      out = this.opts.decide(m.pkts);
    } catch (e) {
      this.opts.onError?.(`NFQUEUE decision failed: ${(e as Error).message}`);
      out = [];
    }
    for (let i = 0; i < m.pkts.length && i < MAX_BATCH; i++) this.marks[i] = out[i] ?? 0;
    Atomics.store(this.ctrl, CTRL_ANSWERED, m.batch);
    Atomics.notify(this.ctrl, CTRL_ANSWERED);
  }

  /** Asks the worker to unbind the queue and exit; bounded. */
  async stop(): Promise<void> {
    const w = this.worker;
    if (!w) return;
    this.worker = null;
    Atomics.store(this.ctrl, CTRL_STOP, 1);
    Atomics.notify(this.ctrl, CTRL_ANSWERED);
    const exited = new Promise<void>((r) => w.once('exit', () => r()));
    const timer = setTimeout(() => void w.terminate(), 1000);
    await exited;
    clearTimeout(timer);
  }
}
