// Registering a signing key made or imported in this browser: a single-use
// challenge, the proof of possession ("dcms-signing-key-pop:" || challenge ||
// public key, signed by the new key; docs/iam.md "Signing keys"), then the
// registration (or the rotation of an older key), and the key kept in
// IndexedDB under the identity (keystore.js). Needs a recent login (403
// reauthentication_required otherwise).
import { api } from './api.js';
import { b64url, fingerprint, fromB64url, generate, saveKey, sign } from './keystore.js';

const POP_PREFIX = 'dcms-signing-key-pop:';

/**
 * Registers `pair` ({privateKey, publicKeyRaw}; a new Ed25519 pair when
 * absent) to `me`, replacing the key `rotate` (a key id) when given; keeps
 * the pair in this browser and resolves its record.
 */
export async function registerKey(me, { pair, name, rotate } = {}) {
  const { privateKey, publicKeyRaw } = pair ?? (await generate());
  const base = `/api/v1/identities/${me.identity.id}/keys`;
  const ch = (await api('POST', `${base}/challenge`)).body;
  const prefix = new TextEncoder().encode(ch.message_prefix ?? POP_PREFIX);
  const challenge = fromB64url(ch.challenge);
  const msg = new Uint8Array(prefix.length + challenge.length + publicKeyRaw.length);
  msg.set(prefix, 0);
  msg.set(challenge, prefix.length);
  msg.set(publicKeyRaw, prefix.length + challenge.length);
  const pop = await sign(privateKey, msg);
  const json = { public_key: b64url(publicKeyRaw), challenge_id: ch.challenge_id, signature: b64url(pop), name: name || `browser ${new Date().toISOString().slice(0, 10)}` };
  const key = (await api('POST', rotate ? `${base}/${rotate}/rotate` : base, { json })).body;
  const rec = { keyId: key.id, privateKey, publicKey: b64url(publicKeyRaw), fingerprint: await fingerprint(publicKeyRaw), created: key.created_at };
  await saveKey(me.identity.id, rec);
  return rec;
}

/**
 * An Ed25519 private key from a PKCS#8 PEM (`openssl genpkey -algorithm
 * ed25519`), imported non-extractable; the public key comes from the JWK
 * form of a short-lived extractable import. Throws on anything else.
 */
export async function importPem(pem) {
  const m = /-----BEGIN PRIVATE KEY-----([A-Za-z0-9+/=\s]+)-----END PRIVATE KEY-----/.exec(pem);
  if (!m) throw new Error('not a PKCS#8 PEM private key');
  const der = Uint8Array.from(atob(m[1].replace(/\s+/g, '')), (c) => c.charCodeAt(0));
  const tmp = await crypto.subtle.importKey('pkcs8', der, { name: 'Ed25519' }, true, ['sign']);
  const jwk = await crypto.subtle.exportKey('jwk', tmp);
  const privateKey = await crypto.subtle.importKey('jwk', { kty: 'OKP', crv: 'Ed25519', d: jwk.d, x: jwk.x }, { name: 'Ed25519' }, false, ['sign']);
  der.fill(0);
  return { privateKey, publicKeyRaw: fromB64url(jwk.x) };
}
