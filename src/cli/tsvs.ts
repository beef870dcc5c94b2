/** The `tsvs` umbrella command: one entry point for the operator tools. */
import { runConfig } from './config.js';
import { runDemo } from './demo.js';
import { runDrain } from './drain.js';
import { runLab } from './lab.js';
import { runRealserver } from './realserver.js';
import { runTop } from './top.js';
import { VERSION } from '../version.js';

const USAGE = `Usage: tsvs COMMAND [options]

Commands:
  demo       run a small LVS-NAT cluster on loopback: two real servers and a
             director with VIP 127.0.0.1:8080 (what \`npm start\` runs)
  lab        up|down|status [--mode nat|dr]: the seed cluster in network
             namespaces (root); --mode dr builds a direct-routing cluster
  realserver setup --mode dr|tun VIP [--apply]: print (or apply) what a real
             server needs for direct routing or tunnelling
  top        live rates and connections per service and real server
  drain      RIP[:PORT] [--service VIP]: weight 0, then wait for its
             connections to finish
  config     check|convert FILE: validate a config (YAML, keepalived.conf,
             ipvsadm rules), or print its YAML equivalent
  version    print the version

Related programs: tsvsd (the director daemon), tsvsadm (ipvsadm for tsvs).
`;

export async function runTsvs(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'demo':
      return runDemo(rest);
    case 'config':
      return runConfig(rest);
    case 'lab':
      return runLab(rest);
    case 'top':
      return runTop(rest);
    case 'realserver':
      return runRealserver(rest);
    case 'drain':
      return runDrain(rest);
    case 'version':
    case '--version':
    case '-v':
      process.stdout.write(`tsvs ${VERSION}\n`);
      return 0;
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return cmd === undefined ? 2 : 0;
    default:
      process.stderr.write(`tsvs: unknown command "${cmd}"\n${USAGE}`);
      return 2;
  }
}
