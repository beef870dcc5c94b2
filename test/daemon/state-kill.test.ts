/**
 * kill -9 of a real tsvsd during a stream of changes (tsvsadm and the API), past a
 * compaction of its state file: after a restart, every acknowledged change is there.
 */
import { strict as assert } from 'node:assert';
import { after, describe, test } from 'node:test';
import { freePort } from '../helper.js';
import { dest, service, startTsvsd, tsvsadm, type Tsvsd } from './spawn.js';

describe('tsvsd killed with SIGKILL during a stream of changes', () => {
  const daemons: Tsvsd[] = [];
  after(async () => {
    for (const d of daemons) await d.cleanup();
  });

  test('every acknowledged change is there after a restart, past a compaction', async () => {
    const d = await startTsvsd();
    daemons.push(d);
    const port = await freePort();
    // Eight services whose server weight the API stream raises one step at a time (one
    // change in flight per service, so the applied order is the issued order).
    const SERVICES = 8;
    const svcs = Array.from({ length: SERVICES }, (_, i) => service(`127.0.1.${i + 1}`, port));
    await d.client.apply(
      svcs.flatMap((s) => [
        { op: 'add-service' as const, service: s },
        { op: 'add-server' as const, service: s, dest: dest(1) },
      ]),
    );
    const ackedWeight = new Array<number>(SERVICES).fill(1);
    const issuedWeight = new Array<number>(SERVICES).fill(1);
    // tsvsadm adds services of its own, one command at a time.
    const ackedAdm: string[] = [];
    let issuedAdm = 0;
    let stop = false;
    let acks = 0;
    const deadline = Date.now() + 60_000;

    const apiStream = async (i: number) => {
      while (!stop) {
        const w = issuedWeight[i]! + 1;
        issuedWeight[i] = w;
        try {
          await d.client.apply([{ op: 'edit-server', service: svcs[i]!, dest: dest(w) }]);
        } catch {
          return; // killed
        }
        ackedWeight[i] = w;
        acks++;
      }
    };
    const admStream = async () => {
      for (let n = 1; !stop; n++) {
        const vip = `127.0.2.${n}:${port}`;
        issuedAdm = n;
        if (!(await tsvsadm(d.socket, ['-A', '-t', vip, '-s', 'rr']))) return;
        if (!(await tsvsadm(d.socket, ['-a', '-t', vip, '-r', '127.0.0.3:8080', '-m', '-w', '2']))) return;
        ackedAdm.push(vip);
      }
    };
    const streams = [...svcs.map((_, i) => apiStream(i)), admStream()];
    // Past the first compaction (the journal outgrows 256 KiB after ~900 of these records), then kill mid-stream.
    const compacted = () => /state file compacted/.test(d.logs());
    while (!(compacted() && acks > 1200 && ackedAdm.length >= 2) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.ok(compacted(), `compacted (after ${acks} acknowledged changes)`);
    await d.kill('SIGKILL');
    stop = true;
    await Promise.all(streams);
    process.stderr.write(`# kill -9 after ${acks} acknowledged API changes and ${ackedAdm.length} tsvsadm services\n`);

    const again = await startTsvsd([], { dir: d.dir });
    daemons.push(again);
    const table = await again.client.getTable();
    for (let i = 0; i < SERVICES; i++) {
      const s = table.services.find((x) => x.addr === svcs[i]!.addr)!;
      const w = s.dests[0]!.weight;
      assert.ok(
        w >= ackedWeight[i]! && w <= issuedWeight[i]!,
        `${s.addr}: weight ${w}, acknowledged ${ackedWeight[i]}, issued ${issuedWeight[i]}`,
      );
    }
    const present = new Set(table.services.map((s) => `${s.addr}:${s.port}`));
    for (const vip of ackedAdm) assert.ok(present.has(vip), `tsvsadm's ${vip} is there`);
    assert.ok(table.services.length <= SERVICES + issuedAdm);
    // Restarted from the snapshot and journal, the store starts over with a fresh snapshot and keeps going.
    await again.client.apply([{ op: 'edit-server', service: svcs[0]!, dest: dest(1) }]);
    assert.equal(await again.kill('SIGTERM'), 0);
  });
});
