/**
 * keepalived.conf syntax to a tree of statements. As keepalived reads it: words separated
 * by blanks, "quoted strings", comments from '#' or '!' to the end of the line, '{' and '}'
 * open and close a statement's block (the '{' may stand on the next line), `include GLOB`
 * (relative to the including file), `@id` / `@^id` conditional lines (config id, default
 * the host name, as `keepalived -i`), and `$NAME=value` definitions used as `$NAME` or
 * `${NAME}`. Unbalanced braces are errors naming the line of the brace.
 */
import { opendirSync, promises as fsp, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { clip } from '../../core/quote.js';
import type { Diagnostic, Origin } from '../model.js';
import { CONFIG_LIMITS, type ConfigLimit, ConfigReadError, countLimit, readConfigFile, readConfigFileSync, utf8Bytes } from '../read.js';
import { KEEPALIVED_KEYWORDS } from './keywords.js';

export interface Stmt {
  /** The keyword and its arguments. */
  words: string[];
  /** Where the keyword is. */
  at: Origin;
  /** The block's statements, when the statement has a block. */
  block?: Stmt[];
}

export interface LexOptions {
  /** keepalived -i: which `@id` lines count. Default: the host name. */
  configId?: string;
  /** Reads an included file (sync lexing only); defaults to the file system, within CONFIG_LIMITS. */
  readFile?: (path: string, budget: number) => string;
  /** Told of each bound the read hit (CONFIG_LIMITS), for the daemon's log and metric. */
  onLimit?: (limit: ConfigLimit) => void;
}

interface Token {
  text: string;
  quoted: boolean;
  at: Origin;
}

/**
 * What the tokenizer asks of the file system. The tokenizer is a generator, so that one
 * implementation runs both synchronously (parseKeepalivedConfig on text in hand) and
 * asynchronously (the daemon's loads, which must never block the event loop): the driver
 * answers each request, and `pause` lets the async driver yield to the event loop.
 */
type IoRequest = { kind: 'read'; path: string; budget: number } | { kind: 'glob'; pattern: string } | { kind: 'pause' };
type Lexing = Generator<IoRequest, void, unknown>;

interface LexCtx {
  configId: string;
  vars: Map<string, string>;
  diags: Diagnostic[];
  /** Files read by include so far, and bytes read in total (the main file's included). */
  files: number;
  bytes: number;
  /** A bound was hit: no further include is read (one diagnostic says so). */
  stopped: boolean;
  onLimit: (limit: ConfigLimit) => void;
}

/** Lines tokenized between two yields to the event loop (async lexing). */
const LINES_PER_PAUSE = 2048;

function newCtx(text: string, diags: Diagnostic[], opts: LexOptions): LexCtx {
  return {
    configId: opts.configId ?? hostname().split('.')[0]!,
    vars: new Map<string, string>(),
    diags,
    files: 0,
    bytes: utf8Bytes(text),
    stopped: false,
    onLimit: (limit) => {
      countLimit(limit);
      opts.onLimit?.(limit);
    },
  };
}

/** Parses a keepalived.conf text (and its includes) into statements; syntax errors go into `diags`. Reads includes synchronously. */
export function lexKeepalived(text: string, file: string, diags: Diagnostic[], opts: LexOptions = {}): Stmt[] {
  const ctx = newCtx(text, diags, opts);
  const read = opts.readFile ?? readConfigFileSync;
  const tokens: Array<Token | 'EOL'> = [];
  const gen = tokenizeFile(text, file, ctx, tokens, 0);
  let reply: { value?: unknown; error?: unknown } = {};
  for (;;) {
    const step = 'error' in reply ? gen.throw(reply.error) : gen.next(reply.value);
    if (step.done) break;
    const req = step.value;
    try {
      if (req.kind === 'read') reply = { value: read(req.path, req.budget) };
      else if (req.kind === 'glob') reply = { value: globSync(req.pattern) };
      else reply = {};
    } catch (e) {
      reply = { error: e };
    }
  }
  return buildTree(tokens, diags);
}

/** lexKeepalived without blocking: includes are read asynchronously, and long files yield to the event loop. */
export async function lexKeepalivedAsync(text: string, file: string, diags: Diagnostic[], opts: LexOptions = {}): Promise<Stmt[]> {
  const ctx = newCtx(text, diags, opts);
  const tokens: Array<Token | 'EOL'> = [];
  const gen = tokenizeFile(text, file, ctx, tokens, 0);
  let reply: { value?: unknown; error?: unknown } = {};
  for (;;) {
    const step = 'error' in reply ? gen.throw(reply.error) : gen.next(reply.value);
    if (step.done) break;
    const req = step.value;
    try {
      if (req.kind === 'read') reply = { value: await readConfigFile(req.path, req.budget) };
      else if (req.kind === 'glob') reply = { value: await globAsync(req.pattern) };
      else {
        await new Promise((r) => setImmediate(r));
        reply = {};
      }
    } catch (e) {
      reply = { error: e };
    }
  }
  await new Promise((r) => setImmediate(r));
  return buildTree(tokens, diags);
}

function* tokenizeFile(text: string, file: string, ctx: LexCtx, out: Array<Token | 'EOL'>, depth: number): Lexing {
  const lines = text.split('\n');
  let firstLine = depth > 0;
  for (let i = 0; i < lines.length; i++) {
    if (i % LINES_PER_PAUSE === LINES_PER_PAUSE - 1) yield { kind: 'pause' };
    let line = lines[i]!.replace(/\r$/, '');
    const lineNo = i + 1;
    // Conditional configuration: "@id rest" applies only under that config id, "@^id" under any other.
    const cond = /^\s*@(\^?)([^\s]+)\s*(.*)$/.exec(line);
    if (cond) {
      const match = cond[2] === ctx.configId;
      if (cond[1] ? match : !match) continue;
      line = cond[3]!;
    }
    const def = /^\s*\$([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (def) {
      ctx.vars.set(def[1]!, def[2]!.trim());
      continue;
    }
    const words = splitLine(line, file, lineNo, ctx);
    // An included file whose first word is no keepalived word (/etc/shadow, a binary) is not
    // read at all: its content must not reach an error message.
    if (firstLine && words.length) {
      firstLine = false;
      if (!looksKeepalived(words[0]!)) {
        ctx.diags.push({
          file,
          line: lineNo,
          column: 1,
          message: `${clip(file)} is not a keepalived.conf (line ${lineNo} does not start with a keepalived keyword); not read`,
        });
        return;
      }
    }
    if (words.length && !words[0]!.quoted && words[0]!.text === 'include') {
      if (words.length < 2) ctx.diags.push({ ...words[0]!.at, message: 'include: missing file name' });
      else yield* includeFiles(words[1]!, file, ctx, out, depth);
      continue;
    }
    out.push(...words, 'EOL');
  }
}

/**
 * Whether an included file's first word could start a keepalived.conf fragment: a keyword,
 * a brace, or a value line of a block (an address of a virtual_server_group or
 * virtual_ipaddress, a number).
 */
function looksKeepalived(w: Token): boolean {
  if (w.quoted) return true;
  const t = w.text;
  return KEEPALIVED_KEYWORDS.has(t) || t === 'include' || t === '{' || t === '}' || /^[0-9A-Fa-f:.[\]/-]+$/.test(t);
}

/** A bound is hit: reported first (whatever else the file has), and no further include is read. */
function limitHit(ctx: LexCtx, at: Origin, limit: ConfigLimit, message: string): void {
  ctx.stopped = true;
  ctx.onLimit(limit);
  ctx.diags.unshift({ ...at, message });
}

function* includeFiles(w: Token, from: string, ctx: LexCtx, out: Array<Token | 'EOL'>, depth: number): Lexing {
  const name = clip(w.text);
  if (ctx.stopped) return;
  if (depth >= CONFIG_LIMITS.maxIncludeDepth) {
    limitHit(
      ctx,
      w.at,
      'include_depth',
      `include ${name}: nested more than ${CONFIG_LIMITS.maxIncludeDepth} levels (an include loop?); no further include is read`,
    );
    return;
  }
  const pattern = isAbsolute(w.text) ? w.text : join(dirname(from), w.text);
  const globbed = /[*?[]/.test(pattern);
  let files: string[];
  if (globbed) {
    try {
      files = (yield { kind: 'glob', pattern }) as string[];
    } catch (e) {
      if (e instanceof ConfigReadError) limitHit(ctx, w.at, e.limit, `include ${name}: ${e.message}`);
      else ctx.diags.push({ ...w.at, message: `include ${name}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` });
      return;
    }
  } else files = [pattern];
  if (!files.length) ctx.diags.push({ ...w.at, message: `include ${name}: no file matches` });
  for (const f of files) {
    if (ctx.stopped) return;
    if (ctx.files >= CONFIG_LIMITS.maxIncludeFiles) {
      limitHit(
        ctx,
        w.at,
        'include_files',
        `include ${name}: more than ${CONFIG_LIMITS.maxIncludeFiles} files included in total; the rest are not read (an include loop?)`,
      );
      return;
    }
    let text: string;
    try {
      text = (yield { kind: 'read', path: f, budget: CONFIG_LIMITS.maxBytes - ctx.bytes }) as string;
    } catch (e) {
      // A directory among a glob's matches is skipped, as keepalived does; named, it is an error.
      if (e instanceof ConfigReadError && e.code === 'EISDIR' && globbed) continue;
      if (e instanceof ConfigReadError) {
        if (e.limit === 'bytes') limitHit(ctx, w.at, 'bytes', `include ${name}: ${e.message}; the rest is not read`);
        else {
          ctx.onLimit(e.limit);
          ctx.diags.push({ ...w.at, message: `include ${name}: ${clip(e.message, 200)}` });
        }
      } else
        ctx.diags.push({ ...w.at, message: `include ${name}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message} ${clip(f)}` });
      continue;
    }
    ctx.files++;
    ctx.bytes += utf8Bytes(text);
    yield* tokenizeFile(text, f, ctx, out, depth + 1);
  }
}

function splitLine(line: string, file: string, lineNo: number, ctx: LexCtx): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < line.length) {
    const ch = line[i]!;
    if (ch === ' ' || ch === '\t') {
      i++;
      continue;
    }
    if (ch === '#' || ch === '!') break;
    const at = { file, line: lineNo, column: i + 1 };
    if (ch === '{' || ch === '}') {
      out.push({ text: ch, quoted: false, at });
      i++;
      continue;
    }
    if (ch === '"') {
      const end = line.indexOf('"', i + 1);
      if (end < 0) {
        ctx.diags.push({ ...at, message: 'unterminated quoted string' });
        out.push({ text: line.slice(i + 1), quoted: true, at });
        break;
      }
      out.push({ text: expand(line.slice(i + 1, end), ctx), quoted: true, at });
      i = end + 1;
      continue;
    }
    let j = i;
    while (j < line.length && !' \t{}"#!'.includes(line[j]!)) j++;
    out.push({ text: expand(line.slice(i, j), ctx), quoted: false, at });
    i = j;
  }
  return out;
}

function expand(s: string, ctx: LexCtx): string {
  if (!s.includes('$')) return s;
  return s.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (m, a, b) => ctx.vars.get(a ?? b) ?? m);
}

/** Groups tokens into statements and blocks. */
function buildTree(tokens: Array<Token | 'EOL'>, diags: Diagnostic[]): Stmt[] {
  const root: Stmt[] = [];
  const stack: Array<{ list: Stmt[]; open: Token | null }> = [{ list: root, open: null }];
  let cur: Stmt | null = null;
  let last: Stmt | null = null;
  for (const t of tokens) {
    const top = stack[stack.length - 1]!;
    if (t === 'EOL') {
      if (cur) {
        top.list.push(cur);
        last = cur;
      }
      cur = null;
      continue;
    }
    if (!t.quoted && t.text === '{') {
      let owner = cur;
      if (owner) top.list.push(owner);
      // "{" alone on a line opens the block of the statement above it.
      else if (last && !last.block && top.list[top.list.length - 1] === last) owner = last;
      if (!owner) {
        diags.push({ ...t.at, message: '"{" without a keyword before it' });
        owner = { words: [], at: t.at };
        top.list.push(owner);
      }
      owner.block = [];
      stack.push({ list: owner.block, open: t });
      cur = null;
      last = null;
      continue;
    }
    if (!t.quoted && t.text === '}') {
      if (cur) top.list.push(cur);
      cur = null;
      if (stack.length === 1) {
        diags.push({ ...t.at, message: 'unbalanced "}": no block is open here' });
        continue;
      }
      const closed = stack.pop()!;
      const parent = stack[stack.length - 1]!;
      last = parent.list[parent.list.length - 1] ?? null;
      void closed;
      continue;
    }
    if (!cur) cur = { words: [], at: t.at };
    cur.words.push(t.text);
  }
  if (cur) stack[stack.length - 1]!.list.push(cur);
  for (let k = stack.length - 1; k > 0; k--) {
    const open = stack[k]!.open!;
    diags.push({ ...open.at, message: 'unbalanced "{": this block is never closed' });
  }
  return root;
}

/** A glob's pattern split into the path components to walk. */
function globParts(pattern: string): { base: string; parts: string[] } {
  // A relative pattern (a relative --config's includes) walks from the working directory.
  const parts = pattern.split('/').filter((p) => p !== '');
  return { base: isAbsolute(pattern) ? '/' : '.', parts };
}

function globRegExp(part: string): RegExp {
  try {
    return new RegExp(
      `^${part
        .replace(/[.+^${}()|\\]/g, '\\$&')
        .replace(/\*/g, '.*')
        .replace(/\?/g, '.')}$`,
    );
  } catch {
    // A "[" without its "]" (or a range such as [z-a]) is no class: glob(3) takes the name literally.
    return new RegExp(`^${part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`);
  }
}

function tooManyEntries(pattern: string): ConfigReadError {
  return new ConfigReadError(
    'EFBIG',
    `${clip(pattern)} scans more than ${CONFIG_LIMITS.maxGlobEntries} directory entries; name the files more narrowly`,
    'glob_entries',
  );
}

/** What the glob walk asks of the file system: a directory's names (at most `limit`), or whether a path exists. */
type GlobIo = { op: 'list'; dir: string; limit: number } | { op: 'exists'; path: string };

/**
 * Expands * ? and [..] in each path component (Node 20 has no fs.globSync). Sorted, as
 * glob(3). Bounded: at most CONFIG_LIMITS.maxGlobEntries directory entries are scanned, and
 * at most maxIncludeFiles + 1 matches kept (one more than any load may read). The walk is
 * written once; its I/O is yielded, so globSync and globAsync only answer it.
 */
function* globWalk(pattern: string): Generator<GlobIo, string[], string[] | boolean> {
  const { base, parts } = globParts(pattern);
  let bases = [base];
  let scanned = 0;
  for (const part of parts) {
    const next: string[] = [];
    for (const b of bases) {
      if (!/[*?[]/.test(part)) {
        next.push(join(b, part));
        continue;
      }
      const re = globRegExp(part);
      const names = (yield { op: 'list', dir: b, limit: CONFIG_LIMITS.maxGlobEntries - scanned }) as string[];
      scanned += names.length;
      for (const n of names.sort()) if (re.test(n) && !n.startsWith('.')) next.push(join(b, n));
    }
    bases = next.slice(0, CONFIG_LIMITS.maxIncludeFiles + 1);
  }
  const out: string[] = [];
  for (const f of bases) if ((yield { op: 'exists', path: f }) as boolean) out.push(f);
  return out;
}

function globSync(pattern: string): string[] {
  const walk = globWalk(pattern);
  for (let step = walk.next(); ; ) {
    if (step.done) return step.value;
    const io = step.value;
    if (io.op === 'exists') {
      let ok = true;
      try {
        statSync(io.path);
      } catch {
        ok = false;
      }
      step = walk.next(ok);
      continue;
    }
    const names: string[] = [];
    let dir: import('node:fs').Dir | null = null;
    try {
      dir = opendirSync(io.dir);
      for (let e = dir.readSync(); e; e = dir.readSync()) {
        if (names.length >= io.limit) throw tooManyEntries(pattern);
        names.push(e.name);
      }
    } catch (e) {
      if (e instanceof ConfigReadError) throw e;
      /* not a directory */
    } finally {
      dir?.closeSync();
    }
    step = walk.next(names);
  }
}

/** globSync without blocking the event loop. */
async function globAsync(pattern: string): Promise<string[]> {
  const walk = globWalk(pattern);
  for (let step = walk.next(); ; ) {
    if (step.done) return step.value;
    const io = step.value;
    if (io.op === 'exists') {
      step = walk.next(
        await fsp.stat(io.path).then(
          () => true,
          () => false,
        ),
      );
      continue;
    }
    const names: string[] = [];
    let dir: import('node:fs').Dir | null = null;
    try {
      dir = await fsp.opendir(io.dir);
      for (let e = await dir.read(); e; e = await dir.read()) {
        if (names.length >= io.limit) throw tooManyEntries(pattern);
        names.push(e.name);
      }
    } catch (e) {
      if (e instanceof ConfigReadError) throw e;
      /* not a directory */
    } finally {
      await dir?.close().catch(() => undefined);
    }
    step = walk.next(names);
  }
}
