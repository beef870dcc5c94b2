/**
 * The DR compiler (src/dataplane/nftables/dr.ts), without root: golden transactions of
 * `netdev tsvs` (fixtures/*.json; UPDATE_GOLDEN=1 rewrites them), the split between NAT
 * and DR services with its refusals, the scheduler rule shared with NAT, incremental
 * changes that keep the flow sets, and the read-back of flows and their states.
 */
import { strict as assert } from 'node:assert';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { compileDr, drTransaction, parseDrTable, splitDr, type DrModel, type DrService } from '../../src/dataplane/nftables/dr.js';
import { schedulerRule, type NftDest, type NftModel, type NftService } from '../../src/dataplane/nftables/ruleset.js';

const FIXTURES = join(import.meta.dirname, 'fixtures');
const TIMEOUTS = { tcp: 900, tcpfin: 120, udp: 300 };

function d(addr: string, mark: number, extra: Partial<NftDest> = {}): NftDest {
  const weight = extra.weight ?? 1;
  return { addr, port: 80, weight, lastWeight: weight || 1, overloaded: false, mark, fwd: 'route', ...extra };
}
function svc(id: number, addr: string, port: number, dests: NftDest[], extra: Partial<NftService> = {}): NftService {
  const af = addr.includes(':') ? 6 : 4;
  return {
    id,
    af,
    protocol: 'tcp',
    addr,
    port,
    scheduler: 'rr',
    schedFlags: 0,
    persistent: 0,
    netmask: af === 4 ? 0xffffffff : 128,
    dests,
    ...extra,
  };
}
const withDev = (s: NftService, dev = 'tsvslan0'): DrService => ({ ...s, dev, dests: s.dests.map((x) => ({ ...x, dev })) });

function render(cmds: unknown[]): string {
  return `{"nftables": [\n${cmds.map((c) => `  ${JSON.stringify(c)}`).join(',\n')}\n]}\n`;
}
function golden(name: string, cmds: unknown[]): void {
  const file = join(FIXTURES, `${name}.json`);
  const text = render(cmds);
  if (process.env.UPDATE_GOLDEN === '1') writeFileSync(file, text);
  assert.equal(text, readFileSync(file, 'utf8'), `${name}: generated ruleset differs from ${file} (UPDATE_GOLDEN=1 to accept)`);
}

/** The DR lab's service: VIP 198.19.0.100:80 rr over .11 and .12 (kernel order: newest first). */
export function seedDr(): DrModel {
  return { services: [withDev(svc(1, '198.19.0.100', 80, [d('198.19.0.12', 2), d('198.19.0.11', 1)]))], timeouts: TIMEOUTS };
}

/** wrr with /24 persistence, UDP sh, IPv6 port-zero mh on a second device. */
export function representativeDr(): DrModel {
  return {
    services: [
      withDev(
        svc(2, '198.19.0.100', 443, [d('198.19.0.12', 12, { port: 443, weight: 3 }), d('198.19.0.11', 11, { port: 443, weight: 1 })], {
          scheduler: 'wrr',
          persistent: 300,
          netmask: 0xffffff00,
        }),
      ),
      withDev(
        svc(3, '198.19.0.100', 53, [d('198.19.0.12', 22, { port: 53 }), d('198.19.0.11', 21, { port: 53 })], {
          protocol: 'udp',
          scheduler: 'sh',
        }),
      ),
      withDev(
        svc(4, '2001:db8:19::100', 0, [d('2001:db8:19::12', 32, { port: 0 }), d('2001:db8:19::11', 31, { port: 0 })], { scheduler: 'mh' }),
        'tsvslan1',
      ),
    ],
    timeouts: { tcp: 600, tcpfin: 60, udp: 120 },
  };
}

describe('DR compiler', () => {
  test('the seed DR service: golden transaction', () => {
    golden('dr-seed', drTransaction(undefined, compileDr(seedDr())));
  });

  test('wrr+persistence, UDP sh, IPv6 port-zero mh on two devices: golden transaction', () => {
    golden('dr-representative', drTransaction(undefined, compileDr(representativeDr())));
  });

  test('a new flow is scheduled by the same rule as NAT, and a known flow never reaches it', () => {
    const m = seedDr();
    const rs = compileDr(m)!;
    const chain = rs.chains.find((c) => c.name === 'svc1')!;
    // Known flows first, one per server; then the SYN gate; then NAT's scheduler rule.
    assert.deepEqual(chain.rules[0], [
      {
        match: {
          op: '==',
          left: {
            concat: [
              { payload: { protocol: 'ip', field: 'saddr' } },
              { payload: { protocol: 'th', field: 'sport' } },
              { payload: { protocol: 'th', field: 'dport' } },
            ],
          },
          right: '@flows2',
        },
      },
      { goto: { target: 'fwd2' } },
    ]);
    assert.match(JSON.stringify(chain.rules[1]), /@flows1/);
    assert.equal(JSON.stringify(chain.rules[2]).includes('"return"'), true);
    assert.deepEqual(chain.rules[3], schedulerRule(m.services[0] as unknown as NftService));
    // Only the new-flow chain rs<M> counts a connection; fwd<M> forwards without rewriting.
    const rs2 = rs.chains.find((c) => c.name === 'rs2')!;
    assert.deepEqual(rs2.rules, [[{ counter: 'conns2' }, { goto: { target: 'fwd2' } }]]);
    const fwd2 = rs.chains.find((c) => c.name === 'fwd2')!;
    for (const rule of fwd2.rules.slice(1)) assert.deepEqual(rule.at(-1), { fwd: { dev: 'tsvslan0', family: 'ip', addr: '198.19.0.12' } });
    assert.equal(JSON.stringify(fwd2).includes('dnat'), false);
  });

  test('TCP flows get the input-only timeouts: SYN 60 s, established --set tcp, FIN --set tcpfin, RST 10 s', () => {
    const m = seedDr();
    m.timeouts = { tcp: 901, tcpfin: 121, udp: 301 };
    const fwd = compileDr(m)!.chains.find((c) => c.name === 'fwd1')!;
    const timeoutOf = (rule: unknown[]) =>
      (rule.find((s) => JSON.stringify(s).includes('@flows1')) as { set: { elem: { elem: { timeout: number } } } }).set.elem.elem.timeout;
    const [, rst, fin, afterFin, syn, est] = fwd.rules;
    assert.match(JSON.stringify(rst![0]), /"rst"/);
    assert.equal(timeoutOf(rst!), 10);
    assert.match(JSON.stringify(fin![0]), /"fin"/);
    assert.equal(timeoutOf(fin!), 121);
    assert.match(JSON.stringify(afterFin![0]), /@fin1/);
    assert.equal(timeoutOf(afterFin!), 121);
    assert.equal(timeoutOf(syn!), 60);
    assert.equal(timeoutOf(est!), 901);
  });

  test('UDP: every datagram schedules or refreshes, with the UDP timeout; no SYN gate', () => {
    const m = representativeDr();
    const rs = compileDr(m)!;
    assert.equal(
      rs.chains.find((c) => c.name === 'svc3')!.rules.some((r) => JSON.stringify(r).includes('"return"')),
      false,
    );
    assert.match(JSON.stringify(rs.chains.find((c) => c.name === 'fwd21')!.rules[1]), /"timeout":120/);
    assert.equal(
      rs.sets.some((s) => s.name === 'fin21'),
      false,
    );
  });

  test('no DR service: no netdev table, and one left from a crash is removed at start', () => {
    assert.equal(compileDr({ services: [], timeouts: TIMEOUTS }), null);
    assert.deepEqual(drTransaction(null, null), []);
    assert.deepEqual(drTransaction(undefined, null), [
      { add: { table: { family: 'netdev', name: 'tsvs' } } },
      { delete: { table: { family: 'netdev', name: 'tsvs' } } },
    ]);
  });

  test('an incremental change keeps flow sets and counters of servers that stay', () => {
    const before = compileDr(seedDr())!;
    const m = seedDr();
    m.services[0]!.dests.shift(); // .12 goes
    const cmds = drTransaction(before, compileDr(m));
    const text = JSON.stringify(cmds);
    assert.doesNotMatch(text, /"add":\{"set"[^}]*"flows1"/);
    assert.doesNotMatch(text, /"delete":\{"table"/);
    assert.match(text, /"delete":\{"set":\{"family":"netdev","table":"tsvs","name":"flows2"\}/);
    assert.match(text, /"delete":\{"counter":\{"family":"netdev","table":"tsvs","name":"conns2"\}/);
    assert.doesNotMatch(text, /"delete":\{"counter":\{"family":"netdev","table":"tsvs","name":"conns1"\}/);
    golden('dr-incremental', cmds);
  });

  test('split: NAT services stay with NAT; DR services are refused when they mix methods, map ports or need a queue scheduler', () => {
    const nat = svc(9, '198.18.0.1', 80, [d('198.19.0.11', 5, { fwd: 'masq' })]);
    const dr = svc(1, '198.19.0.100', 80, [d('198.19.0.11', 1)]);
    const model: NftModel = { services: [nat, dr] };
    const s = splitDr(model);
    assert.deepEqual(s.nat.services, [nat]);
    assert.deepEqual(s.dr, [dr]);
    assert.throws(
      () => splitDr({ services: [svc(1, '198.19.0.100', 80, [d('198.19.0.11', 1), d('198.19.0.12', 2, { fwd: 'masq' })])] }),
      /TCP 198\.19\.0\.100:80: real server 198\.19\.0\.12 uses masq while 198\.19\.0\.11 uses route/,
    );
    assert.throws(
      () => splitDr({ services: [svc(1, '198.19.0.100', 80, [d('198.19.0.11', 1, { port: 8080 })])] }),
      /198\.19\.0\.11:8080: direct routing \(-g\) cannot map ports/,
    );
    assert.throws(
      () => splitDr({ services: [svc(1, '198.19.0.100', 80, [d('198.19.0.11', 1)], { scheduler: 'wlc' })] }),
      /scheduler wlc cannot run with direct routing/,
    );
  });

  test('read-back: flows become connections with IPVS states; counters by name', () => {
    const json = JSON.stringify({
      nftables: [
        { counter: { family: 'netdev', name: 'conns1', table: 'tsvs', packets: 3, bytes: 180 } },
        {
          set: {
            family: 'netdev',
            name: 'flows1',
            table: 'tsvs',
            type: ['ipv4_addr', 'inet_service', 'inet_service'],
            elem: [
              { elem: { val: { concat: ['198.18.0.10', 40000, 80] }, timeout: 60, expires: 59 } },
              { elem: { val: { concat: ['198.18.0.10', 40001, 80] }, timeout: 60, expires: 880 } },
              { elem: { val: { concat: ['198.18.0.10', 40002, 80] }, timeout: 60, expires: 100 } },
              { elem: { val: { concat: ['198.18.0.10', 40003, 80] }, timeout: 10, expires: 8 } },
            ],
          },
        },
        {
          set: {
            family: 'netdev',
            name: 'fin1',
            table: 'tsvs',
            elem: [
              { elem: { val: { concat: ['198.18.0.10', 40002, 80] }, expires: 100 } },
              { elem: { val: { concat: ['198.18.0.10', 40003, 80] }, timeout: 10, expires: 8 } },
            ],
          },
        },
        {
          set: {
            family: 'netdev',
            name: 'flows7',
            table: 'tsvs',
            elem: [{ elem: { val: { concat: ['198.18.0.10', 5353, 53] }, expires: 250 } }],
          },
        },
      ],
    });
    const { flows, counters } = parseDrTable(json, new Set([1]));
    assert.deepEqual(counters.get('conns1'), { packets: 3, bytes: 180 });
    assert.deepEqual(
      flows.map((f) => [f.mark, f.cport, f.state, f.expires]),
      [
        [1, 40000, 'SYN_RECV', 59],
        [1, 40001, 'ESTABLISHED', 880],
        [1, 40002, 'FIN_WAIT', 100],
        [1, 40003, 'CLOSE', 8],
        [7, 5353, '', 250],
      ],
    );
  });
});
