// The route x role matrix (issue 13): every row of src/http/routes.def is
// called as anonymous, as a provider and a consumer who are parties of
// nothing (non-parties of each side of the contract and enclave used as
// {id}), as an auditor, through a narrow API key, and as an admin. The
// expected status comes from the route's permission and the role ->
// permission table of src/iam/policy.c, both parsed here:
//   - anonymous: 401 on every route but PUBLIC ones;
//   - a caller whose roles (and key scope) lack the permission: 403;
//   - a caller holding it: anything but 401 and 5xx, and never a 2xx on the
//     contract or enclave of other parties for the non-parties;
//   - nobody ever gets a 5xx, and every status is one api/openapi.yaml
//     documents for the operation.
// Bodies are `{}` (or none where the route takes none): the point is the
// decision, not the handler's success.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { contractsContext } from './lib/contracts.mjs';
import { bearer } from './lib/iam.mjs';
import { spec } from './lib/openapi.mjs';
import { repoRoot } from './lib/server.mjs';

/** The rows of routes.def: {method, path, perm, maxBody}. */
function routesDef() {
  const text = fs.readFileSync(path.join(repoRoot, 'src', 'http', 'routes.def'), 'utf8')
    .replace(/\/\*[\s\S]*?\*\//g, '');
  const rows = [...text.matchAll(/^DCMS_ROUTE\(\s*(\w+)\s*,\s*"([^"]+)"\s*,\s*\w+\s*,\s*(\w+)\s*,\s*(\w+)\s*\)/gm)]
    .map((m) => ({ method: m[1], path: m[2], perm: m[3], maxBody: m[4] }));
  assert.ok(rows.length > 20, 'routes.def parsed');
  return rows;
}

/** PUBLIC, AUTHENTICATED, or the action: lowercase, the first '_' read as ':'. */
const action = (perm) => (perm === 'PUBLIC' || perm === 'AUTHENTICATED'
  ? perm : perm.toLowerCase().replace('_', ':'));

/** role name -> Set of permissions, from the roles[] table of src/iam/policy.c. */
function rolePermissions() {
  const text = fs.readFileSync(path.join(repoRoot, 'src', 'iam', 'policy.c'), 'utf8');
  const out = {};
  for (const m of text.matchAll(/\{\s*DCMS_ROLE_\w+\s*,\s*"(\w+)"\s*,\s*\(const char \*const\[\]\)\s*\{([^}]*)\}\s*\}/g)) {
    out[m[1]] = new Set([...m[2].matchAll(/"([^"]+)"/g)].map((x) => x[1]));
  }
  for (const r of ['admin', 'provider', 'consumer', 'auditor']) assert.ok(out[r], `role ${r} in policy.c`);
  return out;
}

const ROUTES = routesDef();
const ROLE_PERMS = rolePermissions();
const grants = (perms, a) => perms.has('*') || perms.has(a);

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
  ids = { contract: contract.id, enclave: enc.json.id, identity: p.provider.id };

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
  principals = [
    { name: 'anonymous', headers: {}, perms: null },
    { name: 'non-party provider', headers: bearer(provider.token), perms: ROLE_PERMS.provider, nonParty: true },
    { name: 'non-party consumer', headers: bearer(consumer.token), perms: ROLE_PERMS.consumer, nonParty: true },
    { name: 'auditor', headers: bearer(auditor.token), perms: ROLE_PERMS.auditor },
    { name: 'narrow API key', headers: bearer(key.json.key), perms: keyPerms },
    { name: 'admin', headers: bearer(admin), perms: ROLE_PERMS.admin },
  ];
});

after(async () => {
  await ctx?.server.stop();
});

/** A concrete path for a template: the shared objects for {id}, random ids elsewhere. */
function concrete(tpl) {
  return tpl.replace(/\{(\w+)\}/g, (_, name) => {
    if (name === 'id' && tpl.startsWith('/api/v1/contracts/')) return ids.contract;
    if (name === 'id' && tpl.startsWith('/api/v1/enclaves/')) return ids.enclave;
    if (name === 'id' && tpl.startsWith('/api/v1/identities/')) return ids.identity;
    return randomUUID();
  });
}

// Routes that end a session or replace signing keys run last, so they cannot change other cells.
const LAST = ['POST /api/v1/admin/keys/rotate', 'POST /api/v1/auth/logout'];
const ordered = [...ROUTES.filter((r) => !LAST.includes(`${r.method} ${r.path}`)),
  ...LAST.map((k) => ROUTES.find((r) => `${r.method} ${r.path}` === k)).filter(Boolean)];

/** The statuses api/openapi.yaml documents for the operation. */
function documented(r) {
  const op = spec.paths?.[r.path]?.[r.method.toLowerCase()];
  assert.ok(op, `${r.method} ${r.path} is in api/openapi.yaml`);
  return new Set(Object.keys(op.responses ?? {}));
}

test(`every route of routes.def (${ROUTES.length}) x 6 callers answers as its permission says`, async () => {
  const wrong = [];
  for (const r of ordered) {
    const a = action(r.perm);
    const p = concrete(r.path);
    const docs = documented(r);
    const scoped = /^\/api\/v1\/(contracts|enclaves)\/\{id\}/.test(r.path);
    for (const who of principals) {
      const headers = { ...who.headers };
      let body;
      if (r.maxBody !== '0' || r.method === 'POST') {
        if (r.method !== 'GET' && r.method !== 'DELETE') {
          headers['Content-Type'] = 'application/json';
          body = '{}';
        }
      }
      const res = await fetch(ctx.server.url + p, { method: r.method, headers, body, signal: AbortSignal.timeout(10000) });
      const st = res.status;
      await res.arrayBuffer();
      let want;
      let ok;
      if (!who.perms) {
        want = a === 'PUBLIC' ? 'not 403' : '401';
        ok = a === 'PUBLIC' ? st !== 403 : st === 401;
      } else if (a !== 'PUBLIC' && a !== 'AUTHENTICATED' && !grants(who.perms, a)) {
        want = '403';
        ok = st === 403;
      } else {
        want = 'not 401/5xx';
        ok = st < 500 && st !== 401;
        if (ok && who.nonParty && scoped && st < 300) {
          want = 'no 2xx on another party\'s object';
          ok = false;
        }
      }
      if (ok && st >= 500) {
        want = 'no 5xx';
        ok = false;
      }
      if (ok && !docs.has(String(st)) && !docs.has('default')) {
        want = `a documented status (${[...docs].join(' ')})`;
        ok = false;
      }
      if (!ok) wrong.push(`${r.method} ${r.path} as ${who.name} (${r.perm}): ${st}, want ${want}`);
    }
  }
  assert.deepEqual(wrong, []);
});
