#!/usr/bin/env node
// tsvsadm: ipvsadm's command line against tsvsd's control socket ($TSVS_SOCKET).
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { ConnectError, HttpControlClient } from '../src/api/client.js';
import type { ControlApi } from '../src/api/control.js';
import { defaultSocketPath } from '../src/api/socket.js';
import { runIpvsadm } from '../src/cli/ipvsadm/run.js';

// No process.setSourceMapsEnabled here: it reads every module's source map at load, a
// fifth of tsvsadm's start-up, and scripts run tsvsadm in loops. For stack traces that
// point into the TypeScript, run with NODE_OPTIONS=--enable-source-maps.
const client = new HttpControlClient({ socketPath: defaultSocketPath() });

/**
 * ipvsadm fails with exit 2 when it cannot reach IPVS at all ("Can't initialize ipvs");
 * not reaching tsvsd is the same situation, so it gets the same exit code.
 */
function unreachable(e: unknown): never {
  if (e instanceof ConnectError) {
    process.stderr.write(
      `Can't initialize ipvs: ${e.message}\nIs tsvsd running? Set TSVS_SOCKET to its control socket (see tsvsd --socket).\n`,
    );
    process.exit(2);
  }
  throw e;
}

const api: ControlApi = {
  getTable: () => client.getTable().catch(unreachable),
  streamTable: () => client.streamTable().catch(unreachable),
  getTimeouts: () => client.getTimeouts().catch(unreachable),
  getConnections: () => client.getConnections().catch(unreachable),
  apply: (ops) => client.apply(ops).catch(unreachable),
  getSyncDaemons: () => client.getSyncDaemons().catch(unreachable),
  startSyncDaemon: (d) => client.startSyncDaemon(d).catch(unreachable),
  stopSyncDaemon: (state) => client.stopSyncDaemon(state).catch(unreachable),
};

// A reader that stops early (`tsvsadm -Ln | head`): end quietly, as ipvsadm does on
// SIGPIPE (a shell sees 141 either way), instead of an unhandled EPIPE with a stack trace.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(141);
  throw e;
});

const code = await runIpvsadm(
  process.argv.slice(2),
  {
    stdout: (s) => process.stdout.write(s),
    stderr: (s) => process.stderr.write(s),
    readStdin: async () => readFileSync(0, 'utf8'),
    progName: basename(process.argv[1] ?? 'tsvsadm').replace(/\.js$/, ''),
  },
  api,
);
process.exitCode = code;
