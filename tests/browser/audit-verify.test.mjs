// The audit screen's chain verification in the browser, and its names
// beside ids. dcmsd signs a checkpoint every 50 events, and the log holds
// about 700 events (refused requests, a policy whose name needs escaping in
// canonical JSON: quotes, a backslash, a control character, non-ASCII and an
// emoji), so the browser's walk spans several batches, checkpoints and tree
// heads. An auditor (light mode) sees the admin's name beside its id as the
// actor of `identity.create` and the new identity's name beside the
// resource id; verifies the chain: the browser's verdict ("Verified through
// event N (K signed checkpoints)") beside the server's, N the API's last
// seq, the key id and fingerprint the ones of GET /audit/public-key; with
// the export held back, the loading state and Stop (no verdict). In dark
// mode on a phone, a pinned key that is not base64 gets its problem on the
// field and in the summary; a pinned key of someone else breaks the
// verdict at the first signature; the right one verifies. Then one event is
// altered in the store (sqlite3 or psql on the test server's database), and
// both verdicts turn to "Broken at event M" with M the altered event's seq,
// the browser's saying its hash does not match its content. axe-core on
// every state, light and dark.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { harness } from './lib/harness.mjs';

let h;
let auditor;
let light;
let dark;
let adminName;
let created; // {id, name} of the identity whose creation is altered later
const violations = [];
const t0 = Date.now();

async function check(pg, label) {
  violations.push(...(await h.axe(pg, label)));
}

/** One SQL statement on the test server's own database (to tamper with it). */
function sql(statement) {
  if (h.server.backend === 'postgres') {
    const u = new URL(process.env.DCMS_TEST_PG_URL);
    u.pathname = `/${h.server.database}`;
    execFileSync('psql', [u.toString(), '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-c', statement], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 30000 });
  } else {
    execFileSync('sqlite3', ['-cmd', '.timeout 10000', path.join(h.server.dataDir, 'dcms.db'), statement], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 30000 });
  }
}

const num = (s) => Number(s.replace(/[^0-9]/g, ''));

/** Clicks "Verify the audit chain" and resolves both verdicts' first lines once both are in. */
async function verify(pg) {
  await pg.getByRole('button', { name: 'Verify the audit chain' }).click();
  const server = pg.getByTestId('verdict').locator('strong');
  const browser = pg.getByTestId('browser-verdict').locator('strong');
  await server.waitFor({ timeout: 20000 });
  await browser.waitFor({ timeout: 20000 });
  return { server: await server.textContent(), browser: await browser.textContent() };
}

before(async () => {
  h = await harness({ DCMS_AUDIT_CHECKPOINT_EVERY: '50' });
  auditor = await h.user(['auditor']);
  adminName = (await h.call('GET', '/api/v1/auth/me')).json.identity.name;
  created = await h.user(['consumer']);
  const pol = await h.call('POST', '/api/v1/policies', {
    json: { name: 'Zoë 山田 😀 "quoted" \\ \u0001', effect: 'deny', actions: ['contracts:read'], resources: ['*'], attach: { roles: ['operator'] } },
  });
  assert.equal(pol.status, 201, JSON.stringify(pol.json));
  // Refused requests, each an event: enough for several batches of the browser's walk.
  for (let i = 0; i < 150; i++) {
    await Promise.all(Array.from({ length: 4 }, () => fetch(`${h.server.url}/api/v1/contracts?i=${i}`).then((r) => r.arrayBuffer())));
  }
  light = await h.page();
  dark = await h.page({ colorScheme: 'dark', viewport: { width: 360, height: 780 } });
});

after(async () => {
  await h?.close();
  console.log(`# audit verification: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
});

test('names beside ids, and the chain verified in the browser as by the server', async () => {
  const pg = light;
  await h.signIn(pg, auditor);
  await pg.goto(`${h.base}/#/audit?action=identity.create&resource_id=${created.id}`);
  const row = pg.locator('table.events tbody tr', { hasText: 'identity.create' });
  await row.waitFor();
  // The actor (the bootstrap admin) and the resource (the new identity) by name, each beside its id.
  await row.locator('td:nth-child(3)', { hasText: adminName }).waitFor();
  await row.locator('td:nth-child(5)', { hasText: created.name }).waitFor();
  assert.match(await row.locator('td:nth-child(5)').textContent(), new RegExp(`^identity ${created.name} ${created.id.slice(0, 8)}$`));
  assert.match(await row.locator('td:nth-child(3) code').textContent(), /^[0-9a-f-]{36}$/);
  // The time column names the zone.
  await pg.getByRole('columnheader', { name: 'Time (Europe/Berlin)' }).waitFor();
  await check(pg, 'audit list with names');

  const v = await verify(pg);
  const m = /^Verified through event (\S+) \((\d+) signed checkpoints\)$/.exec(v.browser);
  assert.ok(m, v.browser);
  const api = (await h.call('GET', '/api/v1/audit/verify')).json;
  assert.equal(api.ok, true);
  assert.equal(num(m[1]), api.last_seq, 'the browser verified every event the API counts');
  assert.ok(api.last_seq > 600, `log of ${api.last_seq} events`);
  assert.equal(Number(m[2]), api.checkpoints_checked);
  assert.equal(v.server, `Verified through event ${api.last_seq.toLocaleString('en-GB')}`);
  // The server walked the chain after the export signed its head: both count the same checkpoints.
  await pg.getByTestId('verdict').getByText(`${api.last_seq.toLocaleString('en-GB')} events and ${api.checkpoints_checked} signed checkpoints`, { exact: false }).waitFor();
  const facts = await pg.getByTestId('browser-verdict').locator('dd').allTextContents();
  assert.deepEqual(facts.map(num), [api.last_seq, api.checkpoints_checked, api.tree_heads_checked]);
  // The key: its id and fingerprint computed in the browser, as the API and node compute them.
  const pk = (await h.call('GET', '/api/v1/audit/public-key')).json;
  const fp = createHash('sha256').update(Buffer.from(pk.public_key, 'base64')).digest('hex');
  const key = pg.getByTestId('audit-key');
  await key.getByText(pk.key_id, { exact: true }).waitFor();
  assert.equal((await key.locator('dd code').nth(1).textContent()).replace(/ /g, ''), fp);
  assert.equal(fp.slice(0, 16), pk.key_id);
  await check(pg, 'audit verified (light)');

  // While the export is on its way: the loading state, and Stop gives no verdict.
  await pg.route('**/api/v1/audit/export*', async (route) => {
    await new Promise((r) => setTimeout(r, 1500));
    await route.continue().catch(() => {});
  });
  await pg.getByRole('button', { name: 'Verify the audit chain' }).click();
  await pg.getByText('Downloading the export…').waitFor();
  await check(pg, 'audit verifying (light)');
  await pg.getByRole('button', { name: 'Stop' }).click();
  await pg.getByTestId('browser-verdict').getByText('Stopped after 0 events: no verdict.').waitFor();
  await pg.getByTestId('verdict').locator('strong').waitFor(); // the server's verdict comes anyway
  await pg.unroute('**/api/v1/audit/export*');
});

test('a pinned key: refused when malformed, breaks the verdict when foreign, verifies when right', async () => {
  const pg = dark;
  await h.signIn(pg, auditor);
  await pg.getByRole('link', { name: 'Audit', exact: true }).click();
  await pg.getByRole('heading', { level: 1, name: 'Audit' }).waitFor();
  const field = pg.getByLabel('Pinned audit key (optional)');
  await field.fill('not a key');
  await pg.getByRole('button', { name: 'Verify the audit chain' }).click();
  await pg.locator('.field-problems').getByText('is not an Ed25519 public key (32 bytes in base64)').waitFor();
  await pg.locator('.summary').getByText('The pinned key cannot be used.').waitFor();
  assert.equal(await field.getAttribute('aria-invalid'), 'true');
  await check(pg, 'pinned key refused (dark, phone)');

  await field.fill(randomBytes(32).toString('base64'));
  let v = await verify(pg);
  assert.match(v.browser, /^Broken at event \d+: its (tree head|checkpoint) is signed by another key \([0-9a-f]{16}\)$/);
  assert.match(v.server, /^Verified through event/);
  await pg.getByTestId('audit-key').getByText(/^is another key \(id [0-9a-f]{16}\)$/).waitFor();
  await check(pg, 'foreign pinned key (dark, phone)');

  await field.fill((await h.call('GET', '/api/v1/audit/public-key')).json.public_key);
  v = await verify(pg);
  assert.match(v.browser, /^Verified through event/);
  await pg.getByTestId('audit-key').getByText('is the same key').waitFor();
  const wide = await pg.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(wide <= 360, `the page fits a 360 px phone (${wide} px)`);
  await check(pg, 'pinned key verified (dark, phone)');
});

test('an event altered in the store: both verdicts turn to broken at that event', async () => {
  const ev = (await h.call('GET', `/api/v1/audit/events?action=identity.create&resource_id=${created.id}`)).json.events[0];
  sql(`UPDATE audit_events SET actor = 'mallory' WHERE seq = ${ev.seq}`);

  for (const [pg, label] of [[light, 'light'], [dark, 'dark, phone']]) {
    if (pg === dark) await pg.getByLabel('Pinned audit key (optional)').fill('');
    const v = await verify(pg);
    assert.equal(v.browser, `Broken at event ${ev.seq}: its hash does not match its content`);
    assert.equal(v.server, `Broken at event ${ev.seq}`);
    await pg.getByTestId('verdict').getByText(`event seq ${ev.seq}: hash does not match its content`).waitFor();
    await check(pg, `audit broken (${label})`);
  }
  const api = (await h.call('GET', '/api/v1/audit/verify')).json;
  assert.equal(api.first_bad_seq, ev.seq);

  // The altered actor is no identity: it stays as it is, no name beside it.
  await light.reload();
  await light.locator('table.events tbody tr td:nth-child(3)', { hasText: 'mallory' }).waitFor();
  assert.equal(await light.locator('table.events tbody tr td:nth-child(3)').textContent(), 'mallory');

  assert.deepEqual(violations, []);
  assert.deepEqual(h.problems, []);
});
