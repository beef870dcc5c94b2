/** Writes one section of bench/RESULTS.md, replacing that section if it is there already. */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const RESULTS = join(import.meta.dirname, 'RESULTS.md');

export function writeSection(heading: string, body: string): void {
  const text = existsSync(RESULTS) ? readFileSync(RESULTS, 'utf8') : '# tsvs benchmark results\n';
  const marker = `## ${heading}`;
  const start = text.indexOf(marker);
  let out: string;
  if (start < 0) {
    out = `${text.trimEnd()}\n\n${marker}\n\n${body.trim()}\n`;
  } else {
    const next = text.indexOf('\n## ', start + marker.length);
    out = `${text.slice(0, start)}${marker}\n\n${body.trim()}\n${next < 0 ? '' : text.slice(next)}`;
  }
  writeFileSync(RESULTS, out);
}
