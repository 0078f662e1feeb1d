// The enclave screens and the home pages in a real browser, against
// enclaves of the local sandbox backend. An operator's P-384 key signs a
// copy of dcms-workload (`dcmsd image sign`, as docs/enclaves.md shows), so
// an enclave can serve a "high" contract (its level pins the signer,
// PCR8). A provider lands on the home page at sign-in (the contract
// awaiting its signature, its dataset in use, a training that failed:
// no trainer image is installed), lists its enclaves and filters them in
// the URL (a refused contract id lands on its field), opens one serving
// the contract: the attestation check by check (PCR0, PCR8, nonce, debug,
// freshness... each with the rule of the contract that demands it),
// attests it again, suspends and resumes it through the dialog, sees
// "resume" disabled with its reason, and the metrics chart with its
// table; the contract page lists its enclaves. An enclave whose contract
// was suspended cannot be resumed and says why. An auditor's home shows
// the audit chain's verdict, the suspended contract, the failed training
// and the failed enclave (an unsigned image under a pinned signer), whose
// failed check is marked and whose actions are all disabled with their
// reason. axe-core finds no violation on any of these screens, in light
// and dark mode, and the enclave page fits 360 px.

import assert from 'node:assert/strict';
import { spawnSync as spawn } from 'node:child_process';
import { generateKeyPairSync, sign } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { validTerms } from '../api/lib/contracts.mjs';
import { login } from '../api/lib/iam.mjs';
import { dcmsBin } from '../api/lib/server.mjs';
import { countIs, harness, PW } from './lib/harness.mjs';

const workload = path.join(path.dirname(dcmsBin), 'workload', 'dcms-workload');
let h;
let work;
let pcr8;
let provider;
let consumer;
let auditor;
let active; // a "high" contract, active
let pending; // awaiting the provider's signature
let paused; // suspended, with its enclave
let training; // active, naming the dataset
let ds;
let job; // a failed training
const enc = {};
const violations = [];
const t0 = Date.now();

const as = (u, method, p, json) => h.call(method, p, { token: u.token, json });

async function signingKey(u) {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x, 'base64url');
  const ch = await as(u, 'POST', `/api/v1/identities/${u.id}/keys/challenge`);
  assert.equal(ch.status, 201, JSON.stringify(ch.json));
  const msg = Buffer.concat([Buffer.from('dcms-signing-key-pop:'), Buffer.from(ch.json.challenge, 'base64url'), raw]);
  const r = await as(u, 'POST', `/api/v1/identities/${u.id}/keys`, {
    public_key: raw.toString('base64url'), challenge_id: ch.json.challenge_id, signature: sign(null, msg, privateKey).toString('base64url'),
  });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  u.key = { id: r.json.id, privateKey };
}

async function signAs(u, c) {
  const signature = sign(null, Buffer.from(c.terms_hash, 'hex'), u.key.privateKey).toString('base64');
  const r = await as(u, 'POST', `/api/v1/contracts/${c.id}/sign`, { type: 'digital', terms_hash: c.terms_hash, key_id: u.key.id, signature });
  assert.equal(r.status, 200, JSON.stringify(r.json));
}

/** A "high" contract between the provider and the consumer, taken to `state`. */
async function contract(title, state, terms = validTerms()) {
  let r = await as(provider, 'POST', '/api/v1/contracts', { title, description: '', provider_id: provider.id, consumer_id: consumer.id, terms });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  const c = (await as(provider, 'POST', `/api/v1/contracts/${r.json.id}/submit`, {})).json;
  if (state === 'pending_signature') return c;
  await signAs(provider, c);
  await signAs(consumer, c);
  r = await as(consumer, 'POST', `/api/v1/contracts/${c.id}/activate`, {});
  assert.equal(r.status, 200, JSON.stringify(r.json));
  return r.json;
}

async function enclave(name, image, { contractId = null, signers = [] } = {}) {
  const r = await as(provider, 'POST', '/api/v1/enclaves', {
    name, contract_id: contractId,
    configuration: { image, cpu_cores: 1, memory_mb: 256, storage_gb: 1, security_policy: { allowed_signers: signers } },
  });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  return r.json;
}

async function until(what, fn) {
  for (let i = 0; i < 200; i++) {
    const v = await fn();
    if (v) return v;
    await new Promise((ok) => setTimeout(ok, 100));
  }
  assert.fail(`timed out waiting for ${what}`);
}

/** A small dataset of the provider, uploaded over tus and validated. */
async function dataset() {
  const csv = Buffer.from('x,y\n' + Array.from({ length: 40 }, (_, i) => `${i},${i % 2}`).join('\n') + '\n');
  const tus = { 'Tus-Resumable': '1.0.0', Authorization: `Bearer ${provider.token}` };
  let res = await fetch(`${h.server.url}/api/v1/datasets`, {
    method: 'POST', headers: { ...tus, 'Content-Type': 'application/json', 'Upload-Length': String(csv.length) },
    body: JSON.stringify({ name: 'transactions', schema: { columns: [{ name: 'x', type: 'number' }, { name: 'y', type: 'integer' }], label: 'y', label_values: ['0', '1'] } }),
  });
  const created = await res.text();
  assert.equal(res.status, 201, created);
  const ds = JSON.parse(created);
  res = await fetch(`${h.server.url}/api/v1/datasets/${ds.id}/content`, {
    method: 'PATCH', headers: { ...tus, 'Content-Type': 'application/offset+octet-stream', 'Upload-Offset': '0' }, body: csv,
  });
  assert.equal(res.status, 204, await res.text());
  await until('the dataset ready', async () => (await as(provider, 'GET', `/api/v1/datasets/${ds.id}`)).json.status === 'ready');
  return ds;
}

async function check(pg, label) {
  violations.push(...(await h.axe(pg, label)));
}

before(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'dcms-ui-enclaves-'));
  const images = path.join(work, 'images');
  fs.mkdirSync(images);
  for (const name of ['dcms-workload', 'signed-workload']) {
    fs.copyFileSync(workload, path.join(images, name));
    fs.chmodSync(path.join(images, name), 0o755);
  }
  // The operator's signing key, made now (nothing committed), signs one image; PCR8 is its signer.
  let r = spawn('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:secp384r1', '-sha384', '-nodes',
    '-keyout', path.join(work, 'key.pem'), '-out', path.join(work, 'cert.pem'), '-days', '30', '-subj', '/CN=dcms UI test signer'], { encoding: 'utf8', timeout: 30000 });
  assert.equal(r.status, 0, r.stderr);
  r = spawn(dcmsBin, ['image', 'sign', '--key', path.join(work, 'key.pem'), '--cert', path.join(work, 'cert.pem'), path.join(images, 'signed-workload')], { encoding: 'utf8', timeout: 60000 });
  assert.equal(r.status, 0, r.stderr);
  pcr8 = r.stdout.match(/^PCR8 ([0-9a-f]{96})$/m)[1];

  h = await harness({ DCMS_TRAINING_WORKERS: '1', DCMS_ENCLAVE_IMAGES_DIR: images, DCMS_ENCLAVE_METRICS_INTERVAL_MS: '250', DCMS_ENCLAVE_MAX_MEMORY_MB: '512' });
  provider = await h.user(['provider']);
  consumer = await h.user(['consumer']);
  auditor = await h.user(['auditor']);
  for (const u of [provider, consumer, auditor]) u.token = (await login(h.server, u.email, PW)).access_token;
  await signingKey(provider);
  await signingKey(consumer);
  active = await contract('Fraud model (enclaves)', 'active');
  pending = await contract('Awaiting the provider', 'pending_signature');
  paused = await contract('Paused collaboration', 'active');

  enc.main = await enclave('fraud-training', 'signed-workload', { contractId: active.id, signers: [pcr8] });
  assert.equal(enc.main.status, 'running', enc.main.status_reason);
  enc.paused = await enclave('paused-training', 'signed-workload', { contractId: paused.id, signers: [pcr8] });
  const s = await as(provider, 'POST', `/api/v1/contracts/${paused.id}/suspend`, { reason: 'audit pending' });
  assert.equal(s.status, 200, JSON.stringify(s.json));
  enc.scratch = await enclave('scratch', 'dcms-workload');
  assert.equal((await as(provider, 'POST', `/api/v1/enclaves/${enc.scratch.id}/terminate`, { reason: 'not needed' })).status, 200);
  // An unsigned image under a pinned signer: the attestation fails on PCR8, the enclave is failed.
  enc.failed = await enclave('unsigned', 'dcms-workload', { signers: [pcr8] });
  assert.equal(enc.failed.status, 'failed');

  // A dataset in use under an active contract, and a training that fails: no trainer image is
  // installed here, so no enclave can be provisioned for it.
  ds = await dataset();
  const base = validTerms();
  training = await contract('Model training', 'active', validTerms({
    data_access: { datasets: [ds.id], permissions: ['train'] },
    usage: { ...base.usage, allowed_model_types: ['logistic_regression'] },
  }));
  const j = await as(consumer, 'POST', `/api/v1/contracts/${training.id}/trainings`, { datasets: [ds.id], label: 'y', model: 'logistic_regression', epochs: 1 });
  assert.equal(j.status, 202, JSON.stringify(j.json));
  job = await until('the training failed', async () => {
    const r = (await as(consumer, 'GET', `/api/v1/trainings/${j.json.id}`)).json;
    return ['failed', 'succeeded', 'cancelled'].includes(r.state) && r;
  });
  assert.equal(job.state, 'failed', JSON.stringify(job));
});

after(async () => {
  await h?.close();
  if (work) fs.rmSync(work, { recursive: true, force: true });
  console.log(`# enclaves and home: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
});

let pg;

test('sign-in lands on the home page: the contract awaiting my signature', async () => {
  pg = await h.page();
  await h.signIn(pg, provider);
  assert.match(pg.url(), /#\/home$/);
  const sign = pg.getByTestId('home-sign');
  await sign.getByRole('link', { name: 'Awaiting the provider' }).waitFor();
  assert.equal(await sign.getByRole('link', { name: 'Fraud model (enclaves)' }).count(), 0, 'signed contracts are not listed');
  const datasets = pg.getByTestId('home-datasets');
  await datasets.getByRole('link', { name: 'transactions' }).waitFor();
  await datasets.getByRole('link', { name: 'Model training' }).waitFor();
  const trainings = pg.getByTestId('home-trainings');
  await trainings.getByRole('link', { name: `Training ${job.id.slice(0, 8)}` }).waitFor();
  assert.match(await trainings.locator('li').first().textContent(), /Failed\s*logistic_regression · Model training/);
  assert.ok(await pg.evaluate(() => document.documentElement.scrollWidth <= innerWidth), 'nothing scrolls sideways');
  assert.equal(await pg.getByTestId('home-verdict').count(), 0, 'no compliance panels for a provider');
  await check(pg, 'home (provider)');
});

test('the enclave list: filters in the URL, a refused filter on its field, the empty state', async () => {
  await pg.getByRole('link', { name: 'Enclaves', exact: true }).click();
  await pg.getByRole('heading', { level: 1, name: 'Enclaves' }).waitFor();
  const rows = pg.locator('table.enclaves tbody tr');
  await rows.nth(3).waitFor();
  await countIs(rows, 4);
  await check(pg, 'enclave list');

  await pg.getByLabel('State').selectOption('terminated');
  await pg.getByRole('button', { name: 'Filter' }).click();
  await pg.waitForURL(/#\/enclaves\?status=terminated$/);
  // The unfiltered list holds scratch too: wait for the other rows to leave.
  await countIs(rows, 1);
  await pg.locator('table.enclaves').getByRole('link', { name: 'scratch' }).waitFor();
  await pg.reload(); // the filter is in the URL
  await pg.locator('table.enclaves').getByRole('link', { name: 'scratch' }).waitFor();
  assert.equal(await pg.getByLabel('State').inputValue(), 'terminated');

  await pg.goto(`${h.base}/#/enclaves?contract_id=${active.id}`);
  await pg.locator('table.enclaves').getByRole('link', { name: 'fraud-training' }).waitFor();
  await countIs(rows, 1);
  assert.equal(await pg.getByLabel('Contract id').inputValue(), active.id);

  await pg.getByLabel('Contract id').fill('not-a-uuid');
  await pg.getByRole('button', { name: 'Filter' }).click();
  await pg.locator('#e-contract-problems').waitFor();
  await pg.locator('.summary').getByText('contract_id').waitFor();
  assert.equal(await pg.locator('#e-contract').getAttribute('aria-invalid'), 'true');
  await check(pg, 'enclave list (refused filter)');

  await pg.goto(`${h.base}/#/enclaves?status=lost`);
  await pg.getByText('No enclave matches these filters.').waitFor();
});

test('an enclave: the attestation check by check with the contract rules, actions, the metrics chart and table', async () => {
  await pg.goto(`${h.base}/#/enclaves/${enc.main.id}`);
  await pg.getByRole('heading', { level: 1, name: 'fraud-training' }).waitFor();
  const e = (await as(provider, 'GET', `/api/v1/enclaves/${enc.main.id}`)).json;
  await pg.getByTestId('attestation-verdict').getByText(/^Verified .* against the local root$/).waitFor();
  const row = (id) => pg.locator(`[data-testid="checks"] tr[data-check="${id}"]`);
  const cells = async (id) => (await row(id).locator('th, td').allTextContents()).map((s) => s.trim());
  // PCR0: the pinned measurement, expected and actual.
  let c = await cells('pcr0');
  assert.equal(c[1], e.measurement.expected_pcr0);
  assert.equal(c[2], e.attestation.report.document.pcrs['0']);
  assert.match(c[3], /passed/);
  assert.match(c[4], /^Contract: terms\.security\.encryption_level = high/);
  // PCR8: the level pins signers; the signer is among them.
  c = await cells('signer');
  assert.equal(c[1], pcr8);
  assert.equal(c[2], pcr8);
  assert.match(c[3], /passed/);
  assert.match(c[4], /high: the image signers must be pinned/);
  c = await cells('nonce');
  assert.equal(c[1], e.attestation.nonce);
  assert.equal(c[2], e.attestation.nonce);
  assert.match((await cells('debug'))[4], /no level lets a debug-mode enclave serve/);
  assert.match((await cells('freshness'))[4], /at most 1 h|at most 60 min|at most/);
  for (const id of ['signature', 'age', 'encryption', 'tls', 'boot', 'isolation']) assert.match((await cells(id))[3], /passed/, id);
  await pg.getByTestId('compatibility').getByText(/agrees: this enclave may serve the contract now/).waitFor();
  await check(pg, 'enclave (running)');

  // Attest again: a fresh nonce.
  assert.equal(await pg.getByRole('button', { name: 'Resume' }).getAttribute('aria-disabled'), 'true');
  assert.equal(await pg.locator('#why-resume').textContent(), 'Only a suspended enclave can be resumed; this one is running.');
  await pg.getByRole('button', { name: 'Attest again' }).click();
  await pg.getByText('Attest again: done.').waitFor();
  const e2 = (await as(provider, 'GET', `/api/v1/enclaves/${enc.main.id}`)).json;
  assert.notEqual(e2.attestation.nonce, e.attestation.nonce);
  assert.equal((await cells('nonce'))[1], e2.attestation.nonce);

  // Suspend through the dialog (a reason), then resume.
  await pg.getByRole('button', { name: 'Suspend' }).click();
  const dlg = pg.getByRole('dialog');
  await dlg.getByLabel('Reason (optional)').fill('maintenance window');
  await check(pg, 'enclave (suspend dialog)');
  await dlg.getByRole('button', { name: 'Suspend' }).click();
  await pg.locator('.heading .badge').getByText('Suspended').waitFor();
  await pg.getByTestId('compatibility').getByText(/may not serve the contract now \(enclave_status\)/).waitFor();
  assert.equal(await pg.getByRole('button', { name: 'Attest again' }).getAttribute('aria-disabled'), 'true');
  await pg.getByRole('button', { name: 'Resume' }).click();
  await pg.locator('.heading .badge').getByText('Running').waitFor();
  assert.equal((await as(provider, 'GET', `/api/v1/enclaves/${enc.main.id}`)).json.status, 'running');

  // Metrics: an SVG chart and the same samples in a table beside it.
  const chart = pg.getByTestId('metrics-chart');
  for (let i = 0; i < 40 && !(await chart.count()); i++) {
    await new Promise((ok) => setTimeout(ok, 250));
    await pg.getByRole('button', { name: 'Refresh the metrics' }).click();
  }
  await chart.locator('svg polyline').waitFor({ state: 'attached' }); // a flat line has no height
  assert.equal(await chart.locator('svg').getAttribute('role'), 'img');
  // A refresh clicked above may still be loading (one more sample when it lands): wait for
  // it, then count the table's rows and the chart's points in one look at the page.
  await pg.waitForFunction(() => [...document.querySelectorAll('button')]
    .some((b) => b.textContent === 'Refresh the metrics' && !b.disabled));
  const [n, npoints] = await pg.evaluate(() => [
    document.querySelectorAll('[data-testid="metrics-table"] tbody tr').length,
    document.querySelector('[data-testid="metrics-chart"] polyline').getAttribute('points').split(' ').length,
  ]);
  const m = (await as(provider, 'GET', `/api/v1/enclaves/${enc.main.id}/metrics`)).json;
  assert.ok(n >= 2 && n <= m.history.length, `${n} rows, ${m.history.length} samples`);
  assert.equal(npoints, n);
  assert.equal(await pg.locator('main [style]').count(), 0, 'no inline style attribute');
  await check(pg, 'enclave (metrics)');
});

test('the contract page lists its enclaves; an enclave whose contract is suspended says why it cannot resume', async () => {
  await pg.goto(`${h.base}/#/contracts/${active.id}`);
  await pg.getByRole('heading', { level: 2, name: 'Enclaves serving this contract' }).waitFor();
  await pg.locator('table.enclaves').getByRole('link', { name: 'fraud-training' }).click();
  await pg.getByRole('heading', { level: 1, name: 'fraud-training' }).waitFor();

  await pg.goto(`${h.base}/#/enclaves/${enc.paused.id}`);
  await pg.getByRole('heading', { level: 1, name: 'paused-training' }).waitFor();
  await pg.locator('.heading .badge').getByText('Suspended').waitFor();
  assert.equal(await pg.getByRole('button', { name: 'Resume' }).getAttribute('aria-disabled'), 'true');
  assert.equal(await pg.locator('#why-resume').textContent(), 'Its contract is suspended: an enclave runs only for an active contract.');
  // Clicking a disabled action (still focusable) does nothing.
  await pg.getByRole('button', { name: 'Resume' }).click({ force: true });
  assert.equal((await as(provider, 'GET', `/api/v1/enclaves/${enc.paused.id}`)).json.status, 'suspended');
  await check(pg, 'enclave (suspended with its contract)');
  await pg.context().close();
});

test("an auditor's home: the chain verdict, the suspended contract, the failed enclave; its failed check", async () => {
  const ap = await h.page({ colorScheme: 'dark' });
  await h.signIn(ap, auditor);
  await ap.getByTestId('verdict').getByText(/^Verified through event \d+/).waitFor();
  await ap.getByTestId('home-suspended').getByRole('link', { name: 'Paused collaboration' }).waitFor();
  const failed = ap.getByTestId('home-failed');
  await failed.getByRole('link', { name: job.id.slice(0, 8) }).waitFor();
  assert.match(await failed.textContent(), new RegExp(job.reason_code));
  const anomalies = ap.getByTestId('home-anomalies');
  await anomalies.getByRole('link', { name: 'unsigned' }).waitFor();
  assert.equal(await ap.getByTestId('home-sign').count(), 0, 'no party panels for an auditor');
  await check(ap, 'home (auditor, dark)');

  await anomalies.getByRole('link', { name: 'unsigned' }).click();
  await ap.getByRole('heading', { level: 1, name: 'unsigned' }).waitFor();
  const signer = ap.locator('[data-testid="checks"] tr[data-check="signer"]');
  assert.match(await signer.textContent(), /Unsigned \(all zero\)/);
  assert.match(await signer.textContent(), /failed/);
  assert.match(await signer.textContent(), /Enclave policy:/);
  for (const name of ['Attest again', 'Suspend', 'Resume', 'Terminate']) {
    assert.equal(await ap.getByRole('button', { name }).getAttribute('aria-disabled'), 'true', name);
  }
  assert.equal(await ap.locator('#why-terminate').textContent(), "Only the enclave's provider (or an administrator) may do this.");
  await check(ap, 'enclave (failed, auditor, dark)');
  // On a phone: the checks stack, nothing scrolls sideways.
  await ap.setViewportSize({ width: 360, height: 740 });
  assert.ok(await ap.evaluate(() => document.documentElement.scrollWidth <= 360), 'the enclave page fits 360 px');
  await ap.goto(`${h.base}/#/enclaves/${enc.main.id}`);
  await ap.getByTestId('metrics-table').waitFor();
  assert.ok(await ap.evaluate(() => document.documentElement.scrollWidth <= 360), 'the metrics fit 360 px');
  await check(ap, 'enclave (360 px, dark)');
  await ap.context().close();

  assert.deepEqual(violations, []);
  assert.deepEqual(h.problems, []);
});
