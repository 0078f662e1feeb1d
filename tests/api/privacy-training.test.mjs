// The differential-privacy budget through the training API (issue 17): under
// a contract with terms.privacy every run is DP-SGD (no `dp`: 422), δ must
// be below 1/N for the request's N training rows, a target ε becomes the
// smallest σ that meets it, and each run's ε is reserved in the job's own
// transaction: runs until the budget is exhausted (the next is refused,
// naming what remains), two concurrent starts that together exceed it
// (exactly one is accepted), a run that fails after its key release keeps
// its charge, one that fails or is cancelled before it gives it back. The
// job and the model's metadata record σ, C, q, steps, δ and ε.
// Logistic regression on tests/data/breast_cancer.csv, modulo 5/4 (456
// training rows), batch 128, 10 epochs: q = 128/456, 40 steps.
// Every response is checked against api/openapi.yaml.
// Runs on the backend chosen by DCMS_TEST_BACKEND.

import assert from 'node:assert/strict';
import {spawnSync} from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {after, before, describe, test} from 'node:test';
import {fileURLToPath} from 'node:url';
import {bearer, contractsContext, validTerms} from './lib/contracts.mjs';
import {dcmsBin} from './lib/server.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const CSV = fs.readFileSync(path.resolve(here, '../../tests/data/breast_cancer.csv'));
const header = CSV.toString('latin1').split('\n')[0].split(',');
const SCHEMA = {
  columns: header.map((name) => (name === 'diagnosis' ? {name, type: 'integer'} : {name, type: 'number'})),
  label: 'diagnosis',
  label_values: ['0', '1'],
};
const DP = {label: 'diagnosis', model: 'logistic_regression', optimizer: 'sgd', epochs: 10, batch_size: 128,
            learning_rate: 1, seed: 1, split: {method: 'modulo', folds: 5, holdout_fold: 4}};
const Q = 128 / 456;
const STEPS = 40;
const FINAL = new Set(['succeeded', 'failed', 'cancelled']);

let t, provider, consumer, ds, ds2, imagesDir;

async function dataset() {
  const c = await t.call('POST', '/api/v1/datasets', {
    headers: bearer(provider.token), json: {name: 'breast cancer', description: 'UCI diagnostic', schema: SCHEMA},
  }, '/api/v1/datasets');
  assert.equal(c.status, 201, JSON.stringify(c.json));
  const r = await t.call('PUT', `/api/v1/datasets/${c.json.id}/content`, {
    headers: {...bearer(provider.token), 'Content-Type': 'text/csv'}, body: CSV,
  }, '/api/v1/datasets/{id}/content');
  assert.equal(r.json.status, 'ready', JSON.stringify(r.json));
  return r.json;
}

function terms(privacy, over = {}) {
  const base = validTerms();
  return {
    ...base,
    data_access: {datasets: [ds.id, ds2.id], permissions: ['train']},
    security: {...base.security, encryption_level: 'standard'},
    usage: {...base.usage, allowed_model_types: ['logistic_regression'], max_training_runs: 20},
    ...(privacy ? {privacy} : {}),
    ...over,
  };
}
const contract = (privacy, over) => t.inState({provider, consumer}, 'active', {terms: terms(privacy, over)});

const start = (c, body) =>
  t.call('POST', `/api/v1/contracts/${c.id}/trainings`, {headers: bearer(consumer.token), json: body},
         '/api/v1/contracts/{id}/trainings');
const getJob = (id) => t.call('GET', `/api/v1/trainings/${id}`, {headers: bearer(consumer.token)},
                              '/api/v1/trainings/{id}');
const budget = async (c) => {
  const r = await t.call('GET', `/api/v1/contracts/${c.id}/privacy`, {headers: bearer(consumer.token)},
                         '/api/v1/contracts/{id}/privacy');
  assert.equal(r.status, 200, r.text);
  return r.json;
};
const cancel = (id) => t.call('POST', `/api/v1/trainings/${id}/cancel`, {headers: bearer(consumer.token)},
                              '/api/v1/trainings/{id}/cancel');

async function waitFor(id, pred, ms = 60000) {
  const end = Date.now() + ms;
  for (;;) {
    const r = await getJob(id);
    assert.equal(r.status, 200, r.text);
    if (pred(r.json)) return r.json;
    if (Date.now() > end) assert.fail(`job ${id} is still ${r.json.state}: ${JSON.stringify(r.json)}`);
    await new Promise((res) => setTimeout(res, 100));
  }
}
const waitFinal = (id) => waitFor(id, (j) => FINAL.has(j.state));

/** `dcmsd privacy epsilon`: the accountant's figure, as anyone can check it. */
function epsilon(q, sigma, steps, delta) {
  const r = spawnSync(dcmsBin, ['privacy', 'epsilon', '--q', String(q), '--sigma', String(sigma),
                                '--steps', String(steps), '--delta', String(delta)], {encoding: 'utf8'});
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout).epsilon;
}

function dpField(r) {
  assert.equal(r.status, 422, r.text);
  assert.equal(r.json.error.code, 'validation_failed');
  const d = r.json.error.details.find((x) => x.field === 'dp');
  assert.ok(d, JSON.stringify(r.json));
  return d.problem;
}

before(async () => {
  // A copy of the images, so one test can change the trainer in place.
  imagesDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcms-dp-images-'));
  for (const f of ['dcms-trainer', 'dcms-workload'])
    fs.copyFileSync(path.join(path.dirname(path.resolve(dcmsBin)), 'workload', f), path.join(imagesDir, f));
  fs.chmodSync(path.join(imagesDir, 'dcms-trainer'), 0o755);
  // One worker: a job started behind a running one stays queued.
  t = await contractsContext({DCMS_TRAINING_WORKERS: '1', DCMS_ENCLAVE_IMAGES_DIR: imagesDir});
  ({provider, consumer} = await t.parties());
  ds = await dataset();
  ds2 = await dataset();
});

after(async () => {
  await t?.server.stop();
  if (imagesDir) fs.rmSync(imagesDir, {recursive: true, force: true});
});

describe('the privacy budget of training runs', () => {
  test('terms.privacy makes dp required and delta must be below 1/N', async () => {
    const c = await contract({epsilon: 3, delta: 1e-3});
    const plain = {datasets: [ds.id], ...DP};
    assert.match(dpField(await start(c, plain)), /terms\.privacy/);
    // 2 × 569 rows, 5 % held out at random: over 1000 training rows, 1/N below delta 1e-3
    const many = await start(c, {...plain, datasets: [ds.id, ds2.id],
                                 split: {method: 'random', fraction: 0.05, seed: 7},
                                 dp: {target_epsilon: 1, max_grad_norm: 1}});
    assert.match(dpField(many), /delta 0\.001 is not below 1\/N/);
    // both sigma and a target, or neither
    let r = await start(c, {...plain, dp: {noise_multiplier: 2, target_epsilon: 1, max_grad_norm: 1}});
    assert.match(dpField(r), /not both/);
    r = await start(c, {...plain, dp: {max_grad_norm: 1}});
    dpField(r);
    // nothing was reserved by the refusals
    const b = await budget(c);
    assert.deepEqual(b.runs, []);
    assert.equal(b.remaining_epsilon, 3);

    // Without terms.privacy dp stays optional: a sigma is recorded, nothing is budgeted
    const free = await contract(null);
    r = await start(free, {...plain, dp: {target_epsilon: 1, max_grad_norm: 1}});
    assert.equal(r.status, 422, r.text);
    assert.deepEqual(r.json.error.details.map((d) => d.field), ['dp.target_epsilon']);
    r = await start(free, {...plain, dp: {noise_multiplier: 3, max_grad_norm: 1}});
    assert.equal(r.status, 202, r.text);
    assert.deepEqual(r.json.privacy, {sigma: 3, max_grad_norm: 1, q: Q, steps: STEPS, delta: null, epsilon: null});
    const j = await waitFinal(r.json.id);
    assert.equal(j.state, 'succeeded', JSON.stringify(j));
    assert.deepEqual(j.result.metrics.dp, {noise_multiplier: 3, max_grad_norm: 1, sample_rate: Q, steps: STEPS});
    r = await start(free, plain);
    assert.equal(r.status, 202, r.text);
    assert.equal(r.json.privacy, null);
    assert.equal((await waitFinal(r.json.id)).state, 'succeeded');
    assert.deepEqual((await budget(free)).runs, []);
  });

  test('target epsilon, runs until the budget is exhausted, then the refusal names the remainder', async () => {
    const delta = 1e-5;
    const c = await contract({epsilon: 1.5, delta});
    const body = {datasets: [ds.id], ...DP, dp: {target_epsilon: 1, max_grad_norm: 1}};
    const r1 = await start(c, body);
    assert.equal(r1.status, 202, r1.text);
    const p = r1.json.privacy;
    assert.equal(p.q, Q);
    assert.equal(p.steps, STEPS);
    assert.equal(p.delta, delta);
    assert.equal(p.max_grad_norm, 1);
    const own = epsilon(p.q, p.sigma, p.steps, delta);
    assert.ok(own <= 1 && own > 0.999, `sigma ${p.sigma} gives epsilon ${own}`);
    assert.ok(Math.abs(p.epsilon - own) <= 1e-9, `${p.epsilon} vs ${own}`);
    // a larger sigma than needed would be a weaker model: the smallest one is 1e-6 from the boundary
    assert.ok(epsilon(p.q, p.sigma * (1 - 1e-5), p.steps, delta) > 1);

    const j1 = await waitFinal(r1.json.id);
    assert.equal(j1.state, 'succeeded', JSON.stringify(j1));
    assert.deepEqual(j1.privacy, p);
    // the model's metadata records the same run
    const res = await fetch(`${t.server.url}/api/v1/trainings/${j1.id}/model`, {headers: bearer(consumer.token)});
    assert.equal(res.status, 200);
    const bytes = Buffer.from(await res.arrayBuffer());
    const meta = JSON.parse(bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString()).__metadata__;
    assert.equal(Number(meta['dp.noise_multiplier']), p.sigma);
    assert.equal(Number(meta['dp.max_grad_norm']), 1);
    assert.equal(Number(meta['dp.sample_rate']), Q);
    assert.equal(Number(meta['dp.steps']), STEPS);
    assert.equal(Number(meta['dp.delta']), delta);
    assert.equal(Number(meta['dp.epsilon']), p.epsilon);

    // the second run of epsilon 1 fits: the curves compose to less than 1.5
    const r2 = await start(c, body);
    assert.equal(r2.status, 202, r2.text);
    assert.equal((await waitFinal(r2.json.id)).state, 'succeeded');
    const b = await budget(c);
    assert.deepEqual(b.runs.map((x) => [x.run_id, x.state]), [[r1.json.id, 'charged'], [r2.json.id, 'charged']]);
    const both = epsilon(Q, p.sigma, 2 * STEPS, delta);
    assert.ok(Math.abs(b.spent_epsilon - both) < 1e-9, `${b.spent_epsilon} vs ${both}`);
    assert.ok(Math.abs(b.remaining_epsilon - (1.5 - both)) < 1e-9);

    // the third does not, and the refusal says what remains
    const r3 = await start(c, body);
    const problem = dpField(r3);
    const m = problem.match(/epsilon ([0-9.e+-]+) remaining/);
    assert.ok(m, problem);
    assert.ok(Math.abs(Number(m[1]) - b.remaining_epsilon) <= 1e-5 * b.remaining_epsilon, problem);
    assert.deepEqual((await budget(c)).runs.length, 2, 'the refused run reserved nothing');
    const reserves = await t.auditEvents(`action=privacy.reserve&resource_id=${c.id}&limit=10`);
    assert.equal(reserves.length, 2);
    const charges = await t.auditEvents(`action=privacy.charge&resource_id=${c.id}&limit=10`);
    assert.equal(charges.length, 2);
  });

  test('two concurrent starts that together exceed the budget: exactly one is accepted', async () => {
    const c = await contract({epsilon: 1.2, delta: 1e-5});
    const body = {datasets: [ds.id], ...DP, dp: {target_epsilon: 1, max_grad_norm: 1}};
    const rs = await Promise.all([start(c, body), start(c, body)]);
    const statuses = rs.map((r) => r.status).sort();
    assert.deepEqual(statuses, [202, 422], rs.map((r) => r.text).join('\n'));
    const ok = rs.find((r) => r.status === 202);
    dpField(rs.find((r) => r.status === 422));
    const b = await budget(c);
    assert.deepEqual(b.runs.map((x) => x.run_id), [ok.json.id]);
    assert.ok(b.committed_epsilon <= 1.2);
    assert.equal((await waitFinal(ok.json.id)).state, 'succeeded');
  });

  test('a run that fails after its key release keeps its charge', async () => {
    const c = await contract({epsilon: 3, delta: 1e-5}, {output: {max_model_bytes: 100}});
    const r = await start(c, {datasets: [ds.id], ...DP, dp: {noise_multiplier: 5, max_grad_norm: 1}});
    assert.equal(r.status, 202, r.text);
    const j = await waitFinal(r.json.id);
    assert.equal(j.state, 'failed', JSON.stringify(j));
    assert.equal(j.reason_code, 'model_too_large');
    assert.equal(j.data_released, true);
    const b = await budget(c);
    assert.deepEqual(b.runs.map((x) => x.state), ['charged']);
    assert.equal(b.runs[0].sigma, 5);
    const own = epsilon(Q, 5, STEPS, 1e-5);
    assert.ok(Math.abs(b.spent_epsilon - own) < 1e-9, `${b.spent_epsilon} vs ${own}`);
    assert.ok(Math.abs(j.privacy.epsilon - own) < 1e-9);
    assert.deepEqual(await t.auditEvents(`action=privacy.release&resource_id=${c.id}`), []);
  });

  test('a run that fails or is cancelled before its key release gives its reservation back', async () => {
    const c = await contract({epsilon: 3, delta: 1e-5});
    const body = {datasets: [ds.id], ...DP, dp: {target_epsilon: 1, max_grad_norm: 1}};
    // a trainer image changed by one byte fails to attest: no key is released
    const img = path.join(imagesDir, 'dcms-trainer');
    const good = fs.readFileSync(img);
    const bad = Buffer.from(good);
    bad[bad.length - 1] ^= 1;
    fs.writeFileSync(img, bad);
    let failed;
    try {
      const r = await start(c, body);
      assert.equal(r.status, 202, r.text);
      assert.ok(['reserved', 'released'].includes((await budget(c)).runs[0].state));
      failed = await waitFinal(r.json.id);
    } finally {
      fs.writeFileSync(img, good);
    }
    assert.equal(failed.state, 'failed', JSON.stringify(failed));
    assert.equal(failed.reason_code, 'provisioning_failed');
    assert.equal(failed.data_released, false);

    // a run cancelled while it waits behind another (one worker)
    const blocker = await start(await contract(null), {datasets: [ds.id], ...DP, batch_size: 0, epochs: 100000});
    assert.equal(blocker.status, 202, blocker.text);
    await waitFor(blocker.json.id, (j) => j.state === 'running' || FINAL.has(j.state));
    const q = await start(c, body);
    assert.equal(q.status, 202, q.text);
    const x = await cancel(q.json.id);
    assert.equal(x.status, 200, x.text);
    assert.equal(x.json.state, 'cancelled');
    assert.equal((await cancel(blocker.json.id)).status, 200);

    const b = await budget(c);
    assert.deepEqual(b.runs.map((r) => [r.run_id, r.state]), [[failed.id, 'released'], [q.json.id, 'released']]);
    assert.equal(b.committed_epsilon, 0);
    assert.equal(b.remaining_epsilon, 3);
    const releases = await t.auditEvents(`action=privacy.release&resource_id=${c.id}&limit=10`);
    assert.equal(releases.length, 2);
    assert.deepEqual(await t.auditEvents(`action=privacy.charge&resource_id=${c.id}`), []);
    const v = await t.call('GET', '/api/v1/audit/verify', {headers: bearer(t.admin)});
    assert.equal(v.json.ok, true, v.text);
  });
});
