// The three signature types on the signing sheet (docs/contracts.md,
// "Signatures"): a signer with no second factor sees `mfa` and `biometric`
// disabled, each with its reason; once an authenticator app is confirmed,
// `mfa` signs with the browser's Ed25519 key plus a code, and a wrong code's
// 422 lands on the code field (and in the summary); on the other side a
// passkey ceremony the authenticator cannot complete with user verification
// (CDP WebAuthn.setUserVerified false) is shown as refused and stores
// nothing, then the passkey signs (`biometric`) and the contract activates.
// axe-core on each state, light and dark.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, test } from 'node:test';
import { validTerms } from '../api/lib/contracts.mjs';
import { login } from '../api/lib/iam.mjs';
import { freePort, harness, PW } from './lib/harness.mjs';

/** The TOTP code of `secret` (base32) `k` steps from now (oathtool). */
function totp(secret, k) {
  const t = (Math.floor(Date.now() / 30000) + k) * 30;
  return execFileSync('oathtool', ['--totp', '-b', '-N', `@${t}`, secret], { encoding: 'utf8' }).trim();
}

let h;
let provider;
let consumer;
let id;
const a11y = [];

before(async () => {
  const port = await freePort();
  h = await harness({ DCMS_LISTEN: `127.0.0.1:${port}`, DCMS_WEBAUTHN_RP_ID: 'localhost', DCMS_WEBAUTHN_ORIGINS: `http://localhost:${port}` });
  provider = await h.user(['provider']);
  consumer = await h.user(['consumer']);
  const r = await h.call('POST', '/api/v1/contracts', {
    json: { title: 'Signature types', description: '', provider_id: provider.id, consumer_id: consumer.id, terms: validTerms() },
  });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  id = r.json.id;
  assert.equal((await h.call('POST', `/api/v1/contracts/${id}/submit`, { json: {} })).status, 200);
});

after(async () => {
  await h?.close();
});

async function sheet(pg) {
  await pg.goto(`${h.base}/#/contracts/${id}/sign`);
  await pg.getByRole('heading', { level: 1, name: 'Sign the contract' }).waitFor();
}

const radio = (pg, name) => pg.getByRole('radio', { name });

test('mfa: disabled with its reason until TOTP is confirmed; a wrong code on its field, then signed', async () => {
  const pg = await h.page();
  await h.signIn(pg, provider);
  await sheet(pg);
  await pg.locator('#why-type-biometric').waitFor();
  assert.equal(await radio(pg, /digital/).isChecked(), true, 'the Ed25519 key is the default');
  assert.equal(await radio(pg, /mfa/).isDisabled(), true);
  assert.match(await pg.locator('#why-type-mfa').textContent(), /Needs an authenticator app/);
  assert.equal(await radio(pg, /biometric/).isDisabled(), true);
  assert.match(await pg.locator('#why-type-biometric').textContent(), /Needs a passkey/);
  assert.equal(await radio(pg, /biometric/).getAttribute('aria-describedby'), 'why-type-biometric');
  a11y.push(...(await h.axe(pg, 'signing sheet, types disabled (light)')));

  // The key first: once a second factor exists, registering one asks for a sign-in with it.
  await pg.goto(`${h.base}/#/account`);
  await pg.getByRole('button', { name: 'Generate a key in this browser' }).click();
  await pg.getByText('Key generated and registered').waitFor();
  const token = (await login(h.server, provider.email, PW)).access_token;
  const en = await h.call('POST', '/api/v1/mfa/totp/enroll', { token });
  assert.equal(en.status, 201, JSON.stringify(en.json));
  assert.equal((await h.call('POST', '/api/v1/mfa/totp/confirm', { token, json: { code: totp(en.json.secret, 0) } })).status, 200);
  await sheet(pg);
  await radio(pg, /mfa/).check();
  await pg.getByTestId('key-fingerprint').waitFor(); // the same browser key signs
  assert.match(await pg.getByTestId('sign-method').textContent(), /fresh code of your authenticator app/);
  const code = pg.getByRole('textbox', { name: 'Authenticator code' });
  await code.fill('000000');
  await pg.getByLabel('I have read the terms and sign them').check();
  await pg.getByRole('button', { name: 'Sign', exact: true }).click();
  const problems = pg.locator('#f-totp-code-problems');
  await problems.waitFor();
  assert.match(await problems.textContent(), /totp_code/);
  assert.equal(await code.getAttribute('aria-invalid'), 'true');
  assert.match(await code.getAttribute('aria-describedby'), /f-totp-code-problems/);
  const summary = pg.locator('.summary');
  assert.match(await summary.textContent(), /totp_code/);
  await summary.getByRole('button', { name: 'totp_code' }).click();
  assert.equal(await pg.evaluate(() => document.activeElement.id), 'f-totp-code', 'the summary moves the focus to the field');
  a11y.push(...(await h.axe(pg, 'signing sheet, mfa with a problem (light)')));
  assert.deepEqual((await h.call('GET', `/api/v1/contracts/${id}`)).json.signatures, [], 'nothing signed');

  await code.fill(totp(en.json.secret, 1)); // the confirmation used this step's code
  await pg.getByRole('button', { name: 'Sign', exact: true }).click();
  await pg.locator('tr[data-side="provider"]').getByText('Signed', { exact: true }).waitFor();
  const s = (await h.call('GET', `/api/v1/contracts/${id}`)).json.signatures;
  assert.deepEqual(s.map((x) => [x.side, x.type, x.algorithm]), [['provider', 'mfa', 'Ed25519']]);
  assert.ok(s[0].evidence.totp_verified_at);
  await pg.context().close();
});

test('biometric: a ceremony without user verification is refused in the browser, then the passkey signs', async () => {
  const pg = await h.page({ colorScheme: 'dark' });
  const { cdp, authenticatorId } = await h.passkeyAuthenticator(pg);
  await h.signIn(pg, consumer);
  await pg.goto(`${h.base}/#/account`);
  await pg.getByLabel('Name of the new passkey').fill('laptop');
  await pg.getByRole('button', { name: 'Add a passkey' }).click();
  await pg.getByText('Passkey "laptop" added.').waitFor();
  await sheet(pg);
  await radio(pg, /biometric/).check();
  assert.equal(await pg.getByTestId('passkey-name').textContent(), 'laptop');
  assert.match(await pg.getByTestId('sign-method').textContent(), /user verification/);
  assert.equal(await pg.getByTestId('terms-hash').textContent(), (await h.call('GET', `/api/v1/contracts/${id}`)).json.terms_hash);

  await cdp.send('WebAuthn.setUserVerified', { authenticatorId, isUserVerified: false });
  await pg.getByLabel('I have read the terms and sign them').check();
  await pg.getByRole('button', { name: 'Sign', exact: true }).click();
  const summary = pg.locator('.summary');
  await summary.waitFor();
  assert.match(await summary.textContent(), /No passkey signed: .*cancelled.*none of your passkeys \(laptop\).*cannot verify you/);
  assert.equal(await pg.getByRole('heading', { level: 1, name: 'Sign the contract' }).count(), 1, 'still on the sheet');
  a11y.push(...(await h.axe(pg, 'signing sheet, passkey refused (dark)')));
  assert.equal((await h.call('GET', `/api/v1/contracts/${id}`)).json.signatures.length, 1, 'only the provider signed');

  await cdp.send('WebAuthn.setUserVerified', { authenticatorId, isUserVerified: true });
  await pg.getByRole('button', { name: 'Sign', exact: true }).click();
  await pg.locator('tr[data-side="consumer"]').getByText('Signed', { exact: true }).waitFor();
  const c = (await h.call('GET', `/api/v1/contracts/${id}`)).json;
  const s = c.signatures.find((x) => x.side === 'consumer');
  assert.equal(s.type, 'biometric');
  assert.equal(s.evidence.user_verified, true);
  const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
  assert.equal(s.key_id, Buffer.from(credentials[0].credentialId, 'base64').toString('base64url'));
  const v = (await h.call('GET', `/api/v1/contracts/${id}/verify`)).json;
  assert.deepEqual(v.signatures.map((x) => [x.side, x.type, x.valid]).sort(), [['consumer', 'biometric', true], ['provider', 'mfa', true]]);
  assert.equal((await h.call('POST', `/api/v1/contracts/${id}/activate`, { json: {} })).status, 200, 'mfa and biometric together activate');
});

test('axe-core: no violation; no request to another origin, no CSP violation, no page error', () => {
  assert.deepEqual(a11y, []);
  assert.deepEqual(h.problems, []);
});
