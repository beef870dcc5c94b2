/**
 * Typed errors with stable codes. Each code maps to the message ipvsadm prints for the
 * kernel errno it stands for (libipvs `ipvs_strerror`), so tsvsadm can reproduce
 * ipvsadm's output byte for byte, and to an HTTP status for the API. `detail` names the
 * object, for logs and the API ("TCP 10.0.0.1:80: Service already exists").
 */

export const ERROR_CODES = {
  SERVICE_EXISTS: { message: 'Service already exists', status: 409 },
  NO_SERVICE: { message: 'No such service', status: 404 },
  SERVICE_NOT_DEFINED: { message: 'Service not defined', status: 404 },
  DEST_EXISTS: { message: 'Destination already exists', status: 409 },
  NO_DEST: { message: 'No such destination', status: 404 },
  SCHEDULER_NOT_FOUND: { message: 'Scheduler or persistence engine not found', status: 400 },
  /** strerror(ERANGE): the kernel's answer to weight < 0 or lthreshold > uthreshold. */
  OUT_OF_RANGE: { message: 'Numerical result out of range', status: 400 },
  /** The kernel's EINVAL text; also used for values the kernel would refuse. */
  INVALID: { message: 'Invalid operation.  Possibly wrong module version, address not unicast, ...', status: 400 },
  AF_NOT_SUPPORTED: { message: 'Operation not supported with specified address family', status: 400 },
  /** The data plane cannot do what was asked (e.g. DR on the userspace proxy). */
  NOT_SUPPORTED: { message: 'Operation not supported', status: 422 },
  /** The data plane could not put the change into effect (e.g. a VIP that is not local). */
  DATAPLANE: { message: 'Data plane error', status: 422 },
  /** --start-daemon for a state that already runs (EEXIST from ipvs_start_daemon). */
  DAEMON_EXISTS: { message: 'Daemon has already run', status: 409 },
  /** --stop-daemon for a state that does not run (ESRCH from ipvs_stop_daemon). */
  NO_DAEMON: { message: 'No daemon is running', status: 404 },
  /** strerror(ENODEV): the sync daemon's --mcast-interface does not exist. */
  NO_DEVICE: { message: 'No such device', status: 400 },
  /** A request that does not have the shape of an operation. */
  BAD_REQUEST: { message: 'Bad request', status: 400 },
  /** No real server could be chosen for a new connection. */
  NO_DESTINATION: { message: 'no destination available', status: 503 },
  UNAUTHORIZED: { message: 'Unauthorized', status: 401 },
  INTERNAL: { message: 'Internal error', status: 500 },
  /**
   * The change is live but the state file could not hold it (full or read-only disk):
   * tsvsd runs unsaved until the disk takes the whole table again. 507 Insufficient
   * Storage; tsvsadm exits 3 for it, not 255 (docs/state.md).
   */
  NOT_SAVED: { message: 'Change applied but not saved', status: 507 },
} as const satisfies Record<string, { message: string; status: number }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export class TsvsError extends Error {
  readonly code: ErrorCode;
  /** The same problem with the object named, for logs and API clients. */
  readonly detail: string;
  readonly status: number;

  /**
   * @param message overrides the code's standard text where the standard text is not
   *   what ipvsadm would print (e.g. a data plane refusal explains itself).
   */
  constructor(code: ErrorCode, detail: string, message?: string) {
    super(message ?? ERROR_CODES[code].message);
    this.name = 'TsvsError';
    this.code = code;
    this.detail = detail;
    this.status = ERROR_CODES[code].status;
  }

  toJSON(): { code: ErrorCode; message: string; detail: string } {
    return { code: this.code, message: this.message, detail: this.detail };
  }
}

export function isTsvsError(e: unknown): e is TsvsError {
  return e instanceof TsvsError;
}
