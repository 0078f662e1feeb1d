// Changing credentials needs a recent login (docs/iam.md): a session whose
// login, not a refresh, is older than DCMS_IAM_STEPUP_MAX_AGE_S (5 s here) is
// refused 403 reauthentication_required, and audited, for signing keys,
// passkeys, TOTP and API keys; a refresh keeps the login's auth_time; a fresh
// login passes; once the caller has a second factor, only a session started
// with it passes. Every response is checked against api/openapi.yaml. Runs on
// the backend chosen by DCMS_TEST_BACKEND.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, randomUUID, sign } from 'node:crypto';
import { before, describe, test } from 'node:test';
import { checkResponse } from './lib/openapi.mjs';
import { client } from './lib/http.mjs';
import { startServer } from './lib/server.mjs';
import { adminEnv, bearer, login, ADMIN_EMAIL, ADMIN_PASSWORD } from './lib/iam.mjs';

const PW = 'correct horse battery staple';
const MAX_AGE_S = 5;
const claims = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url'));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const inDays = (d) => new Date(Date.now() + d * 86400e3).toISOString();
let server, api, admin;
let n = 0;

/** A request whose answer must match api/openapi.yaml (template: the route, for paths with ids). */
const call = async (method, path, opts = {}, template = path) => {
  const r = await api.call(method, path, opts);
  checkResponse(method, template, r.res, r.json ?? r.text);
  return r;
};

function totp(secret, k = 0) {
  const t = (Math.floor(Date.now() / 1000 / 30) + k) * 30;
  return execFileSync('oathtool', ['--totp', '-b', '-N', `@${t}`, secret], { encoding: 'utf8' }).trim();
}

async function newUser(kind = 'user') {
  const email = `stepup-${++n}-${Date.now()}@example.com`;
  const body = kind === 'service' ? { kind, name: `svc-${n}`, roles: ['consumer'] }
    : { kind, name: `Step ${n}`, email, password: PW, roles: ['consumer'] };
  const r = await call('POST', '/api/v1/identities', { headers: bearer(admin), json: body });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  return { id: r.json.id, email };
}

/** Challenge, proof of possession and registration of a fresh Ed25519 key; the last response. */
async function registerKey(user, token) {
  const ch = await call('POST', `/api/v1/identities/${user.id}/keys/challenge`, { headers: bearer(token) },
    '/api/v1/identities/{id}/keys/challenge');
  if (ch.status !== 201) return ch;
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x, 'base64url');
  const msg = Buffer.concat([Buffer.from(ch.json.message_prefix), Buffer.from(ch.json.challenge, 'base64url'), raw]);
  return call('POST', `/api/v1/identities/${user.id}/keys`, {
    headers: bearer(token),
    json: { public_key: raw.toString('base64url'), challenge_id: ch.json.challenge_id,
      signature: sign(null, msg, privateKey).toString('base64url') },
  }, '/api/v1/identities/{id}/keys');
}

function assertReauth(r, what) {
  assert.equal(r.status, 403, `${what}: ${JSON.stringify(r.json)}`);
  assert.equal(r.json.error.code, 'reauthentication_required', what);
}

async function waitForDenial(requestId) {
  for (let i = 0; i < 40; i++) {
    const r = await call('GET', '/api/v1/audit/events?action=request.denied&limit=50', { headers: bearer(admin) });
    const ev = r.json.events.find((e) => e.request_id === requestId);
    if (ev) return ev;
    await sleep(50);
  }
  assert.fail(`no request.denied event for ${requestId}`);
}

before(async () => {
  server = await startServer({
    env: { ...adminEnv, DCMS_IAM_STEPUP_MAX_AGE_S: String(MAX_AGE_S), DCMS_AUDIT_REFUSALS_PER_MINUTE: '100000' },
  });
  api = client(server);
  admin = (await login(server, ADMIN_EMAIL, ADMIN_PASSWORD)).access_token;
});

describe('changing credentials needs a recent login', () => {
  test('an old login, even refreshed, is refused for keys, passkeys, TOTP and API keys; a fresh one passes', async () => {
    const u = await newUser();
    const svc = await newUser('service');
    const old = await login(server, u.email, PW);
    const oldAdmin = await login(server, ADMIN_EMAIL, ADMIN_PASSWORD);
    const c0 = claims(old.access_token);
    assert.ok(Number.isInteger(c0.auth_time) && Math.abs(c0.auth_time - c0.iat) <= 1, JSON.stringify(c0));

    await sleep((MAX_AGE_S + 1.5) * 1000);
    // A refresh hands out a new token but keeps the login's auth_time: it is no new authentication.
    const ref = await call('POST', '/api/v1/auth/refresh', { json: { refresh_token: old.refresh_token } });
    assert.equal(ref.status, 200, JSON.stringify(ref.json));
    const c1 = claims(ref.json.access_token);
    assert.equal(c1.auth_time, c0.auth_time);
    assert.ok(c1.iat > c0.iat);

    for (const token of [old.access_token, ref.json.access_token]) {
      const r = await call('POST', `/api/v1/identities/${u.id}/keys/challenge`, { headers: bearer(token) },
        '/api/v1/identities/{id}/keys/challenge');
      assertReauth(r, 'signing key challenge');
      assert.match(r.json.error.message, /^registering a signing key needs a recent login: log in again .* within the last 5 seconds/);
      // Reading still works with the same token.
      const list = await call('GET', `/api/v1/identities/${u.id}/keys`, { headers: bearer(token) },
        '/api/v1/identities/{id}/keys');
      assert.equal(list.status, 200);
    }
    const stale = ref.json.access_token;
    assertReauth(await call('POST', '/api/v1/mfa/totp/enroll', { headers: bearer(stale) }), 'TOTP enrolment');
    assertReauth(await call('POST', '/api/v1/webauthn/register/options', { headers: bearer(stale), json: {} }),
      'passkey registration');
    const del = await call('DELETE', `/api/v1/webauthn/credentials/${randomUUID()}`, { headers: bearer(stale) },
      '/api/v1/webauthn/credentials/{id}');
    assertReauth(del, 'passkey deletion');
    const keyBody = { name: `k-${n}`, identity_id: svc.id, permissions: ['contracts:read'], expires_at: inDays(30) };
    assertReauth(await call('POST', '/api/v1/api-keys', { headers: bearer(oldAdmin.access_token), json: keyBody }),
      'API key creation');
    // The TOTP was not enrolled and nothing else changed; the refusal is audited with its code.
    const st = await call('GET', '/api/v1/mfa', { headers: bearer(stale) });
    assert.equal(st.json.totp, 'none');
    const ev = await waitForDenial(del.headers.get('x-request-id'));
    assert.equal(ev.outcome, 'denied');
    assert.equal(ev.details.code, 'reauthentication_required');
    assert.equal(ev.details.status, 403);

    // A fresh login passes each of them.
    const fresh = (await login(server, u.email, PW)).access_token;
    const reg = await registerKey(u, fresh);
    assert.equal(reg.status, 201, JSON.stringify(reg.json));
    const en = await call('POST', '/api/v1/mfa/totp/enroll', { headers: bearer(fresh) });
    assert.equal(en.status, 201, JSON.stringify(en.json));
    const missing = await call('DELETE', `/api/v1/webauthn/credentials/${randomUUID()}`, { headers: bearer(fresh) },
      '/api/v1/webauthn/credentials/{id}');
    assert.equal(missing.status, 404);
    admin = (await login(server, ADMIN_EMAIL, ADMIN_PASSWORD)).access_token;
    const key = await call('POST', '/api/v1/api-keys', { headers: bearer(admin), json: keyBody });
    assert.equal(key.status, 201, JSON.stringify(key.json));
  });

  test('with TOTP enrolled, a password-only session cannot change credentials; one with the code can', async () => {
    const u = await newUser();
    const pwd = (await login(server, u.email, PW)).access_token;
    const en = await call('POST', '/api/v1/mfa/totp/enroll', { headers: bearer(pwd) });
    assert.equal(en.status, 201, JSON.stringify(en.json));
    const secret = en.json.secret;
    const conf = await call('POST', '/api/v1/mfa/totp/confirm', { headers: bearer(pwd), json: { code: totp(secret) } });
    assert.equal(conf.status, 200, JSON.stringify(conf.json));

    // The session is recent but predates the factor: refused, with what to do.
    const r = await registerKey(u, pwd);
    assertReauth(r, 'signing key with a password-only session');
    assert.match(r.json.error.message, /log in again with your second factor within the last 5 seconds/);
    // A stolen session cannot remove the factor either, even with a code.
    assertReauth(await call('POST', '/api/v1/mfa/totp/disable', { headers: bearer(pwd), json: { code: totp(secret, 1) } }),
      'TOTP disable with a password-only session');

    const mfa = await call('POST', '/api/v1/auth/login', { json: { email: u.email, password: PW, totp: totp(secret, 1) } });
    assert.equal(mfa.status, 200, JSON.stringify(mfa.json));
    assert.ok(claims(mfa.json.access_token).amr.includes('mfa'));
    const ok = await registerKey(u, mfa.json.access_token);
    assert.equal(ok.status, 201, JSON.stringify(ok.json));
  });
});
