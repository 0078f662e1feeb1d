// Signed workload images for the local backend, through the CLI and the
// API: an operator makes a P-384 key and a self-signed certificate with
// `openssl req` (at test time, nothing committed), signs an image with
// `dcmsd image sign`, and pins the PCR8 it prints. A "high" contract is then
// served by the signed image (running, attestation verified, PCR8 in the
// document, compatible) and refused by an unsigned one (the attestation
// fails on the signer, not compatible); an image changed after signing does
// not start; an all-zero signer or expected PCR is 422. Runs on the backend
// chosen by DCMS_TEST_BACKEND.

import assert from 'node:assert/strict';
import {spawnSync} from 'node:child_process';
import {X509Certificate, createHash} from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {after, before, describe, test} from 'node:test';
import {dcmsBin} from './lib/server.mjs';
import {bearer, contractsContext} from './lib/contracts.mjs';

const workload = path.join(path.dirname(dcmsBin), 'workload', 'dcms-workload');
const ZERO = '00'.repeat(48);

let ctx, call, work, imagesDir, pcr8, p, contract;

const dcmsd = (...args) => spawnSync(dcmsBin, args, {encoding: 'utf8', timeout: 60000});
const pcrLine = (out, n) => out.match(new RegExp(`^PCR${n} ([0-9a-f]{96})$`, 'm'))?.[1];

before(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'dcms-sign-'));
  imagesDir = path.join(work, 'images');
  fs.mkdirSync(imagesDir);
  for (const name of ['signed-workload', 'unsigned-workload', 'tampered-workload']) {
    fs.copyFileSync(workload, path.join(imagesDir, name));
    fs.chmodSync(path.join(imagesDir, name), 0o755);
  }
  // The operator's signing key and certificate, as docs/enclaves.md shows.
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:secp384r1',
                                  '-sha384', '-nodes', '-keyout', path.join(work, 'key.pem'),
                                  '-out', path.join(work, 'cert.pem'), '-days', '30',
                                  '-subj', '/CN=dcms test image signer (test only)'],
                      {encoding: 'utf8', timeout: 30000});
  assert.equal(r.status, 0, r.stderr);
  ctx = await contractsContext({DCMS_ENCLAVE_IMAGES_DIR: imagesDir, DCMS_ENCLAVE_MAX_MEMORY_MB: '512'});
  call = ctx.call;
  p = await ctx.parties();
  contract = await ctx.inState(p, 'active'); // validTerms(): encryption_level "high"
  assert.equal(contract.terms.security.encryption_level, 'high');
});

after(() => {
  if (work) fs.rmSync(work, {recursive: true, force: true});
});

describe('dcmsd image', () => {
  test('sign writes IMAGE.sig and prints PCR0 and PCR8 measured as Nitro does', () => {
    const img = path.join(imagesDir, 'signed-workload');
    const r = dcmsd('image', 'sign', '--key', path.join(work, 'key.pem'), '--cert', path.join(work, 'cert.pem'), img);
    assert.equal(r.status, 0, r.stderr);
    assert.ok(fs.existsSync(`${img}.sig`));
    assert.equal(pcrLine(r.stdout, 0), createHash('sha384').update(fs.readFileSync(img)).digest('hex'));
    // PCR8, computed here independently: SHA-384(48 zero bytes || SHA-384(certificate DER)).
    const der = new X509Certificate(fs.readFileSync(path.join(work, 'cert.pem'))).raw;
    const inner = createHash('sha384').update(der).digest();
    pcr8 = createHash('sha384').update(Buffer.concat([Buffer.alloc(48), inner])).digest('hex');
    assert.equal(pcrLine(r.stdout, 8), pcr8);
    // measure verifies the signature and prints the same.
    const m = dcmsd('image', 'measure', img);
    assert.equal(m.status, 0, m.stderr);
    assert.equal(pcrLine(m.stdout, 8), pcr8);
    assert.match(m.stderr, /verifies/);
    // An unsigned image: PCR8 all zeros.
    const u = dcmsd('image', 'measure', path.join(imagesDir, 'unsigned-workload'));
    assert.equal(u.status, 0, u.stderr);
    assert.equal(pcrLine(u.stdout, 8), ZERO);
  });

  test('an image changed by one byte after signing does not verify (exit 1)', () => {
    const img = path.join(imagesDir, 'tampered-workload');
    const bytes = fs.readFileSync(img);
    bytes[4000] ^= 1;
    fs.writeFileSync(img, bytes);
    fs.copyFileSync(path.join(imagesDir, 'signed-workload.sig'), `${img}.sig`);
    const r = dcmsd('image', 'measure', img);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /does not verify: the signature is for another image/);
    assert.equal(r.stdout, '');
  });

  test('usage errors exit 2; a key that is not the certificate\'s is refused', () => {
    assert.equal(dcmsd('image').status, 2);
    assert.equal(dcmsd('image', 'sign', path.join(imagesDir, 'unsigned-workload')).status, 2);
    const r = dcmsd('image', 'sign', '--key', path.join(work, 'cert.pem'), '--cert', path.join(work, 'cert.pem'),
                    '--out', path.join(work, 'x.sig'), path.join(imagesDir, 'unsigned-workload'));
    assert.equal(r.status, 2);
    assert.match(r.stderr, /P-384 private key/);
    assert.ok(!fs.existsSync(path.join(work, 'x.sig')));
  });
});

describe('a "high" contract served by a signed image', () => {
  const body = (image, signers, extra = {}) => ({
    name: `enclave ${image}`,
    contract_id: contract.id,
    configuration: {image, cpu_cores: 1, memory_mb: 256, storage_gb: 1,
                    security_policy: {allowed_signers: signers}},
    ...extra,
  });
  const create = (b) => call('POST', '/api/v1/enclaves', {headers: bearer(p.provider.token), json: b},
                             '/api/v1/enclaves');
  const compat = (id) => call('GET', `/api/v1/enclaves/${id}/compatibility?contract_id=${contract.id}`,
                              {headers: bearer(p.provider.token)}, '/api/v1/enclaves/{id}/compatibility');
  const terminate = (id) => call('POST', `/api/v1/enclaves/${id}/terminate`, {headers: bearer(p.provider.token)},
                                 '/api/v1/enclaves/{id}/terminate');

  test('the signed image with its signer pinned: running, verified, compatible', async () => {
    assert.ok(pcr8, 'the image was signed');
    const r = await create(body('signed-workload', [pcr8]));
    assert.equal(r.status, 201, JSON.stringify(r.json));
    assert.equal(r.json.status, 'running', r.json.status_reason);
    assert.equal(r.json.attestation.verified, true);
    assert.equal(r.json.attestation.report.document.pcrs['8'], pcr8);
    const c = await compat(r.json.id);
    assert.equal(c.status, 200);
    assert.equal(c.json.encryption_level, 'high');
    assert.equal(c.json.compatible, true, JSON.stringify(c.json.requirements.filter((q) => !q.ok)));
    assert.equal(c.json.requirements.find((q) => q.name === 'allowed_signers').ok, true);
    // A fresh attestation still shows the signer.
    const a = await call('POST', `/api/v1/enclaves/${r.json.id}/attest`, {headers: bearer(p.provider.token)},
                         '/api/v1/enclaves/{id}/attest');
    assert.equal(a.status, 200, JSON.stringify(a.json));
    assert.equal(a.json.attestation.report.document.pcrs['8'], pcr8);
    assert.equal((await terminate(r.json.id)).status, 200);
  });

  test('an unsigned image with the same signer pinned is refused and not compatible', async () => {
    const r = await create(body('unsigned-workload', [pcr8]));
    if (r.status === 422) return; // refused at creation: equally not serving the contract
    assert.equal(r.status, 201, JSON.stringify(r.json));
    assert.equal(r.json.status, 'failed');
    assert.match(r.json.status_reason, /signer/);
    assert.equal(r.json.attestation.verified, false);
    const c = await compat(r.json.id);
    assert.equal(c.json.compatible, false);
  });

  test('an image changed after it was signed does not start', async () => {
    const r = await create(body('tampered-workload', [pcr8]));
    if (r.status === 422) return;
    assert.equal(r.status, 201, JSON.stringify(r.json));
    assert.equal(r.json.status, 'failed');
    assert.match(r.json.status_reason, /signature .* does not verify/);
  });

  test('an all-zero signer pins nothing: 422 naming the field, on create and on PATCH', async () => {
    let r = await create(body('signed-workload', [ZERO]));
    assert.equal(r.status, 422);
    assert.deepEqual(r.json.error.details.map((d) => d.field),
                     ['configuration.security_policy.allowed_signers[0]']);
    assert.match(r.json.error.details[0].problem, /all zeros/);
    r = await create(body('signed-workload', [pcr8]));
    assert.equal(r.status, 201);
    const id = r.json.id;
    assert.equal((await call('POST', `/api/v1/enclaves/${id}/suspend`, {headers: bearer(p.provider.token)},
                             '/api/v1/enclaves/{id}/suspend')).status, 200);
    r = await call('PATCH', `/api/v1/enclaves/${id}`, {
      headers: bearer(p.provider.token),
      json: {security_policy: {allowed_signers: [pcr8, ZERO]}},
    }, '/api/v1/enclaves/{id}');
    assert.equal(r.status, 422);
    assert.deepEqual(r.json.error.details.map((d) => d.field), ['security_policy.allowed_signers[1]']);
    await terminate(id);
  });

  test('an all-zero expected PCR in an attestation policy is 422', async () => {
    const r = await call('POST', '/api/v1/attestation/verify', {
      headers: bearer(ctx.admin),
      json: {document: Buffer.from([0x84]).toString('base64'), policy: {expected_pcrs: {0: ZERO}}},
    });
    assert.equal(r.status, 422);
    assert.ok(r.json.error.details.some((d) => d.field === 'policy.expected_pcrs.0'));
  });
});
