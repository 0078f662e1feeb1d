// An independent verifier of the dcms audit log, written from RFC 9162
// (section 2.1) and RFC 8785 with node's standard library only: no dcms code.
//
//   node tests/audit-log-verifier.mjs BASE_URL TOKEN PUBLIC_KEY_B64
//
// or, from a test: `import { verifyLog } from '../audit-log-verifier.mjs'`.
//
// It reads the whole log through the API (the export, for the events and
// every signed tree head), and then, trusting nothing the server computed:
// - recomputes each event's hash (SHA-256 of the canonical JSON of the event
//   without `hash`), its prev_hash link, and its leaf hash
//   SHA-256(0x00 || canonical JSON);
// - recomputes the root of the first N leaves for every tree head and checks
//   the head's Ed25519 signature (over the canonical JSON of {type,
//   tree_size, root_hash, time, key_id}) with the pinned public key;
// - fetches the inclusion proof of every event against the newest head and
//   checks it (RFC 9162 2.1.3.2);
// - fetches the consistency proof between each pair of successive heads and
//   checks it (RFC 9162 2.1.4.2).
// Throws an Error naming the first failure; returns counts.

import { createHash, createPublicKey, verify } from 'node:crypto';

const sha256 = (...parts) => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};
const leafHash = (bytes) => sha256(Buffer.from([0]), bytes);
const nodeHash = (l, r) => sha256(Buffer.from([1]), l, r);

/** RFC 8785: sorted keys (UTF-16 order), ECMAScript number and string forms. */
export function canonical(v) {
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  const keys = Object.keys(v).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(',')}}`;
}

/** MTH(D[lo:hi]) over leaf hashes (RFC 9162 2.1.1). */
function mth(leaves, lo, hi) {
  const n = hi - lo;
  if (n === 0) return sha256(Buffer.alloc(0));
  if (n === 1) return leaves[lo];
  let k = 1;
  while (k * 2 < n) k *= 2;
  return nodeHash(mth(leaves, lo, lo + k), mth(leaves, lo + k, hi));
}

/** RFC 9162 2.1.3.2. */
export function verifyInclusion(index, size, leaf, path, root) {
  if (index >= size) return false;
  let fn = BigInt(index);
  let sn = BigInt(size - 1);
  let r = leaf;
  for (const hex of path) {
    const p = Buffer.from(hex, 'hex');
    if (sn === 0n) return false;
    if ((fn & 1n) === 1n || fn === sn) {
      r = nodeHash(p, r);
      if ((fn & 1n) === 0n) {
        while ((fn & 1n) === 0n && fn !== 0n) {
          fn >>= 1n;
          sn >>= 1n;
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  return sn === 0n && r.equals(root);
}

/** RFC 9162 2.1.4.2 (first < second). */
export function verifyConsistency(first, second, firstRoot, secondRoot, path) {
  if (path.length === 0) return false;
  const hashes = path.map((h) => Buffer.from(h, 'hex'));
  if ((first & (first - 1)) === 0) hashes.unshift(firstRoot);
  let fn = BigInt(first - 1);
  let sn = BigInt(second - 1);
  while ((fn & 1n) === 1n) {
    fn >>= 1n;
    sn >>= 1n;
  }
  let fr = hashes[0];
  let sr = hashes[0];
  for (const c of hashes.slice(1)) {
    if (sn === 0n) return false;
    if ((fn & 1n) === 1n || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if ((fn & 1n) === 0n) {
        while ((fn & 1n) === 0n && fn !== 0n) {
          fn >>= 1n;
          sn >>= 1n;
        }
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  return sn === 0n && fr.equals(firstRoot) && sr.equals(secondRoot);
}

function ed25519Key(b64) {
  const raw = Buffer.from(b64, 'base64');
  if (raw.length !== 32) throw new Error('the audit public key is not 32 bytes');
  const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), raw]);
  return createPublicKey({ key: spki, format: 'der', type: 'spki' });
}

/** Checks a tree head's signature; the key id is the first 16 hex digits of SHA-256(key). */
export function verifyTreeHead(th, publicKeyB64) {
  const keyId = sha256(Buffer.from(publicKeyB64, 'base64')).toString('hex').slice(0, 16);
  if (th.key_id !== keyId) return false;
  const msg = canonical({
    type: 'dcms.audit.tree_head.v1', tree_size: th.tree_size, root_hash: th.root_hash,
    time: th.time, key_id: th.key_id,
  });
  return verify(null, Buffer.from(msg), ed25519Key(publicKeyB64), Buffer.from(th.signature, 'base64'));
}

/**
 * get(path) -> parsed JSON (or text for the export); publicKeyB64: the pinned key.
 * Returns {events, treeHeads, inclusionProofs, consistencyProofs}.
 */
export async function verifyLog(get, publicKeyB64) {
  const text = await get('/api/v1/audit/export?from_seq=1', { text: true });
  const lines = text.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
  const events = lines.filter((l) => l.event).map((l) => l.event);
  const heads = lines.filter((l) => l.tree_head).map((l) => l.tree_head);
  if (!events.length) throw new Error('the export holds no events');
  const leaves = [];
  let prev = '0'.repeat(64);
  for (const [i, ev] of events.entries()) {
    if (ev.seq !== i + 1) throw new Error(`event ${i + 1} is missing (found seq ${ev.seq})`);
    const { hash, ...body } = ev;
    const bytes = Buffer.from(canonical(body));
    if (sha256(bytes).toString('hex') !== hash) throw new Error(`event ${ev.seq}: hash does not match its content`);
    if (ev.prev_hash !== prev) throw new Error(`event ${ev.seq}: prev_hash does not link`);
    prev = hash;
    leaves.push(leafHash(bytes));
  }
  if (!heads.length) throw new Error('the export holds no tree head');
  for (const th of heads) {
    if (!verifyTreeHead(th, publicKeyB64)) throw new Error(`tree head ${th.tree_size}: bad signature`);
    if (th.tree_size > leaves.length) throw new Error(`tree head ${th.tree_size} is beyond the export`);
    if (mth(leaves, 0, th.tree_size).toString('hex') !== th.root_hash) {
      throw new Error(`tree head ${th.tree_size}: the root is not the tree of the events`);
    }
  }
  const last = heads.at(-1);
  const lastRoot = Buffer.from(last.root_hash, 'hex');
  let inclusionProofs = 0;
  for (let seq = 1; seq <= last.tree_size; seq++) {
    const p = await get(`/api/v1/audit/proof/inclusion?seq=${seq}&tree_size=${last.tree_size}`);
    if (p.leaf_hash !== leaves[seq - 1].toString('hex')) throw new Error(`event ${seq}: the server's leaf hash differs`);
    if (!verifyInclusion(seq - 1, last.tree_size, leaves[seq - 1], p.audit_path, lastRoot)) {
      throw new Error(`event ${seq}: the inclusion proof does not reach the root of ${last.tree_size}`);
    }
    inclusionProofs++;
  }
  let consistencyProofs = 0;
  for (let i = 1; i < heads.length; i++) {
    const a = heads[i - 1];
    const b = heads[i];
    const p = await get(`/api/v1/audit/proof/consistency?first=${a.tree_size}&second=${b.tree_size}`);
    if (!verifyConsistency(a.tree_size, b.tree_size, Buffer.from(a.root_hash, 'hex'),
      Buffer.from(b.root_hash, 'hex'), p.consistency_path)) {
      throw new Error(`the tree of ${b.tree_size} is not proven to extend the tree of ${a.tree_size}`);
    }
    consistencyProofs++;
  }
  return { events: events.length, treeHeads: heads.length, inclusionProofs, consistencyProofs };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [base, token, key] = process.argv.slice(2);
  if (!base || !token || !key) {
    console.error('usage: node tests/audit-log-verifier.mjs BASE_URL TOKEN PUBLIC_KEY_B64');
    process.exit(2);
  }
  const get = async (p, { text } = {}) => {
    const r = await fetch(base + p, { headers: { authorization: `Bearer ${token}` } });
    if (r.status !== 200) throw new Error(`GET ${p}: ${r.status}`);
    return text ? r.text() : r.json();
  };
  verifyLog(get, key).then((r) => console.log(JSON.stringify(r)), (e) => {
    console.error(`audit log does not verify: ${e.message}`);
    process.exit(1);
  });
}
