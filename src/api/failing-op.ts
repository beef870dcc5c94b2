/**
 * Which operation of a refused batch was the one refused, so that `tsvsadm -R` can name
 * the input line. The core names the object in its error but not the position, and
 * re-validating every prefix of a 50,000-operation batch would cost seconds; so only the
 * operations that name the same object are tried, in order, each by validating the batch
 * up to it. Validation is pure: nothing is applied.
 */
import type { TsvsError } from '../core/errors.js';
import { destId, serviceLabel } from '../core/service.js';
import type { IpvsTable } from '../core/table.js';
import type { Op } from '../core/types.js';

/** The most candidates tried; past that the answer simply has no index. */
const MAX_CANDIDATES = 4;

/** Whether an error detail is about this operation's object ("TCP 10.0.0.1:80: ..."). */
function names(detail: string, op: Op): boolean {
  // The batch is what a client sent: an item may be no object at all (the refusal says so).
  if (!op || typeof op !== 'object' || !('service' in op) || !op.service || typeof op.service !== 'object') return false;
  let label: string;
  try {
    label = serviceLabel(op.service);
  } catch {
    return false;
  }
  if (!detail.startsWith(label) || !/^[: ]/.test(detail.slice(label.length))) return false;
  if ('dest' in op && op.dest && typeof op.dest === 'object') {
    try {
      return detail.includes(destId(op.dest));
    } catch {
      return false;
    }
  }
  return true;
}

/**
 * The index in `ops` of the operation that `err` refused, or undefined when it cannot be
 * told cheaply (the table changed since, or the refusal came from the data plane).
 */
export function failingOpIndex(table: IpvsTable, ops: readonly Op[], err: TsvsError): number | undefined {
  let tried = 0;
  for (let i = 0; i < ops.length && tried < MAX_CANDIDATES; i++) {
    if (!names(err.detail, ops[i]!)) continue;
    tried++;
    try {
      table.validate(ops.slice(0, i + 1));
    } catch (e) {
      if ((e as TsvsError).code === err.code) return i;
      return undefined;
    }
  }
  return undefined;
}
