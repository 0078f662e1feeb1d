// Existence leaks (issue 13, finding 6): to a caller who may not see an
// object, dcms answers another party's id exactly as it answers an id that
// does not exist: same status, same headers, same body apart from the
// request id. Generated from src/http/routes.def: every route with an {id}
// under /identities, /contracts, /enclaves, /datasets and /api-keys is called by each
// caller with the object of another party and with a random id, and the two
// answers are compared byte for byte, and neither may take seconds. Then the places where an id travels
// in a body or a query: an enclave created or re-bound with another
// provider's contract, a compatibility check against it, a contract naming
// another provider's dataset. Runs on the backend chosen by DCMS_TEST_BACKEND.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { bearer, contractsContext, validTerms } from './lib/contracts.mjs';
import { routesDef } from './lib/routesdef.mjs';

const SCOPED = /^\/api\/v1\/(identities|contracts|enclaves|datasets|api-keys)\/\{id\}/;
const ROUTES = routesDef().filter((r) => SCOPED.test(r.path));
const SCHEMA = { columns: [{ name: 'x', type: 'number' }, { name: 'y', type: 'integer' }], label: 'y', label_values: ['0', '1'] };
const ENCLAVE = { image: 'dcms-workload', cpu_cores: 1, memory_mb: 256, storage_gb: 1 };
// Headers that differ between any two answers.
const SLOW_MS = 4000; // under the 5 s of a store lock wait, above a loaded machine's slowest answer
const VOLATILE = new Set(['date', 'x-request-id', 'content-length', 'connection', 'keep-alive']);

let t;
let foreign; // the objects of the parties: {identity, key, contract, enclave, dataset}
let callers; // who may not see them: [{name, headers, provider?}]

before(async () => {
  t = await contractsContext({ DCMS_LOGIN_MAX_FAILURES: '100000' });
  const { call, identity, parties, create, admin } = t;
  const p = await parties();
  const contract = await create(p);
  const enc = await call('POST', '/api/v1/enclaves', {
    headers: bearer(p.provider.token),
    // Unbound: a draft contract may not be served (the compatibility gate).
    json: { name: 'theirs', configuration: ENCLAVE },
  }, '/api/v1/enclaves');
  assert.equal(enc.status, 201, enc.text);
  const ds = await call('POST', '/api/v1/datasets', {
    headers: bearer(p.provider.token), json: { name: 'theirs', schema: SCHEMA },
  }, '/api/v1/datasets');
  assert.equal(ds.status, 201, ds.text);
  const expires = new Date(Date.now() + 86400e3).toISOString().replace(/\.\d+Z$/, 'Z');
  const theirSvc = await call('POST', '/api/v1/identities', {
    headers: bearer(admin), json: { kind: 'service', name: 'their service', roles: ['provider'] },
  });
  assert.equal(theirSvc.status, 201, theirSvc.text);
  const theirKey = await call('POST', '/api/v1/api-keys', {
    headers: bearer(admin),
    json: { name: 'theirs', identity_id: theirSvc.json.id, permissions: ['contracts:read'], expires_at: expires },
  });
  assert.equal(theirKey.status, 201, theirKey.text);
  foreign = {
    identity: p.provider.id, key: p.provider.key.key_id, contract: contract.id, enclave: enc.json.id,
    dataset: ds.json.id, apikey: theirKey.json.id,
  };

  const provider = await identity({ roles: ['provider'] });
  const consumer = await identity({ roles: ['consumer'] });
  const svc = await call('POST', '/api/v1/identities', {
    headers: bearer(admin), json: { kind: 'service', name: 'existence key', roles: ['provider'] },
  });
  assert.equal(svc.status, 201, svc.text);
  const key = await call('POST', '/api/v1/api-keys', {
    headers: bearer(admin),
    json: { name: 'reader', identity_id: svc.json.id, permissions: ['identities:read', 'contracts:read', 'enclaves:read', 'datasets:read'], expires_at: expires },
  });
  assert.equal(key.status, 201, key.text);
  callers = [
    { name: 'non-party provider', headers: bearer(provider.token), who: provider },
    { name: 'non-party consumer', headers: bearer(consumer.token), who: consumer },
    { name: 'API key of a non-party', headers: bearer(key.json.key) },
  ];
});

after(async () => {
  await t?.server.stop();
});

/** A request's body for routes where `{}` would be refused before any decision. */
function bodyOf(r) {
  const k = `${r.method} ${r.path}`;
  const bodies = {
    'PATCH /api/v1/identities/{id}': { name: 'renamed' },
    'POST /api/v1/identities/{id}/verify': { note: 'seen' },
    'POST /api/v1/identities/{id}/suspend': { reason: 'probe' },
    'POST /api/v1/identities/{id}/reactivate': { reason: 'probe' },
    'PUT /api/v1/contracts/{id}': { title: 'mine now', description: 'd', terms: validTerms() },
    'POST /api/v1/contracts/{id}/sign': { type: 'digital', terms_hash: '0'.repeat(64), key_id: randomUUID(), signature: 'AAAA' },
    'POST /api/v1/contracts/{id}/suspend': { reason: 'probe' },
    'POST /api/v1/contracts/{id}/terminate': { reason: 'probe' },
    'PATCH /api/v1/enclaves/{id}': { name: 'mine now' },
    'POST /api/v1/enclaves/{id}/suspend': { reason: 'probe' },
    'POST /api/v1/enclaves/{id}/terminate': { reason: 'probe' },
  };
  if (bodies[k]) return { ct: 'application/json', body: JSON.stringify(bodies[k]) };
  if (r.maxBody === 'STREAM') return { ct: 'application/offset+octet-stream', body: 'x,1\n' };
  if (r.method === 'GET' || r.method === 'DELETE' || r.method === 'OPTIONS') return {};
  return { ct: 'application/json', body: '{}' };
}

/** One answer, reduced to what must not depend on the id's existence. */
async function answer(method, path, headers, body) {
  const t0 = Date.now();
  const res = await fetch(t.server.url + path, { method, headers, body, signal: AbortSignal.timeout(15000) });
  const text = await res.text();
  const ms = Date.now() - t0;
  let json;
  try {
    json = JSON.parse(text);
    if (json && typeof json === 'object') delete json.request_id;
  } catch {
    json = text;
  }
  const h = {};
  for (const [name, v] of res.headers) if (!VOLATILE.has(name)) h[name] = v;
  // How long it took (not enumerable: deepEqual compares what was answered, slow() the time).
  return Object.defineProperty({ status: res.status, headers: h, body: json }, 'ms', { value: ms });
}

/** Nor in time: a refusal that waited for a store lock (DCMS_STORE_TIMEOUT_MS, 5 s) would tell. */
const slow = (a) => (a.ms >= SLOW_MS ? `took ${a.ms} ms` : null);

/** The foreign path of a route and its random twin (other parameters: the same random id). */
function paths(tpl) {
  const kind = tpl.match(SCOPED)[1];
  const id = {
    identities: foreign.identity, contracts: foreign.contract, enclaves: foreign.enclave, datasets: foreign.dataset,
    'api-keys': foreign.apikey,
  }[kind];
  const other = randomUUID();
  const rnd = randomUUID();
  const fill = (main, key) => tpl.replace(/\{(\w+)\}/g, (_, n) => (n === 'id' ? main : key));
  return [fill(id, tpl.includes('{key_id}') ? foreign.key : other), fill(rnd, other)];
}

test(`${'every {id} route under identities, contracts, enclaves, datasets, api-keys'}: another party's id answers as an unknown one`, async () => {
  assert.ok(ROUTES.length >= 31, `routes found: ${ROUTES.length}`);
  const differ = [];
  for (const r of ROUTES) {
    const [theirs, none] = paths(r.path);
    for (const c of callers) {
      const { ct, body } = bodyOf(r);
      const headers = { ...c.headers, ...(ct ? { 'Content-Type': ct } : {}) };
      if (r.maxBody === 'STREAM') Object.assign(headers, { 'Tus-Resumable': '1.0.0', 'Upload-Offset': '0' });
      if (r.method === 'PUT' || r.method === 'PATCH') headers['If-Match'] = '"1"';
      const a = await answer(r.method, theirs, headers, body);
      const b = await answer(r.method, none, headers, body);
      if (slow(a) || slow(b)) differ.push(`${r.method} ${r.path} as ${c.name}: theirs ${slow(a)}, unknown ${slow(b)}`);
      try {
        assert.deepEqual(a, b);
      } catch {
        differ.push(`${r.method} ${r.path} as ${c.name}: theirs ${a.status} ${JSON.stringify(a.body)} ` +
          `${JSON.stringify(a.headers)} / unknown ${b.status} ${JSON.stringify(b.body)} ${JSON.stringify(b.headers)}`);
      }
    }
  }
  assert.deepEqual(differ, []);
});

test('the objects used above exist: their parties and an admin see them', async () => {
  for (const p of [`/api/v1/identities/${foreign.identity}`, `/api/v1/contracts/${foreign.contract}`,
    `/api/v1/enclaves/${foreign.enclave}`, `/api/v1/datasets/${foreign.dataset}`]) {
    const r = await answer('GET', p, bearer(t.admin));
    assert.equal(r.status, 200, `${p}: ${JSON.stringify(r.body)}`);
  }
});

test('hidden identities are answered 404 and the refusal is audited', async () => {
  const c = callers[0];
  const r = await answer('GET', `/api/v1/identities/${foreign.identity}`, c.headers);
  assert.equal(r.status, 404);
  assert.equal(r.body.error.message, 'identity not found');
  const events = await t.auditEvents(`action=identity.hidden&actor=${c.who.id}&limit=50`);
  assert.ok(events.some((e) => e.resource_id === foreign.identity && e.outcome === 'denied'),
    JSON.stringify(events));
});

/** Sends the same request twice, once with each id in the body or query; the answers must match. */
async function same(what, send) {
  const a = await send(foreign.contract);
  const b = await send(randomUUID());
  assert.deepEqual(a, b, what);
  assert.equal(slow(a) ?? slow(b), null, what);
  return a;
}

test('an enclave with another provider\'s contract answers as with a random contract id', async () => {
  const c = callers[0];
  const post = (contract) => answer('POST', '/api/v1/enclaves', { ...c.headers, 'Content-Type': 'application/json' },
    JSON.stringify({ name: 'probe', contract_id: contract, configuration: ENCLAVE }));
  const a = await same('POST /api/v1/enclaves', post);
  assert.equal(a.status, 422);
  assert.deepEqual(a.body.error.details.map((d) => d.field), ['contract_id']);

  // Re-binding one's own enclave, and its compatibility with the contract.
  const own = await t.call('POST', '/api/v1/enclaves', {
    headers: c.headers, json: { name: 'mine', configuration: ENCLAVE },
  }, '/api/v1/enclaves');
  assert.equal(own.status, 201, own.text);
  const etag = own.res.headers.get('etag');
  await same('PATCH /api/v1/enclaves/{id} contract_id', (contract) => answer('PATCH', `/api/v1/enclaves/${own.json.id}`,
    { ...c.headers, 'Content-Type': 'application/json', 'If-Match': etag }, JSON.stringify({ contract_id: contract })));
  await same('GET /api/v1/enclaves/{id}/compatibility', (contract) =>
    answer('GET', `/api/v1/enclaves/${own.json.id}/compatibility?contract_id=${contract}`, c.headers));
});

test('a contract naming another provider\'s dataset is refused as one naming a random id', async () => {
  const c = callers[0];
  const cons = callers[1];
  // Checked when the draft is submitted: both drafts are created, both submissions refused alike.
  const submit = async (ds) => {
    const r = await t.call('POST', '/api/v1/contracts', {
      headers: c.headers,
      json: {
        title: 'probe', description: 'd', provider_id: c.who.id, consumer_id: cons.who.id,
        terms: validTerms({ data_access: { datasets: [ds], permissions: ['train'] } }),
      },
    });
    assert.equal(r.status, 201, r.text);
    return answer('POST', `/api/v1/contracts/${r.json.id}/submit`, c.headers);
  };
  const a = await submit(foreign.dataset);
  const b = await submit(randomUUID());
  assert.deepEqual(a, b);
  assert.equal(a.status, 422, JSON.stringify(a.body));
  assert.deepEqual(a.body.error.details.map((d) => d.field), ['terms.data_access.datasets[0]']);
});
