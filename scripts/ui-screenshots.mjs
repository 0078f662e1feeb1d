#!/usr/bin/env node
// Regenerates the screenshots of docs/ui.md (`make ui-screenshots`).
//
// Starts its own dcmsd (DCMS_BIN, default build/dcmsd) on 127.0.0.1 and a
// free port with a temporary data directory (SQLite), makes the data the
// screens show through the public API (two organizations, a provider, a
// consumer, an auditor, a pending registration, a dataset, contracts in
// several states, one edited after a signature, a finished training), then
// opens the UI in Debian's chromium (launched as tests/browser does) at
// http://localhost:PORT with a 1280x800 viewport, en-GB, UTC, light mode and
// reduced motion, and writes one PNG per screen into docs/ui/ (or the
// directory given as the first argument). Each PNG is the viewport at most,
// clipped to the page's height. dcmsd and the data directory are removed at
// the end, whatever happens.
//
//   node scripts/ui-screenshots.mjs [OUT_DIR]
import { spawn } from 'node:child_process';
import { generateKeyPairSync, sign } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium } from '../tests/browser/lib/chromium.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bin = path.resolve(process.env.DCMS_BIN ?? path.join(root, 'build', 'dcmsd'));
const out = path.resolve(process.argv[2] ?? path.join(root, 'docs', 'ui'));
const CSV = fs.readFileSync(path.join(root, 'tests/data/breast_cancer.csv'));
const ADMIN = { email: 'admin@dcms.local', password: 'dev-admin-passphrase' };
const PW = 'correct horse battery staple';
const VIEW = { width: 1280, height: 800 };

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function startDcmsd(port, dataDir) {
  if (!fs.existsSync(bin)) throw new Error(`dcmsd not found at ${bin} (make build, or set DCMS_BIN)`);
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('DCMS_')) env[k] = v;
  Object.assign(env, {
    DCMS_LISTEN: `127.0.0.1:${port}`,
    DCMS_DATA_DIR: dataDir,
    DCMS_LOG_LEVEL: 'warn',
    DCMS_ADMIN_EMAIL: ADMIN.email,
    DCMS_ADMIN_PASSWORD: ADMIN.password,
    DCMS_TRAINING_WORKERS: '1',
    DCMS_WEBAUTHN_RP_ID: 'localhost',
    DCMS_WEBAUTHN_ORIGINS: `http://localhost:${port}`,
  });
  const proc = spawn(bin, [], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (c) => {
    if (stderr.length < 65536) stderr += c;
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 150; i++) {
    if (proc.exitCode !== null) break;
    try {
      if ((await fetch(url + '/healthz')).ok) return { proc, url };
    } catch {
      /* not listening yet */
    }
    await sleep(100);
  }
  proc.kill('SIGKILL');
  throw new Error(`dcmsd did not start:\n${stderr}`);
}

function client(url) {
  async function call(method, p, { token, json, body, headers = {} } = {}) {
    const res = await fetch(url + p, {
      method,
      headers: { ...(token ? { Authorization: `Bearer ${token}` } : {}), ...(json ? { 'Content-Type': 'application/json' } : {}), ...headers },
      body: json ? JSON.stringify(json) : body,
      signal: AbortSignal.timeout(30000),
    });
    const text = await res.text();
    const j = text ? JSON.parse(text) : null;
    if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${text}`);
    return j;
  }
  const login = async (email, password) => (await call('POST', '/api/v1/auth/login', { json: { email, password } })).access_token;
  return { call, login };
}

/** Makes the data the screens show; returns what the screens open. */
async function seed(api) {
  const admin = await api.login(ADMIN.email, ADMIN.password);
  const A = (m, p, o = {}) => api.call(m, p, { token: admin, ...o });
  const org = async (name) => A('POST', '/api/v1/identities', { json: { kind: 'organization', name } });
  const acme = await org('Acme Health');
  const north = await org('Northwind Analytics');
  async function person(name, email, roles, o) {
    // In an organization, provider/consumer/org_admin are the membership's roles.
    const platform = o ? roles.filter((r) => !['provider', 'consumer', 'org_admin'].includes(r)) : roles;
    const i = await A('POST', '/api/v1/identities', { json: { name, email, password: PW, roles: platform } });
    if (o) await A('POST', `/api/v1/organizations/${o.id}/members`, { json: { identity_id: i.id, roles: roles.filter((r) => !platform.includes(r)), reason: 'founding member' } });
    return { ...i, email, token: await api.login(email, PW) };
  }
  // The contract parties act for themselves (a member's datasets and contracts would be its
  // organization's); the organizations get members of their own for the admin screens.
  const paula = await person('Paula Provider', 'paula@example.com', ['provider']);
  const carl = await person('Carl Consumer', 'carl@example.com', ['consumer']);
  await person('Olivia Ortega', 'olivia@acme.example', ['provider', 'org_admin'], acme);
  await person('Omar Osei', 'omar@acme.example', ['provider'], acme);
  await person('Nina Novak', 'nina@northwind.example', ['consumer', 'org_admin'], north);
  const audrey = await person('Audrey Auditor', 'audrey@dcms.example', ['auditor']);
  await api.call('POST', '/api/v1/identities', { json: { name: 'Sam Newcomer', email: 'sam@example.org', password: 'sam long passphrase' } });

  const header = CSV.toString('latin1').split('\n')[0].split(',');
  const schema = { columns: header.map((name) => ({ name, type: name === 'diagnosis' ? 'integer' : 'number' })), label: 'diagnosis', label_values: ['0', '1'] };
  const ds = await api.call('POST', '/api/v1/datasets', { token: paula.token, json: { name: 'Breast cancer (UCI)', description: 'Wisconsin diagnostic data set, 569 rows', schema } });
  await api.call('PUT', `/api/v1/datasets/${ds.id}/content`, { token: paula.token, body: CSV, headers: { 'Content-Type': 'text/csv' } });

  for (const u of [paula, carl]) {
    const { publicKey, privateKey } = generateKeyPairSync('ed25519');
    const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x, 'base64url');
    const ch = await api.call('POST', `/api/v1/identities/${u.id}/keys/challenge`, { token: u.token });
    const msg = Buffer.concat([Buffer.from('dcms-signing-key-pop:'), Buffer.from(ch.challenge, 'base64url'), raw]);
    const k = await api.call('POST', `/api/v1/identities/${u.id}/keys`, { token: u.token, json: { public_key: raw.toString('base64url'), challenge_id: ch.challenge_id, signature: sign(null, msg, privateKey).toString('base64url') } });
    u.key = { id: k.id, privateKey };
  }
  const signAs = (u, c) =>
    api.call('POST', `/api/v1/contracts/${c.id}/sign`, { token: u.token, json: { type: 'digital', terms_hash: c.terms_hash, key_id: u.key.id, signature: sign(null, Buffer.from(c.terms_hash, 'hex'), u.key.privateKey).toString('base64') } });

  const now = Date.now();
  const terms = (over = {}) => ({
    data_access: { datasets: [ds.id], permissions: ['train'] },
    usage: { purposes: ['diagnosis research'], allowed_model_types: ['logistic_regression'], max_training_runs: 5, raw_data_export: false },
    retention: { days: 90, deletion: 'crypto_shred' },
    security: { encryption_level: 'standard', network_isolation: true, audit_logging: true },
    compliance: { frameworks: ['GDPR'], data_residency: ['DE'] },
    pricing: { model: 'fixed', amount: 250000, currency: 'EUR' },
    effective_from: new Date(now - 86400e3).toISOString(),
    expires_at: new Date(now + 365 * 86400e3).toISOString(),
    ...over,
  });
  const contract = (title, description, t) =>
    api.call('POST', '/api/v1/contracts', { token: paula.token, json: { title, description, provider_id: paula.id, consumer_id: carl.id, terms: t } });
  const submit = (u, c) => api.call('POST', `/api/v1/contracts/${c.id}/submit`, { token: u.token, json: {} });

  // Active, with a finished training.
  let active = await contract('Diagnosis model', 'A logistic regression on the Wisconsin data, trained in an enclave.', terms());
  active = await submit(paula, active);
  await signAs(paula, active);
  await signAs(carl, active);
  active = await api.call('POST', `/api/v1/contracts/${active.id}/activate`, { token: carl.token, json: {} });
  const job = await api.call('POST', `/api/v1/contracts/${active.id}/trainings`, {
    token: carl.token,
    json: { datasets: [ds.id], label: 'diagnosis', model: 'logistic_regression', optimizer: 'sgd', epochs: 60, batch_size: 0, learning_rate: 0.1, l2: 0, seed: 1, split: { method: 'modulo', folds: 5, holdout_fold: 4 } },
  });
  // Pending the consumer's and the provider's signatures again: edited after the provider signed.
  let pending = await contract('Readmission risk study', 'Provider signed version 1; the consumer asked for more runs and a second purpose.', terms({ usage: { purposes: ['readmission research'], allowed_model_types: ['logistic_regression'], max_training_runs: 5, raw_data_export: false } }));
  pending = await submit(paula, pending);
  await signAs(paula, pending);
  const cur = await api.call('GET', `/api/v1/contracts/${pending.id}`, { token: carl.token });
  await api.call('PUT', `/api/v1/contracts/${pending.id}`, {
    token: carl.token,
    headers: { 'If-Match': `"${cur.version}"` },
    json: { title: cur.title, description: cur.description, provider_id: paula.id, consumer_id: carl.id, terms: { ...cur.terms, usage: { ...cur.terms.usage, max_training_runs: 8, purposes: ['readmission research', 'teaching'] } } },
  });
  pending = await submit(carl, pending);
  // A draft, and a suspended one, so the tabs have counts.
  const draft = await contract('Churn prediction pilot', '', terms({ usage: { purposes: ['churn analysis'], allowed_model_types: ['logistic_regression'], max_training_runs: 2, raw_data_export: false } }));
  let susp = await contract('Imaging pilot', '', terms());
  susp = await submit(paula, susp);
  await signAs(paula, susp);
  await signAs(carl, susp);
  await api.call('POST', `/api/v1/contracts/${susp.id}/activate`, { token: carl.token, json: {} });
  await api.call('POST', `/api/v1/contracts/${susp.id}/suspend`, { token: paula.token, json: { reason: 'consent records under review' } });

  for (let i = 0; i < 300; i++) {
    const j = await api.call('GET', `/api/v1/trainings/${job.id}`, { token: carl.token });
    if (['succeeded', 'failed', 'cancelled'].includes(j.state)) {
      if (j.state !== 'succeeded') throw new Error(`training ${j.state}: ${j.reason_code} ${j.reason}`);
      break;
    }
    await sleep(200);
  }
  return { paula, carl, audrey, ds, active, pending, draft, job, acme };
}

async function main() {
  const port = await freePort();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcms-shots-'));
  let server = null;
  let browser = null;
  const t0 = Date.now();
  try {
    server = await startDcmsd(port, dataDir);
    const api = client(server.url);
    const d = await seed(api);
    browser = await launchChromium();
    console.log(`chromium ${browser.version()}; writing ${path.relative(root, out) || '.'}/`);
    fs.mkdirSync(out, { recursive: true });
    const base = `http://localhost:${port}`;
    const written = [];

    async function context() {
      const ctx = await browser.newContext({ viewport: VIEW, deviceScaleFactor: 1, locale: 'en-GB', timezoneId: 'UTC', colorScheme: 'light', reducedMotion: 'reduce' });
      const pg = await ctx.newPage();
      pg.setDefaultTimeout(20000);
      return pg;
    }
    async function signIn(pg, email, password = PW) {
      await pg.goto(base + '/');
      await pg.getByLabel('E-mail').fill(email);
      await pg.getByLabel('Password').fill(password);
      await pg.getByRole('button', { name: 'Sign in', exact: true }).click();
      await pg.getByRole('heading', { level: 1, name: 'Home' }).waitFor();
    }
    async function go(pg, hash, ready) {
      await pg.goto(`${base}/#${hash}`);
      await ready(pg);
    }
    /** The viewport, clipped to the end of the screen's content; or `locator`'s box with a margin. */
    async function shot(pg, name, locator) {
      await pg.evaluate(() => document.activeElement?.blur());
      const file = path.join(out, name + '.png');
      let clip;
      if (locator) {
        await locator.scrollIntoViewIfNeeded();
        const b = await locator.boundingBox();
        const x = Math.max(0, b.x - 16);
        const y = Math.max(0, b.y - 16);
        clip = { x, y, width: Math.min(VIEW.width - x, b.width + 32), height: Math.min(VIEW.height - y, b.height + 32) };
      } else {
        await pg.evaluate(() => window.scrollTo(0, 0));
        const bottom = await pg.evaluate(() => Math.ceil(document.querySelector('main').getBoundingClientRect().bottom));
        clip = { x: 0, y: 0, width: VIEW.width, height: Math.min(VIEW.height, bottom + 8) };
      }
      await pg.screenshot({ path: file, clip });
      written.push(file);
    }
    const heading = (name) => (pg) => pg.getByRole('heading', { level: 1, name }).waitFor();

    // Signed out.
    let pg = await context();
    await pg.goto(base + '/');
    await pg.getByRole('button', { name: 'Sign in', exact: true }).waitFor();
    await shot(pg, 'signin');
    await pg.context().close();

    // The provider.
    pg = await context();
    await signIn(pg, d.paula.email);
    await pg.getByRole('heading', { level: 2 }).first().waitFor();
    await pg.getByText('Loading').first().waitFor({ state: 'detached' }).catch(() => {});
    await shot(pg, 'home');
    await go(pg, '/contracts', (p) => p.locator('table.contracts tbody tr').first().waitFor());
    await pg.locator('.tabs .count').first().waitFor();
    await shot(pg, 'contracts');
    await go(pg, `/contracts/${d.pending.id}`, (p) => p.getByTestId('diff').waitFor());
    await shot(pg, 'contract');
    await shot(pg, 'terms-diff', pg.locator('section', { has: pg.getByTestId('diff') }).last());
    await go(pg, `/contracts/${d.pending.id}/sign`, (p) => p.getByTestId('terms-hash').waitFor());
    await pg.getByTestId('diff').waitFor();
    await shot(pg, 'signing-sheet');
    await go(pg, `/contracts/${d.draft.id}/edit`, heading(/Edit/));
    await pg.locator('#f-terms-retention-days').fill('0');
    await pg.getByRole('button', { name: 'Save draft' }).click();
    await pg.locator('#f-terms-retention-days-problems').waitFor();
    await shot(pg, 'terms-editor');
    await shot(pg, 'terms-editor-field', pg.locator('fieldset.section', { has: pg.locator('#f-terms-retention-days') }));
    await go(pg, `/datasets/${d.ds.id}`, (p) => p.getByTestId('ds-report').waitFor());
    await shot(pg, 'dataset');
    await go(pg, '/account', heading('Account'));
    await pg.getByTestId('factors').waitFor();
    await pg.getByTestId('sessions').waitFor();
    await shot(pg, 'account');
    await pg.context().close();

    // The consumer's training.
    pg = await context();
    await signIn(pg, d.carl.email);
    await go(pg, `/trainings/${d.job.id}`, (p) => p.getByTestId('metrics').waitFor());
    await shot(pg, 'training');
    await pg.context().close();

    // The auditor.
    pg = await context();
    await signIn(pg, d.audrey.email);
    await go(pg, '/audit', heading('Audit'));
    await pg.locator('table.events tbody tr').first().waitFor();
    await pg.getByRole('button', { name: 'Verify the audit chain' }).click();
    await pg.getByTestId('verdict').waitFor();
    await pg.getByTestId('browser-verdict').locator('strong').waitFor();
    await shot(pg, 'audit');
    await pg.context().close();

    // The admin.
    pg = await context();
    await signIn(pg, ADMIN.email, ADMIN.password);
    await go(pg, '/admin/identities', (p) => p.locator('tr[data-identity]').first().waitFor());
    await shot(pg, 'admin-identities');
    await go(pg, '/admin/identities/new', (p) => p.locator('#f-name').waitFor());
    await pg.locator('#f-name').fill('Rita Reviewer');
    await pg.locator('#f-email').fill('rita@example.com');
    await pg.locator('#f-password').fill('short');
    await pg.getByLabel('auditor', { exact: true }).check();
    await pg.getByRole('button', { name: 'Create the identity' }).click();
    await pg.locator('#f-password-problems').waitFor();
    await shot(pg, 'admin-new-identity', pg.getByTestId('identity-form'));
    await go(pg, `/admin/organizations/${d.acme.id}`, (p) => p.getByTestId('members').waitFor());
    await shot(pg, 'admin-organization');
    await go(pg, '/admin/keys', (p) => p.getByTestId('dk-facts').waitFor());
    await pg.getByTestId('jwks').waitFor();
    await shot(pg, 'admin-keys');
    await pg.context().close();

    let total = 0;
    for (const f of written) {
      const n = fs.statSync(f).size;
      total += n;
      console.log(`  ${path.relative(root, f)}  ${(n / 1024).toFixed(0)} KiB`);
    }
    console.log(`${written.length} screenshots, ${(total / 1024).toFixed(0)} KiB, in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  } finally {
    await browser?.close().catch(() => {});
    if (server) {
      server.proc.kill('SIGTERM');
      await new Promise((r) => {
        if (server.proc.exitCode !== null) return r();
        const timer = setTimeout(() => {
          server.proc.kill('SIGKILL');
          r();
        }, 10000);
        server.proc.on('exit', () => {
          clearTimeout(timer);
          r();
        });
      });
    }
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e?.stack ?? String(e));
  process.exit(1);
});
