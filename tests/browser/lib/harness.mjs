// The browser test harness: a real dcmsd (tests/api/lib/server.mjs: fresh
// data directory, SQLite or PostgreSQL per DCMS_TEST_BACKEND) and Debian's
// chromium driven by playwright-core. Pages are opened at
// http://localhost:PORT (a secure context, so WebCrypto and Secure cookies
// work); every request a page makes must stay on that origin, every CSP
// violation and page error fails the test, and axe-core checks pages.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { adminEnv, adminToken, bearer } from '../../api/lib/iam.mjs';
import { repoRoot, startServer } from '../../api/lib/server.mjs';
import { chromiumPath, launchChromium } from './chromium.mjs';

export { chromiumPath };

/** A free port for dcmsd, so the WebAuthn origin (http://localhost:PORT) is known before it starts. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export const PW = 'correct horse battery staple';

/**
 * Waits until `locator` matches exactly `n` elements, then asserts it. A list
 * re-read after a filter change still shows the previous rows for a moment,
 * and those may include the row a test waits for, so a count read once, right
 * after such a wait, can see the old list.
 */
export async function countIs(locator, n, message, timeout = 10_000) {
  const end = Date.now() + timeout;
  let c = await locator.count();
  while (c !== n && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 50));
    c = await locator.count();
  }
  assert.equal(c, n, message);
}

/** dcmsd, chromium and helpers for one test file. */
export async function harness(env = {}) {
  const server = await startServer({
    env: { ...adminEnv, DCMS_AUDIT_REFUSALS_PER_MINUTE: '100000', DCMS_LOGIN_MAX_FAILURES_PER_IP: '100000', ...env },
  });
  const port = new URL(server.url).port;
  const base = `http://localhost:${port}`;
  const browser = await launchChromium();
  console.log(`# chromium ${browser.version()} (${chromiumPath()}), dcmsd on ${server.backend}`);
  const admin = await adminToken(server);
  const problems = [];
  let n = 0;

  async function call(method, p, { token = admin, json } = {}) {
    const res = await fetch(server.url + p, {
      method,
      headers: { ...bearer(token), ...(json ? { 'Content-Type': 'application/json' } : {}) },
      body: json ? JSON.stringify(json) : undefined,
      signal: AbortSignal.timeout(15000),
    });
    const text = await res.text();
    return { status: res.status, json: text ? JSON.parse(text) : null };
  }

  /** An active user made by the admin: {id, email, name}. */
  async function user(roles) {
    const i = ++n;
    const email = `ui-${i}-${Date.now()}@example.com`;
    const r = await call('POST', '/api/v1/identities', { json: { name: `${roles[0]} ${i}`, email, password: PW, roles } });
    assert.equal(r.status, 201, JSON.stringify(r.json));
    return { id: r.json.id, email, name: r.json.name };
  }

  /** A browser context (its own cookies and IndexedDB) and a page watched for stray requests. */
  async function page({ colorScheme = 'light', ...opts } = {}) {
    const context = await browser.newContext({ colorScheme, locale: 'en-GB', timezoneId: 'Europe/Berlin', ...opts });
    const pg = await context.newPage();
    pg.setDefaultTimeout(10000);
    pg.on('request', (r) => {
      const u = new URL(r.url());
      if (u.origin !== base && u.protocol !== 'data:') problems.push(`request to another origin: ${r.url()}`);
    });
    pg.on('console', (m) => {
      if (/Content Security Policy|Refused to/.test(m.text())) problems.push(`CSP: ${m.text()}`);
    });
    pg.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    return pg;
  }

  async function signIn(pg, u) {
    await pg.goto(base + '/');
    await pg.getByLabel('E-mail').fill(u.email);
    await pg.getByLabel('Password').fill(PW);
    await pg.getByRole('button', { name: 'Sign in', exact: true }).click();
    await pg.getByRole('heading', { level: 1, name: 'Home' }).waitFor(); // sign-in lands on #/home
  }

  /**
   * Chrome's virtual authenticator on `pg` (CDP WebAuthn domain): a platform
   * authenticator (ctap2, internal) that keeps discoverable credentials and
   * verifies the user unless `isUserVerified` is false. Add it before the
   * page's ceremony; returns {cdp, authenticatorId} for further commands
   * (WebAuthn.getCredentials, .clearCredentials, .setUserVerified ...).
   */
  async function passkeyAuthenticator(pg, { isUserVerified = true } = {}) {
    const cdp = await pg.context().newCDPSession(pg);
    await cdp.send('WebAuthn.enable', { enableUI: false });
    const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true, isUserVerified, automaticPresenceSimulation: true },
    });
    return { cdp, authenticatorId };
  }

  const axeSource = fs.readFileSync(path.join(repoRoot, 'node_modules', 'axe-core', 'axe.min.js'), 'utf8');
  /** axe-core on the page (every rule it runs by default); returns its violations, described. */
  async function axe(pg, label) {
    // Injected through the DevTools protocol (not a <script>), so the page's CSP stays as served;
    // once per document (hash routes keep it), as evaluating axe costs more than a run.
    if (!(await pg.evaluate(() => typeof window.axe === 'object'))) await pg.evaluate(axeSource);
    const res = await pg.evaluate(async () => {
      // eslint-disable-next-line no-undef
      const r = await axe.run(document);
      return {
        ran: r.passes.length,
        violations: r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) })),
      };
    });
    assert.ok(res.ran > 0, `axe-core ran its rules on ${label}`);
    return res.violations.map((v) => `${label}: ${v.id} (${v.impact}) ${v.help} at ${v.nodes.join(', ')}`);
  }

  async function close() {
    await browser.close().catch(() => {});
    await server.stop();
  }

  return { server, base, browser, call, user, page, signIn, passkeyAuthenticator, axe, problems, close };
}
