// Links the package's own bins into node_modules/.bin, so that after `npm install` in the
// repo `npx tsvsd`, `node_modules/.bin/tsvsd` and friends run the real entry points, with no
// wrapper process in between (supervisors and tests signal the daemon by its PID).
import { chmodSync, mkdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const binDir = join(root, 'node_modules', '.bin');
mkdirSync(binDir, { recursive: true });
for (const [name, target] of Object.entries(pkg.bin)) {
  const abs = join(root, target);
  chmodSync(abs, 0o755);
  const link = join(binDir, name);
  rmSync(link, { force: true });
  symlinkSync(relative(binDir, abs), link);
}
