/**
 * Data plane selection (`tsvsd --dataplane NAME`). Each plane lives in its own folder
 * and implements DataPlane (dataplane.ts).
 */
import type { LogFn } from '../core/log.js';
import type { DataPlane } from './dataplane.js';
import type { LimitArgs } from './limits-args.js';
import { UserspaceDataPlane } from './userspace/index.js';

export const DATAPLANE_NAMES = ['userspace', 'nftables'] as const;
export type DataPlaneName = (typeof DATAPLANE_NAMES)[number];

export interface DataPlaneOptions {
  log: LogFn;
  /** Userspace plane: worker threads carrying TCP (tsvsd --workers); default 1. */
  workers?: number;
  /** Connection limits (tsvsd --max-conns ...; limits-args.ts). */
  limits?: LimitArgs;
}

export async function createDataPlane(name: DataPlaneName, opts: DataPlaneOptions): Promise<DataPlane> {
  switch (name) {
    case 'userspace': {
      // TSVS_TRANSPARENT_SETUP=1: install (and remove at exit) the reply routing of
      // transparent services (nft table inet tsvs, ip rule, local route); docs/userspace.md.
      const { redispatchRetries, ...limits } = opts.limits ?? {};
      return new UserspaceDataPlane({
        log: opts.log,
        workers: opts.workers ?? 1,
        transparentRouting: process.env.TSVS_TRANSPARENT_SETUP === '1',
        limits,
        ...(redispatchRetries !== undefined ? { redispatchRetries } : {}),
      });
    }
    case 'nftables': {
      // Loaded on demand: only a kernel-NAT director needs it. TSVS_NFT_SETUP=sysctl lets it
      // set forwarding and rp_filter itself, TSVS_NFT_SNAT=NET adds the outbound masquerade
      // (both logged); see docs/nftables.md.
      const { NftablesDataPlane } = await import('./nftables/plane.js');
      const l = opts.limits ?? {};
      if (l.maxUdpFlows !== undefined || l.fdReserve !== undefined || l.redispatchRetries !== undefined)
        opts.log('warn', '--max-udp-flows, --fd-reserve and --redispatch-retries apply to the userspace data plane only; ignored', {});
      return new NftablesDataPlane({
        log: opts.log,
        setup: process.env.TSVS_NFT_SETUP ?? '',
        snat: process.env.TSVS_NFT_SNAT ?? '',
        limits: { maxConns: l.maxConns ?? 0, perService: l.maxConnsPerService ?? 0, perClient: l.maxConnsPerClient ?? 0 },
      });
    }
  }
}
