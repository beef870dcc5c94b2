/**
 * keepalived.conf to the tsvs model, split as keepalived splits its own: global.ts
 * (global_defs), ipvs.ts (virtual_server, virtual_server_group, real_server, sorry_server),
 * checkers.ts (TCP_CHECK, HTTP_GET, SSL_GET, UDP_CHECK, DNS_CHECK, MISC_CHECK, with
 * keepalived's defaults and inheritance: virtual server -> real server -> checker) and
 * vrrp.ts (vrrp_instance, vrrp_script, which src/ha runs), over lexer.ts (the syntax) and
 * reader.ts (errors and argument readers). Every other keepalived keyword is reported as
 * unsupported with its place, never dropped silently; a word that is not a keepalived
 * keyword at all (keywords.ts), or a bad value, is an error.
 */ import { ConfigError } from '../errors.js';
import type { TsvsConfig } from '../model.js';
import { checkModel } from '../schema.js';
import { readGlobals } from './global.js';
import { readGroup, readVirtualServer, type ServiceAddr } from './ipvs.js';
import { KEEPALIVED_KEYWORDS } from './keywords.js';
import { lexKeepalived, lexKeepalivedAsync, type LexOptions, type Stmt } from './lexer.js';
import { Reader } from './reader.js';
import { readVrrp, readVrrpScript } from './vrrp.js';
import { quote } from '../../core/quote.js';

/** Top-level keywords tsvs does not act on (reported as unsupported). */
const TOP_LEVEL = new Set([
  'vrrp_sync_group',
  'static_ipaddress',
  'static_routes',
  'static_rules',
  'linkbeat_interfaces',
  'bfd_instance',
  'garp_group',
  'track_file',
  'vrrp_track_process',
  'net_namespace',
  'net_namespace_ipvs',
  'instance',
  'use_pid_dir',
  'SSL',
  'track_process',
  'namespace_with_ipsets',
]);

/** Parses keepalived.conf text into the tsvs model; throws ConfigError listing every error. Reads includes synchronously. */
export function parseKeepalivedConfig(text: string, file: string, opts: LexOptions = {}): TsvsConfig {
  const r = new Reader();
  return readStatements(r, lexKeepalived(text, file, r.errors, opts), file);
}

/**
 * parseKeepalivedConfig for the daemon and `tsvs config check`: includes are read without
 * blocking the event loop, within CONFIG_LIMITS (src/config/read.ts).
 */
export async function parseKeepalivedConfigAsync(text: string, file: string, opts: LexOptions = {}): Promise<TsvsConfig> {
  const r = new Reader();
  return readStatements(r, await lexKeepalivedAsync(text, file, r.errors, opts), file);
}

function readStatements(r: Reader, stmts: Stmt[], file: string): TsvsConfig {
  const cfg: TsvsConfig = { format: 'keepalived', file, services: [], vrrp: [], unsupported: r.unsupported };
  const groups = new Map<string, ServiceAddr[]>();
  const pending: Stmt[] = [];
  const vrrpStmts: Stmt[] = [];
  for (const st of stmts) {
    const kw = st.words[0]!;
    switch (kw) {
      case 'global_defs':
        readGlobals(r, st, cfg);
        break;
      case 'virtual_server_group':
        if (r.args(st, 1, 1, 'a group name') && r.needBlock(st)) groups.set(st.words[1]!, readGroup(r, st));
        break;
      case 'virtual_server':
        if (r.needBlock(st)) pending.push(st);
        break;
      case 'vrrp_instance':
        if (r.args(st, 1, 1, 'an instance name') && r.needBlock(st)) vrrpStmts.push(st);
        break;
      case 'vrrp_script':
        if (r.args(st, 1, 1, 'a script name') && r.needBlock(st)) {
          const sc = readVrrpScript(r, st);
          if (sc) (cfg.vrrpScripts ??= []).push(sc);
        }
        break;
      default:
        if (TOP_LEVEL.has(kw)) r.unsupportedKw(st, 'the top level', st.block ? 'block ignored' : 'ignored');
        else if (KEEPALIVED_KEYWORDS.has(kw)) r.error(st, `${quote(kw)} belongs inside a block, not at the top level (a misplaced "}"?)`);
        else r.other(st, 'the top level');
    }
  }
  // Groups may be declared after the virtual servers that use them, and vrrp_scripts after the instances that track them.
  for (const st of pending) cfg.services.push(...readVirtualServer(r, st, groups));
  for (const st of vrrpStmts) cfg.vrrp.push(readVrrp(r, st));
  if (!r.errors.length) r.errors.push(...checkModel(cfg));
  if (r.errors.length) throw new ConfigError(r.errors);
  return cfg;
}
