// The admin area in a real browser, signed in as the bootstrap admin the
// test server creates: the identity list with its filters in the URL (kept
// over a reload); a pending self-registration verified after the dialog
// showed the API's problem on the evidence field; a new user whose first try
// lands a 422 on the password field, then created with a role and an
// organization (joining it needs the admin's reason: a 422 on that field
// first); the user suspended and reactivated, each after its confirmation;
// an organization's member added (a 422 on the reason first) and removed;
// the data-key KEK rotated, the data keys rewrapped and the old version
// retired; the token signing key rotated; an access policy created (its
// 422 problems on the actions and address fields first) that really denies
// a provider, then deleted. A provider sees no Admin link and
// gets the "not allowed" state at #/admin. axe-core on each screen, light and
// dark.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ADMIN_EMAIL, ADMIN_PASSWORD, login } from '../api/lib/iam.mjs';
import { countIs, harness, PW } from './lib/harness.mjs';

let h;
let pg;
let org;
let joiner;
const violations = [];
const t0 = Date.now();

async function check(label) {
  violations.push(...(await h.axe(pg, label)));
}

/** The row of the identity table or member table that names `name`. */
const row = (name) => pg.locator('tbody tr', { hasText: name });

/** Submits the open confirmation dialog. */
async function confirm(button) {
  const dlg = pg.locator('dialog[open]');
  await dlg.waitFor();
  await dlg.getByRole('button', { name: button, exact: true }).click();
}

before(async () => {
  h = await harness();
  // An organization, a verified user free to join it, and a pending self-registration.
  const o = await h.call('POST', '/api/v1/identities', { json: { kind: 'organization', name: 'Acme Data' } });
  assert.equal(o.status, 201);
  org = o.json;
  joiner = await h.user(['consumer']);
  const reg = await fetch(h.server.url + '/api/v1/identities', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ name: 'Pending Pat', email: 'pat@example.com', password: 'pat long passphrase' }),
  });
  assert.equal(reg.status, 202);
  pg = await h.page();
});

after(async () => {
  await h?.close();
  console.log(`# admin area: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
});

test('the admin signs in and filters identities in the URL', async () => {
  await pg.goto(h.base + '/');
  await pg.getByLabel('E-mail').fill(ADMIN_EMAIL);
  await pg.getByLabel('Password').fill(ADMIN_PASSWORD);
  await pg.getByRole('button', { name: 'Sign in', exact: true }).click();
  await pg.getByRole('heading', { level: 1, name: 'Home' }).waitFor();
  await pg.getByRole('link', { name: 'Admin' }).click();
  await pg.getByRole('heading', { level: 1, name: 'Administration' }).waitFor();
  await row('Acme Data').waitFor();
  // The admin's own row: marked, and suspending itself is not offered (the API refuses it too).
  await row(ADMIN_EMAIL).getByText('(you)').waitFor();
  assert.equal(await row(ADMIN_EMAIL).getByRole('button', { name: /^Suspend/ }).getAttribute('aria-disabled'), 'true');
  await row(ADMIN_EMAIL).getByText('You cannot suspend yourself.').waitFor();
  await check('admin identities');

  await pg.getByLabel('State').selectOption('pending_verification');
  await pg.getByRole('button', { name: 'Filter' }).click();
  await pg.waitForURL(/#\/admin\/identities\?status=pending_verification/);
  // The unfiltered list holds Pending Pat too: wait for Acme Data to leave.
  await countIs(row('Acme Data'), 0);
  await row('Pending Pat').waitFor();
  await pg.reload();
  await row('Pending Pat').waitFor();
  assert.equal(await pg.getByLabel('State').inputValue(), 'pending_verification');
  await countIs(row('Acme Data'), 0);
});

test('a pending identity is verified: the evidence note is required on its field', async () => {
  await row('Pending Pat').getByRole('button', { name: 'Verify Pending Pat' }).click();
  await confirm('Verify');
  const problems = pg.locator('dialog[open] #f-note-problems');
  await problems.waitFor();
  assert.match(await problems.textContent(), /note.*required/);
  assert.equal(await pg.locator('dialog[open] #f-note').getAttribute('aria-invalid'), 'true');
  await check('verify dialog with a problem');
  await pg.locator('dialog[open] #f-note').fill('called the registered phone number');
  await confirm('Verify');
  await pg.locator('dialog[open]').waitFor({ state: 'detached' });
  await row('Pending Pat').getByText('Active').waitFor();
  await pg.getByText('Pending Pat is verified and active.').waitFor();
});

test('a new identity: a 422 on the password, then created with a role and an organization', async () => {
  await pg.goto(h.base + '/#/admin/identities');
  await pg.getByRole('link', { name: 'New identity' }).click();
  await pg.locator('#f-name').fill('Olga Operator');
  await pg.locator('#f-email').fill('olga@example.com');
  await pg.locator('#f-password').fill('short');
  await pg.getByLabel('provider', { exact: true }).check();
  await pg.getByLabel('Organization', { exact: true }).selectOption({ label: 'Acme Data' });
  await pg.getByRole('button', { name: 'Create the identity' }).click();
  const pw = pg.locator('#f-password-problems');
  await pw.waitFor();
  assert.match(await pw.textContent(), /password.*at least 12 characters/);
  assert.equal(await pg.locator('#f-password').getAttribute('aria-invalid'), 'true');
  await pg.locator('.summary').getByRole('button', { name: 'password' }).waitFor();
  await check('new identity with a problem');

  // Fixed password; the admin gave no reason for acting for the organization: the identity
  // exists, its membership's problem lands on the reason field.
  await pg.locator('#f-password').fill('olga long passphrase');
  await pg.getByRole('button', { name: 'Create the identity' }).click();
  await pg.locator('#f-reason-problems').waitFor();
  assert.match(await pg.locator('#f-reason-problems').textContent(), /reason.*administrator/);
  await pg.getByText('was created, but it did not join the organization yet').waitFor();
  await pg.locator('#f-reason').fill('Acme asked for an operator account, ticket 12');
  await pg.getByRole('button', { name: 'Add the member' }).click();
  await pg.getByText('Identity "Olga Operator" created.').waitFor();
  await row('Olga Operator').getByRole('link', { name: 'Acme Data' }).waitFor();
  assert.match(await row('Olga Operator').textContent(), /provider/);

  const list = await h.call('GET', '/api/v1/identities?kind=user&limit=500');
  const olga = list.json.identities.find((i) => i.name === 'Olga Operator');
  assert.equal(olga.organization_id, org.id);
  assert.deepEqual(olga.roles, ['provider']);
});

test('suspend and reactivate, each after a confirmation', async () => {
  await row('Olga Operator').getByRole('button', { name: 'Suspend Olga Operator' }).click();
  const dlg = pg.locator('dialog[open]');
  await dlg.getByText('signed out everywhere').waitFor();
  await check('suspend dialog');
  // Cancel first: nothing changes.
  await dlg.getByRole('button', { name: 'Cancel' }).click();
  await dlg.waitFor({ state: 'detached' });
  assert.match(await row('Olga Operator').textContent(), /Active/);

  await row('Olga Operator').getByRole('button', { name: 'Suspend Olga Operator' }).click();
  await pg.locator('dialog[open] #f-reason').fill('left the project');
  await confirm('Suspend');
  await row('Olga Operator').getByRole('button', { name: 'Reactivate Olga Operator' }).waitFor();
  assert.match(await row('Olga Operator').textContent(), /Suspended/);
  const id = await row('Olga Operator').getAttribute('data-identity');
  assert.equal((await h.call('GET', `/api/v1/identities/${id}`)).json.status, 'suspended');

  await row('Olga Operator').getByRole('button', { name: 'Reactivate Olga Operator' }).click();
  await confirm('Reactivate');
  await row('Olga Operator').getByRole('button', { name: 'Suspend Olga Operator' }).waitFor();
  assert.equal((await h.call('GET', `/api/v1/identities/${id}`)).json.status, 'active');
});

test("an organization's member is added (the reason on its field first) and removed", async () => {
  await pg.getByRole('link', { name: 'Organizations' }).click();
  await pg.getByRole('link', { name: 'Acme Data' }).click();
  await pg.getByRole('heading', { name: 'Organization Acme Data' }).waitFor();
  await row('Olga Operator').waitFor();
  await check('organization');

  await pg.getByLabel('Identity', { exact: true }).selectOption({ label: `${joiner.name} <${joiner.email}>` });
  await pg.getByLabel('consumer', { exact: true }).check();
  await pg.getByRole('button', { name: 'Add the member' }).click();
  await pg.locator('#f-reason-problems').waitFor();
  assert.equal(await pg.locator('#f-reason').getAttribute('aria-invalid'), 'true');
  await check('add member with a problem');
  await pg.locator('#f-reason').fill('joins the consumer team');
  await pg.getByRole('button', { name: 'Add the member' }).click();
  await pg.getByText(`${joiner.name} is a member now.`).waitFor();
  await row(joiner.name).waitFor();
  const m = await h.call('GET', `/api/v1/organizations/${org.id}/members`);
  assert.deepEqual(m.json.members.find((x) => x.identity_id === joiner.id).roles, ['consumer']);

  await row(joiner.name).getByRole('button', { name: `Remove ${joiner.name}` }).click();
  await pg.locator('dialog[open] #f-reason').fill('moved to another team');
  await confirm('Remove');
  await pg.getByText(`${joiner.name} is no longer a member.`).waitFor();
  await row(joiner.name).waitFor({ state: 'detached' });
  const m2 = await h.call('GET', `/api/v1/organizations/${org.id}/members`);
  assert.equal(m2.json.members.some((x) => x.identity_id === joiner.id), false);
});

test('the data keys: rotate the KEK, rewrap, retire the old version; rotate the token signing key', async () => {
  await pg.getByRole('link', { name: 'Keys' }).click();
  await pg.getByRole('heading', { name: 'Data keys' }).waitFor();
  const before = (await h.call('GET', '/api/v1/admin/data-keys')).json;
  assert.equal(await pg.getByTestId('dk-active').textContent(), String(before.active_version));
  await check('keys');

  await pg.getByRole('button', { name: 'Rotate the KEK' }).click();
  await pg.locator('dialog[open]').getByText(`Version ${before.active_version + 1} becomes active`).waitFor();
  await confirm('Rotate the KEK');
  await pg.getByText(`Version ${before.active_version + 1} is active`).waitFor();
  assert.equal(await pg.getByTestId('dk-active').textContent(), String(before.active_version + 1));
  const mid = (await h.call('GET', '/api/v1/admin/data-keys')).json;
  assert.equal(mid.active_version, before.active_version + 1);
  assert.equal(await pg.getByTestId('dk-pending').textContent(), String(mid.pending_rewrap));

  // The old version is in use while keys wait: its retire button says why it cannot.
  const old = pg.locator(`tr[data-version="${before.active_version}"]`);
  if (mid.pending_rewrap > 0) {
    assert.equal(await old.getByRole('button', { name: `Retire version ${before.active_version}` }).getAttribute('aria-disabled'), 'true');
    await old.getByText('rewrap them first').waitFor();
  }
  await pg.getByRole('button', { name: 'Rewrap data keys' }).click();
  await pg.locator('dialog[open] #f-batch').fill('0');
  await confirm('Rewrap data keys');
  await pg.locator('dialog[open] #f-batch-problems').waitFor();
  await pg.locator('dialog[open] #f-batch').fill('');
  await confirm('Rewrap data keys');
  await pg.getByText(`${mid.pending_rewrap} data keys rewrapped; 0 remain.`).waitFor();
  await pg.getByTestId('dk-pending').getByText('0', { exact: true }).waitFor();

  await old.getByRole('button', { name: `Retire version ${before.active_version}` }).click();
  await confirm('Retire');
  await pg.getByText(`Version ${before.active_version} is retired.`).waitFor();
  const end = (await h.call('GET', '/api/v1/admin/data-keys')).json;
  assert.equal(end.versions.find((v) => v.version === before.active_version).state, 'retired');
  assert.equal(end.pending_rewrap, 0);

  const kids = (await (await fetch(h.server.url + '/.well-known/jwks.json')).json()).keys.map((k) => k.kid);
  await pg.getByRole('button', { name: 'Rotate the token signing key' }).click();
  await confirm('Rotate the token signing key');
  await pg.getByText(/New signing key /).waitFor();
  const after2 = (await (await fetch(h.server.url + '/.well-known/jwks.json')).json()).keys.map((k) => k.kid);
  const fresh = after2.find((k) => !kids.includes(k));
  assert.ok(fresh, 'a new key in the JWKS');
  await pg.getByTestId('jwks').getByText(fresh).waitFor();
  // The session goes on: its token was signed by the previous key, which still verifies.
  await pg.getByRole('link', { name: 'Identities' }).click();
  await pg.locator(`tr[data-identity="${org.id}"]`).waitFor();

  // Dark mode on a phone: axe again, and nothing wider than the screen.
  const dark = await h.page({ colorScheme: 'dark', viewport: { width: 360, height: 740 } });
  const ctx = pg;
  pg = dark;
  await pg.goto(h.base + '/');
  await pg.getByLabel('E-mail').fill(ADMIN_EMAIL);
  await pg.getByLabel('Password').fill(ADMIN_PASSWORD);
  await pg.getByRole('button', { name: 'Sign in', exact: true }).click();
  await pg.getByRole('heading', { level: 1, name: 'Home' }).waitFor();
  await pg.goto(h.base + '/#/admin/keys');
  await pg.getByRole('heading', { name: 'Data keys' }).waitFor();
  await pg.getByTestId('dk-facts').waitFor();
  await check('keys (dark, 360 px)');
  assert.ok(await pg.evaluate(() => document.documentElement.scrollWidth <= 360), 'the keys fit 360 px');
  await pg.goto(h.base + '/#/admin/identities');
  await pg.locator(`tr[data-identity="${org.id}"]`).waitFor();
  await check('identities (dark, 360 px)');
  assert.ok(await pg.evaluate(() => document.documentElement.scrollWidth <= 360), 'the identities fit 360 px');
  await pg.context().close();
  pg = ctx;
});

test('an access policy: problems on their fields, created, in force, deleted', async () => {
  const prov = await h.user(['provider']);
  const tok = (await login(h.server, prov.email, PW)).access_token;
  assert.equal((await h.call('GET', '/api/v1/contracts', { token: tok })).status, 200);
  await pg.goto(h.base + '/#/admin/policies');
  await pg.getByText('No policy: identities have what their roles grant.').waitFor();
  await check('policies empty');
  await pg.getByRole('link', { name: 'New policy' }).click();
  await pg.locator('#f-name').fill('No contract reading for one provider');
  await pg.getByLabel('Effect').selectOption('deny');
  await pg.locator('#f-actions').fill('');
  await pg.locator('#f-conditions-ip-range').fill('300.1.1.1/8');
  await pg.getByRole('button', { name: 'Create the policy' }).click();
  await pg.locator('#f-actions-problems').waitFor();
  // Attached to nothing: the problem of `attach` lands on the roles' fieldset.
  assert.match(await pg.locator('#f-attach .field-problems').textContent(), /attach.*at least one/);
  assert.equal(await pg.locator('#f-actions').getAttribute('aria-invalid'), 'true');
  assert.match(await pg.locator('#f-conditions-ip-range-problems').textContent(), /conditions\.ip_range\[0\].*CIDR/);
  await pg.locator('.summary').getByRole('button', { name: 'actions' }).waitFor();
  await check('new policy with problems');

  await pg.locator('#f-actions').fill('contracts:read\ncontracts:list');
  await pg.locator('#f-conditions-ip-range').fill('');
  await pg.locator('#f-attach-identities').fill(prov.id);
  await pg.getByRole('button', { name: 'Create the policy' }).click();
  await pg.getByText('Policy No contract reading for one provider created.').waitFor();
  const r = row('No contract reading for one provider');
  assert.match(await r.textContent(), /Deny/);
  assert.match(await r.textContent(), /contracts:read/);
  const listed = (await h.call('GET', '/api/v1/policies')).json.policies;
  assert.equal(listed.length, 1);
  assert.deepEqual(listed[0].attach, { identities: [prov.id] });
  assert.equal((await h.call('GET', '/api/v1/contracts', { token: tok })).status, 403, 'the policy is in force');
  await check('policies');

  await r.getByRole('button', { name: 'Delete policy No contract reading for one provider' }).click();
  await confirm('Delete');
  await pg.getByText('Policy No contract reading for one provider deleted.').waitFor();
  await r.waitFor({ state: 'detached' });
  assert.deepEqual((await h.call('GET', '/api/v1/policies')).json.policies, []);
  assert.equal((await h.call('GET', '/api/v1/contracts', { token: tok })).status, 200);
});

test('a provider sees no admin link and gets the "not allowed" state at #/admin', async () => {
  const prov = await h.user(['provider']);
  const ctx = pg;
  pg = await h.page();
  await h.signIn(pg, prov);
  assert.equal(await pg.getByRole('link', { name: 'Admin' }).count(), 0);
  await pg.goto(h.base + '/#/admin/identities');
  await pg.getByTestId('admin-forbidden').waitFor();
  await pg.getByText('You may not use the admin area.').waitFor();
  assert.equal(await pg.locator('table').count(), 0);
  await check('admin forbidden');
  // The API is the authority: the routes behind the area refuse the provider's token.
  const tok = (await login(h.server, prov.email, PW)).access_token;
  assert.equal((await h.call('GET', '/api/v1/admin/data-keys', { token: tok })).status, 403);
  assert.equal((await h.call('POST', `/api/v1/identities/${prov.id}/suspend`, { token: tok, json: {} })).status, 403);
  await pg.context().close();
  pg = ctx;
});

test('no axe violation, stray request, CSP violation or page error', () => {
  assert.deepEqual(violations, []);
  assert.deepEqual(h.problems, []);
});
