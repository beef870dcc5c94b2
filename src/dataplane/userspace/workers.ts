/**
 * The main-thread side of `tsvsd --workers N`: N worker threads (worker.ts) carry the TCP
 * bytes, each on its own SO_REUSEPORT listening socket per service, so the kernel spreads
 * new connections over them and the plane uses every core. The main thread keeps the one
 * table and scheduler: a worker asks it for each new client's real server, and reports the
 * connection's TCP events, traffic and close, so lc/wlc, persistence, thresholds, -Lnc and
 * the counters see all connections of all workers as one plane.
 *
 * The sockets are made here (src/net/socket.ts), so a bind failure refuses the batch before
 * any table change, exactly as in one thread; each worker then takes its descriptor over
 * with `server.listen({ fd })`.
 *
 * UDP services stay in the main thread (their flows are short exchanges keyed by client
 * address; Node's dgram sockets cannot take a descriptor).
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { Conn } from '../../core/conn.js';
import type { Dest, VirtualService } from '../../core/service.js';
import type { ServiceKey } from '../../core/types.js';
import { closeFd, reusePortSocket } from '../../net/socket.js';
import { bindError } from './bind.js';
import type { ProxyContext, ServiceListener } from './context.js';
import { wireService, type DownMsg, type KillHow, type UpMsg, type WorkerInit } from './wire.js';

/** The table entry's link to a session in a worker (Conn.handle). */
export class WorkerSessionRef {
  constructor(
    readonly pool: WorkerPool,
    readonly worker: number,
    readonly cid: number,
    readonly sid: string,
  ) {}

  kill(how: KillHow): void {
    this.pool.send(this.worker, { t: 'kill', cid: this.cid, how });
  }
}

/** The .mjs bootstrap: next to this file under src/, or in src/ when this file runs from dist/. */
function bootUrl(): URL {
  const here = new URL('./worker-boot.mjs', import.meta.url);
  if (existsSync(fileURLToPath(here))) return here;
  // dist/src/dataplane/userspace/workers.js -> src/dataplane/userspace/worker-boot.mjs
  const src = new URL('../../../../src/dataplane/userspace/worker-boot.mjs', import.meta.url);
  if (existsSync(fileURLToPath(src))) return src;
  throw new Error(`userspace workers: bootstrap worker-boot.mjs not found next to ${fileURLToPath(import.meta.url)}`);
}

const START_TIMEOUT_MS = 15_000;

export class WorkerPool {
  private readonly workers: Worker[] = [];
  private readonly conns = new Map<number, Conn>();
  private readonly listeners = new Map<string, WorkerTcpListener>();
  private readonly acks = new Map<number, (err: string | null) => void>();
  private nextCid = 1;
  private nextReq = 1;
  private stopping = false;
  /** Workers that exited: no new listeners go to them (they would never answer). */
  private readonly exited = new Set<number>();
  /** Clients each worker asked a real server for, since start. */
  readonly accepted: number[];

  constructor(
    readonly ctx: ProxyContext,
    readonly size: number,
  ) {
    this.accepted = new Array<number>(size).fill(0);
  }

  /** Starts the workers; resolves when every one is ready. */
  async start(): Promise<void> {
    const isTs = import.meta.url.endsWith('.ts');
    const entry = new URL(isTs ? './worker.ts' : './worker.js', import.meta.url).href;
    const boot = bootUrl();
    const ready: Array<Promise<void>> = [];
    for (let i = 0; i < this.size; i++) {
      const init: WorkerInit = {
        entry,
        index: i,
        connectTimeoutMs: this.ctx.connectTimeoutMs,
        redispatchRetries: this.ctx.redispatchRetries,
      };
      const w = new Worker(boot, { workerData: init });
      this.workers.push(w);
      ready.push(
        new Promise<void>((resolve, reject) => {
          const timer = setTimeout(
            () => reject(new Error(`userspace worker ${i} did not start within ${START_TIMEOUT_MS} ms`)),
            START_TIMEOUT_MS,
          );
          // A failed start must not hold the process for the rest of the timeout.
          timer.unref();
          const onBatch = (batch: UpMsg[]) => {
            if (batch.some((m) => m[0] === 'ready')) {
              clearTimeout(timer);
              // Off the hot path: every later batch goes to onBatch(i) only.
              w.off('message', onBatch);
              resolve();
            }
          };
          w.on('message', onBatch);
          w.once('error', (e) => {
            clearTimeout(timer);
            reject(e);
          });
        }),
      );
      w.on('message', (batch: UpMsg[]) => this.onBatch(i, batch));
      w.on('error', (e) =>
        this.ctx.log('error', `userspace worker ${i} failed: ${(e as Error).message}`, { worker: i, error: (e as Error).message }),
      );
      w.on('exit', (code) => this.onExit(i, code));
    }
    try {
      await Promise.all(ready);
    } catch (e) {
      await this.stop();
      throw e;
    }
  }

  /**
   * Sends a message to a worker at once. Scheduling answers are not batched: the client
   * waits on them (measured: batching them per event-loop turn bought nothing here).
   */
  send(worker: number, m: DownMsg): void {
    this.workers[worker]?.postMessage([m]);
  }

  broadcast(m: DownMsg): void {
    for (let i = 0; i < this.workers.length; i++) this.send(i, m);
  }

  /**
   * Makes one SO_REUSEPORT socket per worker on the service's address and hands each to
   * its worker; resolves when all listen. A bind failure throws bindError's message.
   */
  async listen(k: ServiceKey, sid: string): Promise<WorkerTcpListener> {
    const fds: number[] = [];
    const live = this.workers.map((_, i) => i).filter((i) => !this.exited.has(i));
    if (!live.length) throw bindError(k, Object.assign(new Error('no userspace worker is running'), { code: 'ESRCH' }));
    try {
      for (let j = 0; j < live.length; j++) fds.push(reusePortSocket(k.addr, k.port));
    } catch (e) {
      for (const fd of fds) closeFd(fd);
      throw bindError(k, e);
    }
    const l = new WorkerTcpListener(this, sid);
    this.listeners.set(sid, l);
    const svc = { id: sid, label: sid, addr: k.addr, port: k.port };
    const results = await Promise.all(
      fds.map(
        (fd, j) =>
          new Promise<string | null>((resolve) => {
            const req = this.nextReq++;
            this.acks.set(req, resolve);
            this.send(live[j]!, { t: 'listen', req, sid, fd, svc });
          }),
      ),
    );
    const bad = results.find((r) => r !== null);
    if (bad) {
      l.close();
      throw bindError(k, Object.assign(new Error(bad), { code: bad }));
    }
    return l;
  }

  forget(l: WorkerTcpListener): void {
    if (this.listeners.get(l.sid) === l) this.listeners.delete(l.sid);
  }

  /** Connections of real server `dest` of service `sid` in the workers (through the table's per-server index). */
  connsOf(sid: string, dest: Dest): Conn[] {
    return this.ctx.table.conns.ofDest(dest).filter((c) => c.handle instanceof WorkerSessionRef && c.handle.sid === sid);
  }

  private onBatch(wi: number, batch: UpMsg[]): void {
    const table = this.ctx.table;
    for (const m of batch) {
      switch (m[0]) {
        case 'open': {
          const [, req, sid, caddr, cport] = m;
          this.accepted[wi]!++;
          const l = this.listeners.get(sid);
          // A client a worker accepted just before its listener closed (drain) is refused too.
          const svc = l?.accepting ? l.svc : null;
          const conn = svc && !this.stopping ? (this.ctx.open(svc, caddr, cport) as Conn | null) : null;
          if (conn === null) {
            this.send(wi, { t: 'sched', req, cid: 0, daddr: '', dport: 0 });
            break;
          }
          const cid = this.nextCid++;
          this.conns.set(cid, conn);
          conn.handle = new WorkerSessionRef(this, wi, cid, sid);
          this.ctx.sessionOpened();
          this.send(wi, { t: 'sched', req, cid, daddr: conn.daddr, dport: conn.dport });
          break;
        }
        case 'ev': {
          const c = this.conns.get(m[1]);
          if (c && !c.dead) table.tcpEvent(c, m[2], m[3]);
          break;
        }
        case 'cnt': {
          const c = this.conns.get(m[1]);
          if (!c || c.dead) break;
          if (m[2]) table.countIn(c, m[2], m[3]);
          if (m[4]) table.countOut(c, m[4], m[5]);
          break;
        }
        case 'drop': {
          const c = this.conns.get(m[1]);
          if (c && !c.dead) table.dropConn(c);
          break;
        }
        case 'fail': {
          const c = this.conns.get(m[1]);
          if (c) this.ctx.connectFailed(c.svc, c.dest, m[2]);
          break;
        }
        case 'redispatch': {
          const [, req, cid] = m;
          const c = this.conns.get(cid);
          const next = c && !this.stopping ? (this.ctx.redispatch(c) as Conn | null) : null;
          if (next === null) {
            this.send(wi, { t: 'sched', req, cid: 0, daddr: '', dport: 0 });
            break;
          }
          // The same cid now names the new entry: the worker's later reports apply to it.
          const sid = c!.handle instanceof WorkerSessionRef ? c!.handle.sid : this.sidOf(next);
          c!.handle = null;
          this.conns.set(cid, next);
          next.handle = new WorkerSessionRef(this, wi, cid, sid);
          this.send(wi, { t: 'sched', req, cid, daddr: next.daddr, dport: next.dport });
          break;
        }
        case 'closed':
          this.closed(m[1]);
          break;
        case 'listening': {
          const done = this.acks.get(m[1]);
          this.acks.delete(m[1]);
          done?.(m[2]);
          break;
        }
        case 'log':
          this.ctx.logLimited(m[1], m[2], m[3], { ...m[4], worker: wi });
          break;
        case 'ready':
          break;
      }
    }
  }

  private sidOf(c: Conn): string {
    for (const [sid, l] of this.listeners) if (l.svc === c.svc) return sid;
    return c.svc.id;
  }

  private closed(cid: number): void {
    const c = this.conns.get(cid);
    if (!c) return;
    this.conns.delete(cid);
    if (c.handle instanceof WorkerSessionRef) c.handle = null;
    this.ctx.sessionClosed(c);
  }

  private onExit(wi: number, code: number): void {
    this.exited.add(wi);
    if (!this.stopping)
      this.ctx.log('error', `userspace worker ${wi} exited (code ${code}); its connections are gone`, { worker: wi, code });
    for (const [cid, c] of [...this.conns]) {
      const h = c.handle;
      if (h instanceof WorkerSessionRef && h.worker === wi) {
        if (!c.dead) this.ctx.table.tcpEvent(c, 'input', 'rst');
        this.closed(cid);
      }
    }
    for (const [req, done] of [...this.acks]) {
      this.acks.delete(req);
      done(`worker ${wi} exited`);
    }
  }

  /** Ends the workers (after the plane has drained and closed the listeners). */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.workers.map((w) => w.terminate().catch(() => 0)));
    this.workers.length = 0;
  }
}

/** A TCP service carried by the workers: one SO_REUSEPORT socket in each. */
class WorkerTcpListener implements ServiceListener {
  svc: VirtualService | null = null;
  /** False once draining or closed: the main thread refuses the workers' late clients. */
  accepting = true;

  constructor(
    private readonly pool: WorkerPool,
    readonly sid: string,
  ) {}

  attach(svc: VirtualService): void {
    this.svc = svc;
    this.pool.broadcast({ t: 'attach', sid: this.sid, svc: wireService(svc) });
  }

  detach(): void {
    this.svc = null;
    this.pool.broadcast({ t: 'detach', sid: this.sid });
  }

  destDeleted(dest: Dest): void {
    // The entries go now, as in one thread; the workers reset the sockets.
    for (const c of this.pool.connsOf(this.sid, dest)) {
      const h = c.handle as WorkerSessionRef;
      this.pool.ctx.table.dropConn(c);
      h.kill('expired');
    }
  }

  stopAccepting(): void {
    this.accepting = false;
    this.pool.broadcast({ t: 'stop', sid: this.sid });
  }

  close(): void {
    this.svc = null;
    this.accepting = false;
    this.pool.broadcast({ t: 'close', sid: this.sid });
    this.pool.forget(this);
  }
}
