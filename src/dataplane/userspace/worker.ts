/**
 * A worker thread of the userspace plane (tsvsd --workers N): it listens on its own
 * SO_REUSEPORT socket of every TCP service and relays the connections the kernel gives it,
 * with the same TcpListener / TcpSession code as the single-thread plane. It holds no
 * table: for each new client it asks the main thread for the real server (one scheduler, so
 * lc/wlc see every worker's connections), and reports the connection's TCP events, traffic
 * and close back, batched once per event-loop turn (traffic at most every FLUSH_MS).
 *
 * Started through worker-boot.mjs, which registers tsx first when running from source.
 */
import type { LogLevel } from '../../core/log.js';
import net from 'node:net';
import { parentPort, workerData } from 'node:worker_threads';
import type { TcpDir, TcpFlag } from '../../core/tcpstate.js';
import { loadSocketLib } from '../../net/socket.js';
import { CLOCK_MS, KEEPALIVE_MS, type ListenerService, type SessionConn } from './context.js';
import { TcpListener, TcpSession, type TcpEnv } from './tcp.js';
import type { DownMsg, UpMsg, WorkerInit } from './wire.js';

/** Traffic of live connections is reported at most this often. */
const FLUSH_MS = 100;

/** A connection as the worker knows it: the main thread's pick, and traffic not yet reported. */
interface RemoteConn extends SessionConn {
  readonly cid: number;
  inPkts: number;
  inBytes: number;
  outPkts: number;
  outBytes: number;
}

const port = parentPort!;
const init = workerData as WorkerInit;

let queue: UpMsg[] = [];
let flushQueued = false;
function post(m: UpMsg): void {
  queue.push(m);
  if (!flushQueued) {
    flushQueued = true;
    setImmediate(flush);
  }
}
function flush(): void {
  flushQueued = false;
  if (queue.length === 0) return;
  const q = queue;
  queue = [];
  port.postMessage(q);
}

const dirty = new Set<RemoteConn>();
function report(c: RemoteConn): void {
  if (c.inPkts || c.outPkts) post(['cnt', c.cid, c.inPkts, c.inBytes, c.outPkts, c.outBytes]);
  c.inPkts = c.inBytes = c.outPkts = c.outBytes = 0;
}

let nextReq = 1;
const pending = new Map<number, (c: SessionConn | null) => void>();
const conns = new Map<number, RemoteConn>();

const env: TcpEnv = {
  clock: performance.now(),
  connectTimeoutMs: init.connectTimeoutMs,
  logLimited(level: LogLevel, key: string, msg: string, fields: Record<string, unknown>) {
    post(['log', level, key, msg, fields]);
  },
  open(svc: ListenerService, caddr: string, cport: number) {
    const req = nextReq++;
    post(['open', req, svc.id, caddr, cport]);
    // The client waits on the answer: post now rather than at the end of the turn.
    flush();
    return new Promise<SessionConn | null>((resolve) => {
      pending.set(req, (c) => {
        if (c) {
          const rc = c as RemoteConn;
          (rc as { caddr: string }).caddr = caddr;
          (rc as { cport: number }).cport = cport;
          (rc as { vaddr: string }).vaddr = svc.addr;
          (rc as { vport: number }).vport = svc.port;
        }
        resolve(c);
      });
    });
  },
  tcpEvent(c: SessionConn, dir: TcpDir, flag: TcpFlag) {
    post(['ev', (c as RemoteConn).cid, dir, flag]);
  },
  countIn(c: SessionConn, pkts: number, bytes: number) {
    const rc = c as RemoteConn;
    rc.inPkts += pkts;
    rc.inBytes += bytes;
    dirty.add(rc);
  },
  countOut(c: SessionConn, pkts: number, bytes: number) {
    const rc = c as RemoteConn;
    rc.outPkts += pkts;
    rc.outBytes += bytes;
    dirty.add(rc);
  },
  dropConn(c: SessionConn) {
    post(['drop', (c as RemoteConn).cid]);
  },
  serverFailed(c: SessionConn, reason: string) {
    post(['fail', (c as RemoteConn).cid, reason]);
  },
  redispatchRetries: init.redispatchRetries,
  redispatch(c: SessionConn) {
    const old = c as RemoteConn;
    report(old);
    dirty.delete(old);
    const req = nextReq++;
    post(['redispatch', req, old.cid]);
    flush();
    return new Promise<SessionConn | null>((resolve) => {
      pending.set(req, (n) => {
        if (n) {
          const rc = n as { caddr: string; cport: number; vaddr: string; vport: number };
          rc.caddr = old.caddr;
          rc.cport = old.cport;
          rc.vaddr = old.vaddr;
          rc.vport = old.vport;
        }
        resolve(n);
      });
    });
  },
  sessionOpened() {
    // Counted by the main thread when it scheduled the connection.
  },
  sessionClosed(c: SessionConn) {
    const rc = c as RemoteConn;
    report(rc);
    dirty.delete(rc);
    conns.delete(rc.cid);
    post(['closed', rc.cid]);
  },
};

setInterval(() => {
  env.clock = performance.now();
}, CLOCK_MS).unref();
setInterval(() => {
  for (const c of dirty) report(c);
  dirty.clear();
}, FLUSH_MS).unref();

const listeners = new Map<string, TcpListener>();

function listen(m: Extract<DownMsg, { t: 'listen' }>): void {
  const server = net.createServer({
    allowHalfOpen: true,
    pauseOnConnect: true,
    noDelay: true,
    keepAlive: true,
    keepAliveInitialDelay: KEEPALIVE_MS,
  });
  const onError = (err: NodeJS.ErrnoException) => {
    server.close();
    post(['listening', m.req, err.code ?? err.message]);
  };
  server.once('error', onError);
  server.listen({ fd: m.fd, backlog: 511 }, () => {
    server.off('error', onError);
    const l = new TcpListener(env, server);
    listeners.get(m.sid)?.close();
    listeners.set(m.sid, l);
    post(['listening', m.req, null]);
  });
}

port.on('message', (batch: DownMsg[]) => {
  for (const m of batch) handle(m);
});

function handle(m: DownMsg): void {
  switch (m.t) {
    case 'sched': {
      const done = pending.get(m.req);
      pending.delete(m.req);
      if (!done) return;
      if (m.cid === 0) {
        done(null);
        return;
      }
      const c: RemoteConn = {
        cid: m.cid,
        caddr: '',
        cport: 0,
        vaddr: '',
        vport: 0,
        daddr: m.daddr,
        dport: m.dport,
        dest: null,
        // The main thread keeps the real timers; this only paces the re-arm reports.
        timeoutMs: 900_000,
        handle: null,
        inPkts: 0,
        inBytes: 0,
        outPkts: 0,
        outBytes: 0,
      };
      conns.set(c.cid, c);
      done(c);
      return;
    }
    case 'kill': {
      const h = conns.get(m.cid)?.handle;
      if (h instanceof TcpSession) h.terminate(m.how);
      return;
    }
    case 'listen':
      listen(m);
      return;
    case 'attach':
      listeners.get(m.sid)?.attach(m.svc);
      return;
    case 'detach':
      listeners.get(m.sid)?.detach();
      return;
    case 'stop':
      listeners.get(m.sid)?.stopAccepting();
      return;
    case 'close':
      listeners.get(m.sid)?.close();
      listeners.delete(m.sid);
      return;
  }
}

// Transparent connects need libc; load it before the first one.
loadSocketLib().then(
  () => post(['ready']),
  (e: unknown) => {
    post(['log', 'warn', 'worker libc', `userspace worker ${init.index}: ${(e as Error).message}`, {}]);
    post(['ready']);
  },
);
