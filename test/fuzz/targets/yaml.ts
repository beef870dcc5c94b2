/**
 * Target: the YAML configuration (src/config/yaml/parse.ts parseYamlConfig).
 *
 * Properties: it throws nothing but a ConfigError (each diagnostic placed, its message
 * short); an accepted file, written back by toYaml, reads back to the same services.
 * Inputs: mutations of valid files (characters, keys and values swapped for others the
 * grammar knows), and documents built from the grammar's keys with random values.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { parseYamlConfig } from '../../../src/config/yaml/parse.js';
import { mutatedText, type FuzzTarget } from '../fuzz.js';
import { parseOrRefuse, yamlRoundTrip } from './config.js';

const EXAMPLE = readFileSync(join(import.meta.dirname, '../../config/fixtures/example.yaml'), 'utf8');
export const SEEDS = [
  EXAMPLE,
  'services:\n  - address: 10.0.0.1\n    port: 80\n    real_servers:\n      - address: 10.0.1.1\n        port: 8080\n',
  'dataplane: userspace\napi: { listen: 127.0.0.1:9000 }\nservices:\n  - address: "2001:db8::1"\n    port: 443\n    protocol: tcp\n    scheduler: mh\n    sched_flags: [mh-port]\n    real_servers: [{ address: "2001:db8::2", port: 443, weight: 0 }]\n',
  'services:\n  - address: 10.0.0.1\n    port: 53\n    protocol: udp\n    one_packet: true\n    real_servers:\n      - { address: 10.0.1.1, port: 53, checks: [{ type: udp, payload: "0a0b" }] }\n',
  'timeouts: { tcp: 1, tcpfin: 0, udp: 86400 }\nservices: []\n',
  '',
];
const PIECES = [
  ': ',
  '\n',
  '  ',
  '- ',
  '{',
  '}',
  '[',
  ']',
  '"',
  "'",
  '#',
  '&a',
  '*a',
  '!!str ',
  '<<: ',
  '~',
  'null',
  'true',
  '0',
  '-1',
  '65536',
  '4294967296',
  '1e309',
  '0x1F',
  '1.5',
  '10.0.0.1',
  '::1',
  '2001:db8::1',
  '127.0.0.１',
  'address',
  'port',
  'fwmark',
  'scheduler',
  '__proto__',
  'constructor',
  'toString',
  'real_servers',
  'weight',
  'checks',
  'type',
  'http',
  'tcp',
  'udp',
  'misc',
  'dns',
  'interval',
  'timeout',
  'persistence',
  'vrrp',
  'virtual_ipaddress',
  'one_packet',
  'sync',
  'sorry_server',
  'method',
  'dr',
  'tunnel',
  'fullnat',
  'u_threshold',
  'l_threshold',
];

const scalar = fc.oneof(
  fc.constantFrom(...PIECES),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.string({ maxLength: 10 }),
);
const key = fc.constantFrom(...PIECES.filter((p) => /^[a-z_]+$/.test(p)));
/** A document from the grammar's keys: services whose keys are known, with random values and nested lists of maps. */
const inner = fc.dictionary(key, scalar, { maxKeys: 6 });
const value = fc.oneof(
  { weight: 4, arbitrary: scalar },
  { weight: 1, arbitrary: fc.array(inner, { maxLength: 3 }) },
  { weight: 1, arbitrary: inner },
);
const built = fc
  .record({
    services: fc.array(fc.dictionary(key, value, { maxKeys: 8 }), { maxLength: 3 }),
    extra: fc.dictionary(key, value, { maxKeys: 3 }),
  })
  .map(({ services, extra }) => stringify({ ...extra, services }));

const text = fc.oneof({ weight: 3, arbitrary: mutatedText(SEEDS, PIECES) }, { weight: 1, arbitrary: built });

export const yamlTarget: FuzzTarget = {
  name: 'YAML config',
  properties: [
    {
      name: 'throws nothing but a ConfigError with placed, short diagnostics; accepted files round-trip through toYaml',
      runs: 400,
      property: () =>
        fc.property(text, (t) => {
          const cfg = parseOrRefuse(() => parseYamlConfig(t, 'fuzz.yaml'), 'parseYamlConfig', t);
          if (cfg) yamlRoundTrip(cfg, 'YAML');
          return true;
        }),
    },
  ],
};
