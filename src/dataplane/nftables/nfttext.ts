/**
 * The NAT plane's commands (nat.ts) as nft script text: what an operator would type for
 * the same change. Used for the golden tests, for `--log-level debug`, and by the kernel
 * test that loads this text with `nft -f` next to the same commands sent over netlink
 * (nftnl.ts) and compares the two listings, so that nft itself checks the encoder.
 */
import type { Family } from '../../core/types.js';
import { TABLE } from './ruleset.js';
import type { Cmd, Elem, ElemData, ElemKey, Item, Mask, MarkValue, SetDef } from './nat.js';

const addrType = (af: Family) => (af === 6 ? 'ipv6_addr' : 'ipv4_addr');
const ipf = (af: Family) => (af === 6 ? 'ip6' : 'ip');

function maskText(m: Mask): string {
  const full = m.af === 6 ? 128 : 32;
  if (m.len >= full) return `${ipf(m.af)} saddr`;
  if (m.af === 4) {
    const v = m.len ? (0xffffffff << (32 - m.len)) >>> 0 : 0;
    return `ip saddr & ${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
  }
  const groups: string[] = [];
  for (let i = 0; i < 8; i++) {
    const bits = Math.max(0, Math.min(16, m.len - i * 16));
    groups.push(((0xffff << (16 - bits)) & 0xffff).toString(16));
  }
  const last = groups.map((g) => g !== '0').lastIndexOf(true);
  return `ip6 saddr & ${last < 0 ? '::' : last === 7 ? groups.join(':') : `${groups.slice(0, last + 1).join(':')}::`}`;
}

function markValueText(v: MarkValue): string {
  if (v.v === 'imm') return String(v.mark);
  if (v.v === 'metamark') return 'meta mark';
  const k = v.key;
  const key =
    k.k === 'numgen'
      ? `numgen inc mod ${k.mod}`
      : k.k === 'jhash'
        ? `jhash ${ipf(k.af)} saddr${k.sport ? ' . th sport' : ''} mod ${k.mod} seed 0x0`
        : 'ip saddr & 0.0.0.255';
  const elems = v.elems.map(([i, m]) => `${k.k === 'octet' ? `0.0.0.${i as number}` : Array.isArray(i) ? `${i[0]}-${i[1]}` : i} : ${m}`);
  return `${key} map { ${elems.join(', ')} }`;
}

/** One rule item as nft syntax. */
export function itemText(it: Item): string {
  switch (it.i) {
    case 'l4proto':
      return `meta l4proto ${it.proto}`;
    case 'ctmark':
      return it.op === 'eq' ? `ct mark ${it.mark}` : `ct mark != ${it.mark}`;
    case 'ctnew':
      return 'ct state new';
    case 'ctdir':
      return `ct direction ${it.dir}`;
    case 'saddr-net':
      return `${ipf(it.af)} saddr ${it.net}/${it.len}`;
    case 'persist-hit':
      return `${maskText(it.mask)} @${it.set}`;
    case 'metamark-in':
      return `meta mark @${it.set}`;
    case 'vmap':
      return `${ipf(it.af)} daddr . meta l4proto${it.port ? ' . th dport' : ''} vmap @${it.map}`;
    case 'setmark':
      return `ct mark set ${markValueText(it.value)}`;
    case 'update':
      return `update @${it.set} { ${maskText(it.mask)} }`;
    case 'counter-map':
      return `counter name ct mark map @${it.map}`;
    case 'dnat-map':
      return `dnat ${ipf(it.af)} to ct mark map @${it.map}`;
    case 'masq':
      return 'masquerade';
    case 'reject':
      return `reject with ${it.af === 6 ? 'icmpv6' : 'icmp'} port-unreachable`;
    case 'ctcount-over':
      return `ct count over ${it.count}`;
    case 'ctcount-set-over':
      return `add @${it.set} { ${ipf(it.af)} saddr ct count over ${it.count} }`;
    case 'counter-named':
      return `counter name "${it.name}"`;
    case 'drop':
      return 'drop';
    case 'goto':
      return `goto ${it.chain}`;
    case 'jump':
      return `jump ${it.chain}`;
    case 'return':
      return 'return';
  }
}

function keyText(k: ElemKey): string {
  if (typeof k === 'number') return String(k);
  return `${k.addr} . ${k.proto}${k.port !== undefined ? ` . ${k.port}` : ''}`;
}

function dataText(d: ElemData): string {
  if ('goto' in d) return `goto ${d.goto}`;
  if ('jump' in d) return `jump ${d.jump}`;
  if ('counter' in d) return `"${d.counter}"`;
  return d.port !== undefined ? `${d.addr} . ${d.port}` : d.addr;
}

const elemText = (e: Elem) => (e.data ? `${keyText(e.key)} : ${dataText(e.data)}` : keyText(e.key));

function setText(s: SetDef): string {
  const a = addrType(s.af);
  const key =
    s.key === 'vip3' ? `${a} . inet_proto . inet_service` : s.key === 'vip2' ? `${a} . inet_proto` : s.key === 'mark' ? 'mark' : a;
  if (s.timeout !== undefined) return `set ${s.name} { type ${key}; size 65535; flags dynamic,timeout; timeout ${s.timeout}s; }`;
  if (s.dynamic) return `set ${s.name} { type ${key}; size 65535; flags dynamic; }`;
  if (!s.data) return `set ${s.name} { type ${key}; }`;
  const data = s.data === 'addrport' ? `${a} . inet_service` : s.data === 'addr' ? a : s.data;
  return `map ${s.name} { type ${key} : ${data}; }`;
}

/** The commands as an nft script (`nft -f`), one command per line. */
export function commandsText(cmds: readonly Cmd[]): string {
  const lines: string[] = [];
  for (const c of cmds) {
    const t = `${c.f} ${TABLE}`;
    switch (c.c) {
      case 'add-table':
        lines.push(`add table ${t}`);
        break;
      case 'delete-table':
        lines.push(`delete table ${t}`);
        break;
      case 'add-chain': {
        const b = c.chain.base;
        lines.push(`add chain ${t} ${c.chain.name}${b ? ` { type ${b.type} hook ${b.hook} priority ${b.prio}; policy accept; }` : ''}`);
        break;
      }
      case 'delete-chain':
        lines.push(`delete chain ${t} ${c.name}`);
        break;
      case 'flush-chain':
        lines.push(`flush chain ${t} ${c.name}`);
        break;
      case 'add-rule':
        lines.push(`add rule ${t} ${c.chain} ${c.rule.map(itemText).join(' ')}`);
        break;
      case 'add-counter':
        lines.push(`add counter ${t} ${c.name}`);
        break;
      case 'delete-counter':
        lines.push(`delete counter ${t} ${c.name}`);
        break;
      case 'add-set':
        lines.push(`add ${setText(c.set)}`.replace(/^add (set|map) (\S+)/, `add $1 ${t} $2`));
        break;
      case 'delete-set':
        lines.push(`delete set ${t} ${c.name}`);
        break;
      case 'add-elems':
        if (c.elems.length) lines.push(`add element ${t} ${c.set} { ${c.elems.map(elemText).join(', ')} }`);
        break;
      case 'delete-elems':
        if (c.elems.length) lines.push(`delete element ${t} ${c.set} { ${c.elems.map((e) => keyText(e.key)).join(', ')} }`);
        break;
    }
  }
  return `${lines.join('\n')}\n`;
}
