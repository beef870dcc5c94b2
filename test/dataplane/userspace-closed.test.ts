/**
 * The userspace plane hands a connection back to the table once both of its sockets are
 * closed: its entry then waits out TIME_WAIT as a compact row (core/closed.ts), still an
 * InActConn and still in -Lnc, and leaves when its timer runs out. Same with worker threads.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { newEchoConnections, waitFor } from '../helper.js';
import { makeUserspaceHarness } from '../userspace/harness.js';
import { destOf, serviceOf } from './scenarios.js';

for (const workers of [1, 2]) {
  describe(`userspace plane (--workers ${workers}): closed connections`, { timeout: 30_000 }, () => {
    test('closed connections become compact entries that still count, list and expire', async (t) => {
      const h = await makeUserspaceHarness({ workers });
      t.after(() => h.close());
      const [a] = await h.makeRealServers('echo', ['rs-a']);
      const svc = serviceOf(h);
      await h.apply([
        { op: 'add-service', service: svc },
        { op: 'add-server', service: svc, dest: destOf(h, a!) },
      ]);
      assert.deepEqual(await newEchoConnections(3, h.vip, h.vport), ['rs-a', 'rs-a', 'rs-a']);
      // Both sockets of each session close shortly after the client's end.
      await waitFor(() => h.table.conns.closedSize === 3, 5000, 'three compact entries');
      assert.equal([...h.table.conns.all()].length, 0, 'no Conn object left');
      const entries = h.table.connView();
      assert.equal(entries.length, 3);
      assert.ok(
        entries.every((e) => e.state === 'TIME_WAIT' && e.vport === h.vport && e.dport === a!.port),
        JSON.stringify(entries),
      );
      const d = h.table.view().services[0]!.dests[0]!;
      assert.deepEqual([d.activeconns, d.inactconns], [0, 3]);
      h.advance(121_000);
      assert.equal(h.table.conns.size, 0);
      assert.equal(h.table.view().services[0]!.dests[0]!.inactconns, 0);
    });
  });
}
