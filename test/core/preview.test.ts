/**
 * IpvsTable.preview: for random batches over random tables, the preview of every service
 * a batch touches equals the table's service after applyAll (configuration, servers in
 * list order with their runtime state, and the scheduler's next picks), preview changes
 * nothing and emits nothing, and its copies share nothing with the table.
 *
 * Invariant: preview(B) on T, then applyAll(B) on T: for each id in preview.services,
 * copy === null <=> T has no service id; otherwise state(copy) == state(T's service) and
 * picks(copy) == picks(T's service) for the same inputs. Services not listed are the same
 * objects with the same state as before, unless the batch flushed (then they are gone).
 */
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { TsvsError } from '../../src/core/errors.js';
import { serviceId as idOf, type Dest, type VirtualService } from '../../src/core/service.js';
import type { IpvsTable, BatchPreview } from '../../src/core/table.js';
import { newTable } from '../table.js';
import type { DestConfig, Op, ServiceConfig, ServiceKey } from '../../src/core/types.js';
import { schedulerNames } from '../../src/schedulers/index.js';
import { wrrSnapshot } from '../../src/schedulers/wrr.js';
import { seededRandom } from '../schedulers/fake.js';
import { dest, svc } from './fixtures.js';

const SCHEDULERS = schedulerNames();

/** A small random-choice toolkit over one seeded stream. */
function rng(seed: number) {
  const next = seededRandom(seed);
  const int = (n: number) => next() % n;
  return { int, pick: <T>(xs: readonly T[]): T => xs[int(xs.length)]!, chance: (p: number) => next() / 2 ** 32 < p };
}
type Rng = ReturnType<typeof rng>;

/**
 * A table whose twos randomness can be replayed: `replay()` restarts the stream, so a
 * copy and the live service draw the same numbers.
 */
function replayableTable(clock: { t: number }) {
  let stream = seededRandom(99);
  const table = newTable({ now: () => clock.t, randomU32: () => stream() });
  return { table, replay: () => (stream = seededRandom(99)) };
}

function randomService(r: Rng, i: number): ServiceConfig {
  const persistent = r.chance(0.3) ? 300 : 0;
  return svc(`10.0.${r.int(4)}.${i}`, r.pick([80, 443]), {
    scheduler: r.pick(SCHEDULERS),
    schedFlags: r.int(4),
    persistent,
    protocol: r.pick(['tcp', 'udp'] as const),
  });
}

function randomDest(r: Rng, n: number): DestConfig {
  const u = r.chance(0.3) ? 1 + r.int(4) : 0;
  return dest(`192.168.${r.int(3)}.${n}`, r.pick([80, 8080]), {
    weight: r.pick([0, 1, 1, 2, 3, 4, 6, 100]),
    uThreshold: u,
    lThreshold: u ? r.int(u + 1) : 0,
  });
}

/** Traffic that moves scheduler positions, fills caches, and sets counts and OVERLOAD. */
function traffic(r: Rng, table: IpvsTable, clock: { t: number }, n: number): void {
  const svcs = table.list();
  if (!svcs.length) return;
  for (let i = 0; i < n; i++) {
    const s = r.pick(svcs);
    clock.t += r.int(50);
    const c = table.schedule(s, {
      caddr: `198.18.${r.int(4)}.${r.int(16)}`,
      cport: 1024 + r.int(1000),
      vaddr: r.chance(0.5) ? s.addr : `10.9.0.${r.int(8)}`,
      vport: s.port || 80,
    });
    if (c && s.protocol === 'tcp' && r.chance(0.6)) table.tcpEvent(c, 'input', 'syn');
    if (c && r.chance(0.2)) table.dropConn(c);
  }
}

function keyOf(s: VirtualService): ServiceKey {
  return s.key();
}

/** A batch of ops that validate() accepts against `table`, built one op at a time. */
function randomBatch(r: Rng, table: IpvsTable, len: number, serial: { n: number }): Op[] {
  const batch: Op[] = [];
  // The batch's own view of which services and servers exist, so later ops refer to earlier ones.
  const svcs = new Map<string, { key: ServiceKey; cfg: ServiceConfig; dests: DestConfig[] }>();
  const gone: ServiceConfig[] = [];
  for (const s of table.list()) svcs.set(s.id, { key: keyOf(s), cfg: s.config(), dests: s.dests.map((d) => d.config()) });
  for (let tries = 0; batch.length < len && tries < len * 20; tries++) {
    const all = [...svcs.values()];
    const one = all.length ? r.pick(all) : null;
    let op: Op;
    const k = r.int(100);
    if (k < 12 || !one) {
      // Sometimes a service the batch (or the table) deleted comes back, with another scheduler.
      const back = gone.length && r.chance(0.5) ? gone[r.int(gone.length)]! : null;
      op = { op: 'add-service', service: back ? { ...back, scheduler: r.pick(SCHEDULERS) } : randomService(r, 100 + serial.n++) };
    } else if (k < 24) {
      const cfg = {
        ...one.cfg,
        scheduler: r.chance(0.5) ? r.pick(SCHEDULERS) : one.cfg.scheduler,
        schedFlags: r.chance(0.3) ? r.int(4) : one.cfg.schedFlags,
      };
      if (r.chance(0.3)) cfg.persistent = cfg.persistent ? 0 : 120;
      if (cfg.port === 0) cfg.persistent = cfg.persistent || 60;
      op = { op: 'edit-service', service: cfg };
    } else if (k < 30) {
      op = { op: 'delete-service', service: one.key };
    } else if (k < 55) {
      op = { op: 'add-server', service: one.key, dest: randomDest(r, 10 + (serial.n++ % 200)) };
    } else if (k < 80 && one.dests.length) {
      const d = r.pick(one.dests);
      const u = r.chance(0.4) ? r.int(5) : d.uThreshold;
      op = {
        op: 'edit-server',
        service: one.key,
        dest: { ...d, weight: r.pick([0, 1, 2, 3, 5, d.weight]), uThreshold: u, lThreshold: Math.min(u, r.int(3)) },
      };
    } else if (k < 92 && one.dests.length) {
      const d = r.pick(one.dests);
      op = { op: 'delete-server', service: one.key, dest: { af: d.af, addr: d.addr, port: d.port } };
    } else if (k < 95) {
      op = r.chance(0.5) ? { op: 'zero', service: one.key } : { op: 'zero' };
    } else if (k < 98) {
      op = { op: 'set-timeouts', timeouts: { tcp: r.pick([0, 900, 60]), tcpfin: r.pick([0, 30]), udp: r.pick([0, 10]) } };
    } else {
      op = { op: 'flush' };
    }
    let checked: Op[];
    try {
      checked = table.validate([...batch, op]);
    } catch {
      continue;
    }
    batch.push(op);
    const c = checked[checked.length - 1]!;
    // Follow the batch in the shadow.
    if (c.op === 'add-service') svcs.set(idOf(c.service), { key: c.service, cfg: c.service, dests: [] });
    else if (c.op === 'edit-service') svcs.get(idOf(c.service))!.cfg = c.service;
    else if (c.op === 'delete-service') {
      gone.push(svcs.get(idOf(c.service))!.cfg);
      svcs.delete(idOf(c.service));
    } else if (c.op === 'flush') {
      for (const x of svcs.values()) gone.push(x.cfg);
      svcs.clear();
    } else if (c.op === 'add-server') svcs.get(idOf(c.service))!.dests.push(c.dest);
    else if (c.op === 'edit-server') {
      const ds = svcs.get(idOf(c.service))!.dests;
      ds[ds.findIndex((x) => x.addr === c.dest.addr && x.port === c.dest.port)] = c.dest;
    } else if (c.op === 'delete-server') {
      const ds = svcs.get(idOf(c.service))!.dests;
      ds.splice(
        ds.findIndex((x) => x.addr === c.dest.addr && x.port === c.dest.port),
        1,
      );
    }
  }
  return batch;
}

/** Everything about a server that apply changes or a scheduler reads. */
function destState(d: Dest) {
  return {
    ...d.config(),
    id: d.id,
    lastWeight: d.lastWeight,
    overloaded: d.overloaded,
    available: d.available,
    activeconns: d.activeconns,
    inactconns: d.inactconns,
    persistconns: d.persistconns,
  };
}

function svcState(s: VirtualService) {
  return {
    id: s.id,
    config: s.config(),
    proxyProtocol: s.proxyProtocol,
    transparent: s.transparent,
    dests: s.dests.map(destState),
    wrr: wrrSnapshot(s.sched),
  };
}

/** The next picks of a service for fixed inputs (the copy and the live one see the same). */
function picks(s: VirtualService, now: number, replay: () => void): string[] {
  replay();
  const out: string[] = [];
  for (let i = 0; i < 24; i++) {
    const d = s.sched.schedule({
      caddr: `198.18.${i % 3}.${i}`,
      cport: 2000 + i,
      vaddr: i % 2 ? s.addr : `10.9.0.${i % 5}`,
      vport: s.port,
      now: now + i,
    });
    out.push(d ? d.id : '-');
  }
  return out;
}

function liveById(table: IpvsTable): Map<string, VirtualService> {
  return new Map(table.list().map((s) => [s.id, s]));
}

/** Checks that nothing in the copy is an object of the table. */
function assertDetached(copy: VirtualService, table: IpvsTable): void {
  const liveSvcs = new Set(table.list());
  const liveDests = new Set(table.list().flatMap((s) => s.dests));
  assert.ok(!liveSvcs.has(copy), `${copy.id}: the copy is the live service`);
  assert.ok(
    copy.dests.every((d) => !liveDests.has(d) && d.svc === copy),
    `${copy.id}: a server of the copy is live or not bound to the copy`,
  );
  assert.ok(!table.list().some((s) => s.stats === copy.stats), `${copy.id}: counters shared`);
}

function runCase(seed: number): void {
  const r = rng(seed);
  const clock = { t: 5_000_000 };
  const { table, replay } = replayableTable(clock);
  const serial = { n: 0 };
  // A random table, with traffic.
  const setup = randomBatch(r, table, 5 + r.int(20), serial);
  table.applyAll(setup);
  traffic(r, table, clock, r.int(80));
  const batch = table.validate(randomBatch(r, table, 1 + r.int(12), serial));
  const before = liveById(table);
  const configBefore = JSON.stringify(table.config());
  const untouchedBefore = new Map([...before].map(([id, s]) => [id, JSON.stringify(svcState(s))]));
  let events = 0;
  const unsub = table.subscribe({ change: () => events++, commit: () => events++ });
  const p1 = table.preview(batch);
  const p2 = table.preview(batch);
  unsub();
  assert.equal(events, 0, `seed ${seed}: preview emitted events`);
  assert.equal(JSON.stringify(table.config()), configBefore, `seed ${seed}: preview changed the table`);
  for (const p of [p1, p2]) {
    for (const copy of p.services.values()) if (copy) assertDetached(copy, table);
  }
  // Expected from the batch alone: flush, and which services it names.
  assert.equal(
    p1.flushed,
    batch.some((o) => o.op === 'flush'),
    `seed ${seed}: flushed`,
  );
  if (batch.some((o) => o.op === 'set-timeouts')) assert.ok(p1.timeouts, `seed ${seed}: timeouts missing`);

  const listAfter = table.listAfter(p1);
  table.applyAll(batch);
  const after = liveById(table);
  // listAfter: the table's order after the batch, untouched services as themselves, the rest as the copies.
  assert.deepEqual(
    listAfter.map((s) => s.id),
    table.list().map((s) => s.id),
    `seed ${seed}: listAfter order`,
  );
  for (const s of listAfter)
    assert.ok(p1.services.get(s.id) === s || (!p1.services.has(s.id) && after.get(s.id) === s), `seed ${seed}: listAfter ${s.id} object`);
  const now = clock.t + 1000;
  for (const p of [p1, p2] as BatchPreview[]) {
    for (const [id, copy] of p.services) {
      const live = after.get(id);
      if (copy === null) {
        assert.equal(live, undefined, `seed ${seed}: ${id} previewed as deleted but exists`);
        continue;
      }
      assert.ok(live, `seed ${seed}: ${id} previewed but absent after apply`);
      assert.deepEqual(svcState(copy), svcState(live), `seed ${seed}: ${id} state`);
    }
    if (p.timeouts) assert.deepEqual(p.timeouts, table.timeouts(), `seed ${seed}: timeouts`);
    for (const [id, live] of after) {
      if (p.services.has(id)) continue;
      assert.ok(!p.flushed, `seed ${seed}: ${id} exists after a flush but is not in the preview`);
      assert.equal(before.get(id), live, `seed ${seed}: ${id} not previewed but replaced`);
      assert.equal(JSON.stringify(svcState(live)), untouchedBefore.get(id), `seed ${seed}: ${id} not previewed but changed`);
    }
    if (!p.flushed)
      for (const id of before.keys())
        assert.ok(after.has(id) || p.services.get(id) === null, `seed ${seed}: ${id} vanished without a null in the preview`);
  }
  // Picks last: scheduling moves the state of both sides (each preview against a fresh apply would be costlier).
  const p2Before = new Map([...p2.services].map(([id, c]) => [id, c && JSON.stringify(svcState(c))]));
  for (const [id, copy] of p1.services) {
    if (!copy) continue;
    const live = after.get(id)!;
    assert.deepEqual(picks(copy, now, replay), picks(live, now, replay), `seed ${seed}: ${id} (${live.scheduler}) next picks`);
  }
  // The second preview's copies were not disturbed by picks on the first's.
  for (const [id, copy] of p2.services)
    if (copy) assert.equal(JSON.stringify(svcState(copy)), p2Before.get(id), `seed ${seed}: ${id} copies share state`);
}

describe('IpvsTable.preview', () => {
  test('random batches over random tables: preview equals the applied table', () => {
    for (let seed = 1; seed <= 400; seed++) runCase(seed);
  });

  test('wrr: the previewed position is the one the live scheduler reaches', () => {
    const clock = { t: 1000 };
    const table = newTable({ now: () => clock.t });
    const s = svc('10.0.0.1', 80, { scheduler: 'wrr' });
    table.applyAll([
      { op: 'add-service', service: s },
      ...[1, 2, 3].map((i) => ({ op: 'add-server' as const, service: s, dest: dest(`192.168.0.${i}`, 80, { weight: i * 2 }) })),
    ]);
    const live = table.get(s)!;
    for (let i = 0; i < 4; i++) live.sched.schedule({ caddr: '198.18.0.1', cport: 1, vaddr: s.addr, vport: 80, now: clock.t });
    const batch = table.validate([{ op: 'edit-server', service: s, dest: dest('192.168.0.2', 80, { weight: 3 }) }]);
    const p = table.preview(batch);
    const copy = p.services.get(live.id)!;
    // The live scheduler has not moved: its position is still the one before the batch.
    assert.notDeepEqual(wrrSnapshot(live.sched), wrrSnapshot(copy.sched));
    table.applyAll(batch);
    assert.deepEqual(wrrSnapshot(copy.sched), wrrSnapshot(live.sched));
  });

  test('OVERLOAD and lastWeight follow the batch, earlier ops included', () => {
    const clock = { t: 1000 };
    const table = newTable({ now: () => clock.t });
    const s = svc('10.0.0.1', 80, { scheduler: 'rr' });
    table.applyAll([
      { op: 'add-service', service: s },
      { op: 'add-server', service: s, dest: dest('192.168.0.1', 80, { weight: 5, uThreshold: 1 }) },
    ]);
    table.schedule(table.get(s)!, { caddr: '198.18.0.1', cport: 1, vaddr: s.addr, vport: 80 });
    assert.equal(table.get(s)!.dests[0]!.overloaded, true);
    // Lowered then raised within the batch: the raise is measured against the lowered value.
    const batch = table.validate([
      { op: 'edit-server', service: s, dest: dest('192.168.0.1', 80, { weight: 0, uThreshold: 1 }) },
      { op: 'edit-server', service: s, dest: dest('192.168.0.1', 80, { weight: 0, uThreshold: 2 }) },
    ]);
    const d = table.preview(batch).services.get(table.get(s)!.id)!.dests[0]!;
    assert.equal(d.overloaded, false);
    assert.equal(d.weight, 0);
    assert.equal(d.lastWeight, 5);
    assert.equal(table.get(s)!.dests[0]!.overloaded, true, 'the table is unchanged');
  });

  test('delete, flush and re-add', () => {
    const table = newTable();
    const a = svc('10.0.0.1', 80);
    const b = svc('10.0.0.2', 80);
    table.applyAll([
      { op: 'add-service', service: a },
      { op: 'add-service', service: b },
    ]);
    const ida = table.get(a)!.id;
    let p = table.preview(table.validate([{ op: 'delete-service', service: a }]));
    assert.deepEqual([...p.services], [[ida, null]]);
    assert.equal(p.flushed, false);
    p = table.preview(table.validate([{ op: 'flush' }, { op: 'add-service', service: { ...a, scheduler: 'rr' } }]));
    assert.equal(p.flushed, true);
    assert.deepEqual([...p.services.keys()], [ida]);
    assert.equal(p.services.get(ida)!.scheduler, 'rr');
    assert.equal(p.services.get(ida)!.dests.length, 0);
    // A batch that names a service the table lacks was not validated against it.
    assert.throws(
      () => table.preview([{ op: 'add-server', service: svc('10.0.0.9', 80), dest: dest('192.168.0.1', 80) }]),
      (e: unknown) => e instanceof TsvsError && /does not exist/.test(e.detail),
    );
  });

  test('cost: a one-server change copies one service, however large the table', () => {
    const table = newTable();
    const ops: Op[] = [];
    for (let i = 0; i < 2000; i++) {
      const s = svc(`10.${i >> 8}.${i & 255}.1`, 80, { scheduler: 'mh' });
      ops.push({ op: 'add-service', service: s }, { op: 'add-server', service: s, dest: dest('192.168.0.1', 80) });
    }
    table.applyAll(ops);
    const s = svc('10.0.5.1', 80);
    const p = table.preview(table.validate([{ op: 'add-server', service: s, dest: dest('192.168.0.2', 80) }]));
    assert.equal(p.services.size, 1);
  });
});
