/**
 * HTTP_GET and SSL_GET: every configured url is fetched; each must answer with an accepted
 * status code (default 200-299) and, when a digest is set, a body whose MD5 matches (as
 * keepalived's genhash prints it). SSL_GET does not verify the certificate, as keepalived
 * does not; SNI is sent only with enable_sni.
 */
import { createHash } from 'node:crypto';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { CheckerConfig, HttpUrl } from './model.js';
import { errText } from '../core/log.js';
import { since, type CheckResult, type CheckTarget } from './checker.js';

export async function httpCheck(cfg: CheckerConfig, t: CheckTarget): Promise<CheckResult> {
  const t0 = performance.now();
  const urls = cfg.http?.urls.length ? cfg.http.urls : [{ path: '/', statusCodes: [[200, 299]] as Array<[number, number]> }];
  for (const url of urls) {
    const reason = await fetchOne(cfg, t, url);
    if (reason) return { ok: false, reason, latencyMs: since(t0) };
  }
  return { ok: true, reason: `${urls.length === 1 ? urls[0]!.path : `${urls.length} urls`} ok`, latencyMs: since(t0) };
}

/** Resolves with null when the url passes, else with why it failed. */
function fetchOne(cfg: CheckerConfig, t: CheckTarget, url: HttpUrl): Promise<string | null> {
  const tls = cfg.type === 'https';
  const vhost = url.virtualhost ?? cfg.http?.virtualhost;
  const hostHeader =
    vhost ?? (t.host.includes(':') ? `[${t.host}]` : t.host) + ((tls ? t.port !== 443 : t.port !== 80) ? `:${t.port}` : '');
  return new Promise((resolve) => {
    let settled = false;
    const finish = (r: string | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      resolve(r);
    };
    const opts = {
      host: t.host,
      port: t.port,
      path: url.path,
      method: 'GET',
      agent: false as const,
      headers: { host: hostHeader, 'user-agent': 'tsvs-healthcheck', connection: 'close' },
      ...(cfg.bindto ? { localAddress: cfg.bindto } : {}),
    };
    const onResponse = (res: IncomingMessage) => {
      const code = res.statusCode ?? 0;
      if (!url.statusCodes.some(([lo, hi]) => code >= lo && code <= hi)) {
        res.resume();
        finish(
          `${url.path}: HTTP status ${code}, expected ${url.statusCodes.map(([lo, hi]) => (lo === hi ? lo : `${lo}-${hi}`)).join(',')}`,
        );
        return;
      }
      if (!url.digest) {
        res.resume();
        finish(null);
        return;
      }
      const md5 = createHash('md5');
      res.on('data', (d: Buffer) => md5.update(d));
      res.once('end', () => {
        const got = md5.digest('hex');
        finish(got === url.digest!.toLowerCase() ? null : `${url.path}: MD5 digest ${got}, expected ${url.digest}`);
      });
      res.once('error', (e) => finish(`${url.path}: ${errText(e)}`));
    };
    const req = tls
      ? httpsRequest({ ...opts, rejectUnauthorized: false, servername: cfg.http?.sni && vhost ? vhost : '' }, onResponse)
      : httpRequest(opts, onResponse);
    const timer = setTimeout(() => finish(`${url.path}: timeout after ${cfg.timeout}s`), cfg.timeout * 1000);
    req.once('error', (e) => finish(`${url.path}: ${errText(e)}`));
    req.end();
  });
}
