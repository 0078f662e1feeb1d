// The contract governs its enclaves (docs/enclaves.md, "When the contract
// changes"): suspending a contract freezes the workloads of the enclaves
// serving it in the same request and resuming it brings them back;
// terminating it kills them and wipes their scratch; a contract ended
// behind this dcmsd's back (another node, a direct store edit) or while it
// was down leaves no enclave running. Compatibility is a gate: binding an
// enclave to a contract it does not satisfy is 422 with the report, and a
// contract that is not Active is never compatible. Runs on the backend
// chosen by DCMS_TEST_BACKEND; every response is checked against
// api/openapi.yaml.

import assert from 'node:assert/strict';
import {execFileSync} from 'node:child_process';
import {randomBytes} from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {after, before, describe, test} from 'node:test';
import {contractsContext, validTerms} from './lib/contracts.mjs';
import {alive, isSuspended} from './lib/proc.mjs';
import {backend, dcmsBin, psqlAdmin, stopAll} from './lib/server.mjs';

const RECONCILE_MS = 300;
const workload = path.join(path.dirname(dcmsBin), 'workload', 'dcms-workload');
let ctx, p, imagesDir, n = 0;

const bearer = (t) => ({Authorization: `Bearer ${t}`});


async function waitFor(what, fn, timeoutMs) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function body(extra = {}, config = {}) {
  return {name: `enclave ${++n}`,
          configuration: {image: 'dcms-workload', cpu_cores: 1, memory_mb: 128, storage_gb: 1, ...config}, ...extra};
}

async function enclave(contract, c = ctx, parties = p) {
  const r = await c.call('POST', '/api/v1/enclaves', {headers: bearer(parties.provider.token), json: body({contract_id: contract.id})});
  assert.equal(r.status, 201, JSON.stringify(r.json));
  assert.equal(r.json.status, 'running', r.json.status_reason);
  assert.ok(alive(r.json.runtime.pid));
  return r.json;
}
// A contract a default enclave satisfies.
const STANDARD = {terms: validTerms({security: {encryption_level: 'standard', network_isolation: false,
                                                audit_logging: true, custom_policies: []}})};
const get = async (id) => (await ctx.call('GET', `/api/v1/enclaves/${id}`, {headers: bearer(ctx.admin)},
                                          '/api/v1/enclaves/{id}')).json;
const compat = (id, contractId) => ctx.call('GET', `/api/v1/enclaves/${id}/compatibility?contract_id=${contractId}`,
                                            {headers: bearer(p.provider.token)}, '/api/v1/enclaves/{id}/compatibility');

before(async () => {
  imagesDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcms-gov-images-'));
  fs.copyFileSync(workload, path.join(imagesDir, 'dcms-workload'));
  ctx = await contractsContext({DCMS_ENCLAVE_IMAGES_DIR: imagesDir, DCMS_ENCLAVE_RECONCILE_MS: String(RECONCILE_MS)});
  p = await ctx.parties();
});

after(async () => {
  await stopAll();
  if (imagesDir) fs.rmSync(imagesDir, {recursive: true, force: true});
});

describe('the contract drives its enclaves', () => {
  test('suspend freezes both workloads at once; resume brings them back attested', async () => {
    const c = await ctx.inState(p, 'active', STANDARD);
    const a = await enclave(c), b = await enclave(c);
    let r = await ctx.op(p.provider, c, 'suspend', {reason: 'audit pending'});
    assert.equal(r.status, 200, JSON.stringify(r.json));
    for (const e of [a, b]) {
      // In the same request: no waiting.
      const now = await get(e.id);
      assert.equal(now.status, 'suspended');
      assert.match(now.status_reason, /contract\.suspend/);
      assert.ok(isSuspended(e.runtime.pid), 'the workload is frozen');
    }
    const events = await ctx.auditEvents(`resource_type=enclave&resource_id=${a.id}&action=enclave.suspend`);
    assert.equal(events.length, 1);
    assert.deepEqual(events[0].details.cause, {contract_id: c.id, transition: 'contract.suspend',
      from_status: 'active', to_status: 'suspended', actor: p.provider.id});
    assert.equal(events[0].actor, p.provider.id);
    // Suspended, the contract is nobody's to serve: compatibility says so, and the owner cannot resume.
    r = await compat(a.id, c.id);
    assert.equal(r.json.compatible, false);
    const cs = r.json.requirements.find((q) => q.name === 'contract_status');
    assert.deepEqual([cs.required, cs.actual, cs.ok], ['active', 'suspended', false]);
    r = await ctx.call('POST', `/api/v1/enclaves/${a.id}/resume`, {headers: bearer(p.provider.token)},
                       '/api/v1/enclaves/{id}/resume');
    assert.equal(r.status, 422, JSON.stringify(r.json));
    assert.equal(r.json.error.compatibility.requirements.find((q) => q.name === 'contract_status').ok, false);
    // Still frozen after a few reconcile periods.
    await new Promise((res) => setTimeout(res, 2 * RECONCILE_MS));
    assert.ok(isSuspended(a.runtime.pid));

    r = await ctx.op(p.provider, c, 'resume');
    assert.equal(r.status, 200, JSON.stringify(r.json));
    for (const e of [a, b]) {
      const now = await get(e.id);
      assert.equal(now.status, 'running', now.status_reason);
      assert.equal(now.attestation.verified, true);
      assert.ok(now.attested_at > e.attested_at, 'attested again on resume');
      assert.ok(!isSuspended(e.runtime.pid));
    }
    const resumed = await ctx.auditEvents(`resource_type=enclave&resource_id=${b.id}&action=enclave.resume`);
    assert.equal(resumed.length, 1);
    // The request resumes them one after the other; the reconcile job may get to one first.
    const cause = resumed[0].details.cause;
    assert.equal(cause.contract_id, c.id);
    assert.ok(cause.transition === 'contract.resume' || cause.found_by === 'reconcile', JSON.stringify(cause));
  });

  test('an enclave its owner suspended stays suspended when the contract resumes', async () => {
    const c = await ctx.inState(p, 'active', STANDARD);
    const a = await enclave(c);
    let r = await ctx.call('POST', `/api/v1/enclaves/${a.id}/suspend`, {headers: bearer(p.provider.token)},
                           '/api/v1/enclaves/{id}/suspend');
    assert.equal(r.status, 200);
    assert.equal((await ctx.op(p.provider, c, 'suspend', {reason: 'x'})).status, 200);
    assert.equal((await ctx.op(p.provider, c, 'resume')).status, 200);
    assert.equal((await get(a.id)).status, 'suspended');
    assert.ok(isSuspended(a.runtime.pid));
  });

  test('terminate kills both workloads at once and the enclaves end terminated', async () => {
    const c = await ctx.inState(p, 'active', STANDARD);
    const a = await enclave(c), b = await enclave(c);
    const r = await ctx.op(p.consumer, c, 'terminate', {reason: 'done'});
    assert.equal(r.status, 200, JSON.stringify(r.json));
    for (const e of [a, b]) {
      const now = await get(e.id);
      assert.equal(now.status, 'terminated');
      assert.match(now.status_reason, /contract\.terminate/);
      assert.ok(!alive(e.runtime.pid), 'the workload is gone');
    }
    const events = await ctx.auditEvents(`resource_type=enclave&resource_id=${b.id}&action=enclave.terminate`);
    assert.equal(events.length, 1);
    assert.equal(events[0].details.cause.transition, 'contract.terminate');
    assert.equal(events[0].actor, p.consumer.id);
    const stopped = await ctx.auditEvents(`resource_type=enclave&resource_id=${b.id}&action=enclave.workload_stopped`);
    assert.equal(stopped.length, 1);
  });

  test('a contract ended behind dcmsd\'s back (another node, the store) is enforced by reconcile', async () => {
    const c = await ctx.inState(p, 'active', STANDARD);
    const a = await enclave(c), b = await enclave(c);
    // What another node sharing the store would leave: the contract terminated, the enclaves untouched.
    ctx.sql(`UPDATE contracts SET status = 'terminated', status_reason = 'elsewhere' WHERE id = '${c.id}'`);
    for (const e of [a, b]) {
      await waitFor('the enclave to be terminated', async () => (await get(e.id)).status === 'terminated',
                    RECONCILE_MS * 10);
      await waitFor('the workload to be gone', () => !alive(e.runtime.pid), 3000);
      const ev = await ctx.auditEvents(`resource_type=enclave&resource_id=${e.id}&action=enclave.terminate`);
      assert.deepEqual(ev[0].details.cause, {contract_id: c.id, contract_status: 'terminated', found_by: 'reconcile'});
    }
    // Suspended elsewhere: frozen here.
    const d = await ctx.inState(p, 'active', STANDARD);
    const e = await enclave(d);
    ctx.sql(`UPDATE contracts SET status = 'suspended' WHERE id = '${d.id}'`);
    await waitFor('the workload to be frozen', () => isSuspended(e.runtime.pid), RECONCILE_MS * 10);
    assert.equal((await get(e.id)).status, 'suspended');
  });

  test('expiry terminates the enclaves of the contract', async () => {
    const c = await ctx.inState(p, 'active', STANDARD);
    const a = await enclave(c);
    // Past expires_at: reads already show it expired; reconcile acts on that.
    ctx.sql(`UPDATE contracts SET expires_at = '2000-01-01T00:00:00.000000Z' WHERE id = '${c.id}'`);
    await waitFor('the enclave to be terminated', async () => (await get(a.id)).status === 'terminated',
                  RECONCILE_MS * 10);
    assert.ok(!alive(a.runtime.pid));
  });
});

describe('restart', () => {
  test('a contract terminated while dcmsd was down leaves no enclave running for it', async () => {
    // Two dcmsd processes, one after the other, on one data directory and one store.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcms-gov-restart-'));
    const env = {DCMS_DATA_DIR: dir, DCMS_ENCLAVE_IMAGES_DIR: imagesDir, DCMS_ENCLAVE_RECONCILE_MS: String(RECONCILE_MS)};
    let db = null;
    if (backend === 'postgres') {
      db = `dcms_t_${randomBytes(6).toString('hex')}`;
      psqlAdmin(`CREATE DATABASE ${db}`);
      const u = new URL(process.env.DCMS_TEST_PG_URL);
      u.pathname = `/${db}`;
      env.DCMS_DATABASE_URL = u.toString();
    }
    const sql = (statement) => (db
      ? execFileSync('psql', [env.DCMS_DATABASE_URL, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-c', statement], {timeout: 30000})
      : execFileSync('sqlite3', ['-cmd', '.timeout 10000', path.join(dir, 'dcms.db'), statement], {timeout: 30000}));
    try {
      const a = await contractsContext(env);
      const pa = await a.parties();
      const c = await a.inState(pa, 'active', STANDARD);
      const e = await enclave(c, a, pa);
      await a.server.stop();
      assert.ok(!alive(e.runtime.pid));
      sql(`UPDATE contracts SET status = 'terminated' WHERE id = '${c.id}'`);
      const b = await contractsContext(env);
      const r = await b.call('GET', `/api/v1/enclaves?contract_id=${c.id}`, {headers: bearer(b.admin)},
                             '/api/v1/enclaves');
      assert.equal(r.status, 200);
      assert.deepEqual(r.json.enclaves.map((x) => x.id), [e.id]);
      assert.ok(!['running', 'suspended', 'initializing'].includes(r.json.enclaves[0].status),
                r.json.enclaves[0].status);
      await b.server.stop();
    } finally {
      fs.rmSync(dir, {recursive: true, force: true});
      if (db) psqlAdmin(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
    }
  });
});

describe('compatibility is a gate', () => {
  test('creating or binding an enclave for a contract it does not satisfy is 422 with the report', async () => {
    const military = await ctx.inState(p, 'active', {terms: validTerms({security: {
      encryption_level: 'military', network_isolation: true, audit_logging: true, custom_policies: []}})});
    let r = await ctx.call('POST', '/api/v1/enclaves', {headers: bearer(p.provider.token),
      json: body({contract_id: military.id})});
    assert.equal(r.status, 422, JSON.stringify(r.json));
    const rep = r.json.error.compatibility;
    assert.equal(rep.enclave_id, null);
    assert.equal(rep.contract_id, military.id);
    assert.equal(rep.compatible, false);
    const failing = rep.requirements.filter((q) => !q.ok).map((q) => q.name);
    assert.ok(failing.includes('allowed_signers'), failing.join());
    assert.deepEqual(r.json.error.details.map((d) => d.problem.split(':')[0]), failing);
    assert.ok(!rep.requirements.some((q) => q.name === 'enclave_status' || q.name === 'attestation_freshness'));
    // Nothing was created.
    const l = await ctx.call('GET', `/api/v1/enclaves?contract_id=${military.id}`, {headers: bearer(ctx.admin)},
                             '/api/v1/enclaves');
    assert.equal(l.json.enclaves.length, 0);

    // Binding a suspended enclave: the same gate.
    r = await ctx.call('POST', '/api/v1/enclaves', {headers: bearer(p.provider.token), json: body()});
    assert.equal(r.status, 201);
    const e = r.json;
    await ctx.call('POST', `/api/v1/enclaves/${e.id}/suspend`, {headers: bearer(p.provider.token)},
                   '/api/v1/enclaves/{id}/suspend');
    r = await ctx.call('PATCH', `/api/v1/enclaves/${e.id}`, {headers: bearer(p.provider.token),
      json: {contract_id: military.id}}, '/api/v1/enclaves/{id}');
    assert.equal(r.status, 422, JSON.stringify(r.json));
    assert.equal(r.json.error.compatibility.enclave_id, e.id);
    // A contract that is not Active cannot be served at all.
    const draft = await ctx.inState(p, 'draft', STANDARD);
    r = await ctx.call('PATCH', `/api/v1/enclaves/${e.id}`, {headers: bearer(p.provider.token),
      json: {contract_id: draft.id}}, '/api/v1/enclaves/{id}');
    assert.equal(r.status, 422);
    assert.deepEqual(r.json.error.details, [{field: 'contract_id',
      problem: 'contract_status: the contract is draft: only an active contract may be served'}]);
    const ok = await ctx.inState(p, 'active', STANDARD);
    r = await ctx.call('PATCH', `/api/v1/enclaves/${e.id}`, {headers: bearer(p.provider.token),
      json: {contract_id: ok.id}}, '/api/v1/enclaves/{id}');
    assert.equal(r.status, 200, JSON.stringify(r.json));
  });

  test('compatibility of a suspended contract is false, naming its status', async () => {
    const c = await ctx.inState(p, 'active', STANDARD);
    const e = await enclave(c);
    assert.equal((await compat(e.id, c.id)).json.compatible, true);
    assert.equal((await ctx.op(p.provider, c, 'suspend', {reason: 'x'})).status, 200);
    const r = await compat(e.id, c.id);
    assert.equal(r.status, 200);
    assert.equal(r.json.compatible, false);
    const failing = r.json.requirements.filter((q) => !q.ok).map((q) => q.name);
    assert.ok(failing.includes('contract_status'));
    assert.equal(r.json.requirements.find((q) => q.name === 'contract_status').actual, 'suspended');
  });
});
