/**
 * The bounds of a config load (docs/config.md "Limits", src/config/read.ts): keepalived
 * `include` fan-out, special files, bytes, glob entries, diagnostics, and files that are
 * not a keepalived.conf. Real files in a temp directory; `tsvs config check` in process.
 */
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, describe, test } from 'node:test';
import { runConfig } from '../../src/cli/config.js';
import { ConfigError } from '../../src/config/errors.js';
import { parseKeepalivedConfig } from '../../src/config/keepalived/index.js';
import { loadConfig } from '../../src/config/load.js';
import { CONFIG_LIMITS, limitHits } from '../../src/config/read.js';

const dir = mkdtempSync(join(tmpdir(), 'tsvs-limits-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const VS = `virtual_server 127.0.0.1 80 {
  lb_algo rr
  lb_kind NAT
  protocol TCP
  real_server 127.0.0.1 8080 {
    weight 1
  }
}
`;

function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

async function refusal(path: string): Promise<ConfigError> {
  try {
    await loadConfig(path);
  } catch (e) {
    assert.ok(e instanceof ConfigError, `a ConfigError, got ${(e as Error).message}`);
    return e;
  }
  throw new Error(`${path} was accepted`);
}

function sink(): { stream: Writable; text: () => string } {
  let t = '';
  const stream = new Writable({
    write(c, _e, cb) {
      t += c.toString();
      cb();
    },
  });
  return { stream, text: () => t };
}

describe('keepalived include fan-out (issue #13 item 1)', () => {
  for (const n of [4, 5]) {
    test(`a file that includes itself ${n} times per level is refused at the first loop, with a short error`, async () => {
      const main = file(`fan${n}.conf`, `${VS}${`include fan${n}.conf\n`.repeat(n)}`);
      const before = limitHits.get('include_depth') ?? 0;
      const e = await refusal(main);
      assert.match(e.diagnostics[0]!.message, /nested more than 8 levels \(an include loop\?\); no further include is read/);
      assert.ok(e.diagnostics.length <= CONFIG_LIMITS.maxDiagnostics);
      assert.ok(e.detail.length < 64 * 1024, `error text of ${e.detail.length} bytes`);
      assert.equal(limitHits.get('include_depth'), before + 1, 'the bound counts in the metric');
    });
  }

  test(`more than ${CONFIG_LIMITS.maxIncludeFiles} included files in total are refused, the bound named first`, async () => {
    file('leaf.conf', '! nothing\n');
    const before = limitHits.get('include_files') ?? 0;
    const e = await refusal(file('wide.conf', `${VS}${'include leaf.conf\n'.repeat(CONFIG_LIMITS.maxIncludeFiles + 50)}`));
    assert.match(
      e.diagnostics[0]!.message,
      new RegExp(`more than ${CONFIG_LIMITS.maxIncludeFiles} files included in total; the rest are not read`),
    );
    assert.equal(e.total, 1);
    assert.equal(limitHits.get('include_files'), before + 1);
  });

  test('tsvs config check on the fan-out exits 1 with the collapsed list, not an abort', async () => {
    const main = file('fan-check.conf', `${VS}${'include fan-check.conf\n'.repeat(5)}`);
    const out = sink();
    const err = sink();
    assert.equal(await runConfig(['check', main], out.stream as typeof process.stdout, err.stream as typeof process.stderr), 1);
    assert.match(err.text(), /an include loop\?/);
    assert.ok(err.text().length < 64 * 1024);
    // Many errors: the listed ones, one "... and N more" line, and the true count.
    const many = file('many-check.conf', `${VS}${'no_such_keyword 1\n'.repeat(500)}`);
    const err2 = sink();
    assert.equal(await runConfig(['check', many], out.stream as typeof process.stdout, err2.stream as typeof process.stderr), 1);
    assert.match(
      err2.text(),
      new RegExp(`\\n\\.\\.\\. and ${500 - CONFIG_LIMITS.maxDiagnostics} more errors\\n.*many-check\\.conf: 500 errors\\n$`),
    );
  });

  test('diagnostics beyond the limit collapse into one "... and N more" line', () => {
    const text = `${VS}${'no_such_keyword 1\n'.repeat(500)}`;
    try {
      parseKeepalivedConfig(text, 'many.conf');
      assert.fail('accepted');
    } catch (e) {
      assert.ok(e instanceof ConfigError);
      assert.equal(e.total, 500);
      assert.equal(e.diagnostics.length, CONFIG_LIMITS.maxDiagnostics);
      assert.match(e.detail, new RegExp(`\\n\\.\\.\\. and ${500 - CONFIG_LIMITS.maxDiagnostics} more errors$`));
    }
  });

  test('a glob include relative to a relative main file finds its files; more than the byte budget is refused', async () => {
    const sub = join(dir, 'rel');
    mkdirSync(sub);
    writeFileSync(join(sub, 'main.conf'), 'include part-*.conf\n');
    writeFileSync(join(sub, 'part-1.conf'), VS);
    const cwd = process.cwd();
    process.chdir(sub);
    try {
      assert.equal((await loadConfig('main.conf')).config.services.length, 1);
    } finally {
      process.chdir(cwd);
    }
    const big = file('big-part.conf', `! ${'x'.repeat(CONFIG_LIMITS.maxBytes)}\n`);
    void big;
    const e = await refusal(file('big-main.conf', `${VS}include big-part.conf\n`));
    assert.match(e.detail, new RegExp(`exceeds what is left of the limit of ${CONFIG_LIMITS.maxBytes} bytes read in total`));
  });

  test(`a glob that scans more than ${CONFIG_LIMITS.maxGlobEntries} directory entries is refused`, async () => {
    const many = join(dir, 'many');
    mkdirSync(many);
    for (let i = 0; i <= CONFIG_LIMITS.maxGlobEntries; i++) writeFileSync(join(many, `f${i}`), '');
    const e = await refusal(file('glob-main.conf', `${VS}include many/*.conf\n`));
    assert.match(e.detail, new RegExp(`scans more than ${CONFIG_LIMITS.maxGlobEntries} directory entries`));
  });
});

describe('special files (issue #13 item 1)', () => {
  test('an include of a FIFO is refused by name at once, without opening it', async () => {
    execFileSync('mkfifo', [join(dir, 'pipe.conf')]);
    const t0 = Date.now();
    const e = await refusal(file('fifo-main.conf', `${VS}include pipe.conf\n`));
    assert.match(e.detail, /pipe\.conf is a FIFO, not a regular file/);
    assert.ok(Date.now() - t0 < 5000);
    // The same through the synchronous parser (tests, text in hand).
    assert.throws(() => parseKeepalivedConfig(`${VS}include ${join(dir, 'pipe.conf')}\n`, join(dir, 'x.conf')), /is a FIFO/);
  });

  test('a FIFO as the main config is refused by name', async () => {
    execFileSync('mkfifo', [join(dir, 'main-pipe.conf')]);
    await assert.rejects(loadConfig(join(dir, 'main-pipe.conf')), /main-pipe\.conf is a FIFO, not a regular file/);
  });

  test('a device, a socket-like special and a named directory are refused by name; a directory a glob matches is skipped', async () => {
    let e = await refusal(file('dev-main.conf', `${VS}include /dev/zero\n`));
    assert.match(e.detail, /\/dev\/zero is a character device, not a regular file/);
    mkdirSync(join(dir, 'adir'));
    e = await refusal(file('dir-main.conf', `${VS}include adir\n`));
    assert.match(e.detail, /adir is a directory, not a config file/);
    mkdirSync(join(dir, 'conf.d'));
    mkdirSync(join(dir, 'conf.d', 'sub.conf'));
    writeFileSync(join(dir, 'conf.d', 'a.conf'), VS);
    assert.equal((await loadConfig(file('glob-dir.conf', 'include conf.d/*.conf\n'))).config.services.length, 1);
  });
});

describe('an included file that is not a keepalived.conf (issue #13 item 9)', () => {
  test('is named as such, and none of its content reaches the error', async () => {
    const secret = file('shadow', 'root:$6$SECRETSALT$SECRETHASHVALUE:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n');
    const e = await refusal(file('shadow-main.conf', `${VS}include ${secret}\n`));
    assert.match(e.detail, /shadow is not a keepalived\.conf \(line 1 does not start with a keepalived keyword\); not read/);
    assert.doesNotMatch(e.detail, /SECRET|root|daemon/);
  });

  test('a fragment that starts with a keyword, a brace or an address is read as before', async () => {
    file('frag-rs.conf', '  real_server 127.0.0.1 8081 {\n    weight 2\n  }\n');
    const main = file('frag-main.conf', VS.replace('  real_server', '  include frag-rs.conf\n  real_server'));
    const c = await loadConfig(main);
    assert.deepEqual(
      c.config.services[0]!.realServers.map((r) => r.port),
      [8081, 8080],
    );
  });
});
