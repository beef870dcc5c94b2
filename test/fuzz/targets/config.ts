/**
 * What the two configuration targets share: a parse either gives a model or throws a
 * ConfigError whose diagnostics each name a place and a short message; and the model of
 * an accepted file, written as YAML (toYaml), reads back to the same services.
 */
import { ConfigError } from '../../../src/config/errors.js';
import { toYaml } from '../../../src/config/convert.js';
import type { TsvsConfig } from '../../../src/config/model.js';
import { parseYamlConfig } from '../../../src/config/yaml/parse.js';
import { describeError } from '../fuzz.js';

/** The longest diagnostic message we accept: an error names the problem, it does not quote the input. */
export const MAX_MESSAGE = 2000;

/** Parses; returns the model, or null for a well-formed refusal; throws on anything else. */
export function parseOrRefuse(parse: () => TsvsConfig, what: string, text: string): TsvsConfig | null {
  try {
    return parse();
  } catch (e) {
    if (!(e instanceof ConfigError)) throw new Error(`${what} threw ${describeError(e)}\non input ${JSON.stringify(text.slice(0, 2000))}`);
    if (!e.diagnostics.length) throw new Error(`${what}: a ConfigError without diagnostics`);
    for (const d of e.diagnostics) {
      if (!Number.isInteger(d.line) || d.line < 0 || !Number.isInteger(d.column) || d.column < 0)
        throw new Error(`${what}: diagnostic without a place: ${JSON.stringify(d)}`);
      if (typeof d.message !== 'string' || !d.message || d.message.length > MAX_MESSAGE)
        throw new Error(`${what}: diagnostic message empty or over ${MAX_MESSAGE} characters: ${d.message.slice(0, 300)}...`);
    }
    return null;
  }
}

const strip = (c: TsvsConfig) => JSON.stringify(c.services, (k, v) => (k === 'origin' ? undefined : v));

/** toYaml of an accepted model reads back to the same services. */
export function yamlRoundTrip(cfg: TsvsConfig, what: string): void {
  const text = toYaml(cfg);
  let back: TsvsConfig;
  try {
    back = parseYamlConfig(text, 'roundtrip.yaml');
  } catch (e) {
    throw new Error(`${what}: toYaml's output does not read back: ${describeError(e)}\n${text}`);
  }
  if (strip(back) !== strip(cfg))
    throw new Error(`${what}: round trip changed the services\n${strip(cfg)}\n---\n${strip(back)}\n---\n${text}`);
}
