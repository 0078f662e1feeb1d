// API conventions across modules: policies can be read and deleted (and
// the deletion takes effect at once here, and on another node within the
// refresh period), GET /auth/me tells the caller who it is, and unknown
// or repeated query parameters are refused everywhere except on the
// probes. Every response is checked against api/openapi.yaml. Runs on the
// backend chosen by DCMS_TEST_BACKEND.

import assert from 'node:assert/strict';
import {randomUUID} from 'node:crypto';
import path from 'node:path';
import {after, before, describe, test} from 'node:test';
import {checkResponse} from './lib/openapi.mjs';
import {client} from './lib/http.mjs';
import {backend, startServer} from './lib/server.mjs';
import {adminEnv, adminToken, bearer, login} from './lib/iam.mjs';

const PW = 'correct horse battery staple';
let server, api, admin;
let n = 0;

async function call(method, url, opts = {}, template) {
  const r = await api.call(method, url, opts);
  checkResponse(method, template ?? url.split('?')[0], r.res, r.json ?? r.text);
  return r;
}

async function user(roles) {
  const email = `conv-${++n}-${Date.now()}@example.com`;
  const r = await call('POST', '/api/v1/identities', {
    headers: bearer(admin), json: {name: `U${n}`, email, password: PW, roles},
  });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  return {...r.json, token: (await login(server, email, PW)).access_token};
}

async function auditEvents(query) {
  const r = await call('GET', `/api/v1/audit/events?${query}`, {headers: bearer(admin)});
  assert.equal(r.status, 200);
  return r.json.events;
}

function denyReadsOf(u) {
  return {
    name: `deny-reads-${++n}`, effect: 'deny', actions: ['identities:read'],
    resources: ['*'], attach: {identities: [u.id]},
  };
}

before(async () => {
  server = await startServer({env: {...adminEnv, DCMS_AUDIT_REFUSALS_PER_MINUTE: '100000'}});
  api = client(server);
  admin = await adminToken(server);
});

after(async () => {
  await server?.stop();
});

describe('policies: read and delete', () => {
  test('a wrong deny policy is read, deleted (204, audited) and stops applying at once', async () => {
    const u = await user(['consumer']);
    const auditor = await user(['auditor']);
    const self = () => call('GET', `/api/v1/identities/${u.id}`, {headers: bearer(u.token)}, '/api/v1/identities/{id}');
    assert.equal((await self()).status, 200);
    const doc = denyReadsOf(u);
    const c = await call('POST', '/api/v1/policies', {headers: bearer(admin), json: doc});
    assert.equal(c.status, 201);
    assert.equal((await self()).status, 403);

    const g = await call('GET', `/api/v1/policies/${c.json.id}`, {headers: bearer(auditor.token)}, '/api/v1/policies/{id}');
    assert.equal(g.status, 200);
    assert.deepEqual(g.json, c.json);

    // policies:manage is needed: an auditor and a consumer are refused.
    for (const tok of [auditor.token, u.token]) {
      const r = await call('DELETE', `/api/v1/policies/${c.json.id}`, {headers: bearer(tok)}, '/api/v1/policies/{id}');
      assert.equal(r.status, 403);
    }
    const d = await call('DELETE', `/api/v1/policies/${c.json.id}`, {headers: bearer(admin)}, '/api/v1/policies/{id}');
    assert.equal(d.status, 204);
    assert.equal((await self()).status, 200, 'the deny no longer applies on this node');

    for (const method of ['GET', 'DELETE']) {
      const r = await call(method, `/api/v1/policies/${c.json.id}`, {headers: bearer(admin)}, '/api/v1/policies/{id}');
      assert.equal(r.status, 404);
    }
    for (const id of ['not-a-uuid', randomUUID()]) {
      const r = await call('GET', `/api/v1/policies/${id}`, {headers: bearer(admin)}, '/api/v1/policies/{id}');
      assert.equal(r.status, 404);
    }
    const list = await call('GET', '/api/v1/policies', {headers: bearer(admin)});
    assert.ok(!list.json.policies.some((p) => p.id === c.json.id));
    const ev = (await auditEvents(`action=policy.delete&resource_id=${c.json.id}`));
    assert.equal(ev.length, 1);
    assert.equal(ev[0].outcome, 'success');
    assert.equal(ev[0].details.policy.name, doc.name);
    assert.deepEqual(ev[0].details.policy.actions, doc.actions);
    // The name is free again: the corrected policy can be created.
    assert.equal((await call('POST', '/api/v1/policies', {headers: bearer(admin), json: {...doc, effect: 'allow'}})).status, 201);
  });

  test('a deletion reaches another node within its refresh period', {
    skip: backend !== 'postgres' && 'needs DCMS_TEST_BACKEND=postgres (two processes, one database)',
  }, async () => {
    const u = new URL(process.env.DCMS_TEST_PG_URL);
    u.pathname = `/${server.database}`;
    const other = await startServer({env: {
      DCMS_DATABASE_URL: u.toString(),
      DCMS_AUDIT_KEY_FILE: path.join(server.dataDir, 'audit', 'ed25519.key'),
      DCMS_IAM_KEK_FILE: path.join(server.dataDir, 'iam', 'kek.key'),
      DCMS_KEYS_FILE: path.join(server.dataDir, 'keys', 'keyring'),
    }});
    try {
      const api2 = client(other);
      const v = await user(['consumer']);
      const c = await call('POST', '/api/v1/policies', {headers: bearer(admin), json: denyReadsOf(v)});
      assert.equal(c.status, 201);
      const read = async () => {
        const r = await api2.call('GET', `/api/v1/identities/${v.id}`, {headers: bearer(v.token)});
        checkResponse('GET', '/api/v1/identities/{id}', r.res, r.json);
        return r.status;
      };
      const until = async (want) => {
        const t0 = Date.now();
        while (await read() !== want) {
          assert.ok(Date.now() - t0 < 5000, `the other node answered not ${want} within 5 s`);
          await new Promise((r) => setTimeout(r, 100));
        }
        return Date.now() - t0;
      };
      await until(403);
      assert.equal((await call('DELETE', `/api/v1/policies/${c.json.id}`, {headers: bearer(admin)}, '/api/v1/policies/{id}')).status, 204);
      const ms = await until(200);
      assert.ok(ms < 4000, `took ${ms} ms`);
    } finally {
      await other.stop();
    }
  });
});

describe('GET /auth/me', () => {
  test('an access token: the identity and the token facts', async () => {
    const u = await user(['provider', 'consumer']);
    const r = await call('GET', '/api/v1/auth/me', {headers: bearer(u.token)});
    assert.equal(r.status, 200);
    const same = await call('GET', `/api/v1/identities/${u.id}`, {headers: bearer(u.token)}, '/api/v1/identities/{id}');
    assert.deepEqual(r.json.identity, same.json);
    assert.deepEqual(r.json.token.roles.sort(), ['consumer', 'provider']);
    assert.deepEqual(r.json.token.amr, ['pwd']);
    const claims = JSON.parse(Buffer.from(u.token.split('.')[1], 'base64url'));
    assert.match(r.json.token.session_id, /^[0-9a-f-]{36}$/);
    assert.equal(r.json.token.api_key, null);
    assert.equal(Date.parse(r.json.token.expires_at) / 1000, claims.exp);
  });

  test('works even when a policy denies identities:read to the caller', async () => {
    const u = await user(['consumer']);
    const c = await call('POST', '/api/v1/policies', {headers: bearer(admin), json: denyReadsOf(u)});
    try {
      const r = await call('GET', '/api/v1/auth/me', {headers: bearer(u.token)});
      assert.equal(r.status, 200);
      assert.equal(r.json.identity.id, u.id);
    } finally {
      await call('DELETE', `/api/v1/policies/${c.json.id}`, {headers: bearer(admin)}, '/api/v1/policies/{id}');
    }
  });

  test('an API key: the key id and its scope, no session', async () => {
    const svc = await call('POST', '/api/v1/identities', {
      headers: bearer(admin), json: {kind: 'service', name: `svc-${++n}`, roles: ['auditor']},
    });
    const expires = new Date(Date.now() + 86400e3).toISOString().replace(/\.\d+Z$/, 'Z');
    const k = await call('POST', '/api/v1/api-keys', {headers: bearer(admin), json: {
      name: `me-${n}`, identity_id: svc.json.id, permissions: ['audit:read'], expires_at: expires,
    }});
    assert.equal(k.status, 201, JSON.stringify(k.json));
    const r = await call('GET', '/api/v1/auth/me', {headers: bearer(k.json.key)});
    assert.equal(r.status, 200);
    assert.equal(r.json.identity.id, svc.json.id);
    assert.deepEqual(r.json.token.api_key, {id: k.json.id, scope: ['audit:read']});
    assert.equal(r.json.token.session_id, null);
    assert.deepEqual(r.json.token.amr, []);
    assert.deepEqual(r.json.token.roles, ['auditor']);
  });

  test('anonymous: 401', async () => {
    assert.equal((await call('GET', '/api/v1/auth/me')).status, 401);
    assert.equal((await call('GET', '/api/v1/auth/me', {headers: bearer('x.y.z')})).status, 401);
  });
});

describe('query parameters', () => {
  const problems = (r) => r.json.error.details.map((d) => `${d.field}: ${d.problem}`).sort();

  test('a misspelt parameter is refused by every route that takes some (422, named)', async () => {
    const id = randomUUID();
    const cases = [
      ['/api/v1/identities?stauts=active', '/api/v1/identities'],
      ['/api/v1/contracts?stauts=active', '/api/v1/contracts'],
      ['/api/v1/enclaves?stauts=running', '/api/v1/enclaves'],
      [`/api/v1/enclaves/${id}/compatibility?contract=x&stauts=1`, '/api/v1/enclaves/{id}/compatibility'],
      ['/api/v1/audit/events?stauts=x', '/api/v1/audit/events'],
      ['/api/v1/audit/export?stauts=x', '/api/v1/audit/export'],
    ];
    for (const [url, tmpl] of cases) {
      const r = await call('GET', url, {headers: bearer(admin)}, tmpl);
      assert.equal(r.status, 422, url);
      assert.equal(r.json.error.code, 'validation_failed');
      assert.ok(problems(r).includes('stauts: unknown query parameter'), `${url}: ${problems(r)}`);
    }
  });

  test('unknown and value problems come back together; a repeated parameter is refused', async () => {
    let r = await call('GET', '/api/v1/identities?stauts=active&limit=0&kind=robot', {headers: bearer(admin)});
    assert.equal(r.status, 422);
    assert.deepEqual(problems(r), [
      'kind: must be organization, user or service', 'limit: must be an integer from 1 to 500',
      'stauts: unknown query parameter']);
    r = await call('GET', '/api/v1/identities?status=active&status=suspended', {headers: bearer(admin)});
    assert.equal(r.status, 422);
    assert.deepEqual(problems(r), ['status: is given more than once']);
    r = await call('GET', '/api/v1/identities?status=active&limit=5', {headers: bearer(admin)});
    assert.equal(r.status, 200);
  });

  test('routes that take none refuse any; the probes ignore them', async () => {
    for (const [url, tmpl] of [
      ['/api/v1/api-keys?all=1', '/api/v1/api-keys'],
      ['/api/v1/policies?name=x', '/api/v1/policies'],
      ['/api/v1/auth/me?x=1', '/api/v1/auth/me'],
      [`/api/v1/identities/${randomUUID()}?expand=1`, '/api/v1/identities/{id}'],
    ]) {
      const r = await call('GET', url, {headers: bearer(admin)}, tmpl);
      assert.equal(r.status, 422, url);
      assert.deepEqual(problems(r), [`${new URL(url, 'http://x').searchParams.keys().next().value}: unknown query parameter`]);
    }
    // Authentication comes first: an anonymous caller learns nothing about parameters.
    assert.equal((await call('GET', '/api/v1/api-keys?all=1', {}, '/api/v1/api-keys')).status, 401);
    for (const p of ['/healthz', '/readyz', '/metrics']) {
      const r = await call('GET', `${p}?_=${Date.now()}`, {}, p);
      assert.equal(r.status, 200, p);
    }
  });
});
