/**
 * The connection table's indexes (by tuple, by real server, by service) and closed entries
 * kept compactly (IpvsTable.connClosed): what they return always equals a walk over every
 * entry, and a compacted entry behaves like the Conn it replaced (counts, listing, expiry,
 * OVERLOAD clearing, its template) except that it expires silently.
 */
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { tupleHash, type Conn } from '../../src/core/conn.js';
import type { Dest, VirtualService } from '../../src/core/service.js';
import type { IpvsTable } from '../../src/core/table.js';
import type { ConnView } from '../../src/core/types.js';
import { seededRandom } from '../schedulers/fake.js';
import { dest, fakeTable, svc } from './fixtures.js';

/** Drives a scheduled TCP connection through a clean close: TIME_WAIT. */
function closeCleanly(table: IpvsTable, c: Conn): void {
  table.tcpEvent(c, 'input', 'syn');
  table.tcpEvent(c, 'input', 'ack');
  table.tcpEvent(c, 'input', 'fin');
  table.tcpEvent(c, 'output', 'fin');
  table.tcpEvent(c, 'input', 'ack');
}

const sortViews = (v: ConnView[]) => v.map((x) => JSON.stringify(x)).sort();

describe('closed connections, compact', () => {
  test('a closed entry still counts, is listed, and expires with its TIME_WAIT timer, silently', () => {
    const { table, clock } = fakeTable();
    const s = svc('10.0.0.1', 80, { scheduler: 'rr' });
    table.applyAll([
      { op: 'add-service', service: s },
      { op: 'add-server', service: s, dest: dest('10.1.0.1', 8080) },
    ]);
    const vs = table.get(s)!;
    const c = table.schedule(vs, { caddr: '198.18.0.7', cport: 40001, vaddr: '10.0.0.1', vport: 80 })!;
    closeCleanly(table, c);
    clock.t += 400; // the listing rounds down: 119 s left
    const listed = table.connView();
    const expired: Conn[] = [];
    const closing: string[] = [];
    table.subscribe({ connExpired: (x) => expired.push(x), connClosing: (x) => closing.push(`${x.stateName} dead=${x.dead}`) });
    assert.equal(table.connClosed(c), true);
    assert.deepEqual(closing, ['TIME_WAIT dead=false'], 'connClosing sees the Conn before it goes');
    assert.equal(c.dead, true);
    assert.equal(table.conns.closedSize, 1);
    assert.equal(table.conns.size, 1);
    assert.deepEqual(table.conns.find('tcp', '198.18.0.7', 40001, '10.0.0.1', 80), undefined, 'a closed entry is not found by tuple');
    assert.deepEqual([...table.conns.all()], []);
    // The same listing as the Conn gave.
    assert.deepEqual(table.connView(), listed);
    assert.deepEqual(table.connView()[0], {
      protocol: 'TCP',
      af: 4,
      caddr: '198.18.0.7',
      cport: 40001,
      vaddr: '10.0.0.1',
      vport: 80,
      daddr: '10.1.0.1',
      dport: 8080,
      state: 'TIME_WAIT',
      expires: 119,
      template: false,
      peName: '',
      peData: '',
    });
    assert.deepEqual(table.connViewOf(vs), listed);
    assert.deepEqual(table.connViewOf(vs, vs.dests[0]), listed);
    const d = vs.dests[0]!;
    assert.deepEqual([d.activeconns, d.inactconns], [0, 1]);
    // A second compaction or a drop of the dead Conn changes nothing.
    assert.equal(table.connClosed(c), false);
    assert.equal(closing.length, 1);
    table.dropConn(c);
    assert.equal(d.inactconns, 1);
    clock.t += 119_000;
    table.tick();
    assert.equal(table.conns.size, 1, 'not yet: 120 s from the last packet');
    clock.t += 600;
    table.tick();
    assert.equal(table.conns.size, 0);
    assert.equal(d.inactconns, 0);
    assert.deepEqual(table.connView(), []);
    assert.deepEqual(expired, [], 'nothing to close: no connExpired');
  });

  test('active, UDP, template and synced entries are not compacted', () => {
    const { table } = fakeTable();
    const t = svc('10.0.0.1', 80, { persistent: 60 });
    const u = svc('10.0.0.1', 53, { protocol: 'udp' });
    table.applyAll([
      { op: 'add-service', service: t },
      { op: 'add-server', service: t, dest: dest('10.1.0.1', 80) },
      { op: 'add-service', service: u },
      { op: 'add-server', service: u, dest: dest('10.1.0.1', 53) },
    ]);
    const c = table.schedule(table.get(t)!, { caddr: '198.18.0.7', cport: 40001, vaddr: '10.0.0.1', vport: 80 })!;
    table.tcpEvent(c, 'input', 'syn');
    assert.equal(table.connClosed(c), false, 'SYN_RECV is active');
    const tpl = c.control!;
    assert.equal(table.connClosed(tpl), false, 'template');
    const udp = table.schedule(table.get(u)!, { protocol: 'udp', caddr: '198.18.0.7', cport: 5000, vaddr: '10.0.0.1', vport: 53 })!;
    assert.equal(table.connClosed(udp), false, 'UDP');
    const synced = table.importSynced({
      protocol: 'tcp',
      af: 4,
      caddr: '198.18.0.9',
      cport: 1,
      vaddr: '10.0.0.1',
      vport: 80,
      daddr: '10.1.0.1',
      dport: 80,
      fwmark: 0,
      template: false,
      state: 5,
      timeout: 0,
    });
    assert.equal(table.connClosed(synced as Conn), false, 'synced');
    assert.equal(table.conns.closedSize, 0);
  });

  test('a closed entry keeps its persistence template alive until it expires', () => {
    const { table, clock } = fakeTable();
    const s = svc('10.0.0.1', 80, { persistent: 5 });
    table.applyAll([
      { op: 'add-service', service: s },
      { op: 'add-server', service: s, dest: dest('10.1.0.1', 80) },
    ]);
    const c = table.schedule(table.get(s)!, { caddr: '198.18.0.7', cport: 40001, vaddr: '10.0.0.1', vport: 80 })!;
    const tpl = c.control!;
    closeCleanly(table, c);
    table.connClosed(c);
    assert.equal(tpl.nControl, 1);
    clock.t += 60_000;
    table.tick();
    assert.equal(tpl.dead, false, 'the template outlives its timeout while it controls a connection');
    clock.t += 61_000;
    table.tick();
    assert.equal(tpl.nControl, 0);
    clock.t += 61_000;
    table.tick();
    assert.equal(tpl.dead, true);
    assert.equal(table.conns.size, 0);
  });

  test('expiry clears OVERLOAD by the kernel rule (below 3/4 of -x)', () => {
    const { table, clock } = fakeTable();
    const s = svc('10.0.0.1', 80, { scheduler: 'rr' });
    table.applyAll([
      { op: 'add-service', service: s },
      { op: 'add-server', service: s, dest: dest('10.1.0.1', 80, { uThreshold: 4 }) },
    ]);
    const vs = table.get(s)!;
    const conns: Conn[] = [];
    for (let i = 0; i < 4; i++) conns.push(table.schedule(vs, { caddr: '198.18.0.7', cport: 40000 + i, vaddr: '10.0.0.1', vport: 80 })!);
    const d = vs.dests[0]!;
    assert.equal(d.overloaded, true);
    // One closes now, three a minute later; all compacted.
    closeCleanly(table, conns[0]!);
    clock.t += 60_000;
    for (const c of conns.slice(1)) closeCleanly(table, c);
    for (const c of conns) assert.equal(table.connClosed(c), true);
    clock.t += 61_000;
    table.tick();
    assert.equal(d.inactconns, 3);
    assert.equal(d.overloaded, true, '3 left: 3 * 4 is not below 4 * 3');
    clock.t += 60_000;
    table.tick();
    assert.equal(d.inactconns, 0);
    assert.equal(d.overloaded, false);
  });

  test('closed entries leave in expiry order, not in the order they came', () => {
    const { table, clock } = fakeTable();
    const s = svc('10.0.0.1', 80, { scheduler: 'rr' });
    table.applyAll([
      { op: 'add-service', service: s },
      { op: 'add-server', service: s, dest: dest('10.1.0.1', 80) },
    ]);
    const vs = table.get(s)!;
    const open = (i: number) => table.schedule(vs, { caddr: `198.18.0.${i}`, cport: 1000, vaddr: '10.0.0.1', vport: 80 })!;
    // 1 and 3 close cleanly (TIME_WAIT, 120 s), 2 and 4 are reset (CLOSE, 10 s), in between.
    for (const i of [1, 2, 3, 4]) {
      const c = open(i);
      if (i % 2) closeCleanly(table, c);
      else table.tcpEvent(c, 'input', 'rst');
      assert.equal(table.connClosed(c), true);
      clock.t += 1000;
    }
    const clients = () =>
      table
        .connViewOf(vs)
        .map((v) => `${v.caddr} ${v.state}`)
        .sort();
    assert.deepEqual(clients(), ['198.18.0.1 TIME_WAIT', '198.18.0.2 CLOSE', '198.18.0.3 TIME_WAIT', '198.18.0.4 CLOSE']);
    clock.t += 10_000;
    table.tick();
    assert.deepEqual(clients(), ['198.18.0.1 TIME_WAIT', '198.18.0.3 TIME_WAIT']);
    assert.equal(vs.dests[0]!.inactconns, 2);
    // Rows are reused: two more, then all of them go.
    for (const i of [5, 6]) {
      const c = open(i);
      closeCleanly(table, c);
      table.connClosed(c);
    }
    assert.deepEqual(clients(), ['198.18.0.1 TIME_WAIT', '198.18.0.3 TIME_WAIT', '198.18.0.5 TIME_WAIT', '198.18.0.6 TIME_WAIT']);
    clock.t += 121_000;
    table.tick();
    assert.deepEqual(clients(), []);
    assert.equal(vs.dests[0]!.inactconns, 0);
  });

  test('a clock jump sweeps closed entries too', () => {
    const { table, clock } = fakeTable();
    const s = svc('2001:db8::1', 80, { scheduler: 'rr' });
    table.applyAll([
      { op: 'add-service', service: s },
      { op: 'add-server', service: s, dest: dest('2001:db8::10', 80) },
    ]);
    const c = table.schedule(table.get(s)!, { caddr: '2001:2::7', cport: 40001, vaddr: '2001:db8::1', vport: 80 })!;
    closeCleanly(table, c);
    table.connClosed(c);
    assert.equal(table.connView()[0]!.caddr, '2001:2::7', 'an IPv6 client address is kept as text');
    clock.t += 10 * 3600_000;
    table.tick();
    assert.equal(table.conns.size, 0);
    assert.equal(table.get(s)!.dests[0]!.inactconns, 0);
  });
});

describe('connection indexes', () => {
  test('by tuple, server and service: the same as a walk over every entry, under random churn', () => {
    const rand = seededRandom(7);
    const int = (n: number) => rand() % n;
    const { table, clock } = fakeTable();
    const services: VirtualService[] = [];
    for (let i = 1; i <= 3; i++) {
      const s = svc(`10.0.0.${i}`, 80, { scheduler: 'rr', persistent: i === 3 ? 30 : 0 });
      table.applyAll([
        { op: 'add-service', service: s },
        ...[1, 2, 3].map((j) => ({ op: 'add-server' as const, service: s, dest: dest(`10.1.${i}.${j}`, 80) })),
      ]);
      services.push(table.get(s)!);
    }
    const live: Conn[] = [];
    let compacted = 0;
    let seenClosed = 0;
    // Every server object ever, removed ones included (their entries stay until they expire).
    const everDests = new Set<Dest>(services.flatMap((s) => s.dests));
    // Every entry ever listed, with the object it came from, to check listings against.
    for (let step = 0; step < 3000; step++) {
      const k = int(10);
      if (k < 5) {
        const s = services[int(3)]!;
        // Small client space: tuples get reused while the old entry lingers.
        const c = table.schedule(s, { caddr: `198.18.0.${int(20)}`, cport: 1000 + int(20), vaddr: s.addr, vport: 80 });
        if (c) {
          table.tcpEvent(c, 'input', 'syn');
          live.push(c);
        }
      } else if (k < 7 && live.length) {
        const c = live.splice(int(live.length), 1)[0]!;
        closeCleanly(table, c);
        if (int(2) && table.connClosed(c)) compacted++;
      } else if (k < 8 && live.length) {
        table.dropConn(live.splice(int(live.length), 1)[0]!);
      } else if (k < 9) {
        clock.t += int(20_000);
        table.tick();
      } else {
        // A server removed and added back: a new object with the same address.
        const s = services[int(3)]!;
        const d = s.dests[int(s.dests.length)]!;
        table.applyAll([
          { op: 'delete-server', service: s.key(), dest: d },
          { op: 'add-server', service: s.key(), dest: d.config() },
        ]);
        for (const x of s.dests) everDests.add(x);
      }
      if (step % 100 !== 99) continue;
      const all = [...table.conns.all()];
      const dests = everDests;
      for (const d of dests)
        assert.deepEqual(new Set(table.conns.ofDest(d)), new Set(all.filter((c) => c.dest === d)), `step ${step}: ofDest ${d.id}`);
      for (const s of services) {
        assert.deepEqual(new Set(table.conns.ofService(s)), new Set(all.filter((c) => c.svc === s)), `step ${step}: ofService ${s.id}`);
        assert.deepEqual(
          new Set(table.conns.templatesOf(s)),
          new Set(all.filter((c) => c.svc === s && c.isTemplate)),
          `step ${step}: templatesOf ${s.id}`,
        );
      }
      // Listings per service and per server partition the whole listing.
      const whole = table.connView();
      const parts = services.flatMap((s) => table.connViewOf(s));
      assert.deepEqual(sortViews(parts), sortViews(whole), `step ${step}: connViewOf partitions connView`);
      for (const s of services) {
        const perDest = [...dests].filter((d) => d.svc === s).flatMap((d) => table.connViewOf(s, d));
        assert.deepEqual(sortViews(perDest), sortViews(table.connViewOf(s)), `step ${step}: per-server listings of ${s.id}`);
      }
      // find: the newest live entry of each tuple.
      for (const c of all) {
        if (c.isTemplate) continue;
        const newest = all
          .filter(
            (x) =>
              !x.isTemplate &&
              x.protocol === c.protocol &&
              x.caddr === c.caddr &&
              x.cport === c.cport &&
              x.vaddr === c.vaddr &&
              x.vport === c.vport,
          )
          .sort((a, b) => b.id - a.id)[0];
        assert.equal(table.conns.find(c.protocol, c.caddr, c.cport, c.vaddr, c.vport), newest, `step ${step}: find`);
      }
      assert.equal(table.conns.size, whole.length);
      seenClosed = Math.max(seenClosed, table.conns.closedSize);
    }
    assert.ok(compacted > 30 && seenClosed > 3, `the run compacted entries (${compacted}, at most ${seenClosed} at a check)`);
  });

  test('tuples whose hashes collide are told apart', () => {
    // Find two different tuples with the same hash (birthday bound: a few tens of thousands).
    const seen = new Map<number, number>();
    let pair: [number, number] | null = null;
    for (let i = 0; i < 400_000 && !pair; i++) {
      const h = tupleHash('tcp', `198.18.${i >> 8}.${i & 255}`, 1000, '10.0.0.1', 80);
      const j = seen.get(h);
      if (j !== undefined) pair = [j, i];
      else seen.set(h, i);
    }
    assert.ok(pair, 'a colliding pair');
    const addr = (i: number) => `198.18.${i >> 8}.${i & 255}`;
    const { table } = fakeTable();
    const s = svc('10.0.0.1', 80, { scheduler: 'rr' });
    table.applyAll([
      { op: 'add-service', service: s },
      { op: 'add-server', service: s, dest: dest('10.1.0.1', 80) },
    ]);
    const mk = (i: number) => table.schedule(table.get(s)!, { caddr: addr(i), cport: 1000, vaddr: '10.0.0.1', vport: 80 })!;
    for (const order of [
      [0, 1, 2],
      [1, 0, 2],
      [2, 1, 0],
    ]) {
      // a and b collide; c is a's tuple again (reused): the newest wins, then a is found again.
      const a = mk(pair[0]);
      const b = mk(pair[1]);
      const c = mk(pair[0]);
      const find = (i: number) => table.conns.find('tcp', addr(i), 1000, '10.0.0.1', 80);
      assert.equal(find(pair[0]), c);
      assert.equal(find(pair[1]), b);
      const conns = [a, b, c];
      for (const k of order) {
        table.dropConn(conns[k]!);
        const alive = (x: Conn) => !x.dead;
        assert.equal(find(pair[1]), alive(b) ? b : undefined, `order ${order}: b`);
        assert.equal(find(pair[0]), alive(c) ? c : alive(a) ? a : undefined, `order ${order}: a's tuple`);
      }
    }
  });

  test('synced entries are listed without a walk, and adoption takes them out', () => {
    const { table } = fakeTable();
    const s = svc('10.0.0.1', 80, { persistent: 60 });
    table.applyAll([
      { op: 'add-service', service: s },
      { op: 'add-server', service: s, dest: dest('10.1.0.1', 80) },
    ]);
    for (let i = 0; i < 5; i++) table.schedule(table.get(s)!, { caddr: `198.18.0.${i}`, cport: 1, vaddr: '10.0.0.1', vport: 80 });
    const e = {
      protocol: 'tcp' as const,
      af: 4 as const,
      vaddr: '10.0.0.1',
      vport: 80,
      daddr: '10.1.0.1',
      dport: 80,
      fwmark: 0,
      timeout: 0,
    };
    const a = table.importSynced({ ...e, caddr: '198.18.1.1', cport: 7, template: false, state: 1 }) as Conn;
    const t = table.importSynced({ ...e, caddr: '198.18.1.2', cport: 0, template: true, state: 1 }) as Conn;
    assert.deepEqual(new Set(table.syncedEntries()), new Set([a, t]));
    assert.equal(table.dropSyncedConns(), 1);
    assert.deepEqual(table.syncedEntries(), [t]);
    t.flags = 0; // adopted as master (sync/manager.ts clears the flag)
    assert.deepEqual(table.syncedEntries(), []);
  });
});
