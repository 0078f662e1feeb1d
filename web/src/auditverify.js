// The audit chain verified in this browser (docs/audit.md, "Verifying it in
// the browser"): the export (GET /audit/export, JSON Lines) read as a stream,
// every event's hash recomputed with WebCrypto (SHA-256 of the RFC 8785
// canonical JSON of the event without `hash`) and linked by `prev_hash`,
// every checkpoint's and tree head's Ed25519 signature checked with WebCrypto
// against the audit public key (the one the server publishes, or a copy the
// auditor pinned), and each tree head's root recomputed from the events
// (RFC 9162 2.1: a compact range of complete subtrees, one leaf per event).
// Nothing the server computed is trusted, only the events' content and the
// key. Memory stays bounded: one batch of events at a time, and the range
// (one hash per set bit of the log's size). No worker (the CSP says
// worker-src 'none'): a batch's hashes are asked for together and each batch
// ends with a yield, so the page stays responsive on a large log.
import { authFetch, responseError } from './api.js';

/** Events per export (the server's limit): a fuller page means there may be more. */
export const EXPORT_MAX = 100000;
const BATCH = 256;
const GENESIS = '0'.repeat(64);
const HEX64 = /^[0-9a-f]{64}$/;
const enc = new TextEncoder();
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** RFC 8785: keys sorted by UTF-16 code units, ECMAScript number and string forms. */
export function canonical(v) {
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  const keys = Object.keys(v).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(',')}}`;
}

export function toHex(buf) {
  let s = '';
  for (const b of new Uint8Array(buf)) s += HEX[b];
  return s;
}

function fromB64(s) {
  try {
    return Uint8Array.from(atob(String(s).trim()), (c) => c.charCodeAt(0));
  } catch {
    return null;
  }
}

const sha256 = (bytes) => crypto.subtle.digest('SHA-256', bytes);
function prefixed(tag, ...parts) {
  const out = new Uint8Array(1 + parts.reduce((n, p) => n + p.byteLength, 0));
  out[0] = tag;
  let o = 1;
  for (const p of parts) {
    out.set(new Uint8Array(p), o);
    o += p.byteLength;
  }
  return out;
}
const leafHash = (bytes) => sha256(prefixed(0, bytes));
const nodeHash = (l, r) => sha256(prefixed(1, l, r));

/** RFC 9162's tree over the leaves pushed so far, kept as its complete subtrees. */
class CompactRange {
  constructor() {
    this.nodes = []; // [{size, hash}], sizes strictly decreasing powers of two
  }
  async push(leaf) {
    this.nodes.push({ size: 1, hash: leaf });
    for (let n = this.nodes; n.length > 1 && n.at(-1).size === n.at(-2).size; ) {
      const r = n.pop();
      const l = n.pop();
      n.push({ size: l.size * 2, hash: await nodeHash(l.hash, r.hash) });
    }
  }
  async root() {
    if (!this.nodes.length) return sha256(new Uint8Array(0));
    let acc = this.nodes.at(-1).hash;
    for (let i = this.nodes.length - 2; i >= 0; i--) acc = await nodeHash(this.nodes[i].hash, acc);
    return acc;
  }
}

/**
 * The audit key as a WebCrypto key: `pinnedB64` (a copy the auditor keeps
 * elsewhere) when given, else the one GET /audit/public-key serves. Resolves
 * {key, keyId, fingerprint, publicKey, pinned, served}; `served` is the
 * server's answer, `keyId` the first 16 hex digits of SHA-256(key) computed
 * here. Throws an Error with `field: 'pinned_key'` for a pinned key that is
 * not 32 bytes of base64, and one with `unsupported` when this browser has no
 * Ed25519 in WebCrypto.
 */
export async function auditKey(served, pinnedB64) {
  const pinned = Boolean(pinnedB64?.trim());
  const raw = fromB64(pinned ? pinnedB64 : served.public_key);
  if (!raw || raw.length !== 32) {
    const e = new Error('not 32 bytes in base64');
    e.field = pinned ? 'pinned_key' : null;
    throw e;
  }
  let key;
  try {
    key = await crypto.subtle.importKey('raw', raw, { name: 'Ed25519' }, false, ['verify']);
  } catch (err) {
    const e = new Error(err?.message ?? String(err));
    e.unsupported = true;
    throw e;
  }
  const fingerprint = toHex(await sha256(raw));
  return { key, keyId: fingerprint.slice(0, 16), fingerprint, publicKey: pinned ? pinnedB64.trim() : served.public_key, pinned, served };
}

async function verifySig(key, sigB64, message) {
  const sig = fromB64(sigB64);
  if (!sig || sig.length !== 64) return false;
  try {
    return await crypto.subtle.verify({ name: 'Ed25519' }, key, sig, enc.encode(canonical(message)));
  } catch {
    return false;
  }
}

/** The lines of a streamed response body, decoded as UTF-8, one at a time. */
async function* lines(res, signal) {
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let rest = '';
  try {
    for (;;) {
      if (signal?.aborted) throw signal.reason ?? new DOMException('aborted', 'AbortError');
      const { value, done } = await reader.read();
      if (done) break;
      rest += value;
      let start = 0;
      for (let i; (i = rest.indexOf('\n', start)) >= 0; start = i + 1) yield rest.slice(start, i);
      rest = rest.slice(start);
    }
    if (rest.trim()) yield rest;
  } finally {
    reader.cancel().catch(() => {});
  }
}

const pause = () => (globalThis.scheduler?.yield ? globalThis.scheduler.yield() : new Promise((r) => setTimeout(r, 0)));
const isSeq = (n) => Number.isSafeInteger(n) && n > 0;

/**
 * Walks the whole log from seq 1, export page by export page. `ak` comes
 * from auditKey; onExport() once the first export answered (its checkpoint
 * is signed by then), onProgress({checked, total, page}) after every batch.
 * Resolves {ok, through, lastSeq, events, checkpoints, treeHeads, badSeq,
 * why: {code, ...params}}: `through` is the last event a valid signature
 * covers; on failure `badSeq` is the first event (or checkpoint, tree head)
 * that fails and `why.code` says how (messages 'auditv.why.<code>').
 */
export async function verifyChain(ak, { signal, onExport, onProgress } = {}) {
  const st = { expect: 1, lastHash: GENESIS, lastSeq: 0, through: 0, events: 0, checkpoints: 0, treeHeads: 0, range: new CompactRange(), fail: null };
  const fail = (seq, code, params = {}) => {
    if (!st.fail) st.fail = { seq, why: { code, ...params } };
  };

  async function onEvent(ev, bytes, digest) {
    const { seq, hash, prev_hash: prev } = ev;
    if (!isSeq(seq) || !HEX64.test(hash ?? '') || !HEX64.test(prev ?? '')) return fail(st.expect, 'malformed', { after: st.lastSeq });
    if (seq !== st.expect) return fail(st.expect, 'missing', { next: seq });
    if (prev !== st.lastHash) return fail(seq, 'link');
    if (toHex(digest[0]) !== hash) return fail(seq, 'hash');
    await st.range.push(digest[1]);
    st.lastHash = hash;
    st.lastSeq = seq;
    st.expect = seq + 1;
    st.events++;
  }

  async function onCheckpoint(cp) {
    const { seq, hash, time, key_id: kid, signature } = cp;
    if (!isSeq(seq) || !HEX64.test(hash ?? '') || typeof time !== 'string' || typeof kid !== 'string') return fail(seq, 'cp_malformed');
    if (seq !== st.lastSeq) return fail(seq, 'cp_orphan');
    if (kid !== ak.keyId) return fail(seq, 'cp_key', { key: kid });
    if (!(await verifySig(ak.key, signature, { type: 'dcms.audit.checkpoint.v1', seq, hash, time, key_id: kid }))) return fail(seq, 'cp_sig');
    if (hash !== st.lastHash) return fail(seq, 'cp_rewritten');
    st.checkpoints++;
    st.through = Math.max(st.through, seq);
  }

  async function onTreeHead(th) {
    const { tree_size: size, root_hash: root, time, key_id: kid, signature } = th;
    if (!isSeq(size) || !HEX64.test(root ?? '') || typeof time !== 'string' || typeof kid !== 'string') return fail(size, 'th_malformed');
    if (size !== st.lastSeq) return fail(size, 'th_orphan');
    if (kid !== ak.keyId) return fail(size, 'th_key', { key: kid });
    if (!(await verifySig(ak.key, signature, { type: 'dcms.audit.tree_head.v1', tree_size: size, root_hash: root, time, key_id: kid }))) return fail(size, 'th_sig');
    if (toHex(await st.range.root()) !== root) return fail(size, 'th_rewritten');
    st.treeHeads++;
    st.through = Math.max(st.through, size);
  }

  // The hashes of a batch's events are computed together (none depends on
  // another: prev_hash is part of the content); the checks then run in order.
  async function flush(batch) {
    const digests = await Promise.all(batch.map((r) => (r.bytes ? Promise.all([sha256(r.bytes), leafHash(r.bytes)]) : null)));
    for (const [i, r] of batch.entries()) {
      if (r.event) await onEvent(r.event, r.bytes, digests[i]);
      else if (r.checkpoint) await onCheckpoint(r.checkpoint);
      else if (r.tree_head) await onTreeHead(r.tree_head);
      if (st.fail) return;
    }
  }

  for (let from = 1, page = 1; ; page++) {
    const res = await authFetch(`/api/v1/audit/export?from_seq=${from}`, { signal, headers: { Accept: 'application/x-ndjson' } });
    if (!res.ok) throw await responseError(res);
    if (page === 1) onExport?.();
    let header = null;
    let inPage = 0;
    let batch = [];
    let n = 0;
    for await (const line of lines(res, signal)) {
      if (!line.trim()) continue;
      let rec;
      try {
        rec = JSON.parse(line);
      } catch {
        fail(st.expect, 'malformed', { after: st.lastSeq });
        break;
      }
      if (!header) {
        if (rec?.export?.format !== 'dcms-audit-export/1') {
          fail(st.expect, 'format');
          break;
        }
        header = rec.export;
        continue;
      }
      if (rec?.event && typeof rec.event === 'object') {
        const { hash, ...body } = rec.event;
        rec.bytes = enc.encode(canonical(body));
        inPage++;
        n++;
      }
      batch.push(rec);
      if (n >= BATCH) {
        await flush(batch);
        if (st.fail) break;
        onProgress?.({ checked: st.events, total: (from - 1) + (header.events ?? 0), page });
        batch = [];
        n = 0;
        await pause();
      }
    }
    if (!st.fail && batch.length) await flush(batch);
    if (!st.fail && !header) fail(st.expect, 'format');
    if (!st.fail && inPage !== header.events) fail(st.lastSeq + 1, 'count', { declared: header.events, held: inPage });
    if (st.fail) break;
    onProgress?.({ checked: st.events, total: st.events, page });
    if (inPage < EXPORT_MAX) break;
    from = st.lastSeq + 1;
  }
  return {
    ok: !st.fail,
    through: st.through,
    lastSeq: st.lastSeq,
    events: st.events,
    checkpoints: st.checkpoints,
    treeHeads: st.treeHeads,
    badSeq: st.fail?.seq ?? null,
    why: st.fail?.why ?? null,
  };
}
