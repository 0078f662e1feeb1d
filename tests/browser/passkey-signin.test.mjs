// Passkey-first sign-in in a real browser (docs/iam.md, "Signing in with a
// passkey alone"): a passkey registered on the account screen through
// Chrome's virtual authenticator (CDP WebAuthn domain: ctap2, internal,
// resident keys, user verification), sign out, then "Sign in with a
// passkey" with no e-mail and no password lands on the signed-in screen;
// the session says how it started and the passkey its last use; a stale
// list's removal of the last passkey shows the API's refusal. Errors
// shown clearly: an authenticator that cannot verify the user (the
// ceremony fails in the browser), and a suspended account (the API's 403).
// axe-core on each state, light and dark.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { freePort, harness } from './lib/harness.mjs';

let h;

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
});

async function noAxe(pg, label) {
  assert.deepEqual(await h.axe(pg, label), []);
}

async function account(pg) {
  await pg.goto(`${h.base}/#/account`);
  await pg.getByRole('heading', { level: 1, name: 'Account' }).waitFor();
}

async function signOut(pg) {
  await pg.getByRole('button', { name: 'Sign out', exact: true }).click();
  await pg.getByRole('heading', { level: 1, name: 'Sign in' }).waitFor();
}

test('a passkey registered on the account signs in alone, without e-mail or password', async () => {
  const u = await h.user(['consumer']);
  const pg = await h.page();
  const { cdp, authenticatorId } = await h.passkeyAuthenticator(pg);
  await h.signIn(pg, u);
  await account(pg);
  await pg.getByLabel('Name of the new passkey').fill('laptop');
  await pg.getByRole('button', { name: 'Add a passkey' }).click();
  await pg.getByText('Passkey "laptop" added.').waitFor();
  const row = pg.locator('tr[data-passkey]').first();
  assert.match(await row.textContent(), /laptop.*never/);
  // The authenticator keeps it as a discoverable credential, with the account's opaque user handle.
  const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
  assert.equal(credentials.length, 1);
  assert.equal(credentials[0].isResidentCredential, true);
  assert.equal(Buffer.from(credentials[0].userHandle, 'base64').length, 32);

  await signOut(pg);
  const button = pg.getByRole('button', { name: 'Sign in with a passkey' });
  await button.waitFor();
  await noAxe(pg, 'sign-in (with passkey button)');
  await button.click();
  await pg.getByRole('heading', { level: 1, name: 'Home' }).waitFor();

  await account(pg);
  const current = pg.getByTestId('sessions').locator('tbody tr').filter({ hasText: 'this browser' });
  await current.waitFor();
  const how = await current.textContent();
  assert.match(how, /passkey/);
  assert.doesNotMatch(how, /password/);
  await row.waitFor();
  assert.doesNotMatch(await row.textContent(), /never/);

  // A second passkey (the authenticator holds one per account: laptop's is set aside), then a
  // stale list: another tab removes laptop, this one still offers to remove the backup, and the
  // API's refusal of the last second factor is shown on the row with its problem.
  await cdp.send('WebAuthn.clearCredentials', { authenticatorId });
  await pg.getByLabel('Name of the new passkey').fill('backup');
  await pg.getByRole('button', { name: 'Add a passkey' }).click();
  await pg.getByText('Passkey "backup" added.').waitFor();
  await pg.locator('tr[data-passkey]').nth(1).waitFor();
  const tab = await pg.context().newPage();
  await tab.goto(`${h.base}/#/account`);
  await tab.getByRole('button', { name: 'Remove laptop' }).click();
  await tab.getByRole('button', { name: 'Remove', exact: true }).click();
  await tab.getByText('Passkey "laptop" removed.').waitFor();
  await tab.close();
  await pg.getByRole('button', { name: 'Remove backup' }).click();
  await pg.getByRole('button', { name: 'Remove', exact: true }).click();
  const refusal = pg.locator('tr[data-passkey]').filter({ hasText: 'backup' }).locator('[role="alert"]');
  await refusal.getByText('only second factor').waitFor();
  await refusal.getByText('is the last second factor of the account').waitFor();
  await noAxe(pg, 'account (last passkey refused by the API)');
  assert.deepEqual(h.problems, []);
  await pg.context().close();
});

test('errors are shown: no user verification, then a suspended account', async () => {
  const u = await h.user(['consumer']);
  const pg = await h.page({ colorScheme: 'dark' });
  const { cdp, authenticatorId } = await h.passkeyAuthenticator(pg);
  await h.signIn(pg, u);
  await account(pg);
  await pg.getByLabel('Name of the new passkey').fill('phone');
  await pg.getByRole('button', { name: 'Add a passkey' }).click();
  await pg.getByText('Passkey "phone" added.').waitFor();
  await signOut(pg);

  // The authenticator cannot verify the user: the browser refuses the UV-required ceremony.
  await cdp.send('WebAuthn.setUserVerified', { authenticatorId, isUserVerified: false });
  await pg.getByRole('button', { name: 'Sign in with a passkey' }).click();
  const summary = pg.locator('.summary[role="alert"]');
  await summary.getByText('No passkey was used').waitFor();
  await noAxe(pg, 'sign-in (passkey refused, dark)');

  // A suspended account: the assertion is fine, the API answers 403 and the page says why.
  await cdp.send('WebAuthn.setUserVerified', { authenticatorId, isUserVerified: true });
  const s = await h.call('POST', `/api/v1/identities/${u.id}/suspend`, { json: { reason: 'browser test' } });
  assert.equal(s.status, 200, JSON.stringify(s.json));
  await pg.getByRole('button', { name: 'Sign in with a passkey' }).click();
  await summary.getByText('the identity is suspended').waitFor();
  assert.equal(await pg.getByRole('heading', { level: 1, name: 'Sign in' }).count(), 1);
  await noAxe(pg, 'sign-in (suspended, dark)');

  const r = await h.call('POST', `/api/v1/identities/${u.id}/reactivate`);
  assert.equal(r.status, 200, JSON.stringify(r.json));
  await pg.getByRole('button', { name: 'Sign in with a passkey' }).click();
  await pg.getByRole('heading', { level: 1, name: 'Home' }).waitFor();
  assert.deepEqual(h.problems, []);
  await pg.context().close();
});
