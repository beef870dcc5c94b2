/**
 * Models of tables for the nftables compiler's tests (ruleset.test.ts, without root) and
 * for the kernel tests that load the same transactions (kernel.test.ts).
 */
import { compileService, type Cmd } from '../../src/dataplane/nftables/nat.js';
import type { NftDest, NftModel, NftService } from '../../src/dataplane/nftables/ruleset.js';
import { fullLoad, TxnBuilder } from '../../src/dataplane/nftables/txn.js';

let nextMark = 1;
export function d(addr: string, port: number, extra: Partial<NftDest> = {}): NftDest {
  const weight = extra.weight ?? 1;
  return { addr, port, weight, lastWeight: weight || 1, overloaded: false, mark: nextMark++, ...extra };
}
export function svc(id: number, addr: string, port: number, extra: Partial<NftService> = {}): NftService {
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
    dests: [],
    ...extra,
  };
}

// Kernel list order: newest first. The seed adds .11 then .12.
export function seedModel(): NftModel {
  nextMark = 1;
  return { services: [svc(1, '198.18.0.1', 80, { dests: [d('198.19.0.12', 80, { mark: 2 }), d('198.19.0.11', 80, { mark: 1 })] })] };
}

export function representativeModel(): NftModel {
  nextMark = 10;
  return {
    services: [
      // wrr with persistence per /24 and a quiesced server.
      svc(2, '198.18.0.1', 443, {
        scheduler: 'wrr',
        persistent: 300,
        netmask: 0xffffff00,
        dests: [
          d('198.19.0.13', 443, { weight: 0, lastWeight: 2 }),
          d('198.19.0.12', 443, { weight: 3 }),
          d('198.19.0.11', 443, { weight: 2 }),
        ],
      }),
      // UDP sh with sh-fallback: the weight-0 server's buckets go to the probe's choice.
      svc(3, '198.18.0.1', 53, {
        protocol: 'udp',
        scheduler: 'sh',
        schedFlags: 1,
        dests: [d('198.19.0.12', 53, { weight: 0, lastWeight: 1 }), d('198.19.0.11', 53)],
      }),
      // mh with mh-port on a port-zero persistent service (all ports, real-server port 0).
      svc(4, '198.18.0.2', 0, {
        scheduler: 'mh',
        schedFlags: 2,
        persistent: 60,
        dests: [d('198.19.0.12', 0), d('198.19.0.11', 0, { overloaded: true })],
      }),
      // IPv6 dh with persistence per /64.
      svc(5, '2001:db8::1', 80, {
        scheduler: 'dh',
        persistent: 30,
        netmask: 64,
        dests: [d('2001:db8:1::12', 80), d('2001:db8:1::11', 80)],
      }),
    ],
  };
}

// The first-packet path: connection-count schedulers decided by the core through NFQUEUE.
export function queueModel(): NftModel {
  nextMark = 30;
  return {
    services: [
      // wlc with persistence: the core keeps the templates, so no persistence sets.
      svc(7, '198.18.0.1', 80, {
        scheduler: 'wlc',
        persistent: 300,
        dests: [d('198.19.0.12', 80, { weight: 0, lastWeight: 2 }), d('198.19.0.11', 80, { weight: 2 })],
      }),
      // A kernel scheduler next to it is untouched by the queue.
      svc(8, '198.18.0.1', 81, { dests: [d('198.19.0.11', 81)] }),
      // Port-zero UDP sed: its own map (@qservices0).
      svc(9, '198.18.0.2', 0, { protocol: 'udp', scheduler: 'sed', persistent: 60, dests: [d('198.19.0.12', 0), d('198.19.0.11', 0)] }),
      // IPv6 lc.
      svc(10, '2001:db8::1', 80, { scheduler: 'lc', dests: [d('2001:db8:1::11', 80)] }),
    ],
  };
}

/** Connection limits: the director-wide chain, a service limit, per-client sets (IPv4 and IPv6). */
export const LIMITS_MAX_CONNS = 10000;
export function limitsModel(): NftModel {
  nextMark = 40;
  return {
    services: [
      svc(11, '198.18.0.1', 80, {
        limits: { conns: 500, perClient: 20, global: true },
        dests: [d('198.19.0.12', 80), d('198.19.0.11', 80)],
      }),
      svc(12, '198.18.0.1', 53, { protocol: 'udp', limits: { conns: 0, perClient: 0, global: true }, dests: [d('198.19.0.11', 53)] }),
      svc(13, '2001:db8::1', 80, { limits: { conns: 0, perClient: 8, global: true }, dests: [d('2001:db8:1::11', 80)] }),
    ],
  };
}

/** The first transaction of a model with the director-wide limit. */
export const loadLimited = (m: NftModel): Cmd[] => fullLoad(m.services.map(compileService), [], LIMITS_MAX_CONNS).txn.commands();

/** The first transaction of a model: its whole table. */
export const load = (m: NftModel): Cmd[] => fullLoad(m.services.map(compileService), m.snat ?? []).txn.commands();

/** The commands that turn model `a` into model `b` (services matched by id). */
export function change(a: NftModel, b: NftModel): Cmd[] {
  const txn = new TxnBuilder();
  const prev = new Map(a.services.map((s) => [s.id, compileService(s)]));
  const next = new Map(b.services.map((s) => [s.id, compileService(s)]));
  for (const id of new Set([...prev.keys(), ...next.keys()])) txn.fragment(prev.get(id), next.get(id));
  return txn.commands();
}
