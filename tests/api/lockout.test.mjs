// The login lockout cannot be turned against the account's owner (docs/iam.md,
// "Lockout"): a guesser is slowed and locked out, the owner, whose client
// holds a device token from an earlier login, gets in every time; and
// failures from one address slow that address without shutting out a user
// behind it who holds a device token.
//
// The first scenario is "an attacker at 1 request/s for 10 minutes" on a
// time scale of 1/SCALE: every lockout setting in seconds is divided by
// SCALE (30 s first lockout → 1 s, 15 minute cap and window → 30 s) and so
// are the 10 minutes (→ 20 s) and the attacker's pace (1 s → 33 ms), so it
// runs in about 20 s and still plays out the same sequence of locks.
// Runs on the backend chosen by DCMS_TEST_BACKEND.

import assert from 'node:assert/strict';
import {before, describe, test} from 'node:test';
import {checkResponse} from './lib/openapi.mjs';
import {client} from './lib/http.mjs';
import {startServer} from './lib/server.mjs';
import {adminEnv, adminToken, bearer} from './lib/iam.mjs';

const PW = 'correct horse battery staple';
const SCALE = 30;
const ATTACK_S = 600 / SCALE;           // 10 minutes
const ATTACK_INTERVAL_MS = 1000 / SCALE; // 1 request per second
const OWNER_INTERVAL_MS = 500;           // the owner tries every 15 s of the real scenario

const cheap = {
    ...adminEnv,
    DCMS_AUDIT_REFUSALS_PER_MINUTE : '100000',
    // Hashing cost is not what is under test; keep the run short.
    DCMS_PWHASH_MEMLIMIT_KIB : '1024',
    DCMS_PWHASH_OPSLIMIT : '1',
};

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function setup(env)
{
    const server = await startServer({env : {...cheap, ...env}});
    const api = client(server);
    const admin = await adminToken(server);
    const call = async (method, path, opts = {}) => {
        const r = await api.call(method, path, opts);
        checkResponse(method, path, r.res, r.json ?? r.text);
        return r;
    };
    const login = (json, headers = {}) => call('POST', '/api/v1/auth/login', {json, headers});
    const user = async (tag) => {
        const e = `${tag}-${Date.now()}-${Math.random().toString(16).slice(2)}@example.com`;
        const r = await call('POST', '/api/v1/identities',
                             {headers : bearer(admin), json : {name : tag, email : e, password : PW}});
        assert.equal(r.status, 201, JSON.stringify(r.json));
        return {email : e, id : r.json.id};
    };
    const audit = async (q) =>
        (await call('GET', `/api/v1/audit/events?${q}`, {headers : bearer(admin)})).json.events;
    return {login, user, audit};
}

describe('an attacker at 1 request/s for 10 minutes never keeps the owner out', () => {
    let t;
    before(async () => {
        t = await setup({
            DCMS_LOGIN_MAX_FAILURES : '5',
            DCMS_LOGIN_LOCKOUT_S : String(30 / SCALE),
            DCMS_LOGIN_LOCKOUT_MAX_S : String(900 / SCALE),
            DCMS_LOGIN_FAILURE_WINDOW_S : String(900 / SCALE),
            DCMS_LOGIN_MAX_FAILURES_PER_IP : '50',
        });
    });

    test('the guesser is locked out after a handful of tries; every owner login succeeds',
         {timeout : 120000}, async (tc) => {
             const owner = await t.user('owner');
             const mallory = await t.user('mallory');
             // Both logged in before from their own clients: each holds a device token.
             let device = (await t.login({email : owner.email, password : PW})).json.device_token;
             const malloryDevice =
                 (await t.login({email : mallory.email, password : PW})).json.device_token;
             assert.ok(device && malloryDevice);

             const start = Date.now();
             const end = start + ATTACK_S * 1000;
             const attacker = {checked : 0, locked : 0, other : [], retryAfter : []};
             const attack = (async () => {
                 for (let i = 0; Date.now() < end && i < 10 * ATTACK_S * SCALE; i++) {
                     const due = start + i * ATTACK_INTERVAL_MS;
                     if (due > Date.now())
                         await sleep(due - Date.now());
                     // Wrong passwords, half of them with the attacker's own (valid, but
                     // another identity's) device token, the other half with a made-up one.
                     const r = await t.login(
                         {email : owner.email, password : `guess number ${i}`},
                         {Cookie : `__Host-dcms_device=${i % 2 ? malloryDevice : 'dv1.forged'}`});
                     if (r.status === 401)
                         attacker.checked++;
                     else if (r.status === 429) {
                         attacker.locked++;
                         attacker.retryAfter.push(Number(r.headers.get('retry-after')));
                     } else
                         attacker.other.push(r.status);
                 }
             })();
             const owners = [];
             const untrusted = [];
             const own = (async () => {
                 while (Date.now() < end) {
                     await sleep(OWNER_INTERVAL_MS);
                     // Alternate body and cookie; each login hands out the next token.
                     const r = owners.length % 2
                                   ? await t.login({email : owner.email, password : PW, device_token : device})
                                   : await t.login({email : owner.email, password : PW},
                                                   {Cookie : `__Host-dcms_device=${device}`});
                     owners.push(r.status);
                     if (r.status === 200)
                         device = r.json.device_token;
                     // The same person on a client without a token is subject to the lockout.
                     if (owners.length % 8 === 4)
                         untrusted.push((await t.login({email : owner.email, password : PW})).status);
                 }
             })();
             await Promise.all([ attack, own ]);

             const sent = attacker.checked + attacker.locked + attacker.other.length;
             tc.diagnostic(`attacker: ${sent} requests, ${attacker.checked} passwords checked, ` +
                           `${attacker.locked} refused 429; owner: ${owners.length} logins, ` +
                           `${owners.filter((s) => s === 200).length} succeeded; without token: ${untrusted}`);
             assert.deepEqual(attacker.other, [], 'the attacker only ever sees 401 or 429');
             assert.ok(sent >= ATTACK_S * SCALE * 0.5, `the attack ran (${sent} requests)`);
             // Guessing stays slow: 5 tries, then one more each time a lock ends
             // (1, 2, 4, 8, 16 s, then 30 s each) — about a dozen in the whole run.
             // A login of the owner from a client without a token, made just as a lock ended,
             // resets the account's count: allow 5 more tries for each.
             const resets = untrusted.filter((s) => s === 200).length;
             const bound = 15 + 5 * resets;
             assert.ok(attacker.checked <= bound, `passwords checked for the attacker: ${attacker.checked}`);
             assert.ok(attacker.locked >= sent - bound, `locked out: ${attacker.locked} of ${sent}`);
             assert.ok(attacker.retryAfter.every((s) => Number.isInteger(s) && s >= 1 && s <= 900 / SCALE),
                       `Retry-After: ${attacker.retryAfter}`);
             assert.ok(owners.length >= ATTACK_S, `owner logins: ${owners.length}`);
             assert.deepEqual(owners.filter((s) => s !== 200), [], 'every owner login succeeds');
             assert.ok(untrusted.includes(429) && untrusted.every((s) => s === 429 || s === 200),
                       `logins without a device token during the attack: ${untrusted}`);
             const locks = await t.audit(`action=auth.lockout&actor=${owner.id}&limit=500`);
             assert.ok(locks.length >= 5 && locks.every((e) => e.details.scope === 'account'));
         });
});

describe('failures from one address slow it down without shutting out a user with a device token', () => {
    let t;
    before(async () => {
        t = await setup({
            DCMS_LOGIN_MAX_FAILURES_PER_IP : '50',
            DCMS_LOGIN_IP_DELAY_S : '2',
        });
    });

    test('50 failures from one address: untrusted clients there wait, the device token holder does not',
         {timeout : 120000}, async () => {
             const bob = await t.user('bob');      // behind the same address, with a device token
             const carol = await t.user('carol');  // behind the same address, without one
             const bobDevice = (await t.login({email : bob.email, password : PW})).json.device_token;
             // 50 failures from the address, spread over many accounts (no account lockout).
             for (let i = 0; i < 50; i++) {
                 const r = await t.login({email : `nobody-${i}@example.com`, password : `guess ${i} wrong`});
                 assert.equal(r.status, 401, `failure ${i}`);
             }
             // The address is slowed: the next untrusted login waits, whatever the account.
             const slowed = await t.login({email : carol.email, password : PW});
             assert.equal(slowed.status, 429);
             const wait = Number(slowed.headers.get('retry-after'));
             assert.ok(wait >= 1 && wait <= 2, `Retry-After ${wait}`);
             // Bob's device token: no address limit, every time.
             for (let i = 0; i < 3; i++) {
                 const r = await t.login({email : bob.email, password : PW},
                                         {Cookie : `__Host-dcms_device=${bobDevice}`});
                 assert.equal(r.status, 200, JSON.stringify(r.json));
             }
             // Slowed, not shut out: after Retry-After, Carol gets in.
             await sleep(wait * 1000 + 100);
             assert.equal((await t.login({email : carol.email, password : PW})).status, 200);
             // Further failures keep the same short delay (no growing lock for the address).
             for (let round = 0; round < 2; round++) {
                 const f = await t.login({email : `nobody-x${round}@example.com`, password : 'guess again wrong'});
                 assert.equal(f.status, 401);
                 const r = await t.login({email : carol.email, password : PW});
                 assert.equal(r.status, 429);
                 assert.ok(Number(r.headers.get('retry-after')) <= 2);
                 await sleep(Number(r.headers.get('retry-after')) * 1000 + 100);
             }
             const ev = await t.audit('action=auth.lockout&limit=50');
             const ip = ev.filter((e) => e.details.scope === 'ip');
             assert.ok(ip.length >= 3 && ip.every((e) => e.details.slowdown === true), JSON.stringify(ip[0]));
         });
});
