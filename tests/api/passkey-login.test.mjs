// Passkey-first sign-in (docs/iam.md, "Signing in with a passkey alone"):
// options without any identity from POST /api/v1/auth/passkey/options, then
// POST /api/v1/auth/login with {webauthn} alone. The software authenticator
// of lib/authenticator.mjs plays a discoverable passkey (it keeps the user
// handle of its registration). Covered: the session it starts (tokens,
// amr, cookie mode, step-up), a wrong or missing userHandle, no user
// verification, a replayed assertion and a challenge of another ceremony,
// an unknown credential, the counter rule, a suspended identity, the
// shared login lockout, malformed bodies, and the audit trail of each.
// Every response is checked against api/openapi.yaml. Runs on the backend
// chosen by DCMS_TEST_BACKEND.

import assert from 'node:assert/strict';
import {randomBytes} from 'node:crypto';
import {before, describe, test} from 'node:test';
import {checkResponse} from './lib/openapi.mjs';
import {client} from './lib/http.mjs';
import {startServer} from './lib/server.mjs';
import {adminEnv, adminToken, bearer, login} from './lib/iam.mjs';
import {Authenticator, ORIGIN, RP_ID, b64u} from './lib/authenticator.mjs';

const PW = 'correct horse battery staple';
let server, api, admin;
let n = 0;

async function call(method, path, opts = {}, template) {
  const r = await api.call(method, path, opts);
  checkResponse(method, template ?? path, r.res, r.json ?? r.text);
  return r;
}

const post = (path, token, json) => call('POST', path, {headers: token ? bearer(token) : {}, ...(json === undefined ? {} : {json})});
const claims = (t) => JSON.parse(Buffer.from(t.split('.')[1], 'base64url'));

/** A user with a discoverable passkey registered from a password session. */
async function userWithPasskey(alg = -7) {
  const email = `pkfirst-${++n}-${Date.now()}@example.com`;
  const r = await post('/api/v1/identities', admin, {kind: 'user', name: `Passkey first ${n}`, email, password: PW, roles: ['consumer']});
  assert.equal(r.status, 201, JSON.stringify(r.json));
  const u = {id: r.json.id, email, token: (await login(server, email, PW)).access_token, auth: new Authenticator(alg)};
  const o = await post('/api/v1/webauthn/register/options', u.token);
  assert.equal(o.status, 200, JSON.stringify(o.json));
  assert.equal(o.json.authenticatorSelection.residentKey, 'preferred');
  const reg = await post('/api/v1/webauthn/register/verify', u.token, {...u.auth.create(o.json), name: 'laptop'});
  assert.equal(reg.status, 201, JSON.stringify(reg.json));
  u.credential = reg.json;
  return u;
}

async function options() {
  const o = await post('/api/v1/auth/passkey/options');
  assert.equal(o.status, 200, JSON.stringify(o.json));
  return o.json;
}

const passkeyLogin = (webauthn, headers = {}) => call('POST', '/api/v1/auth/login', {json: {webauthn}, headers});

// Events of exactly `action` about the query's filters (the audit filter also matches longer actions).
async function auditEvents(query) {
  const r = await call('GET', `/api/v1/audit/events?${query}`, {headers: bearer(admin)});
  assert.equal(r.status, 200);
  const action = new URLSearchParams(query).get('action');
  return r.json.events.filter((e) => !action || e.action === action);
}

before(async () => {
  server = await startServer({
    env: {...adminEnv, DCMS_AUDIT_REFUSALS_PER_MINUTE: '100000', DCMS_WEBAUTHN_RP_ID: RP_ID, DCMS_WEBAUTHN_ORIGINS: ORIGIN},
  });
  api = client(server);
  admin = await adminToken(server);
});

describe('passkey-first sign-in', () => {
  test('options need no identity: a fresh single-use challenge, no allowCredentials, UV required', async () => {
    const a = await options(), b = await options();
    assert.equal(a.rpId, RP_ID);
    assert.deepEqual(a.allowCredentials, []);
    assert.equal(a.userVerification, 'required');
    assert.equal(a.timeout, 120000);
    assert.equal(Buffer.from(a.challenge, 'base64url').length, 32);
    assert.notEqual(a.challenge, b.challenge);
    const bad = await post('/api/v1/auth/passkey/options', undefined, {user_verification: 'discouraged'});
    assert.equal(bad.status, 422);
    assert.deepEqual(bad.json.error.details.map((d) => d.field), ['user_verification']);
    const ev = await auditEvents('action=webauthn.login_options');
    assert.ok(ev.length >= 2 && ev.every((e) => e.outcome === 'success' && e.actor === 'anonymous'));
  });

  test('the assertion alone starts the same session as a password login', async () => {
    const u = await userWithPasskey();
    const r = await passkeyLogin(u.auth.get(await options(), {userHandle: true}));
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.ok(r.json.refresh_token && r.json.device_token);
    const c = claims(r.json.access_token);
    assert.equal(c.sub, u.id);
    assert.deepEqual([...c.amr].sort(), ['hwk', 'mfa', 'user']);
    const me = await call('GET', '/api/v1/auth/me', {headers: bearer(r.json.access_token)});
    assert.equal(me.status, 200);
    assert.equal(me.json.identity.id, u.id);
    // A passkey with UV is both factors: this session may change credentials (step-up).
    const o = await post('/api/v1/webauthn/register/options', r.json.access_token);
    assert.equal(o.status, 200, JSON.stringify(o.json));
    // The refresh token works like any other.
    const ref = await call('POST', '/api/v1/auth/refresh', {json: {refresh_token: r.json.refresh_token}});
    assert.equal(ref.status, 200);
    // Cookie mode, as the web UI signs in: the refresh token only as the HttpOnly cookie.
    const ck = await passkeyLogin(u.auth.get(await options(), {userHandle: true}),
                                  {'X-DCMS-Session': 'cookie', Origin: server.url});
    assert.equal(ck.status, 200, JSON.stringify(ck.json));
    assert.equal(ck.json.refresh_token, undefined);
    assert.match(ck.headers.get('set-cookie'), /__Secure-dcms_refresh=[^;]+; Path=\/api\/v1\/auth\/refresh;.*HttpOnly/);
    const ok = (await auditEvents(`action=auth.login&actor=${u.id}`)).filter((e) => e.details.factor === 'webauthn');
    assert.equal(ok.length, 2);
    assert.ok(ok.every((e) => e.outcome === 'success' && !e.details.amr.includes('pwd')));
    const used = await auditEvents(`action=webauthn.login&actor=${u.id}`);
    assert.equal(used.filter((e) => e.outcome === 'success').length, 2);
    const list = await call('GET', '/api/v1/webauthn/credentials', {headers: bearer(r.json.access_token)});
    assert.ok(list.json.credentials[0].last_used_at);
    assert.equal(list.json.credentials[0].sign_count, 2);
  });

  test('a wrong or missing userHandle is refused', async () => {
    const u = await userWithPasskey(), v = await userWithPasskey(-8);
    // v's user handle on u's passkey: the credential names u, the handle is not u's.
    let r = await passkeyLogin(u.auth.get(await options(), {userHandle: v.auth.userHandle}));
    assert.equal(r.status, 401, JSON.stringify(r.json));
    assert.deepEqual(r.json.error.details.map((d) => d.field), ['webauthn.response.userHandle']);
    r = await passkeyLogin(u.auth.get(await options(), {userHandle: randomBytes(32)}));
    assert.equal(r.status, 401);
    r = await passkeyLogin(u.auth.get(await options()));
    assert.equal(r.status, 401);
    assert.deepEqual(r.json.error.details.map((d) => d.field), ['webauthn.response.userHandle']);
    assert.match(r.json.error.message, /discoverable/);
    const failed = await auditEvents(`action=auth.login_failed&actor=${u.id}`);
    assert.deepEqual(failed.map((e) => e.details.reason), ['bad_passkey', 'passkey_user_handle', 'passkey_user_handle'], 'newest first');
    const denied = await auditEvents(`action=webauthn.login&actor=${u.id}`);
    assert.equal(denied.filter((e) => e.outcome === 'denied').length, 3);
  });

  test('without user verification the passkey alone is not enough', async () => {
    const u = await userWithPasskey();
    const r = await passkeyLogin(u.auth.get(await options(), {userHandle: true, uv: false}));
    assert.equal(r.status, 401, JSON.stringify(r.json));
    assert.deepEqual(r.json.error.details.map((d) => d.field), ['webauthn.response.authenticatorData']);
    assert.match(r.json.error.message, /user verification/);
    const failed = await auditEvents(`action=auth.login_failed&actor=${u.id}`);
    assert.deepEqual(failed.map((e) => e.details.reason), ['passkey_no_user_verification']);
  });

  test('a replayed assertion, a challenge of another ceremony and a counter that did not move are refused', async () => {
    const u = await userWithPasskey();
    const ok = u.auth.get(await options(), {userHandle: true});
    assert.equal((await passkeyLogin(ok)).status, 200);
    let r = await passkeyLogin(ok);
    assert.equal(r.status, 401);
    assert.deepEqual(r.json.error.details.map((d) => d.field), ['webauthn.response.clientDataJSON']);
    assert.match(r.json.error.message, /already used/);
    // An assertion challenge bound to the identity (second-factor / bearer ceremony) is not a sign-in one.
    const fresh = (await call('POST', '/api/v1/auth/login', {json: {email: u.email, password: PW}})).json;
    assert.equal(fresh.error.code, 'mfa_required');
    r = await passkeyLogin(u.auth.get(fresh.challenges.webauthn, {userHandle: true}));
    assert.equal(r.status, 401);
    assert.match(r.json.error.details[0].problem, /not a sign-in challenge/);
    // A made-up challenge.
    r = await passkeyLogin(u.auth.get({challenge: b64u(randomBytes(32))}, {userHandle: true}));
    assert.equal(r.status, 401);
    // The counter must increase (it was non-zero): 1 again, after the accepted 1.
    u.auth.counter = 1;
    r = await passkeyLogin(u.auth.get(await options(), {userHandle: true, bump: 0}));
    assert.equal(r.status, 401);
    assert.match(r.json.error.message, /counter/);
    const reg = await auditEvents(`action=webauthn.counter_regression&actor=${u.id}`);
    assert.equal(reg.length, 1);
  });

  test('an unknown credential is refused and counted against the address', async () => {
    const stranger = new Authenticator();
    stranger.userHandle = randomBytes(32);
    const r = await passkeyLogin(stranger.get(await options(), {userHandle: true}));
    assert.equal(r.status, 401, JSON.stringify(r.json));
    assert.deepEqual(r.json.error.details.map((d) => d.field), ['webauthn.id']);
    const failed = await auditEvents('action=auth.login_failed&actor=anonymous');
    assert.ok(failed.some((e) => e.details.reason === 'unknown_passkey'));
  });

  test('a suspended identity is refused (403) after a valid assertion, and admitted again once reactivated', async () => {
    const u = await userWithPasskey();
    let r = await post(`/api/v1/identities/${u.id}/suspend`, admin, {reason: 'test'});
    assert.equal(r.status, 200, JSON.stringify(r.json));
    r = await passkeyLogin(u.auth.get(await options(), {userHandle: true}));
    assert.equal(r.status, 403, JSON.stringify(r.json));
    assert.match(r.json.error.message, /suspended/);
    const denied = (await auditEvents(`action=auth.login&actor=${u.id}`)).filter((e) => e.outcome === 'denied');
    assert.deepEqual(denied.map((e) => e.details.reason), ['the identity is suspended']);
    r = await post(`/api/v1/identities/${u.id}/reactivate`, admin);
    assert.equal(r.status, 200, JSON.stringify(r.json));
    r = await passkeyLogin(u.auth.get(await options(), {userHandle: true}));
    assert.equal(r.status, 200, JSON.stringify(r.json));
  });

  test('failures lock the account as failed passwords do (one lockout for both)', async () => {
    const u = await userWithPasskey();
    for (let i = 0; i < 5; i++) {
      const r = await passkeyLogin(u.auth.get(await options(), {userHandle: true, uv: false}));
      assert.equal(r.status, 401);
    }
    let r = await passkeyLogin(u.auth.get(await options(), {userHandle: true}));
    assert.equal(r.status, 429, JSON.stringify(r.json));
    assert.match(r.headers.get('retry-after'), /^[1-9][0-9]*$/);
    r = await call('POST', '/api/v1/auth/login', {json: {email: u.email, password: PW}});
    assert.equal(r.status, 429);
    const locks = await auditEvents(`action=auth.lockout&actor=${u.id}`);
    assert.equal(locks[0].details.scope, 'account');
  });

  test('malformed bodies: every problem under webauthn, and email without a password', async () => {
    let r = await call('POST', '/api/v1/auth/login', {json: {webauthn: {id: '!!', type: 'x', response: {}}}});
    assert.equal(r.status, 422);
    assert.ok(r.json.error.details.every((d) => d.field.startsWith('webauthn.')), JSON.stringify(r.json));
    r = await call('POST', '/api/v1/auth/login', {json: {email: 'a@example.com', webauthn: {}}});
    assert.equal(r.status, 422);
    assert.ok(r.json.error.details.some((d) => d.field === 'password'));
    r = await call('POST', '/api/v1/auth/login', {json: {webauthn: {}, totp: '123456'}});
    assert.equal(r.status, 422);
  });
});
