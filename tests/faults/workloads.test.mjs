// Faults: dcmsd killed with -9 while it runs enclave workloads, one running
// and one suspended. No workload process may outlive it (the parent-death
// signal; a suspended workload is frozen or stopped and would never notice
// its channel closing), its cgroups must be empty, and the next dcmsd on the
// same store reports both enclaves failed ("workload lost"), audited, with
// their scratch directories and the old cgroups swept. Also: terminating a
// suspended enclave kills its workload. Each case runs with the cgroup
// freezer (DCMS_ENCLAVE_CGROUP_ROOT=auto, when the host has a writable
// cgroup2 hierarchy) and with signals only (none). Bounded: a few seconds a
// case. Runs on the backend DCMS_TEST_BACKEND names.
//   DCMS_BIN=build/dcmsd node --test --test-concurrency=1 tests/faults/workloads.test.mjs

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { adminEnv, adminToken } from '../api/lib/iam.mjs';
import { backend, dcmsBin, startServer } from '../api/lib/server.mjs';
import { alive, cgroupDir, isSuspended } from '../api/lib/proc.mjs';
import { call } from './lib.mjs';

const GONE_WITHIN_MS = 3000;
const workload = path.join(path.dirname(dcmsBin), 'workload', 'dcms-workload');
let imagesDir;

/** cgroup.events says populated 0, or the cgroup is gone. */
function cgroupEmpty(dir) {
  try {
    return /^populated 0$/m.test(fs.readFileSync(path.join(dir, 'cgroup.events'), 'utf8'));
  } catch (e) {
    return e.code === 'ENOENT';
  }
}

async function waitFor(what, fn, timeoutMs) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > end) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

let n = 0;
async function createEnclave(s, token) {
  const r = await call(s, 'POST', '/api/v1/enclaves', {
    template: '/api/v1/enclaves',
    token,
    json: {
      name: `fault workload ${process.pid}-${++n}`,
      configuration: { image: 'dcms-workload', cpu_cores: 1, memory_mb: 64, storage_gb: 1 },
    },
  });
  assert.equal(r.status, 201, r.text);
  assert.equal(r.json.status, 'running', r.json.status_reason);
  assert.ok(alive(r.json.runtime.pid));
  return r.json;
}

async function suspend(s, token, id) {
  const r = await call(s, 'POST', `/api/v1/enclaves/${id}/suspend`,
    { template: '/api/v1/enclaves/{id}/suspend', token, json: { reason: 'fault test' } });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.status, 'suspended');
}

before(() => {
  imagesDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcms-fault-images-'));
  fs.copyFileSync(workload, path.join(imagesDir, 'dcms-workload'));
});

after(() => {
  if (imagesDir) fs.rmSync(imagesDir, { recursive: true, force: true });
});

const hasCgroup2 = fs.readFileSync('/proc/self/mounts', 'utf8').includes(' cgroup2 ');

for (const mode of ['auto', 'none']) {
  const modeEnv = (extra = {}) => ({
    ...adminEnv,
    DCMS_ENCLAVE_IMAGES_DIR: imagesDir,
    DCMS_ENCLAVE_CGROUP_ROOT: mode,
    DCMS_ENCLAVE_RECONCILE_MS: '60000', // only the startup reconcile acts here
    ...extra,
  });

  test(`kill -9 of dcmsd leaves no workload running, and the next dcmsd reports and sweeps them (cgroup ${mode}, ${backend})`,
    { skip: mode === 'auto' && !hasCgroup2 ? 'no cgroup2 hierarchy on this host' : false }, async () => {
      const s = await startServer({ env: modeEnv() });
      let s2;
      try {
        const token = await adminToken(s);
        const running = await createEnclave(s, token);
        const suspended = await createEnclave(s, token);
        await suspend(s, token, suspended.id);
        const pids = [running.runtime.pid, suspended.runtime.pid];
        const cgs = pids.map(cgroupDir);
        // As root a cgroup2 hierarchy is writable; otherwise only a delegated one would be.
        if (mode === 'auto' && process.getuid?.() === 0) assert.ok(cgs.every(Boolean), 'the workloads run in cgroups of their own');
        else assert.deepEqual(cgs, ['', '']);
        await waitFor('the workload to be suspended', () => isSuspended(pids[1], cgs[1]), 2000);
        const scratch = [running.id, suspended.id].map((id) => path.join(s.dataDir, 'enclaves', id));
        assert.ok(scratch.every((d) => fs.existsSync(d)));

        s.proc.kill('SIGKILL');
        await s.exited;
        const t0 = Date.now();
        await waitFor('every workload process to be gone', () => pids.every((p) => !alive(p)), GONE_WITHIN_MS);
        for (const cg of cgs) if (cg) await waitFor(`${cg} to be empty`, () => cgroupEmpty(cg), GONE_WITHIN_MS);
        const goneMs = Date.now() - t0;

        s2 = await startServer({ env: modeEnv(sameStore(s)) });
        const token2 = await adminToken(s2);
        for (const e of [running, suspended]) {
          const r = await call(s2, 'GET', `/api/v1/enclaves/${e.id}`, { template: '/api/v1/enclaves/{id}', token: token2 });
          assert.equal(r.status, 200, r.text);
          assert.equal(r.json.status, 'failed');
          assert.equal(r.json.status_reason, 'workload lost: dcmsd restarted');
          const ev = await call(s2, 'GET', `/api/v1/audit/events?resource_type=enclave&resource_id=${e.id}`,
            { template: '/api/v1/audit/events', token: token2 });
          assert.equal(ev.status, 200, ev.text);
          const fail = ev.json.events.find((x) => x.action === 'enclave.fail');
          assert.ok(fail, `no enclave.fail event for ${e.id}: ${ev.text}`);
          assert.equal(fail.outcome, 'success');
        }
        assert.ok(scratch.every((d) => !fs.existsSync(d)), 'the scratch directories were swept');
        for (const cg of cgs) if (cg) assert.ok(!fs.existsSync(path.dirname(cg)), `${path.dirname(cg)} was swept`);
        // Terminating what is left is final and truthful: nothing runs.
        const t = await call(s2, 'POST', `/api/v1/enclaves/${suspended.id}/terminate`,
          { template: '/api/v1/enclaves/{id}/terminate', token: token2, json: { reason: 'fault test' } });
        assert.equal(t.status, 200, t.text);
        assert.equal(t.json.status, 'terminated');
        console.log(`# cgroup ${mode}: workloads gone ${goneMs} ms after kill -9 of dcmsd`);
      } finally {
        if (s2) await s2.stop();
        await s.stop();
      }
    });

  test(`terminate of a suspended enclave kills its workload (cgroup ${mode}, ${backend})`,
    { skip: mode === 'auto' && !hasCgroup2 ? 'no cgroup2 hierarchy on this host' : false }, async () => {
      const s = await startServer({ env: modeEnv() });
      try {
        const token = await adminToken(s);
        const e = await createEnclave(s, token);
        await suspend(s, token, e.id);
        const cg = cgroupDir(e.runtime.pid);
        await waitFor('the workload to be suspended', () => isSuspended(e.runtime.pid, cg), 2000);
        const r = await call(s, 'POST', `/api/v1/enclaves/${e.id}/terminate`,
          { template: '/api/v1/enclaves/{id}/terminate', token, json: { reason: 'fault test' } });
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.status, 'terminated');
        // Success is reported once the workload is gone, not before.
        assert.ok(!alive(e.runtime.pid), 'the suspended workload outlived its terminate');
        if (cg) assert.ok(!fs.existsSync(cg), `${cg} is left`);
        assert.ok(!fs.existsSync(path.join(s.dataDir, 'enclaves', e.id)));
      } finally {
        await s.stop();
      }
    });
}

/** The environment that reopens `s`'s store (its data directory, and its PostgreSQL database). */
function sameStore(s) {
  if (s.backend !== 'postgres') return { DCMS_DATA_DIR: s.dataDir };
  const u = new URL(process.env.DCMS_TEST_PG_URL);
  u.pathname = `/${s.database}`;
  return { DCMS_DATA_DIR: s.dataDir, DCMS_DATABASE_URL: u.toString() };
}
