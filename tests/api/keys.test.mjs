// Key-encryption key administration: GET /api/v1/admin/data-keys,
// POST .../rotate, .../rewrap, .../retire, with the file keyring (the
// default) and the pkcs11 keyring against a SoftHSM2 token made for the
// test; `dcmsd keys` on the same store; authorization and auditing. Every
// JSON response is checked against api/openapi.yaml.
//
// Runs on the backend chosen by DCMS_TEST_BACKEND (sqlite by default; see
// lib/server.mjs for postgres).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { checkResponse } from './lib/openapi.mjs';
import { client } from './lib/http.mjs';
import { dcmsBin, startServer, stopAll } from './lib/server.mjs';
import { adminEnv, adminToken, bearer, login } from './lib/iam.mjs';

const SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so';
const PW = 'keys test passphrase 42';
const tmpDirs = [];

after(async () => {
  await stopAll();
  for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
});

/** A SoftHSM2 token "dcms-api" in a fresh directory: {env, dir}. */
function softhsmToken() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcms-keys-hsm-'));
  tmpDirs.push(dir);
  fs.mkdirSync(path.join(dir, 'tokens'), { mode: 0o700 });
  const conf = path.join(dir, 'softhsm2.conf');
  fs.writeFileSync(conf, `directories.tokendir = ${dir}/tokens\nobjectstore.backend = file\nlog.level = ERROR\n`);
  const r = spawnSync('softhsm2-util', ['--init-token', '--free', '--label', 'dcms-api', '--pin', '2468', '--so-pin', '1357'],
                      { env: { ...process.env, SOFTHSM2_CONF: conf }, encoding: 'utf8', timeout: 30000 });
  assert.equal(r.status, 0, r.stderr);
  const pin = path.join(dir, 'pin');
  fs.writeFileSync(pin, '2468\n', { mode: 0o600 });
  return {
    SOFTHSM2_CONF: conf,
    DCMS_KEYS_BACKEND: 'pkcs11',
    DCMS_PKCS11_MODULE: SOFTHSM_MODULE,
    DCMS_PKCS11_TOKEN_LABEL: 'dcms-api',
    DCMS_PKCS11_PIN_FILE: pin,
  };
}

async function context(env = {}) {
  const server = await startServer({ env: { ...adminEnv, ...env } });
  const api = client(server);
  const admin = await adminToken(server);
  async function call(method, p, opts = {}) {
    const r = await api.call(method, p, opts);
    checkResponse(method, p, r.res, r.json ?? r.text);
    return r;
  }
  return { server, admin, call };
}

/** The CLI against the server's store (same data directory and database). */
function cli(server, env, args) {
  const e = { ...process.env, ...env, DCMS_DATA_DIR: server.dataDir, DCMS_LOG_LEVEL: 'error' };
  for (const k of Object.keys(e)) if (k.startsWith('DCMS_') && !(k in env) && k !== 'DCMS_DATA_DIR' && k !== 'DCMS_LOG_LEVEL') delete e[k];
  if (server.database) {
    const u = new URL(process.env.DCMS_TEST_PG_URL);
    u.pathname = `/${server.database}`;
    e.DCMS_DATABASE_URL = u.toString();
  }
  return spawnSync(dcmsBin, ['keys', ...args], { env: e, encoding: 'utf8', timeout: 60000 });
}

async function lifecycle(env, backendName) {
  const { server, admin, call } = await context(env);
  const A = bearer(admin);

  let r = await call('GET', '/api/v1/admin/data-keys', { headers: A });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.backend, backendName);
  assert.equal(r.json.active_version, 1);
  assert.deepEqual(r.json.versions.map((v) => [v.version, v.state]), [[1, 'active']]);

  // Nobody but an admin: no token is 401, a provider is 403.
  r = await call('GET', '/api/v1/admin/data-keys');
  assert.equal(r.status, 401);
  const email = `keys-${Date.now()}@example.com`;
  r = await call('POST', '/api/v1/identities', { headers: A, json: { kind: 'user', name: 'p', email, password: PW, roles: ['provider'] } });
  assert.equal(r.status, 201, r.text);
  const provider = (await login(server, email, PW)).access_token;
  r = await call('POST', '/api/v1/admin/data-keys/rotate', { headers: bearer(provider) });
  assert.equal(r.status, 403);
  r = await call('GET', '/api/v1/admin/data-keys', { headers: bearer(provider) });
  assert.equal(r.status, 403);

  r = await call('POST', '/api/v1/admin/data-keys/rotate', { headers: A });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.active_version, 2);
  assert.deepEqual(r.json.versions.map((v) => [v.version, v.state]), [[2, 'active'], [1, 'previous']]);
  // IAM's sealing key is a data key too: it waits for the rewrap.
  assert.ok(r.json.data_keys >= 1, r.text);
  assert.equal(r.json.pending_rewrap, r.json.data_keys);
  const pending = r.json.pending_rewrap;

  // Bad input names the field.
  r = await call('POST', '/api/v1/admin/data-keys/rewrap', { headers: A, json: { batch: 0 } });
  assert.equal(r.status, 422);
  assert.equal(r.json.error.details[0].field, 'batch');
  r = await call('POST', '/api/v1/admin/data-keys/rewrap', { headers: A, json: { batch: 10, extra: 1 } });
  assert.equal(r.status, 422);
  assert.equal(r.json.error.details[0].field, 'extra');
  r = await call('POST', '/api/v1/admin/data-keys/retire', { headers: A, json: { version: 'one' } });
  assert.equal(r.status, 422);
  assert.equal(r.json.error.details[0].field, 'version');
  r = await call('POST', '/api/v1/admin/data-keys/retire', { headers: A, json: {} });
  assert.equal(r.status, 422);
  r = await call('POST', '/api/v1/admin/data-keys/retire', { headers: A, json: '{"version": 1' });
  assert.equal(r.status, 400);

  // Retiring the active version, or an unknown one, is refused.
  r = await call('POST', '/api/v1/admin/data-keys/retire', { headers: A, json: { version: 2 } });
  assert.equal(r.status, 409);
  r = await call('POST', '/api/v1/admin/data-keys/retire', { headers: A, json: { version: 99 } });
  assert.equal(r.status, 404);

  // Rewrap until nothing remains, then retire the old version.
  let rewrapped = 0;
  for (let i = 0; i < 100; i++) {
    r = await call('POST', '/api/v1/admin/data-keys/rewrap', { headers: A, json: { batch: 2 } });
    assert.equal(r.status, 200, r.text);
    rewrapped += r.json.rewrapped;
    if (r.json.remaining === 0) break;
  }
  assert.equal(rewrapped, pending);
  assert.equal(r.json.remaining, 0);
  r = await call('POST', '/api/v1/admin/data-keys/rewrap', { headers: A });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, { rewrapped: 0, remaining: 0 });
  r = await call('POST', '/api/v1/admin/data-keys/retire', { headers: A, json: { version: 1 } });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json.versions.map((v) => [v.version, v.state]), [[2, 'active'], [1, 'retired']]);
  assert.equal(typeof r.json.versions[1].retired_at, 'string');
  assert.equal(r.json.pending_rewrap, 0);

  // The command line works on the same store and keyring.
  const c = cli(server, env, ['rotate']);
  assert.equal(c.status, 0, c.stderr);
  assert.equal(JSON.parse(c.stdout).active_version, 3);
  const s = cli(server, env, ['status']);
  assert.equal(s.status, 0, s.stderr);
  assert.equal(JSON.parse(s.stdout).backend, backendName);
  const bad = cli(server, env, ['retire', '3']);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /active/);
  assert.equal(cli(server, env, ['frobnicate']).status, 2);
  r = await call('GET', '/api/v1/admin/data-keys', { headers: A });
  assert.equal(r.json.active_version, 3);

  // Audited: who rotated, who retired.
  r = await call('GET', '/api/v1/audit/events?action=keys.&limit=100', { headers: A });
  assert.equal(r.status, 200, r.text);
  const actions = r.json.events.map((e) => `${e.action}:${e.actor}`);
  assert.ok(actions.includes('keys.kek_create:system'), actions.join());
  assert.equal(actions.filter((a) => a.startsWith('keys.rotate:')).length, 2, actions.join());
  assert.ok(r.json.events.some((e) => e.action === 'keys.rewrap' && e.details.rewrapped >= 1), actions.join());
  assert.ok(r.json.events.some((e) => e.action === 'keys.retire' && e.actor !== 'system' && e.resource_id === '1'));
  return server;
}

describe('data keys admin, file keyring', () => {
  test('rotate, rewrap, retire; the keyring file is private', async () => {
    const server = await lifecycle({}, 'file');
    const st = fs.statSync(path.join(server.dataDir, 'keys', 'keyring'));
    assert.equal(st.mode & 0o777, 0o600);
    const text = fs.readFileSync(path.join(server.dataDir, 'keys', 'keyring'), 'utf8');
    // Version 1 is retired: its key material is gone from the file.
    assert.doesNotMatch(text, /^v1 /m);
    assert.match(text, /^v2 /m);
    assert.match(text, /^v3 /m);
  });

  test('a keyring that group or others can read stops dcmsd', async () => {
    const { server } = await context();
    const ring = path.join(server.dataDir, 'keys', 'keyring');
    fs.chmodSync(ring, 0o644);
    const c = cli(server, {}, ['status']);
    assert.equal(c.status, 1);
    assert.match(c.stderr, /chmod 600/);
    fs.chmodSync(ring, 0o600);
  });
});

describe('data keys admin, pkcs11 keyring (SoftHSM2)', { skip: !fs.existsSync(SOFTHSM_MODULE) && !process.env.CI && 'SoftHSM2 is not installed' }, () => {
  test('rotate, rewrap, retire inside the token', async () => {
    await lifecycle(softhsmToken(), 'pkcs11');
  });

  test('a wrong PIN stops dcmsd', async () => {
    const env = softhsmToken();
    fs.writeFileSync(env.DCMS_PKCS11_PIN_FILE, '0000\n');
    await assert.rejects(startServer({ env: { ...adminEnv, ...env } }));
  });
});
