// The web UI as dcmsd serves it (src/web/): the page and its hashed assets
// with their cache and security headers, the API's 404s untouched, and the
// browser sessions of IAM (cookie mode, X-DCMS-Session: cookie): the refresh
// token only in an HttpOnly cookie scoped to the refresh route, the Origin
// check, rotation through the cookie, and logout clearing it.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { client } from './lib/http.mjs';
import { ADMIN_EMAIL, ADMIN_PASSWORD, adminEnv, bearer } from './lib/iam.mjs';
import { checkResponse } from './lib/openapi.mjs';
import { startServer } from './lib/server.mjs';

let server;
let api;
before(async () => {
  server = await startServer({ env: adminEnv });
  api = client(server);
});
after(async () => {
  await server?.stop();
});

const COOKIE = { 'X-DCMS-Session': 'cookie' };
const origin = () => server.url; // http://127.0.0.1:PORT, the Host fetch sends

function refreshCookie(res) {
  return res.headers.getSetCookie().find((c) => c.startsWith('__Secure-dcms_refresh='));
}
const valueOf = (setCookie) => setCookie.split(';')[0].split('=').slice(1).join('=');

describe('the page and its assets', () => {
  test('GET / is the page: HTML, no-cache, the UI policy and headers', async () => {
    const r = await api.call('GET', '/');
    assert.equal(r.status, 200);
    checkResponse('GET', '/', r.res, r.text);
    assert.match(r.headers.get('content-type'), /^text\/html; charset=utf-8$/);
    assert.equal(r.headers.get('cache-control'), 'no-cache');
    const csp = r.headers.get('content-security-policy');
    for (const d of ["default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "object-src 'none'", "base-uri 'none'"]) {
      assert.ok(csp.includes(d), `CSP has ${d}: ${csp}`);
    }
    assert.ok(!/unsafe-inline|unsafe-eval|https?:/.test(csp), `CSP allows nothing else: ${csp}`);
    assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(r.headers.get('referrer-policy'), 'no-referrer');
    assert.equal(r.headers.get('cross-origin-opener-policy'), 'same-origin');
    assert.match(r.headers.get('permissions-policy'), /camera=\(\)/);
    // Exactly one of each: the handler's value replaces the API default.
    assert.ok(!csp.includes(','), 'one Content-Security-Policy header');
    assert.ok(!r.headers.get('cache-control').includes(','), 'one Cache-Control header');
    assert.ok(!/<script>|<script [^>]*>[^<]/.test(r.text), 'no inline script');
    assert.ok(!/https?:\/\//.test(r.text), 'no other origin named');
  });

  test('the assets the page names are served immutable; other names are 404', async () => {
    const page = (await api.call('GET', '/')).text;
    const names = [...page.matchAll(/(?:src|href)="\/assets\/([^"]+)"/g)].map((m) => m[1]);
    assert.equal(names.length, 2, page);
    for (const n of names) {
      assert.match(n, /^(app|style)\.[0-9a-f]{16}\.(js|css)$/);
      const r = await api.call('GET', `/assets/${n}`);
      assert.equal(r.status, 200);
      checkResponse('GET', '/assets/{name}', r.res, r.text);
      assert.equal(r.headers.get('cache-control'), 'public, max-age=31536000, immutable');
      assert.match(r.headers.get('content-type'), n.endsWith('.js') ? /^text\/javascript/ : /^text\/css/);
      assert.ok(r.text.length > 100);
    }
    for (const n of ['index.html', 'app.0000000000000000.js', 'nope']) {
      const r = await api.call('GET', `/assets/${n}`);
      assert.equal(r.status, 404, n);
      assert.equal(r.json.error.code, 'not_found');
    }
  });

  test('API paths keep their JSON 404s', async () => {
    for (const p of ['/api/v1/nope', '/contracts', '/index.html']) {
      const r = await api.call('GET', p);
      assert.equal(r.status, 404, p);
      assert.equal(r.json.error.code, 'not_found', p);
    }
  });
});

describe('browser sessions (cookie mode)', () => {
  async function cookieLogin(headers = {}) {
    return api.call('POST', '/api/v1/auth/login', {
      headers: { ...COOKIE, Origin: origin(), ...headers },
      json: { email: ADMIN_EMAIL, password: ADMIN_PASSWORD },
    });
  }

  test('login answers the access token only; the refresh token is an HttpOnly cookie for the refresh route', async () => {
    const r = await cookieLogin();
    assert.equal(r.status, 200, r.text);
    checkResponse('POST', '/api/v1/auth/login', r.res, r.json);
    assert.ok(r.json.access_token);
    assert.equal(r.json.refresh_token, undefined, 'no refresh token in the body');
    const c = refreshCookie(r.res);
    assert.ok(c, 'Set-Cookie __Secure-dcms_refresh');
    for (const attr of ['Path=/api/v1/auth/refresh', 'Secure', 'HttpOnly', 'SameSite=Strict']) {
      assert.ok(c.split('; ').includes(attr), `${attr} in ${c}`);
    }
    assert.match(c, /Max-Age=[1-9]/);
    assert.ok(valueOf(c).length >= 40);
    // Without the header, the body keeps the refresh token and no refresh cookie is set.
    const plain = await api.call('POST', '/api/v1/auth/login', { json: { email: ADMIN_EMAIL, password: ADMIN_PASSWORD } });
    assert.ok(plain.json.refresh_token);
    assert.equal(refreshCookie(plain.res), undefined);
  });

  test('a foreign or missing Origin is refused (403) and sets no cookie', async () => {
    for (const o of ['http://evil.test', 'null', undefined]) {
      const headers = { ...COOKIE };
      if (o) headers.Origin = o;
      const r = await api.call('POST', '/api/v1/auth/login', { headers, json: { email: ADMIN_EMAIL, password: ADMIN_PASSWORD } });
      assert.equal(r.status, 403, `${o}: ${r.text}`);
      assert.equal(r.json.error.code, 'forbidden');
      assert.equal(refreshCookie(r.res), undefined);
      const f = await api.call('POST', '/api/v1/auth/refresh', { headers: { ...headers, Cookie: '__Secure-dcms_refresh=x' }, json: {} });
      assert.equal(f.status, 403, `refresh from ${o}`);
    }
    // DCMS_WEBAUTHN_ORIGINS (default http://localhost:8080) is also this site.
    const r = await cookieLogin({ Origin: 'http://localhost:8080' });
    assert.equal(r.status, 200);
    const bad = await api.call('POST', '/api/v1/auth/login', { headers: { 'X-DCMS-Session': 'body', Origin: origin() },
      json: { email: ADMIN_EMAIL, password: ADMIN_PASSWORD } });
    assert.equal(bad.status, 422);
    assert.equal(bad.json.error.details[0].field, 'X-DCMS-Session');
  });

  test('refresh reads and rotates the cookie; a used one is refused and cleared', async () => {
    const first = valueOf(refreshCookie((await cookieLogin()).res));
    const r = await api.call('POST', '/api/v1/auth/refresh', {
      headers: { ...COOKIE, Origin: origin(), Cookie: `__Secure-dcms_refresh=${first}` }, json: {},
    });
    assert.equal(r.status, 200, r.text);
    checkResponse('POST', '/api/v1/auth/refresh', r.res, r.json);
    assert.equal(r.json.refresh_token, undefined);
    const next = valueOf(refreshCookie(r.res));
    assert.notEqual(next, first);
    const me = await api.call('GET', '/api/v1/auth/me', { headers: bearer(r.json.access_token) });
    assert.equal(me.status, 200);

    // No body at all works too.
    const nobody = await api.call('POST', '/api/v1/auth/refresh', {
      headers: { ...COOKIE, Origin: origin(), Cookie: `other=1; __Secure-dcms_refresh=${next}` },
    });
    assert.equal(nobody.status, 200, nobody.text);

    // The rotated token again: refused, and the cookie is cleared.
    const again = await api.call('POST', '/api/v1/auth/refresh', {
      headers: { ...COOKIE, Origin: origin(), Cookie: `__Secure-dcms_refresh=${first}` }, json: {},
    });
    assert.equal(again.status, 401);
    assert.match(refreshCookie(again.res), /^__Secure-dcms_refresh=;.*Max-Age=0/);

    // No cookie: 401; a token in the body is not accepted in cookie mode.
    const none = await api.call('POST', '/api/v1/auth/refresh', { headers: { ...COOKIE, Origin: origin() }, json: {} });
    assert.equal(none.status, 401);
    const body = await api.call('POST', '/api/v1/auth/refresh', { headers: { ...COOKIE, Origin: origin() }, json: { refresh_token: first } });
    assert.equal(body.status, 422);
    assert.equal(body.json.error.details[0].field, 'refresh_token');
  });

  test('logout clears the cookie and ends the session (by the cookie alone, too)', async () => {
    const login = await cookieLogin();
    const tok = valueOf(refreshCookie(login.res));
    const r = await api.call('POST', '/api/v1/auth/logout', {
      headers: { ...COOKIE, Origin: origin(), Cookie: `__Secure-dcms_refresh=${tok}` },
    });
    assert.equal(r.status, 204, r.text);
    assert.match(refreshCookie(r.res), /^__Secure-dcms_refresh=; Path=\/api\/v1\/auth\/refresh; Max-Age=0/);
    assert.equal((await api.call('GET', '/api/v1/auth/me', { headers: bearer(login.json.access_token) })).status, 401);
    const after = await api.call('POST', '/api/v1/auth/refresh', {
      headers: { ...COOKIE, Origin: origin(), Cookie: `__Secure-dcms_refresh=${tok}` }, json: {},
    });
    assert.equal(after.status, 401);

    // With the access token: that session ends, and the cookie is cleared as well.
    const l2 = await cookieLogin();
    const r2 = await api.call('POST', '/api/v1/auth/logout', { headers: { ...COOKIE, Origin: origin(), ...bearer(l2.json.access_token) } });
    assert.equal(r2.status, 204);
    assert.ok(refreshCookie(r2.res).includes('Max-Age=0'));
    const t2 = valueOf(refreshCookie(l2.res));
    const a2 = await api.call('POST', '/api/v1/auth/refresh', {
      headers: { ...COOKIE, Origin: origin(), Cookie: `__Secure-dcms_refresh=${t2}` }, json: {},
    });
    assert.equal(a2.status, 401, 'the session of the access token is revoked');
  });
});
