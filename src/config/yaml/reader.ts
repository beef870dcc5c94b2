/**
 * Reading YAML with positions: a parsed document's nodes keep their source offsets, and
 * MapReader's typed getters report a bad value at its file:line:column with its key path
 * ("services[0].real_servers[1].weight"), taking bounds from the objects' schemas.
 */
import { isMap, isScalar, isSeq, type LineCounter, type Node, type Pair, type YAMLMap } from 'yaml';
import { canonicalAddr } from '../../core/addr.js';
import type { Bounds } from '../../core/schema.js';
import { suggest } from '../errors.js';
import type { Diagnostic, Origin } from '../model.js';
import { clip, quote } from '../../core/quote.js';

/** Collects diagnostics with positions from one parsed document. */
export class Ctx {
  readonly diags: Diagnostic[] = [];
  constructor(
    readonly file: string,
    private readonly lines: LineCounter,
  ) {}
  pos(node: Node | null | undefined): Origin {
    const off = (node as { range?: [number, number, number] } | null)?.range?.[0] ?? 0;
    const p = this.lines.linePos(off);
    return { file: this.file, line: p.line, column: p.col };
  }
  error(node: Node | null | undefined, path: string, msg: string): void {
    this.diags.push({ ...this.pos(node), message: path ? `${path}: ${msg}` : msg });
  }
}

/** An input value as a message quotes it (a short prefix, core/quote.ts). */
export const show = (v: unknown) => (typeof v === 'string' ? quote(v) : clip(v));

/** Reads one mapping: typed getters that report and return undefined on a bad value; `done` reports unknown keys. */
export class MapReader {
  private readonly used = new Set<string>();
  private readonly pairs = new Map<string, Pair<unknown, unknown>>();
  constructor(
    private readonly ctx: Ctx,
    readonly node: YAMLMap,
    readonly path: string,
  ) {
    for (const p of node.items) {
      const k = isScalar(p.key) ? String(p.key.value) : String(p.key);
      if (this.pairs.has(k)) ctx.error(p.key as Node, this.sub(k), 'duplicate key');
      this.pairs.set(k, p);
    }
  }
  sub(k: string): string {
    return this.path ? `${this.path}.${k}` : k;
  }
  has(k: string): boolean {
    this.used.add(k);
    const p = this.pairs.get(k);
    return !!p && !(isScalar(p.value) && p.value.value === null);
  }
  node_(k: string): Node | undefined {
    this.used.add(k);
    return this.pairs.get(k)?.value as Node | undefined;
  }
  keyNode(k: string): Node | undefined {
    return this.pairs.get(k)?.key as Node | undefined;
  }
  private scalar(k: string): { node: Node; value: unknown } | undefined {
    if (!this.has(k)) return undefined;
    const n = this.node_(k)!;
    if (!isScalar(n)) {
      this.ctx.error(n, this.sub(k), `expected a single value, got a ${isMap(n) ? 'mapping' : 'list'}`);
      return undefined;
    }
    return { node: n, value: n.value };
  }
  str(k: string): string | undefined {
    const s = this.scalar(k);
    if (!s) return undefined;
    if (typeof s.value !== 'string') {
      this.ctx.error(s.node, this.sub(k), `expected a string, got ${show(s.value)}`);
      return undefined;
    }
    return s.value;
  }
  /** An integer within `b` (a schema field's bounds). */
  int(k: string, b: Bounds): number | undefined {
    const s = this.scalar(k);
    if (!s) return undefined;
    const v = s.value;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < b.min || v > b.max) {
      this.ctx.error(s.node, this.sub(k), `expected an integer from ${b.min} to ${b.max}, got ${show(v)}`);
      return undefined;
    }
    return v;
  }
  /** A duration in seconds within `b`: a number, or a string with a unit ("200ms", "2s", "1m"). */
  seconds(k: string, b: Bounds): number | undefined {
    const s = this.scalar(k);
    if (!s) return undefined;
    let v: number = NaN;
    if (typeof s.value === 'number') v = s.value;
    else if (typeof s.value === 'string') {
      const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m)?$/.exec(s.value.trim());
      if (m) v = Number(m[1]) * (m[2] === 'ms' ? 0.001 : m[2] === 'm' ? 60 : 1);
    }
    if (!Number.isFinite(v) || v < b.min || v > b.max) {
      this.ctx.error(s.node, this.sub(k), `expected a duration (seconds, or "200ms", "2s", "1m") from ${b.min}, got ${show(s.value)}`);
      return undefined;
    }
    return v;
  }
  bool(k: string): boolean | undefined {
    const s = this.scalar(k);
    if (!s) return undefined;
    if (typeof s.value !== 'boolean') {
      this.ctx.error(s.node, this.sub(k), `expected true or false, got ${show(s.value)}`);
      return undefined;
    }
    return s.value;
  }
  /** One of `allowed`, matched without regard to case. */
  oneOf<T extends string>(k: string, allowed: readonly T[]): T | undefined {
    const v = this.str(k);
    if (v === undefined) return undefined;
    const hit = allowed.find((a) => a.toLowerCase() === v.toLowerCase());
    if (!hit) {
      this.ctx.error(this.node_(k), this.sub(k), `expected one of ${allowed.join(', ')}, got ${show(v)}`);
      return undefined;
    }
    return hit;
  }
  addr(k: string): string | undefined {
    const s = this.scalar(k);
    if (!s) return undefined;
    const v = String(s.value);
    const c = typeof s.value === 'string' ? canonicalAddr(v) : null;
    if (!c) {
      this.ctx.error(s.node, this.sub(k), `expected an IPv4 or IPv6 address, got ${show(s.value)}`);
      return undefined;
    }
    return c;
  }
  map(k: string): MapReader | undefined {
    if (!this.has(k)) return undefined;
    const n = this.node_(k)!;
    if (!isMap(n)) {
      this.ctx.error(n, this.sub(k), 'expected a mapping (key: value lines)');
      return undefined;
    }
    return new MapReader(this.ctx, n, this.sub(k));
  }
  /** A list whose items are read by `f`; a single non-list value is an error. */
  list<T>(k: string, f: (item: Node, path: string) => T | undefined): T[] | undefined {
    if (!this.has(k)) return undefined;
    const n = this.node_(k)!;
    if (!isSeq(n)) {
      this.ctx.error(n, this.sub(k), 'expected a list');
      return undefined;
    }
    const out: T[] = [];
    n.items.forEach((item, i) => {
      const v = f(item as Node, `${this.sub(k)}[${i}]`);
      if (v !== undefined) out.push(v);
    });
    return out;
  }
  require(k: string, what = 'is required'): boolean {
    if (this.has(k)) return true;
    this.ctx.error(this.node, this.path, `${quote(k)} ${what}`);
    return false;
  }
  /** Reports every key not read. Call after all getters. */
  done(known?: readonly string[]): void {
    const all = known ?? [...this.used];
    for (const [k, p] of this.pairs) {
      if (this.used.has(k)) continue;
      const hint = suggest(k, all);
      this.ctx.error(p.key as Node, this.sub(k), `unknown key${hint ? ` (did you mean ${quote(hint)}?)` : ''}`);
    }
  }
}

export function asMap(ctx: Ctx, n: Node, path: string): MapReader | undefined {
  if (!isMap(n)) {
    ctx.error(n, path, 'expected a mapping (key: value lines)');
    return undefined;
  }
  return new MapReader(ctx, n, path);
}
