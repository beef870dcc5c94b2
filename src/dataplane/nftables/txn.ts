/**
 * Transactions of the NAT plane, from fragments (nat.ts): the commands that turn what the
 * kernel holds into what the table says, touching only the services that changed. Pure:
 * the commands go to the kernel through nftnl.ts, and to text through nfttext.ts.
 *
 * Within one transaction the order is: new objects (counters, sets, chains), then service
 * chains refilled, then map elements removed and added, and last the objects that left,
 * once nothing refers to them any more.
 */
import { baseCommands, queueBaseCommands, type Cmd, type Elem, type Fam, type Fragment } from './nat.js';

const FAMS: readonly Fam[] = ['ip', 'ip6'];

/** The commands of one batch, by phase; `commands()` puts them in the order the kernel needs. */
export class TxnBuilder {
  private readonly adds: Cmd[] = [];
  private readonly rules: Cmd[] = [];
  private readonly elemDels = new Map<string, Elem[]>();
  private readonly elemAdds = new Map<string, Elem[]>();
  private readonly removes: Cmd[] = [];

  /** Adds what turns `prev` (in the kernel, or undefined) into `next` (or undefined: the service goes). */
  fragment(prev: Fragment | undefined, next: Fragment | undefined): void {
    if (!prev && !next) return;
    if (prev && next && prev.f !== next.f) {
      this.fragment(prev, undefined);
      this.fragment(undefined, next);
      return;
    }
    const f = (next ?? prev)!.f;
    if (!prev) {
      this.fresh(next!);
      return;
    }
    const prevCounters = new Set(prev?.counters);
    const nextCounters = new Set(next?.counters);
    for (const c of nextCounters) if (!prevCounters.has(c)) this.adds.push({ c: 'add-counter', f, name: c });
    const prevSets = new Set(prev?.sets.map((s) => s.name));
    const nextSets = new Set(next?.sets.map((s) => s.name));
    for (const s of next?.sets ?? []) if (!prevSets.has(s.name)) this.adds.push({ c: 'add-set', f, set: s });
    if (next && !prev) this.adds.push({ c: 'add-chain', f, chain: { name: next.chain } });
    if (next && (!prev || JSON.stringify(prev.rules) !== JSON.stringify(next.rules))) {
      if (prev) this.rules.push({ c: 'flush-chain', f, name: next.chain });
      for (const rule of next.rules) this.rules.push({ c: 'add-rule', f, chain: next.chain, rule });
    }
    if (prev && !next) this.rules.push({ c: 'flush-chain', f, name: prev.chain });
    // Elements by identity (map + key); a changed value is removed and added again.
    const ident = (e: { set: string; elem: Elem }) => `${e.set}\u0000${JSON.stringify(e.elem.key)}`;
    const nextElems = new Map((next?.elems ?? []).map((e) => [ident(e), e]));
    const prevElems = new Map((prev?.elems ?? []).map((e) => [ident(e), e]));
    for (const [id, e] of prevElems) {
      const n = nextElems.get(id);
      if (n && JSON.stringify(n.elem.data) === JSON.stringify(e.elem.data)) continue;
      push(this.elemDels, `${f}\u0000${e.set}`, { key: e.elem.key });
    }
    for (const [id, e] of nextElems) {
      const p = prevElems.get(id);
      if (p && JSON.stringify(p.elem.data) === JSON.stringify(e.elem.data)) continue;
      push(this.elemAdds, `${f}\u0000${e.set}`, e.elem);
    }
    if (prev && !next) this.removes.push({ c: 'delete-chain', f, name: prev.chain });
    for (const s of prev?.sets ?? []) if (!nextSets.has(s.name)) this.removes.push({ c: 'delete-set', f, name: s.name });
    for (const c of prevCounters) if (!nextCounters.has(c)) this.removes.push({ c: 'delete-counter', f, name: c });
  }

  /** A new service: everything added, nothing to compare. */
  private fresh(next: Fragment): void {
    const f = next.f;
    for (const name of next.counters) this.adds.push({ c: 'add-counter', f, name });
    for (const set of next.sets) this.adds.push({ c: 'add-set', f, set });
    this.adds.push({ c: 'add-chain', f, chain: { name: next.chain } });
    for (const rule of next.rules) this.rules.push({ c: 'add-rule', f, chain: next.chain, rule });
    for (const e of next.elems) push(this.elemAdds, `${f}\u0000${e.set}`, e.elem);
  }

  /** Raw commands that go first (a family's queue objects, a full load's tables). */
  prepend(cmds: readonly Cmd[]): void {
    this.adds.unshift(...cmds);
  }

  /** Raw commands that go last (a family's queue objects on their way out). */
  append(cmds: readonly Cmd[]): void {
    this.removes.push(...cmds);
  }

  get empty(): boolean {
    return !this.adds.length && !this.rules.length && !this.elemDels.size && !this.elemAdds.size && !this.removes.length;
  }

  commands(): Cmd[] {
    const elems = (m: Map<string, Elem[]>, c: 'add-elems' | 'delete-elems'): Cmd[] =>
      [...m].map(([k, elems]) => {
        const [f, set] = k.split('\u0000') as [Fam, string];
        return { c, f, set, elems };
      });
    return [...this.adds, ...this.rules, ...elems(this.elemDels, 'delete-elems'), ...elems(this.elemAdds, 'add-elems'), ...this.removes];
  }
}

function push<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const list = m.get(k);
  if (list) list.push(v);
  else m.set(k, [v]);
}

/**
 * What the first transaction starts with: whatever an earlier run left in tables `tsvs`
 * is replaced by the fixed objects (and the queue objects of the families that need them).
 */
export function loadHead(frags: readonly Fragment[], snat: readonly string[], maxConns = 0): { head: Cmd[]; queueFams: Set<Fam> } {
  const queueFams = new Set(frags.filter((x) => x.queued).map((x) => x.f));
  const head: Cmd[] = [];
  for (const f of FAMS) {
    head.push({ c: 'add-table', f }, { c: 'delete-table', f }, { c: 'add-table', f }, ...baseCommands(f, snat, maxConns));
    if (queueFams.has(f)) head.push(...queueBaseCommands(f));
  }
  return { head, queueFams };
}

/** The whole table as one transaction: `loadHead` and every service's fragment (tests, goldens). */
export function fullLoad(frags: Iterable<Fragment>, snat: readonly string[], maxConns = 0): { txn: TxnBuilder; queueFams: Set<Fam> } {
  const list = [...frags];
  const { head, queueFams } = loadHead(list, snat, maxConns);
  const txn = new TxnBuilder();
  txn.prepend(head);
  for (const x of list) txn.fragment(undefined, x);
  return { txn, queueFams };
}

/** Removes tsvs's tables (clean exit). */
export function removal(): Cmd[] {
  return FAMS.flatMap((f): Cmd[] => [
    { c: 'add-table', f },
    { c: 'delete-table', f },
  ]);
}
