/**
 * Which format a config file is in: YAML (tsvs), keepalived.conf, or ipvsadm rules
 * (`ipvsadm -S` output). Decided by the file name when it says (.yaml/.yml), else by content.
 */
import { KEEPALIVED_KEYWORDS } from './keepalived/keywords.js';

export type ConfigFormat = 'yaml' | 'keepalived' | 'ipvsadm';

export function detectFormat(text: string, file: string): ConfigFormat {
  if (/\.ya?ml$/i.test(file)) return 'yaml';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith('!')) continue;
    if (/^(ipvsadm\s+)?-[AaEeDdCRSZ]\b|^(ipvsadm\s+)?--(add|edit|delete)-(service|server)\b|^(ipvsadm\s+)?--set\b/.test(line))
      return 'ipvsadm';
    if (line === '---' || /^[A-Za-z_][\w-]*\s*:(\s|$)/.test(line)) return 'yaml';
    const word = line.replace(/^@\^?\S+\s+/, '').split(/[\s{]/)[0]!;
    if (KEEPALIVED_KEYWORDS.has(word) || word === 'include' || line.startsWith('$')) return 'keepalived';
    return /[{}]/.test(line) ? 'keepalived' : 'yaml';
  }
  return 'yaml';
}
