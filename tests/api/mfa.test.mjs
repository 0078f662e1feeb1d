// Second factors through the API, with codes from Debian's oathtool (a real
// TOTP client): enrolment and confirmation, step-up login with a ticket or in
// one shot, the amr claim, replayed and older codes refused, single-use
// tickets and recovery codes, regenerating them, disabling TOTP, wrong codes
// counting towards the login throttle, the mfa_present policy condition, a
// secret never shown twice, and the audit of every denial. Every response is
// checked against api/openapi.yaml. Runs on the backend chosen by
// DCMS_TEST_BACKEND.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { before, describe, test } from 'node:test';
import { checkResponse } from './lib/openapi.mjs';
import { client } from './lib/http.mjs';
import { startServer } from './lib/server.mjs';
import { adminEnv, adminToken, bearer } from './lib/iam.mjs';

const PW = 'correct horse battery staple';
const STEP = 30;
let server, api, admin;
let n = 0;
const email = (p) => `${p}-${++n}-${Date.now()}@example.com`;

async function call(method, path, opts = {}, template) {
  const r = await api.call(method, path, opts);
  checkResponse(method, template ?? path, r.res, r.json ?? r.text);
  return r;
}

/** The TOTP code of `secret` (base32) for the step `k` steps from now, by oathtool. */
function totp(secret, k = 0) {
  const t = (Math.floor(Date.now() / 1000 / STEP) + k) * STEP;
  return execFileSync('oathtool', ['--totp', '-b', '-N', `@${t}`, secret], { encoding: 'utf8' }).trim();
}

const claims = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url'));

async function newUser(prefix, roles = ['consumer']) {
  const e = email(prefix);
  const r = await call('POST', '/api/v1/identities', {
    headers: bearer(admin),
    json: { name: prefix, email: e, password: PW, roles },
  });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  return { id: r.json.id, email: e };
}

async function login(body) {
  return call('POST', '/api/v1/auth/login', { json: body });
}

async function passwordToken(u) {
  const r = await login({ email: u.email, password: PW });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  return r.json.access_token;
}

/** Enrols and confirms TOTP for `u` (using the current step's code); returns {secret, recovery}. */
async function enrol(u) {
  const token = await passwordToken(u);
  const en = await call('POST', '/api/v1/mfa/totp/enroll', { headers: bearer(token) });
  assert.equal(en.status, 201, JSON.stringify(en.json));
  const conf = await call('POST', '/api/v1/mfa/totp/confirm', {
    headers: bearer(token),
    json: { code: totp(en.json.secret) },
  });
  assert.equal(conf.status, 200, JSON.stringify(conf.json));
  return { secret: en.json.secret, recovery: conf.json.recovery_codes, token };
}

async function auditEvents(query) {
  const r = await call('GET', `/api/v1/audit/events?${query}`, { headers: bearer(admin) });
  assert.equal(r.status, 200);
  return r.json.events;
}

// Refusals are audited just after the answer is sent: poll briefly.
async function waitForAudit(query, pred) {
  for (let i = 0; i < 40; i++) {
    const ev = await auditEvents(query);
    if (ev.some(pred)) return ev;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`no audit event matching ${query}`);
}

before(async () => {
  server = await startServer({
    env: {
      ...adminEnv,
      DCMS_AUDIT_REFUSALS_PER_MINUTE: '100000',
      DCMS_LOGIN_MAX_FAILURES_PER_IP: '1000',
      DCMS_LOGIN_LOCKOUT_S: '60',
    },
  });
  api = client(server);
  admin = await adminToken(server);
});

describe('TOTP enrolment', () => {
  test('enrol shows the secret once; confirm needs a right code and gives ten recovery codes', async () => {
    const u = await newUser('enrol');
    const token = await passwordToken(u);
    let st = await call('GET', '/api/v1/mfa', { headers: bearer(token) });
    assert.deepEqual(st.json, { totp: 'none', recovery_codes_remaining: 0, factors: [] });

    const en = await call('POST', '/api/v1/mfa/totp/enroll', { headers: bearer(token) });
    assert.equal(en.status, 201);
    const { secret, otpauth_uri: uri } = en.json;
    assert.match(secret, /^[A-Z2-7]{32}$/);
    const url = new URL(uri);
    assert.equal(url.protocol, 'otpauth:');
    assert.equal(url.searchParams.get('secret'), secret);
    assert.equal(url.searchParams.get('issuer'), 'dcms');
    assert.equal(url.searchParams.get('digits'), '6');
    assert.equal(url.searchParams.get('period'), '30');
    assert.ok(decodeURIComponent(url.pathname).includes(u.email));

    st = await call('GET', '/api/v1/mfa', { headers: bearer(token) });
    assert.equal(st.json.totp, 'pending');
    assert.ok(!st.text.includes(secret));
    // Pending: login does not ask for it yet.
    assert.equal((await login({ email: u.email, password: PW })).status, 200);

    const bad = await call('POST', '/api/v1/mfa/totp/confirm', {
      headers: bearer(token),
      json: { code: totp(secret, 5) },
    });
    assert.equal(bad.status, 422);
    assert.equal(bad.json.error.details[0].field, 'code');
    const unknown = await call('POST', '/api/v1/mfa/totp/confirm', {
      headers: bearer(token),
      json: { code: '123456', extra: 1 },
    });
    assert.equal(unknown.status, 422);
    assert.deepEqual(unknown.json.error.details.map((d) => d.field), ['extra']);

    const conf = await call('POST', '/api/v1/mfa/totp/confirm', {
      headers: bearer(token),
      json: { code: totp(secret) },
    });
    assert.equal(conf.status, 200);
    assert.equal(conf.json.recovery_codes.length, 10);
    assert.equal(new Set(conf.json.recovery_codes).size, 10);
    assert.ok(!conf.text.includes(secret));

    st = await call('GET', '/api/v1/mfa', { headers: bearer(token) });
    assert.deepEqual(st.json, {
      totp: 'confirmed',
      recovery_codes_remaining: 10,
      factors: ['totp', 'recovery_code'],
    });
    // The password-only session predates the factor: it can no longer change credentials.
    const stale = await call('POST', '/api/v1/mfa/totp/enroll', { headers: bearer(token) });
    assert.equal(stale.status, 403);
    assert.equal(stale.json.error.code, 'reauthentication_required');
    assert.match(stale.json.error.message, /log in again with your second factor within the last 10 minutes/);
    // The secret is never returned again: enrolling while confirmed is refused.
    const mfa = await login({ email: u.email, password: PW, totp: totp(secret, 1) });
    assert.equal(mfa.status, 200, JSON.stringify(mfa.json));
    const again = await call('POST', '/api/v1/mfa/totp/enroll', { headers: bearer(mfa.json.access_token) });
    assert.equal(again.status, 409);
    assert.ok(!again.text.includes(secret));
    const events = await auditEvents(`actor=${u.id}&limit=50`);
    for (const a of ['mfa.totp_enroll', 'mfa.totp_confirm']) assert.ok(events.some((e) => e.action === a), a);
    assert.ok(!JSON.stringify(events).includes(secret));
  });

  test('confirm without an enrolment is 409; the routes need a token', async () => {
    const u = await newUser('noenrol');
    const token = await passwordToken(u);
    const r = await call('POST', '/api/v1/mfa/totp/confirm', { headers: bearer(token), json: { code: '123456' } });
    assert.equal(r.status, 409);
    assert.equal((await call('POST', '/api/v1/mfa/totp/enroll')).status, 401);
    assert.equal((await call('GET', '/api/v1/mfa')).status, 401);
  });
});

describe('step-up login', () => {
  test('password alone → 401 mfa_required with a ticket; ticket + oathtool code → tokens with amr pwd otp mfa', async () => {
    const u = await newUser('stepup');
    const { secret } = await enrol(u);
    const first = await login({ email: u.email, password: PW });
    assert.equal(first.status, 401);
    assert.equal(first.json.error.code, 'mfa_required');
    assert.deepEqual(first.json.factors, ['totp', 'recovery_code']);
    assert.equal(first.json.expires_in, 300);
    const ticket = first.json.mfa_ticket;
    await waitForAudit(`action=request.denied&limit=20`, (e) => e.request_id === first.headers.get('x-request-id'));

    const code = totp(secret, 1); // the confirming code used the current step
    const ok = await login({ mfa_ticket: ticket, totp: code });
    assert.equal(ok.status, 200, JSON.stringify(ok.json));
    assert.deepEqual(claims(ok.json.access_token).amr, ['pwd', 'otp', 'mfa']);
    // A refreshed token keeps the amr of its session.
    const ref = await call('POST', '/api/v1/auth/refresh', { json: { refresh_token: ok.json.refresh_token } });
    assert.equal(ref.status, 200);
    assert.deepEqual(claims(ref.json.access_token).amr, ['pwd', 'otp', 'mfa']);

    // The ticket works once.
    const reuse = await login({ mfa_ticket: ticket, totp: code });
    assert.equal(reuse.status, 401);
    assert.equal(reuse.json.error.code, 'unauthenticated');
    // The code works once: replayed inside its window it is refused, and so is an older one.
    const replay = await login({ email: u.email, password: PW, totp: code });
    assert.equal(replay.status, 401);
    assert.match(replay.json.error.message, /already used/);
    const older = await login({ email: u.email, password: PW, totp: totp(secret, 0) });
    assert.equal(older.status, 401);
    await waitForAudit(`action=auth.login_failed&actor=${u.id}&limit=20`, (e) => e.details?.reason === 'bad_totp');
  });

  test('one shot: email, password and totp together', async () => {
    const u = await newUser('oneshot');
    const { secret } = await enrol(u);
    const r = await login({ email: u.email, password: PW, totp: totp(secret, 1) });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.deepEqual(claims(r.json.access_token).amr, ['pwd', 'otp', 'mfa']);
    // A wrong password is still just a wrong password.
    const bad = await login({ email: u.email, password: 'wrong password here', totp: totp(secret, 1) });
    assert.equal(bad.status, 401);
    assert.equal(bad.json.error.code, 'unauthenticated');
  });

  test('malformed second steps are 422: ticket with a password, two factors, no factor', async () => {
    const cases = [
      [{ mfa_ticket: 'x', password: PW, totp: '123456' }, ['password']],
      [{ mfa_ticket: 'x', totp: '123456', recovery_code: 'aaaa' }, ['recovery_code']],
      [{ mfa_ticket: 'x' }, ['']],
      [{ mfa_ticket: 'x', totp: 123456 }, ['totp']],
    ];
    for (const [body, fields] of cases) {
      const r = await login(body);
      assert.equal(r.status, 422, JSON.stringify(body));
      assert.deepEqual(r.json.error.details.map((d) => d.field), fields, JSON.stringify(body));
    }
    const r = await login({ mfa_ticket: 'not-a-ticket', totp: '123456' });
    assert.equal(r.status, 401);
  });

  test('a factor for an identity without one is 422', async () => {
    const u = await newUser('nofactor');
    const r = await login({ email: u.email, password: PW, totp: '123456' });
    assert.equal(r.status, 422);
    assert.equal(r.json.error.details[0].field, 'totp');
  });

  test('wrong codes count towards the login throttle: the account locks (429), audited', async () => {
    const u = await newUser('throttle');
    const { secret } = await enrol(u);
    const { mfa_ticket: ticket } = (await login({ email: u.email, password: PW })).json;
    const right = totp(secret, 1);
    const wrong = String((Number(right) + 500000) % 1000000).padStart(6, '0');
    let r;
    for (let i = 0; i < 8; i++) {
      r = await login({ mfa_ticket: ticket, totp: wrong });
      if (r.status === 429) break;
      assert.equal(r.status, 401);
    }
    assert.equal(r.status, 429);
    assert.ok(Number(r.headers.get('retry-after')) > 0);
    // Locked: even the right code waits for the lock to end.
    assert.equal((await login({ mfa_ticket: ticket, totp: right })).status, 429);
    await waitForAudit(`action=auth.lockout&actor=${u.id}&limit=5`, () => true);
  });

  test('while others have locked the account, the owner\'s device token completes a step-up login', async () => {
    const u = await newUser('devstep');
    const first = await login({ email: u.email, password: PW });
    assert.equal(first.status, 200);
    const device = first.json.device_token;
    const { secret } = await enrol(u);
    for (let i = 0; i < 5; i++) assert.equal((await login({ email: u.email, password: `wrong ${i} password` })).status, 401);
    assert.equal((await login({ email: u.email, password: PW })).status, 429);
    const step1 = await login({ email: u.email, password: PW, device_token: device });
    assert.equal(step1.status, 401);
    assert.equal(step1.json.error.code, 'mfa_required');
    // The second step is a login too: without the token it is an untrusted client's, locked.
    assert.equal((await login({ mfa_ticket: step1.json.mfa_ticket, totp: totp(secret, 1) })).status, 429);
    const done = await login({ mfa_ticket: step1.json.mfa_ticket, totp: totp(secret, 1), device_token: device });
    assert.equal(done.status, 200, JSON.stringify(done.json));
    assert.deepEqual(claims(done.json.access_token).amr, ['pwd', 'otp', 'mfa']);
    assert.ok(done.json.device_token);
  });
});

describe('recovery codes', () => {
  test('a recovery code logs in once; regenerating needs a code and replaces them all', async () => {
    const u = await newUser('recovery');
    const { secret, recovery, token } = await enrol(u);
    const t1 = (await login({ email: u.email, password: PW })).json.mfa_ticket;
    const ok = await login({ mfa_ticket: t1, recovery_code: recovery[0].toUpperCase() });
    assert.equal(ok.status, 200, JSON.stringify(ok.json));
    assert.deepEqual(claims(ok.json.access_token).amr, ['pwd', 'otp', 'mfa']);
    const again = await login({ email: u.email, password: PW, recovery_code: recovery[0] });
    assert.equal(again.status, 401);
    let st = await call('GET', '/api/v1/mfa', { headers: bearer(token) });
    assert.equal(st.json.recovery_codes_remaining, 9);

    // Regenerating needs a session started with the second factor (the recovery code login is one).
    const stale = await call('POST', '/api/v1/mfa/recovery-codes', {
      headers: bearer(token),
      json: { code: totp(secret, 1) },
    });
    assert.equal(stale.status, 403);
    assert.equal(stale.json.error.code, 'reauthentication_required');
    const mfaToken = ok.json.access_token;
    const bad = await call('POST', '/api/v1/mfa/recovery-codes', { headers: bearer(mfaToken), json: { code: '000000' } });
    assert.ok([422, 429].includes(bad.status));
    const regen = await call('POST', '/api/v1/mfa/recovery-codes', {
      headers: bearer(mfaToken),
      json: { code: totp(secret, 1) },
    });
    assert.equal(regen.status, 200, JSON.stringify(regen.json));
    assert.equal(regen.json.recovery_codes.length, 10);
    assert.ok(regen.json.recovery_codes.every((c) => !recovery.includes(c)));
    st = await call('GET', '/api/v1/mfa', { headers: bearer(token) });
    assert.equal(st.json.recovery_codes_remaining, 10);
    const old = await login({ email: u.email, password: PW, recovery_code: recovery[1] });
    assert.equal(old.status, 401);
    const fresh = await login({ email: u.email, password: PW, recovery_code: regen.json.recovery_codes[1] });
    assert.equal(fresh.status, 200);
    const events = await auditEvents(`actor=${u.id}&limit=50`);
    assert.ok(events.some((e) => e.action === 'mfa.recovery_regenerate'));
    assert.ok(events.some((e) => e.action === 'auth.login' && e.details?.factor === 'recovery_code'));
    assert.ok(events.some((e) => e.action === 'auth.login_failed' && e.details?.reason === 'bad_recovery_code'));
  });
});

describe('disabling TOTP', () => {
  test('needs a current code; afterwards login asks for the password only', async () => {
    const u = await newUser('disable');
    const { secret, recovery, token: pwdOnly } = await enrol(u);
    const right = totp(secret, 1);
    const wrong = String((Number(right) + 500000) % 1000000).padStart(6, '0');
    // A session without the second factor cannot remove it, even with a right code (not used up).
    const stale = await call('POST', '/api/v1/mfa/totp/disable', { headers: bearer(pwdOnly), json: { code: right } });
    assert.equal(stale.status, 403);
    assert.equal(stale.json.error.code, 'reauthentication_required');
    const rc = await login({ email: u.email, password: PW, recovery_code: recovery[0] });
    assert.equal(rc.status, 200, JSON.stringify(rc.json));
    const token = rc.json.access_token;
    const bad = await call('POST', '/api/v1/mfa/totp/disable', { headers: bearer(token), json: { code: wrong } });
    assert.equal(bad.status, 422);
    assert.equal(bad.json.error.details[0].field, 'code');
    const ok = await call('POST', '/api/v1/mfa/totp/disable', { headers: bearer(token), json: { code: right } });
    assert.equal(ok.status, 204);
    const st = await call('GET', '/api/v1/mfa', { headers: bearer(token) });
    assert.deepEqual(st.json, { totp: 'none', recovery_codes_remaining: 0, factors: [] });
    const r = await login({ email: u.email, password: PW });
    assert.equal(r.status, 200);
    assert.deepEqual(claims(r.json.access_token).amr, ['pwd']);
    const none = await call('POST', '/api/v1/mfa/totp/disable', { headers: bearer(token), json: { code: right } });
    assert.equal(none.status, 409);
    assert.ok((await auditEvents(`actor=${u.id}&limit=50`)).some((e) => e.action === 'mfa.totp_disable'));
  });
});

describe('policies: mfa_present', () => {
  test('an allow policy with mfa_present grants only tokens that show a second factor', async () => {
    const u = await newUser('mfapolicy');
    const pol = await call('POST', '/api/v1/policies', {
      headers: bearer(admin),
      json: {
        name: `policies-with-mfa-${n++}`,
        effect: 'allow',
        actions: ['policies:read'],
        resources: ['*'],
        conditions: { mfa_present: true },
        attach: { identities: [u.id] },
      },
    });
    assert.equal(pol.status, 201, JSON.stringify(pol.json));
    const { secret, token: pwdOnly } = await enrol(u);
    const denied = await call('GET', '/api/v1/policies', { headers: bearer(pwdOnly) });
    assert.equal(denied.status, 403);
    const r = await login({ email: u.email, password: PW, totp: totp(secret, 1) });
    assert.equal(r.status, 200);
    const allowed = await call('GET', '/api/v1/policies', { headers: bearer(r.json.access_token) });
    assert.equal(allowed.status, 200);
    await waitForAudit(`action=request.denied&actor=${u.id}&limit=20`, (e) => e.request_id === denied.headers.get('x-request-id'));
  });
});
