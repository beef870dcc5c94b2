/**
 * keepalived.conf syntax to a tree of statements. As keepalived reads it: words separated
 * by blanks, "quoted strings", comments from '#' or '!' to the end of the line, '{' and '}'
 * open and close a statement's block (the '{' may stand on the next line), `include GLOB`
 * (relative to the including file), `@id` / `@^id` conditional lines (config id, default
 * the host name, as `keepalived -i`), and `$NAME=value` definitions used as `$NAME` or
 * `${NAME}`. Unbalanced braces are errors naming the line of the brace.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import type { Diagnostic, Origin } from '../model.js';

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
  /** Reads an included file; defaults to the file system. */
  readFile?: (path: string) => string;
}

interface Token {
  text: string;
  quoted: boolean;
  at: Origin;
}

const MAX_INCLUDE_DEPTH = 8;

/** Parses a keepalived.conf text (and its includes) into statements; syntax errors go into `diags`. */
export function lexKeepalived(text: string, file: string, diags: Diagnostic[], opts: LexOptions = {}): Stmt[] {
  const ctx = {
    configId: opts.configId ?? hostname().split('.')[0]!,
    read: opts.readFile ?? ((p: string) => readFileSync(p, 'utf8')),
    vars: new Map<string, string>(),
    diags,
  };
  const tokens: Array<Token | 'EOL'> = [];
  tokenizeFile(text, file, ctx, tokens, 0);
  return buildTree(tokens, diags);
}

interface LexCtx {
  configId: string;
  read: (p: string) => string;
  vars: Map<string, string>;
  diags: Diagnostic[];
}

function tokenizeFile(text: string, file: string, ctx: LexCtx, out: Array<Token | 'EOL'>, depth: number): void {
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
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
    if (words.length && !words[0]!.quoted && words[0]!.text === 'include') {
      if (words.length < 2) ctx.diags.push({ ...words[0]!.at, message: 'include: missing file name' });
      else includeFiles(words[1]!, file, ctx, out, depth);
      continue;
    }
    out.push(...words, 'EOL');
  }
}

function includeFiles(w: Token, from: string, ctx: LexCtx, out: Array<Token | 'EOL'>, depth: number): void {
  if (depth >= MAX_INCLUDE_DEPTH) {
    ctx.diags.push({ ...w.at, message: `include ${w.text}: nested more than ${MAX_INCLUDE_DEPTH} levels (an include loop?)` });
    return;
  }
  const pattern = isAbsolute(w.text) ? w.text : join(dirname(from), w.text);
  let files: string[];
  files = /[*?[]/.test(pattern) ? glob(pattern) : [pattern];
  if (!files.length) ctx.diags.push({ ...w.at, message: `include ${w.text}: no file matches` });
  for (const f of files) {
    let text: string;
    try {
      if (statSync(f).isDirectory()) continue;
      text = ctx.read(f);
    } catch (e) {
      ctx.diags.push({ ...w.at, message: `include ${w.text}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message} ${f}` });
      continue;
    }
    tokenizeFile(text, f, ctx, out, depth + 1);
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

/** Expands * ? and [..] in each path component (Node 20 has no fs.globSync). Sorted, as glob(3). */
function glob(pattern: string): string[] {
  const parts = pattern.split('/');
  let bases = [parts[0] === '' ? '/' : parts[0]!];
  for (const part of parts.slice(1)) {
    if (part === '') continue;
    const next: string[] = [];
    for (const b of bases) {
      if (!/[*?[]/.test(part)) {
        next.push(join(b, part));
        continue;
      }
      let re: RegExp;
      try {
        re = new RegExp(
          `^${part
            .replace(/[.+^${}()|\\]/g, '\\$&')
            .replace(/\*/g, '.*')
            .replace(/\?/g, '.')}$`,
        );
      } catch {
        // A "[" without its "]" (or a range such as [z-a]) is no class: glob(3) takes the name literally.
        re = new RegExp(`^${part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`);
      }
      let names: string[] = [];
      try {
        names = readdirSync(b);
      } catch {
        /* not a directory */
      }
      for (const n of names.sort()) if (re.test(n) && !n.startsWith('.')) next.push(join(b, n));
    }
    bases = next;
  }
  return bases.filter((f) => {
    try {
      statSync(f);
      return true;
    } catch {
      return false;
    }
  });
}
