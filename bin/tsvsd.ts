#!/usr/bin/env node
// tsvsd: the director daemon. This file is the process itself (no wrapper), so
// supervisors and tests can signal it by its PID.
import { runDaemon } from '../src/daemon/daemon.js';

process.setSourceMapsEnabled(true);
const code = await runDaemon(process.argv.slice(2));
process.exit(code);
