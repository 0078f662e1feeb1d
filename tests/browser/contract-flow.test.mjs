// The whole contract flow in the web UI, as two people in two browsers: the
// provider signs in, drafts a contract (first with a mistake, whose problem
// must land on its field), submits and signs it with an Ed25519 key made in
// the browser; the consumer, in the other browser, adds a passkey (Chrome's
// virtual authenticator, user verification), signs with it (biometric) and
// activates, then downloads the provider's signature receipt from its row
// and checks it with dcmsd audit verify-receipt. Along the way: no secret
// in script-readable storage, legal actions only, axe-core on the screens,
// in light and dark mode, the banner when the API is unreachable, and no
// request to another origin.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { dcmsBin } from '../api/lib/server.mjs';
import { login } from '../api/lib/iam.mjs';
import { freePort, harness, PW } from './lib/harness.mjs';

/** The TOTP code of `secret` (base32) `k` steps from now (oathtool, as tests/api/mfa.test.mjs). */
function totp(secret, k) {
  const t = (Math.floor(Date.now() / 30000) + k) * 30;
  return execFileSync('oathtool', ['--totp', '-b', '-N', `@${t}`, secret], { encoding: 'utf8' }).trim();
}

let h;
let provider;
let consumer;
let prov; // the provider's page
let cons; // the consumer's page
let contractId;
const a11y = [];

before(async () => {
  const port = await freePort(); // the WebAuthn origin http://localhost:PORT is known before dcmsd starts
  h = await harness({ DCMS_LISTEN: `127.0.0.1:${port}`, DCMS_WEBAUTHN_RP_ID: 'localhost', DCMS_WEBAUTHN_ORIGINS: `http://localhost:${port}` });
  provider = await h.user(['provider']);
  consumer = await h.user(['consumer']);
  prov = await h.page();
  cons = await h.page({ colorScheme: 'dark' });
});

after(async () => {
  await h?.close();
});

const statusOf = (pg) => pg.locator('main .heading .badge').first().textContent();

test('sign in: the access token stays in memory, the refresh token in an HttpOnly cookie', async () => {
  await prov.goto(h.base + '/');
  await prov.getByRole('heading', { name: 'Sign in' }).waitFor();
  a11y.push(...(await h.axe(prov, 'sign in (light)')));
  // A wrong password: the API's message in the summary, the user stays on the form.
  await prov.getByLabel('E-mail').fill(provider.email);
  await prov.getByLabel('Password').fill('not the password');
  await prov.getByRole('button', { name: 'Sign in', exact: true }).click();
  await prov.locator('.summary').waitFor();
  await h.signIn(prov, provider);
  assert.equal(await prov.getByText('Loading dcms').count(), 0, 'the boot message is replaced');
  const storage = await prov.evaluate(() => ({ cookie: document.cookie, local: localStorage.length, session: sessionStorage.length }));
  assert.deepEqual(storage, { cookie: '', local: 0, session: 0 }, 'nothing readable by scripts');
  const cookies = await prov.context().cookies();
  const refresh = cookies.find((c) => c.name === '__Secure-dcms_refresh');
  assert.ok(refresh, 'the refresh cookie is set');
  assert.equal(refresh.path, '/api/v1/auth/refresh');
  assert.ok(refresh.httpOnly && refresh.secure && refresh.sameSite === 'Strict');
  // A reload keeps the session (through the cookie), with a new access token in memory.
  await prov.reload();
  await prov.getByRole('heading', { level: 1, name: 'Home' }).waitFor();
  await prov.getByRole('link', { name: 'Contracts', exact: true }).click();
  await prov.getByText('No contracts here.').waitFor();
  a11y.push(...(await h.axe(prov, 'contract list, empty (light)')));
});

test('a draft with a mistake: the problem lands on its field, then the draft is saved', async () => {
  await prov.getByRole('link', { name: 'New contract' }).first().click();
  await prov.getByRole('heading', { level: 1, name: 'New contract' }).waitFor();
  await prov.getByLabel('Title').fill('Fraud model on 2026 transactions');
  await prov.getByLabel('Description').fill('Gradient boosting inside an attested enclave');
  assert.equal(await prov.getByLabel('Provider identity id').inputValue(), provider.id, 'the provider is the signed-in user');
  await prov.getByLabel('Consumer identity id').fill(consumer.id);
  await prov.getByLabel('Datasets (one per line)').fill('s3://provider/records-2026');
  await prov.getByLabel('Purposes (one per line)').fill('fraud detection research');
  await prov.getByLabel('Allowed model types (one per line)').fill('gradient_boosting');
  await prov.getByLabel('Retention period (days)').fill('0');
  a11y.push(...(await h.axe(prov, 'editor (light)')));
  await prov.getByRole('button', { name: 'Save draft' }).click();

  const field = prov.getByLabel('Retention period (days)');
  const problems = prov.locator('#f-terms-retention-days-problems');
  await problems.waitFor();
  assert.match(await problems.textContent(), /terms\.retention\.days.*1 to 3650/);
  assert.equal(await field.getAttribute('aria-invalid'), 'true');
  assert.equal(await field.getAttribute('aria-describedby'), 'f-terms-retention-days-problems');
  const summary = prov.locator('.summary');
  assert.match(await summary.textContent(), /terms\.retention\.days/);
  // The summary's entry moves the focus to the field.
  await summary.getByRole('button', { name: 'terms.retention.days' }).click();
  assert.equal(await prov.evaluate(() => document.activeElement.id), 'f-terms-retention-days');
  a11y.push(...(await h.axe(prov, 'editor with problems (light)')));

  // The raw JSON mode shows the same problems by path.
  await prov.getByRole('button', { name: 'Raw JSON' }).click();
  const json = JSON.parse(await prov.getByLabel('Contract as JSON').inputValue());
  assert.equal(json.terms.retention.days, 0);
  assert.match(await prov.locator('#f-json-problems').textContent(), /terms\.retention\.days/);
  await prov.getByRole('button', { name: 'Form' }).click();

  await field.fill('30');
  await prov.getByRole('button', { name: 'Save draft' }).click();
  await prov.getByRole('heading', { level: 1, name: 'Fraud model on 2026 transactions' }).waitFor();
  contractId = prov.url().split('#/contracts/')[1];
  assert.match(contractId, /^[0-9a-f-]{36}$/);
  assert.equal(await statusOf(prov), 'Draft');

  // Edit the draft (PUT with If-Match): the parties are read-only, the change is saved.
  await prov.getByRole('button', { name: 'Edit', exact: true }).click();
  await prov.getByRole('heading', { level: 1, name: 'Edit contract' }).waitFor();
  assert.ok(await prov.getByLabel('Consumer identity id').evaluate((e) => e.readOnly), 'the parties are fixed');
  await prov.getByLabel('Description').fill('Gradient boosting, ten runs at most');
  await prov.getByRole('button', { name: 'Save draft' }).click();
  await prov.locator('p.prewrap').getByText('Gradient boosting, ten runs at most').waitFor(); // also in the versions diff
  const c = (await h.call('GET', `/api/v1/contracts/${contractId}`)).json;
  assert.equal(c.description, 'Gradient boosting, ten runs at most');
  assert.equal(c.version, 2);
});

test('the lifecycle stepper enables only legal actions, and says why for the others', async () => {
  const step = prov.locator('.stepper [aria-current="step"]');
  assert.match(await step.textContent(), /Draft/);
  const action = (name) => prov.locator('.actions li').filter({ has: prov.getByRole('button', { name, exact: true }) });
  for (const name of ['Edit', 'Submit for signature', 'Delete draft']) {
    assert.equal(await action(name).getByRole('button').getAttribute('aria-disabled'), null, `${name} enabled`);
  }
  for (const [name, why] of [['Sign', /pending signature/], ['Activate', /pending signature/], ['Suspend', /active contract can be suspended/], ['Terminate', /active or suspended contract can be terminated/]]) {
    const b = action(name).getByRole('button');
    assert.equal(await b.getAttribute('aria-disabled'), 'true', `${name} disabled`);
    const whyId = await b.getAttribute('aria-describedby');
    assert.match(await prov.locator('#' + whyId).textContent(), why, `${name} says why`);
    // Clicking a disabled action does nothing (force: it is aria-disabled, focusable on purpose).
    await b.click({ force: true });
  }
  assert.equal(await statusOf(prov), 'Draft');
  a11y.push(...(await h.axe(prov, 'contract detail, draft (light)')));

  await action('Submit for signature').getByRole('button').click();
  await prov.getByText('Submit for signature: done.').waitFor();
  assert.equal(await statusOf(prov), 'Pending signature');
  assert.equal(await action('Activate').getByRole('button').getAttribute('aria-disabled'), 'true');
  assert.match(await prov.locator('#why-activate').textContent(), /provider, consumer missing/);
});

test('the provider signs with an Ed25519 key made in this browser', async () => {
  await prov.getByRole('button', { name: 'Sign', exact: true }).click();
  await prov.getByRole('heading', { level: 1, name: 'Sign the contract' }).waitFor();
  const c = (await h.call('GET', `/api/v1/contracts/${contractId}`)).json;
  assert.equal(await prov.getByTestId('terms-hash').textContent(), c.terms_hash, 'the sheet shows the hash signed');
  assert.match(await prov.locator('.sheet').textContent(), /Signing forProvider/);
  assert.match(await prov.locator('.sheet').textContent(), /No key in this browser yet/);
  a11y.push(...(await h.axe(prov, 'signing sheet (light)')));
  await prov.getByLabel('I have read the terms and sign them').check();
  await prov.getByRole('button', { name: 'Sign', exact: true }).click();
  await prov.getByRole('heading', { level: 1, name: 'Fraud model on 2026 transactions' }).waitFor();
  await prov.locator('tr[data-side="provider"]').getByText('Signed', { exact: true }).waitFor();

  // The key: registered to the provider, private part not extractable, kept in IndexedDB.
  const rec = await prov.evaluate(async (id) => {
    const db = await new Promise((res, rej) => { const r = indexedDB.open('dcms'); r.onsuccess = () => res(r.result); r.onerror = () => rej(r.error); });
    const v = await new Promise((res) => { const g = db.transaction('signing-keys').objectStore('signing-keys').get(id); g.onsuccess = () => res(g.result); });
    return { keyId: v.keyId, extractable: v.privateKey.extractable, type: v.privateKey.type, alg: v.privateKey.algorithm.name, fingerprint: v.fingerprint };
  }, provider.id);
  assert.deepEqual({ extractable: rec.extractable, type: rec.type, alg: rec.alg }, { extractable: false, type: 'private', alg: 'Ed25519' });
  const keys = (await h.call('GET', `/api/v1/identities/${provider.id}/keys`)).json.keys;
  assert.deepEqual(keys.map((k) => [k.id, k.status]), [[rec.keyId, 'active']]);
  const sigs = (await h.call('GET', `/api/v1/contracts/${contractId}`)).json.signatures;
  assert.deepEqual(sigs.map((s) => [s.side, s.type, s.key_id, s.signer_id]), [['provider', 'digital', rec.keyId, provider.id]]);
  // Signing again is not offered: the side has signed this version.
  assert.match(await prov.locator('#why-sign').textContent(), /already signed/);
});

test('the consumer, in another browser (dark mode), signs with a passkey and activates', async () => {
  const { cdp, authenticatorId } = await h.passkeyAuthenticator(cons); // user verification on
  await h.signIn(cons, consumer);
  await cons.goto(`${h.base}/#/account`);
  await cons.getByLabel('Name of the new passkey').fill('phone');
  await cons.getByRole('button', { name: 'Add a passkey' }).click();
  await cons.getByText('Passkey "phone" added.').waitFor();
  await cons.getByRole('link', { name: 'Home', exact: true }).click();
  // Home lists the contract awaiting the consumer's signature.
  await cons.getByTestId('home-sign').getByRole('link', { name: 'Fraud model on 2026 transactions' }).waitFor();
  await cons.getByRole('link', { name: 'Contracts', exact: true }).click();
  await cons.locator('.tabs').getByRole('link', { name: /Pending signature/ }).click();
  await cons.getByRole('link', { name: 'Fraud model on 2026 transactions' }).waitFor();
  assert.match(cons.url(), /status=pending_signature/, 'the tab is in the URL');
  // The count of the tab.
  await cons.locator('.tabs a[aria-current="page"] .count').waitFor();
  assert.equal(await cons.locator('.tabs a[aria-current="page"] .count').textContent(), '1');
  a11y.push(...(await h.axe(cons, 'contract list (dark)')));
  await cons.getByRole('link', { name: 'Fraud model on 2026 transactions' }).click();
  await cons.getByRole('heading', { level: 1, name: 'Fraud model on 2026 transactions' }).waitFor();
  a11y.push(...(await h.axe(cons, 'contract detail (dark)')));
  await cons.getByRole('button', { name: 'Sign', exact: true }).click();
  await cons.getByRole('heading', { level: 1, name: 'Sign the contract' }).waitFor();
  assert.match(await cons.locator('.sheet').textContent(), /Signing forConsumer/);
  await cons.getByLabel('Passkey with user verification (biometric)').check();
  assert.equal(await cons.getByTestId('passkey-name').textContent(), 'phone', 'the sheet names the passkey');
  a11y.push(...(await h.axe(cons, 'signing sheet, passkey (dark)')));
  await cons.getByLabel('I have read the terms and sign them').check();
  await cons.getByRole('button', { name: 'Sign', exact: true }).click();
  await cons.locator('tr[data-side="consumer"]').getByText('Signed', { exact: true }).waitFor();

  const activate = cons.getByRole('button', { name: 'Activate' });
  assert.equal(await activate.getAttribute('aria-disabled'), null, 'both signed: activation is legal');
  await activate.click();
  await cons.getByText('Activate: done.').waitFor();
  assert.equal(await statusOf(cons), 'Active');

  const c = (await h.call('GET', `/api/v1/contracts/${contractId}`)).json;
  assert.equal(c.status, 'active');
  const v = (await h.call('GET', `/api/v1/contracts/${contractId}/verify`)).json;
  assert.equal(v.valid, true);
  assert.deepEqual(v.signatures.map((s) => [s.side, s.type, s.valid]).sort(), [['consumer', 'biometric', true], ['provider', 'digital', true]]);
  const sig = (side) => c.signatures.find((s) => s.side === side);
  assert.equal(sig('consumer').evidence.user_verified, true, 'the passkey verified the user');
  const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
  assert.deepEqual([sig('consumer').key_id], credentials.map((k) => Buffer.from(k.credentialId, 'base64').toString('base64url')), 'signed with the passkey of this browser');

  // Each signature row offers its audit receipt: the consumer (no audit:read) downloads the
  // provider's, and dcmsd audit verify-receipt checks it against the published audit key.
  const [dl] = await Promise.all([cons.waitForEvent('download'),
    cons.getByRole('button', { name: "Download the provider signature's audit receipt (JSON)" }).click()]);
  const receipt = JSON.parse(fs.readFileSync(await dl.path(), 'utf8'));
  assert.equal(receipt.event.action, 'contract.sign');
  assert.equal(receipt.event.id, sig('provider').audit_event_id);
  const keyFile = path.join(path.dirname(await dl.path()), 'audit-key.json');
  fs.writeFileSync(keyFile, JSON.stringify((await h.call('GET', '/api/v1/audit/public-key')).json));
  const vr = spawnSync(dcmsBin, ['audit', 'verify-receipt', await dl.path(), '--public-key', keyFile], { encoding: 'utf8' });
  assert.equal(vr.status, 0, vr.stdout + vr.stderr);

  // The provider's browser sees it active after a reload, with suspend now legal.
  await prov.reload();
  await prov.getByRole('heading', { level: 1, name: 'Fraud model on 2026 transactions' }).waitFor();
  assert.equal(await statusOf(prov), 'Active');
  assert.equal(await prov.getByRole('button', { name: 'Suspend' }).getAttribute('aria-disabled'), null);
  assert.equal(await cons.getByRole('button', { name: 'Suspend' }).getAttribute('aria-disabled'), 'true', 'the consumer may not suspend');
});

test('a banner says when the API cannot be reached, and goes when it is back', async () => {
  await prov.context().setOffline(true);
  await prov.locator('.tabs').getByRole('link', { name: /Active/ }).first().click().catch(() => {});
  await prov.getByRole('link', { name: 'Contracts', exact: true }).click();
  const banner = prov.locator('.banner:not(.hidden)');
  await banner.waitFor();
  assert.match(await banner.textContent(), /cannot be reached/);
  await prov.context().setOffline(false);
  await prov.locator('.banner.hidden').waitFor({ state: 'attached', timeout: 10000 });
});

test('sign out clears the session: the refresh cookie is gone and a reload asks to sign in', async () => {
  await prov.getByRole('button', { name: 'Sign out' }).click();
  await prov.getByRole('heading', { name: 'Sign in' }).waitFor();
  const cookies = await prov.context().cookies();
  assert.equal(cookies.find((c) => c.name === '__Secure-dcms_refresh'), undefined);
  await prov.reload();
  await prov.getByRole('heading', { name: 'Sign in' }).waitFor();
  a11y.push(...(await h.axe(cons, 'contract detail, active (dark)')));
});

test('sign in with a second factor on a phone: an authenticator code, then a recovery code', async () => {
  const u = await h.user(['consumer']);
  const token = (await login(h.server, u.email, PW)).access_token;
  const en = await h.call('POST', '/api/v1/mfa/totp/enroll', { token });
  assert.equal(en.status, 201, JSON.stringify(en.json));
  const conf = await h.call('POST', '/api/v1/mfa/totp/confirm', { token, json: { code: totp(en.json.secret, 0) } });
  assert.equal(conf.status, 200, JSON.stringify(conf.json));
  const pg = await h.page({ viewport: { width: 360, height: 740 } }); // a phone
  await pg.goto(h.base + '/');
  await pg.getByLabel('E-mail').fill(u.email);
  await pg.getByLabel('Password').fill(PW);
  await pg.getByRole('button', { name: 'Sign in', exact: true }).click();
  await pg.getByRole('heading', { level: 1, name: 'Second factor' }).waitFor();
  a11y.push(...(await h.axe(pg, 'second factor (light)')));
  // A wrong code: the problem is shown and the ticket can be tried again... with the right code.
  await pg.getByLabel('Authenticator code').fill('000000');
  await pg.getByRole('button', { name: 'Verify' }).click();
  await pg.locator('.summary').waitFor();
  await pg.getByRole('button', { name: 'Start again' }).click();
  assert.equal(await pg.getByLabel('E-mail').inputValue(), u.email, 'the e-mail is kept');
  await pg.getByLabel('Password').fill(PW);
  await pg.getByRole('button', { name: 'Sign in', exact: true }).click();
  await pg.getByLabel('Authenticator code').fill(totp(en.json.secret, 1)); // the confirmation used this step's
  await pg.getByRole('button', { name: 'Verify' }).click();
  await pg.getByRole('heading', { level: 1, name: 'Home' }).waitFor();
  a11y.push(...(await h.axe(pg, 'home (360 px)')));
  assert.ok(await pg.evaluate(() => document.documentElement.scrollWidth <= 360), 'the home page fits 360 px');
  await pg.goto(h.base + '/#/contracts');
  await pg.getByRole('heading', { level: 1, name: 'Contracts' }).waitFor();
  a11y.push(...(await h.axe(pg, 'contract list (360 px)')));
  await pg.goto(h.base + '/#/contracts/new');
  await pg.getByRole('heading', { level: 1, name: 'New contract' }).waitFor();
  a11y.push(...(await h.axe(pg, 'editor (360 px)')));
  assert.ok(await pg.evaluate(() => document.documentElement.scrollWidth <= 360), 'no horizontal scrolling at 360 px');
  const me = await pg.evaluate(async () => (await fetch('/api/v1/auth/me')).status);
  assert.equal(me, 401, 'no ambient credential: the API needs the bearer token only the app holds');

  await pg.getByRole('button', { name: 'Sign out' }).click();
  await pg.getByLabel('E-mail').fill(u.email);
  await pg.getByLabel('Password').fill(PW);
  await pg.getByRole('button', { name: 'Sign in', exact: true }).click();
  await pg.getByRole('button', { name: 'Use a recovery code instead' }).click();
  await pg.getByLabel('Recovery code').fill(conf.json.recovery_codes[0]);
  await pg.getByRole('button', { name: 'Verify' }).click();
  await pg.getByRole('heading', { level: 1, name: 'Home' }).waitFor();
  // The recovery code is used up: it does not work a second time.
  const again = await fetch(`${h.server.url}/api/v1/auth/login`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ email: u.email, password: PW, recovery_code: conf.json.recovery_codes[0] }),
  });
  assert.equal(again.status, 401);
});

test('axe-core: no violation on the screens visited', () => {
  assert.deepEqual(a11y, []);
});

test('no request left for another origin, no CSP violation, no page error', () => {
  assert.deepEqual(h.problems, []);
});
