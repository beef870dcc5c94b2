/**
 * The director as the API sees it: the seam between the control API and the daemon that
 * serves it. daemon/director.ts implements it; tests hand in their own.
 */
import type { IpvsTable } from '../core/table.js';
import type { Op } from '../core/types.js';
import type { DataPlane } from '../dataplane/dataplane.js';

/** What the routes, listings and /metrics need from the director. */
export interface ApiDirector {
  /** The core table that listings, views and connection lists read. */
  readonly table: IpvsTable;
  /** The data plane carrying the table: its name, forwarding methods, read-back and counters (health.ts dataPlaneCounters). */
  readonly dataplane: Pick<DataPlane, 'name' | 'methods' | 'refresh'>;
  /** Applies a batch of operations all or nothing; resolves once it is applied and saved. */
  apply(ops: readonly Op[]): Promise<void>;
}
