/**
 * The property-based fuzz suite's shared parts (fast-check). Each target (targets/*.ts)
 * exports its properties; `<target>.test.ts` runs them briefly in `npm test` (fixed seed,
 * a few hundred runs), and bench/fuzz.ts runs the same properties 10^6 times.
 *
 * TSVS_FUZZ_SEED and TSVS_FUZZ_RUNS override the seed and the run count (to replay a
 * counterexample that bench/fuzz.ts printed, for example).
 */
import fc from 'fast-check';
import { test } from 'node:test';

/** One property of one target; `runs` is its share of a short run. */
export interface FuzzProperty {
  name: string;
  property: () => fc.IRawProperty<any, boolean>;
  /** Runs in a short run (npm test); a long run (bench/fuzz.ts) shares its inputs out in these proportions. */
  runs: number;
  /** The most runs in a long run, for a property whose inputs are costly (megabyte bodies). */
  maxRuns?: number;
  /** Inputs always tried first: the counterexamples of bugs found and fixed. */
  examples?: unknown[][];
  /** Set where the property finds a bug that another helper's branch fixes: the test is a todo. */
  todo?: string;
}

export interface FuzzTarget {
  name: string;
  properties: FuzzProperty[];
}

/** The seed of short runs (fixed, so that npm test is reproducible). */
export const FUZZ_SEED = Number(process.env.TSVS_FUZZ_SEED ?? 0x13);

/** fast-check parameters for a run of `runs` inputs. */
export function params(runs: number, seed = FUZZ_SEED): fc.Parameters<unknown> {
  return { seed, numRuns: Number(process.env.TSVS_FUZZ_RUNS ?? runs) };
}

/** Registers one node:test test per property of `target`. */
export function fuzzTests(target: FuzzTarget): void {
  for (const p of target.properties) {
    test(`${target.name}: ${p.name}`, p.todo ? { todo: p.todo } : {}, async () => {
      await fc.assert(p.property() as fc.IAsyncProperty<unknown>, { ...params(p.runs), examples: p.examples ?? [] });
    });
  }
}

/**
 * Mutations of a valid string, as a fuzzer mutates a seed: characters replaced, deleted,
 * duplicated or inserted, lines swapped or repeated, a prefix or suffix cut. Keeps most
 * of the structure, so that inputs get past the first check.
 */
export function mutatedText(seeds: readonly string[], pieces: readonly string[] = []): fc.Arbitrary<string> {
  const piece = pieces.length
    ? fc.oneof(fc.constantFrom(...pieces), fc.string({ maxLength: 8 }), fc.string({ unit: 'binary', maxLength: 4 }))
    : fc.oneof(fc.string({ maxLength: 8 }), fc.string({ unit: 'binary', maxLength: 4 }));
  const edit = fc.oneof(
    fc.record({ kind: fc.constant('replace' as const), at: fc.nat(), len: fc.nat({ max: 6 }), text: piece }),
    fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), len: fc.constant(0), text: piece }),
    fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), len: fc.nat({ max: 12 }), text: fc.constant('') }),
    fc.record({ kind: fc.constant('dupline' as const), at: fc.nat(), len: fc.nat({ max: 3 }), text: fc.constant('') }),
    fc.record({ kind: fc.constant('cut' as const), at: fc.nat(), len: fc.constant(0), text: fc.constant('') }),
  );
  return fc.tuple(fc.constantFrom(...seeds), fc.array(edit, { minLength: 0, maxLength: 6 })).map(([seed, edits]) => {
    let s = seed;
    for (const e of edits) {
      const at = s.length ? e.at % (s.length + 1) : 0;
      switch (e.kind) {
        case 'replace':
        case 'insert':
        case 'delete':
          s = s.slice(0, at) + e.text + s.slice(at + e.len);
          break;
        case 'dupline': {
          const lines = s.split('\n');
          const i = lines.length ? e.at % lines.length : 0;
          lines.splice(i, 0, ...lines.slice(i, i + e.len + 1));
          s = lines.join('\n');
          break;
        }
        case 'cut':
          s = e.at % 2 ? s.slice(0, at) : s.slice(at);
          break;
      }
    }
    return s;
  });
}

/**
 * Byte mutations of a valid buffer: bytes set, flipped, cut or appended. The buffer is
 * copied, never changed in place.
 */
export function mutatedBytes(valid: fc.Arbitrary<Buffer>): fc.Arbitrary<Buffer> {
  const edit = fc.oneof(
    fc.record({ kind: fc.constant('set' as const), at: fc.nat(), v: fc.nat({ max: 255 }) }),
    fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), v: fc.nat({ max: 7 }) }),
    fc.record({ kind: fc.constant('truncate' as const), at: fc.nat(), v: fc.constant(0) }),
    fc.record({ kind: fc.constant('append' as const), at: fc.nat({ max: 64 }), v: fc.nat({ max: 255 }) }),
  );
  return fc.tuple(valid, fc.array(edit, { maxLength: 5 })).map(([b, edits]) => {
    let buf = Buffer.from(b);
    for (const e of edits) {
      const at = buf.length ? e.at % buf.length : 0;
      if (e.kind === 'set' && buf.length) buf[at] = e.v;
      else if (e.kind === 'flip' && buf.length) buf[at] = buf[at]! ^ (1 << e.v);
      else if (e.kind === 'truncate') buf = buf.subarray(0, at);
      else if (e.kind === 'append') buf = Buffer.concat([buf, Buffer.alloc(e.at % 17, e.v)]);
    }
    return buf;
  });
}

/** Runs `f`; returns what it threw, or undefined. */
export function thrown(f: () => unknown): unknown {
  try {
    f();
    return undefined;
  } catch (e) {
    return e;
  }
}

/** A short description of an unexpected exception, for a property's failure message. */
export function describeError(e: unknown): string {
  return e instanceof Error
    ? `${e.constructor.name}: ${e.message.slice(0, 300)}\n${e.stack?.split('\n').slice(1, 6).join('\n')}`
    : String(e);
}
