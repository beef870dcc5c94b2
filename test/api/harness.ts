/**
 * An in-process director (real core table, real userspace data plane, no state file)
 * with the control app on top, for the API tests: `app.request()` for most routes, and a
 * real TCP listener where a test needs one.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { getRequestListener } from '@hono/node-server';
import { pino } from 'pino';
import type { Hono } from 'hono';
import { createControlApp, type ApiOptions } from '../../src/api/server.js';
import type { IpvsTable } from '../../src/core/table.js';
import { newTable } from '../table.js';
import type { DestConfig, ServiceConfig } from '../../src/core/types.js';
import { Director } from '../../src/daemon/director.js';
import { UserspaceDataPlane } from '../../src/dataplane/userspace/index.js';
import { freePort } from '../helper.js';

export interface TestDirector {
  director: Director;
  table: IpvsTable;
  /** The control app as the Unix socket serves it (no token). */
  app: Hono;
  stop(): Promise<void>;
}

export async function startDirector(): Promise<TestDirector> {
  const table = newTable();
  const director = new Director(table, new UserspaceDataPlane({ connectTimeoutMs: 2000 }), null, pino({ level: 'silent' }));
  await director.start();
  return { director, table, app: createControlApp(director), stop: () => director.stop(0) };
}

export function serviceConfig(port: number, scheduler = 'rr'): ServiceConfig {
  return {
    af: 4,
    protocol: 'tcp',
    addr: '127.0.0.1',
    port,
    fwmark: 0,
    scheduler,
    schedFlags: 0,
    persistent: 0,
    netmask: 0xffffffff,
    ops: false,
    pe: '',
  };
}

export function destConfig(port: number, weight = 1): DestConfig {
  return { af: 4, addr: '127.0.0.1', port, weight, fwd: 'masq', uThreshold: 0, lThreshold: 0 };
}

/** A free port on 127.0.0.1 for a VIP. */
export const freeVipPort = () => freePort();

/** Serves `app` on 127.0.0.1:0; resolves with its base URL and a close function. */
export async function listen(app: Hono): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer(getRequestListener(app.fetch));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** JSON request helper over app.request(). */
export async function call(app: Hono, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const init: RequestInit = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    (init.headers as Record<string, string>)['content-type'] = 'application/json';
  }
  const res = await app.request(path, init);
  const text = await res.text();
  let json: any;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, json, text };
}

export { createControlApp, type ApiOptions };
