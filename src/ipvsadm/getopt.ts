/**
 * ipvsadm's option scanner, popt style: short options bundled ("-Ln"), `--long=value`,
 * `-p`'s optional argument, and leftover positional words wherever they appear. It knows
 * which options exist and whether each takes an argument; what an option means is the
 * parser's business (parse.ts).
 */
import { clip } from '../core/quote.js';

type ArgKind = 'none' | 'required' | 'optional';

interface OptDef {
  tag: string;
  long?: string;
  short?: string;
  arg: ArgKind;
}

/** Every option ipvsadm knows (its poptOption table), plus tsvs's --json and --fullnat. */
const OPTION_DEFS: OptDef[] = [
  { tag: 'A', long: 'add-service', short: 'A', arg: 'none' },
  { tag: 'E', long: 'edit-service', short: 'E', arg: 'none' },
  { tag: 'D', long: 'delete-service', short: 'D', arg: 'none' },
  { tag: 'C', long: 'clear', short: 'C', arg: 'none' },
  { tag: 'L', long: 'list', short: 'L', arg: 'none' },
  { tag: 'L', short: 'l', arg: 'none' },
  { tag: 'Z', long: 'zero', short: 'Z', arg: 'none' },
  { tag: 'a', long: 'add-server', short: 'a', arg: 'none' },
  { tag: 'e', long: 'edit-server', short: 'e', arg: 'none' },
  { tag: 'd', long: 'delete-server', short: 'd', arg: 'none' },
  { tag: 'set', long: 'set', arg: 'none' },
  { tag: 'h', long: 'help', short: 'h', arg: 'none' },
  { tag: 'v', long: 'version', short: 'v', arg: 'none' },
  { tag: 'R', long: 'restore', short: 'R', arg: 'none' },
  { tag: 'S', long: 'save', short: 'S', arg: 'none' },
  { tag: 'start-daemon', long: 'start-daemon', arg: 'required' },
  { tag: 'stop-daemon', long: 'stop-daemon', arg: 'required' },
  { tag: 't', long: 'tcp-service', short: 't', arg: 'required' },
  { tag: 'u', long: 'udp-service', short: 'u', arg: 'required' },
  { tag: 'sctp', long: 'sctp-service', arg: 'required' },
  { tag: 'f', long: 'fwmark-service', short: 'f', arg: 'required' },
  { tag: 's', long: 'scheduler', short: 's', arg: 'required' },
  { tag: 'p', long: 'persistent', short: 'p', arg: 'optional' },
  { tag: 'M', long: 'netmask', short: 'M', arg: 'required' },
  { tag: 'r', long: 'real-server', short: 'r', arg: 'required' },
  { tag: 'm', long: 'masquerading', short: 'm', arg: 'none' },
  { tag: 'i', long: 'ipip', short: 'i', arg: 'none' },
  { tag: 'g', long: 'gatewaying', short: 'g', arg: 'none' },
  { tag: 'fullnat', long: 'fullnat', arg: 'none' },
  { tag: 'w', long: 'weight', short: 'w', arg: 'required' },
  { tag: 'x', long: 'u-threshold', short: 'x', arg: 'required' },
  { tag: 'y', long: 'l-threshold', short: 'y', arg: 'required' },
  { tag: 'n', long: 'numeric', short: 'n', arg: 'none' },
  { tag: 'c', long: 'connection', short: 'c', arg: 'none' },
  { tag: 'mcast-interface', long: 'mcast-interface', arg: 'required' },
  { tag: 'syncid', long: 'syncid', arg: 'required' },
  { tag: 'timeout', long: 'timeout', arg: 'none' },
  { tag: 'daemon', long: 'daemon', arg: 'none' },
  { tag: 'stats', long: 'stats', arg: 'none' },
  { tag: 'rate', long: 'rate', arg: 'none' },
  { tag: 'thresholds', long: 'thresholds', arg: 'none' },
  { tag: 'persistent-conn', long: 'persistent-conn', arg: 'none' },
  { tag: 'nosort', long: 'nosort', arg: 'none' },
  { tag: 'sort', long: 'sort', arg: 'none' },
  { tag: 'X', long: 'exact', short: 'X', arg: 'none' },
  { tag: '6', long: 'ipv6', short: '6', arg: 'none' },
  { tag: 'o', long: 'ops', short: 'o', arg: 'none' },
  { tag: 'pe', long: 'pe', arg: 'required' },
  { tag: 'b', long: 'sched-flags', short: 'b', arg: 'required' },
  { tag: 'mcast-group', long: 'mcast-group', arg: 'required' },
  { tag: 'mcast-port', long: 'mcast-port', arg: 'required' },
  { tag: 'mcast-ttl', long: 'mcast-ttl', arg: 'required' },
  { tag: 'sync-maxlen', long: 'sync-maxlen', arg: 'required' },
  { tag: 'tun-info', long: 'tun-info', arg: 'none' },
  { tag: 'tun-type', long: 'tun-type', arg: 'required' },
  { tag: 'tun-port', long: 'tun-port', arg: 'required' },
  { tag: 'tun-nocsum', long: 'tun-nocsum', arg: 'none' },
  { tag: 'tun-csum', long: 'tun-csum', arg: 'none' },
  { tag: 'tun-remcsum', long: 'tun-remcsum', arg: 'none' },
  { tag: 'json', long: 'json', arg: 'none' },
];

/** One step of the scan: an option with its argument, the end, or popt's refusal. */
type ScanItem =
  | { kind: 'opt'; tag: string; arg: string | null; word: string }
  | { kind: 'end' }
  /** popt's own error: `text` is "<option word>: <reason>". */
  | { kind: 'error'; text: string };

/**
 * Hands out options one at a time, like poptGetNextOpt, so that ipvsadm's per-option
 * checks fire in command-line order. Non-option words are kept for poptGetArg, wherever
 * they appear; "--" ends option processing.
 */
export class OptionScanner {
  private next = 0;
  private bundle: { word: string; pos: number } | null = null;
  private ended = false;
  /** The argv word most recently consumed: what poptBadOption reports. */
  lastWord = '';
  readonly leftovers: string[] = [];

  constructor(private readonly argv: readonly string[]) {}

  /** The next option, the end of the options, or an error for a word popt cannot read. */
  get(): ScanItem {
    for (;;) {
      if (this.bundle) return this.shortOpt(this.bundle);
      if (this.next >= this.argv.length) return { kind: 'end' };
      const w = this.argv[this.next++]!;
      this.lastWord = w;
      if (this.ended || w === '-' || !w.startsWith('-')) {
        this.leftovers.push(w);
        continue;
      }
      if (w === '--') {
        this.ended = true;
        continue;
      }
      if (w.startsWith('--')) return this.longOpt(w);
      this.bundle = { word: w, pos: 1 };
    }
  }

  private longOpt(word: string): ScanItem {
    const body = word.slice(2);
    const eq = body.indexOf('=');
    const name = eq >= 0 ? body.slice(0, eq) : body;
    const inline = eq >= 0 ? body.slice(eq + 1) : null;
    const def = OPTION_DEFS.find((d) => d.long === name);
    if (!def) return { kind: 'error', text: `${clip(word)}: unknown option` };
    if (def.arg === 'none') {
      if (inline !== null) return { kind: 'error', text: `${clip(word)}: option does not take an argument` };
      return { kind: 'opt', tag: def.tag, arg: null, word };
    }
    if (inline !== null) return { kind: 'opt', tag: def.tag, arg: inline, word };
    return this.detachedArg(def, word);
  }

  private shortOpt(b: { word: string; pos: number }): ScanItem {
    const c = b.word[b.pos++]!;
    const rest = b.word.slice(b.pos);
    if (rest === '') this.bundle = null;
    const def = OPTION_DEFS.find((d) => d.short === c);
    if (!def) {
      this.bundle = null;
      return { kind: 'error', text: `${clip(b.word)}: unknown option` };
    }
    if (def.arg === 'none') return { kind: 'opt', tag: def.tag, arg: null, word: b.word };
    this.bundle = null;
    // The rest of the word is the argument; popt skips one '=' ("-p=60", "-s=rr").
    if (rest !== '') return { kind: 'opt', tag: def.tag, arg: rest.startsWith('=') ? rest.slice(1) : rest, word: b.word };
    return this.detachedArg(def, b.word);
  }

  private detachedArg(def: OptDef, word: string): ScanItem {
    const nextWord = this.next < this.argv.length ? this.argv[this.next]! : null;
    if (def.arg === 'optional') {
      // popt takes an optional argument from the next word unless that looks like an option.
      if (nextWord !== null && !nextWord.startsWith('-')) {
        this.next++;
        this.lastWord = nextWord;
        return { kind: 'opt', tag: def.tag, arg: nextWord, word };
      }
      return { kind: 'opt', tag: def.tag, arg: null, word };
    }
    if (nextWord === null) return { kind: 'error', text: `${clip(word)}: missing argument` };
    this.next++;
    this.lastWord = nextWord;
    return { kind: 'opt', tag: def.tag, arg: nextWord, word };
  }
}
