// Bootstrap of a userspace-plane worker thread (tsvsd --workers N). Node 20 workers do not
// inherit `--import tsx`, so when the plane runs from source (the entry is a .ts file) this
// registers tsx's loader in the worker first; from dist/ it imports the compiled worker.js.
// Plain .mjs so that it runs the same from src/ and for a build (see workers.ts: bootUrl).
import { workerData } from 'node:worker_threads';

if (workerData.entry.endsWith('.ts')) {
  const { register } = await import('tsx/esm/api');
  register();
}
await import(workerData.entry);
