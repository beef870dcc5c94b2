/**
 * Listings read through ControlApi.streamTable (what tsvsadm does against tsvsd) print
 * exactly what the same table read whole through getTable prints.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { TableStream } from '../../src/api/control.js';
import type { TableView } from '../../src/core/types.js';
import { dest, FakeApi, run, svc } from './fake-api.js';
import { ipv4Table, sortTable } from './fixtures/tables.js';

/** A FakeApi that also streams, as HttpControlClient does. */
class StreamingApi extends FakeApi {
  streamed = 0;
  override async getTable(): Promise<TableView> {
    throw new Error('a streaming client must not read the table whole for this listing');
  }
  async streamTable(): Promise<TableStream> {
    this.streamed++;
    const { services, ...rest } = this.table;
    return {
      head: { ...rest, count: services.length },
      services: (async function* () {
        yield* services;
      })(),
    };
  }
}

/** A table large enough to cross the writer's batches, in no particular order. */
function bigTable(): TableView {
  const t = ipv4Table();
  for (let i = 0; i < 1500; i++) {
    const s = svc({
      protocol: i % 3 ? 'tcp' : 'udp',
      addr: `10.${(i * 7) % 256}.${i % 13}.1`,
      port: 1000 + ((i * 31) % 5000),
      scheduler: 'wrr',
    });
    s.dests = [4, 2, 3, 1].map((k) => dest({ addr: `192.168.${k}.${(i % 200) + 1}`, port: 80 + k, weight: k }));
    t.services.push(s);
  }
  return t;
}

describe('streamed listings equal whole ones', () => {
  const tables: Array<[string, () => TableView]> = [
    ['ipv4 fixture', ipv4Table],
    ['sort fixture', sortTable],
    ['1,500 services', bigTable],
  ];
  const listings = [
    ['-Ln'],
    ['-L'],
    ['-Sn'],
    ['-S'],
    ['-Ln', '--stats'],
    ['-Ln', '--rate'],
    ['-Ln', '--exact', '--stats'],
    ['-Ln', '--thresholds'],
    ['-Ln', '--persistent-conn'],
    ['-Ln', '--tun-info'],
    ['-Ln', '--nosort'],
  ];
  for (const [name, make] of tables) {
    for (const argv of listings) {
      it(`${name}: ${argv.join(' ')}`, async () => {
        const whole = await run(argv, new FakeApi(make()));
        const api = new StreamingApi(make());
        const streamed = await run(argv, api);
        assert.equal(api.streamed, 1);
        assert.equal(whole.code, 0, whole.stderr);
        assert.deepEqual(streamed, whole);
      });
    }
  }
});
