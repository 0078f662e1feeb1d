// A software WebAuthn authenticator for the API tests (node:crypto keys and
// a tiny CBOR encoder): it answers creation and request options as
// navigator.credentials.create() / .get() would, in the JSON form
// (base64url members) the API takes. It can serve as an example of the
// byte layouts. Used by webauthn.test.mjs and passkey-login.test.mjs.

import {createHash, generateKeyPairSync, randomBytes, sign} from 'node:crypto';

export const RP_ID = 'localhost';
export const ORIGIN = 'http://localhost:8080';

// ---- a minimal CBOR encoder (what WebAuthn needs) ----

function head(major, v) {
  if (v < 24) return Buffer.from([(major << 5) | v]);
  if (v < 0x100) return Buffer.from([(major << 5) | 24, v]);
  if (v < 0x10000) { const b = Buffer.alloc(3); b[0] = (major << 5) | 25; b.writeUInt16BE(v, 1); return b; }
  const b = Buffer.alloc(5); b[0] = (major << 5) | 26; b.writeUInt32BE(v, 1); return b;
}

export function cbor(v) {
  if (typeof v === 'number') return v >= 0 ? head(0, v) : head(1, -1 - v);
  if (Buffer.isBuffer(v)) return Buffer.concat([head(2, v.length), v]);
  if (typeof v === 'string') { const b = Buffer.from(v); return Buffer.concat([head(3, b.length), b]); }
  if (Array.isArray(v)) return Buffer.concat([head(4, v.length), ...v.map(cbor)]);
  const entries = v instanceof Map ? [...v.entries()] : Object.entries(v);
  return Buffer.concat([head(5, entries.length), ...entries.flatMap(([k, x]) => [cbor(k), cbor(x)])]);
}

export const sha256 = (b) => createHash('sha256').update(b).digest();
export const b64u = (b) => Buffer.from(b).toString('base64url');

/**
 * One credential. create() remembers the user handle of the options
 * (user.id), as a discoverable credential does; get() returns it as
 * response.userHandle when `userHandle` is true (the default once known),
 * or the bytes given.
 */
export class Authenticator {
  constructor(alg = -7, {rpId = RP_ID, origin = ORIGIN} = {}) {
    this.alg = alg;
    this.rpId = rpId;
    this.origin = origin;
    this.credId = randomBytes(32);
    this.counter = 0;
    this.userHandle = null;
    if (alg === -7) {
      const {publicKey, privateKey} = generateKeyPairSync('ec', {namedCurve: 'P-256'});
      const jwk = publicKey.export({format: 'jwk'});
      this.key = privateKey;
      this.cose = cbor(new Map([[1, 2], [3, -7], [-1, 1], [-2, Buffer.from(jwk.x, 'base64url')],
                                [-3, Buffer.from(jwk.y, 'base64url')]]));
    } else {
      const {publicKey, privateKey} = generateKeyPairSync('ed25519');
      this.key = privateKey;
      this.cose = cbor(new Map([[1, 1], [3, -8], [-1, 6], [-2, Buffer.from(publicKey.export({format: 'jwk'}).x, 'base64url')]]));
    }
  }

  sig(data) {
    return sign(this.alg === -7 ? 'sha256' : null, data, this.key);
  }

  authData(flags, withCred) {
    const c = Buffer.alloc(4);
    c.writeUInt32BE(this.counter);
    const parts = [sha256(Buffer.from(this.rpId)), Buffer.from([flags]), c];
    if (withCred) {
      const len = Buffer.alloc(2);
      len.writeUInt16BE(this.credId.length);
      parts.push(Buffer.alloc(16), len, this.credId, this.cose);
    }
    return Buffer.concat(parts);
  }

  create(options, {fmt = 'none', origin = this.origin, uv = true} = {}) {
    if (options.user?.id) this.userHandle = Buffer.from(options.user.id, 'base64url');
    const cdj = Buffer.from(JSON.stringify({type: 'webauthn.create', challenge: options.challenge, origin, crossOrigin: false}));
    const ad = this.authData(0x41 | (uv ? 0x04 : 0), true);
    const attStmt = fmt === 'packed' ? {alg: this.alg, sig: this.sig(Buffer.concat([ad, sha256(cdj)]))} : {};
    const att = cbor({fmt, attStmt, authData: ad});
    return {
      id: b64u(this.credId), rawId: b64u(this.credId), type: 'public-key', clientExtensionResults: {},
      response: {clientDataJSON: b64u(cdj), attestationObject: b64u(att), transports: ['internal']},
    };
  }

  /** `userHandle`: false (none), true (the one remembered at create()), or a Buffer. */
  get(options, {origin = this.origin, uv = true, bump = 1, userHandle = false} = {}) {
    this.counter += bump;
    const cdj = Buffer.from(JSON.stringify({type: 'webauthn.get', challenge: options.challenge, origin, crossOrigin: false}));
    const ad = this.authData(0x01 | (uv ? 0x04 : 0), false);
    const response = {clientDataJSON: b64u(cdj), authenticatorData: b64u(ad), signature: b64u(this.sig(Buffer.concat([ad, sha256(cdj)])))};
    const uh = userHandle === true ? this.userHandle : userHandle || null;
    if (uh) response.userHandle = b64u(uh);
    return {id: b64u(this.credId), rawId: b64u(this.credId), type: 'public-key', clientExtensionResults: {}, response};
  }
}
