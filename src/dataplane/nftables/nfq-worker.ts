/**
 * The NFQUEUE reader, in its own worker thread (nfqueue.ts starts it): a stalled main
 * loop must not hang new connections. It binds the queue over nfnetlink_queue, reads the
 * first packet of each new flow (headers only), asks the main thread for the real
 * server's mark through a message plus a SharedArrayBuffer answer (Atomics.wait, bounded),
 * and sends ACCEPT verdicts: with the mark when the answer came in time, without one
 * otherwise, so that the kernel's fallback rule schedules the connection.
 */
import { parentPort, workerData } from 'node:worker_threads';
import {
  NFQNL_CFG_CMD_BIND,
  NFQNL_CFG_CMD_UNBIND,
  nfqCommand,
  nfqParams,
  nfqVerdict,
  parseMessages,
  parseQueuedPacket,
  type QueuedPacket,
} from './netlink.js';
import { enterNetns, NetfilterSocket, SysError } from './netsock.js';
import {
  CTRL_ANSWERED,
  CTRL_STOP,
  MARKS_OFFSET,
  MAX_BATCH,
  type WorkerConfig,
  type WorkerRequest,
  type WorkerStatus,
} from './nfq-shared.js';

const cfg = workerData as WorkerConfig;
const ctrl = new Int32Array(cfg.shared);
const marks = new Uint32Array(cfg.shared, MARKS_OFFSET * 4, MAX_BATCH);
const post = (m: WorkerStatus | WorkerRequest) => parentPort!.postMessage(m);

function main(): void {
  let sock: NetfilterSocket;
  try {
    if (cfg.nsPath) enterNetns(cfg.nsPath);
    sock = new NetfilterSocket({ rcvTimeoutMs: 200, rcvBuf: 4 << 20 });
  } catch (e) {
    post({ kind: 'error', message: (e as Error).message, errno: e instanceof SysError ? e.errno : 0 });
    return;
  }
  let seq = 1;
  try {
    sock.request(nfqCommand(cfg.queue, NFQNL_CFG_CMD_BIND, seq), seq, `bind NFQUEUE ${cfg.queue}`);
    seq++;
    // IPv6 header + TCP header with options fits in 128 bytes; the rest of the packet stays in the kernel.
    sock.request(nfqParams(cfg.queue, 128, 4096, seq), seq, `configure NFQUEUE ${cfg.queue}`);
    seq++;
  } catch (e) {
    sock.close();
    post({ kind: 'error', message: (e as Error).message, errno: e instanceof SysError ? e.errno : 0 });
    return;
  }
  post({ kind: 'ready' });
  const buf = Buffer.alloc(256 * 1024);
  let batch = 0;
  let stats = { packets: 0, marked: 0, late: 0, batches: 0, waitUs: 0 };
  let lastStats = Date.now();
  // Whatever ends the loop (stop, an error, an exception), the queue is released: a socket
  // left open would keep it bound, and new first packets would wait for a reader that is gone.
  try {
    while (Atomics.load(ctrl, CTRL_STOP) === 0) {
      const pkts: QueuedPacket[] = [];
      const plain: number[] = [];
      let n: number;
      try {
        // One blocking read, then whatever else is waiting (each packet is its own datagram),
        // so that a burst of new connections costs one question to the main thread.
        n = sock.recv(buf);
        for (let got = n; got > 0 && pkts.length < MAX_BATCH; got = sock.recv(buf, true)) {
          for (const m of parseMessages(buf.subarray(0, got))) {
            const p = parseQueuedPacket(m);
            if (!p) continue;
            if ('caddr' in p && pkts.length < MAX_BATCH) pkts.push(p);
            else plain.push(p.id);
          }
        }
      } catch (e) {
        post({ kind: 'error', message: (e as Error).message, errno: e instanceof SysError ? e.errno : 0 });
        break;
      }
      if (n > 0) {
        const out: Buffer[] = plain.map((id) => nfqVerdict(cfg.queue, id, null, seq++));
        if (pkts.length) {
          batch = (batch + 1) & 0x3fffffff;
          post({ kind: 'decide', batch, deadline: Date.now() + cfg.timeoutMs, pkts });
          const until = Date.now() + cfg.timeoutMs;
          const t0 = process.hrtime.bigint();
          let answered = Atomics.load(ctrl, CTRL_ANSWERED) === batch;
          while (!answered) {
            const left = until - Date.now();
            if (left <= 0) break;
            Atomics.wait(ctrl, CTRL_ANSWERED, Atomics.load(ctrl, CTRL_ANSWERED), left);
            answered = Atomics.load(ctrl, CTRL_ANSWERED) === batch;
          }
          stats.packets += pkts.length;
          stats.batches++;
          stats.waitUs += Number((process.hrtime.bigint() - t0) / 1000n);
          if (!answered) stats.late += pkts.length;
          for (let i = 0; i < pkts.length; i++) {
            const mark = answered ? marks[i]! : 0;
            if (mark) stats.marked++;
            out.push(nfqVerdict(cfg.queue, pkts[i]!.id, mark || null, seq++));
          }
        }
        try {
          if (out.length) sock.send(Buffer.concat(out));
        } catch (e) {
          post({ kind: 'error', message: (e as Error).message, errno: e instanceof SysError ? e.errno : 0 });
        }
      }
      if (Date.now() - lastStats >= 1000 && stats.packets) {
        post({ kind: 'stats', ...stats });
        stats = { packets: 0, marked: 0, late: 0, batches: 0, waitUs: 0 };
        lastStats = Date.now();
      }
    }
  } finally {
    try {
      sock.send(nfqCommand(cfg.queue, NFQNL_CFG_CMD_UNBIND, seq++));
    } catch {
      /* closing releases the queue anyway */
    }
    sock.close();
  }
  post({ kind: 'stopped' });
}

main();
