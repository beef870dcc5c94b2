/**
 * The HA transition hooks of state sync (src/sync/ha.ts) in the order DESIGN.md measured:
 * becoming master = conntrackd -c, (VIPs), -f, -R, -B and the sync daemon to master;
 * becoming backup = (VIPs dropped), -t, -n and the sync daemon to backup. conntrackd and
 * the multicast sockets are replaced by recorders.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CONN_F_SYNC } from '../../src/core/conn.js';
import { newTable } from '../table.js';
import { TcpState } from '../../src/core/tcpstate.js';
import { SyncMaster } from '../../src/sync/syncd.js';
import { setupSync, type ConntrackdControl } from '../../src/sync/ha.js';
import type { ConntrackdSettings } from '../../src/sync/conntrackd.js';

const sockets = {
  master: async () => ({ send: () => {}, close: async () => {} }),
  backup: async () => ({ send: () => {}, close: async () => {} }),
};

function recorder(events: string[], slowMs = 0) {
  return (settings: ConntrackdSettings, stateDir: string): ConntrackdControl => ({
    settings,
    start: async () => {
      events.push(`start ${stateDir}`);
    },
    stop: async () => {
      events.push('stop');
    },
    ctl: async (args: string[]) => {
      if (slowMs) await new Promise((r) => setTimeout(r, slowMs));
      events.push(`conntrackd ${args.join(' ')}`);
      return true;
    },
  });
}

const CT = { interface: 'tsvsx0', address: '198.18.0.2', peer: '198.18.0.3' };

describe('state sync HA hooks', () => {
  it('run conntrackd and the sync daemon in the measured order around the VIP changes', async () => {
    const events: string[] = [];
    const s = await setupSync({
      table: newTable(),
      log: () => {},
      settings: { daemon: { mcastIfn: 'lo', instance: 'VI_1' }, conntrackd: CT },
      vrids: new Map([['VI_1', 51]]),
      socketPath: '/tmp/tsvs-x/tsvsd.sock',
      sockets,
      makeConntrackd: recorder(events),
    });
    const roles = () => s.manager.list().map((d) => `${d.state}/${d.syncid}`);
    // Start: conntrackd next to the socket, a resync request, the backup daemon only (syncid = VRID).
    assert.deepEqual(events.splice(0), ['start /tmp/tsvs-x/conntrackd', 'conntrackd -n']);
    assert.deepEqual(roles(), ['backup/51']);

    await s.hooks.beforeMaster!('VI_1');
    events.push('(speaker adds VIPs, sends GARP)');
    await s.hooks.afterMaster!('VI_1');
    assert.deepEqual(events.splice(0), [
      'conntrackd -c',
      '(speaker adds VIPs, sends GARP)',
      'conntrackd -f',
      'conntrackd -R',
      'conntrackd -B',
    ]);
    assert.deepEqual(roles(), ['master/51']);

    events.push('(speaker drops VIPs)');
    await s.hooks.afterBackup!('VI_1');
    assert.deepEqual(events.splice(0), ['(speaker drops VIPs)', 'conntrackd -t', 'conntrackd -n']);
    assert.deepEqual(roles(), ['backup/51']);

    // Another instance moves conntrackd (no instance given for it) but not the sync daemon.
    await s.hooks.afterMaster!('VI_2');
    assert.deepEqual(roles(), ['backup/51']);
    assert.deepEqual(events.splice(0), ['conntrackd -f', 'conntrackd -R', 'conntrackd -B']);
    await s.stop();
    assert.deepEqual(events, ['stop']);
    assert.deepEqual(s.manager.list(), []);
  });

  it('a transition waits for the previous one to finish', async () => {
    const events: string[] = [];
    const s = await setupSync({
      table: newTable(),
      log: () => {},
      settings: { conntrackd: CT },
      socketPath: '/tmp/y/s.sock',
      sockets,
      makeConntrackd: recorder(events, 30),
    });
    events.splice(0);
    await Promise.all([s.hooks.afterBackup!('VI_1'), s.hooks.beforeMaster!('VI_1'), s.hooks.afterMaster!('VI_1')]);
    assert.deepEqual(events, ['conntrackd -t', 'conntrackd -n', 'conntrackd -c', 'conntrackd -f', 'conntrackd -R', 'conntrackd -B']);
    await s.stop();
  });

  it('lvs_sync_daemon without an instance runs master and backup at once; syncid defaults to 0', async () => {
    const s = await setupSync({
      table: newTable(),
      log: () => {},
      settings: { daemon: { mcastIfn: 'lo' } },
      socketPath: '/tmp/z/s.sock',
      sockets,
    });
    assert.deepEqual(
      s.manager.list().map((d) => `${d.state}/${d.syncid}`),
      ['master/0', 'backup/0'],
    );
    await s.hooks.afterMaster!('VI_1');
    assert.deepEqual(
      s.manager.list().map((d) => d.state),
      ['master', 'backup'],
    );
    await s.stop();
  });

  it('a configured conntrackd that cannot start stops tsvsd from starting, naming the problem', async () => {
    await assert.rejects(
      setupSync({
        table: newTable(),
        log: () => {},
        settings: { conntrackd: CT },
        socketPath: '/tmp/z/s.sock',
        sockets,
        makeConntrackd: (settings) => ({
          settings,
          start: async () => {
            throw new Error('sync.conntrackd is configured but conntrackd is not installed (apt-get install conntrackd)');
          },
          stop: async () => {},
          ctl: async () => true,
        }),
      }),
      /apt-get install conntrackd/,
    );
  });

  it('on becoming master, synced templates become its own (announced again) and synced connections go', async () => {
    const table = newTable();
    const svc = { af: 4 as const, protocol: 'tcp' as const, addr: '198.18.0.1', port: 80, fwmark: 0 };
    table.applyAll([
      { op: 'add-service', service: { ...svc, scheduler: 'rr', schedFlags: 0, persistent: 300, netmask: 0xffffffff, ops: false, pe: '' } },
      {
        op: 'add-server',
        service: svc,
        dest: { af: 4, addr: '198.19.0.11', port: 80, weight: 1, fwd: 'masq', uThreshold: 0, lThreshold: 0 },
      },
    ]);
    const e = {
      protocol: 'tcp' as const,
      af: 4 as const,
      caddr: '198.18.0.10',
      vaddr: svc.addr,
      vport: 80,
      daddr: '198.19.0.11',
      dport: 80,
      fwmark: 0,
      timeout: 300,
    };
    table.importSynced({ ...e, cport: 0, template: true, state: 0 });
    table.importSynced({ ...e, cport: 40000, template: false, state: TcpState.ESTABLISHED });
    assert.equal(table.syncedEntries().length, 2);
    const s = await setupSync({
      table,
      log: () => {},
      settings: { daemon: { mcastIfn: 'lo', instance: 'VI_1' } },
      socketPath: '/tmp/w/s.sock',
      sockets,
    });
    await s.hooks.afterMaster!('VI_1');
    const left = [...table.conns.all()];
    assert.equal(left.length, 1);
    assert.ok(left[0]!.isTemplate);
    assert.equal(left[0]!.flags & CONN_F_SYNC, 0);
    assert.equal(table.get(svc)!.dests[0]!.activeconns, 0);
    assert.equal(new SyncMaster(table, { syncid: 0, maxlen: 1472 }, () => {}).scan(), 1, 'the adopted template is announced');
    await s.stop();
  });
});
