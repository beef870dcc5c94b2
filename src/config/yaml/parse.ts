/**
 * The YAML configuration format (documented in docs/config.md): the document and its top
 * level. Read with `yaml`'s document API so that every value keeps its source position
 * (reader.ts); services.ts, checkers.ts, vrrp.ts and sync.ts map their parts to the model.
 * All errors are collected, then thrown together as a ConfigError.
 */
import { isScalar, LineCounter, parseDocument, type Node } from 'yaml';
import { bounds, TimeoutsSchema } from '../../core/schema.js';
import { DEFAULT_TIMEOUTS } from '../../core/tcpstate.js';
import { ConfigError } from '../errors.js';
import type { TsvsConfig } from '../model.js';
import { checkModel } from '../schema.js';
import { asMap, Ctx } from './reader.js';
import { readService } from './services.js';
import { readSync } from './sync.js';
import { readVrrp, readVrrpScript } from './vrrp.js';

const T = TimeoutsSchema.shape;

/** Parses the YAML format into the model; throws ConfigError with every problem found. */
export function parseYamlConfig(text: string, file: string): TsvsConfig {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: false });
  const ctx = new Ctx(file, lines);
  for (const e of doc.errors) {
    const p = lines.linePos(e.pos[0]);
    ctx.diags.push({ file, line: p.line, column: p.col, message: `YAML syntax: ${e.message.split('\n')[0]}` });
  }
  if (ctx.diags.length) throw new ConfigError(ctx.diags);
  const cfg: TsvsConfig = { format: 'yaml', file, services: [], vrrp: [], unsupported: [] };
  const root = doc.contents as Node | null;
  if (!root || (isScalar(root) && root.value === null)) return cfg;
  const top = asMap(ctx, root, '');
  if (!top) throw new ConfigError(ctx.diags);

  const t = top.map('timeouts');
  if (t) {
    const tcp = t.int('tcp', bounds(T.tcp));
    const tcpfin = t.int('tcpfin', bounds(T.tcpfin));
    const udp = t.int('udp', bounds(T.udp));
    t.done(['tcp', 'tcpfin', 'udp']);
    if (tcp !== undefined || tcpfin !== undefined || udp !== undefined)
      cfg.timeouts = { tcp: tcp ?? DEFAULT_TIMEOUTS.tcp, tcpfin: tcpfin ?? DEFAULT_TIMEOUTS.tcpfin, udp: udp ?? DEFAULT_TIMEOUTS.udp };
  }
  const dp = top.oneOf('dataplane', ['userspace', 'nftables']);
  if (dp) cfg.dataplane = dp;
  const api = top.map('api');
  if (api) {
    const listen = api.str('listen');
    api.done(['listen']);
    cfg.api = listen === undefined ? {} : { listen };
  }
  const services = top.list('services', (n, path) => readService(ctx, n, path));
  cfg.services = services ?? [];
  if (services?.length === 0) cfg.noServicesOnPurpose = true;
  cfg.vrrp = top.list('vrrp', (n, path) => readVrrp(ctx, n, path)) ?? [];
  const scripts = top.list('vrrp_scripts', (n, path) => readVrrpScript(ctx, n, path));
  if (scripts) cfg.vrrpScripts = scripts;
  const sync = readSync(ctx, top);
  if (sync) cfg.sync = sync;
  top.done(['timeouts', 'dataplane', 'api', 'services', 'vrrp', 'vrrp_scripts', 'sync']);
  if (!ctx.diags.length) ctx.diags.push(...checkModel(cfg));
  if (ctx.diags.length) throw new ConfigError(ctx.diags);
  return cfg;
}
