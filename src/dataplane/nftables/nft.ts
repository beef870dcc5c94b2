/**
 * Talking to nftables: a JSON transaction goes to `nft -j -f FILE` (a temp file: nft
 * cannot read `-f -` when Node spawns it, its stdin being a socket). One transaction is
 * atomic in the kernel. Named counters and persistence sets are read back over netlink
 * (nftread.ts), in the runner's namespace.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TsvsError } from '../../core/errors.js';
import { runnerNsPath, type Runner } from './exec.js';
import { readCounters, readCountersByName, readSetElements, type CounterValue } from './nftread.js';
import { TABLE } from './ruleset.js';

/** Applies one nft JSON transaction; rejects with TsvsError DATAPLANE carrying nft's message. */
export async function nftApply(run: Runner, doc: unknown, what: string): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'tsvs-nft-'));
  const file = join(dir, 'ruleset.json');
  try {
    await writeFile(file, JSON.stringify(doc), { mode: 0o600 });
    const r = await run('nft', ['-j', '-f', file]);
    if (r.code !== 0) {
      const msg = r.stderr.trim().split('\n').slice(0, 6).join(' | ');
      throw new TsvsError('DATAPLANE', `nftables: ${what}: nft -j -f failed: ${msg}`, `nftables rejected the change (${what}): ${msg}`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export type { CounterValue } from './nftread.js';

/**
 * The named counters of both tsvs tables, by name ("ip/in3"). Missing tables read as empty.
 * Without `names` each table is dumped, which the kernel does in 32 KiB chunks that each
 * restart the walk of the table's objects: quadratic, 12 s for 120,000 counters here. With
 * `names` (per family) only those are read, one GETOBJ each: linear, about 20 us a name.
 */
export async function nftCounters(
  run: Runner,
  names?: Partial<Record<'ip' | 'ip6', readonly string[]>>,
): Promise<Map<string, CounterValue>> {
  if (names) {
    const out = new Map<string, CounterValue>();
    for (const family of ['ip', 'ip6'] as const) {
      const list = names[family];
      if (list?.length) for (const [k, v] of await nftCountersByName(run, family, list)) out.set(k, v);
    }
    return out;
  }
  const out = new Map<string, CounterValue>();
  for (const family of ['ip', 'ip6'] as const) {
    for (const [name, v] of await readCounters(runnerNsPath(run), family, TABLE)) out.set(`${family}/${name}`, v);
  }
  return out;
}

/**
 * Only the named counters `names` of one family's tsvs table, by name ("ip/in3"): a listing
 * of one service costs its own counters, not a dump of the table. Missing ones are left out.
 */
export async function nftCountersByName(run: Runner, family: 'ip' | 'ip6', names: readonly string[]): Promise<Map<string, CounterValue>> {
  const out = new Map<string, CounterValue>();
  for (const [name, v] of await readCountersByName(runnerNsPath(run), family, TABLE, names)) out.set(`${family}/${name}`, v);
  return out;
}

/** `nft --version`, or null when nft is not installed. */
export async function nftVersion(run: Runner): Promise<string | null> {
  const r = await run('nft', ['--version'], 5000);
  return r.code === 0 ? r.stdout.trim() : null;
}

export interface PersistElement {
  /** The set's name (persist<mark>_...). */
  set: string;
  /** The client address (network, under -M). */
  addr: string;
  /** Seconds left. */
  expires: number;
}

/** Every element of the persistence sets of one family's table (sets that do not exist read as empty). */
export async function nftPersistElements(run: Runner, family: 'ip' | 'ip6', sets: string[]): Promise<PersistElement[]> {
  const out: PersistElement[] = [];
  for (const name of sets) {
    for (const e of await readSetElements(runnerNsPath(run), family, TABLE, name)) {
      out.push({ set: name, addr: e.key, expires: (e.expiresMs || e.timeoutMs) / 1000 });
    }
  }
  return out;
}
