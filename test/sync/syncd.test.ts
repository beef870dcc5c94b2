/**
 * Master and backup halves of the sync daemon without sockets: a master table's entries
 * travel as real protocol messages into a backup table on a fake clock.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CONN_F_SYNC } from '../../src/core/conn.js';
import type { IpvsTable } from '../../src/core/table.js';
import { newTable } from '../table.js';
import { TcpState } from '../../src/core/tcpstate.js';
import type { Op } from '../../src/core/types.js';
import { encodeMessages } from '../../src/sync/proto.js';
import { SyncBackup, SyncMaster, tableImporter } from '../../src/sync/syncd.js';

const VIP = '198.18.0.1';
const RS = ['198.19.0.11', '198.19.0.12'];
const svcKey = { af: 4 as const, protocol: 'tcp' as const, addr: VIP, port: 80, fwmark: 0 };

function director(clock: { t: number }, persistent = 360): IpvsTable {
  const t = newTable({ now: () => clock.t });
  const ops: Op[] = [
    { op: 'add-service', service: { ...svcKey, scheduler: 'rr', schedFlags: 0, persistent, netmask: 0xffffffff, ops: false, pe: '' } },
    ...RS.map(
      (addr): Op => ({
        op: 'add-server',
        service: svcKey,
        dest: { af: 4, addr, port: 80, weight: 1, fwd: 'masq', uThreshold: 0, lThreshold: 0 },
      }),
    ),
  ];
  t.applyAll(ops);
  return t;
}

function connect(t: IpvsTable, caddr: string, cport: number, state = TcpState.ESTABLISHED) {
  const c = t.schedule(t.get(svcKey)!, { caddr, cport, vaddr: VIP, vport: 80 })!;
  t.conns.setTcpState(c, state);
  // As a data plane that learns states from conntrack sets it: the state's timeout.
  c.timeoutMs = state === TcpState.ESTABLISHED ? 900_000 : 60_000;
  c.expires = t.now() + c.timeoutMs;
  return c;
}

function pair(opts: { masterSyncid?: number; backupSyncid?: number } = {}) {
  const clock = { t: 1_000_000 };
  const m = director(clock);
  const b = director(clock);
  const wire: Buffer[] = [];
  const master = new SyncMaster(m, { syncid: opts.masterSyncid ?? 5, maxlen: 1472 }, (msg) => wire.push(msg));
  const backup = new SyncBackup({ syncid: opts.backupSyncid ?? 5 }, tableImporter(b));
  const deliver = () => {
    for (const msg of wire.splice(0)) backup.receive(msg);
  };
  return { clock, m, b, master, backup, wire, deliver };
}

describe('sync master -> backup', () => {
  it('a connection and its template arrive flagged SYNC, with state, server and timeout, not counted as scheduled', () => {
    const { m, b, master, backup, deliver } = pair();
    const c = connect(m, '198.18.0.10', 40000);
    assert.equal(master.scan(), 2);
    deliver();
    assert.equal(backup.counters.imported, 2);
    const view = b.connView().sort((x, y) => Number(x.template) - Number(y.template));
    assert.deepEqual(
      view.map((v) => [v.protocol, v.caddr, v.cport, v.vaddr, v.vport, v.daddr, v.state, v.template]),
      [
        ['TCP', '198.18.0.10', 40000, VIP, 80, c.daddr, 'ESTABLISHED', false],
        // ESTABLISHED on the master assured the template (ip_vs_control_assure).
        ['TCP', '198.18.0.10', 0, VIP, 80, c.daddr, 'ASSURED', true],
      ],
    );
    assert.equal(view[0]!.expires, 900); // ESTABLISHED timeout, as the master had it
    assert.equal(view[1]!.expires, 360); // the persistence timeout
    for (const e of b.syncedEntries()) assert.ok(e.flags & CONN_F_SYNC);
    const dest = b.get(svcKey)!.findDest({ af: 4, addr: c.daddr, port: 80 })!;
    assert.equal(dest.activeconns, 1);
    assert.equal(dest.persistconns, 1);
    assert.equal(b.get(svcKey)!.stats.conns, 0, 'a synced entry is not a scheduling decision');
  });

  it("after failover the synced template sends the client to the master's server", () => {
    const { m, b, master, deliver } = pair();
    connect(m, '198.18.0.20', 1000); // moves rr on the master
    const c = connect(m, '198.18.0.10', 40000);
    master.scan();
    deliver();
    // What the backup's own rr would pick first, on a fresh copy of it:
    const fresh = director({ t: 0 });
    const own = fresh.schedule(fresh.get(svcKey)!, { caddr: '198.18.0.10', cport: 40001, vaddr: VIP, vport: 80 })!;
    assert.notEqual(own.daddr, c.daddr, 'test setup: the masters pick must differ from a fresh rr pick');
    const after = b.schedule(b.get(svcKey)!, { caddr: '198.18.0.10', cport: 40001, vaddr: VIP, vport: 80 })!;
    assert.equal(after.daddr, c.daddr);
  });

  it('sends only what changed: nothing on an idle rescan, the entry again on a state change', () => {
    const { m, master, backup, deliver } = pair();
    const c = connect(m, '198.18.0.10', 40000);
    master.scan();
    assert.equal(master.scan(), 0);
    m.conns.setTcpState(c, TcpState.FIN_WAIT);
    assert.equal(master.scan(), 1);
    deliver();
    assert.equal(backup.counters.imported, 3);
  });

  it('TCP entries that are not yet established are not sent; templates are', () => {
    const { m, master } = pair();
    connect(m, '198.18.0.10', 40000, TcpState.SYN_RECV);
    assert.equal(master.scan(), 1); // the template only
  });

  it('a template re-armed by a new connection is sent again once it moved 10 s', () => {
    const { clock, m, master } = pair();
    connect(m, '198.18.0.10', 40000);
    master.scan();
    clock.t += 5000;
    connect(m, '198.18.0.10', 40001); // re-arms the template by 5 s: not yet
    assert.equal(master.scan(), 1); // the new connection
    clock.t += 6000;
    connect(m, '198.18.0.10', 40002); // 11 s after the first send
    assert.equal(master.scan(), 2);
  });

  it('a backup with syncid 7 ignores syncid 5; with syncid 0 it takes every syncid', () => {
    const a = pair({ masterSyncid: 5, backupSyncid: 7 });
    connect(a.m, '198.18.0.10', 40000);
    a.master.scan();
    a.deliver();
    assert.equal(a.backup.counters.ignoredSyncid, 1);
    assert.equal(a.b.connView().length, 0);
    const z = pair({ masterSyncid: 5, backupSyncid: 0 });
    connect(z.m, '198.18.0.10', 40000);
    z.master.scan();
    z.deliver();
    assert.equal(z.b.connView().length, 2);
  });

  it('a master never re-sends entries that came from sync (no echo between two directors)', () => {
    const { m, b, master, deliver } = pair();
    connect(m, '198.18.0.10', 40000);
    master.scan();
    deliver();
    const sent: Buffer[] = [];
    const echo = new SyncMaster(b, { syncid: 5, maxlen: 1472 }, (x) => sent.push(x));
    assert.equal(echo.scan(), 0);
  });

  it('malformed messages and entries for unknown services are counted, not imported', () => {
    const { b, backup } = pair();
    backup.receive(Buffer.from('not a sync message'));
    const stray = {
      af: 4 as const,
      protocol: 6,
      flags: 0,
      state: 1,
      cport: 1,
      vport: 81,
      dport: 80,
      fwmark: 0,
      timeout: 60,
      caddr: '198.18.0.9',
      vaddr: VIP,
      daddr: RS[0]!,
    };
    const noDest = { ...stray, vport: 80, daddr: '198.19.0.99' };
    for (const msg of encodeMessages(5, [stray, noDest])) backup.receive(msg);
    assert.deepEqual(backup.counters.dropped, { 'bad-size': 1 });
    assert.deepEqual(backup.counters.missed, { 'no-service': 1, 'no-dest': 1 });
    assert.equal(b.connView().length, 0);
  });

  it('a repeated message updates the entry in place instead of adding one', () => {
    const { m, b, master, wire, backup } = pair();
    connect(m, '198.18.0.10', 40000);
    master.scan();
    const msg = wire.splice(0)[0]!;
    backup.receive(msg);
    backup.receive(msg);
    assert.equal(b.connView().length, 2);
    assert.equal(
      b.get(svcKey)!.dests.reduce((n, d) => n + d.activeconns, 0),
      1,
    );
  });

  it('a full dump is paced: at most maxEntriesPerScan per scan, the rest on the next ones', () => {
    const clock = { t: 1_000_000 };
    const m = director(clock, 0);
    for (let i = 0; i < 25; i++) connect(m, '198.18.0.10', 1000 + i);
    const sent: Buffer[] = [];
    const master = new SyncMaster(m, { syncid: 1, maxlen: 1472, maxEntriesPerScan: 10 }, (x) => sent.push(x));
    assert.deepEqual([master.scan(), master.scan(), master.scan(), master.scan()], [10, 10, 5, 0]);
  });
});
