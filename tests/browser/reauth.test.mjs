// Registering a signing key needs a recent login (docs/iam.md): when the
// session is older than DCMS_IAM_STEPUP_MAX_AGE_S (8 s here), the signing
// sheet says so and offers to sign in again; after that it returns to the
// sheet and the signature goes through.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { validTerms } from '../api/lib/contracts.mjs';
import { login } from '../api/lib/iam.mjs';
import { harness, PW } from './lib/harness.mjs';

const MAX_AGE_S = 8;
let h;
let provider;
let id;

before(async () => {
  h = await harness({ DCMS_IAM_STEPUP_MAX_AGE_S: String(MAX_AGE_S) });
  provider = await h.user(['provider']);
  const consumer = await h.user(['consumer']);
  const r = await h.call('POST', '/api/v1/contracts', {
    json: { title: 'Reauth', description: '', provider_id: provider.id, consumer_id: consumer.id, terms: validTerms() },
  });
  assert.equal(r.status, 201);
  id = r.json.id;
  assert.equal((await h.call('POST', `/api/v1/contracts/${id}/submit`, { json: {} })).status, 200);
});

after(async () => {
  await h?.close();
});

test('an old session is asked to sign in again before a key is registered, then signs', async () => {
  const pg = await h.page();
  await h.signIn(pg, provider);
  await pg.goto(`${h.base}/#/contracts/${id}/sign`);
  await pg.getByRole('heading', { level: 1, name: 'Sign the contract' }).waitFor();
  await sleep((MAX_AGE_S + 1) * 1000);
  await pg.getByLabel('I have read the terms and sign them').check();
  await pg.getByRole('button', { name: 'Sign', exact: true }).click();
  await pg.locator('.summary').getByText('needs a recent sign-in').waitFor();
  await pg.getByRole('button', { name: 'Sign in again' }).click();
  await pg.getByRole('heading', { level: 1, name: 'Sign in' }).waitFor();
  await pg.getByLabel('E-mail').fill(provider.email);
  await pg.getByLabel('Password').fill(PW);
  await pg.getByRole('button', { name: 'Sign in', exact: true }).click();
  // Back on the sheet it came from.
  await pg.getByRole('heading', { level: 1, name: 'Sign the contract' }).waitFor();
  await pg.getByLabel('I have read the terms and sign them').check();
  await pg.getByRole('button', { name: 'Sign', exact: true }).click();
  await pg.locator('tr[data-side="provider"]').getByText('Signed', { exact: true }).waitFor();
  const c = (await h.call('GET', `/api/v1/contracts/${id}`)).json;
  assert.deepEqual(c.signatures.map((s) => [s.side, s.signer_id]), [['provider', provider.id]]);
  assert.ok((await login(h.server, provider.email, PW)).access_token);
  assert.deepEqual(h.problems, []);
});
