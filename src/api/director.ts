/**
 * The director as the API sees it: the seam between the control API and the daemon that
 * serves it. daemon/director.ts implements it; tests hand in their own.
 */
import type { IpvsTable } from '../core/table.js';
import type { Op } from '../core/types.js';
import type { DataPlane } from '../dataplane/dataplane.js';

/** Whether the live table is on disk (GET /v1/status and /v1/info `state`, /metrics `tsvs_state_*`). */
export interface SaveStatus {
  path: string;
  /** True when every change applied so far is on disk or within one fdatasync of it. */
  saved: boolean;
  /** When the store began running unsaved (ISO 8601), or null. */
  unsavedSince: string | null;
  /** Changes applied since then that the disk does not hold. */
  unsavedChanges: number;
  /** The last write error, e.g. "ENOSPC: no space left on device, write", or null. */
  lastError: string | null;
  /** Writes that failed since start. */
  failures: number;
}

/** What the routes, listings and /metrics need from the director. */
export interface ApiDirector {
  /** The core table that listings, views and connection lists read. */
  readonly table: IpvsTable;
  /** The data plane carrying the table: its name, forwarding methods, read-back and counters (health.ts dataPlaneCounters). */
  readonly dataplane: Pick<DataPlane, 'name' | 'methods' | 'refresh' | 'unbound'>;
  /** Applies a batch of operations all or nothing; resolves once it is applied and saved. */
  apply(ops: readonly Op[]): Promise<void>;
  /** Whether the live table is on disk; null (or absent) when tsvsd runs without --state. */
  saveStatus?(): SaveStatus | null;
}
