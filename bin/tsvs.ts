#!/usr/bin/env node
// tsvs: the umbrella command (demo, and the operator tools built on the control API).
import { runTsvs } from '../src/cli/tsvs.js';

process.setSourceMapsEnabled(true);
const code = await runTsvs(process.argv.slice(2));
process.exit(code);
