/**
 * The real tsvsd binary's TCP API: `--api` with `--api-token-file`, with and without
 * `--api-public-read`, and without a token (read-only). The token never reaches the logs.
 */
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { startTsvsd } from '../daemon/spawn.js';
import { freePort } from '../helper.js';

const TOKEN = 'daemon-api-token-0123456789abcdef';

async function withDaemon(args: string[], f: (url: string, logs: () => string) => Promise<void>) {
  const dir = mkdtempSync(join(tmpdir(), 'tsvs-daemon-api-'));
  writeFileSync(join(dir, 'token'), `${TOKEN}\n`);
  const d = await startTsvsd(['--api', '127.0.0.1:0', ...args.map((a) => a.replace('TOKENFILE', join(dir, 'token')))], { dir });
  try {
    const api = /"api":"([^"]+)"/.exec(d.logs())?.[1];
    assert.ok(api, d.logs());
    await f(`http://${api}`, d.logs);
  } finally {
    await d.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
}

const service = (port: number) => ({ protocol: 'tcp', addr: '127.0.0.1', port, scheduler: 'rr' });
const post = (url: string, body: unknown, token?: string) =>
  fetch(`${url}/v1/services`, {
    method: 'POST',
    body: JSON.stringify(body),
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
  });

test('tsvsd --api with a token: reads and changes need it; 401 without it or with a wrong one', async () => {
  await withDaemon(['--api-token-file', 'TOKENFILE'], async (url, logs) => {
    const port = await freePort();
    for (const t of [undefined, 'wrong']) {
      const r = await post(url, service(port), t);
      assert.equal(r.status, 401);
      assert.equal(((await r.json()) as { error: { code: string } }).error.code, 'UNAUTHORIZED');
      assert.equal((await fetch(`${url}/v1/status`, t ? { headers: { authorization: `Bearer ${t}` } } : {})).status, 401);
      assert.equal((await fetch(`${url}/metrics`)).status, 401);
    }
    assert.equal((await fetch(`${url}/v1/openapi.json`)).status, 200);
    assert.equal((await fetch(`${url}/dashboard`)).status, 200);
    assert.equal((await post(url, service(port), TOKEN)).status, 201);
    const st = (await (await fetch(`${url}/v1/services`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as Array<{
      id: string;
    }>;
    assert.deepEqual(
      st.map((s) => s.id),
      [`tcp:127.0.0.1:${port}`],
    );
    assert.doesNotMatch(logs(), new RegExp(TOKEN));
  });
});

test('tsvsd --api with a token: every GET route of the OpenAPI document needs it, except the document and the dashboard page', async () => {
  await withDaemon(['--api-token-file', 'TOKENFILE'], async (url) => {
    const doc = (await (await fetch(`${url}/v1/openapi.json`)).json()) as { paths: Record<string, { get?: unknown }> };
    const gets = Object.entries(doc.paths)
      .filter(([, v]) => v.get)
      .map(([p]) => p.replace('{service}', 'tcp:127.0.0.1:80').replace('{server}', '127.0.0.1:8080'));
    assert.ok(gets.length > 15, gets.join(' '));
    for (const path of gets) {
      const r = await fetch(`${url}${path}`);
      const open = path === '/v1/openapi.json' || path === '/dashboard';
      assert.equal(r.status, open ? 200 : 401, path);
      await r.body?.cancel();
    }
  });
});

test('tsvsd --api --api-public-read: reads are open, changes still need the token', async () => {
  await withDaemon(['--api-token-file', 'TOKENFILE', '--api-public-read'], async (url) => {
    const port = await freePort();
    assert.equal((await fetch(`${url}/v1/status`)).status, 200);
    assert.equal((await fetch(`${url}/metrics`)).status, 200);
    assert.equal((await post(url, service(port))).status, 401);
    assert.equal((await post(url, service(port), 'wrong')).status, 401);
    assert.equal((await post(url, service(port), TOKEN)).status, 201);
  });
});

test('tsvsd --api without a token is read-only', async () => {
  await withDaemon([], async (url) => {
    assert.equal((await fetch(`${url}/v1/services`)).status, 200);
    const r = await post(url, service(await freePort()), TOKEN);
    assert.equal(r.status, 401);
    assert.match(((await r.json()) as { error: { message: string } }).error.message, /read-only/i);
    assert.equal(((await (await fetch(`${url}/v1/info`)).json()) as { changes: string }).changes, 'disabled');
  });
});

test('POST /v1/reload on tsvsd --config: applies the edited file, refuses a broken one (table unchanged), counts both', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsvs-daemon-reload-'));
  const vport = await freePort();
  const cfg = (servers: number[], scheduler = 'rr') => `services:
  - address: 127.0.0.1
    port: ${vport}
    scheduler: ${scheduler}
    real_servers:
${servers.map((p) => `      - address: 127.0.0.1\n        port: ${p}\n`).join('')}`;
  writeFileSync(join(dir, 'tsvs.yaml'), cfg([8001]));
  writeFileSync(join(dir, 'token'), TOKEN);
  const d = await startTsvsd(['--config', join(dir, 'tsvs.yaml'), '--api', '127.0.0.1:0', '--api-token-file', join(dir, 'token')], { dir });
  try {
    const url = `http://${/"api":"([^"]+)"/.exec(d.logs())![1]}`;
    const auth = { authorization: `Bearer ${TOKEN}` };
    const reload = () => fetch(`${url}/v1/reload`, { method: 'POST', headers: auth });
    assert.equal((await fetch(`${url}/v1/reload`, { method: 'POST' })).status, 401);
    writeFileSync(join(dir, 'tsvs.yaml'), cfg([8001, 8002]));
    const ok = await reload();
    const okBody = (await ok.json()) as { ok: boolean; changes: string[] };
    assert.equal(ok.status, 200, JSON.stringify(okBody));
    assert.equal(okBody.ok, true);
    assert.ok(
      okBody.changes.some((c) => c.includes('8002')),
      JSON.stringify(okBody.changes),
    );
    assert.deepEqual((await d.client.getTable()).services[0]!.dests.map((x) => x.port).sort(), [8001, 8002]);
    const before = JSON.stringify((await d.client.getTable()).services.map((s) => [s.scheduler, s.dests.map((x) => x.port)]));
    writeFileSync(join(dir, 'tsvs.yaml'), cfg([8003], 'nosuch'));
    const bad = await reload();
    assert.equal(bad.status, 422);
    const badBody = (await bad.json()) as { error: { code: string; detail: string } };
    assert.equal(badBody.error.code, 'RELOAD_REFUSED');
    assert.match(badBody.error.detail, /nosuch/);
    assert.equal(JSON.stringify((await d.client.getTable()).services.map((s) => [s.scheduler, s.dests.map((x) => x.port)])), before);
    const m = await (await fetch(`${url}/metrics`, { headers: auth })).text();
    assert.match(m, /^tsvs_config_reloads_total\{result="success"\} 1$/m);
    assert.match(m, /^tsvs_config_reloads_total\{result="failure"\} 1$/m);
  } finally {
    await d.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('POST /v1/reload on tsvsd without --config answers 501', async () => {
  await withDaemon(['--api-token-file', 'TOKENFILE'], async (url) => {
    const r = await fetch(`${url}/v1/reload`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(r.status, 501);
    assert.equal(((await r.json()) as { error: { code: string } }).error.code, 'NOT_IMPLEMENTED');
  });
});
