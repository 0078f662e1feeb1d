// Contract signatures through the API: the digital, mfa and biometric types
// (each with bad evidence refused; biometric with a software WebAuthn
// authenticator), a signature over an old version refused, tampering
// with stored terms and signatures detected by /verify, and expiry (at read
// time and by the background job). Every response is checked against
// api/openapi.yaml. Runs on the backend chosen by DCMS_TEST_BACKEND.

import assert from 'node:assert/strict';
import {createHash, createHmac, generateKeyPairSync, randomBytes, sign} from 'node:crypto';
import {before, describe, test} from 'node:test';
import {bearer, contractsContext, validTerms} from './lib/contracts.mjs';

let t, p;

before(async () => {
  t = await contractsContext({DCMS_CONTRACT_EXPIRY_INTERVAL_S: '1'});
  p = await t.parties();
});

const base32Decode = (s) => {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const ch of s) bits += alphabet.indexOf(ch).toString(2).padStart(5, '0');
  const out = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) out.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(out);
};

/** RFC 6238 (SHA-1, 6 digits, 30 s) code for time step `step`. */
function totp(secret, step) {
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(step));
  const h = createHmac('sha1', base32Decode(secret)).update(msg).digest();
  const o = h[h.length - 1] & 0xf;
  return String((h.readUInt32BE(o) & 0x7fffffff) % 1e6).padStart(6, '0');
}

const step = () => Math.floor(Date.now() / 30000);

/** Enrols and confirms TOTP for `user`; returns the base32 secret and the step used. */
async function enrolTotp(user) {
  const e = await t.call('POST', '/api/v1/mfa/totp/enroll', {headers: bearer(user.token)});
  assert.equal(e.status, 201, JSON.stringify(e.json));
  const s = step();
  const c = await t.call('POST', '/api/v1/mfa/totp/confirm',
                         {headers: bearer(user.token), json: {code: totp(e.json.secret, s)}});
  assert.equal(c.status, 200, JSON.stringify(c.json));
  return {secret: e.json.secret, used: s};
}

// ---- a software WebAuthn authenticator (ES256, "none" attestation) ----

const RP_ID = 'localhost';
const ORIGIN = 'http://localhost:8080'; // dcmsd's default DCMS_WEBAUTHN_ORIGINS
const sha256 = (b) => createHash('sha256').update(b).digest();
const b64u = (b) => Buffer.from(b).toString('base64url');

function cborHead(major, v) {
  if (v < 24) return Buffer.from([(major << 5) | v]);
  if (v < 0x100) return Buffer.from([(major << 5) | 24, v]);
  const b = Buffer.alloc(3);
  b[0] = (major << 5) | 25;
  b.writeUInt16BE(v, 1);
  return b;
}

function cbor(v) {
  if (typeof v === 'number') return v >= 0 ? cborHead(0, v) : cborHead(1, -1 - v);
  if (Buffer.isBuffer(v)) return Buffer.concat([cborHead(2, v.length), v]);
  if (typeof v === 'string') return Buffer.concat([cborHead(3, Buffer.byteLength(v)), Buffer.from(v)]);
  const entries = v instanceof Map ? [...v.entries()] : Object.entries(v);
  return Buffer.concat([cborHead(5, entries.length), ...entries.flatMap(([k, x]) => [cbor(k), cbor(x)])]);
}

class Authenticator {
  constructor() {
    this.credId = randomBytes(32);
    this.counter = 0;
    const {publicKey, privateKey} = generateKeyPairSync('ec', {namedCurve: 'P-256'});
    const jwk = publicKey.export({format: 'jwk'});
    this.key = privateKey;
    this.cose = cbor(new Map([[1, 2], [3, -7], [-1, 1], [-2, Buffer.from(jwk.x, 'base64url')],
                              [-3, Buffer.from(jwk.y, 'base64url')]]));
  }

  authData(flags, withCred) {
    const c = Buffer.alloc(4);
    c.writeUInt32BE(this.counter);
    const parts = [sha256(Buffer.from(RP_ID)), Buffer.from([flags]), c];
    if (withCred) {
      const len = Buffer.alloc(2);
      len.writeUInt16BE(this.credId.length);
      parts.push(Buffer.alloc(16), len, this.credId, this.cose);
    }
    return Buffer.concat(parts);
  }

  create(challenge) {
    const cdj = Buffer.from(JSON.stringify({type: 'webauthn.create', challenge, origin: ORIGIN, crossOrigin: false}));
    const att = cbor({fmt: 'none', attStmt: {}, authData: this.authData(0x45, true)});
    return {id: b64u(this.credId), rawId: b64u(this.credId), type: 'public-key', clientExtensionResults: {},
            response: {clientDataJSON: b64u(cdj), attestationObject: b64u(att), transports: ['internal']}};
  }

  /** An assertion over `challenge` (base64url), as navigator.credentials.get() serializes it. */
  get(challenge, {uv = true, tamper = false} = {}) {
    this.counter += 1;
    const cdj = Buffer.from(JSON.stringify({type: 'webauthn.get', challenge, origin: ORIGIN, crossOrigin: false}));
    const ad = this.authData(0x01 | (uv ? 0x04 : 0), false);
    const sig = sign('sha256', Buffer.concat([ad, sha256(cdj)]), this.key);
    if (tamper) sig[sig.length - 1] ^= 1;
    return {id: b64u(this.credId), rawId: b64u(this.credId), type: 'public-key', clientExtensionResults: {},
            response: {clientDataJSON: b64u(cdj), authenticatorData: b64u(ad), signature: b64u(sig)}};
  }
}

async function registerPasskey(user) {
  const a = new Authenticator();
  const o = await t.call('POST', '/api/v1/webauthn/register/options', {headers: bearer(user.token)});
  assert.equal(o.status, 200, JSON.stringify(o.json));
  const r = await t.call('POST', '/api/v1/webauthn/register/verify',
                         {headers: bearer(user.token), json: a.create(o.json.challenge)});
  assert.equal(r.status, 201, JSON.stringify(r.json));
  return a;
}

function signHash(who, hash) {
  return sign(null, Buffer.from(hash, 'hex'), who.key.privateKey).toString('base64');
}

describe('digital signatures', () => {
  test('a signature that does not verify is refused (422, field signature)', async () => {
    const c = await t.inState(p, 'pending_signature');
    const r = await t.signDigital(p.provider, c, {message: '00'.repeat(32)});
    assert.equal(r.status, 422);
    assert.equal(r.json.error.details[0].field, 'signature');
    const v = await t.call('GET', `/api/v1/contracts/${c.id}`, {headers: bearer(p.provider.token)});
    assert.deepEqual(v.json.signatures, []);
  });

  test('a key that is not the signer\'s is refused (422, field key_id)', async () => {
    const c = await t.inState(p, 'pending_signature');
    const r = await t.op(p.provider, c, 'sign', {type: 'digital', terms_hash: c.terms_hash,
                                                 key_id: p.consumer.key.key_id,
                                                 signature: signHash(p.consumer, c.terms_hash)});
    assert.equal(r.status, 422);
    assert.equal(r.json.error.details[0].field, 'key_id');
  });

  test('malformed signing requests name every problem', async () => {
    const c = await t.inState(p, 'pending_signature');
    const r = await t.op(p.provider, c, 'sign', {type: 'digital', terms_hash: 'abc', signature: '!!', extra: 1});
    assert.equal(r.status, 422);
    assert.deepEqual(r.json.error.details.map((d) => d.field).sort(), ['extra', 'key_id', 'signature', 'terms_hash']);
    const r2 = await t.op(p.provider, c, 'sign', {type: 'stamp', terms_hash: c.terms_hash});
    assert.equal(r2.status, 422);
    assert.equal(r2.json.error.details[0].field, 'type');
  });

  test('both sides may sign at the same time', async () => {
    const c = await t.inState(p, 'pending_signature');
    const [a, b] = await Promise.all([t.signDigital(p.provider, c), t.signDigital(p.consumer, c)]);
    assert.equal(a.status, 200, JSON.stringify(a.json));
    assert.equal(b.status, 200, JSON.stringify(b.json));
    const g = await t.call('GET', `/api/v1/contracts/${c.id}`, {headers: bearer(p.provider.token)});
    assert.equal(g.json.signatures.length, 2);
    assert.equal(g.json.version, c.version + 2);
  });

  test('a side signs once, even when it signs twice at the same time', async () => {
    const r = await t.inState(p, 'pending_signature');
    const both = await Promise.all([t.signDigital(p.provider, r), t.signDigital(p.provider, r)]);
    assert.deepEqual(both.map((x) => x.status).sort(), [200, 409]);
  });

  test('a side signs once', async () => {
    const c = await t.inState(p, 'pending_signature');
    assert.equal((await t.signDigital(p.provider, c)).status, 200);
    const again = await t.signDigital(p.provider, c);
    assert.equal(again.status, 409);
    assert.match(again.json.error.message, /provider side has already signed/);
  });

  test('a signature over an old version is refused', async () => {
    const c = await t.inState(p, 'pending_signature');
    const edited = await t.call('PUT', `/api/v1/contracts/${c.id}`, {
      headers: {...bearer(p.provider.token), 'If-Match': `"${c.version}"`},
      json: {title: 'v2', provider_id: p.provider.id, consumer_id: p.consumer.id, terms: validTerms()},
    });
    assert.equal(edited.status, 200);
    const sub = await t.op(p.provider, edited.json, 'submit');
    assert.equal(sub.status, 200);
    // The old hash, signed correctly: refused as not the current terms.
    const old = await t.signDigital(p.consumer, c);
    assert.equal(old.status, 409);
    assert.match(old.json.error.message, /terms changed/);
    // The current hash named, but the signature made over the old one: does not verify.
    const mixed = await t.signDigital(p.consumer, sub.json, {message: c.terms_hash});
    assert.equal(mixed.status, 422);
    assert.equal(mixed.json.error.details[0].field, 'signature');
    const ok = await t.signDigital(p.consumer, sub.json);
    assert.equal(ok.status, 200);
    assert.equal(ok.json.signatures[0].terms_version, 2);
  });
});

describe('mfa signatures', () => {
  test('digital plus a fresh TOTP code; a wrong or replayed code is refused', async () => {
    const q = await t.parties();
    const c = await t.inState(q, 'pending_signature');
    const body = (code) => ({type: 'mfa', terms_hash: c.terms_hash, key_id: q.provider.key.key_id,
                             signature: signHash(q.provider, c.terms_hash), totp_code: code});
    const none = await t.op(q.provider, c, 'sign', body('123456'));
    assert.equal(none.status, 422, 'no TOTP enrolled');
    assert.equal(none.json.error.details[0].field, 'totp_code');
    const {secret, used} = await enrolTotp(q.provider);
    const replay = await t.op(q.provider, c, 'sign', body(totp(secret, used)));
    assert.equal(replay.status, 422, 'the code used to confirm is spent');
    assert.equal(replay.json.error.details[0].field, 'totp_code');
    // Said as login says it: already used, and when the next code comes (not "request failed validation").
    const next = replay.json.error.details[0].problem.match(
        /^was already used; (?:the next code comes in (\d+) s|enter the code your authenticator shows now)$/);
    assert.ok(next, replay.json.error.details[0].problem);
    if (next[1]) assert.ok(+next[1] >= 1 && +next[1] <= 60, next[0]);
    const wrong = await t.op(q.provider, c, 'sign', body(totp(secret, used + 5)));
    assert.equal(wrong.status, 422);
    assert.equal(wrong.json.error.details[0].field, 'totp_code');
    assert.equal(wrong.json.error.details[0].problem, 'is not a valid code');
    const badSig = await t.op(q.provider, c, 'sign', {...body(totp(secret, used + 1)),
                                                      signature: signHash(q.provider, '11'.repeat(32))});
    assert.equal(badSig.status, 422, 'the digital part is checked too');
    assert.equal(badSig.json.error.details[0].field, 'signature');
    const ok = await t.op(q.provider, c, 'sign', body(totp(secret, used + 1)));
    assert.equal(ok.status, 200, JSON.stringify(ok.json));
    const s = ok.json.signatures[0];
    assert.equal(s.type, 'mfa');
    assert.equal(s.side, 'provider');
    assert.ok(s.evidence.totp_verified_at);
    assert.equal(s.evidence.totp_code, undefined, 'the code itself is not kept');
    const v = await t.call('GET', `/api/v1/contracts/${c.id}/verify`, {headers: bearer(q.consumer.token)});
    assert.equal(v.json.signatures[0].valid, true);
  });
});

describe('biometric signatures', () => {
  test('a user-verified WebAuthn assertion whose challenge is the terms hash signs', async () => {
    const q = await t.parties();
    const c = await t.inState(q, 'pending_signature');
    const auth = await registerPasskey(q.consumer);
    const challenge = b64u(Buffer.from(c.terms_hash, 'hex'));
    const r = await t.op(q.consumer, c, 'sign', {type: 'biometric', terms_hash: c.terms_hash,
                                                 assertion: auth.get(challenge)});
    assert.equal(r.status, 200, JSON.stringify(r.json));
    const s = r.json.signatures[0];
    assert.equal(s.type, 'biometric');
    assert.equal(s.side, 'consumer');
    assert.equal(s.algorithm, 'ES256');
    assert.equal(s.key_id, b64u(auth.credId));
    assert.equal(s.evidence.user_verified, true);
    const v = await t.call('GET', `/api/v1/contracts/${c.id}/verify`, {headers: bearer(q.provider.token)});
    assert.equal(v.json.signatures[0].valid, true, JSON.stringify(v.json));
    assert.equal((await t.signDigital(q.provider, c)).status, 200);
    assert.equal((await t.op(q.provider, c, 'activate')).status, 200, 'biometric and digital together activate');
  });

  test('bad assertions are refused: no UV flag, another challenge, a bad signature, a stranger\'s passkey', async () => {
    const q = await t.parties();
    const c = await t.inState(q, 'pending_signature');
    const auth = await registerPasskey(q.consumer);
    const challenge = b64u(Buffer.from(c.terms_hash, 'hex'));
    const body = (assertion) => ({type: 'biometric', terms_hash: c.terms_hash, assertion});
    const cases = [
      ['without the user-verified flag', auth.get(challenge, {uv: false})],
      ['over another challenge', auth.get(b64u(randomBytes(32)))],
      ['with a tampered signature', auth.get(challenge, {tamper: true})],
      ['with an unregistered passkey', new Authenticator().get(challenge)],
    ];
    for (const [what, assertion] of cases) {
      const r = await t.op(q.consumer, c, 'sign', body(assertion));
      assert.equal(r.status, 422, `${what}: ${JSON.stringify(r.json)}`);
      assert.equal(r.json.error.details[0].field, 'assertion', what);
    }
    const other = await registerPasskey(q.provider);
    const r = await t.op(q.consumer, c, 'sign', body(other.get(challenge)));
    assert.equal(r.status, 422, 'another identity\'s passkey');
    const missing = await t.op(q.consumer, c, 'sign', {type: 'biometric', terms_hash: c.terms_hash});
    assert.equal(missing.status, 422);
    assert.equal(missing.json.error.details[0].field, 'assertion');
    const g = await t.call('GET', `/api/v1/contracts/${c.id}`, {headers: bearer(q.consumer.token)});
    assert.deepEqual(g.json.signatures, []);
  });
});

describe('verification', () => {
  test('/verify reports every signature valid on an untouched contract', async () => {
    const c = await t.inState(p, 'active');
    const r = await t.call('GET', `/api/v1/contracts/${c.id}/verify`, {headers: bearer(p.provider.token)});
    assert.equal(r.status, 200);
    assert.equal(r.json.valid, true);
    assert.equal(r.json.terms_hash.matches, true);
    assert.equal(r.json.signatures.length, 2);
    assert.ok(r.json.signatures.every((s) => s.valid && !s.voided));
  });

  test('tampering with stored terms is detected', async () => {
    const c = await t.inState(p, 'active');
    t.sql(`UPDATE contracts SET terms = replace(terms, '"days":30', '"days":3650') WHERE id = '${c.id}'`);
    const g = await t.call('GET', `/api/v1/contracts/${c.id}`, {headers: bearer(p.provider.token)});
    assert.equal(g.json.terms.retention.days, 3650, 'the store was changed behind dcms');
    const r = await t.call('GET', `/api/v1/contracts/${c.id}/verify`, {headers: bearer(p.provider.token)});
    assert.equal(r.status, 200);
    assert.equal(r.json.valid, false);
    assert.equal(r.json.terms_hash.matches, false);
    assert.notEqual(r.json.terms_hash.computed, r.json.terms_hash.stored);
    for (const s of r.json.signatures) {
      assert.equal(s.valid, false);
      assert.match(s.problem, /no longer hash/);
    }
  });

  test('tampering with a stored signature or hash is detected', async () => {
    const c = await t.inState(p, 'active');
    const other = sign(null, Buffer.alloc(32), p.provider.key.privateKey).toString('base64');
    t.sql(`UPDATE contract_signatures SET evidence = '{"signature":"${other}"}' ` +
          `WHERE contract_id = '${c.id}' AND side = 'provider'`);
    let r = await t.call('GET', `/api/v1/contracts/${c.id}/verify`, {headers: bearer(p.consumer.token)});
    assert.equal(r.json.valid, false);
    const prov = r.json.signatures.find((s) => s.side === 'provider');
    assert.equal(prov.valid, false);
    assert.match(prov.problem, /does not verify/);
    assert.equal(r.json.signatures.find((s) => s.side === 'consumer').valid, true);
    t.sql(`UPDATE contracts SET terms_hash = '${'0'.repeat(64)}' WHERE id = '${c.id}'`);
    r = await t.call('GET', `/api/v1/contracts/${c.id}/verify`, {headers: bearer(p.consumer.token)});
    assert.equal(r.json.terms_hash.matches, false);
    assert.equal(r.json.terms_hash.recorded_in_history, false);
  });
});

describe('expiry', () => {
  test('an Active contract past expires_at reads as expired, acts as expired, and the job records it',
       async () => {
         const terms = validTerms({expires_at: new Date(Date.now() + 4000).toISOString()});
         const c = await t.inState(p, 'active', {terms});
         assert.equal(c.status, 'active');
         await new Promise((r) => setTimeout(r, Math.max(0, Date.parse(terms.expires_at) - Date.now()) + 50));
         const g = await t.call('GET', `/api/v1/contracts/${c.id}`, {headers: bearer(p.provider.token)});
         assert.equal(g.json.status, 'expired');
         const s = await t.op(p.provider, c, 'suspend');
         assert.equal(s.status, 409);
         assert.match(s.json.error.message, /is expired; allowed: nothing/);
         const l = await t.call('GET', '/api/v1/contracts?status=active&limit=200', {headers: bearer(p.provider.token)});
         assert.ok(!l.json.contracts.some((x) => x.id === c.id), 'not listed as active');
         let ev = [];
         for (let i = 0; i < 60 && !ev.length; i++) {
           ev = await t.auditEvents(`resource_id=${c.id}&action=contract.expire`);
           if (!ev.length) await new Promise((r) => setTimeout(r, 100));
         }
         assert.equal(ev.length, 1, 'the background job moved it to expired');
         assert.equal(ev[0].actor, 'system');
         assert.equal(ev[0].details.from_status, 'active');
         const after = await t.call('GET', `/api/v1/contracts/${c.id}`, {headers: bearer(p.provider.token)});
         assert.equal(after.json.status, 'expired');
         assert.equal(after.json.version, c.version + 1);
         assert.equal(after.json.status_reason, 'expires_at reached');
       });

  test('a contract cannot be submitted once its terms have expired, nor activated before effective_from',
       async () => {
         const future = validTerms({effective_from: new Date(Date.now() + 86400e3).toISOString()});
         const c = await t.inState(p, 'pending_signature', {terms: future});
         assert.equal((await t.signDigital(p.provider, c)).status, 200);
         assert.equal((await t.signDigital(p.consumer, c)).status, 200);
         const a = await t.op(p.provider, c, 'activate');
         assert.equal(a.status, 409);
         assert.match(a.json.error.message, /effective_from/);
         const soon = validTerms({expires_at: new Date(Date.now() + 1500).toISOString()});
         const d = await t.create(p, {terms: soon});
         await new Promise((r) => setTimeout(r, 1600));
         const s = await t.op(p.provider, d, 'submit');
         assert.equal(s.status, 409);
         assert.match(s.json.error.message, /has passed/);
       });
});
