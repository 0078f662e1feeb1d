// The route x role matrix (issue 13): every row of src/http/routes.def is
// called as anonymous, as a provider and a consumer who are parties of
// nothing (non-parties of each side of the contract, enclave, dataset and
// identity used as {id}), as an auditor, through a narrow API key, and as
// an admin, and each cell must answer exactly the status written for it in
// EXPECTED below. That table is checked against the rules that follow from
// the route's permission and the role -> permission table of
// src/iam/policy.c, both parsed here:
//   - anonymous: 401 on every route but PUBLIC ones, never 403 on those;
//   - a caller whose roles (and key scope) lack the permission: 403;
//   - a non-party holding it, on the objects of other parties: never a 2xx
//     (404 unless its request is refused before the object is looked up);
//   - nobody ever gets a 5xx, and every status is one api/openapi.yaml
//     documents for the operation.
// Bodies are `{}` (or none where the route takes none): the point is the
// decision, not the handler's success. A route added to routes.def needs
// its row here; the failure prints the row observed, to check and copy.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { contractsContext } from './lib/contracts.mjs';
import { bearer } from './lib/iam.mjs';
import { spec } from './lib/openapi.mjs';
import { action, grants, rolePermissions, routesDef } from './lib/routesdef.mjs';

const ROUTES = routesDef();
const ROLE_PERMS = rolePermissions();
const CALLERS = ['anonymous', 'non-party provider', 'non-party consumer', 'auditor', 'narrow API key', 'admin'];

/*
 * The documented status of every cell, callers in CALLERS order. The {id}
 * of contracts, enclaves, datasets and identities is an object of two
 * other parties (a draft contract, its enclave, the provider's dataset, the
 * provider); other ids are random. Cells run route by route in this
 * order, so the admin's earlier changes (suspending the enclave, submitting
 * the contract) are part of the state later rows see; deletions, logout
 * and key rotation run last.
 */
const EXPECTED = {
  //                                                      ano npp npc aud key adm  (see CALLERS)
  'GET /healthz':                                        '200 200 200 200 200 200',
  'GET /readyz':                                         '200 200 200 200 200 200',
  'GET /metrics':                                        '200 200 200 200 200 200',
  'GET /api/v1/openapi.yaml':                            '200 200 200 200 200 200',
  'GET /api/v1/system':                                  '200 200 200 200 200 200',
  'POST /api/v1/canonicalize':                           '200 200 200 200 200 200',
  'GET /api/v1/audit/events':                            '401 403 403 200 403 200',
  'GET /api/v1/audit/verify':                            '401 403 403 200 403 200',
  'GET /api/v1/audit/export':                            '401 403 403 200 403 200',
  'GET /api/v1/audit/tree-head':                         '401 403 403 200 403 200',
  'GET /api/v1/audit/proof/inclusion':                   '401 403 403 422 403 422',
  'GET /api/v1/audit/proof/consistency':                 '401 403 403 422 403 422',
  'GET /api/v1/audit/events/{id}':                       '401 404 404 404 404 404',
  'GET /api/v1/audit/events/{id}/receipt':               '401 404 404 404 404 404',
  'GET /api/v1/audit/public-key':                        '200 200 200 200 200 200',
  'POST /api/v1/attestation/verify':                     '401 422 422 422 422 422',
  'GET /.well-known/jwks.json':                          '200 200 200 200 200 200',
  'POST /api/v1/auth/login':                             '422 422 422 422 422 422',
  'POST /api/v1/auth/passkey/options':                   '200 200 200 200 200 200',
  'POST /api/v1/auth/refresh':                           '422 422 422 422 422 422',
  'POST /api/v1/auth/verify-email':                      '422 422 422 422 422 422',
  'GET /api/v1/auth/me':                                 '401 200 200 200 200 200',
  'GET /api/v1/auth/sessions':                           '401 200 200 200 200 200',
  'DELETE /api/v1/auth/sessions/{id}':                   '401 404 404 404 404 404',
  'POST /api/v1/identities':                             '422 403 403 403 403 422',
  'GET /api/v1/identities':                              '401 200 200 200 200 200',
  'GET /api/v1/identities/{id}':                         '401 404 404 200 200 200',
  'PATCH /api/v1/identities/{id}':                       '401 422 422 422 422 422',
  'POST /api/v1/identities/{id}/verify':                 '401 403 403 403 403 422',
  'POST /api/v1/identities/{id}/suspend':                '401 403 403 403 403 200',
  'POST /api/v1/identities/{id}/reactivate':             '401 403 403 403 403 200',
  'POST /api/v1/policies':                               '401 403 403 403 403 422',
  'GET /api/v1/policies':                                '401 403 403 200 403 200',
  'GET /api/v1/policies/{id}':                           '401 403 403 404 403 404',
  'GET /api/v1/mfa':                                     '401 200 200 200 403 200',
  'POST /api/v1/mfa/totp/enroll':                        '401 201 201 201 403 201',
  'POST /api/v1/mfa/totp/confirm':                       '401 422 422 422 422 422',
  'POST /api/v1/mfa/totp/disable':                       '401 422 422 422 422 422',
  'POST /api/v1/mfa/recovery-codes':                     '401 422 422 422 422 422',
  'POST /api/v1/api-keys':                               '401 403 403 403 403 422',
  'GET /api/v1/api-keys':                                '401 200 200 200 200 200',
  'POST /api/v1/identities/{id}/keys/challenge':         '401 404 404 403 403 403',
  'POST /api/v1/identities/{id}/keys':                   '401 422 422 422 403 422',
  'GET /api/v1/identities/{id}/keys':                    '401 404 404 200 200 200',
  'POST /api/v1/identities/{id}/keys/{key_id}/rotate':   '401 422 422 422 403 422',
  'POST /api/v1/webauthn/register/options':              '401 200 200 200 403 200',
  'POST /api/v1/webauthn/register/verify':               '401 422 422 422 403 422',
  'POST /api/v1/webauthn/assert/options':                '401 409 409 409 403 409',
  'POST /api/v1/webauthn/assert/verify':                 '401 422 422 422 403 422',
  'GET /api/v1/webauthn/credentials':                    '401 200 200 200 200 200',
  'POST /api/v1/contracts':                              '401 422 422 403 403 422',
  'GET /api/v1/contracts':                               '401 200 200 200 403 200',
  'GET /api/v1/contracts/{id}':                          '401 404 404 200 403 200',
  'PUT /api/v1/contracts/{id}':                          '401 428 428 403 403 428',
  'POST /api/v1/contracts/{id}/submit':                  '401 404 404 403 403 200',
  'POST /api/v1/contracts/{id}/sign':                    '401 422 422 403 403 422',
  'POST /api/v1/contracts/{id}/activate':                '401 404 404 403 403 409',
  'POST /api/v1/contracts/{id}/suspend':                 '401 404 403 403 403 409',
  'POST /api/v1/contracts/{id}/resume':                  '401 404 403 403 403 409',
  'POST /api/v1/contracts/{id}/terminate':               '401 422 422 403 403 422',
  'GET /api/v1/contracts/{id}/versions':                 '401 404 404 200 403 200',
  'GET /api/v1/contracts/{id}/verify':                   '401 404 404 200 403 200',
  'POST /api/v1/enclaves':                               '401 422 403 403 403 422',
  'GET /api/v1/enclaves':                                '401 200 200 200 403 200',
  'GET /api/v1/enclaves/{id}':                           '401 404 404 200 403 200',
  'PATCH /api/v1/enclaves/{id}':                         '401 422 403 403 403 422',
  'POST /api/v1/enclaves/{id}/suspend':                  '401 404 403 403 403 200',
  'POST /api/v1/enclaves/{id}/resume':                   '401 404 403 403 403 200',
  'POST /api/v1/enclaves/{id}/terminate':                '401 404 403 403 403 200',
  'POST /api/v1/enclaves/{id}/attest':                   '401 404 403 403 403 409',
  'GET /api/v1/enclaves/{id}/metrics':                   '401 404 404 200 403 200',
  'GET /api/v1/enclaves/{id}/compatibility':             '401 404 404 422 403 422',
  'GET /api/v1/admin/data-keys':                         '401 403 403 403 403 200',
  'POST /api/v1/admin/data-keys/rotate':                 '401 403 403 403 403 200',
  'POST /api/v1/admin/data-keys/rewrap':                 '401 403 403 403 403 200',
  'POST /api/v1/admin/data-keys/retire':                 '401 403 403 403 403 422',
  'POST /api/v1/datasets':                               '401 422 403 403 403 422',
  'GET /api/v1/datasets':                                '401 200 200 200 403 200',
  'GET /api/v1/datasets/{id}':                           '401 404 404 200 403 200',
  'POST /api/v1/datasets/{id}/verify':                   '401 404 403 403 403 200',
  'OPTIONS /api/v1/datasets/{id}/content':               '204 204 204 204 204 204',
  'GET /api/v1/datasets/{id}/content':                   '401 404 403 403 403 404',
  'PATCH /api/v1/datasets/{id}/content':                 '401 412 403 403 403 412',
  'PUT /api/v1/datasets/{id}/content':                   '401 415 403 403 403 415',
  'DELETE /api/v1/policies/{id}':                        '401 403 403 403 403 404',
  'DELETE /api/v1/api-keys/{id}':                        '401 404 404 404 404 404',
  'DELETE /api/v1/identities/{id}/keys/{key_id}':        '401 404 404 403 403 404',
  'DELETE /api/v1/webauthn/credentials/{id}':            '401 404 404 404 403 404',
  'DELETE /api/v1/contracts/{id}':                       '401 404 404 403 403 409',
  'DELETE /api/v1/datasets/{id}':                        '401 404 403 403 403 204',
  'POST /api/v1/admin/keys/rotate':                      '401 403 403 403 403 200',
  'POST /api/v1/auth/logout':                            '401 204 204 204 422 204',
  // organization membership: the {id} used is a contract's, so no organization is found
  'GET /api/v1/organizations/{id}/members':              '401 403 403 404 403 404',
  'POST /api/v1/organizations/{id}/members':             '401 403 403 403 403 422',
  'DELETE /api/v1/organizations/{id}/members/{identity_id}': '401 403 403 403 403 422',
  // evidence for the parties
  'GET /api/v1/enclaves/{id}/attestation':               '401 404 404 200 403 200',
  'GET /api/v1/contracts/{id}/audit':                    '401 404 404 200 403 200',
  'GET /api/v1/contracts/{id}/evidence':                 '401 404 404 200 403 200',
  // training: the body {} fails validation before the contract is looked up
  'POST /api/v1/contracts/{id}/trainings':               '401 403 422 403 403 422',
  'GET /api/v1/contracts/{id}/trainings':                '401 404 404 200 403 200',
  'GET /api/v1/trainings/{id}':                          '401 404 404 404 403 404',
  'POST /api/v1/trainings/{id}/cancel':                  '401 403 404 403 403 404',
  'GET /api/v1/trainings/{id}/model':                    '401 404 404 404 403 404',
  'GET /api/v1/trainings/{id}/events':                   '401 404 404 404 403 404',
  // the privacy budget
  'GET /api/v1/contracts/{id}/privacy':                  '401 404 404 200 403 200',
  // the web UI: the page for everyone, and no asset under a random name
  'GET /':                                               '200 200 200 200 200 200',
  'GET /assets/{name}':                                  '404 404 404 404 404 404',
  // the nodes of the store (audit:read, like the audit log that records their changes)
  'GET /api/v1/nodes':                                   '401 403 403 200 403 200',
};

let ctx;
let principals;
let ids;

before(async () => {
  ctx = await contractsContext({ DCMS_LOGIN_MAX_FAILURES: '100000' });
  const { call, identity, parties, create, admin } = ctx;
  // The parties of the objects used as {id}; none of them is a caller below.
  const p = await parties();
  const contract = await create(p);
  const enc = await call('POST', '/api/v1/enclaves', {
    headers: bearer(p.provider.token),
    json: { name: 'matrix', configuration: { image: 'dcms-workload', cpu_cores: 1, memory_mb: 256, storage_gb: 1 } },
  }, '/api/v1/enclaves');
  assert.equal(enc.status, 201, enc.text);
  const ds = await call('POST', '/api/v1/datasets', {
    headers: bearer(p.provider.token),
    json: { name: 'matrix', schema: { columns: [{ name: 'x', type: 'number' }, { name: 'y', type: 'integer' }], label: 'y', label_values: ['0', '1'] } },
  }, '/api/v1/datasets');
  assert.equal(ds.status, 201, ds.text);
  ids = { contract: contract.id, enclave: enc.json.id, dataset: ds.json.id, identity: p.provider.id };

  const provider = await identity({ roles: ['provider'] });
  const consumer = await identity({ roles: ['consumer'] });
  const auditor = await identity({ roles: ['auditor'] });
  const svc = await call('POST', '/api/v1/identities', {
    headers: bearer(admin), json: { kind: 'service', name: 'matrix key', roles: ['auditor'] },
  });
  assert.equal(svc.status, 201, svc.text);
  const expires = new Date(Date.now() + 86400e3).toISOString().replace(/\.\d+Z$/, 'Z');
  const key = await call('POST', '/api/v1/api-keys', {
    headers: bearer(admin),
    json: { name: 'narrow', identity_id: svc.json.id, permissions: ['identities:read'], expires_at: expires },
  });
  assert.equal(key.status, 201, key.text);
  const keyPerms = new Set([...ROLE_PERMS.auditor].filter((x) => x === 'identities:read'));
  const by = {
    anonymous: { headers: {}, perms: null },
    'non-party provider': { headers: bearer(provider.token), perms: ROLE_PERMS.provider, nonParty: true },
    'non-party consumer': { headers: bearer(consumer.token), perms: ROLE_PERMS.consumer, nonParty: true },
    auditor: { headers: bearer(auditor.token), perms: ROLE_PERMS.auditor },
    'narrow API key': { headers: bearer(key.json.key), perms: keyPerms },
    admin: { headers: bearer(admin), perms: ROLE_PERMS.admin },
  };
  principals = CALLERS.map((name) => ({ name, ...by[name] }));
});

after(async () => {
  await ctx?.server.stop();
});

const SCOPED = /^\/api\/v1\/(contracts|enclaves|datasets|identities)\/\{id\}/;

/** A concrete path for a template: the shared objects for {id}, random ids elsewhere. */
function concrete(tpl) {
  const kind = tpl.match(SCOPED)?.[1];
  return tpl.replace(/\{(\w+)\}/g, (_, name) => {
    if (name === 'id' && kind) return ids[kind.replace(/s$/, '').replace(/ie$/, 'y')];
    return randomUUID();
  });
}

// Deletions, then the routes that end a session or replace signing keys, run last, so they
// cannot change other cells.
const LAST = ['POST /api/v1/admin/keys/rotate', 'POST /api/v1/auth/logout'];
const key = (r) => `${r.method} ${r.path}`;
const ordered = [...ROUTES.filter((r) => r.method !== 'DELETE' && !LAST.includes(key(r))),
  ...ROUTES.filter((r) => r.method === 'DELETE'),
  ...LAST.map((k) => ROUTES.find((r) => key(r) === k)).filter(Boolean)];

/** The statuses api/openapi.yaml documents for the operation. */
function documented(r) {
  const op = spec.paths?.[r.path]?.[r.method.toLowerCase()];
  assert.ok(op, `${r.method} ${r.path} is in api/openapi.yaml`);
  return new Set(Object.keys(op.responses ?? {}));
}

/** What the rules say of a status (null: it agrees with them). */
function ruleProblem(r, who, st) {
  const a = action(r.perm);
  if (!who.perms) {
    if (a !== 'PUBLIC' && st !== 401) return 'anonymous on a protected route: 401';
    if (a === 'PUBLIC' && st === 403) return 'a PUBLIC route refuses nobody for lack of a permission';
  } else if (a !== 'PUBLIC' && a !== 'AUTHENTICATED' && !grants(who.perms, a)) {
    if (st !== 403) return `403: ${a} is not granted`;
  } else if (st === 401) {
    return 'not 401: the caller is authenticated';
  } else if (who.nonParty && a !== 'PUBLIC' && SCOPED.test(r.path) && st < 300) {
    return 'no 2xx on the object of other parties';
  }
  if (st >= 500) return 'no 5xx';
  const docs = documented(r);
  if (!docs.has(String(st)) && !docs.has('default')) return `a documented status (${[...docs].join(' ')})`;
  return null;
}

test(`every route of routes.def (${ROUTES.length}) x ${CALLERS.length} callers answers the documented status`, async () => {
  const wrong = [];
  const observed = {};
  for (const r of ordered) {
    const p = concrete(r.path);
    const want = EXPECTED[key(r)]?.split(' ').map(Number);
    const row = [];
    for (const [i, who] of principals.entries()) {
      const headers = { ...who.headers };
      let body;
      if (r.method !== 'GET' && r.method !== 'DELETE' && r.method !== 'OPTIONS') {
        headers['Content-Type'] = 'application/json';
        body = '{}';
      }
      const res = await fetch(ctx.server.url + p, { method: r.method, headers, body, signal: AbortSignal.timeout(10000) });
      const st = res.status;
      await res.arrayBuffer();
      row.push(st);
      const rule = ruleProblem(r, who, st);
      if (rule) wrong.push(`${key(r)} as ${who.name} (${r.perm}): ${st}, want ${rule}`);
      if (want && want[i] !== st) wrong.push(`${key(r)} as ${who.name}: ${st}, documented ${want[i]}`);
    }
    observed[key(r)] = row.join(' ');
    if (!want) wrong.push(`${key(r)} has no row in EXPECTED (observed '${observed[key(r)]}')`);
  }
  // Rows for routes that are no longer in routes.def are stale.
  for (const k of Object.keys(EXPECTED)) if (!observed[k]) wrong.push(`EXPECTED row ${k} is not a route of routes.def`);
  assert.deepEqual(wrong, [], `${wrong.length} cells:\n${wrong.join('\n')}`);
});
