// Evidence for a contract's parties (issue 14): a party downloads the last
// attestation document of the enclave serving its contract and verifies it
// with `dcmsd attestation verify` against the local root; a non-party gets
// 404; any authenticated identity may verify documents; a party reads the
// audit slice of its contract with its proof and checks it with
// `dcmsd audit verify`; the evidence bundle verifies offline with
// `dcmsd evidence verify`, and changing a byte of a signature, a term, an
// attestation document or an audit event makes it fail naming the part.
// Runs on the backend chosen by DCMS_TEST_BACKEND.

import assert from 'node:assert/strict';
import {spawnSync} from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {after, before, test} from 'node:test';
import {bearer, contractsContext, validTerms} from './lib/contracts.mjs';
import {dcmsBin, stopAll} from './lib/server.mjs';

const buildDir = path.dirname(dcmsBin);
const workload = path.join(buildDir, 'workload', 'dcms-workload');
let ctx, p, outsider, contract, enclave, tmp, imagesDir;

const dcmsd = (args) => spawnSync(dcmsBin, args, {encoding: 'utf8', timeout: 60000});

function writeJson(name, v) {
  const f = path.join(tmp, name);
  fs.writeFileSync(f, JSON.stringify(v, null, 2));
  return f;
}

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dcms-evidence-'));
  imagesDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcms-images-'));
  fs.copyFileSync(workload, path.join(imagesDir, 'dcms-workload'));
  ctx = await contractsContext({DCMS_ENCLAVE_IMAGES_DIR: imagesDir, DCMS_ENCLAVE_MAX_MEMORY_MB: '512'});
  p = await ctx.parties();
  outsider = await ctx.identity({roles: ['consumer']});
  contract = await ctx.inState(p, 'active', {
    terms: validTerms({security: {encryption_level: 'standard', network_isolation: false, audit_logging: true,
                                  custom_policies: []}}),
  });
  const r = await ctx.call('POST', '/api/v1/enclaves', {
    headers: bearer(p.provider.token),
    json: {name: 'evidence enclave', contract_id: contract.id,
           configuration: {image: 'dcms-workload', cpu_cores: 1, memory_mb: 256, storage_gb: 1}},
  }, '/api/v1/enclaves');
  assert.equal(r.status, 201, JSON.stringify(r.json));
  assert.equal(r.json.status, 'running', JSON.stringify(r.json));
  enclave = r.json;
});

after(async () => {
  await stopAll();
  fs.rmSync(tmp, {recursive: true, force: true});
  fs.rmSync(imagesDir, {recursive: true, force: true});
});

const attestation = (who, id = enclave.id) =>
  ctx.call('GET', `/api/v1/enclaves/${id}/attestation`, {headers: bearer(who.token)},
           '/api/v1/enclaves/{id}/attestation');

test('a party downloads the attestation document and verifies it with dcmsd attestation verify', async () => {
  for (const who of [p.consumer, p.provider]) {
    const r = await attestation(who);
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal(r.json.enclave_id, enclave.id);
    assert.equal(r.json.contract_id, contract.id);
    assert.equal(r.json.verified, true);
    assert.equal(r.json.nonce, enclave.attestation.nonce);
    assert.match(r.json.root_pem, /BEGIN CERTIFICATE/);
    const doc = path.join(tmp, 'doc.b64');
    const root = path.join(tmp, 'root.crt');
    fs.writeFileSync(doc, r.json.document);
    fs.writeFileSync(root, r.json.root_pem);
    // The same root dcmsd trusts (what a party compares out of band).
    assert.equal(fs.readFileSync(path.join(ctx.server.dataDir, 'attestation', 'root.crt'), 'utf8'),
                 r.json.root_pem);
    const v = dcmsd(['attestation', 'verify', doc, '--root', root, '--nonce', r.json.nonce,
                     '--expect-pcr', `0=${enclave.measurement.expected_pcr0}`]);
    assert.equal(v.status, 0, v.stdout + v.stderr);
    assert.equal(JSON.parse(v.stdout).valid, true);
    // A wrong nonce is refused: the document is bound to the one dcmsd sent.
    const w = dcmsd(['attestation', 'verify', doc, '--root', root, '--nonce', '00'.repeat(32)]);
    assert.equal(w.status, 1, w.stdout);
  }
  // The document is the one POST /attestation/verify accepts, for a party too.
  const r = await attestation(p.consumer);
  const v = await ctx.call('POST', '/api/v1/attestation/verify', {
    headers: bearer(p.consumer.token),
    json: {document: r.json.document, policy: {root: 'local', nonce: r.json.nonce, max_age_seconds: 3600}},
  }, '/api/v1/attestation/verify');
  assert.equal(v.status, 200, JSON.stringify(v.json));
  assert.equal(v.json.valid, true, JSON.stringify(v.json));
});

test('a non-party gets 404 on the attestation, the audit and the evidence, as for an unknown id', async () => {
  const unknown = '00000000-0000-4000-8000-000000000000';
  const a = await attestation(outsider);
  const b = await attestation(outsider, unknown);
  assert.equal(a.status, 404);
  assert.equal(b.status, 404);
  assert.equal(a.json.error.code, b.json.error.code);
  assert.equal(a.json.error.message, b.json.error.message);
  for (const what of ['audit', 'evidence']) {
    const r1 = await ctx.call('GET', `/api/v1/contracts/${contract.id}/${what}`, {headers: bearer(outsider.token)});
    const r2 = await ctx.call('GET', `/api/v1/contracts/${unknown}/${what}`, {headers: bearer(outsider.token)});
    assert.equal(r1.status, 404, what);
    assert.equal(r2.status, 404, what);
    assert.equal(r1.json.error.message, r2.json.error.message);
  }
  // The hidden contract is a refusal all the same: audited, as the other contract routes do.
  let seen = [];
  for (let i = 0; i < 40 && seen.length < 2; i++) {
    seen = (await ctx.auditEvents(`action=contract.hidden&resource_id=${contract.id}&limit=100`))
        .filter((e) => e.actor === outsider.id && e.outcome === 'denied').map((e) => e.details.view);
    if (seen.length < 2) await new Promise((r) => setTimeout(r, 50));
  }
  assert.deepEqual(seen.sort(), ['audit slice', 'evidence bundle']);
});

test('the audit slice of the contract is cursor-paged and each page verifies with dcmsd audit verify', async () => {
  const key = (await ctx.call('GET', '/api/v1/audit/public-key')).json.public_key;
  const seen = [];
  let cursor = null;
  for (let i = 0; i < 50; i++) {
    const q = `limit=2${cursor ? `&cursor=${cursor}` : ''}`;
    const r = await ctx.call('GET', `/api/v1/contracts/${contract.id}/audit?${q}`, {headers: bearer(p.consumer.token)});
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.ok(r.json.events.length <= 2);
    for (const e of r.json.events) {
      assert.ok((e.resource_type === 'contract' && e.resource_id === contract.id) ||
                (e.resource_type === 'enclave' && e.resource_id === enclave.id), JSON.stringify(e));
    }
    seen.push(...r.json.events);
    const v = dcmsd(['audit', 'verify', writeJson('page.json', r.json), '--public-key', key]);
    assert.equal(v.status, 0, v.stdout + v.stderr);
    assert.equal(JSON.parse(v.stdout).ok, true);
    cursor = r.json.next_cursor;
    if (!cursor) break;
  }
  const actions = seen.map((e) => e.action);
  for (const a of ['contract.create', 'contract.sign', 'contract.activate', 'enclave.create']) {
    assert.ok(actions.includes(a), `${a} in ${actions}`);
  }
  const seqs = seen.map((e) => e.seq);
  assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y));
  assert.equal(new Set(seqs).size, seqs.length);
  // Another caller's refusal on the contract is not the parties' history.
  assert.ok(!actions.some((a) => a.startsWith('request.') || a.endsWith('read_denied')));
  // A page edited after the fact fails.
  const r = await ctx.call('GET', `/api/v1/contracts/${contract.id}/audit`, {headers: bearer(p.provider.token)});
  r.json.events[0].actor = p.consumer.id === r.json.events[0].actor ? p.provider.id : p.consumer.id;
  const v = dcmsd(['audit', 'verify', writeJson('bad-page.json', r.json), '--public-key', key]);
  assert.equal(v.status, 1, v.stdout);
  assert.match(JSON.parse(v.stdout).reason, /hash does not match/);
  // Bad paging input is a 422 with the field.
  const bad = await ctx.call('GET', `/api/v1/contracts/${contract.id}/audit?limit=0`, {headers: bearer(p.consumer.token)});
  assert.equal(bad.status, 422);
  assert.equal(bad.json.error.details[0].field, 'limit');
});

async function bundle() {
  const r = await ctx.call('GET', `/api/v1/contracts/${contract.id}/evidence`, {headers: bearer(p.consumer.token)});
  assert.equal(r.status, 200, JSON.stringify(r.json));
  return r.json;
}

function verifyBundle(b, name = 'bundle.json') {
  return dcmsd(['evidence', 'verify', writeJson(name, b)]);
}

test('the evidence bundle verifies offline with dcmsd evidence verify, one line per check', async () => {
  const b = await bundle();
  assert.equal(b.type, 'dcms.evidence.v1');
  assert.equal(b.signatures.length, 2);
  assert.equal(b.enclaves.length, 1);
  assert.equal(b.audit_complete, true);
  const v = verifyBundle(b);
  assert.equal(v.status, 0, v.stdout + v.stderr);
  const lines = v.stdout.trim().split('\n');
  for (const part of ['bundle', 'signed content', 'signature 0', 'signature 1', 'signatures', 'attestation 0', 'audit',
    'receipts']) {
    assert.ok(lines.some((l) => l.startsWith(`PASS ${part}`)), `${part}:\n${v.stdout}`);
  }
  assert.ok(!lines.some((l) => l.startsWith('FAIL')), v.stdout);
  // Each signature has its audit receipt; a receipt with a wrong audit path, or one missing, fails.
  assert.equal(b.receipts.length, 2);
  assert.ok(b.receipts.every((r) => r.event.action === 'contract.sign' && r.event.resource_id === b.contract.id));
  const moved = structuredClone(b);
  moved.receipts[0].inclusion.leaf_index += 1;
  assert.match(verifyBundle(moved).stdout, /^FAIL receipts/m);
  const dropped = structuredClone(b);
  dropped.receipts.pop();
  assert.match(verifyBundle(dropped).stdout, /^FAIL receipts/m);
  // The audit key's fingerprint is printed to be compared out of band, and can be pinned.
  const key = (await ctx.call('GET', '/api/v1/audit/public-key')).json.public_key;
  assert.ok(v.stdout.includes(key));
  const pinned = dcmsd(['evidence', 'verify', writeJson('b2.json', b), '--audit-key', key]);
  assert.equal(pinned.status, 0, pinned.stdout);
  const other = dcmsd(['evidence', 'verify', writeJson('b3.json', b), '--audit-key', Buffer.alloc(32, 7).toString('base64')]);
  assert.equal(other.status, 1);
  assert.match(other.stdout, /^FAIL audit key/m);
  // The bundle's audit slice is also what dcmsd audit verify accepts.
  const a = dcmsd(['audit', 'verify', writeJson('b4.json', b), '--public-key', key]);
  assert.equal(a.status, 0, a.stdout + a.stderr);
});

test('signatures sent as base64url appear in the bundle with their keys and verify offline', async () => {
  // The sign route takes either alphabet; the bundle once carried the base64url text as sent,
  // found no key for it and failed offline. Both parties sign in base64url here.
  let c = await ctx.create(p);
  c = (await ctx.op(p.provider, c, 'submit')).json;
  // Ed25519 signatures look random: in base64 nearly every one has a '+' or '/', which
  // base64url writes as '-' or '_' (both lacking one has odds of about 1 in 250).
  for (const who of [p.provider, p.consumer]) {
    const r = await ctx.signDigital(who, c, {encoding: 'base64url'});
    assert.equal(r.status, 200, JSON.stringify(r.json));
  }
  const r = await ctx.call('GET', `/api/v1/contracts/${c.id}/evidence`, {headers: bearer(p.consumer.token)});
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal(r.json.signatures.length, 2);
  for (const s of r.json.signatures) {
    assert.notEqual(s.public_key, null, JSON.stringify(s));
    assert.match(s.signature, /^[A-Za-z0-9+/]+=*$/);
  }
  const v = verifyBundle(r.json, 'b64url.json');
  assert.equal(v.status, 0, v.stdout + v.stderr);
  assert.ok(!v.stdout.split('\n').some((l) => l.startsWith('FAIL')), v.stdout);
});

/** Flips one bit of the byte at `i` of a base64 string. */
function flipB64(s, i = 10) {
  const buf = Buffer.from(s, 'base64');
  buf[i] ^= 1;
  return buf.toString('base64');
}

function expectFail(b, part, name) {
  const v = verifyBundle(b, name);
  assert.equal(v.status, 1, v.stdout + v.stderr);
  assert.match(v.stdout, new RegExp(`^FAIL ${part}`, 'm'), v.stdout);
}

test('changing a byte of a signature fails naming the signature', async () => {
  const b = await bundle();
  b.signatures[1].signature = flipB64(b.signatures[1].signature, 5);
  expectFail(b, 'signature 1', 'sig.json');
});

test('changing a term fails naming the signed content', async () => {
  const b = await bundle();
  b.signed_content.content.terms.retention.days += 1;
  expectFail(b, 'signed content', 'term.json');
  // ... and so does changing the canonical bytes themselves.
  const c = await bundle();
  const bytes = Buffer.from(c.signed_content.canonical_base64, 'base64').toString('utf8')
      .replace('"days":30', '"days":31');
  c.signed_content.canonical_base64 = Buffer.from(bytes).toString('base64');
  expectFail(c, 'signed content', 'bytes.json');
});

test('changing a byte of an attestation document fails naming the attestation', async () => {
  const b = await bundle();
  const doc = Buffer.from(b.enclaves[0].document, 'base64');
  doc[doc.length - 10] ^= 1; // inside the COSE signature
  b.enclaves[0].document = doc.toString('base64');
  expectFail(b, 'attestation 0', 'att.json');
});

test('changing an audit event fails naming the audit slice', async () => {
  const b = await bundle();
  const e = b.audit.events.find((x) => x.action === 'contract.activate');
  e.time = e.time.replace(/^(\d{4})/, (y) => String(Number(y) - 1));
  expectFail(b, 'audit', 'audit.json');
  // Recomputing the hash does not help: the signed inclusion statement names the old one.
  const c = await bundle();
  const d = c.audit.events.find((x) => x.action === 'contract.activate');
  d.hash = 'f'.repeat(64);
  expectFail(c, 'audit', 'audit2.json');
});

test('every authenticated identity may verify an attestation document', async () => {
  const r = await attestation(p.provider);
  for (const who of [p.provider, p.consumer, outsider]) {
    const v = await ctx.call('POST', '/api/v1/attestation/verify', {
      headers: bearer(who.token), json: {document: r.json.document, policy: {root: 'local'}},
    }, '/api/v1/attestation/verify');
    assert.equal(v.status, 200, JSON.stringify(v.json));
  }
  const anon = await ctx.call('POST', '/api/v1/attestation/verify', {json: {document: r.json.document}},
                              '/api/v1/attestation/verify');
  assert.equal(anon.status, 401);
});
