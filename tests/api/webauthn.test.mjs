// Passkeys through the API with the software authenticator of
// lib/authenticator.mjs (node:crypto keys, a tiny CBOR encoder): registration ("none" and "packed"
// self attestation, ES256 and EdDSA), assertion, the list and removal, and the
// refusals: a tampered signature, a replayed counter, a reused challenge, a
// wrong origin, another identity's passkey. Every response is checked against
// api/openapi.yaml. Runs on the backend chosen by DCMS_TEST_BACKEND.

import assert from 'node:assert/strict';
import {before, describe, test} from 'node:test';
import {checkResponse} from './lib/openapi.mjs';
import {client} from './lib/http.mjs';
import {startServer} from './lib/server.mjs';
import {adminEnv, adminToken, bearer, login} from './lib/iam.mjs';
import {Authenticator, ORIGIN, RP_ID, b64u} from './lib/authenticator.mjs';

const PW = 'correct horse battery staple';
let server, api, admin;
let n = 0;

// ---- helpers ----

async function call(method, path, opts = {}, template) {
  const r = await api.call(method, path, opts);
  checkResponse(method, template ?? path, r.res, r.json ?? r.text);
  return r;
}

async function newUser() {
  const email = `passkey-${++n}-${Date.now()}@example.com`;
  const r = await call('POST', '/api/v1/identities', {
    headers: bearer(admin), json: {kind: 'user', name: `Passkey ${n}`, email, password: PW, roles: ['consumer']},
  });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  return {id: r.json.id, email, token: (await login(server, email, PW)).access_token};
}

const post = (path, token, json) => call('POST', path, {headers: bearer(token), ...(json === undefined ? {} : {json})});

async function register(u, auth, opts) {
  const o = await post('/api/v1/webauthn/register/options', u.token);
  assert.equal(o.status, 200, JSON.stringify(o.json));
  return post('/api/v1/webauthn/register/verify', u.token, auth.create(o.json, opts));
}

/**
 * Logs `u` in again with the password and `auth`'s passkey, as changing credentials needs
 * once a passkey is registered (docs/iam.md); u.token becomes that session's token.
 */
async function passkeyLogin(u, auth) {
  const r = await call('POST', '/api/v1/auth/login', {json: {email: u.email, password: PW}});
  assert.equal(r.status, 401, JSON.stringify(r.json));
  const ok = await call('POST', '/api/v1/auth/login', {json: {mfa_ticket: r.json.mfa_ticket, webauthn: auth.get(r.json.challenges.webauthn)}});
  assert.equal(ok.status, 200, JSON.stringify(ok.json));
  u.token = ok.json.access_token;
}

async function assertOptions(u) {
  const o = await post('/api/v1/webauthn/assert/options', u.token);
  assert.equal(o.status, 200, JSON.stringify(o.json));
  return o.json;
}

// Events of exactly `action` (the audit filter also matches longer actions).
async function auditEvents(query) {
  const r = await call('GET', `/api/v1/audit/events?${query}`, {headers: bearer(admin)});
  assert.equal(r.status, 200);
  const action = new URLSearchParams(query).get('action');
  return r.json.events.filter((e) => !action || e.action === action);
}

before(async () => {
  server = await startServer({
    env: {...adminEnv, DCMS_AUDIT_REFUSALS_PER_MINUTE: '100000', DCMS_WEBAUTHN_RP_ID: RP_ID, DCMS_WEBAUTHN_ORIGINS: `https://other.example, ${ORIGIN}`},
  });
  api = client(server);
  admin = await adminToken(server);
});

describe('registration', () => {
  test('creation options follow the WebAuthn JSON shape', async () => {
    const u = await newUser();
    const o = await post('/api/v1/webauthn/register/options', u.token, {user_verification: 'required'});
    assert.equal(o.status, 200);
    assert.equal(o.json.rp.id, RP_ID);
    assert.deepEqual(o.json.pubKeyCredParams.map((p) => p.alg), [-7, -8, -257]);
    // The user handle is opaque (32 random bytes, not the identity id) and stable.
    const handle = Buffer.from(o.json.user.id, 'base64url');
    assert.equal(handle.length, 32);
    assert.notEqual(handle.toString('hex'), u.id.replaceAll('-', ''));
    const o2 = await post('/api/v1/webauthn/register/options', u.token);
    assert.equal(o2.json.user.id, o.json.user.id);
    assert.equal(o.json.user.name, u.email);
    assert.equal(Buffer.from(o.json.challenge, 'base64url').length, 32);
    assert.equal(o.json.authenticatorSelection.userVerification, 'required');
    assert.deepEqual(o.json.excludeCredentials, []);
    const bad = await post('/api/v1/webauthn/register/options', u.token, {user_verification: 'always', x: 1});
    assert.equal(bad.status, 422);
    assert.deepEqual(bad.json.error.details.map((d) => d.field).sort(), ['user_verification', 'x']);
    const anon = await call('POST', '/api/v1/webauthn/register/options', {});
    assert.equal(anon.status, 401);
  });

  test('"none" (ES256) and "packed" self (EdDSA) registrations are stored and listed', async () => {
    const u = await newUser();
    const a = new Authenticator(-7), b = new Authenticator(-8);
    const r1 = await register(u, a);
    assert.equal(r1.status, 201, JSON.stringify(r1.json));
    assert.equal(r1.json.credential_id, b64u(a.credId));
    assert.equal(r1.json.alg, -7);
    assert.equal(r1.json.attestation_fmt, 'none');
    assert.equal(r1.json.user_verified, true);
    assert.deepEqual(r1.json.transports, ['internal']);
    assert.equal(r1.json.aaguid, '00000000-0000-0000-0000-000000000000');
    assert.equal(r1.headers.get('location'), `/api/v1/webauthn/credentials/${r1.json.id}`);
    // The password-only session no longer suffices to add a second passkey: log in with the first.
    const refused = await post('/api/v1/webauthn/register/options', u.token);
    assert.equal(refused.status, 403);
    assert.equal(refused.json.error.code, 'reauthentication_required');
    await passkeyLogin(u, a);
    const r2 = await register(u, b, {fmt: 'packed', uv: false});
    assert.equal(r2.status, 201, JSON.stringify(r2.json));
    assert.equal(r2.json.alg, -8);
    assert.equal(r2.json.attestation_fmt, 'packed');
    assert.equal(r2.json.user_verified, false);
    const l = await call('GET', '/api/v1/webauthn/credentials', {headers: bearer(u.token)});
    assert.deepEqual(l.json.credentials.map((c) => c.id), [r1.json.id, r2.json.id]);
    // Registered passkeys are excluded from the next registration, and cannot be registered twice.
    const o = await post('/api/v1/webauthn/register/options', u.token);
    assert.deepEqual(o.json.excludeCredentials.map((c) => c.id).sort(), [b64u(a.credId), b64u(b.credId)].sort());
    const again = await post('/api/v1/webauthn/register/verify', u.token, a.create(o.json));
    assert.equal(again.status, 409);
    const ev = await auditEvents(`action=webauthn.register&actor=${u.id}`);
    assert.equal(ev.filter((e) => e.outcome === 'success').length, 2);
  });

  test('refusals: wrong origin, reused or foreign challenge, broken attestation, unknown fields', async () => {
    const u = await newUser(), v = await newUser();
    const a = new Authenticator();
    let o = await post('/api/v1/webauthn/register/options', u.token);
    let r = await post('/api/v1/webauthn/register/verify', u.token, a.create(o.json, {origin: 'https://evil.example'}));
    assert.equal(r.status, 422);
    assert.deepEqual(r.json.error.details.map((d) => d.field), ['response.clientDataJSON']);
    // The challenge was used up by the refused attempt.
    r = await post('/api/v1/webauthn/register/verify', u.token, a.create(o.json));
    assert.equal(r.status, 422);
    assert.match(r.json.error.details[0].problem, /already used/);
    // Another identity's challenge.
    o = await post('/api/v1/webauthn/register/options', v.token);
    r = await post('/api/v1/webauthn/register/verify', u.token, a.create(o.json));
    assert.equal(r.status, 422);
    // A packed self attestation whose signature is broken.
    o = await post('/api/v1/webauthn/register/options', u.token);
    const cred = a.create(o.json, {fmt: 'packed'});
    const att = Buffer.from(cred.response.attestationObject, 'base64url');
    const i = att.indexOf(Buffer.from('sig')) + 6;
    att[i] ^= 0x01;
    cred.response.attestationObject = b64u(att);
    r = await post('/api/v1/webauthn/register/verify', u.token, cred);
    assert.equal(r.status, 422);
    assert.deepEqual(r.json.error.details.map((d) => d.field), ['response.attestationObject']);
    // Garbage and unknown members.
    r = await post('/api/v1/webauthn/register/verify', u.token, {id: '!!', type: 'x', response: {clientDataJSON: 7, extra: 1}, more: true});
    assert.equal(r.status, 422);
    assert.deepEqual(r.json.error.details.map((d) => d.field).sort(),
                     ['id', 'more', 'response.attestationObject', 'response.clientDataJSON', 'response.extra', 'type']);
    const l = await call('GET', '/api/v1/webauthn/credentials', {headers: bearer(u.token)});
    assert.deepEqual(l.json.credentials, []);
    const ev = await auditEvents(`action=webauthn.register&actor=${u.id}`);
    assert.ok(ev.filter((e) => e.outcome === 'denied').length >= 4);
  });
});

describe('assertion', () => {
  test('register, assert, then a tampered signature and a replayed counter are refused', async () => {
    const u = await newUser();
    const a = new Authenticator();
    const reg = await register(u, a);
    assert.equal(reg.status, 201);
    let o = await assertOptions(u);
    assert.equal(o.rpId, RP_ID);
    assert.deepEqual(o.allowCredentials.map((c) => c.id), [b64u(a.credId)]);
    let r = await post('/api/v1/webauthn/assert/verify', u.token, a.get(o));
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal(r.json.user_verified, true);
    assert.equal(r.json.sign_count, 1);

    // Tampered signature.
    o = await assertOptions(u);
    const t = a.get(o);
    const sig = Buffer.from(t.response.signature, 'base64url');
    sig[sig.length - 3] ^= 0x40;
    t.response.signature = b64u(sig);
    r = await post('/api/v1/webauthn/assert/verify', u.token, t);
    assert.equal(r.status, 422);
    assert.deepEqual(r.json.error.details.map((d) => d.field), ['response.signature']);

    // The same counter again (a cloned authenticator or a replay) on a fresh challenge.
    o = await assertOptions(u);
    a.counter = 1;
    r = await post('/api/v1/webauthn/assert/verify', u.token, a.get(o, {bump: 0}));
    assert.equal(r.status, 422);
    assert.match(r.json.error.details[0].problem, /counter/);
    const ev = await auditEvents(`action=webauthn.counter_regression&actor=${u.id}`);
    assert.equal(ev.length, 1);
    assert.equal(ev[0].outcome, 'denied');

    // Replaying the whole accepted assertion: its challenge is gone.
    o = await assertOptions(u);
    const ok = a.get(o, {bump: 5});
    r = await post('/api/v1/webauthn/assert/verify', u.token, ok);
    assert.equal(r.status, 200);
    assert.equal(r.json.sign_count, 6);
    r = await post('/api/v1/webauthn/assert/verify', u.token, ok);
    assert.equal(r.status, 422);
    assert.match(r.json.error.details[0].problem, /already used/);

    const l = await call('GET', '/api/v1/webauthn/credentials', {headers: bearer(u.token)});
    assert.equal(l.json.credentials[0].sign_count, 6);
    assert.ok(l.json.credentials[0].last_used_at);
    const denied = await auditEvents(`action=webauthn.assert&actor=${u.id}`);
    assert.ok(denied.some((e) => e.outcome === 'denied'));
    assert.equal(denied.filter((e) => e.outcome === 'success').length, 2);
  });

  test('an authenticator that keeps its counter at zero is accepted; UV is reported as sent', async () => {
    const u = await newUser();
    const a = new Authenticator(-8);
    assert.equal((await register(u, a, {uv: false})).status, 201);
    for (let i = 0; i < 2; i++) {
      const r = await post('/api/v1/webauthn/assert/verify', u.token, a.get(await assertOptions(u), {bump: 0, uv: i === 1}));
      assert.equal(r.status, 200, JSON.stringify(r.json));
      assert.equal(r.json.sign_count, 0);
      assert.equal(r.json.user_verified, i === 1);
    }
  });

  test('another identity\'s passkey, a missing passkey, and removal', async () => {
    const u = await newUser(), v = await newUser();
    const a = new Authenticator();
    const reg = await register(u, a);
    let r = await post('/api/v1/webauthn/assert/options', v.token);
    assert.equal(r.status, 409);
    r = await post('/api/v1/webauthn/assert/options', undefined);
    assert.equal(r.status, 401);
    const av = new Authenticator();
    assert.equal((await register(v, av)).status, 201);
    // v asserts with u's credential on v's challenge: not v's passkey.
    r = await post('/api/v1/webauthn/assert/verify', v.token, a.get(await assertOptions(v)));
    assert.equal(r.status, 404);
    // v cannot remove u's passkey; u can, from a session started with it.
    await passkeyLogin(v, av);
    r = await call('DELETE', `/api/v1/webauthn/credentials/${reg.json.id}`, {headers: bearer(v.token)}, '/api/v1/webauthn/credentials/{id}');
    assert.equal(r.status, 404);
    r = await call('DELETE', `/api/v1/webauthn/credentials/${reg.json.id}`, {headers: bearer(u.token)}, '/api/v1/webauthn/credentials/{id}');
    assert.equal(r.status, 403, 'the password-only session predates the passkey');
    assert.equal(r.json.error.code, 'reauthentication_required');
    await passkeyLogin(u, a);
    // The only second factor cannot go (409 naming the id); with a second passkey, exactly one goes.
    r = await call('DELETE', `/api/v1/webauthn/credentials/${reg.json.id}`, {headers: bearer(u.token)}, '/api/v1/webauthn/credentials/{id}');
    assert.equal(r.status, 409, JSON.stringify(r.json));
    assert.deepEqual(r.json.error.details.map((d) => d.field), ['id']);
    const refused = await auditEvents(`action=webauthn.delete&actor=${u.id}`);
    assert.deepEqual(refused.map((e) => [e.outcome, e.details.reason]), [['denied', 'last second factor']]);
    const b = new Authenticator(-8);
    assert.equal((await register(u, b)).status, 201);
    r = await call('DELETE', `/api/v1/webauthn/credentials/${reg.json.id}`, {headers: bearer(u.token)}, '/api/v1/webauthn/credentials/{id}');
    assert.equal(r.status, 204);
    r = await call('DELETE', `/api/v1/webauthn/credentials/${reg.json.id}`, {headers: bearer(u.token)}, '/api/v1/webauthn/credentials/{id}');
    assert.equal(r.status, 404);
    const ev = await auditEvents(`action=webauthn.delete&actor=${u.id}`);
    assert.equal(ev.filter((e) => e.outcome === 'success').length, 1);
    const l = await call('GET', '/api/v1/webauthn/credentials', {headers: bearer(u.token)});
    assert.deepEqual(l.json.credentials.map((c) => c.credential_id), [b64u(b.credId)]);
  });
});

describe('passkey as the second factor of a login', () => {
  const claims = (t) => JSON.parse(Buffer.from(t.split('.')[1], 'base64url'));

  test('mfa_required lists webauthn; the ticket gets assertion options; the assertion completes the login', async () => {
    const u = await newUser();
    const a = new Authenticator();
    assert.equal((await register(u, a)).status, 201);
    let r = await call('POST', '/api/v1/auth/login', {json: {email: u.email, password: PW}});
    assert.equal(r.status, 401);
    assert.equal(r.json.error.code, 'mfa_required');
    assert.deepEqual(r.json.factors, ['webauthn']);
    const ticket = r.json.mfa_ticket;
    // The answer already carries assertion options for the passkeys.
    assert.deepEqual(r.json.challenges.webauthn.allowCredentials.map((c) => c.id), [b64u(a.credId)]);
    const first = r.json.challenges.webauthn;

    // Options for the ticket's identity, without a bearer token; a bad ticket is refused.
    let o = await call('POST', '/api/v1/webauthn/assert/options', {json: {mfa_ticket: 'x'.repeat(43)}});
    assert.equal(o.status, 401);
    o = await call('POST', '/api/v1/webauthn/assert/options', {json: {mfa_ticket: ticket}});
    assert.equal(o.status, 200, JSON.stringify(o.json));
    assert.deepEqual(o.json.allowCredentials.map((c) => c.id), [b64u(a.credId)]);

    // A tampered assertion is a failed login; the ticket stays, the challenge is gone.
    const bad = a.get(o.json);
    const sig = Buffer.from(bad.response.signature, 'base64url');
    sig[sig.length - 1] ^= 1;
    bad.response.signature = b64u(sig);
    r = await call('POST', '/api/v1/auth/login', {json: {mfa_ticket: ticket, webauthn: bad}});
    assert.equal(r.status, 401);
    // The challenge of the mfa_required answer works too (once); it is spent on a wrong key here.
    const wrong = new Authenticator();
    wrong.credId = a.credId;
    r = await call('POST', '/api/v1/auth/login', {json: {mfa_ticket: ticket, webauthn: wrong.get(first)}});
    assert.equal(r.status, 401);
    const failed = await auditEvents(`action=auth.login_failed&actor=${u.id}`);
    assert.ok(failed.length >= 1);

    o = await call('POST', '/api/v1/webauthn/assert/options', {json: {mfa_ticket: ticket}});
    assert.equal(o.status, 200);
    r = await call('POST', '/api/v1/auth/login', {json: {mfa_ticket: ticket, webauthn: a.get(o.json)}});
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.deepEqual([...claims(r.json.access_token).amr].sort(), ['hwk', 'mfa', 'pwd', 'user']);
    // The ticket worked once.
    o = await call('POST', '/api/v1/webauthn/assert/options', {json: {mfa_ticket: ticket}});
    assert.equal(o.status, 401);
    const ok = await auditEvents(`action=webauthn.login&actor=${u.id}`);
    assert.ok(ok.some((e) => e.outcome === 'success'));
    assert.ok(ok.some((e) => e.outcome === 'denied'));
  });

  test('without UV the amr has no "user"; a login body with two factors or a non-object is refused', async () => {
    const u = await newUser();
    const a = new Authenticator(-8);
    assert.equal((await register(u, a, {uv: false})).status, 201);
    let r = await call('POST', '/api/v1/auth/login', {json: {email: u.email, password: PW}});
    const ticket = r.json.mfa_ticket;
    r = await call('POST', '/api/v1/auth/login', {json: {mfa_ticket: ticket, webauthn: 'nope'}});
    assert.equal(r.status, 422);
    r = await call('POST', '/api/v1/auth/login', {json: {mfa_ticket: ticket, totp: '123456', webauthn: {}}});
    assert.equal(r.status, 422);
    const o = await call('POST', '/api/v1/webauthn/assert/options', {json: {mfa_ticket: ticket}});
    r = await call('POST', '/api/v1/auth/login', {json: {mfa_ticket: ticket, webauthn: a.get(o.json, {uv: false})}});
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.deepEqual([...claims(r.json.access_token).amr].sort(), ['hwk', 'mfa', 'pwd']);
  });
});
