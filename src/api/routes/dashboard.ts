/**
 * The dashboard's static files (src/dashboard/: plain HTML, CSS and JS, no build step and
 * no CDN), served at `/` and `/dashboard`. The page reads /v1/events and calls the same
 * REST routes as every other client.
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Hono } from 'hono';

const TYPES: Record<string, string> = {
  html: 'text/html; charset=utf-8',
  css: 'text/css; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  svg: 'image/svg+xml',
};

/** src/dashboard from src/api/routes (tsx) or from dist/src/api/routes (the built package). */
function dashboardDir(): string {
  for (const rel of ['../../dashboard/', '../../../../src/dashboard/']) {
    const dir = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(`${dir}index.html`)) return dir;
  }
  throw new Error('dashboard files not found (src/dashboard/index.html)');
}

const cache = new Map<string, Buffer>();

function asset(name: string): Buffer | null {
  if (!/^[a-z0-9-]+\.(html|css|js|svg)$/.test(name)) return null;
  let b = cache.get(name);
  if (!b) {
    const path = dashboardDir() + name;
    if (!existsSync(path)) return null;
    b = readFileSync(path);
    cache.set(name, b);
  }
  return b;
}

export function dashboardRoutes(app: Hono): void {
  const page = (name: string) => {
    const b = asset(name);
    return b
      ? new Response(new Uint8Array(b), { headers: { 'content-type': TYPES[name.split('.').pop()!]!, 'cache-control': 'no-cache' } })
      : null;
  };
  app.get('/', () => page('index.html')!);
  app.get('/dashboard', () => page('index.html')!);
  app.get('/dashboard/', () => page('index.html')!);
  app.get('/dashboard/:file', (c) => page(c.req.param('file')) ?? c.notFound());
}
