// The work screens in a real browser: a provider creates a dataset from
// tests/data/breast_cancer.csv (its header fills the schema; a first try
// without a name or a label shows the API's problems on their fields) and
// uploads it over tus with a progress bar (a PATCH dropped on the way is
// resumed from the server's offset); a second upload interrupted after
// 40000 bytes resumes from the server's offset (HEAD) in the browser. A
// contract naming the dataset is edited after the provider signed it, so
// the contract page shows the diff between the two terms versions and the
// provider's signing sheet the diff since the version it signed. The
// consumer starts a small training on the contract page and follows it live
// (the SSE stream read with fetch, since EventSource cannot send the bearer
// token) to success with its metrics and confusion matrix, and downloads
// the model; a second job cancelled at once shows its reason; under a
// contract with a privacy budget the form asks for DP-SGD (a target ε over
// the per-run cap lands on its field); the provider
// sees the metrics and the job's audit trail, and no download. An auditor
// filters the audit log (filters in the URL), verifies the chain ("Verified
// through event N") and opens the contract's audit trail. axe-core finds no
// violation on any of these screens.

import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { validTerms } from '../api/lib/contracts.mjs';
import { bearer, login } from '../api/lib/iam.mjs';
import { repoRoot } from '../api/lib/server.mjs';
import { harness, PW } from './lib/harness.mjs';

const CSV_PATH = path.join(repoRoot, 'tests/data/breast_cancer.csv');
const CSV = fs.readFileSync(CSV_PATH);
const header = CSV.toString('latin1').split('\n')[0].split(',');
const SCHEMA = {
  columns: header.map((name) => (name === 'diagnosis' ? { name, type: 'integer' } : { name, type: 'number' })),
  label: 'diagnosis',
  label_values: ['0', '1'],
};

let h;
let provider;
let consumer;
let auditor;
let dsId;
let contractId;
let providerPage;
const violations = [];
const t0 = Date.now();

async function as(u, method, p, { json, headers = {}, body } = {}) {
  const res = await fetch(h.server.url + p, {
    method,
    headers: { ...bearer(u.token), ...(json ? { 'Content-Type': 'application/json' } : {}), ...headers },
    body: json ? JSON.stringify(json) : body,
    signal: AbortSignal.timeout(15000),
  });
  const text = await res.text();
  let j = null;
  try {
    j = text ? JSON.parse(text) : null;
  } catch {
    j = null;
  }
  return { status: res.status, json: j, headers: res.headers };
}

/** Registers an Ed25519 key for u (proof of possession, docs/iam.md). */
async function signingKey(u) {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x, 'base64url');
  const ch = await as(u, 'POST', `/api/v1/identities/${u.id}/keys/challenge`);
  assert.equal(ch.status, 201, JSON.stringify(ch.json));
  const msg = Buffer.concat([Buffer.from('dcms-signing-key-pop:'), Buffer.from(ch.json.challenge, 'base64url'), raw]);
  const r = await as(u, 'POST', `/api/v1/identities/${u.id}/keys`, {
    json: { public_key: raw.toString('base64url'), challenge_id: ch.json.challenge_id, signature: sign(null, msg, privateKey).toString('base64url') },
  });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  u.key = { id: r.json.id, privateKey };
}

async function signAs(u, c) {
  const sig = sign(null, Buffer.from(c.terms_hash, 'hex'), u.key.privateKey).toString('base64');
  const r = await as(u, 'POST', `/api/v1/contracts/${c.id}/sign`, { json: { type: 'digital', terms_hash: c.terms_hash, key_id: u.key.id, signature: sig } });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  return r.json;
}

async function check(pg, label) {
  violations.push(...(await h.axe(pg, label)));
}

before(async () => {
  h = await harness({ DCMS_TRAINING_WORKERS: '1' });
  provider = await h.user(['provider']);
  consumer = await h.user(['consumer']);
  auditor = await h.user(['auditor']);
  for (const u of [provider, consumer, auditor]) u.token = (await login(h.server, u.email, PW)).access_token;
});

after(async () => {
  await h?.close();
  console.log(`# work screens: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
});

test('a provider creates a dataset, sees field problems, uploads it over tus and reads the report', async () => {
  const pg = await h.page();
  await h.signIn(pg, provider);
  await pg.getByRole('link', { name: 'Datasets' }).click();
  await pg.getByRole('heading', { level: 1, name: 'Datasets' }).waitFor();
  await pg.getByText('No datasets yet.').waitFor();
  await check(pg, 'datasets (empty)');

  await pg.getByRole('link', { name: 'New dataset' }).first().click();
  await pg.getByRole('heading', { level: 1, name: 'New dataset' }).waitFor();
  // Nothing filled in: the API's problems land on their fields and in the summary.
  await pg.getByRole('button', { name: 'Create dataset' }).click();
  await pg.locator('.summary').waitFor();
  await pg.locator('#f-name-problems').waitFor();
  assert.equal(await pg.locator('#f-name').getAttribute('aria-invalid'), 'true');
  await check(pg, 'new dataset (problems)');

  await pg.locator('#f-file').setInputFiles(CSV_PATH);
  await pg.locator('#f-schema-columns-30-name').waitFor();
  assert.equal(await pg.locator('#f-schema-columns-30-name').inputValue(), 'diagnosis');
  assert.equal(await pg.locator('#f-schema-columns-30-type').inputValue(), 'integer');
  assert.equal(await pg.locator('#f-schema-columns-0-type').inputValue(), 'number');
  assert.equal(await pg.locator('#f-schema-label').inputValue(), 'diagnosis');
  assert.equal(await pg.locator('#f-schema-label-values').inputValue(), '0, 1');
  await pg.locator('#f-name').fill('breast cancer (UI)');
  // The second PATCH fails as a dropped link would: the upload asks HEAD where to resume and goes on.
  const patches = [];
  await pg.route('**/api/v1/datasets/*/content', async (route) => {
    const r = route.request();
    if (r.method() === 'PATCH') patches.push(r.headers()['upload-offset']);
    if (r.method() === 'PATCH' && patches.length === 2) return route.abort('connectionreset');
    return route.continue();
  });
  await pg.getByRole('button', { name: 'Create and upload' }).click();
  await pg.getByRole('heading', { level: 1, name: 'breast cancer (UI)' }).waitFor();
  await pg.getByText('Valid: 569 rows match the schema.').waitFor({ timeout: 20000 });
  assert.match(await pg.getByTestId('upload-figures').textContent(), /100 %/);
  assert.equal(await pg.locator('#upload-progress').getAttribute('value'), String(CSV.length));
  // 64 KiB chunks: offsets 0, 65536 (dropped), 65536 again after HEAD.
  assert.deepEqual(patches, ['0', '65536', '65536']);
  dsId = pg.url().split('/').pop();
  const ds = await as(provider, 'GET', `/api/v1/datasets/${dsId}`);
  assert.equal(ds.json.status, 'ready');
  assert.equal(ds.json.rows, 569);
  await check(pg, 'dataset (ready)');

  await pg.getByRole('link', { name: 'Back to datasets' }).click();
  await pg.getByRole('link', { name: 'breast cancer (UI)' }).waitFor();
  await check(pg, 'datasets (list)');
  await pg.unroute('**/api/v1/datasets/*/content');
  providerPage = pg; // signed in: the later tests reuse it
});

test('an interrupted upload resumes in the browser from the server offset (on a phone)', async () => {
  const c = await as(provider, 'POST', '/api/v1/datasets', {
    json: { name: 'resumed', schema: SCHEMA },
    headers: { 'Tus-Resumable': '1.0.0', 'Upload-Length': String(CSV.length) },
  });
  assert.equal(c.status, 201, JSON.stringify(c.json));
  const part = await as(provider, 'PATCH', `/api/v1/datasets/${c.json.id}/content`, {
    headers: { 'Tus-Resumable': '1.0.0', 'Content-Type': 'application/offset+octet-stream', 'Upload-Offset': '0' },
    body: CSV.subarray(0, 40000),
  });
  assert.equal(part.status, 204);
  // On a phone, in dark mode.
  const pg = await h.page({ colorScheme: 'dark', viewport: { width: 360, height: 740 } });
  await h.signIn(pg, provider);
  await pg.goto(`${h.base}/#/datasets/${c.json.id}`);
  await pg.getByText('Choose the same file again to resume').waitFor();
  await check(pg, 'dataset (uploading, dark)');
  await pg.locator('#f-upload').setInputFiles(CSV_PATH);
  await pg.getByRole('button', { name: 'Resume upload' }).click();
  await pg.getByText('Valid: 569 rows match the schema.').waitFor({ timeout: 20000 });
  assert.match(await pg.getByTestId('upload-figures').textContent(), /Resumed at 39/);
  assert.ok(await pg.evaluate(() => document.documentElement.scrollWidth <= 360), 'no horizontal scroll at 360 px');
  await pg.goto(`${h.base}/#/datasets/new`);
  await pg.locator('#f-file').setInputFiles(CSV_PATH);
  await pg.locator('#f-schema-columns-30-name').waitFor();
  assert.ok(await pg.evaluate(() => document.documentElement.scrollWidth <= 360), 'the schema editor fits 360 px');
  await pg.context().close();
});

test('the contract page shows the diff between versions, the signing sheet the diff since the signer signed', async () => {
  await signingKey(provider);
  await signingKey(consumer);
  const terms = validTerms({
    data_access: { datasets: [dsId], permissions: ['train'] },
    usage: { purposes: ['diagnosis research'], allowed_model_types: ['logistic_regression'], max_training_runs: 5, raw_data_export: false },
    security: { encryption_level: 'standard', network_isolation: true, audit_logging: true },
  });
  let r = await as(provider, 'POST', '/api/v1/contracts', { json: { title: 'Diagnosis model', description: '', provider_id: provider.id, consumer_id: consumer.id, terms } });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  let c = r.json;
  contractId = c.id;
  c = (await as(provider, 'POST', `/api/v1/contracts/${c.id}/submit`, { json: {} })).json;
  await signAs(provider, c);
  // Version 2: more runs, and one more purpose; the provider's signature is void.
  const terms2 = { ...terms, usage: { ...terms.usage, max_training_runs: 8, purposes: ['diagnosis research', 'teaching'] } };
  r = await as(consumer, 'PUT', `/api/v1/contracts/${c.id}`, {
    json: { title: 'Diagnosis model', description: '', provider_id: provider.id, consumer_id: consumer.id, terms: terms2 },
    headers: { 'If-Match': `"${(await as(consumer, 'GET', `/api/v1/contracts/${c.id}`)).json.version}"` },
  });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  c = (await as(consumer, 'POST', `/api/v1/contracts/${c.id}/submit`, { json: {} })).json;
  assert.equal(c.terms_version, 2);

  const pg = providerPage;
  await pg.goto(`${h.base}/#/contracts/${c.id}`);
  await pg.getByRole('heading', { level: 2, name: 'Changes between terms versions' }).waitFor();
  const diff = pg.getByTestId('diff');
  await diff.getByText('terms.usage.max_training_runs').waitFor();
  assert.match(await diff.textContent(), /terms\.usage\.max_training_runs\s*5 → 8/);
  assert.match(await diff.textContent(), /terms\.usage\.purposes\s*\+ teaching/);
  await check(pg, 'contract (diff)');

  await pg.goto(`${h.base}/#/contracts/${c.id}/sign`);
  await pg.getByRole('heading', { level: 2, name: 'What changed since you last signed' }).waitFor();
  await pg.getByText('You signed version 1; these are the changes up to version 2:').waitFor();
  assert.match(await pg.getByTestId('diff').textContent(), /5 → 8/);
  await check(pg, 'signing sheet (diff since signed)');

  await signAs(provider, c);
  await signAs(consumer, c);
  r = await as(consumer, 'POST', `/api/v1/contracts/${c.id}/activate`, { json: {} });
  assert.equal(r.status, 200, JSON.stringify(r.json));
});

test('the consumer starts a training, follows it live to success, sees the metrics and downloads the model; cancel; DP', async () => {
  const pg = await h.page();
  await h.signIn(pg, consumer);
  await pg.goto(`${h.base}/#/contracts/${contractId}`);
  await pg.getByText('No training under this contract yet.').waitFor();
  await pg.getByRole('link', { name: 'Start a training' }).click();
  await pg.getByRole('heading', { level: 1, name: 'Start a training' }).waitFor();
  await pg.getByLabel('breast cancer (UI)').waitFor();
  assert.equal(await pg.locator('#f-label').inputValue(), 'diagnosis');
  await check(pg, 'start training');
  // A bad value first: the API's problem lands on the field.
  await pg.locator('#f-split-holdout-fold').fill('9');
  await pg.getByRole('button', { name: 'Start training' }).click();
  await pg.locator('.summary').getByText('split.holdout_fold').waitFor();
  await pg.locator('#f-split-holdout-fold-problems').waitFor();
  await pg.locator('#f-split-holdout-fold').fill('4');
  await pg.locator('#f-epochs').fill('20');
  await pg.getByRole('button', { name: 'Start training' }).click();
  await pg.getByRole('heading', { level: 1, name: /^Training/ }).waitFor();
  const jobId = pg.url().split('/').pop();
  // Live: the state changes arrive over the event stream, then the metrics.
  await pg.getByTestId('metrics').waitFor({ timeout: 60000 });
  assert.match(await pg.getByTestId('job-live').textContent(), /Succeeded/);
  const acc = Number(await pg.getByTestId('accuracy').textContent());
  assert.ok(acc > 0.8 && acc <= 1, `accuracy ${acc}`);
  const cm = await pg.getByTestId('confusion').locator('tbody td').allTextContents();
  assert.equal(cm.length, 4);
  const job = (await as(consumer, 'GET', `/api/v1/trainings/${jobId}`)).json;
  assert.equal(job.state, 'succeeded');
  assert.deepEqual(cm.map(Number), job.result.metrics.confusion_matrix.matrix.flat());
  assert.equal(await pg.locator('#job-progress').getAttribute('value'), '20');
  await check(pg, 'training (succeeded)');
  const [download] = await Promise.all([pg.waitForEvent('download'), pg.getByRole('button', { name: 'Download the model (safetensors)' }).click()]);
  const file = await download.path();
  assert.equal(fs.statSync(file).size, job.result.model_size);

  // A second job cancelled at once: the page shows why it ended. It is made long (one row per
  // step, many epochs) so that the cancel always comes before its end.
  await pg.goto(`${h.base}/#/contracts/${contractId}/train`);
  await pg.locator('#f-epochs').fill('100000');
  await pg.locator('#f-batch-size').fill('1');
  await pg.getByRole('button', { name: 'Start training' }).click();
  await pg.getByRole('button', { name: 'Cancel training' }).click();
  await pg.getByTestId('job-failure').getByText('cancelled_by_consumer').waitFor();

  // Under a contract with a privacy budget the form asks for DP-SGD, and the run is private.
  const terms = validTerms({
    data_access: { datasets: [dsId], permissions: ['train'] },
    usage: { purposes: ['diagnosis research'], allowed_model_types: ['logistic_regression'], max_training_runs: 5, raw_data_export: false },
    security: { encryption_level: 'standard', network_isolation: true, audit_logging: true },
    privacy: { epsilon: 3, delta: 1e-5, max_epsilon_per_run: 1.5 },
  });
  let c = (await as(provider, 'POST', '/api/v1/contracts', { json: { title: 'Private model', description: '', provider_id: provider.id, consumer_id: consumer.id, terms } })).json;
  c = (await as(provider, 'POST', `/api/v1/contracts/${c.id}/submit`, { json: {} })).json;
  await signAs(provider, c);
  await signAs(consumer, c);
  assert.equal((await as(consumer, 'POST', `/api/v1/contracts/${c.id}/activate`, { json: {} })).status, 200);
  await pg.goto(`${h.base}/#/contracts/${c.id}/train`);
  await pg.getByRole('group', { name: 'Differential privacy' }).waitFor();
  assert.equal(await pg.locator('#f-batch-size').inputValue(), '32');
  await pg.locator('#f-dp-target-epsilon').fill('2');
  await pg.getByRole('button', { name: 'Start training' }).click();
  await pg.locator('#f-dp-problems').waitFor(); // 2 is over the 1.5 a run may spend
  await pg.locator('#f-dp-target-epsilon').fill('1');
  await pg.getByRole('button', { name: 'Start training' }).click();
  await pg.getByRole('heading', { level: 1, name: /^Training/ }).waitFor();
  const dpJob = (await as(consumer, 'GET', `/api/v1/trainings/${pg.url().split('/').pop()}`)).json;
  assert.deepEqual(dpJob.request.dp, { target_epsilon: 1, max_grad_norm: 1 });
  // the private run ends on its own (cancelling is tested above): its metrics show
  await pg.getByTestId('metrics').waitFor({ timeout: 60000 });
  await pg.context().close();

  // The provider: the metrics and the audit trail, no download.
  const pp = providerPage;
  await pp.emulateMedia({ colorScheme: 'dark' });
  await pp.goto(`${h.base}/#/trainings/${jobId}`);
  await pp.getByTestId('metrics').waitFor();
  assert.equal(await pp.getByRole('button', { name: /Download the model/ }).count(), 0);
  await pp.getByRole('button', { name: 'Show the audit trail' }).click();
  await pp.locator('table.events tbody tr').first().waitFor();
  await check(pp, 'training (provider, dark)');
  await pp.context().close();
});

test('an auditor filters the log in the URL, verifies the chain and opens a contract trail', async () => {
  const pg = await h.page();
  await h.signIn(pg, auditor);
  await pg.getByRole('link', { name: 'Audit', exact: true }).click();
  await pg.getByRole('heading', { level: 1, name: 'Audit' }).waitFor();
  await pg.locator('table.events tbody tr').first().waitFor();
  await pg.locator('#a-action').fill('training.');
  await pg.getByRole('button', { name: 'Filter' }).click();
  await pg.waitForURL(/action=training\./);
  await pg.locator('table.events').getByText('training.succeeded').first().waitFor();
  const actions = await pg.locator('table.events tbody tr td:nth-child(4)').allTextContents();
  assert.ok(actions.length > 0 && actions.every((a) => a.startsWith('training.')), actions.join(','));
  // The filter survives a reload: it is in the URL.
  await pg.reload();
  await pg.locator('table.events').getByText('training.succeeded').first().waitFor();
  assert.equal(await pg.locator('#a-action').inputValue(), 'training.');
  await pg.getByRole('button', { name: 'Verify the audit chain' }).click();
  await pg.getByTestId('verdict').getByText(/^Verified through event \d+/).waitFor();
  await check(pg, 'audit');
  await pg.locator('#a-action').fill('no.such.action');
  await pg.getByRole('button', { name: 'Filter' }).click();
  await pg.getByText('No events match.').waitFor();

  await pg.goto(`${h.base}/#/contracts/${contractId}/audit`);
  await pg.getByRole('heading', { level: 1, name: 'Audit trail: Diagnosis model' }).waitFor();
  await pg.locator('table.events').getByText('contract.activate').waitFor();
  const [download] = await Promise.all([pg.waitForEvent('download'), pg.getByRole('button', { name: 'Download the evidence bundle' }).click()]);
  const bundle = JSON.parse(fs.readFileSync(await download.path(), 'utf8'));
  assert.equal(bundle.type, 'dcms.evidence.v1');
  assert.equal(bundle.contract.id, contractId);
  await check(pg, 'contract audit trail');
  await pg.context().close();

  assert.deepEqual(violations, []);
  assert.deepEqual(h.problems, []);
});
