/**
 * One demo real server in its own process, so that a test can stop it the way a real
 * server goes away: `node --import tsx realserver-proc.ts NAME DOCROOT` prints
 * "listening PORT" once it serves on 127.0.0.1.
 */
import { startDemoServer } from '../../src/demo/realserver.js';

const [name, docroot] = process.argv.slice(2);
const rs = await startDemoServer({ name: name!, docroot: docroot!, host: '127.0.0.1', port: 0 });
process.stdout.write(`listening ${rs.port}\n`);
process.once('SIGTERM', () => void rs.close().then(() => process.exit(0)));
