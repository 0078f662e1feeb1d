// The theme override and the parties by name. The header's Theme select
// (System / Light / Dark) switches the palette (checked on a computed
// colour), survives a reload (localStorage) and, on System, follows the
// emulated prefers-color-scheme; the TOTP QR code stays dark on light in the
// dark theme (decoded with zbarimg). The contract list, the contract page,
// the home page and the signing sheet name the counterparty (the id in the
// tooltip or beside it), for each side. axe-core on every state, light and
// dark.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { validTerms } from '../api/lib/contracts.mjs';
import { login } from '../api/lib/iam.mjs';
import { harness, PW } from './lib/harness.mjs';

const LIGHT_BG = 'rgb(255, 255, 255)';
const DARK_BG = 'rgb(18, 20, 23)';
let h;
let provider;
let consumer;
let contract;
const violations = [];
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dcms-theme-'));
const t0 = Date.now();

const bg = (pg) => pg.evaluate(() => getComputedStyle(document.body).backgroundColor);
const attr = (pg) => pg.evaluate(() => document.documentElement.dataset.theme ?? null);
const stored = (pg) => pg.evaluate(() => localStorage.getItem('dcms.theme'));

before(async () => {
  h = await harness();
  provider = await h.user(['provider']);
  consumer = await h.user(['consumer']);
  const r = await h.call('POST', '/api/v1/contracts', {
    json: { title: 'Named parties', description: '', provider_id: provider.id, consumer_id: consumer.id, terms: validTerms() },
  });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  const tok = (await login(h.server, provider.email, PW)).access_token;
  const s = await h.call('POST', `/api/v1/contracts/${r.json.id}/submit`, { token: tok, json: {} });
  assert.equal(s.status, 200, JSON.stringify(s.json));
  contract = s.json;
});

after(async () => {
  await h?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
  console.log(`# theme and names: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
});

test('the theme override: Light, Dark, System, kept over a reload; the QR code stays dark on light', async () => {
  const pg = await h.page(); // the system is light
  await h.signIn(pg, provider);
  const theme = pg.getByLabel('Theme');
  assert.equal(await theme.inputValue(), 'system');
  assert.equal(await attr(pg), null);
  assert.equal(await bg(pg), LIGHT_BG);

  // Dark, by keyboard: the select is focusable and changes with the arrow keys.
  await theme.focus();
  await pg.keyboard.press('ArrowDown'); // Light
  await pg.keyboard.press('ArrowDown'); // Dark
  assert.equal(await theme.inputValue(), 'dark');
  assert.equal(await attr(pg), 'dark');
  assert.equal(await bg(pg), DARK_BG);
  assert.equal(await stored(pg), 'dark');
  violations.push(...(await h.axe(pg, 'home (dark override)')));

  // A reload keeps it (applied by the script before the first render).
  await pg.reload();
  await pg.getByRole('heading', { level: 1, name: 'Home' }).waitFor();
  assert.equal(await attr(pg), 'dark');
  assert.equal(await bg(pg), DARK_BG);
  assert.equal(await pg.getByLabel('Theme').inputValue(), 'dark');

  // The QR code of TOTP enrolment: dark modules on a light ground in the dark theme.
  await pg.getByRole('link', { name: 'Account' }).click();
  await pg.getByRole('button', { name: 'Set up an authenticator app' }).click();
  const qr = pg.getByTestId('totp-qr');
  await qr.waitFor();
  const fills = await qr.evaluate((svg) => [...svg.querySelectorAll('rect, path')].map((e) => getComputedStyle(e).fill));
  assert.deepEqual(fills, [LIGHT_BG, 'rgb(0, 0, 0)']);
  const shot = path.join(tmp, 'qr.png');
  await qr.screenshot({ path: shot });
  assert.match(execFileSync('zbarimg', ['-q', '--raw', shot], { encoding: 'utf8' }).trim(), /^otpauth:\/\/totp\//);
  violations.push(...(await h.axe(pg, 'account TOTP enrolment (dark override)')));

  // Light wins over a dark system.
  await pg.emulateMedia({ colorScheme: 'dark' });
  await pg.getByLabel('Theme').selectOption('light');
  assert.equal(await bg(pg), LIGHT_BG);
  assert.equal(await stored(pg), 'light');
  violations.push(...(await h.axe(pg, 'account (light override, dark system)')));

  // System follows the emulated colour scheme, and forgets the stored choice.
  await pg.getByLabel('Theme').selectOption('system');
  assert.equal(await attr(pg), null);
  assert.equal(await stored(pg), null);
  assert.equal(await bg(pg), DARK_BG);
  await pg.emulateMedia({ colorScheme: 'light' });
  assert.equal(await bg(pg), LIGHT_BG);
  await pg.reload();
  await pg.getByRole('heading', { level: 1, name: 'Account' }).waitFor();
  assert.equal(await pg.getByLabel('Theme').inputValue(), 'system');
  assert.equal(await bg(pg), LIGHT_BG);
  await pg.context().close();
});

test('the counterparty by name: contract list, contract page, home page and signing sheet', async () => {
  for (const [me, other, colorScheme] of [[provider, consumer, 'light'], [consumer, provider, 'dark']]) {
    const pg = await h.page({ colorScheme });
    await h.signIn(pg, me);
    // Home: the contract awaiting my signature, with the other party's name.
    const awaiting = pg.getByTestId('home-sign').getByRole('listitem').filter({ hasText: 'Named parties' });
    await awaiting.getByText(`with ${other.name}`).waitFor();
    violations.push(...(await h.axe(pg, `home (${colorScheme})`)));

    await pg.getByRole('link', { name: 'Contracts', exact: true }).click();
    const row = pg.locator('table.contracts tbody tr', { hasText: 'Named parties' });
    const cell = row.locator('td').nth(3);
    await cell.getByText(other.name, { exact: true }).waitFor();
    assert.equal(await cell.locator('.party').getAttribute('title'), `Identity id ${other.id}`);
    assert.ok(!(await row.textContent()).includes(other.id), 'the list shows the name, not the id');
    violations.push(...(await h.axe(pg, `contract list (${colorScheme})`)));

    await row.getByRole('link', { name: 'Named parties' }).click();
    await pg.getByRole('heading', { level: 1, name: 'Named parties' }).waitFor();
    const facts = pg.locator('dl.facts');
    const side = (label) => facts.locator(`dt:text-is("${label}") + dd`);
    const [mine, theirs] = me === provider ? ['Provider', 'Consumer'] : ['Consumer', 'Provider'];
    assert.match(await side(mine).textContent(), new RegExp(`^${me.name} ${me.id} \\(you\\)$`));
    assert.equal((await side(theirs).textContent()).trim(), `${other.name} ${other.id}`);
    violations.push(...(await h.axe(pg, `contract page (${colorScheme})`)));

    await pg.getByRole('button', { name: 'Sign', exact: true }).click();
    await pg.getByRole('heading', { level: 1, name: 'Sign the contract' }).waitFor();
    const parties = (await pg.locator('dl.sheet dt:text-is("Parties") + dd').textContent()).trim();
    const [p, c] = me === provider ? [me, other] : [other, me];
    assert.equal(parties, `Provider: ${p.name}; Consumer: ${c.name}`);
    violations.push(...(await h.axe(pg, `signing sheet (${colorScheme})`)));
    await pg.context().close();
  }
  assert.equal(contract.provider_name, provider.name);
});

test('no axe violation, stray request, CSP violation or page error', () => {
  assert.deepEqual(violations, []);
  assert.deepEqual(h.problems, []);
});
