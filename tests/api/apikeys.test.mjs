// API keys through the API: created by an admin for a service identity and
// shown once, stored only as a hash, scoped (a call outside the scope is 403,
// a scope wider than the identity's permissions is refused), bounded by the
// identity's current roles, refused once expired, revoked or when the
// identity is suspended (401), never a second factor, and every denial
// audited. Every response is checked against api/openapi.yaml. Runs on the
// backend chosen by DCMS_TEST_BACKEND.

import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { checkResponse } from './lib/openapi.mjs';
import { client } from './lib/http.mjs';
import { startServer } from './lib/server.mjs';
import { adminEnv, adminToken, bearer, login } from './lib/iam.mjs';

const PW = 'correct horse battery staple';
let server, api, admin;
let n = 0;

async function call(method, path, opts = {}, template) {
  const r = await api.call(method, path, opts);
  checkResponse(method, template ?? path, r.res, r.json ?? r.text);
  return r;
}

const inDays = (d) => new Date(Date.now() + d * 86400e3).toISOString();

async function identity(body) {
  const r = await call('POST', '/api/v1/identities', { headers: bearer(admin), json: body });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  return r.json;
}

const service = (roles) => identity({ kind: 'service', name: `svc-${++n}`, roles });

async function createKey(body, token = admin) {
  return call('POST', '/api/v1/api-keys', { headers: bearer(token), json: body });
}

async function newKey(svc, permissions, expires_at = inDays(30)) {
  const r = await createKey({ name: `key-${++n}`, identity_id: svc.id, permissions, expires_at });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  return r.json;
}

async function auditEvents(query) {
  const r = await call('GET', `/api/v1/audit/events?${query}`, { headers: bearer(admin) });
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

const deniedFor = (r) => (e) => e.request_id === r.headers.get('x-request-id');

before(async () => {
  server = await startServer({ env: { ...adminEnv, DCMS_AUDIT_REFUSALS_PER_MINUTE: '100000' } });
  api = client(server);
  admin = await adminToken(server);
});

describe('creating API keys', () => {
  test('the key is shown once; only a hash is kept; listing never shows it', async () => {
    const svc = await service(['auditor']);
    const k = await newKey(svc, ['identities:read', 'policies:read']);
    assert.match(k.key, /^dcms_[0-9a-f-]{36}_[A-Za-z0-9_-]{43}$/);
    assert.ok(k.key.startsWith(`dcms_${k.id}_`));
    assert.equal(k.identity_id, svc.id);
    assert.equal(k.status, 'active');
    const secret = k.key.split('_').slice(2).join('_');
    const list = await call('GET', '/api/v1/api-keys', { headers: bearer(admin) });
    assert.equal(list.status, 200);
    const row = list.json.api_keys.find((x) => x.id === k.id);
    assert.deepEqual(row.permissions, ['identities:read', 'policies:read']);
    assert.ok(!list.text.includes(secret));
    const events = await auditEvents(`action=api_key.create&limit=50`);
    const ev = events.find((e) => e.resource_id === k.id);
    assert.ok(ev);
    assert.ok(!JSON.stringify(ev).includes(secret));
    // The service sees its own keys with its key.
    const own = await call('GET', '/api/v1/api-keys', { headers: bearer(k.key) });
    assert.equal(own.status, 200);
    assert.ok(own.json.api_keys.every((x) => x.identity_id === svc.id));
  });

  test('validation: every problem at once; expiry required, in the future, at most a year', async () => {
    const svc = await service(['auditor']);
    let r = await createKey({ name: '', permissions: [], bogus: 1 });
    assert.equal(r.status, 422);
    assert.deepEqual(r.json.error.details.map((d) => d.field).sort(), ['bogus', 'expires_at', 'name', 'permissions']);
    r = await createKey({ name: 'x', identity_id: svc.id, permissions: ['identities:read', 'nope', 'a:b:c'], expires_at: inDays(400) });
    assert.equal(r.status, 422);
    assert.deepEqual(r.json.error.details.map((d) => d.field), ['expires_at', 'permissions[1]', 'permissions[2]']);
    // Problems of the body's shape and of its values come in one answer.
    r = await createKey({ name: '', identity_id: svc.id, permissions: ['nope'], expires_at: inDays(400) });
    assert.equal(r.status, 422);
    assert.deepEqual(r.json.error.details.map((d) => d.field).sort(), ['expires_at', 'name', 'permissions[0]']);
    r = await createKey({ name: 'x', identity_id: svc.id, permissions: ['identities:read'], expires_at: inDays(-1) });
    assert.equal(r.status, 422);
    r = await createKey({ name: 'x', identity_id: svc.id, permissions: ['identities:read'], expires_at: 'tomorrow' });
    assert.equal(r.status, 422);
  });

  test('keys are for service identities; the scope must be a subset of the identity’s permissions', async () => {
    const svc = await service(['auditor']);
    const userEmail = `u-${++n}-${Date.now()}@example.com`;
    const user = await identity({ name: 'u', email: userEmail, password: PW });
    let r = await createKey({ name: 'x', identity_id: user.id, permissions: ['identities:read'], expires_at: inDays(1) });
    assert.equal(r.status, 422);
    assert.equal(r.json.error.details[0].field, 'identity_id');
    // Admins themselves are users, not services.
    r = await createKey({ name: 'x', permissions: ['identities:read'], expires_at: inDays(1) });
    assert.equal(r.status, 422);
    r = await createKey({ name: 'x', identity_id: svc.id, permissions: ['contracts:create', 'identities:read'], expires_at: inDays(1) });
    assert.equal(r.status, 422);
    assert.deepEqual(r.json.error.details.map((d) => d.field), ['permissions[0]']);
    r = await createKey({ name: 'x', identity_id: '01a20a81-0000-7000-8000-000000000000', permissions: ['identities:read'], expires_at: inDays(1) });
    assert.equal(r.status, 422);
    // Only holders of apikeys:manage (admins) create keys.
    const tok = (await login(server, userEmail, PW)).access_token;
    r = await createKey({ name: 'x', identity_id: svc.id, permissions: ['identities:read'], expires_at: inDays(1) }, tok);
    assert.equal(r.status, 403);
    await waitForAudit(`action=request.denied&actor=${user.id}&limit=20`, deniedFor(r));
  });

  test('an API key never counts as a second factor (mfa_present)', async () => {
    const svc = await service(['consumer']);
    const pol = await call('POST', '/api/v1/policies', {
      headers: bearer(admin),
      json: {
        name: `svc-policies-with-mfa-${n++}`,
        effect: 'allow',
        actions: ['policies:read'],
        resources: ['*'],
        conditions: { mfa_present: true },
        attach: { identities: [svc.id] },
      },
    });
    assert.equal(pol.status, 201);
    // The identity holds policies:read only with a second factor, which a key never is.
    const r = await createKey({ name: 'x', identity_id: svc.id, permissions: ['policies:read'], expires_at: inDays(1) });
    assert.equal(r.status, 422);
    const k = await newKey(svc, ['identities:read']);
    const denied = await call('GET', '/api/v1/policies', { headers: bearer(k.key) });
    assert.equal(denied.status, 403);
  });
});

describe('using API keys', () => {
  test('Bearer dcms_… works like a token inside the scope; outside it is 403, audited', async () => {
    const svc = await service(['auditor']);
    const k = await newKey(svc, ['identities:read']);
    const ok = await call('GET', `/api/v1/identities/${svc.id}`, { headers: bearer(k.key) }, '/api/v1/identities/{id}');
    assert.equal(ok.status, 200);
    assert.equal(ok.json.id, svc.id);
    // The auditor role grants policies:read, the key's scope does not.
    const out = await call('GET', '/api/v1/policies', { headers: bearer(k.key) });
    assert.equal(out.status, 403);
    assert.match(out.json.error.message, /scope/);
    await waitForAudit(`action=request.denied&actor=${svc.id}&limit=20`, deniedFor(out));
    // Keys have no session to log out of.
    assert.equal((await call('POST', '/api/v1/auth/logout', { headers: bearer(k.key) })).status, 422);
    // Second factors are for people.
    assert.equal((await call('GET', '/api/v1/mfa', { headers: bearer(k.key) })).status, 403);
    assert.equal((await call('POST', '/api/v1/mfa/totp/enroll', { headers: bearer(k.key) })).status, 403);
    // A wildcard scope covers its resource's actions; it needs an identity that holds them all.
    assert.equal((await createKey({ name: 'w', identity_id: svc.id, permissions: ['policies:*'], expires_at: inDays(1) })).status, 422);
    const ops = await service(['admin']);
    const w = await newKey(ops, ['policies:*']);
    assert.equal((await call('GET', '/api/v1/policies', { headers: bearer(w.key) })).status, 200);
    assert.equal((await call('GET', '/api/v1/identities', { headers: bearer(w.key) })).status, 403);
  });

  test('the identity’s current roles bound the key: a removed role takes the permission away', async () => {
    const svc = await service(['auditor']);
    const k = await newKey(svc, ['policies:read']);
    assert.equal((await call('GET', '/api/v1/policies', { headers: bearer(k.key) })).status, 200);
    const p = await call('PATCH', `/api/v1/identities/${svc.id}`, { headers: bearer(admin), json: { roles: ['consumer'] } }, '/api/v1/identities/{id}');
    assert.equal(p.status, 200, JSON.stringify(p.json));
    assert.equal((await call('GET', '/api/v1/policies', { headers: bearer(k.key) })).status, 403);
  });

  test('wrong, malformed, expired, revoked keys and keys of suspended identities are 401, audited', async () => {
    const svc = await service(['auditor']);
    const k = await newKey(svc, ['policies:read']);
    const get = (key) => call('GET', '/api/v1/policies', { headers: bearer(key) });
    assert.equal((await get(k.key)).status, 200);

    const tampered = k.key.slice(0, -2) + (k.key.endsWith('AA') ? 'BB' : 'AA');
    let r = await get(tampered);
    assert.equal(r.status, 401);
    await waitForAudit(`action=request.denied&limit=20`, deniedFor(r));
    assert.equal((await get('dcms_short')).status, 401);
    assert.equal((await get(`dcms_01a20a81-0000-7000-8000-000000000000_${'A'.repeat(43)}`)).status, 401);

    // Expired.
    const soon = await newKey(svc, ['policies:read'], new Date(Date.now() + 1500).toISOString());
    assert.equal((await get(soon.key)).status, 200);
    await new Promise((res) => setTimeout(res, 1700));
    r = await get(soon.key);
    assert.equal(r.status, 401);
    assert.match(r.json.error.message, /expired/);
    const listed = (await call('GET', '/api/v1/api-keys', { headers: bearer(admin) })).json.api_keys;
    assert.equal(listed.find((x) => x.id === soon.id).status, 'expired');

    // Revoked: refused from the next request on.
    const del = await call('DELETE', `/api/v1/api-keys/${k.id}`, { headers: bearer(admin) }, '/api/v1/api-keys/{id}');
    assert.equal(del.status, 204);
    r = await get(k.key);
    assert.equal(r.status, 401);
    assert.match(r.json.error.message, /revoked/);
    await waitForAudit(`action=request.denied&limit=20`, deniedFor(r));
    assert.ok((await auditEvents(`action=api_key.revoke&limit=20`)).some((e) => e.resource_id === k.id));
    assert.equal((await call('DELETE', `/api/v1/api-keys/${k.id}`, { headers: bearer(admin) }, '/api/v1/api-keys/{id}')).status, 204);
    assert.equal((await call('DELETE', `/api/v1/api-keys/01a20a81-0000-7000-8000-000000000000`, { headers: bearer(admin) }, '/api/v1/api-keys/{id}')).status, 404);

    // Suspended identity.
    const k2 = await newKey(svc, ['policies:read']);
    assert.equal((await get(k2.key)).status, 200);
    const s = await call('POST', `/api/v1/identities/${svc.id}/suspend`, { headers: bearer(admin), json: { reason: 'test' } }, '/api/v1/identities/{id}/suspend');
    assert.equal(s.status, 200, JSON.stringify(s.json));
    assert.equal((await get(k2.key)).status, 401);
  });

  test('a service revokes its own key with that key; it cannot revoke another service’s key', async () => {
    const a = await service(['auditor']);
    const b = await service(['auditor']);
    const ka = await newKey(a, ['identities:read']);
    const kb = await newKey(b, ['identities:read']);
    const r = await call('DELETE', `/api/v1/api-keys/${kb.id}`, { headers: bearer(ka.key) }, '/api/v1/api-keys/{id}');
    assert.equal(r.status, 403);
    const self = await call('DELETE', `/api/v1/api-keys/${ka.id}`, { headers: bearer(ka.key) }, '/api/v1/api-keys/{id}');
    assert.equal(self.status, 204);
    assert.equal((await call('GET', '/api/v1/api-keys', { headers: bearer(ka.key) })).status, 401);
  });

  test('a key outside apikeys:manage cannot revoke the other keys of its own service', async () => {
    const a = await service(['auditor']);
    const k1 = await newKey(a, ['identities:read']);
    const k2 = await newKey(a, ['identities:read']);
    const r = await call('DELETE', `/api/v1/api-keys/${k2.id}`, { headers: bearer(k1.key) }, '/api/v1/api-keys/{id}');
    assert.equal(r.status, 403);
    assert.match(r.json.error.message, /scope/);
    const list = await call('GET', '/api/v1/api-keys', { headers: bearer(k2.key) });
    assert.equal(list.status, 200);
    assert.equal(list.json.api_keys.find((x) => x.id === k2.id).status, 'active');
    assert.equal((await call('DELETE', `/api/v1/api-keys/${k1.id}`, { headers: bearer(k1.key) }, '/api/v1/api-keys/{id}')).status, 204);
  });
});
