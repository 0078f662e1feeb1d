// Identity and access management through the API: bootstrap, registration,
// verification, login, throttling, refresh rotation and reuse detection,
// logout, key rotation, JWT attacks, organization scoping, policies and
// the audit of every denial. Every response is checked against
// api/openapi.yaml. Runs on the backend chosen by DCMS_TEST_BACKEND.

import assert from 'node:assert/strict';
import {createPrivateKey, createSign, generateKeyPairSync, createHmac} from 'node:crypto';
import {before, describe, test} from 'node:test';
import * as jose from 'jose';
import {checkResponse} from './lib/openapi.mjs';
import {client} from './lib/http.mjs';
import {startServer} from './lib/server.mjs';
import {ADMIN_EMAIL, ADMIN_PASSWORD, addMember, adminEnv, adminToken, bearer, login} from './lib/iam.mjs';

const PW = 'correct horse battery staple';
let server, api, admin;

async function call(method, path, opts = {}, template)
{
    const r = await api.call(method, path, opts);
    checkResponse(method, template ?? path, r.res, r.json ?? r.text);
    return r;
}

const b64u = (v) =>
    Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
const parts = (t) =>
    t.split('.').map((p, i) => (i < 2 ? JSON.parse(Buffer.from(p, 'base64url')) : p));

async function createIdentity(token, body)
{
    const r = await call('POST', '/api/v1/identities',
                         {headers : token ? bearer(token) : {}, json : body});
    assert.equal(r.status, 201, JSON.stringify(r.json));
    return r.json;
}

async function auditEvents(query)
{
    const r = await call('GET', `/api/v1/audit/events?${query}`, {headers : bearer(admin)});
    assert.equal(r.status, 200);
    return r.json.events;
}

// Refusals are audited when the request completes, just after the answer is
// sent: poll briefly for the event.
async function waitForAudit(query, pred) {
  for (let i = 0; i < 40; i++) {
    const ev = await auditEvents(query);
    if (ev.some(pred)) return ev;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`no audit event matching ${query}`);
}

let n = 0;
const email = (p) => `${p}-${++n}-${Date.now()}@example.com`;

// The e-mail verification token development mode logs for address `e`.
async function tokenFor(e, srv = server) {
    for (let i = 0; i < 40; i++) {
        const line = srv.logs().find((l) => l.verification_token && l.to === e);
        if (line) return line.verification_token;
        await new Promise((r) => setTimeout(r, 50));
    }
    assert.fail(`no verification token logged for ${e}`);
}

// Self-registration (202, the same answer for any address); the new identity's id comes from
// confirming the address with the token of the mail.
async function register(body) {
    const r = await call('POST', '/api/v1/identities', {json : body});
    assert.equal(r.status, 202, JSON.stringify(r.json));
    const v = await call('POST', '/api/v1/auth/verify-email', {json : {token : await tokenFor(body.email)}});
    assert.equal(v.status, 200, JSON.stringify(v.json));
    return {id : v.json.identity_id};
}

before(async () => {
    server = await startServer({
        env : {
            ...adminEnv,
            DCMS_DEV_MODE : 'true',
            DCMS_AUDIT_REFUSALS_PER_MINUTE : '100000',
            DCMS_LOGIN_MAX_FAILURES_PER_IP : '1000',
            DCMS_LOGIN_LOCKOUT_S : '60',
            DCMS_REGISTRATIONS_PER_HOUR : '1000',
            DCMS_LOGIN_DEVICE_MAX_FAILURES : '3'
        },
    });
    api = client(server);
    admin = await adminToken(server);
});

describe('bootstrap, tokens and JWKS', () => {
    test('the bootstrap admin logs in and gets an ES256 token with the documented claims',
         async () => {
             const r = await call('POST', '/api/v1/auth/login',
                                  {json : {email : ADMIN_EMAIL, password : ADMIN_PASSWORD}});
             assert.equal(r.status, 200);
             assert.equal(r.json.token_type, 'Bearer');
             assert.equal(r.json.expires_in, 900);
             const [hdr, claims] = parts(r.json.access_token);
             assert.deepEqual(Object.keys(hdr).sort(), [ 'alg', 'kid', 'typ' ]);
             assert.equal(hdr.alg, 'ES256');
             for (const c of ['sub', 'roles', 'org', 'iat', 'exp', 'jti', 'amr', 'iss', 'aud', 'auth_time'])
                 assert.ok(c in claims, c);
             assert.deepEqual(claims.roles, [ 'admin' ]);
             assert.deepEqual(claims.amr, [ 'pwd' ]);
             assert.equal(claims.exp - claims.iat, 900);
         });

    test('a dcmsd token verifies with jose against the JWKS endpoint', async () => {
        const r = await call('GET', '/.well-known/jwks.json');
        assert.equal(r.status, 200);
        const jwks = jose.createLocalJWKSet(r.json);
        const {payload, protectedHeader} = await jose.jwtVerify(admin, jwks, {
            issuer : 'dcms',
            audience : 'dcms-api',
            algorithms : [ 'ES256' ],
        });
        assert.equal(protectedHeader.alg, 'ES256');
        assert.ok(payload.sub);
        // The kid is the RFC 7638 thumbprint of the key.
        const jwk = r.json.keys.find((k) => k.kid === protectedHeader.kid);
        assert.equal(await jose.calculateJwkThumbprint(jwk), jwk.kid);
    });

    test('a bootstrap admin exists once; no token → 401 on protected routes, audited', async () => {
        const r = await call('GET', '/api/v1/identities');
        assert.equal(r.status, 401);
        await waitForAudit(`action=request.denied&actor=anonymous&limit=5`, (e) => e.request_id === r.headers.get('x-request-id'));
    });
});

describe('JWT attacks are refused with 401', () => {
    let claims;
    before(() => { claims = parts(admin)[1]; });
    const probe = async (token, why) => {
        const r = await call('GET', '/api/v1/identities', {headers : bearer(token)});
        assert.equal(r.status, 401, why);
        assert.equal(r.json.error.code, 'unauthenticated');
    };
    test('alg none', async () => {
        const [h] = admin.split('.');
        const hdr = {...JSON.parse(Buffer.from(h, 'base64url')), alg : 'none'};
        await probe(`${b64u(hdr)}.${b64u(claims)}.`, 'alg none');
        await probe(`${b64u({alg : 'none', typ : 'JWT'})}.${b64u(claims)}.`,
                    'alg none without kid');
    });
    test('HS256 signed with the public key', async () => {
        const jwks = (await call('GET', '/.well-known/jwks.json')).json;
        const key = jwks.keys[0];
        const pem = (await import('node:crypto')).createPublicKey({key, format : 'jwk'}).export({
            type : 'spki',
            format : 'pem'
        });
        const hdr = b64u({alg : 'HS256', typ : 'JWT', kid : key.kid});
        const body = b64u(claims);
        const sig = createHmac('sha256', pem).update(`${hdr}.${body}`).digest('base64url');
        await probe(`${hdr}.${body}.${sig}`, 'HS256 with the public key as secret');
        const sig2 =
            createHmac('sha256', JSON.stringify(key)).update(`${hdr}.${body}`).digest('base64url');
        await probe(`${hdr}.${body}.${sig2}`, 'HS256 with the JWK as secret');
    });
    test('unknown kid and a foreign key', async () => {
        const {privateKey} = generateKeyPairSync('ec', {namedCurve : 'P-256'});
        const token = await new jose.SignJWT(claims)
                          .setProtectedHeader({alg : 'ES256', typ : 'JWT', kid : 'unknown-kid'})
                          .sign(privateKey);
        await probe(token, 'unknown kid');
        const kid = parts(admin)[0].kid;
        const forged = await new jose.SignJWT(claims)
                           .setProtectedHeader({alg : 'ES256', typ : 'JWT', kid})
                           .sign(privateKey);
        await probe(forged, 'known kid, wrong key');
    });
    test('expired, wrong audience and issuer (claims changed, so the signature breaks too)',
         async () => {
             const [h, , s] = admin.split('.');
             await probe(`${h}.${b64u({...claims, exp : claims.iat - 3600})}.${s}`, 'expired');
             await probe(`${h}.${b64u({...claims, aud : 'other'})}.${s}`, 'audience');
             await probe(`${h}.${b64u({...claims, iss : 'evil'})}.${s}`, 'issuer');
         });
    test('garbage and other schemes', async () => {
        await probe('not.a.jwt', 'garbage');
        const r =
            await call('GET', '/api/v1/identities', {headers : {Authorization : 'Basic YTpi'}});
        assert.equal(r.status, 401);
        // A bad token is refused on public routes too.
        const p = await call('GET', '/.well-known/jwks.json', {headers : bearer('x.y.z')});
        assert.equal(p.status, 401);
    });
});

describe('registration, verification and login', () => {
    test('self-registration validates every field at once and refuses unknown keys', async () => {
        const r = await call('POST', '/api/v1/identities', {
            json : {
                name : '',
                email : 'nope',
                password : 'password1234',
                roles : [ 'admin' ],
                colour : 'red'
            },
        });
        assert.equal(r.status, 422);
        const fields = r.json.error.details.map((d) => d.field).sort();
        assert.deepEqual(fields, [ 'colour', 'email', 'name', 'password', 'roles' ]);
        const common =
            await call('POST', '/api/v1/identities',
                       {json : {name : 'x', email : email('c'), password : 'QWERTYUIOPASDFGHJKL'}});
        assert.equal(common.status, 422);
        assert.match(common.json.error.details[0].problem, /common/);
    });

    test('pending until an admin verifies; e-mail verification with the one-time token',
         async () => {
             const e = email('reg');
             const r = await call('POST', '/api/v1/identities',
                                  {json : {name : 'Reg', email : e, password : PW}});
             assert.equal(r.status, 202, JSON.stringify(r.json));
             assert.deepEqual(Object.keys(r.json).sort(), [ 'email', 'message', 'status' ]);
             const denied =
                 await call('POST', '/api/v1/auth/login', {json : {email : e, password : PW}});
             assert.equal(denied.status, 403);
             // dev mode logs the token (and only in dev mode).
             const token = await tokenFor(e);
             const v = await call('POST', '/api/v1/auth/verify-email', {json : {token}});
             assert.equal(v.status, 200);
             const id = {id : v.json.identity_id};
             const again = await call('POST', '/api/v1/auth/verify-email', {json : {token}});
             assert.equal(again.status, 422, 'the token works once');
             const ver = await call('POST', `/api/v1/identities/${id.id}/verify`,
                                    {headers : bearer(admin), json : {note : 'passport checked'}},
                                    '/api/v1/identities/{id}/verify');
             assert.equal(ver.status, 200);
             assert.equal(ver.json.status, 'active');
             assert.equal(ver.json.verification_note, 'passport checked');
             assert.equal(ver.json.verified_by, parts(admin)[1].sub);
             assert.equal(ver.json.email_verified, true);
             const ok = await call('POST', '/api/v1/auth/login',
                                   {json : {email : e.toUpperCase(), password : PW}});
             assert.equal(ok.status, 200);
         });

    test('verify needs the evidence note and an admin', async () => {
        const id = await register({name : 'N', email : email('n'), password : PW});
        const r =
            await call('POST', `/api/v1/identities/${id.id}/verify`,
                       {headers : bearer(admin), json : {}}, '/api/v1/identities/{id}/verify');
        assert.equal(r.status, 422);
        assert.equal(r.json.error.details[0].field, 'note');
    });

    test('wrong password → 401 with the same message as an unknown email', async () => {
        const a = await call('POST', '/api/v1/auth/login',
                             {json : {email : ADMIN_EMAIL, password : 'wrong password here'}});
        const b =
            await call('POST', '/api/v1/auth/login',
                       {json : {email : 'nobody@example.com', password : 'wrong password here'}});
        assert.equal(a.status, 401);
        assert.equal(b.status, 401);
        assert.equal(a.json.error.message, b.json.error.message);
    });

    const loginAs = (json, headers = {}) => call('POST', '/api/v1/auth/login', {json, headers});

    test(
        'throttling: 5 failures lock the account for clients without a device token (429, even with the right password), audited; the owner with a device token still logs in',
        async () => {
            const e = email('thr');
            const id = await createIdentity(admin, {name : 'T', email : e, password : PW});
            // The owner logged in from this client before: it holds a device token.
            const first = await loginAs({email : e, password : PW});
            assert.equal(first.status, 200);
            const device = first.json.device_token;
            assert.match(device, /^dv1\.[0-9a-f-]{36}\.[0-9]+\.[A-Za-z0-9_-]{43}$/);
            for (let i = 0; i < 5; i++) {
                const r = await loginAs({email : e, password : `wrong password ${i}`});
                assert.equal(r.status, 401);
            }
            const locked = await loginAs({email : e, password : PW});
            assert.equal(locked.status, 429);
            assert.match(locked.json.error.message, /try again in \d+ seconds/);
            const after = Number(locked.headers.get('retry-after'));
            assert.ok(Number.isInteger(after) && after >= 1 && after <= 900,
                      `Retry-After: ${locked.headers.get('retry-after')}`);
            // The lockout is for untrusted clients only: the owner's device token gets in,
            // in the body or as the cookie a browser sends back.
            const owner = await loginAs({email : e, password : PW, device_token : device});
            assert.equal(owner.status, 200, JSON.stringify(owner.json));
            const viaCookie = await loginAs({email : e, password : PW},
                                            {Cookie : `__Host-dcms_device=${owner.json.device_token}`});
            assert.equal(viaCookie.status, 200, JSON.stringify(viaCookie.json));
            // ... and the owner's logins do not reset the lock for guessers.
            assert.equal((await loginAs({email : e, password : PW})).status, 429);
            const ev = await auditEvents(`action=auth.lockout&actor=${id.id}`);
            assert.equal(ev.length, 1);
            assert.equal(ev[0].outcome, 'denied');
            assert.equal(ev[0].details.scope, 'account');
            const failed = await auditEvents(`action=auth.login_failed&actor=${id.id}`);
            assert.equal(failed.length, 5);
            assert.ok(failed.every((f) => f.details.client === 'untrusted'));
            assert.ok(!JSON.stringify(failed).includes('wrong password'),
                      'passwords never audited');
            const logins = await auditEvents(`action=auth.login&actor=${id.id}`);
            assert.ok(logins.some((l) => l.details.client === 'device'));
            assert.ok(!JSON.stringify(logins).includes(device), 'device tokens never audited');
        });

    test('the device token comes as a Secure HttpOnly SameSite=Strict cookie too; it is bound to its identity and cannot be forged',
         async () => {
             const ea = email('deva'), eb = email('devb');
             await createIdentity(admin, {name : 'A', email : ea, password : PW});
             await createIdentity(admin, {name : 'B', email : eb, password : PW});
             const a = await loginAs({email : ea, password : PW});
             assert.equal(a.status, 200);
             const cookie = a.headers.get('set-cookie');
             assert.ok(cookie, 'Set-Cookie');
             const [pair, ...attrs] = cookie.split(';').map((x) => x.trim());
             assert.equal(pair, `__Host-dcms_device=${a.json.device_token}`);
             for (const want of ['Path=/', 'Secure', 'HttpOnly', 'SameSite=Strict'])
                 assert.ok(attrs.includes(want), `${want} in ${cookie}`);
             assert.ok(attrs.some((x) => /^Max-Age=[1-9][0-9]*$/.test(x)), cookie);
             // Each login issues a new token.
             const a2 = await loginAs({email : ea, password : PW});
             assert.notEqual(a2.json.device_token, a.json.device_token);
             // Lock B for untrusted clients.
             for (let i = 0; i < 5; i++)
                 assert.equal((await loginAs({email : eb, password : `wrong ${i} password`})).status, 401);
             assert.equal((await loginAs({email : eb, password : PW})).status, 429);
             // A's token is not B's; a tampered or truncated token is no token.
             const tok = a.json.device_token;
             const flip = (t, i) => t.slice(0, i) + (t[i] === 'A' ? 'B' : 'A') + t.slice(i + 1);
             const forged = [
                 tok, flip(tok, tok.length - 5), flip(tok, 10), tok.slice(0, -1),
                 tok.replace(/\.([0-9]+)\./, (m, x) => `.${Number(x) + 1000}.`), 'garbage'
             ];
             for (const t of forged) {
                 const r = await loginAs({email : eb, password : PW, device_token : t});
                 assert.equal(r.status, 429, t);
                 const c = await loginAs({email : eb, password : PW}, {Cookie : `__Host-dcms_device=${t}`});
                 assert.equal(c.status, 429, t);
             }
             // A device token does not stand for the password.
             const wrong = await loginAs({email : ea, password : 'not the password', device_token : tok});
             assert.equal(wrong.status, 401);
             const bad = await loginAs({email : ea, password : PW, device_token : 'x'.repeat(200)});
             assert.equal(bad.status, 422);
             assert.equal(bad.json.error.details[0].field, 'device_token');
         });

    test('failures with a device token count against that token only: it locks after its own limit, then counts as no token',
         async () => {
             const e = email('devlock');
             const id = await createIdentity(admin, {name : 'D', email : e, password : PW});
             const t1 = (await loginAs({email : e, password : PW})).json.device_token;
             const t2 = (await loginAs({email : e, password : PW})).json.device_token;
             // DCMS_LOGIN_DEVICE_MAX_FAILURES=3 for this server.
             for (let i = 0; i < 3; i++)
                 assert.equal((await loginAs({email : e, password : `wrong ${i} password`, device_token : t1})).status, 401);
             const ev = await auditEvents(`action=auth.lockout&actor=${id.id}`);
             assert.equal(ev.length, 1);
             assert.equal(ev[0].details.scope, 'device');
             assert.equal(ev[0].resource_type, 'device');
             assert.match(ev[0].resource_id, /^[0-9a-f-]{36}$/);
             assert.ok(t1.includes(ev[0].resource_id), 'the token id, never the token');
             // The account's untrusted lockout did not move: an untrusted client still logs in.
             assert.equal((await loginAs({email : e, password : PW})).status, 200);
             // The locked token is treated as none: its failures now count against the account.
             for (let i = 0; i < 5; i++)
                 assert.equal((await loginAs({email : e, password : `wrong ${i} again`, device_token : t1})).status, 401);
             assert.equal((await loginAs({email : e, password : PW, device_token : t1})).status, 429);
             assert.equal((await loginAs({email : e, password : PW})).status, 429);
             // The owner's other device is unaffected.
             assert.equal((await loginAs({email : e, password : PW, device_token : t2})).status, 200);
             const failed = await auditEvents(`action=auth.login_failed&actor=${id.id}`);
             assert.equal(failed.filter((f) => f.details.client === 'device').length, 3);
             assert.equal(failed.filter((f) => f.details.client === 'untrusted').length, 5);
         });
});

describe('sessions', () => {
    let e, tokens;
    before(async () => {
        e = email('sess');
        await createIdentity(admin, {name : 'S', email : e, password : PW, roles : [ 'provider' ]});
        tokens = await login(server, e, PW);
    });

    test('refresh rotates; reusing a rotated token revokes the whole family', async () => {
        const r1 = await call('POST', '/api/v1/auth/refresh',
                              {json : {refresh_token : tokens.refresh_token}});
        assert.equal(r1.status, 200);
        assert.notEqual(r1.json.refresh_token, tokens.refresh_token);
        const me = parts(r1.json.access_token)[1].sub;
        const read =
            await call('GET', `/api/v1/identities/${me}`, {headers : bearer(r1.json.access_token)},
                       '/api/v1/identities/{id}');
        assert.equal(read.status, 200);
        assert.equal(read.headers.get('etag'), `"${read.json.version}"`);
        // The first token again: reuse.
        const reuse = await call('POST', '/api/v1/auth/refresh',
                                 {json : {refresh_token : tokens.refresh_token}});
        assert.equal(reuse.status, 401);
        assert.match(reuse.json.error.message, /reused/);
        // Every token of the family is dead now, the newest refresh token and the access tokens
        // too.
        const r2 = await call('POST', '/api/v1/auth/refresh',
                              {json : {refresh_token : r1.json.refresh_token}});
        assert.equal(r2.status, 401);
        const after =
            await call('GET', `/api/v1/identities/${me}`, {headers : bearer(r1.json.access_token)},
                       '/api/v1/identities/{id}');
        assert.equal(after.status, 401);
        const ev = await auditEvents(`action=auth.refresh_reuse&actor=${me}`);
        assert.equal(ev.length, 1);
    });

    test('logout revokes the session (refresh token or bearer token)', async () => {
        const t = await login(server, e, PW);
        const me = parts(t.access_token)[1].sub;
        const out =
            await call('POST', '/api/v1/auth/logout', {json : {refresh_token : t.refresh_token}});
        assert.equal(out.status, 204);
        assert.equal((await call('POST', '/api/v1/auth/refresh', {
                         json : {refresh_token : t.refresh_token}
                     })).status,
                     401);
        assert.equal((await call('GET', `/api/v1/identities/${me}`,
                                 {headers : bearer(t.access_token)}, '/api/v1/identities/{id}'))
                         .status,
                     401);
        const t2 = await login(server, e, PW);
        assert.equal(
            (await call('POST', '/api/v1/auth/logout', {headers : bearer(t2.access_token)})).status,
            204);
        assert.equal((await call('GET', `/api/v1/identities/${me}`,
                                 {headers : bearer(t2.access_token)}, '/api/v1/identities/{id}'))
                         .status,
                     401);
    });

    test('the session list: live sessions of the caller only, one revoked from another', async () => {
        const e2 = email('sesslist');
        await createIdentity(admin, {name : 'L', email : e2, password : PW, roles : [ 'consumer' ]});
        const laptop = await login(server, e2, PW);
        const phone = await login(server, e2, PW);
        const me = parts(laptop.access_token)[1].sub;
        const sidOf = (t) => parts(t.access_token)[1].sid;
        const list = async (t) => {
            const r = await call('GET', '/api/v1/auth/sessions', {headers : bearer(t.access_token)});
            assert.equal(r.status, 200, r.text);
            return r.json.sessions;
        };
        let ss = await list(laptop);
        assert.deepEqual(ss.map((x) => x.id), [ sidOf(phone), sidOf(laptop) ], 'newest first');
        assert.deepEqual(ss.map((x) => x.current), [ false, true ]);
        assert.deepEqual(ss[0].amr, [ 'pwd' ]);
        // another identity's sessions are neither listed nor revocable
        const other = await login(server, e, PW);
        assert.ok(!(await list(other)).some((x) => x.id === sidOf(laptop)));
        let r = await call('DELETE', `/api/v1/auth/sessions/${sidOf(laptop)}`,
                           {headers : bearer(other.access_token)}, '/api/v1/auth/sessions/{id}');
        assert.equal(r.status, 404);
        r = await call('DELETE', '/api/v1/auth/sessions/not-a-uuid', {headers : bearer(other.access_token)},
                       '/api/v1/auth/sessions/{id}');
        assert.equal(r.status, 404);
        // the laptop signs the phone out: its refresh and access tokens die at once
        r = await call('DELETE', `/api/v1/auth/sessions/${sidOf(phone)}`, {headers : bearer(laptop.access_token)},
                       '/api/v1/auth/sessions/{id}');
        assert.equal(r.status, 204);
        assert.equal((await call('POST', '/api/v1/auth/refresh', {json : {refresh_token : phone.refresh_token}})).status,
                     401);
        assert.equal((await call('GET', '/api/v1/auth/sessions', {headers : bearer(phone.access_token)})).status, 401);
        ss = await list(laptop);
        assert.deepEqual(ss.map((x) => x.id), [ sidOf(laptop) ]);
        r = await call('DELETE', `/api/v1/auth/sessions/${sidOf(phone)}`, {headers : bearer(laptop.access_token)},
                       '/api/v1/auth/sessions/{id}');
        assert.equal(r.status, 404, 'already revoked');
        const ev = await auditEvents(`action=auth.session_revoke&actor=${me}`);
        assert.equal(ev.length, 1);
        assert.equal(ev[0].resource_id, sidOf(phone));
    });

    test('key rotation: old tokens stay valid until they expire; JWKS has both keys', async () => {
        const t = await login(server, e, PW);
        const oldKid = parts(t.access_token)[0].kid;
        const rot = await call('POST', '/api/v1/admin/keys/rotate', {headers : bearer(admin)});
        assert.equal(rot.status, 200);
        assert.notEqual(rot.json.kid, oldKid);
        const jwks = (await call('GET', '/.well-known/jwks.json')).json;
        assert.deepEqual(new Set(jwks.keys.map((k) => k.kid)), new Set([ oldKid, rot.json.kid ]));
        const me = parts(t.access_token)[1].sub;
        assert.equal((await call('GET', `/api/v1/identities/${me}`,
                                 {headers : bearer(t.access_token)}, '/api/v1/identities/{id}'))
                         .status,
                     200);
        const t2 = await login(server, e, PW);
        assert.equal(parts(t2.access_token)[0].kid, rot.json.kid);
        await jose.jwtVerify(t.access_token, jose.createLocalJWKSet(jwks),
                             {issuer : 'dcms', audience : 'dcms-api'});
        await jose.jwtVerify(t2.access_token, jose.createLocalJWKSet(jwks),
                             {issuer : 'dcms', audience : 'dcms-api'});
        // Only admins rotate; the refusal is audited with the caller as actor.
        const no =
            await call('POST', '/api/v1/admin/keys/rotate', {headers : bearer(t2.access_token)});
        assert.equal(no.status, 403);
        await waitForAudit(`action=request.denied&actor=${me}`, (x) => x.request_id === no.headers.get('x-request-id') &&
                                 x.details.permission === 'KEYS_ROTATE');
        // The admin's token signed by the old key still works too.
        admin = (await login(server, ADMIN_EMAIL, ADMIN_PASSWORD)).access_token;
    });
});

describe('organizations, scoping, roles and policies', () => {
    let orgA, orgB, a, b, aTok, bTok, auditorTok;
    before(async () => {
        orgA = await createIdentity(
            admin, {kind : 'organization', name : 'Org A', roles : [ 'provider' ]});
        orgB = await createIdentity(admin, {kind : 'organization', name : 'Org B'});
        const ea = email('a'), eb = email('b'), eu = email('aud');
        a = await createIdentity(admin, {name : 'A', email : ea, password : PW});
        await addMember(server, admin, orgA.id, a.id, [ 'provider' ]);
        b = await createIdentity(admin, {name : 'B', email : eb, password : PW});
        await addMember(server, admin, orgB.id, b.id, [ 'consumer' ]);
        await createIdentity(admin,
                             {name : 'Aud', email : eu, password : PW, roles : [ 'auditor' ]});
        aTok = (await login(server, ea, PW)).access_token;
        bTok = (await login(server, eb, PW)).access_token;
        auditorTok = (await login(server, eu, PW)).access_token;
        assert.equal(parts(aTok)[1].org, orgA.id);
    });

    test("a user of one organization cannot see another's identity (404 as if unknown, audited)", async () => {
        assert.equal((await call('GET', `/api/v1/identities/${a.id}`, {headers : bearer(aTok)},
                                 '/api/v1/identities/{id}'))
                         .status,
                     200);
        assert.equal((await call('GET', `/api/v1/identities/${orgA.id}`, {headers : bearer(aTok)},
                                 '/api/v1/identities/{id}'))
                         .status,
                     200);
        const r = await call('GET', `/api/v1/identities/${b.id}`, {headers : bearer(aTok)},
                             '/api/v1/identities/{id}');
        assert.equal(r.status, 404);
        assert.equal(r.json.error.message, 'identity not found');
        assert.equal((await call('GET', `/api/v1/identities/${orgB.id}`, {headers : bearer(aTok)},
                                 '/api/v1/identities/{id}'))
                         .status,
                     404);
        await waitForAudit(`action=identity.hidden&actor=${a.id}`, (x) => x.request_id === r.headers.get('x-request-id') &&
                                 x.outcome === 'denied' && x.resource_id === b.id);
        const list = await call('GET', '/api/v1/identities', {headers : bearer(aTok)});
        assert.equal(list.status, 200);
        assert.deepEqual(new Set(list.json.identities.map((i) => i.id)),
                         new Set([ a.id, orgA.id ]));
    });

    test('an auditor reads everything and changes nothing', async () => {
        const list =
            await call('GET', '/api/v1/identities?limit=500', {headers : bearer(auditorTok)});
        assert.equal(list.status, 200);
        assert.ok(list.json.identities.length >= 5);
        assert.equal((await call('GET', `/api/v1/identities/${b.id}`,
                                 {headers : bearer(auditorTok)}, '/api/v1/identities/{id}'))
                         .status,
                     200);
        assert.equal((await call('GET', '/api/v1/audit/events?limit=1', {
                         headers : bearer(auditorTok)
                     })).status,
                     200);
        const c =
            await call('POST', '/api/v1/identities',
                       {headers : bearer(auditorTok), json : {name : 'x', kind : 'organization'}});
        assert.equal(c.status, 403);
        const s = await call('POST', `/api/v1/identities/${b.id}/suspend`,
                             {headers : bearer(auditorTok)}, '/api/v1/identities/{id}/suspend');
        assert.equal(s.status, 403);
        const p = await call('PATCH', `/api/v1/identities/${b.id}`,
                             {headers : bearer(auditorTok), json : {name : 'y'}},
                             '/api/v1/identities/{id}');
        assert.equal(p.status, 403);
    });

    test('PATCH: self-rename allowed, role changes need an admin, If-Match honoured', async () => {
        const r = await call('PATCH', `/api/v1/identities/${a.id}`,
                             {headers : bearer(aTok), json : {name : 'A renamed'}},
                             '/api/v1/identities/{id}');
        assert.equal(r.status, 200);
        assert.equal(r.json.name, 'A renamed');
        const roles = await call('PATCH', `/api/v1/identities/${a.id}`,
                                 {headers : bearer(aTok), json : {roles : [ 'admin' ]}},
                                 '/api/v1/identities/{id}');
        assert.equal(roles.status, 403);
        const stale =
            await call('PATCH', `/api/v1/identities/${a.id}`,
                       {headers : {...bearer(admin), 'If-Match' : '"1"'}, json : {name : 'x'}},
                       '/api/v1/identities/{id}');
        assert.equal(stale.status, 412);
        // One meaning of If-Match everywhere (dcms/etag.h): `*` is any current version.
        const any =
            await call('PATCH', `/api/v1/identities/${a.id}`,
                       {headers : {...bearer(admin), 'If-Match' : '*'}, json : {name : 'A any'}},
                       '/api/v1/identities/{id}');
        assert.equal(any.status, 200);
        assert.equal(any.json.name, 'A any');
        const bad = await call('PATCH', `/api/v1/identities/${a.id}`,
                               {headers : bearer(admin), json : {nickname : 'x'}},
                               '/api/v1/identities/{id}');
        assert.equal(bad.status, 422);
    });

    test('policies: an allow policy grants a cross-organization read; an explicit deny wins',
         async () => {
             const allow = await call('POST', '/api/v1/policies', {
                 headers : bearer(admin),
                 json : {
                     name : `allow-b-reads-a-${n++}`,
                     effect : 'allow',
                     actions : [ 'identities:read' ],
                     resources : [ `identity:${a.id}` ],
                     attach : {identities : [ b.id ]}
                 },
             });
             assert.equal(allow.status, 201, JSON.stringify(allow.json));
             assert.equal((await call('GET', `/api/v1/identities/${a.id}`, {headers : bearer(bTok)},
                                      '/api/v1/identities/{id}'))
                              .status,
                          200);
             const deny = await call('POST', '/api/v1/policies', {
                 headers : bearer(admin),
                 json : {
                     name : `deny-consumers-${n++}`,
                     effect : 'deny',
                     actions : [ 'identities:*' ],
                     resources : [ '*' ],
                     conditions : {ip_range : [ '127.0.0.0/8' ]},
                     attach : {roles : [ 'consumer' ]}
                 },
             });
             assert.equal(deny.status, 201);
             const r = await call('GET', `/api/v1/identities/${b.id}`, {headers : bearer(bTok)},
                                  '/api/v1/identities/{id}');
             assert.equal(r.status, 403);
             assert.match(r.json.error.message, /policy denies/);
             const list = await call('GET', '/api/v1/policies', {headers : bearer(auditorTok)});
             assert.equal(list.status, 200);
             assert.ok(list.json.policies.length >= 2);
             const invalid = await call('POST', '/api/v1/policies', {
                 headers : bearer(admin),
                 json : {
                     name : 'bad',
                     effect : 'maybe',
                     actions : [],
                     resources : [ '*' ],
                     conditions : {ip_range : [ '999.1.1.1/40' ]},
                     attach : {}
                 },
             });
             assert.equal(invalid.status, 422);
             const f = invalid.json.error.details.map((d) => d.field);
             for (const want of ['effect', 'actions', 'conditions.ip_range[0]', 'attach'])
                 assert.ok(f.includes(want), `${want} in ${f}`);
         });

    test('suspending an identity revokes its sessions at once; reactivate restores login',
         async () => {
             const e = email('susp');
             const s = await createIdentity(admin, {name : 'Susp', email : e, password : PW});
             const t = await login(server, e, PW);
             const r = await call('POST', `/api/v1/identities/${s.id}/suspend`,
                                  {headers : bearer(admin), json : {reason : 'fraud report'}},
                                  '/api/v1/identities/{id}/suspend');
             assert.equal(r.status, 200);
             assert.equal(r.json.status, 'suspended');
             assert.equal(
                 (await call('GET', `/api/v1/identities/${s.id}`,
                             {headers : bearer(t.access_token)}, '/api/v1/identities/{id}'))
                     .status,
                 401);
             assert.equal((await call('POST', '/api/v1/auth/login', {
                              json : {email : e, password : PW}
                          })).status,
                          403);
             const re = await call('POST', `/api/v1/identities/${s.id}/reactivate`,
                                   {headers : bearer(admin)}, '/api/v1/identities/{id}/reactivate');
             assert.equal(re.status, 200);
             assert.equal(re.json.status, 'active');
             await login(server, e, PW);
             const ev = await auditEvents(`resource_id=${s.id}&resource_type=identity`);
             assert.deepEqual(
                 ev.map((x) => x.action).filter((x) => x.startsWith('identity.')).reverse(),
                 [ 'identity.create', 'identity.suspend', 'identity.reactivate' ]);
             assert.equal(ev.find((x) => x.action === 'identity.suspend').details.reason,
                          'fraud report');
         });

    test('suspend and reactivate take reason, as contract and enclave actions do; note is refused',
         async () => {
             const s = await createIdentity(admin, {name : 'Reason', email : email('reason'), password : PW});
             for (const op of [ 'suspend', 'reactivate' ]) {
                 const bad = await call('POST', `/api/v1/identities/${s.id}/${op}`,
                                        {headers : bearer(admin), json : {note : 'old name'}});
                 assert.equal(bad.status, 422, op);
                 assert.deepEqual(bad.json.error.details.map((d) => d.field), [ 'note' ]);
                 assert.match(bad.json.error.details[0].problem, /"reason"/);
                 const long = await call('POST', `/api/v1/identities/${s.id}/${op}`,
                                         {headers : bearer(admin), json : {reason : 'x'.repeat(1001)}});
                 assert.equal(long.status, 422);
                 assert.deepEqual(long.json.error.details.map((d) => d.field), [ 'reason' ]);
                 const ok = await call('POST', `/api/v1/identities/${s.id}/${op}`,
                                       {headers : bearer(admin), json : {reason : `${op} test`}},
                                       `/api/v1/identities/{id}/${op}`);
                 assert.equal(ok.status, 200, JSON.stringify(ok.json));
             }
             const ev = await auditEvents(`resource_id=${s.id}&resource_type=identity`);
             for (const op of [ 'suspend', 'reactivate' ])
                 assert.equal(ev.find((x) => x.action === `identity.${op}`).details.reason, `${op} test`);
         });
});

// Issue 13, finding 1: self-registration chose an organization and roles, and
// an admin's identity verification then made the registrant a member.
// Membership is granted by the organization (its org_admin, or an admin
// acting for it with a reason), through /api/v1/organizations/{id}/members.
describe('organization membership', () => {
    let org, other, oa, oaTok, member, memberEmail;
    const members = (o) => `/api/v1/organizations/${o}/members`;
    const MT = '/api/v1/organizations/{id}/members';
    const MDT = '/api/v1/organizations/{id}/members/{identity_id}';
    // A verified user who registered itself: active, in no organization, no roles.
    async function verifiedUser(prefix) {
        const e = email(prefix);
        const {id} = await register({name : prefix, email : e, password : PW});
        const v = await call('POST', `/api/v1/identities/${id}/verify`,
                             {headers : bearer(admin), json : {note : 'id card seen'}},
                             '/api/v1/identities/{id}/verify');
        assert.equal(v.status, 200, JSON.stringify(v.json));
        return {id, email : e, verified : v.json};
    }
    before(async () => {
        org = await createIdentity(admin, {kind : 'organization', name : 'Members Org'});
        other = await createIdentity(admin, {kind : 'organization', name : 'Other Org'});
        const e = email('oa');
        oa = await createIdentity(admin, {name : 'OA', email : e, password : PW});
        const r = await call('POST', members(org.id),
                             {headers : bearer(admin),
                              json : {identity_id : oa.id, roles : [ 'org_admin' ], reason : 'founding admin'}}, MT);
        assert.equal(r.status, 201, JSON.stringify(r.json));
        assert.equal(r.headers.get('location'), `${members(org.id)}/${oa.id}`);
        oaTok = (await login(server, e, PW)).access_token;
    });

    test('self-registration cannot choose an organization or roles (422 naming each field)', async () => {
        const e = email('join');
        const r = await call('POST', '/api/v1/identities', {
            json : {name : 'Joiner', email : e, password : PW, organization_id : org.id, roles : [ 'provider' ]},
        });
        assert.equal(r.status, 422);
        assert.deepEqual(r.json.error.details.map((d) => d.field).sort(), [ 'organization_id', 'roles' ]);
        // Nothing was created: the address registers normally afterwards.
        const id = await register({name : 'Joiner', email : e, password : PW});
        const me = await call('GET', `/api/v1/identities/${id.id}`, {headers : bearer(admin)},
                              '/api/v1/identities/{id}');
        assert.equal(me.json.organization_id, null);
        assert.deepEqual(me.json.roles, []);
    });

    test('verifying an identity admits it nowhere: no organization, no roles, no access', async () => {
        const u = await verifiedUser('ver');
        assert.equal(u.verified.status, 'active');
        assert.equal(u.verified.organization_id, null);
        assert.deepEqual(u.verified.roles, []);
        const t = (await login(server, u.email, PW)).access_token;
        assert.equal(parts(t)[1].org, null);
        assert.equal((await call('GET', `/api/v1/identities/${org.id}`, {headers : bearer(t)},
                                 '/api/v1/identities/{id}')).status, 403);
        assert.equal((await call('GET', '/api/v1/contracts', {headers : bearer(t)})).status, 403);
        assert.equal((await call('GET', members(org.id), {headers : bearer(t)}, MT)).status, 403);
    });

    test("an org_admin adds a verified identity with roles; it reads its organization", async () => {
        const u = await verifiedUser('mem');
        member = u.id;
        memberEmail = u.email;
        const r = await call('POST', members(org.id),
                             {headers : bearer(oaTok), json : {identity_id : u.id, roles : [ 'provider' ]}}, MT);
        assert.equal(r.status, 201, JSON.stringify(r.json));
        assert.equal(r.json.organization_id, org.id);
        assert.deepEqual(r.json.roles, [ 'provider' ]);
        const t = (await login(server, u.email, PW)).access_token;
        assert.equal(parts(t)[1].org, org.id);
        assert.deepEqual(parts(t)[1].roles, [ 'provider' ]);
        assert.equal((await call('GET', `/api/v1/identities/${org.id}`, {headers : bearer(t)},
                                 '/api/v1/identities/{id}')).status, 200);
        const list = await call('GET', members(org.id), {headers : bearer(oaTok)}, MT);
        assert.equal(list.status, 200);
        assert.deepEqual(new Set(list.json.members.map((m) => m.identity_id)), new Set([ oa.id, u.id ]));
        const p1 = await call('GET', `${members(org.id)}?limit=1`, {headers : bearer(oaTok)}, MT);
        assert.equal(p1.json.members.length, 1);
        const p2 = await call('GET', `${members(org.id)}?limit=1&cursor=${p1.json.next_cursor}`,
                              {headers : bearer(oaTok)}, MT);
        assert.equal(p2.json.members.length, 1);
        assert.notEqual(p2.json.members[0].identity_id, p1.json.members[0].identity_id);
        const ev = await auditEvents(`action=organization.member_add&resource_id=${org.id}`);
        const add = ev.find((x) => x.details.identity_id === u.id);
        assert.equal(add.actor, parts(oaTok)[1].sub);
        assert.equal(add.details.acting_as, 'org_admin');
        // Setting its roles again: 200, audited as an update.
        const up = await call('POST', members(org.id),
                              {headers : bearer(oaTok), json : {identity_id : u.id, roles : [ 'provider', 'consumer' ]}}, MT);
        assert.equal(up.status, 200, JSON.stringify(up.json));
        assert.deepEqual(up.json.roles.sort(), [ 'consumer', 'provider' ]);
        assert.equal((await auditEvents(`action=organization.member_update&resource_id=${org.id}`)).length, 1);
    });

    test('an org_admin manages only its own organization; others get 403 whether it exists or not', async () => {
        const u = await verifiedUser('x');
        for (const target of [other.id, '01890000-0000-7000-8000-000000000000']) {
            const p = await call('POST', members(target),
                                 {headers : bearer(oaTok), json : {identity_id : u.id, roles : [ 'provider' ]}}, MT);
            assert.equal(p.status, 403, target);
            assert.equal((await call('GET', members(target), {headers : bearer(oaTok)}, MT)).status, 403);
        }
        // An admin learns that an organization does not exist.
        assert.equal((await call('GET', members('01890000-0000-7000-8000-000000000000'),
                                 {headers : bearer(admin)}, MT)).status, 404);
        // A provider of the organization is not one of its managers.
        const t = (await login(server, memberEmail, PW)).access_token;
        const p = await call('POST', members(org.id),
                             {headers : bearer(t), json : {identity_id : u.id, roles : [ 'provider' ]}}, MT);
        assert.equal(p.status, 403);
    });

    test('only active identities in no other organization join, with organization roles only', async () => {
        const pending = email('pend');
        await call('POST', '/api/v1/identities', {json : {name : 'P', email : pending, password : PW}});
        const pid = (await call('POST', '/api/v1/auth/verify-email', {json : {token : await tokenFor(pending)}})).json.identity_id;
        const elsewhere = await createIdentity(admin, {name : 'E', email : email('else'), password : PW});
        await addMember(server, admin, other.id, elsewhere.id, [ 'consumer' ]);
        const problems = [];
        for (const id of [pid, elsewhere.id, other.id, '01890000-0000-7000-8000-000000000000', 'nope']) {
            const r = await call('POST', members(org.id),
                                 {headers : bearer(oaTok), json : {identity_id : id, roles : [ 'consumer' ]}}, MT);
            assert.equal(r.status, 422, id);
            problems.push(JSON.stringify(r.json.error.details));
        }
        assert.equal(new Set(problems).size, 1, 'one answer, whatever the reason');
        const u = await verifiedUser('rl');
        const bad = await call('POST', members(org.id),
                               {headers : bearer(oaTok), json : {identity_id : u.id, roles : [ 'consumer', 'admin' ]}}, MT);
        assert.equal(bad.status, 422);
        assert.deepEqual(bad.json.error.details.map((d) => d.field), [ 'roles[1]' ]);
    });

    test('an admin acts for an organization only with a reason, which is audited', async () => {
        const u = await verifiedUser('adm');
        const no = await call('POST', members(org.id),
                              {headers : bearer(admin), json : {identity_id : u.id, roles : [ 'consumer' ]}}, MT);
        assert.equal(no.status, 422);
        assert.equal(no.json.error.details[0].field, 'reason');
        const yes = await call('POST', members(org.id), {
            headers : bearer(admin), json : {identity_id : u.id, roles : [ 'consumer' ], reason : 'ticket 42'},
        }, MT);
        assert.equal(yes.status, 201, JSON.stringify(yes.json));
        const ev = (await auditEvents(`action=organization.member_add&resource_id=${org.id}`))
                       .find((x) => x.details.identity_id === u.id);
        assert.equal(ev.details.reason, 'ticket 42');
        assert.equal(ev.details.acting_as, 'admin');
        const noReason = await call('DELETE', `${members(org.id)}/${u.id}`, {headers : bearer(admin)}, MDT);
        assert.equal(noReason.status, 422);
        const del = await call('DELETE', `${members(org.id)}/${u.id}?reason=ticket%2043`, {headers : bearer(admin)}, MDT);
        assert.equal(del.status, 204, del.text);
        const rm = (await auditEvents(`action=organization.member_remove&resource_id=${org.id}`))
                       .find((x) => x.details.identity_id === u.id);
        assert.equal(rm.details.reason, 'ticket 43');
    });

    test('removal: out of the organization and its roles, platform roles kept; 404 the second time', async () => {
        const u = await createIdentity(admin, {name : 'Aud', email : email('raud'), password : PW, roles : [ 'auditor' ]});
        await addMember(server, oaTok, org.id, u.id, [ 'provider' ], null);
        const r = await call('DELETE', `${members(org.id)}/${u.id}`, {headers : bearer(oaTok)}, MDT);
        assert.equal(r.status, 204);
        const after = await call('GET', `/api/v1/identities/${u.id}`, {headers : bearer(admin)}, '/api/v1/identities/{id}');
        assert.equal(after.json.organization_id, null);
        assert.deepEqual(after.json.roles, [ 'auditor' ]);
        assert.equal(after.json.status, 'active');
        assert.equal((await call('DELETE', `${members(org.id)}/${u.id}`, {headers : bearer(oaTok)}, MDT)).status, 404);
    });

    test('organization_id is refused on identity creation and PATCH: membership has its own routes', async () => {
        const c = await call('POST', '/api/v1/identities', {
            headers : bearer(admin), json : {name : 'C', email : email('c'), password : PW, organization_id : org.id},
        });
        assert.equal(c.status, 422);
        assert.equal(c.json.error.details[0].field, 'organization_id');
        const p = await call('PATCH', `/api/v1/identities/${member}`,
                             {headers : bearer(admin), json : {organization_id : other.id}}, '/api/v1/identities/{id}');
        assert.equal(p.status, 422);
        assert.equal(p.json.error.details[0].field, 'organization_id');
    });
});

// Issue 13, finding 7: registration answered 409 for a known address and 201
// for a new one, without a rate limit.
describe('registration does not tell which addresses have an account', () => {
    test('a known address (any case) gets the same 202 answer; its owner gets a mail, audited', async () => {
        const e = email('known');
        const first = await call('POST', '/api/v1/identities', {json : {name : 'K', email : e, password : PW}});
        const again = await call('POST', '/api/v1/identities',
                                 {json : {name : 'K2', email : e.toUpperCase(), password : `${PW} 2`}});
        assert.equal(first.status, 202);
        assert.equal(again.status, 202, JSON.stringify(again.json));
        assert.deepEqual({...again.json, email : e}, first.json);
        for (let i = 0; i < 40 && !server.logs().some((l) => l.to === e && l.subject === 'You already have a dcms account'); i++)
            await new Promise((r) => setTimeout(r, 50));
        assert.ok(server.logs().some((l) => l.to === e && l.subject === 'You already have a dcms account'),
                  'the owner is told');
        const ev = await auditEvents('action=identity.register_existing&limit=50');
        assert.ok(ev.some((x) => x.request_id === again.headers.get('x-request-id')));
        // The second request changed nothing: still one identity, the first password.
        const id = (await call('POST', '/api/v1/auth/verify-email', {json : {token : await tokenFor(e)}})).json.identity_id;
        const v = await call('POST', `/api/v1/identities/${id}/verify`,
                             {headers : bearer(admin), json : {note : 'ok'}}, '/api/v1/identities/{id}/verify');
        assert.equal(v.json.name, 'K');
        await login(server, e, PW);
    });

    test('registrations are limited per client address (429 with Retry-After), known or new alike', async () => {
        const srv = await startServer({env : {DCMS_DEV_MODE : 'true', DCMS_REGISTRATIONS_PER_HOUR : '2'}});
        try {
            const c = client(srv);
            const reg = async (e) => {
                const r = await c.call('POST', '/api/v1/identities', {json : {name : 'L', email : e, password : PW}});
                checkResponse('POST', '/api/v1/identities', r.res, r.json);
                return r;
            };
            const e = email('lim');
            assert.equal((await reg(e)).status, 202);
            assert.equal((await reg(e)).status, 202);
            // Invalid requests are refused before the count (no hashing either).
            const bad = await c.call('POST', '/api/v1/identities', {json : {name : 'L'}});
            assert.equal(bad.status, 422);
            for (const x of [e, email('lim')]) {
                const r = await reg(x);
                assert.equal(r.status, 429);
                const after = Number(r.headers.get('retry-after'));
                assert.ok(after >= 1 && after <= 3600, `Retry-After ${after}`);
            }
        } finally {
            await srv.stop();
        }
    });
});
