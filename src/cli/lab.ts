/** `tsvs lab up|down|status [--suffix S]`: the seed cluster in network namespaces (root). */
import { parseArgs } from 'node:util';
import { labDown, labStatus, labUp, CLIENT_ADDR, DR_VIP_ADDR, REAL_ADDRS, VIP_ADDR, type LabMode } from '../lab/lab.js';

const USAGE = `Usage: tsvs lab up|down|status [--suffix S] [--no-tsvsd] [--mode nat|dr]

Builds the seed LVS-NAT cluster in network namespaces (needs root):
  client 198.18.0.10 (ns tsvs-c-S), director 198.18.0.1 / 198.19.0.1 (ns tsvs-d-S,
  running tsvsd --dataplane nftables), real servers 198.19.0.11 and 198.19.0.12
  (ns tsvs-r1-S, tsvs-r2-S) running nginx on port 80 with the director as gateway.

  up       build it (removes what it made if a step fails)
  down     remove everything of the lab (also after a partial up)
  status   print what exists

Options:
  --suffix S   name suffix of this lab (default "lab"), 1-7 letters or digits
  --no-tsvsd   do not start tsvsd in the director
  --mode dr    direct routing instead: client -> router (ns tsvs-g-S) -> one LAN
               198.19.0.0/24 with the director (198.19.0.1, VIP ${DR_VIP_ADDR}) and
               the real servers (VIP on lo, arp_ignore=1, arp_announce=2), whose
               replies go to the router, not through the director
`;

export async function runLab(argv: string[]): Promise<number> {
  let values: { suffix?: string; 'no-tsvsd'?: boolean; help?: boolean; mode?: string };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        suffix: { type: 'string' },
        'no-tsvsd': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        mode: { type: 'string' },
      },
    }));
  } catch (e) {
    process.stderr.write(`tsvs lab: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const suffix = values.suffix ?? 'lab';
  const [cmd] = positionals;
  try {
    switch (cmd) {
      case 'up': {
        const mode = (values.mode ?? 'nat') as LabMode;
        if (mode !== 'nat' && mode !== 'dr') {
          process.stderr.write(`tsvs lab: --mode "${values.mode}": use nat or dr\n`);
          return 2;
        }
        const n = await labUp({ suffix, mode, tsvsd: !values['no-tsvsd'], log: (m) => process.stdout.write(`${m}\n`) });
        if (mode === 'dr') {
          process.stdout.write(
            `lab ${n.suffix} (direct routing) is up. Try:\n` +
              `  export TSVS_SOCKET=${n.socket}\n` +
              `  tsvsadm -A -t ${DR_VIP_ADDR}:80 -s rr\n` +
              REAL_ADDRS.map((r) => `  tsvsadm -a -t ${DR_VIP_ADDR}:80 -r ${r}:80 -g\n`).join('') +
              `  ip netns exec ${n.client} curl -s http://${DR_VIP_ADDR}/name   # from ${CLIENT_ADDR}\n` +
              `  tsvs lab down --suffix ${n.suffix}\n`,
          );
          return 0;
        }
        process.stdout.write(
          `lab ${n.suffix} is up. Try:\n` +
            `  export TSVS_SOCKET=${n.socket}\n` +
            `  tsvsadm -A -t ${VIP_ADDR}:80 -s rr\n` +
            `  tsvsadm -a -t ${VIP_ADDR}:80 -r 198.19.0.11:80 -m\n` +
            `  tsvsadm -a -t ${VIP_ADDR}:80 -r 198.19.0.12:80 -m\n` +
            `  ip netns exec ${n.client} curl -s http://${VIP_ADDR}/name   # from ${CLIENT_ADDR}\n` +
            `  tsvs lab down --suffix ${n.suffix}\n`,
        );
        return 0;
      }
      case 'down':
        for (const line of labDown(suffix)) process.stdout.write(`${line}\n`);
        return 0;
      case 'status': {
        const s = labStatus(suffix);
        for (const line of s.lines) process.stdout.write(`${line}\n`);
        return s.exists ? 0 : 1;
      }
      default:
        process.stderr.write(`tsvs lab: expected up, down or status\n${USAGE}`);
        return 2;
    }
  } catch (e) {
    process.stderr.write(`tsvs lab ${cmd}: ${(e as Error).message}\n`);
    return 1;
  }
}
