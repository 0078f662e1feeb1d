// Enclaves through the API with the real local backend: creation with a
// verified attestation, attest again with a fresh nonce, suspend / resume,
// policy changes only while suspended, terminate (the pid is gone), a
// workload killed from outside moving to failed within the reconcile
// period, a workload image tampered with after registration failing
// attestation, misbehaving workloads contained and reported, metrics,
// validation with field paths, and who may see what. Every response is
// checked against api/openapi.yaml. Runs on the backend chosen by
// DCMS_TEST_BACKEND.

import assert from 'node:assert/strict';
import {createHash, generateKeyPairSync, randomBytes, sign} from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {after, before, describe, test} from 'node:test';
import {checkResponse} from './lib/openapi.mjs';
import {client} from './lib/http.mjs';
import {backend, dcmsBin, psqlAdmin, startServer} from './lib/server.mjs';
import {adminEnv, adminToken, bearer, login} from './lib/iam.mjs';
import {validTerms} from './lib/contracts.mjs';

const PW = 'correct horse battery staple';
const RECONCILE_MS = 300;
const buildDir = path.dirname(dcmsBin);
const workload = path.join(buildDir, 'workload', 'dcms-workload');
const testWorkloads = path.join(buildDir, 'tests', 'workloads');

let server, api, admin, provider, provider2, consumer, consumer2, auditor, providerId, consumerId, imagesDir;

async function call(method, p, opts = {}, template) {
  const r = await api.call(method, p, opts);
  checkResponse(method, template ?? p, r.res, r.json ?? r.text);
  return r;
}

let n = 0;
const email = (p) => `${p}-${++n}-${Date.now()}@example.com`;

async function user(roles) {
  const e = email(roles[0]);
  const r = await call('POST', '/api/v1/identities', {
    headers: bearer(admin),
    json: {kind: 'user', name: `${roles[0]} ${n}`, email: e, password: PW, roles},
  });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  return {id: r.json.id, token: (await login(server, e, PW)).access_token};
}

const sha384 = (file) => createHash('sha384').update(fs.readFileSync(file)).digest('hex');

function body(image = 'dcms-workload', extra = {}) {
  return {
    name: `enclave ${++n}`,
    configuration: {image, cpu_cores: 1, memory_mb: 256, storage_gb: 1, ...extra},
  };
}

async function create(token, b = body()) {
  const r = await call('POST', '/api/v1/enclaves', {headers: bearer(token), json: b});
  assert.equal(r.status, 201, JSON.stringify(r.json));
  assert.equal(r.res.headers.get('location'), `/api/v1/enclaves/${r.json.id}`);
  return r.json;
}

const get = (token, id) => call('GET', `/api/v1/enclaves/${id}`, {headers: bearer(token)},
                                '/api/v1/enclaves/{id}');
const act = (token, id, what, json) =>
  call('POST', `/api/v1/enclaves/${id}/${what}`, {headers: bearer(token), json},
       `/api/v1/enclaves/{id}/${what}`);

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    assert.equal(e.code, 'ESRCH');
    return false;
  }
}

async function waitFor(what, fn, timeoutMs) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function auditEvents(query) {
  const r = await call('GET', `/api/v1/audit/events?${query}`, {headers: bearer(admin)});
  assert.equal(r.status, 200);
  return r.json.events;
}

function assertRunning(e) {
  assert.equal(e.status, 'running', e.status_reason);
  assert.equal(e.status_reason, null);
  assert.equal(e.attestation.verified, true);
  assert.equal(e.attestation.verifier, 'local');
  assert.equal(e.attestation.report.valid, true);
  assert.match(e.attestation.nonce, /^[0-9a-f]{64}$/);
  assert.equal(e.attestation.report.document.nonce, e.attestation.nonce);
  assert.equal(e.attestation.report.document.pcrs['0'], e.measurement.expected_pcr0);
  assert.equal(e.attested_at, e.attestation.verified_at);
  assert.ok(e.runtime.pid > 1);
  assert.ok(alive(e.runtime.pid), 'the workload runs');
}

before(async () => {
  imagesDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcms-images-'));
  fs.copyFileSync(workload, path.join(imagesDir, 'dcms-workload'));
  for (const w of ['wl_socket', 'wl_escape', 'wl_memhog', 'wl_forkbomb']) {
    fs.copyFileSync(path.join(testWorkloads, w), path.join(imagesDir, w));
  }
  server = await startServer({
    env: {
      ...adminEnv,
      DCMS_AUDIT_REFUSALS_PER_MINUTE: '100000',
      DCMS_ENCLAVE_IMAGES_DIR: imagesDir,
      DCMS_ENCLAVE_RECONCILE_MS: String(RECONCILE_MS),
      DCMS_ENCLAVE_METRICS_INTERVAL_MS: '200',
      DCMS_ENCLAVE_MAX_MEMORY_MB: '512',
    },
  });
  api = client(server);
  admin = await adminToken(server);
  const p = await user(['provider']);
  provider = p.token;
  providerId = p.id;
  provider2 = (await user(['provider'])).token;
  const cu = await user(['consumer']);
  consumer = cu.token;
  consumerId = cu.id;
  consumer2 = (await user(['consumer'])).token;
  auditor = (await user(['auditor'])).token;
});

after(() => {
  if (imagesDir) fs.rmSync(imagesDir, {recursive: true, force: true});
});

describe('lifecycle with the local backend', () => {
  let enc;

  test('create: running with a verified attestation of the measured image', async () => {
    enc = await create(provider);
    assertRunning(enc);
    assert.equal(enc.provider_id, providerId);
    assert.equal(enc.backend, 'local');
    assert.equal(enc.measurement.image_sha384, sha384(workload));
    assert.equal(enc.measurement.expected_pcr0, sha384(workload));
    assert.deepEqual(enc.configuration.network_policy,
                     {ingress: [], egress: [], encryption_required: true, min_tls_version: '1.3'});
    assert.deepEqual(enc.configuration.security_policy,
                     {secure_boot: true, measured_boot: true, allowed_signers: [], debug_mode: false});
    const ev = await auditEvents(`resource_type=enclave&resource_id=${enc.id}`);
    const actions = ev.map((e) => e.action);
    for (const a of ['enclave.create', 'enclave.attest', 'enclave.start']) assert.ok(actions.includes(a), a);
  });

  test('read and list it; ETag carries the version', async () => {
    const r = await get(provider, enc.id);
    assert.equal(r.status, 200);
    assert.equal(r.res.headers.get('etag'), `"${r.json.version}"`);
    const l = await call('GET', '/api/v1/enclaves?status=running&limit=500', {headers: bearer(provider)},
                         '/api/v1/enclaves');
    assert.equal(l.status, 200);
    assert.ok(l.json.enclaves.some((e) => e.id === enc.id));
    assert.ok(l.json.enclaves.every((e) => e.provider_id === providerId));
  });

  test('attest again: a fresh nonce, verified, audited', async () => {
    const r = await act(provider, enc.id, 'attest');
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assertRunning(r.json);
    assert.notEqual(r.json.attestation.nonce, enc.attestation.nonce);
    assert.ok(r.json.attested_at > enc.attested_at);
    const ev = await auditEvents(`action=enclave.attest&resource_id=${enc.id}`);
    assert.ok(ev.length >= 2);
    assert.ok(ev.every((e) => e.outcome === 'success'));
    enc = r.json;
  });

  test('policy changes are refused while running: 409 naming the state and what it allows',
       async () => {
         const r = await call('PATCH', `/api/v1/enclaves/${enc.id}`,
                              {headers: bearer(provider), json: {name: 'renamed'}},
                              '/api/v1/enclaves/{id}');
         assert.equal(r.status, 409);
         assert.match(r.json.error.message, /running/);
         assert.deepEqual(r.json.error.details,
                          [{field: 'status', problem: 'is running; allowed: suspend, attest, terminate'}]);
       });

  test('suspend; attest refused while suspended; policies change; resume attests again',
       async () => {
         let r = await act(provider, enc.id, 'suspend', {reason: 'maintenance'});
         assert.equal(r.status, 200);
         assert.equal(r.json.status, 'suspended');
         r = await act(provider, enc.id, 'attest');
         assert.equal(r.status, 409);
         assert.equal(r.json.error.details[0].problem, 'is suspended; allowed: resume, update, terminate');
         r = await call('PATCH', `/api/v1/enclaves/${enc.id}`, {
           headers: {...bearer(provider), 'If-Match': '"1"'},
           json: {name: 'x'},
         }, '/api/v1/enclaves/{id}');
         assert.equal(r.status, 412);
         r = await call('PATCH', `/api/v1/enclaves/${enc.id}`, {
           headers: bearer(provider),
           json: {security_policy: {debug_mode: true, secure_boot: false, measured_boot: false}},
         }, '/api/v1/enclaves/{id}');
         assert.equal(r.status, 422);
         assert.equal(r.json.error.details[0].field, 'security_policy.debug_mode');
         r = await call('PATCH', `/api/v1/enclaves/${enc.id}`, {
           headers: bearer(provider),
           json: {
             name: 'renamed',
             network_policy: {egress: [{protocol: 'tcp', port: 443, cidr: '10.0.0.0/8'}],
                              min_tls_version: '1.2'},
           },
         }, '/api/v1/enclaves/{id}');
         assert.equal(r.status, 200, JSON.stringify(r.json));
         assert.equal(r.json.name, 'renamed');
         assert.equal(r.json.configuration.network_policy.min_tls_version, '1.2');
         assert.equal(r.json.configuration.network_policy.egress[0].cidr, '10.0.0.0/8');
         r = await act(provider, enc.id, 'resume');
         assert.equal(r.status, 200);
         assertRunning(r.json);
         assert.ok(r.json.attested_at > enc.attested_at);
         enc = r.json;
       });

  test('metrics: sampled, with a bounded history, and exported on /metrics', async () => {
    const m = await waitFor('two samples', async () => {
      const r = await call('GET', `/api/v1/enclaves/${enc.id}/metrics`, {headers: bearer(provider)},
                           '/api/v1/enclaves/{id}/metrics');
      assert.equal(r.status, 200);
      return r.json.history.length >= 2 && r.json;
    }, 5000);
    assert.equal(m.status, 'running');
    assert.equal(m.history_max, 60);
    assert.ok(m.latest.rss_bytes > 0);
    assert.ok(m.latest.peak_rss_bytes >= m.latest.rss_bytes);
    assert.ok(m.latest.channel_bytes_in > 0, 'attestations went over the channel');
    assert.ok(m.history[0].at < m.history[m.history.length - 1].at);
    // Per-enclave series only for a caller granted system:read (the admin here).
    const rss = new RegExp(`dcms_enclave_memory_rss_bytes\\{enclave="${enc.id}",status="running"\\} [1-9]`);
    const text = await waitFor('the gauges of the running enclave', async () => {
      const t = await (await fetch(`${server.url}/metrics`, {headers: bearer(admin)})).text();
      return rss.test(t) && t;
    }, 3000);
    assert.match(text, new RegExp(`dcms_enclave_channel_bytes_total\\{enclave="${enc.id}",direction="in"\\} [1-9]`));
    assert.match(text, /dcms_enclave_reconcile_runs_total [1-9]/);
    // The metrics token: an API key scoped to system:read, of an operator service.
    const svc = await call('POST', '/api/v1/identities', {
      headers: bearer(admin), json: {kind: 'service', name: 'prometheus', roles: ['operator']},
    });
    assert.equal(svc.status, 201, svc.text);
    const key = await call('POST', '/api/v1/api-keys', {
      headers: bearer(admin),
      json: {name: 'metrics', identity_id: svc.json.id, permissions: ['system:read'],
             expires_at: new Date(Date.now() + 86400e3).toISOString().replace(/\.\d+Z$/, 'Z')},
    });
    assert.equal(key.status, 201, key.text);
    const scraped = await (await fetch(`${server.url}/metrics`, {headers: bearer(key.json.key)})).text();
    assert.match(scraped, new RegExp(`dcms_enclave_memory_rss_bytes\\{enclave="${enc.id}"`));
    // Anonymous and a provider without system:read: sums by status, no enclave named.
    for (const headers of [{}, bearer(provider)]) {
      const r = await fetch(`${server.url}/metrics`, {headers});
      assert.equal(r.status, 200);
      const t = await r.text();
      assert.doesNotMatch(t, /enclave="/, 'a per-enclave label reached a caller without system:read');
      assert.ok(!t.includes(enc.id), 'an enclave id reached a caller without system:read');
      assert.match(t, /^dcms_enclaves\{status="running"\} [1-9]\d*$/m);
      assert.match(t, /^dcms_enclave_memory_rss_bytes\{status="running"\} [1-9]/m);
      assert.match(t, /^dcms_enclave_channel_bytes_total\{direction="in"\} [1-9]/m);
      assert.match(t, /^# TYPE dcms_enclave_cpu_seconds_total counter$/m);
    }
  });

  test('terminate: no process left behind, final', async () => {
    const pid = enc.runtime.pid;
    const r = await act(provider, enc.id, 'terminate', {reason: 'done'});
    assert.equal(r.status, 200);
    assert.equal(r.json.status, 'terminated');
    assert.match(r.json.status_reason, /^terminated by .*: done$/);
    assert.equal(r.json.runtime.pid, pid);
    await waitFor('the pid to disappear', () => !alive(pid), 2000);
    const again = await act(provider, enc.id, 'terminate');
    assert.equal(again.status, 409);
    assert.deepEqual(again.json.error.details, [{field: 'status', problem: 'is terminated; allowed: none'}]);
    const res = await act(provider, enc.id, 'resume');
    assert.equal(res.status, 409);
  });
});

describe('failures are detected and reported', () => {
  test('a workload killed from outside is failed within the reconcile period', async () => {
    const enc = await create(provider);
    assertRunning(enc);
    process.kill(enc.runtime.pid, 'SIGKILL');
    const t0 = Date.now();
    const failed = await waitFor('failed', async () => {
      const r = await get(provider, enc.id);
      return r.json.status === 'failed' && r.json;
    }, RECONCILE_MS * 3 + 1000);
    assert.ok(Date.now() - t0 < RECONCILE_MS * 3 + 1000);
    assert.equal(failed.status_reason, 'workload exited: killed by signal 9 (SIGKILL)');
    const ev = await auditEvents(`action=enclave.fail&resource_id=${enc.id}`);
    assert.equal(ev.length, 1);
    assert.equal(ev[0].actor, 'system');
    // Failed leads only to terminated.
    assert.equal((await act(provider, enc.id, 'resume')).status, 409);
    assert.equal((await act(provider, enc.id, 'terminate')).json.status, 'terminated');
  });

  test('an image changed after its registration fails attestation (PCR0) and is failed',
       async () => {
         fs.copyFileSync(workload, path.join(imagesDir, 'tampered'));
         // dcmsd keeps an image's measurement while its stat (inode, size, mtime, ctime) is
         // unchanged, but never for a file changed within 2 s of measuring it: past that, the
         // in-place change below must still be seen.
         await new Promise((r) => setTimeout(r, 2100));
         const good = await create(provider, body('tampered'));
         assertRunning(good);
         assert.equal((await act(provider, good.id, 'terminate')).status, 200);
         // Flip one byte of the registered image (in a string constant: it still runs).
         const file = path.join(imagesDir, 'tampered');
         const bytes = fs.readFileSync(file);
         const at = bytes.indexOf(Buffer.from('dcms-workload: ready'));
         assert.ok(at > 0);
         bytes[at] ^= 0x20;
         fs.writeFileSync(file, bytes);
         const bad = await create(provider, body('tampered'));
         assert.equal(bad.status, 'failed');
         assert.match(bad.status_reason, /^attestation failed: pcr: /);
         assert.equal(bad.measurement.expected_pcr0, sha384(workload));
         assert.equal(bad.measurement.image_sha384, sha384(file));
         assert.equal(bad.attestation.verified, false);
         assert.equal(bad.attestation.report.failure, 'pcr');
         await waitFor('the workload to be gone', () => !alive(bad.runtime.pid), 2000);
         const ev = await auditEvents(`action=enclave.attest&resource_id=${bad.id}`);
         assert.equal(ev[0].outcome, 'denied');
       });

  const cases = [
    ['wl_socket', /^workload exited: seccomp violation: .*\(SIGSYS\)$/, 'a socket is refused by the seccomp filter'],
    ['wl_escape', /^workload exited: exited with status 0$/, 'reads outside the scratch directory are refused (status 0 = contained)'],
    ['wl_memhog', /^workload exited: exceeded its memory limit/, 'memory beyond the limit is refused'],
    ['wl_forkbomb', /^attestation failed: .*\(workload: process limit reached \([0-9]+ of [0-9]+\)\)$/, 'a fork bomb is held at the process limit'],
  ];
  for (const [image, reason, what] of cases) {
    test(`${image}: ${what}, reported as failed, nothing left behind`, async () => {
      const e = await create(provider, body(image));
      assert.equal(e.status, 'failed');
      assert.match(e.status_reason, reason);
      assert.equal(e.attestation.verified, false);
      if (e.runtime && e.runtime.pid) {
        await waitFor('the workload to be gone', () => !alive(e.runtime.pid), 3000);
      }
    });
  }
});

describe('validation', () => {
  test('every problem at once, with its path', async () => {
    const r = await call('POST', '/api/v1/enclaves', {
      headers: bearer(provider),
      json: {
        name: '',
        extra: 1,
        contract_id: 'nope',
        configuration: {
          image: '../etc/passwd',
          cpu_cores: 0,
          memory_mb: 100000,
          storage_gb: 'x',
          network_policy: {
            ingress: [{protocol: 'icmp', port: 0, cidr: '10.0.0.0/33'}, 'x'],
            min_tls_version: '1.1',
            extra: true,
          },
          security_policy: {allowed_signers: ['ab', 'A'.repeat(96)], debug_mode: true},
        },
      },
    });
    assert.equal(r.status, 422);
    const fields = r.json.error.details.map((d) => d.field).sort();
    assert.deepEqual(fields, [
      'configuration.cpu_cores',
      'configuration.image',
      'configuration.memory_mb',
      'configuration.network_policy.extra',
      'configuration.network_policy.ingress[0].cidr',
      'configuration.network_policy.ingress[0].port',
      'configuration.network_policy.ingress[0].protocol',
      'configuration.network_policy.ingress[1]',
      'configuration.network_policy.min_tls_version',
      'configuration.security_policy.allowed_signers[0]',
      'configuration.security_policy.allowed_signers[1]',
      'configuration.security_policy.debug_mode',
      'configuration.storage_gb',
      'contract_id',
      'extra',
      'name',
    ].sort());
    const mem = r.json.error.details.find((d) => d.field === 'configuration.memory_mb');
    assert.match(mem.problem, /at most 512 \(DCMS_ENCLAVE_MAX_MEMORY_MB\)/);
  });

  test('an image that is not in the images directory', async () => {
    const r = await call('POST', '/api/v1/enclaves', {headers: bearer(provider), json: body('missing')});
    assert.equal(r.status, 422);
    assert.deepEqual(r.json.error.details.map((d) => d.field), ['configuration.image']);
  });

  test('only executable ELF programs in the images directory are images', async () => {
    // A build leftover, a script with an execute bit, and the workload without one.
    fs.writeFileSync(path.join(imagesDir, 'cmake_install.cmake'), 'set(CMAKE_INSTALL_PREFIX "/usr")\n');
    fs.writeFileSync(path.join(imagesDir, 'run.sh'), '#!/bin/sh\nexit 0\n', {mode: 0o755});
    fs.copyFileSync(workload, path.join(imagesDir, 'noexec'));
    fs.chmodSync(path.join(imagesDir, 'noexec'), 0o644);
    fs.symlinkSync(path.join(imagesDir, 'dcms-workload'), path.join(imagesDir, 'link'));
    for (const image of ['cmake_install.cmake', 'run.sh', 'noexec', 'link']) {
      const r = await call('POST', '/api/v1/enclaves', {headers: bearer(provider), json: body(image)});
      assert.equal(r.status, 422, `${image}: ${r.text}`);
      assert.deepEqual(r.json.error.details.map((d) => d.field), ['configuration.image'], image);
    }
  });

  test('the default images directory of a build holds only the workload and trainer images', () => {
    const dir = path.dirname(workload);
    assert.deepEqual(fs.readdirSync(dir).sort(), ['dcms-trainer', 'dcms-workload']);
    for (const name of fs.readdirSync(dir)) {
      const file = path.join(dir, name);
      const st = fs.lstatSync(file);
      assert.ok(st.isFile() && (st.mode & 0o111), `${name} is an executable file`);
      assert.deepEqual([...fs.readFileSync(file).subarray(0, 4)], [0x7f, 0x45, 0x4c, 0x46], `${name} is ELF`);
    }
  });

  test('missing members and a body that is not an object', async () => {
    let r = await call('POST', '/api/v1/enclaves', {headers: bearer(provider), json: {}});
    assert.equal(r.status, 422);
    assert.deepEqual(r.json.error.details.map((d) => d.field).sort(), ['configuration', 'name']);
    r = await call('POST', '/api/v1/enclaves', {headers: bearer(provider), json: []});
    assert.equal(r.status, 422);
    r = await call('POST', '/api/v1/enclaves', {headers: bearer(provider), json: '{"name":'});
    assert.equal(r.status, 400);
  });

  test('list filters are checked', async () => {
    const r = await call('GET', '/api/v1/enclaves?status=gone&limit=0&cursor=x&backend=vm',
                         {headers: bearer(provider)}, '/api/v1/enclaves');
    assert.equal(r.status, 422);
    assert.deepEqual(r.json.error.details.map((d) => d.field).sort(), ['backend', 'cursor', 'limit', 'status']);
  });
});

describe('authorization', () => {
  let enc;
  before(async () => {
    enc = await create(provider);
  });

  test('another provider and an unrelated consumer get 404, as for a missing id', async () => {
    for (const t of [provider2, consumer]) {
      const r = await get(t, enc.id);
      assert.equal(r.status, 404);
      const l = await call('GET', '/api/v1/enclaves', {headers: bearer(t)});
      assert.ok(!l.json.enclaves.some((e) => e.id === enc.id));
    }
    assert.equal((await act(provider2, enc.id, 'suspend')).status, 404);
    assert.equal((await act(provider2, enc.id, 'attest')).status, 404);
    assert.equal((await get(provider, '00000000-0000-7000-8000-000000000000')).status, 404);
    assert.equal((await get(provider, 'not-a-uuid')).status, 404);
  });

  test('a consumer cannot create or manage; an auditor reads everything and changes nothing',
       async () => {
         assert.equal((await call('POST', '/api/v1/enclaves', {headers: bearer(consumer), json: body()})).status, 403);
         assert.equal((await act(consumer, enc.id, 'terminate')).status, 403);
         assert.equal((await get(auditor, enc.id)).status, 200);
         assert.equal((await act(auditor, enc.id, 'terminate')).status, 403);
         const l = await call('GET', `/api/v1/enclaves?provider_id=${providerId}`, {headers: bearer(auditor)},
                              '/api/v1/enclaves');
         assert.ok(l.json.enclaves.some((e) => e.id === enc.id));
       });

  test('pagination', async () => {
    const all = [];
    let cursor = null;
    do {
      const r = await call('GET', `/api/v1/enclaves?limit=2${cursor ? `&cursor=${cursor}` : ''}`,
                           {headers: bearer(admin)}, '/api/v1/enclaves');
      assert.equal(r.status, 200);
      assert.ok(r.json.enclaves.length <= 2);
      all.push(...r.json.enclaves.map((e) => e.id));
      cursor = r.json.next_cursor;
    } while (cursor);
    assert.equal(new Set(all).size, all.length);
    assert.ok(all.includes(enc.id));
    assert.deepEqual([...all].sort(), all);
  });

  test('unauthenticated requests are refused', async () => {
    const r = await call('GET', '/api/v1/enclaves');
    assert.equal(r.status, 401);
  });
});

describe('contracts served and compatibility', () => {
  // Only an Active contract may be served: both parties sign, then it is activated.
  async function signingKey(id, token) {
    const {publicKey, privateKey} = generateKeyPairSync('ed25519');
    const raw = Buffer.from(publicKey.export({format: 'jwk'}).x, 'base64url');
    const ch = await call('POST', `/api/v1/identities/${id}/keys/challenge`, {headers: bearer(token)},
                          '/api/v1/identities/{id}/keys/challenge');
    const msg = Buffer.concat([Buffer.from('dcms-signing-key-pop:'), Buffer.from(ch.json.challenge, 'base64url'), raw]);
    const r = await call('POST', `/api/v1/identities/${id}/keys`, {
      headers: bearer(token),
      json: {public_key: raw.toString('base64url'), challenge_id: ch.json.challenge_id,
             signature: sign(null, msg, privateKey).toString('base64url')},
    }, '/api/v1/identities/{id}/keys');
    assert.equal(r.status, 201, JSON.stringify(r.json));
    return {keyId: r.json.id, privateKey};
  }
  let keys;
  const op = (token, c, name, json) => call('POST', `/api/v1/contracts/${c.id}/${name}`,
                                            {headers: bearer(token), ...(json ? {json} : {})},
                                            `/api/v1/contracts/{id}/${name}`);
  async function contract(security) {
    keys ??= {provider: await signingKey(providerId, provider), consumer: await signingKey(consumerId, consumer)};
    let r = await call('POST', '/api/v1/contracts', {
      headers: bearer(provider),
      json: {title: `Contract ${++n}`, description: 'training on the records', provider_id: providerId,
             consumer_id: consumerId, terms: validTerms({security: {audit_logging: true, custom_policies: [], ...security}})},
    });
    assert.equal(r.status, 201, JSON.stringify(r.json));
    const c = (await op(provider, r.json, 'submit')).json;
    for (const [token, k] of [[provider, keys.provider], [consumer, keys.consumer]]) {
      r = await op(token, c, 'sign', {type: 'digital', terms_hash: c.terms_hash, key_id: k.keyId,
        signature: sign(null, Buffer.from(c.terms_hash, 'hex'), k.privateKey).toString('base64')});
      assert.equal(r.status, 200, JSON.stringify(r.json));
    }
    r = await op(consumer, c, 'activate');
    assert.equal(r.status, 200, JSON.stringify(r.json));
    return r.json;
  }
  const compat = (token, id, contractId) =>
    call('GET', `/api/v1/enclaves/${id}/compatibility${contractId ? `?contract_id=${contractId}` : ''}`,
         {headers: bearer(token)}, '/api/v1/enclaves/{id}/compatibility');
  const req = (r, name) => r.json.requirements.find((q) => q.name === name);

  let standard, standard2, military, enc;
  before(async () => {
    standard = await contract({encryption_level: 'standard', network_isolation: false});
    standard2 = await contract({encryption_level: 'standard', network_isolation: false});
    military = await contract({encryption_level: 'military', network_isolation: true});
    enc = await create(provider, {...body(), contract_id: standard.id});
    assertRunning(enc);
    assert.equal(enc.contract_id, standard.id);
  });

  test('the consumer of the contract sees the enclave serving it; another consumer does not', async () => {
    assert.equal((await get(consumer, enc.id)).status, 200);
    const l = await call('GET', `/api/v1/enclaves?contract_id=${standard.id}`, {headers: bearer(consumer)},
                         '/api/v1/enclaves');
    assert.deepEqual(l.json.enclaves.map((e) => e.id), [enc.id]);
    assert.equal((await get(consumer2, enc.id)).status, 404);
    assert.equal((await act(consumer, enc.id, 'suspend')).status, 403);
  });

  test('a standard contract: every requirement met, each explained', async () => {
    const r = await compat(consumer, enc.id, standard.id);
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal(r.json.encryption_level, 'standard');
    assert.equal(r.json.compatible, true, JSON.stringify(r.json.requirements.filter((q) => !q.ok)));
    assert.deepEqual(r.json.requirements.map((q) => q.name), [
      'contract_status', 'enclave_status', 'encryption_required', 'min_tls_version', 'debug_mode',
      'allowed_signers', 'secure_boot', 'measured_boot', 'egress', 'network_isolation',
      'attestation_freshness', 'dedicated']);
    assert.deepEqual(req(r, 'min_tls_version'), {name: 'min_tls_version', required: '1.2', actual: '1.3', ok: true,
      reason: 'standard needs TLS 1.2 or later; the network policy allows TLS 1.3'});
    assert.ok(req(r, 'attestation_freshness').actual <= 5);
    assert.equal(req(r, 'attestation_freshness').required, 86400);
  });

  test('a military contract with network isolation: what fails and why', async () => {
    const other = await create(provider, body('dcms-workload', {
      network_policy: {egress: [{protocol: 'tcp', port: 443, cidr: '0.0.0.0/0'}], min_tls_version: '1.2'},
    }));
    const r = await compat(provider, other.id, military.id);
    assert.equal(r.status, 200);
    assert.equal(r.json.compatible, false);
    assert.equal(r.json.network_isolation, true);
    const failed = r.json.requirements.filter((q) => !q.ok).map((q) => q.name).sort();
    assert.deepEqual(failed, ['allowed_signers', 'dedicated', 'egress', 'min_tls_version', 'network_isolation']);
    assert.deepEqual(req(r, 'egress'), {name: 'egress', required: 0, actual: 1, ok: false,
      reason: 'military allows no egress; the policy has 1 egress rule'});
    assert.equal(req(r, 'dedicated').actual, null);
    assert.equal(req(r, 'attestation_freshness').required, 300);
    // Once terminated the enclave may serve nothing.
    await act(provider, other.id, 'terminate');
    const t = await compat(provider, other.id, military.id);
    assert.equal(req(t, 'enclave_status').ok, false);
    assert.equal(req(t, 'attestation_freshness').ok, true); // its last verified attestation is still fresh
  });

  test('binding and the contract parameter are checked', async () => {
    let r = await compat(provider, enc.id);
    assert.equal(r.status, 422);
    assert.deepEqual(r.json.error.details.map((d) => d.field), ['contract_id']);
    r = await compat(provider, enc.id, '00000000-0000-7000-8000-000000000000');
    assert.equal(r.status, 422);
    r = await compat(provider2, enc.id, standard.id);
    assert.equal(r.status, 404);
    // Another provider's enclave may not be bound to this contract.
    r = await call('POST', '/api/v1/enclaves', {headers: bearer(provider2), json: {...body(), contract_id: standard.id}});
    assert.equal(r.status, 422);
    assert.deepEqual(r.json.error.details.map((d) => d.field), ['contract_id']);
    // Rebinding is a policy change: only while suspended.
    r = await call('PATCH', `/api/v1/enclaves/${enc.id}`, {headers: bearer(provider), json: {contract_id: military.id}},
                   '/api/v1/enclaves/{id}');
    assert.equal(r.status, 409);
    await act(provider, enc.id, 'suspend');
    // Compatibility is a gate: a contract the enclave does not satisfy cannot be bound.
    r = await call('PATCH', `/api/v1/enclaves/${enc.id}`, {headers: bearer(provider), json: {contract_id: military.id}},
                   '/api/v1/enclaves/{id}');
    assert.equal(r.status, 422, JSON.stringify(r.json));
    assert.equal(r.json.error.compatibility.enclave_id, enc.id);
    assert.equal(r.json.error.compatibility.compatible, false);
    assert.ok(r.json.error.details.every((d) => d.field === 'contract_id'));
    assert.equal((await get(provider, enc.id)).json.contract_id, standard.id);
    r = await call('PATCH', `/api/v1/enclaves/${enc.id}`, {headers: bearer(provider), json: {contract_id: standard2.id}},
                   '/api/v1/enclaves/{id}');
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal(r.json.contract_id, standard2.id);
    assert.equal(req(await compat(provider, enc.id, standard2.id), 'dedicated').ok, true);
  });

  test('the consumer follows the binding: unbound, it no longer sees the enclave; bound again, it does', async () => {
    const patch = (contractId) => call('PATCH', `/api/v1/enclaves/${enc.id}`,
                                       {headers: bearer(provider), json: {contract_id: contractId}},
                                       '/api/v1/enclaves/{id}');
    const listed = async () => (await call('GET', '/api/v1/enclaves', {headers: bearer(consumer)}, '/api/v1/enclaves'))
      .json.enclaves.map((e) => e.id).includes(enc.id);
    assert.equal((await get(consumer, enc.id)).status, 200);
    assert.equal(await listed(), true);
    let r = await patch(null);
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal(r.json.contract_id, null);
    assert.equal((await get(consumer, enc.id)).status, 404);
    assert.equal(await listed(), false);
    r = await patch(standard.id);
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal((await get(consumer, enc.id)).status, 200);
    assert.equal(await listed(), true);
    assert.equal((await get(consumer2, enc.id)).status, 404);
  });
});

describe('restart', () => {
  test('after a dcmsd restart the lost workloads show failed, never a stale running', async () => {
    // Two dcmsd processes, one after the other, on one data directory and one store.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcms-restart-'));
    let db = null;
    const env = {...adminEnv, DCMS_DATA_DIR: dir, DCMS_ENCLAVE_IMAGES_DIR: imagesDir};
    if (backend === 'postgres') {
      db = `dcms_t_${randomBytes(6).toString('hex')}`;
      psqlAdmin(`CREATE DATABASE ${db}`);
      const u = new URL(process.env.DCMS_TEST_PG_URL);
      u.pathname = `/${db}`;
      env.DCMS_DATABASE_URL = u.toString();
    }
    try {
      const a = await startServer({env});
      const aApi = client(a);
      const aAdmin = await adminToken(a);
      const r1 = await aApi.call('POST', '/api/v1/enclaves', {headers: bearer(aAdmin), json: body()});
      checkResponse('POST', '/api/v1/enclaves', r1.res, r1.json);
      assertRunning(r1.json);
      await a.stop();
      // Stopping dcmsd stops its workloads.
      assert.ok(!alive(r1.json.runtime.pid));
      const b = await startServer({env});
      const bApi = client(b);
      const r2 = await bApi.call('GET', `/api/v1/enclaves/${r1.json.id}`, {headers: bearer(await adminToken(b))});
      checkResponse('GET', '/api/v1/enclaves/{id}', r2.res, r2.json);
      assert.equal(r2.json.status, 'failed');
      assert.equal(r2.json.status_reason, 'workload lost: dcmsd restarted');
      await b.stop();
    } finally {
      fs.rmSync(dir, {recursive: true, force: true});
      if (db) psqlAdmin(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
    }
  });
});
