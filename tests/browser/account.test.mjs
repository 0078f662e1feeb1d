// The account screen and passkey sign-in in a real browser: TOTP enrolment
// (the QR code decoded from a screenshot with zbarimg, the code computed
// here), a wrong code keeping the same secret, recovery codes downloaded and
// regenerated after a re-authentication in a dialog; passkeys registered,
// listed and removed one at a time through Chrome's virtual authenticator
// (CDP WebAuthn domain), then used as the second factor of a sign-in;
// signing keys generated and imported in the browser and shown by
// fingerprint, rotated and revoked; API keys for a service identity with
// their problems on their fields. axe-core on every state, light and dark.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, createHmac, generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ADMIN_EMAIL, ADMIN_PASSWORD, login } from '../api/lib/iam.mjs';
import { freePort, harness, PW } from './lib/harness.mjs';

let h;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dcms-ui-account-'));

before(async () => {
  const port = await freePort();
  h = await harness({
    DCMS_LISTEN: `127.0.0.1:${port}`,
    DCMS_WEBAUTHN_RP_ID: 'localhost',
    DCMS_WEBAUTHN_ORIGINS: `http://localhost:${port}`,
  });
});

after(async () => {
  await h?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

function base32(s) {
  const A = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let v = 0;
  const out = [];
  for (const c of s.replace(/=+$/, '')) {
    v = (v << 5) | A.indexOf(c);
    bits += 5;
    if (bits >= 8) {
      out.push((v >>> (bits - 8)) & 255);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

/** RFC 6238 (SHA-1, 6 digits, 30 s) at time step `step`. */
function totp(secret, step) {
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(step));
  const mac = createHmac('sha1', base32(secret)).update(msg).digest();
  const o = mac[19] & 15;
  return String((mac.readUInt32BE(o) & 0x7fffffff) % 1e6).padStart(6, '0');
}
const nowStep = () => Math.floor(Date.now() / 30000);

async function account(pg) {
  await pg.goto(`${h.base}/#/account`);
  await pg.getByRole('heading', { level: 1, name: 'Account' }).waitFor();
}

async function noAxe(pg, label) {
  assert.deepEqual(await h.axe(pg, label), []);
}

test('TOTP enrolment with a QR code, recovery codes downloaded, regenerated after re-authenticating', async () => {
  const u = await h.user(['provider']);
  const pg = await h.page();
  await h.signIn(pg, u);
  await pg.getByRole('link', { name: 'Account' }).click();
  await pg.getByRole('heading', { level: 1, name: 'Account' }).waitFor();
  await pg.getByText('Signing in needs only your password').waitFor();
  await pg.getByText('No passkeys yet.').waitFor();
  await pg.getByText('No signing keys yet.').waitFor();
  await noAxe(pg, 'account (empty)');

  await pg.getByRole('button', { name: 'Set up an authenticator app' }).click();
  const qr = pg.getByTestId('totp-qr');
  await qr.waitFor();
  const shot = path.join(tmp, 'qr.png');
  await qr.screenshot({ path: shot });
  const uri = execFileSync('zbarimg', ['-q', '--raw', shot], { encoding: 'utf8' }).trim();
  assert.match(uri, /^otpauth:\/\/totp\//);
  const secret = new URL(uri).searchParams.get('secret');
  assert.match(secret, /^[A-Z2-7]{32}$/);
  // The text form is the same secret.
  assert.equal((await pg.getByTestId('totp-secret').textContent()).replace(/\s+/g, ''), secret);
  await noAxe(pg, 'account (TOTP enrolment)');

  // A wrong code: its problem on the code field, and the same pending secret stays.
  const s = nowStep();
  const valid = new Set([s - 1, s, s + 1, s + 2].map((x) => totp(secret, x)));
  let wrong = 0;
  while (valid.has(String(wrong).padStart(6, '0'))) wrong++;
  await pg.getByLabel('Code from the app').fill(String(wrong).padStart(6, '0'));
  await pg.getByRole('button', { name: 'Confirm', exact: true }).click();
  const codeField = pg.locator('#f-totp-code');
  await pg.locator('#f-totp-code-problems').waitFor();
  assert.equal(await codeField.getAttribute('aria-invalid'), 'true');
  assert.equal((await pg.getByTestId('totp-secret').textContent()).replace(/\s+/g, ''), secret);

  const step = nowStep();
  await codeField.fill(totp(secret, step));
  await pg.getByRole('button', { name: 'Confirm', exact: true }).click();
  const box = pg.getByTestId('recovery-codes');
  await box.waitFor();
  const shown = (await box.locator('code').allTextContents()).map((c) => c.trim());
  assert.equal(shown.length, 10);
  for (const c of shown) assert.match(c, /^[a-z2-7]{4}(-[a-z2-7]{4}){3}$/);
  const [dl] = await Promise.all([pg.waitForEvent('download'), box.getByRole('button', { name: 'Download' }).click()]);
  assert.equal(dl.suggestedFilename(), 'dcms-recovery-codes.txt');
  const file = fs.readFileSync(await dl.path(), 'utf8').trim().split('\n');
  assert.deepEqual(file, shown);
  await noAxe(pg, 'account (recovery codes)');
  await box.getByRole('button', { name: 'I have saved them' }).click();
  await pg.getByTestId('recovery-left').getByText('10 recovery codes left').waitFor();
  await pg.getByTestId('factors').getByText('authenticator app').waitFor();

  // New recovery codes need a login made with the second factor: the dialog asks
  // for one (a recovery code here), then the change goes through.
  await pg.getByLabel('Current code from the app').fill(totp(secret, step + 1));
  await pg.getByRole('button', { name: 'New recovery codes' }).click();
  const dlg = pg.locator('dialog[open]');
  await dlg.getByRole('heading', { name: 'Confirm it is you' }).waitFor();
  await noAxe(pg, 'account (re-authentication dialog)');
  await dlg.getByLabel('Password').fill(PW);
  await dlg.getByRole('button', { name: 'Confirm', exact: true }).click();
  await dlg.getByRole('button', { name: 'Use a recovery code instead' }).click();
  await dlg.getByLabel('Recovery code').fill(shown[0]);
  await dlg.getByRole('button', { name: 'Verify' }).click();
  await box.waitFor();
  const fresh = (await box.locator('code').allTextContents()).map((c) => c.trim());
  assert.equal(fresh.length, 10);
  assert.equal(fresh.filter((c) => shown.includes(c)).length, 0);
  assert.equal(await pg.locator('dialog[open]').count(), 0);
  await box.getByRole('button', { name: 'I have saved them' }).click();
  await pg.getByTestId('recovery-left').getByText('10 recovery codes left').waitFor();
  // Turning TOTP off needs a current code: a wrong one lands on the code field, and TOTP stays on.
  await pg.getByLabel('Current code from the app').fill(String(wrong).padStart(6, '0'));
  await pg.getByRole('button', { name: 'Turn off' }).click();
  await pg.locator('#f-totp-code-problems').waitFor();
  await pg.getByText('10 recovery codes left').waitFor();

  // The session the dialog replaced is gone; the new one works after a reload.
  await pg.reload();
  await pg.getByRole('heading', { level: 1, name: 'Account' }).waitFor();
  await pg.getByTestId('recovery-left').waitFor();
  assert.deepEqual(h.problems, []);
  await pg.context().close();
});

test('passkeys: registered by name, listed with last use, one removed, the last never; then a passkey sign-in', async () => {
  const u = await h.user(['consumer']);
  const pg = await h.page({ colorScheme: 'dark' });
  const { cdp, authenticatorId } = await h.passkeyAuthenticator(pg);
  await h.signIn(pg, u);
  await account(pg);

  await pg.getByLabel('Name of the new passkey').fill('laptop');
  await pg.getByRole('button', { name: 'Add a passkey' }).click();
  await pg.getByText('Passkey "laptop" added.').waitFor();
  const rows = pg.locator('tr[data-passkey]');
  await rows.first().waitFor();
  assert.equal(await rows.count(), 1);
  assert.match(await rows.first().textContent(), /laptop.*never/);
  // The only second factor: removal is refused here, with the reason.
  const only = rows.first().getByRole('button', { name: 'Remove laptop' });
  assert.equal(await only.getAttribute('aria-disabled'), 'true');
  await pg.locator('#passkey-last').getByText('only second factor').waitFor();
  await noAxe(pg, 'account (one passkey, dark)');

  // Sign out, then in with the password and laptop's passkey as the second factor.
  await pg.getByRole('button', { name: 'Sign out', exact: true }).click();
  await pg.getByLabel('E-mail').fill(u.email);
  await pg.getByLabel('Password').fill(PW);
  await pg.getByRole('button', { name: 'Sign in', exact: true }).click();
  await pg.getByRole('heading', { level: 1, name: 'Second factor' }).waitFor();
  await noAxe(pg, 'sign-in (passkey step, dark)');
  await pg.getByRole('button', { name: 'Use a passkey', exact: true }).click();
  await pg.getByRole('heading', { level: 1, name: 'Home' }).waitFor();
  await account(pg);
  await pg.getByText('passkey, second factor, user verified').waitFor();
  await rows.first().waitFor();
  assert.doesNotMatch(await rows.first().textContent(), /never/);

  // One authenticator holds one passkey per account: keep laptop's aside, register a second one
  // (this session's login used a passkey, so no re-authentication is asked).
  const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
  assert.equal(credentials.length, 1);
  await cdp.send('WebAuthn.clearCredentials', { authenticatorId });
  await pg.getByLabel('Name of the new passkey').fill('backup key');
  await pg.getByRole('button', { name: 'Add a passkey' }).click();
  await pg.getByText('Passkey "backup key" added.').waitFor();
  await pg.locator('tr[data-passkey]').nth(1).waitFor();
  assert.equal(await rows.count(), 2);
  assert.equal(await pg.getByRole('button', { name: 'Remove laptop' }).getAttribute('aria-disabled'), null);

  // Remove exactly the one chosen.
  await pg.getByRole('button', { name: 'Remove backup key' }).click();
  await pg.getByText('Remove backup key?').waitFor();
  await pg.getByRole('button', { name: 'Remove', exact: true }).click();
  await pg.getByText('Passkey "backup key" removed.').waitFor();
  await pg.waitForFunction(() => document.querySelectorAll('tr[data-passkey]').length === 1);
  assert.match(await rows.first().textContent(), /laptop/);

  assert.deepEqual(h.problems, []);
  await pg.context().close();
});

test('signing keys: generated in the browser and shown by fingerprint, imported, rotated, revoked', async () => {
  const u = await h.user(['provider']);
  const pg = await h.page();
  await h.signIn(pg, u);
  await account(pg);
  await pg.getByText('No signing keys yet.').waitFor();
  await pg.getByLabel('Name of the new key').fill('this laptop');
  await pg.getByRole('button', { name: 'Generate a key in this browser' }).click();
  const status = pg.getByText(/^Key generated and registered: [0-9a-f]{64}$/);
  await status.waitFor();
  const fp = (await status.textContent()).split(': ')[1];
  const token = (await login(h.server, u.email, PW)).access_token;
  const keys = async () => (await h.call('GET', `/api/v1/identities/${u.id}/keys`, { token })).json.keys;
  const fpOf = (k) => createHash('sha256').update(Buffer.from(k.public_key, 'base64url')).digest('hex');
  const [k1] = await keys();
  assert.equal(fpOf(k1), fp);
  const row1 = pg.locator(`tr[data-key="${k1.id}"]`);
  await row1.getByText('in this browser').waitFor();
  assert.equal(await row1.getByTestId('key-fp').textContent(), fp);
  // Its private part is in IndexedDB and cannot be exported.
  const extractable = await pg.evaluate(
    (id) =>
      new Promise((resolve, reject) => {
        const r = indexedDB.open('dcms', 1);
        r.onerror = () => reject(r.error);
        r.onsuccess = () => {
          const g = r.result.transaction('signing-keys').objectStore('signing-keys').get(id);
          g.onsuccess = () => resolve(g.result.privateKey.extractable);
        };
      }),
    u.id,
  );
  assert.equal(extractable, false);
  await noAxe(pg, 'account (signing key)');

  // An Ed25519 private key from elsewhere (PKCS#8 PEM), imported: its fingerprint is the one computed here.
  const pair = generateKeyPairSync('ed25519');
  const raw = pair.publicKey.export({ format: 'der', type: 'spki' }).subarray(12);
  const want = createHash('sha256').update(raw).digest('hex');
  await pg.getByText('Import a private key').click();
  await pg.getByLabel('Ed25519 private key (PKCS#8 PEM)').fill('not a key');
  await pg.getByRole('button', { name: 'Import and register' }).click();
  await pg.locator('#f-key-pem-problems').waitFor();
  await pg.getByLabel('Ed25519 private key (PKCS#8 PEM)').fill(pair.privateKey.export({ format: 'pem', type: 'pkcs8' }));
  await pg.getByLabel('Name of the new key').fill('imported');
  await pg.getByRole('button', { name: 'Import and register' }).click();
  await pg.getByText(`Key imported and registered: ${want}`).waitFor();
  await pg.getByTestId('key-fp').getByText(want, { exact: true }).waitFor();

  // Rotate the first key (a new one made here replaces it), then revoke the imported one.
  await pg.getByRole('button', { name: 'Rotate this laptop' }).click();
  await pg.getByText(/^Key replaced by a new one made in this browser: [0-9a-f]{64}$/).waitFor();
  await row1.getByText('rotated').waitFor();
  await pg.getByRole('button', { name: 'Revoke imported' }).click();
  await pg.getByRole('button', { name: 'Revoke', exact: true }).click();
  await pg.getByText('Key revoked.').waitFor();
  const after = await keys();
  assert.deepEqual(after.map((k) => k.status).sort(), ['active', 'revoked', 'rotated']);
  assert.equal(after.find((k) => fpOf(k) === want).status, 'revoked');
  assert.deepEqual(h.problems, []);
  await pg.context().close();
});

test('API keys for a service identity: problems on their fields, the key shown once, revoked', async () => {
  const svc = await h.call('POST', '/api/v1/identities', { json: { kind: 'service', name: 'nightly-export', roles: ['auditor'] } });
  assert.equal(svc.status, 201, JSON.stringify(svc.json));
  const pg = await h.page({ colorScheme: 'dark' });
  await pg.goto(h.base + '/');
  await pg.getByLabel('E-mail').fill(ADMIN_EMAIL);
  await pg.getByLabel('Password').fill(ADMIN_PASSWORD);
  await pg.getByRole('button', { name: 'Sign in', exact: true }).click();
  await pg.getByRole('heading', { level: 1, name: 'Home' }).waitFor();
  await account(pg);
  await pg.getByText('No API keys.').waitFor();
  await pg.getByLabel('Permissions').fill('identities:read');
  await pg.getByRole('button', { name: 'Create the key' }).click();
  await pg.locator('#f-apikey-name-problems').waitFor();
  assert.equal(await pg.locator('#f-apikey-name').getAttribute('aria-invalid'), 'true');
  await noAxe(pg, 'account (API key problem, dark)');
  await pg.getByLabel('Name', { exact: true }).fill('export');
  await pg.getByRole('button', { name: 'Create the key' }).click();
  const created = pg.getByTestId('apikey-created');
  await created.waitFor();
  const key = (await created.locator('code').textContent()).trim();
  assert.match(key, /^dcms_[0-9a-f-]{36}_[A-Za-z0-9_-]{43}$/);
  const me = await fetch(`${h.server.url}/api/v1/identities/${svc.json.id}`, { headers: { Authorization: `Bearer ${key}` } });
  assert.equal(me.status, 200);
  await created.getByRole('button', { name: 'Done' }).click();
  assert.equal(await pg.getByText(key).count(), 0);
  await pg.getByRole('button', { name: 'Revoke export' }).click();
  await pg.getByRole('cell', { name: 'revoked' }).waitFor();
  const gone = await fetch(`${h.server.url}/api/v1/identities/${svc.json.id}`, { headers: { Authorization: `Bearer ${key}` } });
  assert.equal(gone.status, 401);
  assert.deepEqual(h.problems, []);
  await pg.context().close();
});

test('sessions: every sign-in listed, another device signed out from here', async () => {
  const u = await h.user(['consumer']);
  const other = await login(h.server, u.email, PW); // "the phone"
  const pg = await h.page();
  await h.signIn(pg, u);
  await account(pg);
  const rows = pg.getByTestId('sessions').locator('tbody tr');
  await pg.getByTestId('sessions').waitFor();
  assert.equal(await rows.count(), 2);
  assert.equal(await pg.getByTestId('sessions').locator('.badge').count(), 1);
  await noAxe(pg, 'account (sessions)');
  const phone = pg.locator(`tr[data-session="${JSON.parse(Buffer.from(other.access_token.split('.')[1], 'base64url')).sid}"]`);
  await phone.getByRole('button', { name: /^Sign out the session started/ }).click();
  await pg.waitForFunction(() => document.querySelectorAll('[data-testid="sessions"] tbody tr').length === 1);
  const refresh = await fetch(`${h.server.url}/api/v1/auth/refresh`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ refresh_token: other.refresh_token }),
  });
  assert.equal(refresh.status, 401);
  // the page's own session still works
  await pg.reload();
  await pg.getByTestId('sessions').waitFor();
  assert.deepEqual(h.problems, []);
  await pg.context().close();
});
