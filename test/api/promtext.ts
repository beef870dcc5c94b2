/**
 * A strict parser for the Prometheus text exposition format 0.0.4, for tests: it rejects
 * what a Prometheus server would reject (bad names, bad escapes, bad values, a sample
 * before its TYPE, a family split in two, a duplicate series, a TYPE it does not know).
 */

export interface Sample {
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  type: 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';
  help: string;
  samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function parseValue(s: string, line: number): number {
  if (s === '+Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  if (s === 'NaN') return NaN;
  if (!/^[-+]?(\d+\.?\d*([eE][-+]?\d+)?|\.\d+([eE][-+]?\d+)?)$/.test(s)) throw new Error(`line ${line}: bad value ${JSON.stringify(s)}`);
  return Number(s);
}

function parseLabels(s: string, line: number): [Record<string, string>, string] {
  // s starts right after "{"; returns the labels and the rest after "}".
  const labels: Record<string, string> = {};
  let i = 0;
  for (;;) {
    if (s[i] === '}') return [labels, s.slice(i + 1)];
    const eq = s.indexOf('=', i);
    if (eq < 0) throw new Error(`line ${line}: label without "="`);
    const name = s.slice(i, eq);
    if (!LABEL.test(name)) throw new Error(`line ${line}: bad label name ${JSON.stringify(name)}`);
    if (name in labels) throw new Error(`line ${line}: duplicate label ${name}`);
    if (s[eq + 1] !== '"') throw new Error(`line ${line}: label value of ${name} is not quoted`);
    let v = '';
    let j = eq + 2;
    for (; ; j++) {
      const ch = s[j];
      if (ch === undefined) throw new Error(`line ${line}: unterminated label value`);
      if (ch === '"') break;
      if (ch === '\\') {
        const n = s[++j];
        if (n === 'n') v += '\n';
        else if (n === '\\') v += '\\';
        else if (n === '"') v += '"';
        else throw new Error(`line ${line}: bad escape \\${n}`);
      } else v += ch;
    }
    labels[name] = v;
    i = j + 1;
    if (s[i] === ',') i++;
    else if (s[i] !== '}') throw new Error(`line ${line}: expected "," or "}" after label ${name}`);
  }
}

/** Parses a whole exposition; families by name, in order of appearance. */
export function parsePrometheusText(text: string): Map<string, Family> {
  if (text.length && !text.endsWith('\n')) throw new Error('exposition does not end with a newline');
  const families = new Map<string, Family>();
  const seenSeries = new Set<string>();
  let current: Family | null = null;
  const lines = text.split('\n');
  lines.pop();
  lines.forEach((raw, idx) => {
    const n = idx + 1;
    if (raw === '') throw new Error(`line ${n}: empty line`);
    if (raw.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(raw);
      if (!m) return; // a comment
      const [, kind, name, rest] = m as unknown as [string, string, string, string];
      if (!NAME.test(name)) throw new Error(`line ${n}: bad metric name ${name}`);
      let f = families.get(name);
      if (f && f !== current) throw new Error(`line ${n}: family ${name} appears twice`);
      if (!f) {
        f = { name, type: 'untyped', help: '', samples: [] };
        families.set(name, f);
        current = f;
      }
      if (f.samples.length) throw new Error(`line ${n}: ${kind} for ${name} after its samples`);
      if (kind === 'TYPE') {
        if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(rest)) throw new Error(`line ${n}: unknown type ${rest}`);
        f.type = rest as Family['type'];
      } else {
        f.help = rest.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
      }
      return;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{)?(.*)$/.exec(raw);
    if (!m) throw new Error(`line ${n}: not a sample: ${raw}`);
    const name = m[1]!;
    let labels: Record<string, string> = {};
    let rest = m[3]!;
    if (m[2]) [labels, rest] = parseLabels(rest, n);
    const vm = /^ (\S+)( -?\d+)?$/.exec(rest);
    if (!vm) throw new Error(`line ${n}: expected " value [timestamp]" after the series, got ${JSON.stringify(rest)}`);
    const value = parseValue(vm[1]!, n);
    if (!current || current.name !== name) throw new Error(`line ${n}: sample of ${name} outside its family (no TYPE before it)`);
    const series = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
    if (seenSeries.has(series)) throw new Error(`line ${n}: duplicate series ${series}`);
    seenSeries.add(series);
    current.samples.push({ labels, value });
  });
  return families;
}

/** The value of the one sample of `name` whose labels include `match`. */
export function metricValue(fams: Map<string, Family>, name: string, match: Record<string, string> = {}): number {
  const f = fams.get(name);
  if (!f) throw new Error(`no family ${name}`);
  const hits = f.samples.filter((s) => Object.entries(match).every(([k, v]) => s.labels[k] === v));
  if (hits.length !== 1) throw new Error(`${name} ${JSON.stringify(match)}: ${hits.length} samples match`);
  return hits[0]!.value;
}
