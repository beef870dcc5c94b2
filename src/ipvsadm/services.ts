/**
 * The services database (/etc/services) as ipvsadm sees it through getservbyname and
 * getservbyport. The text is handed in, so this file does no I/O; a built-in table stands
 * in when the system's file cannot be read.
 */
import type { Protocol } from '../core/types.js';

/** Port names, as getservbyname / getservbyport see them. */
export interface ServicesDb {
  /** getservbyname(name, proto): the port of a service name or alias, or null. */
  portOf(name: string, proto: Protocol): number | null;
  /** getservbyport(port, proto): the official name of the first entry for the port, or null. */
  nameOf(port: number, proto: Protocol): string | null;
}

/**
 * Parses the text of /etc/services ("name port/proto aliases... # comment"). Like glibc,
 * the first entry wins for both directions of the lookup.
 */
export function parseServices(text: string): ServicesDb {
  const byName = new Map<string, number>();
  const byPort = new Map<string, string>();
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    if (line === '') continue;
    const [name, portProto, ...aliases] = line.split(/\s+/);
    const m = /^(\d+)\/(\S+)$/.exec(portProto ?? '');
    if (!name || !m) continue;
    const port = Number(m[1]);
    const proto = m[2]!;
    if (port > 65535) continue;
    for (const n of [name, ...aliases]) {
      const key = `${n}/${proto}`;
      if (!byName.has(key)) byName.set(key, port);
    }
    const pkey = `${port}/${proto}`;
    if (!byPort.has(pkey)) byPort.set(pkey, name);
  }
  return {
    portOf: (name, proto) => byName.get(`${name}/${proto}`) ?? null,
    nameOf: (port, proto) => byPort.get(`${port}/${proto}`) ?? null,
  };
}

/**
 * Used when /etc/services cannot be read: the services an LVS director most often
 * balances, with the names netbase's /etc/services gives them.
 */
const BUILTIN_SERVICES_TEXT = `
ftp-data 20/tcp
ftp 21/tcp
ssh 22/tcp
telnet 23/tcp
smtp 25/tcp mail
domain 53/tcp
domain 53/udp
http 80/tcp www
pop3 110/tcp pop-3
ntp 123/udp
imap2 143/tcp imap
snmp 161/udp
ldap 389/tcp
https 443/tcp
submissions 465/tcp ssmtp smtps urd
syslog 514/udp
submission 587/tcp
ldaps 636/tcp
imaps 993/tcp
pop3s 995/tcp
openvpn 1194/tcp
openvpn 1194/udp
mysql 3306/tcp
sip 5060/tcp
sip 5060/udp
postgresql 5432/tcp postgres
http-alt 8080/tcp webcache
`;

/** The fallback table parsed once. */
export const builtinServices: ServicesDb = parseServices(BUILTIN_SERVICES_TEXT);
