/**
 * The Debian packages the tests need, against what CI installs. Each test folder that needs
 * system packages keeps them in `apt-packages.txt` next to its tests; `.ci/run` installs
 * their union. This file checks, so that a test cannot again depend on a package a fresh
 * CI machine lacks (issue #20: nft printed the NFQUEUE rule only with iptables installed):
 *
 * - every list is well formed: one Debian package name a line, each with its reason;
 * - `.ci/run --print-packages` (what it installs) is exactly the union of the lists;
 * - every command a privileged() gate names in a test file comes from a package listed
 *   next to that test (or one such package depends on it, or it is Essential), asked of
 *   dpkg where the command is installed;
 * - under TSVS_REQUIRE_PRIVILEGED=1 (CI, after .ci/run installed them) every listed
 *   package is installed, and every gated command is found.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, realpathSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { describe, test } from 'node:test';

const ROOT = join(import.meta.dirname, '..', '..');
const TEST = join(ROOT, 'test');
const LIST = 'apt-packages.txt';
const REQUIRED = process.env.TSVS_REQUIRE_PRIVILEGED === '1';
/** privileged()'s default when called without a list (test/privileged.ts). */
const DEFAULT_NEEDS = ['ip', 'nft'];

/** Files under `dir`, recursively, whose name passes `keep`. */
function files(dir: string, keep: (name: string) => boolean): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    if (e.name === 'node_modules' || e.name === 'fixtures') return [];
    const p = join(dir, e.name);
    return e.isDirectory() ? files(p, keep) : keep(e.name) ? [p] : [];
  });
}

/** The packages of one list, each with its line's reason; throws naming the file and line of a bad one. */
function readList(file: string): Map<string, string> {
  const out = new Map<string, string>();
  readFileSync(file, 'utf8')
    .split('\n')
    .forEach((line, i) => {
      const [body = '', ...why] = line.split('#');
      const name = body.trim();
      if (!name) return;
      const where = `${relative(ROOT, file)}:${i + 1}`;
      if (!/^[a-z0-9][a-z0-9+.-]+$/.test(name)) throw new Error(`${where}: "${name}" is not one Debian package name`);
      if (!why.join('#').trim()) throw new Error(`${where}: ${name} has no reason (write "# which tests need it for what")`);
      if (out.has(name)) throw new Error(`${where}: ${name} is listed twice`);
      out.set(name, why.join('#').trim());
    });
  return out;
}

/** The commands named by the privileged() gates of a test file. */
function gatedCommands(file: string): string[] {
  // Comments may name the gate too: only code counts.
  const src = readFileSync(file, 'utf8')
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/^\s*\/\/.*$/gm, '');
  const out = new Set<string>();
  for (const m of src.matchAll(/\bprivileged\(\s*(\[[^\]]*\])?\s*\)/g)) {
    const names = m[1] ? [...m[1].matchAll(/'([^']+)'/g)].map((x) => x[1]!) : DEFAULT_NEEDS;
    for (const n of names) out.add(n);
  }
  return [...out];
}

const sh = (cmd: string, args: string[]) => spawnSync(cmd, args, { encoding: 'utf8' });
const hasDpkg = sh('sh', ['-c', 'command -v dpkg-query']).status === 0;

/** The package that ships `cmd` as found on PATH, or null (not installed, or no package owns it). */
function ownerOf(cmd: string): string | null {
  const path = sh('sh', ['-c', `command -v ${cmd}`]).stdout.trim();
  if (!path.startsWith('/')) return null;
  // dpkg knows a file by the path its package ships: with merged /usr that may be /bin/x for
  // /usr/bin/x, and an alternatives symlink is known only by its target.
  const real = realpathSync(path);
  for (const p of new Set([path, real, path.replace(/^\/usr/, ''), real.replace(/^\/usr/, '')])) {
    const r = sh('dpkg-query', ['-S', p]);
    if (r.status === 0) return r.stdout.split(':')[0]!.split(',')[0]!.trim();
  }
  return null;
}

/** A dpkg-query field of an installed package ('' when it is not installed). */
const field = (pkg: string, f: string) => sh('dpkg-query', ['-W', `-f=\${${f}}`, pkg]).stdout;

/** Whether `pkg` arrives with the packages of `list`: listed, a direct dependency of a listed one, or Essential. */
function covered(pkg: string, list: ReadonlySet<string>): boolean {
  if (list.has(pkg) || field(pkg, 'Essential') === 'yes') return true;
  for (const l of list) {
    const deps = `${field(l, 'Pre-Depends')},${field(l, 'Depends')}`.split(/[,|]/).map((d) => d.trim().split(/[\s:(]/)[0]);
    if (deps.includes(pkg)) return true;
  }
  return false;
}

const lists = files(TEST, (n) => n === LIST);
const byDir = new Map(lists.map((f) => [dirname(f), readList(f)]));
const union = [...new Set([...byDir.values()].flatMap((m) => [...m.keys()]))].sort();

describe('the Debian packages the tests need', () => {
  test('each test folder that needs packages lists them, one package a line with its reason', () => {
    assert.ok(lists.length >= 5, `found ${lists.length} ${LIST} files under test/`);
    assert.ok(union.includes('iptables') && union.includes('nftables'), `the nftables tests' packages: ${union}`);
  });

  test('.ci/run installs exactly the union of the lists', () => {
    const r = sh('bash', [join(ROOT, '.ci/run'), '--print-packages']);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), union);
  });

  test('every command a privileged() gate names comes from a package listed next to that test', {
    skip: !hasDpkg && !REQUIRED ? 'needs dpkg-query (Debian) to find which package ships a command' : false,
  }, () => {
    const problems: string[] = [];
    let checked = 0;
    // Not this file: its own titles name the gate.
    for (const file of files(TEST, (n) => n.endsWith('.test.ts')).filter((f) => f !== import.meta.filename)) {
      const cmds = gatedCommands(file);
      if (!cmds.length) continue;
      const list = byDir.get(dirname(file));
      const name = relative(ROOT, file);
      if (!list) {
        problems.push(`${name} gates on ${cmds.join(', ')} but ${relative(ROOT, join(dirname(file), LIST))} does not exist`);
        continue;
      }
      for (const cmd of cmds) {
        const pkg = ownerOf(cmd);
        if (!pkg) {
          // Not installed here: only CI (which installed every list) must have it.
          if (REQUIRED) problems.push(`${name} gates on ${cmd}, which is not installed (or no package ships it)`);
          continue;
        }
        checked++;
        if (!covered(pkg, new Set(list.keys())))
          problems.push(`${name} gates on ${cmd}, from package ${pkg}, which ${relative(ROOT, join(dirname(file), LIST))} does not list`);
      }
    }
    assert.deepEqual(problems, []);
    assert.ok(checked > 0, 'at least one gated command was checked');
  });

  test('every listed package is installed (CI: after .ci/run)', {
    skip: !REQUIRED ? 'only under TSVS_REQUIRE_PRIVILEGED=1 (CI), where .ci/run installed them' : false,
  }, () => {
    const missing = union.filter((p) => !field(p, 'Status').endsWith('install ok installed'));
    assert.deepEqual(missing, [], `listed but not installed: ${missing.join(' ')} (apt-get install them, or run .ci/run)`);
  });
});
