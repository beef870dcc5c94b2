/** Builders for core tests: services and real servers with ipvsadm's defaults. */
import type { DestConfig, ServiceConfig } from '../../src/core/types.js';
import type { IpvsTable } from '../../src/core/table.js';
import { newTable } from '../table.js';

export function svc(addr: string, port: number, extra: Partial<ServiceConfig> = {}): ServiceConfig {
  return {
    af: addr.includes(':') ? 6 : 4,
    protocol: 'tcp',
    addr,
    port,
    fwmark: 0,
    scheduler: 'wlc',
    schedFlags: 0,
    persistent: 0,
    netmask: addr.includes(':') ? 128 : 0xffffffff,
    ops: false,
    pe: '',
    ...extra,
  };
}

export function dest(addr: string, port: number, extra: Partial<DestConfig> = {}): DestConfig {
  return { af: addr.includes(':') ? 6 : 4, addr, port, weight: 1, fwd: 'masq', uThreshold: 0, lThreshold: 0, ...extra };
}

/** A table on a fake clock; advance it with `clock.t += ms`. */
export function fakeTable(): { table: IpvsTable; clock: { t: number } } {
  const clock = { t: 1_000_000 };
  return { table: newTable({ now: () => clock.t, randomU32: () => 0x12345678 }), clock };
}
