/**
 * Property: what -S prints, read back by the parser (line by line, or all at once through
 * -R), gives exactly the operations that rebuild the table. Tables are generated from a
 * seeded PRNG within what ipvsadm can express (-S does not save thresholds; DR and
 * tunnel servers of address services always use the virtual port).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { parseCommand, type ParseEnv } from '../../src/ipvsadm/parse.js';
import { builtinServices } from '../../src/ipvsadm/services.js';
import { sortedServices } from '../../src/ipvsadm/format.js';
import type { DestView, FwdMethod, Op, Protocol, ServiceView, TableView } from '../../src/core/types.js';
import { SCHED_FLAG_1, SCHED_FLAG_2, SCHED_FLAG_3 } from '../../src/core/types.js';
import { FakeApi, dest, emptyTable, run, stubResolver, svc } from './fake-api.js';
import { ipv4Table, ipv6Table, sortTable } from './fixtures/tables.js';

/** mulberry32: small, seeded, good enough to pick test data. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomTable(seed: number): TableView {
  const rnd = prng(seed);
  const int = (lo: number, hi: number) => lo + Math.floor(rnd() * (hi - lo + 1));
  const pick = <T>(xs: readonly T[]): T => xs[int(0, xs.length - 1)]!;
  const v4 = () => `${int(1, 254)}.${int(0, 255)}.${int(0, 255)}.${int(1, 254)}`;
  const v6 = () => `2001:db8:${int(0, 0xffff).toString(16)}::${int(1, 0xffff).toString(16)}`;
  const services: ServiceView[] = [];
  const seen = new Set<string>();
  const n = int(1, 6);
  while (services.length < n) {
    const fw = rnd() < 0.25 ? int(1, 4294967295) : 0;
    const af = rnd() < 0.35 ? 6 : 4;
    const protocol: Protocol = fw ? 'tcp' : pick(['tcp', 'udp', 'sctp'] as const);
    const persistent = rnd() < 0.4 ? int(1, 86400 * 31) : 0;
    const scheduler = pick(['rr', 'wrr', 'lc', 'wlc', 'sh', 'mh', 'sed', 'nq', 'fo', 'ovf']);
    const flagChoices =
      scheduler === 'sh' || scheduler === 'mh'
        ? [0, SCHED_FLAG_1, SCHED_FLAG_2, SCHED_FLAG_1 | SCHED_FLAG_2]
        : [0, SCHED_FLAG_1, SCHED_FLAG_3, SCHED_FLAG_1 | SCHED_FLAG_2 | SCHED_FLAG_3];
    const addr = fw ? (af === 6 ? '::' : '0.0.0.0') : af === 6 ? v6() : v4();
    const port = fw ? 0 : persistent && rnd() < 0.2 ? 0 : int(1, 65535);
    let netmask = af === 6 ? 128 : 0xffffffff;
    if (persistent && rnd() < 0.5) netmask = af === 6 ? int(1, 128) : (0xffffffff << int(0, 31)) >>> 0;
    const key = `${fw}|${af}|${protocol}|${addr}|${port}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const s = svc({
      af,
      protocol,
      addr,
      port,
      fwmark: fw,
      scheduler,
      schedFlags: pick(flagChoices),
      persistent,
      netmask,
      ops: (fw !== 0 || protocol === 'udp') && rnd() < 0.3,
      pe: persistent && rnd() < 0.2 ? 'sip' : '',
    });
    const dseen = new Set<string>();
    const nd = int(0, 4);
    while (s.dests.length < nd) {
      const fwd: FwdMethod = pick(['masq', 'route', 'tunnel', 'fullnat'] as const);
      const daf = fwd === 'tunnel' && rnd() < 0.3 ? (af === 6 ? 4 : 6) : af;
      const daddr = daf === 6 ? v6() : v4();
      const dport = !fw && (fwd === 'route' || fwd === 'tunnel') ? port : int(0, 65535);
      if (dseen.has(`${daddr}|${dport}`)) continue;
      dseen.add(`${daddr}|${dport}`);
      const d: DestView = dest({ addr: daddr, port: dport, fwd, weight: int(0, 65535) });
      if (fwd === 'tunnel') {
        const type = pick(['ipip', 'gue', 'gre'] as const);
        d.tunnel =
          type === 'ipip'
            ? { type }
            : type === 'gue'
              ? { type, port: int(1, 65535), csum: pick(['nocsum', 'csum', 'remcsum'] as const) }
              : { type, csum: pick(['nocsum', 'csum'] as const) };
      }
      s.dests.push(d);
    }
    services.push(s);
  }
  return { ...emptyTable(), services };
}

/** The operations that rebuild `table`, in -S order. */
function expectedOps(table: TableView): Op[] {
  const ops: Op[] = [];
  for (const s of sortedServices(table.services)) {
    const key = { af: s.af, protocol: s.protocol, addr: s.addr, port: s.port, fwmark: s.fwmark };
    // sh and mh have no -b name for flag-3, so -S cannot save it (nor can ipvsadm).
    const schedFlags = s.scheduler === 'sh' || s.scheduler === 'mh' ? s.schedFlags & (SCHED_FLAG_1 | SCHED_FLAG_2) : s.schedFlags;
    ops.push({
      op: 'add-service',
      service: { ...key, scheduler: s.scheduler, schedFlags, persistent: s.persistent, netmask: s.netmask, ops: s.ops, pe: s.pe },
    });
    for (const d of s.dests) {
      ops.push({
        op: 'add-server',
        service: key,
        dest: {
          af: d.af,
          addr: d.addr,
          port: d.port,
          weight: d.weight,
          fwd: d.fwd,
          uThreshold: 0,
          lThreshold: 0,
          ...(d.fwd === 'tunnel' ? { tunnel: d.tunnel ?? { type: 'ipip' } } : {}),
        },
      });
    }
  }
  return ops;
}

const env: ParseEnv = { progName: 'ipvsadm', services: builtinServices, lookupHost: stubResolver.lookupHost };

async function parseRules(text: string): Promise<Op[]> {
  const ops: Op[] = [];
  for (const line of text.split('\n').filter(Boolean)) {
    const c = await parseCommand(line.split(' '), env);
    if (c.cmd !== 'apply') assert.fail(`${line}: ${JSON.stringify(c)}`);
    ops.push(c.op);
  }
  return ops;
}

async function save(table: TableView, numeric: boolean): Promise<string> {
  const r = await run(numeric ? ['-Sn'] : ['-S'], new FakeApi(table));
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

describe('-S output parses back into the same operations', () => {
  for (let seed = 1; seed <= 60; seed++) {
    it(`random table #${seed}`, async () => {
      const table = randomTable(seed);
      const text = await save(table, true);
      assert.deepEqual(await parseRules(text), expectedOps(table), text);
    });
  }

  for (const [name, mk] of [
    ['ipv4Table', ipv4Table],
    ['ipv6Table', ipv6Table],
    ['sortTable', sortTable],
  ] as const) {
    it(`fixture ${name}`, async () => {
      const table = mk();
      assert.deepEqual(await parseRules(await save(table, true)), expectedOps(table));
    });
  }

  it('names and port names survive the trip without -n (IPv4)', async () => {
    const table = {
      ...emptyTable(),
      services: [
        svc({
          addr: '10.0.0.1',
          port: 80,
          dests: [dest({ addr: '127.0.0.1', port: 80, fwd: 'masq' }), dest({ addr: '192.0.2.5', port: 8080, fwd: 'masq' })],
        }),
        svc({ protocol: 'udp', addr: '127.0.0.1', port: 53, scheduler: 'rr' }),
      ],
    };
    const text = await save(table, false);
    assert.match(text, /^-A -t lb\.example\.com:http -s wlc$/m);
    assert.match(text, /-r localhost:http -m -w 1$/m);
    assert.match(text, /^-A -u localhost:domain -s rr$/m);
    assert.deepEqual(await parseRules(text), expectedOps(table));
  });

  it('-R applies the whole -S output in one call', async () => {
    const table = randomTable(99);
    const api = new FakeApi();
    const r = await run(['-R'], api, { stdin: await save(table, true) });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(api.applied, [expectedOps(table)]);
  });
});
