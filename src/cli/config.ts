/**
 * `tsvs config check FILE` validates a config in any format tsvsd --config accepts (YAML,
 * keepalived.conf, ipvsadm rules) and lists every error as file:line:column; unsupported
 * keepalived keywords are listed as warnings. `tsvs config convert FILE` prints the YAML
 * equivalent (of a keepalived.conf, typically).
 */
import { isTsvsError } from '../core/errors.js';
import { ConfigError, formatDiagnostic } from '../config/errors.js';
import { toYaml } from '../config/convert.js';
import { loadConfig } from '../config/load.js';

const USAGE = `Usage: tsvs config check FILE     validate a config (YAML, keepalived.conf or ipvsadm rules)
       tsvs config convert FILE   print the YAML equivalent of a config
`;

export async function runConfig(argv: string[], out = process.stdout, err = process.stderr): Promise<number> {
  const [sub, file, ...rest] = argv;
  if (sub === '-h' || sub === '--help' || sub === 'help') {
    out.write(USAGE);
    return 0;
  }
  if ((sub !== 'check' && sub !== 'convert') || !file || rest.length) {
    err.write(USAGE);
    return 2;
  }
  let loaded;
  try {
    loaded = await loadConfig(file);
  } catch (e) {
    if (e instanceof ConfigError) {
      for (const d of e.diagnostics) err.write(`${formatDiagnostic(d)}\n`);
      const more = e.total - e.diagnostics.length;
      if (more) err.write(`... and ${more} more error${more === 1 ? '' : 's'}\n`);
      err.write(`${file}: ${e.total} error${e.total === 1 ? '' : 's'}\n`);
    } else err.write(`${isTsvsError(e) ? e.detail : (e as Error).message}\n`);
    return 1;
  }
  const { config } = loaded;
  for (const d of config.unsupported) err.write(`${formatDiagnostic(d)}\n`);
  if (sub === 'convert') {
    out.write(toYaml(config));
    return 0;
  }
  const rs = config.services.reduce((n, s) => n + s.realServers.length, 0);
  const checks = config.services.reduce((n, s) => n + s.realServers.reduce((m, r) => m + r.checkers.length, 0), 0);
  out.write(
    `${file}: OK (${loaded.format}): ${config.services.length} service(s), ${rs} real server(s), ${checks} health check(s)` +
      `${config.vrrp.length ? `, ${config.vrrp.length} vrrp instance(s)` : ''}` +
      `${config.unsupported.length ? `; ${config.unsupported.length} unsupported keyword(s) listed above` : ''}\n`,
  );
  return 0;
}
