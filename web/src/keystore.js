// Signing keys made in this browser: Ed25519 through WebCrypto, the private
// key non-extractable, kept in IndexedDB (a CryptoKey is stored as such; its
// bytes are never visible to scripts) under the identity it belongs to.
const DB = 'dcms';
const STORE = 'signing-keys';

function db() {
  return new Promise((resolve, reject) => {
    const r = indexedDB.open(DB, 1);
    r.onupgradeneeded = () => r.result.createObjectStore(STORE);
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

async function tx(mode, fn) {
  const d = await db();
  try {
    return await new Promise((resolve, reject) => {
      const t = d.transaction(STORE, mode);
      const req = fn(t.objectStore(STORE));
      t.oncomplete = () => resolve(req?.result);
      t.onerror = () => reject(t.error);
      t.onabort = () => reject(t.error);
    });
  } finally {
    d.close();
  }
}

/** The key record of `identityId` ({keyId, privateKey, publicKey, fingerprint, created}) or undefined. */
export function loadKey(identityId) {
  return tx('readonly', (s) => s.get(identityId));
}

export function saveKey(identityId, rec) {
  return tx('readwrite', (s) => s.put(rec, identityId));
}

export function b64url(bytes) {
  let s = '';
  for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

export function fromB64url(s) {
  const b = atob(s.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((s.length + 3) % 4));
  return Uint8Array.from(b, (c) => c.charCodeAt(0));
}

export function fromHex(h) {
  return Uint8Array.from(h.match(/../g), (x) => parseInt(x, 16));
}

export async function fingerprint(publicKeyRaw) {
  const d = new Uint8Array(await crypto.subtle.digest('SHA-256', publicKeyRaw));
  return [...d].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/** A new Ed25519 pair; the private key cannot be exported. */
export async function generate() {
  const pair = await crypto.subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify']);
  const pub = new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey));
  return { privateKey: pair.privateKey, publicKeyRaw: pub };
}

export async function sign(privateKey, bytes) {
  return new Uint8Array(await crypto.subtle.sign({ name: 'Ed25519' }, privateKey, bytes));
}
