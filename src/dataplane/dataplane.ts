/**
 * The data plane interface. A data plane puts the core table into effect: it carries the
 * packets (or connections) of every virtual service to the real servers the table
 * schedules, and reports traffic back into the table's counters and connection states.
 *
 * It follows the table through a TableListener (IpvsTable.subscribe); `prepare` lets it
 * refuse a batch it cannot carry before anything changes.
 */
import type { IpvsTable } from '../core/table.js';
import { TsvsError } from '../core/errors.js';
import type { FwdMethod, Op } from '../core/types.js';

/** A plane could not bind a service's address (code DATAPLANE): `errno` says why (EADDRINUSE, EADDRNOTAVAIL, EACCES, ...). */
export class BindError extends TsvsError {
  constructor(
    detail: string,
    message: string,
    readonly errno: string,
  ) {
    super('DATAPLANE', detail, message);
  }
}

/** A service in the table that the plane could not put into effect yet (a port another program holds). */
export interface UnboundService {
  /** ipvsadm's name for it: "TCP 127.0.0.1:8080". */
  service: string;
  /** The errno of the last try, e.g. EADDRINUSE. */
  errno: string;
  /** The whole reason, with what to do. */
  message: string;
  /** When it first failed (ISO 8601). */
  since: string;
  /** Tries so far; the plane keeps trying with a bounded backoff while the service is in the table. */
  attempts: number;
}

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
  /** Services in the table that the plane does not carry yet and keeps trying to (the userspace plane's binds). */
  unbound?(): UnboundService[];
  /**
   * Stops accepting new connections, waits up to `drainMs` for open ones to finish, then
   * closes everything and detaches from the table.
   */
  stop(drainMs: number): Promise<void>;
}
