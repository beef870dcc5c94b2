/**
 * Talking to nftables: a JSON transaction goes to `nft -j -f FILE` (a temp file: nft
 * cannot read `-f -` when Node spawns it, its stdin being a socket), and named counters are
 * read back with `nft -j list counters`. One transaction is atomic in the kernel.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TsvsError } from '../../core/errors.js';
import type { Runner } from './exec.js';
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

export interface CounterValue {
  packets: number;
  bytes: number;
}

/** The named counters of both tsvs tables, by name ("ip/in3"). Missing tables read as empty. */
export async function nftCounters(run: Runner): Promise<Map<string, CounterValue>> {
  const out = new Map<string, CounterValue>();
  for (const family of ['ip', 'ip6']) {
    const r = await run('nft', ['-j', 'list', 'counters', 'table', family, TABLE]);
    if (r.code !== 0) continue;
    const doc = JSON.parse(r.stdout) as { nftables?: Array<{ counter?: { name: string; packets: number; bytes: number } }> };
    for (const o of doc.nftables ?? []) {
      if (o.counter) out.set(`${family}/${o.counter.name}`, { packets: o.counter.packets, bytes: o.counter.bytes });
    }
  }
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

/** Every element of the persistence sets of one family's table. */
export async function nftPersistElements(run: Runner, family: 'ip' | 'ip6', sets: string[]): Promise<PersistElement[]> {
  const out: PersistElement[] = [];
  for (const name of sets) {
    const r = await run('nft', ['-j', 'list', 'set', family, TABLE, name]);
    if (r.code !== 0) continue;
    const doc = JSON.parse(r.stdout) as { nftables?: Array<{ set?: { name: string; elem?: unknown[] } }> };
    for (const o of doc.nftables ?? []) {
      for (const e of o.set?.elem ?? []) {
        // With timeouts an element is { elem: { val, timeout, expires } }.
        const el = (e as { elem?: { val?: unknown; expires?: number; timeout?: number } }).elem;
        const val = el?.val ?? e;
        if (typeof val === 'string') out.push({ set: name, addr: val, expires: el?.expires ?? el?.timeout ?? 0 });
      }
    }
  }
  return out;
}
