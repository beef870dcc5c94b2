/**
 * A YAML reload that would silently empty the table (issue #13 item 10): an empty file, or
 * one without `services:`, is refused while the running config has services; `services: []`
 * removes them on purpose. ConfigManager over a real Director (fake data plane), reading
 * real files through its worker thread.
 */
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { loadConfig } from '../../src/config/load.js';
import { ConfigManager } from '../../src/daemon/reload.js';
import { makeDirector } from '../health/helper.js';

const dir = mkdtempSync(join(tmpdir(), 'tsvs-empty-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const ONE = `services:
  - address: 127.0.0.1
    port: 8080
    scheduler: rr
    real_servers:
      - { address: 127.0.0.1, port: 9001 }
`;

describe('a reload that would empty the table', () => {
  test('an empty file or one without services: is refused; services: [] empties on purpose', async () => {
    const path = join(dir, 'tsvs.yaml');
    writeFileSync(path, ONE);
    const { director, table, logs } = await makeDirector();
    const m = new ConfigManager(director, logs.log, path);
    await m.start(await loadConfig(path));
    try {
      assert.equal(table.list().length, 1);
      for (const text of ['', '# nothing here\n', 'timeouts: { tcp: 900 }\n']) {
        writeFileSync(path, text);
        const r = await m.reload();
        assert.equal(r.ok, false, `refused: ${JSON.stringify(text)}`);
        assert.match(
          r.error!,
          /declares no services \(an empty file, or no "services:" key\), which would remove all 1 running; write "services: \[\]"/,
        );
        assert.equal(table.list().length, 1, 'the table is unchanged');
      }
      assert.ok(logs.messages().some((l) => l.startsWith('reload refused: ')));
      writeFileSync(path, 'services: []\n');
      const r = await m.reload();
      assert.equal(r.ok, true, r.error);
      assert.equal(table.list().length, 0);
      // Nothing running: an empty file is no longer a surprise.
      writeFileSync(path, '');
      assert.equal((await m.reload()).ok, true);
    } finally {
      await m.stop();
    }
  });
});
