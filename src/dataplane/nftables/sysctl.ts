/**
 * What a NAT director needs from the kernel, checked when the nftables plane starts:
 * forwarding on. With TSVS_NFT_SETUP=sysctl tsvsd sets net.ipv4.ip_forward=1,
 * net.ipv6.conf.all.forwarding=1 and rp_filter=0 itself, and logs each change; it never
 * changes them silently.
 */
import type { Runner } from './exec.js';

const path = (key: string) => `/proc/sys/${key.replaceAll('.', '/')}`;

export async function readSysctl(run: Runner, key: string): Promise<string | null> {
  const r = await run('cat', [path(key)]);
  return r.code === 0 ? r.stdout.trim() : null;
}

export async function writeSysctl(run: Runner, key: string, value: string): Promise<void> {
  const r = await run('sh', ['-c', `echo ${value} > ${path(key)}`]);
  if (r.code !== 0) throw new Error(`cannot set ${key}=${value}: ${r.stderr.trim()}`);
}

/** The sysctls TSVS_NFT_SETUP=sysctl sets: key, wanted value, required for IPv4 NAT. */
export const DIRECTOR_SYSCTLS: ReadonlyArray<{ key: string; value: string; required: boolean; why: string }> = [
  { key: 'net.ipv4.ip_forward', value: '1', required: true, why: 'the director routes client traffic to the real servers' },
  { key: 'net.ipv6.conf.all.forwarding', value: '1', required: false, why: 'the same for IPv6 services' },
  { key: 'net.ipv4.conf.all.rp_filter', value: '0', required: false, why: 'replies from real servers arrive on the RIP side' },
];
