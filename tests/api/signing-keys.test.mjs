// Ed25519 signing keys through the API: challenge, registration with a proof
// of possession (accepted, and refused with every refusal audited), listing,
// rotation, revocation and who may do what. Every response is checked against
// api/openapi.yaml. Runs on the backend chosen by DCMS_TEST_BACKEND. That a
// revoked key is refused for new signatures (and its past signatures stay
// verifiable) is checked through dcms_iam_signing_key_verify in
// tests/unit/test_credentials.c, on both backends.

import assert from 'node:assert/strict';
import {generateKeyPairSync, sign} from 'node:crypto';
import {before, describe, test} from 'node:test';
import {checkResponse} from './lib/openapi.mjs';
import {client} from './lib/http.mjs';
import {startServer} from './lib/server.mjs';
import {adminEnv, adminToken, bearer, login} from './lib/iam.mjs';

const PW = 'correct horse battery staple';
const PREFIX = 'dcms-signing-key-pop:';
let server, api, admin;
let n = 0;

async function call(method, path, opts = {}, template) {
  const r = await api.call(method, path, opts);
  checkResponse(method, template ?? path, r.res, r.json ?? r.text);
  return r;
}

async function newUser() {
  const email = `signer-${++n}-${Date.now()}@example.com`;
  const r = await call('POST', '/api/v1/identities', {
    headers: bearer(admin),
    json: {kind: 'user', name: `Signer ${n}`, email, password: PW, roles: ['consumer']},
  });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  return {id: r.json.id, token: (await login(server, email, PW)).access_token};
}

function newKey() {
  const {publicKey, privateKey} = generateKeyPairSync('ed25519');
  const raw = Buffer.from(publicKey.export({format: 'jwk'}).x, 'base64url');
  return {raw, b64: raw.toString('base64url'), privateKey};
}

async function challenge(user) {
  const r = await call('POST', `/api/v1/identities/${user.id}/keys/challenge`, {headers: bearer(user.token)},
                       '/api/v1/identities/{id}/keys/challenge');
  assert.equal(r.status, 201, JSON.stringify(r.json));
  assert.equal(r.json.message_prefix, PREFIX);
  return r.json;
}

function pop(ch, key, signer = key) {
  const msg = Buffer.concat([Buffer.from(PREFIX), Buffer.from(ch.challenge, 'base64url'), key.raw]);
  return sign(null, msg, signer.privateKey).toString('base64url');
}

async function register(user, key, {path, signer, name} = {}) {
  const ch = await challenge(user);
  const json = {public_key: key.b64, challenge_id: ch.challenge_id, signature: pop(ch, key, signer)};
  if (name) json.name = name;
  return call('POST', path ?? `/api/v1/identities/${user.id}/keys`, {headers: bearer(user.token), json},
              path ? '/api/v1/identities/{id}/keys/{key_id}/rotate' : '/api/v1/identities/{id}/keys');
}

async function auditEvents(query) {
  const r = await call('GET', `/api/v1/audit/events?${query}`, {headers: bearer(admin)});
  assert.equal(r.status, 200);
  return r.json.events;
}

async function waitForAudit(query, pred) {
  for (let i = 0; i < 40; i++) {
    const ev = await auditEvents(query);
    if (ev.some(pred)) return ev;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`no audit event matching ${query}`);
}

before(async () => {
  server = await startServer({env: {...adminEnv, DCMS_AUDIT_REFUSALS_PER_MINUTE: '100000'}});
  api = client(server);
  admin = await adminToken(server);
});

describe('registration with a proof of possession', () => {
  test('a key signed over the challenge is registered, listed and audited', async () => {
    const u = await newUser();
    const k = newKey();
    const r = await register(u, k, {name: 'laptop'});
    assert.equal(r.status, 201, JSON.stringify(r.json));
    assert.equal(r.json.public_key, k.b64);
    assert.equal(r.json.status, 'active');
    assert.equal(r.json.alg, 'Ed25519');
    assert.equal(r.json.name, 'laptop');
    assert.equal(r.json.revoked_at, null);
    assert.equal(r.headers.get('location'), `/api/v1/identities/${u.id}/keys/${r.json.id}`);
    const l = await call('GET', `/api/v1/identities/${u.id}/keys`, {headers: bearer(u.token)},
                         '/api/v1/identities/{id}/keys');
    assert.equal(l.status, 200);
    assert.deepEqual(l.json.keys.map((x) => x.id), [r.json.id]);
    const ev = await auditEvents(`action=signing_key.register&actor=${u.id}`);
    assert.equal(ev.length, 1);
    assert.equal(ev[0].resource_id, r.json.id);
  });

  test('a signature by another key, over another challenge or a tampered one is refused (422 signature) and audited', async () => {
    const u = await newUser();
    const k = newKey(), other = newKey();
    // Signed by another private key.
    let r = await register(u, k, {signer: other});
    assert.equal(r.status, 422);
    assert.ok(r.json.error.details.some((d) => d.field === 'signature'), JSON.stringify(r.json));
    // Signed over a different challenge.
    const ch1 = await challenge(u), ch2 = await challenge(u);
    r = await call('POST', `/api/v1/identities/${u.id}/keys`, {
      headers: bearer(u.token),
      json: {public_key: k.b64, challenge_id: ch1.challenge_id, signature: pop(ch2, k)},
    }, '/api/v1/identities/{id}/keys');
    assert.equal(r.status, 422);
    assert.deepEqual(r.json.error.details.map((d) => d.field), ['signature']);
    // A flipped bit in a valid signature.
    const ch3 = await challenge(u);
    const sig = Buffer.from(pop(ch3, k), 'base64url');
    sig[7] ^= 1;
    r = await call('POST', `/api/v1/identities/${u.id}/keys`, {
      headers: bearer(u.token),
      json: {public_key: k.b64, challenge_id: ch3.challenge_id, signature: sig.toString('base64url')},
    }, '/api/v1/identities/{id}/keys');
    assert.equal(r.status, 422);
    const ev = await waitForAudit(`action=signing_key.register&actor=${u.id}`, (e) => e.outcome === 'denied');
    assert.equal(ev.filter((e) => e.outcome === 'denied').length, 3);
    const l = await call('GET', `/api/v1/identities/${u.id}/keys`, {headers: bearer(u.token)},
                         '/api/v1/identities/{id}/keys');
    assert.deepEqual(l.json.keys, []);
  });

  test('a challenge is single use, bound to its identity, and unknown ones are refused', async () => {
    const u = await newUser(), v = await newUser();
    const k = newKey();
    const ch = await challenge(u);
    const body = {public_key: k.b64, challenge_id: ch.challenge_id, signature: pop(ch, k)};
    // Another identity cannot use u's challenge.
    let r = await call('POST', `/api/v1/identities/${v.id}/keys`, {headers: bearer(v.token), json: body},
                       '/api/v1/identities/{id}/keys');
    assert.equal(r.status, 422);
    assert.deepEqual(r.json.error.details.map((d) => d.field), ['challenge_id']);
    r = await call('POST', `/api/v1/identities/${u.id}/keys`, {headers: bearer(u.token), json: body},
                   '/api/v1/identities/{id}/keys');
    assert.equal(r.status, 201);
    r = await call('POST', `/api/v1/identities/${u.id}/keys`, {headers: bearer(u.token), json: body},
                   '/api/v1/identities/{id}/keys');
    assert.equal(r.status, 422);
    assert.match(r.json.error.details[0].problem, /already used/);
    r = await call('POST', `/api/v1/identities/${u.id}/keys`, {
      headers: bearer(u.token),
      json: {...body, challenge_id: '0190a0a0-0000-7000-8000-000000000000'},
    }, '/api/v1/identities/{id}/keys');
    assert.equal(r.status, 422);
  });

  test('malformed bodies report every problem at once', async () => {
    const u = await newUser();
    let r = await call('POST', `/api/v1/identities/${u.id}/keys`, {
      headers: bearer(u.token),
      json: {public_key: 'AAAA', challenge_id: 'nope', signature: 5, extra: true},
    }, '/api/v1/identities/{id}/keys');
    assert.equal(r.status, 422);
    assert.deepEqual(r.json.error.details.map((d) => d.field).sort(),
                     ['challenge_id', 'extra', 'public_key', 'signature']);
    // The all-zero point has small order: not a usable key.
    r = await call('POST', `/api/v1/identities/${u.id}/keys`, {
      headers: bearer(u.token),
      json: {public_key: Buffer.alloc(32).toString('base64url'), challenge_id: (await challenge(u)).challenge_id,
             signature: Buffer.alloc(64).toString('base64url')},
    }, '/api/v1/identities/{id}/keys');
    assert.equal(r.status, 422);
    assert.deepEqual(r.json.error.details.map((d) => d.field), ['public_key']);
    r = await call('POST', `/api/v1/identities/${u.id}/keys`, {headers: bearer(u.token), json: []},
                   '/api/v1/identities/{id}/keys');
    assert.equal(r.status, 422);
  });

  test('only the identity itself registers its keys; others may not even ask for a challenge', async () => {
    const u = await newUser(), v = await newUser();
    // v may not see u at all: the 404 of an unknown id (issue 13); the admin sees u but may not register for it.
    let r = await call('POST', `/api/v1/identities/${u.id}/keys/challenge`, {headers: bearer(v.token)},
                       '/api/v1/identities/{id}/keys/challenge');
    assert.equal(r.status, 404);
    r = await call('POST', `/api/v1/identities/${u.id}/keys/challenge`, {headers: bearer(admin)},
                   '/api/v1/identities/{id}/keys/challenge');
    assert.equal(r.status, 403);
    r = await call('POST', `/api/v1/identities/${u.id}/keys/challenge`, {}, '/api/v1/identities/{id}/keys/challenge');
    assert.equal(r.status, 401);
    await waitForAudit(`action=identity.hidden&actor=${v.id}`, (x) => x.resource_id === u.id);
    r = await call('GET', `/api/v1/identities/0190a0a0-0000-7000-8000-000000000000/keys`, {headers: bearer(admin)},
                   '/api/v1/identities/{id}/keys');
    assert.equal(r.status, 404);
  });
});

describe('rotation and revocation', () => {
  test('rotate replaces the key atomically; revoke keeps it with revoked_at', async () => {
    const u = await newUser();
    const k1 = newKey(), k2 = newKey(), k3 = newKey();
    const r1 = await register(u, k1);
    assert.equal(r1.status, 201);
    const r2 = await register(u, k2, {path: `/api/v1/identities/${u.id}/keys/${r1.json.id}/rotate`});
    assert.equal(r2.status, 201, JSON.stringify(r2.json));
    assert.equal(r2.json.public_key, k2.b64);
    let l = await call('GET', `/api/v1/identities/${u.id}/keys`, {headers: bearer(u.token)},
                       '/api/v1/identities/{id}/keys');
    const old = l.json.keys.find((x) => x.id === r1.json.id);
    assert.equal(old.status, 'rotated');
    assert.equal(old.replaced_by, r2.json.id);
    assert.ok(old.revoked_at >= old.created_at);
    // A rotated key cannot be rotated again.
    let r = await register(u, k3, {path: `/api/v1/identities/${u.id}/keys/${r1.json.id}/rotate`});
    assert.equal(r.status, 409);
    // A rotation without a valid proof leaves the old key active.
    const ch = await challenge(u);
    r = await call('POST', `/api/v1/identities/${u.id}/keys/${r2.json.id}/rotate`, {
      headers: bearer(u.token),
      json: {public_key: k3.b64, challenge_id: ch.challenge_id, signature: pop(ch, k3, k2)},
    }, '/api/v1/identities/{id}/keys/{key_id}/rotate');
    assert.equal(r.status, 422);
    // Revoke (the identity itself).
    r = await call('DELETE', `/api/v1/identities/${u.id}/keys/${r2.json.id}`, {headers: bearer(u.token)},
                   '/api/v1/identities/{id}/keys/{key_id}');
    assert.equal(r.status, 204);
    l = await call('GET', `/api/v1/identities/${u.id}/keys`, {headers: bearer(u.token)}, '/api/v1/identities/{id}/keys');
    const gone = l.json.keys.find((x) => x.id === r2.json.id);
    assert.equal(gone.status, 'revoked');
    assert.ok(gone.revoked_at);
    r = await call('DELETE', `/api/v1/identities/${u.id}/keys/${r2.json.id}`, {headers: bearer(u.token)},
                   '/api/v1/identities/{id}/keys/{key_id}');
    assert.equal(r.status, 409);
    l = await call('GET', `/api/v1/identities/${u.id}/keys`, {headers: bearer(admin)}, '/api/v1/identities/{id}/keys');
    assert.deepEqual(l.json.keys.map((x) => x.status), ['rotated', 'revoked']);
    const ev = await auditEvents(`action=signing_key.rotate&actor=${u.id}`);
    assert.ok(ev.some((e) => e.outcome === 'success' && e.resource_id === r2.json.id));
    assert.ok(ev.some((e) => e.outcome === 'denied'));
    assert.equal((await auditEvents(`action=signing_key.revoke&actor=${u.id}`)).length, 1);
    // The revoked public key may be registered again (as a new key).
    r = await register(u, k2);
    assert.equal(r.status, 201);
    // An active key cannot be registered twice.
    r = await register(u, k2);
    assert.equal(r.status, 409);
  });

  test('an admin may revoke, another user may neither revoke nor list', async () => {
    const u = await newUser(), v = await newUser();
    const r1 = await register(u, newKey());
    // v may not see u: 404, as for an unknown identity.
    let r = await call('GET', `/api/v1/identities/${u.id}/keys`, {headers: bearer(v.token)}, '/api/v1/identities/{id}/keys');
    assert.equal(r.status, 404);
    r = await call('DELETE', `/api/v1/identities/${u.id}/keys/${r1.json.id}`, {headers: bearer(v.token)},
                   '/api/v1/identities/{id}/keys/{key_id}');
    assert.equal(r.status, 404);
    r = await call('DELETE', `/api/v1/identities/${v.id}/keys/${r1.json.id}`, {headers: bearer(v.token)},
                   '/api/v1/identities/{id}/keys/{key_id}');
    assert.equal(r.status, 404);
    r = await call('DELETE', `/api/v1/identities/${u.id}/keys/${r1.json.id}`, {headers: bearer(admin)},
                   '/api/v1/identities/{id}/keys/{key_id}');
    assert.equal(r.status, 204);
    const l = await call('GET', `/api/v1/identities/${u.id}/keys`, {headers: bearer(admin)}, '/api/v1/identities/{id}/keys');
    assert.equal(l.json.keys.find((x) => x.id === r1.json.id).status, 'revoked');
  });
});

describe('API keys', () => {
  test('an API key can neither register signing keys nor manage or use passkeys', async () => {
    const svc = await call('POST', '/api/v1/identities', {
      headers: bearer(admin), json: {kind: 'service', name: `svc-${++n}`, roles: ['consumer']},
    });
    assert.equal(svc.status, 201);
    const k = await call('POST', '/api/v1/api-keys', {
      headers: bearer(admin),
      json: {name: `k-${n}`, identity_id: svc.json.id, permissions: ['identities:read', 'contracts:read'],
             expires_at: new Date(Date.now() + 86400e3).toISOString()},
    });
    assert.equal(k.status, 201, JSON.stringify(k.json));
    const h = {headers: bearer(k.json.key)};
    let r = await call('POST', `/api/v1/identities/${svc.json.id}/keys/challenge`, h, '/api/v1/identities/{id}/keys/challenge');
    assert.equal(r.status, 403);
    r = await call('POST', '/api/v1/webauthn/register/options', h);
    assert.equal(r.status, 403);
    r = await call('POST', '/api/v1/webauthn/assert/options', h);
    assert.equal(r.status, 403);
  });
});
