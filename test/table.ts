/**
 * The one way tests build a table: an IpvsTable with every built-in scheduler, as the
 * daemon wires it. Options other than the scheduler lookup pass through.
 */
import { IpvsTable, type TableOptions } from '../src/core/table.js';
import { getScheduler } from '../src/schedulers/index.js';

/** A new table with the full scheduler registry. */
export function newTable(opts: Omit<TableOptions, 'schedulers'> = {}): IpvsTable {
  return new IpvsTable({ ...opts, schedulers: getScheduler });
}
