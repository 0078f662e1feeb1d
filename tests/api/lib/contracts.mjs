// Helpers for the contract API tests: parties (users and organizations with
// their tokens), Ed25519 signing keys registered through the API, a valid
// terms object, contracts driven to any state, signatures, RFC 8785
// hashing in JS, and direct store access to tamper with stored terms.

import assert from 'node:assert/strict';
import {createHash, generateKeyPairSync, sign} from 'node:crypto';
import {execFileSync} from 'node:child_process';
import path from 'node:path';
import {checkResponse} from './openapi.mjs';
import {client} from './http.mjs';
import {startServer} from './server.mjs';
import {ORG_ROLES, addMember, adminEnv, adminToken, bearer, login} from './iam.mjs';

export const PW = 'correct horse battery staple';
const POP_PREFIX = 'dcms-signing-key-pop:';

/** A test context: one server, its admin, and helpers bound to it. */
export async function contractsContext(env = {}) {
  const server = await startServer({
    env: {...adminEnv, DCMS_AUDIT_REFUSALS_PER_MINUTE: '100000', DCMS_LOGIN_MAX_FAILURES_PER_IP: '100000', ...env},
  });
  const api = client(server);
  const admin = await adminToken(server);
  let n = 0;

  async function call(method, p, opts = {}, template) {
    const r = await api.call(method, p, opts);
    checkResponse(method, template ?? templateOf(p), r.res, r.json ?? r.text);
    return r;
  }

  /** An active identity made by the admin; users also log in. */
  async function identity({kind = 'user', roles = [], org} = {}) {
    const i = ++n;
    const json = {kind, name: `${kind} ${i}`, roles};
    let email;
    if (kind === 'user') {
      email = `ct-${i}-${Date.now()}@example.com`;
      json.email = email;
      json.password = PW;
    }
    // Membership is granted through the organization's member routes, with the organization roles.
    if (org) json.roles = roles.filter((x) => !ORG_ROLES.includes(x));
    const r = await call('POST', '/api/v1/identities', {headers: bearer(admin), json});
    assert.equal(r.status, 201, JSON.stringify(r.json));
    if (org) await addMember(server, admin, org, r.json.id, roles.filter((x) => ORG_ROLES.includes(x)));
    const out = {id: r.json.id, email, name: json.name};
    if (kind === 'user') out.token = (await login(server, email, PW)).access_token;
    return out;
  }

  /** Registers a fresh Ed25519 key for `user`; returns {key_id, privateKey}. */
  async function signingKey(user) {
    const {publicKey, privateKey} = generateKeyPairSync('ed25519');
    const raw = Buffer.from(publicKey.export({format: 'jwk'}).x, 'base64url');
    const ch = await call('POST', `/api/v1/identities/${user.id}/keys/challenge`, {headers: bearer(user.token)},
                          '/api/v1/identities/{id}/keys/challenge');
    assert.equal(ch.status, 201, JSON.stringify(ch.json));
    const msg = Buffer.concat([Buffer.from(POP_PREFIX), Buffer.from(ch.json.challenge, 'base64url'), raw]);
    const r = await call('POST', `/api/v1/identities/${user.id}/keys`, {
      headers: bearer(user.token),
      json: {public_key: raw.toString('base64url'), challenge_id: ch.json.challenge_id,
             signature: sign(null, msg, privateKey).toString('base64url')},
    }, '/api/v1/identities/{id}/keys');
    assert.equal(r.status, 201, JSON.stringify(r.json));
    return {key_id: r.json.id, privateKey};
  }

  /** A provider user and a consumer user, each with a registered signing key. */
  async function parties() {
    const provider = await identity({roles: ['provider']});
    const consumer = await identity({roles: ['consumer']});
    provider.key = await signingKey(provider);
    consumer.key = await signingKey(consumer);
    return {provider, consumer};
  }

  async function create(p, {by = p.provider, title, terms, description} = {}) {
    const r = await call('POST', '/api/v1/contracts', {
      headers: bearer(by.token),
      json: {title: title ?? `Contract ${++n}`, description: description ?? 'training on the records',
             provider_id: p.provider.id, consumer_id: p.consumer.id, terms: terms ?? validTerms()},
    });
    assert.equal(r.status, 201, JSON.stringify(r.json));
    return r.json;
  }

  async function op(who, c, name, json) {
    return call('POST', `/api/v1/contracts/${c.id}/${name}`,
                {headers: bearer(who.token ?? who), ...(json ? {json} : {})});
  }

  async function signDigital(who, c, {hash = c.terms_hash, message, encoding = 'base64'} = {}) {
    const sig = sign(null, Buffer.from(message ?? hash, 'hex'), who.key.privateKey).toString(encoding);
    return op(who, c, 'sign', {type: 'digital', terms_hash: hash, key_id: who.key.key_id, signature: sig});
  }

  /** Drives a new contract of `p` to `state` (draft, pending_signature, active, suspended, terminated). */
  async function inState(p, state, opts = {}) {
    let c = await create(p, opts);
    if (state === 'draft') return c;
    c = (await op(p.provider, c, 'submit')).json;
    if (state === 'pending_signature') return c;
    let r = await signDigital(p.provider, c);
    assert.equal(r.status, 200, JSON.stringify(r.json));
    r = await signDigital(p.consumer, c);
    assert.equal(r.status, 200, JSON.stringify(r.json));
    r = await op(p.consumer, c, 'activate');
    assert.equal(r.status, 200, JSON.stringify(r.json));
    c = r.json;
    if (state === 'active') return c;
    c = (await op(p.provider, c, 'suspend', {reason: 'audit pending'})).json;
    if (state === 'suspended') return c;
    r = await op(p.provider, c, 'terminate', {reason: 'done'});
    assert.equal(r.status, 200, JSON.stringify(r.json));
    return r.json;
  }

  async function auditEvents(query) {
    const r = await call('GET', `/api/v1/audit/events?${query}`, {headers: bearer(admin)});
    assert.equal(r.status, 200);
    return r.json.events;
  }

  /** Runs one SQL statement on the server's own database (to tamper with it). */
  function sql(statement) {
    if (server.backend === 'postgres') {
      const u = new URL(process.env.DCMS_TEST_PG_URL);
      u.pathname = `/${server.database}`;
      execFileSync('psql', [u.toString(), '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-c', statement],
                   {stdio: ['ignore', 'pipe', 'pipe'], timeout: 30000});
    } else {
      execFileSync('sqlite3', ['-cmd', '.timeout 10000', path.join(server.dataDir, 'dcms.db'), statement],
                   {stdio: ['ignore', 'pipe', 'pipe'], timeout: 30000});
    }
  }

  return {server, api, admin, call, identity, signingKey, parties, create, op, signDigital, inState,
          auditEvents, sql};
}

/** The route template of a contract path (for checkResponse). */
export function templateOf(p) {
  const q = p.indexOf('?');
  const bare = q >= 0 ? p.slice(0, q) : p;
  return bare.replace(/^\/api\/v1\/contracts\/[^/]+/, '/api/v1/contracts/{id}')
      .replace(/^\/api\/v1\/identities\/[^/]+/, (m) => (m === '/api/v1/identities/' ? m : '/api/v1/identities/{id}'));
}

export function validTerms(over = {}) {
  const now = Date.now();
  return {
    data_access: {datasets: ['s3://provider/records-2026'], permissions: ['train', 'evaluate']},
    usage: {purposes: ['fraud detection research'], allowed_model_types: ['gradient_boosting'],
            max_training_runs: 10, raw_data_export: false},
    retention: {days: 30, deletion: 'crypto_shred'},
    security: {encryption_level: 'high', network_isolation: true, audit_logging: true,
               custom_policies: ['no-gpu-sharing']},
    compliance: {frameworks: ['GDPR'], data_residency: ['DE', 'FR']},
    pricing: {model: 'fixed', amount: 150000, currency: 'EUR'},
    effective_from: new Date(now - 3600e3).toISOString(),
    expires_at: new Date(now + 365 * 86400e3).toISOString(),
    ...over,
  };
}

/** RFC 8785 for the values dcms signs (strings, integers, booleans, arrays, objects). */
export function jcs(v) {
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(jcs).join(',')}]`;
  return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${jcs(v[k])}`).join(',')}}`;
}

export const sha256hex = (s) => createHash('sha256').update(s).digest('hex');

export {bearer};
