/**
 * Memory of closed connections in the core: N TCP connections scheduled, carried through
 * a clean close (TIME_WAIT, an InActConn for 120 s), and handed back by the data plane the
 * way the userspace plane does when both sockets are closed (`IpvsTable.connClosed`, when
 * the table has it). Prints heap bytes per closed connection.
 *
 *   node --expose-gc --import tsx bench/closed-conns.ts [N] [--full]
 *
 * --full skips the hand-back, so the closed entries stay whole Conn objects (as before
 * compaction existed), for comparison on the same code.
 */
import { IpvsTable } from '../src/core/table.js';
import { getScheduler } from '../src/schedulers/index.js';
import type { Conn } from '../src/core/conn.js';

const N = Number(process.argv.find((a) => /^\d+$/.test(a)) ?? 100_000);
const full = process.argv.includes('--full');
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');

/** JS heap plus ArrayBuffer backing stores (typed arrays live outside the heap). */
function heap(): number {
  gc!();
  gc!();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

const clock = { t: 1_000_000 };
const table = new IpvsTable({ schedulers: getScheduler, now: () => clock.t });
const svc = {
  af: 4 as const,
  protocol: 'tcp' as const,
  addr: '198.18.0.1',
  port: 80,
  fwmark: 0,
  scheduler: 'wlc',
  schedFlags: 0,
  persistent: 0,
  netmask: 0xffffffff,
  ops: false,
  pe: '',
};
table.applyAll([
  { op: 'add-service', service: svc },
  ...[11, 12, 13, 14].map((i) => ({
    op: 'add-server' as const,
    service: svc,
    dest: { af: 4 as const, addr: `198.19.0.${i}`, port: 80, weight: 1, fwd: 'masq' as const, uThreshold: 0, lThreshold: 0 },
  })),
]);
const vs = table.list()[0]!;
const closed = full ? undefined : (table as unknown as { connClosed?: (c: Conn) => void }).connClosed?.bind(table);

const before = heap();
for (let i = 0; i < N; i++) {
  // A fresh string per connection, as socket.remoteAddress gives.
  const caddr = `198.18.${(i >> 16) & 255}.${(i >> 8) & 255}`.concat('');
  const c = table.schedule(vs, { protocol: 'tcp', caddr, cport: 1024 + ((i & 0xffff) % 60000), vaddr: svc.addr, vport: 80 })!;
  table.tcpEvent(c, 'input', 'syn');
  table.tcpEvent(c, 'input', 'ack');
  table.tcpEvent(c, 'input', 'fin');
  table.tcpEvent(c, 'output', 'fin');
  table.tcpEvent(c, 'input', 'ack');
  if (closed) closed(c);
}
const after = heap();
const inact = vs.dests.reduce((n, d) => n + d.inactconns, 0);
const listed = table.connView().filter((v) => v.state === 'TIME_WAIT').length;
console.log(
  JSON.stringify({
    n: N,
    compact: !!closed,
    inactconns: inact,
    listedTimeWait: listed,
    heapBytes: after - before,
    bytesPerClosedConn: Math.round((after - before) / N),
  }),
);
