/**
 * One test server (test/helper.ts) as its own process, so that it can run inside a
 * real-server namespace: `ip netns exec NS node --import tsx rs-runner.ts KIND NAME HOST`.
 * Prints `{"port":N}` once listening; SIGTERM closes it (its port then refuses).
 */
import { startServer, type TestServerKind } from '../helper.js';

const [kind, name, host] = process.argv.slice(2) as [TestServerKind, string, string];
const server = await startServer(kind, name, { host });
process.stdout.write(`${JSON.stringify({ port: server.port })}\n`);
process.on('SIGTERM', () => {
  void server.close().then(() => process.exit(0));
});
