/**
 * The data plane interface. A data plane puts the core table into effect: it carries the
 * packets (or connections) of every virtual service to the real servers the table
 * schedules, and reports traffic back into the table's counters and connection states.
 *
 * It follows the table through a TableListener (IpvsTable.subscribe); `prepare` lets it
 * refuse a batch it cannot carry before anything changes.
 */
import type { IpvsTable } from '../core/table.js';
import type { FwdMethod, Op } from '../core/types.js';

export interface DataPlane {
  /** `userspace` or `nftables`, as `tsvsd --dataplane` names it. */
  readonly name: string;
  /** Forwarding methods this plane can carry. A real server with another one is refused. */
  readonly methods: ReadonlySet<FwdMethod>;
  /** Takes over the table's current contents and follows its changes from now on. */
  start(table: IpvsTable): Promise<void>;
  /**
   * Called with a validated batch before it is applied. Rejects with a TsvsError (code
   * DATAPLANE or NOT_SUPPORTED, naming the object) when the plane cannot put the batch into
   * effect, e.g. a VIP that is not a local address; on rejection nothing may have changed.
   * Resources it acquires (bound listeners) are taken into use when the batch's changes
   * arrive, and released by `abort` if the batch is not applied after all.
   */
  prepare(ops: readonly Op[]): Promise<void>;
  /** Releases what `prepare` acquired for a batch that was not applied. */
  abort(ops: readonly Op[]): void;
  /**
   * Brings the table's counters and connection entries up to date with the data plane,
   * for a plane that learns them by polling (nftables reads the kernel back once a second).
   * Listings call it first, so `tsvsadm -Ln --stats` right after traffic shows that traffic.
   */
  refresh?(): Promise<void>;
  /**
   * Stops accepting new connections, waits up to `drainMs` for open ones to finish, then
   * closes everything and detaches from the table.
   */
  stop(drainMs: number): Promise<void>;
}
