import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { TsvsError } from '../../src/core/errors.js';
import type { TableEvent } from '../../src/core/table.js';
import type { Op } from '../../src/core/types.js';
import { dest, fakeTable, svc } from './fixtures.js';

function expectCode(f: () => void, code: string, message?: string): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof TsvsError, `expected TsvsError, got ${String(e)}`);
    assert.equal(e.code, code);
    if (message !== undefined) assert.equal(e.message, message);
    return true;
  });
}

describe('mutations', () => {
  test('add, edit and delete services and real servers; kernel list order', () => {
    const { table } = fakeTable();
    const s = svc('10.0.0.1', 80, { scheduler: 'rr' });
    table.apply({ op: 'add-service', service: s });
    for (const a of ['192.168.1.2', '192.168.1.3', '192.168.1.4']) table.apply({ op: 'add-server', service: s, dest: dest(a, 80) });
    const v = table.view().services[0]!;
    // New servers go to the head of the list, as list_add_rcu does.
    assert.deepEqual(
      v.dests.map((d) => d.addr),
      ['192.168.1.4', '192.168.1.3', '192.168.1.2'],
    );
    table.apply({ op: 'edit-server', service: s, dest: dest('192.168.1.3', 80, { weight: 5, fwd: 'route' }) });
    const d = table.view().services[0]!.dests[1]!;
    assert.equal(d.weight, 5);
    assert.equal(d.fwd, 'route');
    table.apply({ op: 'delete-server', service: s, dest: { af: 4, addr: '192.168.1.3', port: 80 } });
    assert.equal(table.view().services[0]!.dests.length, 2);
    table.apply({ op: 'edit-service', service: { ...s, scheduler: 'wlc', persistent: 60 } });
    assert.equal(table.view().services[0]!.scheduler, 'wlc');
    assert.equal(table.view().services[0]!.persistent, 60);
    table.apply({ op: 'delete-service', service: s });
    assert.equal(table.view().services.length, 0);
  });

  test("errors carry ipvsadm's messages", () => {
    const { table } = fakeTable();
    const s = svc('10.0.0.1', 80);
    table.apply({ op: 'add-service', service: s });
    table.apply({ op: 'add-server', service: s, dest: dest('10.1.0.1', 80) });
    const other = svc('10.0.0.2', 80);
    expectCode(() => table.apply({ op: 'add-service', service: s }), 'SERVICE_EXISTS', 'Service already exists');
    expectCode(() => table.apply({ op: 'edit-service', service: other }), 'NO_SERVICE', 'No such service');
    expectCode(() => table.apply({ op: 'delete-service', service: other }), 'NO_SERVICE', 'No such service');
    expectCode(() => table.apply({ op: 'zero', service: other }), 'NO_SERVICE', 'No such service');
    expectCode(
      () => table.apply({ op: 'add-server', service: other, dest: dest('10.1.0.1', 80) }),
      'SERVICE_NOT_DEFINED',
      'Service not defined',
    );
    expectCode(
      () => table.apply({ op: 'add-server', service: s, dest: dest('10.1.0.1', 80) }),
      'DEST_EXISTS',
      'Destination already exists',
    );
    expectCode(() => table.apply({ op: 'edit-server', service: s, dest: dest('10.1.0.9', 80) }), 'NO_DEST', 'No such destination');
    expectCode(
      () => table.apply({ op: 'delete-server', service: s, dest: { af: 4, addr: '10.1.0.9', port: 80 } }),
      'NO_DEST',
      'No such destination',
    );
    expectCode(
      () => table.apply({ op: 'add-service', service: svc('10.0.0.3', 80, { scheduler: 'nope' }) }),
      'SCHEDULER_NOT_FOUND',
      'Scheduler or persistence engine not found',
    );
    // Kernel: -ERANGE for l_threshold > u_threshold (e.g. -y without -x).
    expectCode(
      () => table.apply({ op: 'add-server', service: s, dest: dest('10.1.0.2', 80, { lThreshold: 10 }) }),
      'OUT_OF_RANGE',
      'Numerical result out of range',
    );
    expectCode(() => table.apply({ op: 'add-server', service: s, dest: dest('10.1.0.2', 80, { weight: 70000 }) }), 'OUT_OF_RANGE');
    expectCode(() => table.apply({ op: 'add-server', service: s, dest: dest('224.0.0.1', 80) }), 'INVALID');
    expectCode(() => table.apply({ op: 'add-server', service: s, dest: dest('2001:db8::1', 80) }), 'AF_NOT_SUPPORTED');
    expectCode(() => table.apply({ op: 'add-service', service: svc('10.0.0.4', 80, { ops: true }) }), 'INVALID');
    expectCode(() => table.apply({ op: 'add-service', service: svc('10.0.0.4', 0) }), 'INVALID');
    expectCode(() => table.apply({ op: 'add-service', service: { ...svc('10.0.0.4', 80), addr: 'not-an-ip' } }), 'BAD_REQUEST');
    expectCode(() => table.apply({ op: 'bogus' } as unknown as Op), 'BAD_REQUEST');
    // Error details name the object.
    try {
      table.apply({ op: 'add-service', service: s });
    } catch (e) {
      assert.match((e as TsvsError).detail, /TCP 10\.0\.0\.1:80/);
    }
  });

  test('a failing batch leaves the table unchanged and emits nothing', () => {
    const { table } = fakeTable();
    const s = svc('10.0.0.1', 80);
    table.apply({ op: 'add-service', service: s });
    const before = JSON.stringify(table.config());
    const events: TableEvent[] = [];
    table.subscribe({ change: (e) => events.push(e) });
    assert.throws(() =>
      table.applyAll([
        { op: 'add-server', service: s, dest: dest('10.1.0.1', 80) },
        { op: 'add-service', service: svc('10.0.0.2', 80) },
        { op: 'add-server', service: s, dest: dest('10.1.0.1', 80) }, // duplicate: fails
      ]),
    );
    assert.equal(JSON.stringify(table.config()), before);
    assert.equal(events.length, 0);
  });

  test('a batch may refer to what its earlier operations create or delete (restore after flush)', () => {
    const { table } = fakeTable();
    const s = svc('10.0.0.1', 80);
    table.apply({ op: 'add-service', service: s });
    table.applyAll([{ op: 'flush' }, { op: 'add-service', service: s }, { op: 'add-server', service: s, dest: dest('10.1.0.1', 80) }]);
    assert.equal(table.view().services[0]!.dests.length, 1);
  });

  test('within a batch, a flush or a delete hides what the table had, servers included', () => {
    const { table } = fakeTable();
    const s = svc('10.0.0.1', 80);
    table.applyAll([
      { op: 'add-service', service: s },
      { op: 'add-server', service: s, dest: dest('10.1.0.1', 80) },
    ]);
    const rs = { af: 4 as const, addr: '10.1.0.1', port: 80 };
    expectCode(() => table.validate([{ op: 'flush' }, { op: 'delete-service', service: s }]), 'NO_SERVICE');
    expectCode(
      () => table.validate([{ op: 'flush' }, { op: 'add-service', service: s }, { op: 'delete-server', service: s, dest: rs }]),
      'NO_DEST',
    );
    expectCode(
      () =>
        table.validate([
          { op: 'delete-service', service: s },
          { op: 'add-service', service: s },
          { op: 'edit-server', service: s, dest: dest('10.1.0.1', 80) },
        ]),
      'NO_DEST',
    );
    expectCode(
      () =>
        table.validate([
          { op: 'delete-server', service: s, dest: rs },
          { op: 'delete-server', service: s, dest: rs },
        ]),
      'NO_DEST',
    );
    expectCode(
      () =>
        table.validate([
          { op: 'delete-server', service: s, dest: rs },
          { op: 'add-server', service: s, dest: dest('10.1.0.1', 80) },
          { op: 'add-server', service: s, dest: dest('10.1.0.1', 80) },
        ]),
      'DEST_EXISTS',
    );
    assert.equal(
      table.validate([
        { op: 'delete-server', service: s, dest: rs },
        { op: 'add-server', service: s, dest: dest('10.1.0.1', 80) },
      ]).length,
      2,
    );
    // An IPv6 server needs tunnelling in the re-added IPv4 service, whatever the old one was.
    expectCode(
      () =>
        table.validate([
          { op: 'flush' },
          { op: 'add-service', service: s },
          { op: 'add-server', service: s, dest: dest('2001:db8::1', 80) },
        ]),
      'AF_NOT_SUPPORTED',
    );
  });

  test('inputs are canonicalized: an IPv6 service named two ways is one service', () => {
    const { table } = fakeTable();
    table.apply({ op: 'add-service', service: svc('2001:DB8:0::1', 80) });
    expectCode(() => table.apply({ op: 'add-service', service: svc('2001:db8::1', 80) }), 'SERVICE_EXISTS');
    assert.equal(table.view().services[0]!.addr, '2001:db8::1');
  });

  test('last_weight follows the kernel: kept across a change to 0', () => {
    const { table } = fakeTable();
    const s = svc('10.0.0.1', 80);
    table.apply({ op: 'add-service', service: s });
    table.apply({ op: 'add-server', service: s, dest: dest('10.1.0.1', 80, { weight: 7 }) });
    table.apply({ op: 'edit-server', service: s, dest: dest('10.1.0.1', 80, { weight: 0 }) });
    const rs = table.list()[0]!.dests[0]!;
    assert.equal(rs.weight, 0);
    assert.equal(rs.lastWeight, 7);
  });
});

describe('scheduling and connections', () => {
  const pkt = (caddr: string, cport = 40000) => ({ caddr, cport, vaddr: '10.0.0.1', vport: 80 });

  test('rr picks in kernel order and counts conns for server, service and total', () => {
    const { table } = fakeTable();
    const s = svc('10.0.0.1', 80, { scheduler: 'rr' });
    table.apply({ op: 'add-service', service: s });
    for (const a of ['10.1.0.1', '10.1.0.2', '10.1.0.3']) table.apply({ op: 'add-server', service: s, dest: dest(a, 8080) });
    const vs = table.list()[0]!;
    const picks = Array.from({ length: 6 }, (_, i) => table.schedule(vs, pkt('1.1.1.1', 40000 + i))!.daddr);
    assert.deepEqual(picks, ['10.1.0.3', '10.1.0.2', '10.1.0.1', '10.1.0.3', '10.1.0.2', '10.1.0.1']);
    const v = table.view();
    assert.equal(v.services[0]!.stats.conns, 6);
    assert.equal(v.stats.conns, 6);
    assert.deepEqual(
      v.services[0]!.dests.map((d) => d.stats.conns),
      [2, 2, 2],
    );
    // The real server's port is used; port 0 would keep the client's destination port.
    assert.equal(table.schedule(vs, pkt('1.1.1.1'))!.dport, 8080);
  });

  test('no destination available: null, and nothing is counted', () => {
    const { table } = fakeTable();
    const s = svc('10.0.0.1', 80, { scheduler: 'rr' });
    table.apply({ op: 'add-service', service: s });
    assert.equal(table.schedule(table.list()[0]!, pkt('1.1.1.1')), null);
    table.apply({ op: 'add-server', service: s, dest: dest('10.1.0.1', 80, { weight: 0 }) });
    assert.equal(table.schedule(table.list()[0]!, pkt('1.1.1.1')), null);
    assert.equal(table.view().services[0]!.stats.conns, 0);
  });

  test('TCP states: active while established, inactive in TIME_WAIT, expiry by the state timeout', () => {
    const { table, clock } = fakeTable();
    const s = svc('10.0.0.1', 80, { scheduler: 'rr' });
    table.apply({ op: 'add-service', service: s });
    table.apply({ op: 'add-server', service: s, dest: dest('10.1.0.1', 80) });
    const rs = table.list()[0]!.dests[0]!;
    const c = table.schedule(table.list()[0]!, pkt('1.1.1.1'))!;
    assert.equal([rs.activeconns, rs.inactconns].join(), '0,1'); // new entries start inactive
    table.tcpEvent(c, 'input', 'syn');
    assert.equal(c.stateName, 'SYN_RECV');
    assert.equal([rs.activeconns, rs.inactconns].join(), '1,0');
    table.tcpEvent(c, 'input', 'ack');
    assert.equal(c.stateName, 'ESTABLISHED');
    assert.equal(table.connView()[0]!.expires, 900);
    // Idle for 899 s: still there. 901 s: gone.
    clock.t += 899_000;
    table.tick();
    assert.equal(table.conns.size, 1);
    clock.t += 2_000;
    table.tick();
    assert.equal(table.conns.size, 0);
    assert.equal([rs.activeconns, rs.inactconns].join(), '0,0');
  });

  test('a normally closed NAT connection lingers as InActConn in TIME_WAIT for 120 s', () => {
    const { table, clock } = fakeTable();
    const s = svc('10.0.0.1', 80, { scheduler: 'rr' });
    table.apply({ op: 'add-service', service: s });
    table.apply({ op: 'add-server', service: s, dest: dest('10.1.0.1', 80) });
    const rs = table.list()[0]!.dests[0]!;
    const c = table.schedule(table.list()[0]!, pkt('1.1.1.1'))!;
    table.tcpEvent(c, 'input', 'syn');
    table.tcpEvent(c, 'input', 'ack');
    table.tcpEvent(c, 'input', 'fin'); // client closes: CLOSE_WAIT
    assert.equal(c.stateName, 'CLOSE_WAIT');
    table.tcpEvent(c, 'output', 'fin'); // server closes: TIME_WAIT
    assert.equal(c.stateName, 'TIME_WAIT');
    assert.equal([rs.activeconns, rs.inactconns].join(), '0,1');
    clock.t += 119_000;
    table.tick();
    assert.equal(table.conns.size, 1);
    clock.t += 2_000;
    table.tick();
    assert.equal(table.conns.size, 0);
  });

  test('--set changes the established, fin_wait and udp timeouts; 0 keeps a value', () => {
    const { table, clock } = fakeTable();
    table.apply({ op: 'set-timeouts', timeouts: { tcp: 30, tcpfin: 0, udp: 5 } });
    assert.deepEqual(table.timeouts(), { tcp: 30, tcpfin: 120, udp: 5 });
    const s = svc('10.0.0.1', 53, { protocol: 'udp', scheduler: 'rr' });
    table.apply({ op: 'add-service', service: s });
    table.apply({ op: 'add-server', service: s, dest: dest('10.1.0.1', 53) });
    const c = table.schedule(table.list()[0]!, { ...pkt('1.1.1.1'), vport: 53 })!;
    table.datagram(c);
    assert.equal(c.stateName, 'UDP');
    // UDP entries stay inactive (udp_state_transition never touches the counters).
    assert.equal(table.list()[0]!.dests[0]!.inactconns, 1);
    clock.t += 4_000;
    table.datagram(c); // traffic re-arms the timer
    clock.t += 4_000;
    table.tick();
    assert.equal(table.conns.size, 1);
    clock.t += 2_000;
    table.tick();
    assert.equal(table.conns.size, 0);
  });

  test('thresholds: OVERLOAD set at >= upper, cleared below lower, or below 3/4 of upper', () => {
    const { table } = fakeTable();
    const s = svc('10.0.0.1', 80, { scheduler: 'rr' });
    table.apply({ op: 'add-service', service: s });
    table.apply({ op: 'add-server', service: s, dest: dest('10.1.0.1', 80, { uThreshold: 4 }) });
    table.apply({ op: 'add-server', service: s, dest: dest('10.1.0.2', 80) });
    const vs = table.list()[0]!;
    const a = vs.findDest({ af: 4, addr: '10.1.0.1', port: 80 })!;
    const conns = [];
    for (let i = 0; i < 20 && a.totalconns < 4; i++) conns.push(table.schedule(vs, pkt('1.1.1.1', 1000 + i))!);
    assert.equal(a.totalconns, 4);
    assert.equal(a.overloaded, true);
    // Every new connection now goes to the other server.
    for (let i = 0; i < 5; i++) assert.equal(table.schedule(vs, pkt('1.1.1.1', 2000 + i))!.daddr, '10.1.0.2');
    const mine = conns.filter((c) => c.dest === a);
    table.dropConn(mine[0]!); // 3 left: 3*4 = 12 is not < 4*3 = 12, still overloaded
    assert.equal(a.overloaded, true);
    table.dropConn(mine[1]!); // 2 left: 8 < 12, cleared
    assert.equal(a.overloaded, false);

    // With a lower threshold, the flag clears only below it.
    table.apply({ op: 'edit-server', service: s, dest: dest('10.1.0.1', 80, { uThreshold: 3, lThreshold: 1 }) });
    conns.push(table.schedule(vs, pkt('1.1.1.1', 3000))!, table.schedule(vs, pkt('1.1.1.1', 3001))!);
    for (let i = 0; i < 4 && a.totalconns < 3; i++) conns.push(table.schedule(vs, pkt('1.1.1.1', 3100 + i))!);
    assert.equal(a.overloaded, true);
    const left = conns.filter((c) => c.dest === a && !c.dead);
    table.dropConn(left[0]!);
    assert.equal(a.overloaded, true); // 2 is not < 1
    table.dropConn(left[1]!);
    assert.equal(a.overloaded, true); // 1 is not < 1
    table.dropConn(left[2]!);
    assert.equal(a.overloaded, false);
  });

  test('editing a server to raise its upper threshold clears OVERLOAD at once', () => {
    const { table } = fakeTable();
    const s = svc('10.0.0.1', 80, { scheduler: 'rr' });
    table.apply({ op: 'add-service', service: s });
    table.apply({ op: 'add-server', service: s, dest: dest('10.1.0.1', 80, { uThreshold: 1 }) });
    const vs = table.list()[0]!;
    table.schedule(vs, pkt('1.1.1.1'));
    assert.equal(vs.dests[0]!.overloaded, true);
    assert.equal(table.schedule(vs, pkt('1.1.1.1', 2)), null);
    table.apply({ op: 'edit-server', service: s, dest: dest('10.1.0.1', 80, { uThreshold: 5 }) });
    assert.equal(vs.dests[0]!.overloaded, false);
    assert.notEqual(table.schedule(vs, pkt('1.1.1.1', 3)), null);
  });
});

describe('persistence', () => {
  test('same client stays on its server until the template expires', () => {
    const { table, clock } = fakeTable();
    const s = svc('10.0.0.1', 80, { scheduler: 'rr', persistent: 60 });
    table.apply({ op: 'add-service', service: s });
    for (const a of ['10.1.0.1', '10.1.0.2']) table.apply({ op: 'add-server', service: s, dest: dest(a, 80) });
    const vs = table.list()[0]!;
    const first = table.schedule(vs, { caddr: '1.1.1.1', cport: 1, vaddr: '10.0.0.1', vport: 80 })!;
    const other = table.schedule(vs, { caddr: '2.2.2.2', cport: 1, vaddr: '10.0.0.1', vport: 80 })!;
    assert.notEqual(first.daddr, other.daddr);
    for (let i = 0; i < 5; i++) {
      const c = table.schedule(vs, { caddr: '1.1.1.1', cport: 100 + i, vaddr: '10.0.0.1', vport: 80 })!;
      assert.equal(c.daddr, first.daddr);
      table.dropConn(c);
    }
    table.dropConn(first);
    table.dropConn(other);
    // The template shows in -Lnc with client port 0 and the persistence timeout.
    const tpl = table.connView().find((c) => c.template && c.caddr === '1.1.1.1')!;
    assert.equal(tpl.cport, 0);
    assert.equal(tpl.expires, 60);
    assert.equal(
      table.list()[0]!.dests.reduce((n, d) => n + d.persistconns, 0),
      2,
    );
    clock.t += 61_000;
    table.tick();
    assert.equal(table.connView().filter((c) => c.template).length, 0);
    assert.equal(
      table.list()[0]!.dests.reduce((n, d) => n + d.persistconns, 0),
      0,
    );
  });

  test('a template that controls live connections is not expired (re-armed 60 s)', () => {
    const { table, clock } = fakeTable();
    const s = svc('10.0.0.1', 80, { scheduler: 'rr', persistent: 10 });
    table.apply({ op: 'add-service', service: s });
    table.apply({ op: 'add-server', service: s, dest: dest('10.1.0.1', 80) });
    const c = table.schedule(table.list()[0]!, { caddr: '1.1.1.1', cport: 1, vaddr: '10.0.0.1', vport: 80 })!;
    table.tcpEvent(c, 'input', 'syn');
    table.tcpEvent(c, 'input', 'ack');
    clock.t += 11_000;
    table.tick();
    const tpl = table.connView().find((x) => x.template)!;
    assert.ok(tpl, 'template kept while its connection lives');
    assert.equal(tpl.state, 'ASSURED');
  });

  test('-M 255.255.255.0 groups a /24 onto one server', () => {
    const { table } = fakeTable();
    const s = svc('10.0.0.1', 80, { scheduler: 'rr', persistent: 300, netmask: 0xffffff00 });
    table.apply({ op: 'add-service', service: s });
    for (const a of ['10.1.0.1', '10.1.0.2', '10.1.0.3']) table.apply({ op: 'add-server', service: s, dest: dest(a, 80) });
    const vs = table.list()[0]!;
    const picks = new Set<string>();
    for (let i = 1; i < 50; i++)
      picks.add(table.schedule(vs, { caddr: `192.168.5.${i}`, cport: 1000, vaddr: '10.0.0.1', vport: 80 })!.daddr);
    assert.equal(picks.size, 1);
    const next = table.schedule(vs, { caddr: '192.168.6.1', cport: 1000, vaddr: '10.0.0.1', vport: 80 })!.daddr;
    assert.ok(!picks.has(next), 'another /24 is scheduled afresh');
  });

  test('a quiesced server keeps its persistent clients; expire_quiescent_template moves them', () => {
    const { table } = fakeTable();
    const s = svc('10.0.0.1', 80, { scheduler: 'rr', persistent: 300 });
    table.apply({ op: 'add-service', service: s });
    for (const a of ['10.1.0.1', '10.1.0.2']) table.apply({ op: 'add-server', service: s, dest: dest(a, 80) });
    const vs = table.list()[0]!;
    const p = (port: number) => ({ caddr: '1.1.1.1', cport: port, vaddr: '10.0.0.1', vport: 80 });
    const home = table.schedule(vs, p(1))!.daddr;
    table.apply({ op: 'edit-server', service: s, dest: dest(home, 80, { weight: 0 }) });
    // Default sysctl (0): the template still points there (kubernetes#71809).
    assert.equal(table.schedule(vs, p(2))!.daddr, home);
    table.expireQuiescentTemplate = true;
    assert.notEqual(table.schedule(vs, p(3))!.daddr, home);
  });

  test('removing a server sends its persistent clients elsewhere', () => {
    const { table } = fakeTable();
    const s = svc('10.0.0.1', 80, { scheduler: 'rr', persistent: 300 });
    table.apply({ op: 'add-service', service: s });
    for (const a of ['10.1.0.1', '10.1.0.2']) table.apply({ op: 'add-server', service: s, dest: dest(a, 80) });
    const vs = table.list()[0]!;
    const p = (port: number) => ({ caddr: '1.1.1.1', cport: port, vaddr: '10.0.0.1', vport: 80 });
    const home = table.schedule(vs, p(1))!.daddr;
    table.apply({ op: 'delete-server', service: s, dest: { af: 4, addr: home, port: 80 } });
    assert.notEqual(table.schedule(vs, p(2))!.daddr, home);
  });
});

describe('estimator', () => {
  test('a constant 100 conn/s reads 25, 44, 58, 68, 76, 82 and converges to 100', () => {
    const { table, clock } = fakeTable();
    const s = svc('10.0.0.1', 80, { scheduler: 'rr' });
    table.apply({ op: 'add-service', service: s });
    table.apply({ op: 'add-server', service: s, dest: dest('10.1.0.1', 80) });
    const vs = table.list()[0]!;
    const seen: number[] = [];
    for (let tick = 0; tick < 30; tick++) {
      for (let i = 0; i < 200; i++) table.dropConn(table.schedule(vs, { caddr: '1.1.1.1', cport: i, vaddr: '10.0.0.1', vport: 80 })!);
      clock.t += 2000;
      table.tick();
      seen.push(table.view().services[0]!.rates.cps);
    }
    assert.deepEqual(seen.slice(0, 6), [25, 44, 58, 68, 76, 82]);
    assert.equal(seen.at(-1), 100);
    assert.equal(table.view().rates.cps, 100);
  });

  test('byte rates are bytes per second, scaled by 2^5', () => {
    const { table, clock } = fakeTable();
    const s = svc('10.0.0.1', 80, { scheduler: 'rr' });
    table.apply({ op: 'add-service', service: s });
    table.apply({ op: 'add-server', service: s, dest: dest('10.1.0.1', 80) });
    const c = table.schedule(table.list()[0]!, { caddr: '1.1.1.1', cport: 1, vaddr: '10.0.0.1', vport: 80 })!;
    for (let tick = 0; tick < 100; tick++) {
      table.countIn(c, 10, 1_000_000); // 500 kB/s, 5 pkt/s
      table.countOut(c, 20, 4_000_000_000); // 2 GB/s: past 2^31 in the scaled value
      clock.t += 2000;
      table.tick();
    }
    const r = table.view().services[0]!.rates;
    assert.equal(r.inbps, 500_000);
    assert.equal(r.outbps, 2_000_000_000);
    assert.equal(r.inpps, 5);
    assert.equal(r.outpps, 10);
  });

  test('-Z zeroes counters and rates', () => {
    const { table, clock } = fakeTable();
    const s = svc('10.0.0.1', 80, { scheduler: 'rr' });
    table.apply({ op: 'add-service', service: s });
    table.apply({ op: 'add-server', service: s, dest: dest('10.1.0.1', 80) });
    const c = table.schedule(table.list()[0]!, { caddr: '1.1.1.1', cport: 1, vaddr: '10.0.0.1', vport: 80 })!;
    table.countIn(c, 1, 100);
    clock.t += 2000;
    table.tick();
    table.apply({ op: 'zero' });
    const v = table.view().services[0]!;
    assert.deepEqual(v.stats, { conns: 0, inpkts: 0, outpkts: 0, inbytes: 0, outbytes: 0 });
    assert.deepEqual(v.rates, { cps: 0, inpps: 0, outpps: 0, inbps: 0, outbps: 0 });
    assert.equal(table.view().stats.conns, 0);
  });
});
