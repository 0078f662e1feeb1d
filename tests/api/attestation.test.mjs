// POST /api/v1/attestation/verify and `dcmsd attestation verify`: real AWS
// Nitro documents from tests/vectors/nitro verify against the AWS root at
// their own time (max_age_seconds null) and fail freshness under the default
// policy; debug-mode documents, PCR and nonce mismatches, the local root and
// garbage give their distinct failure codes; bad requests answer 422 with a
// detail per field; the route is called as an operator (a role holding
// attestation:verify, created by the bootstrap admin), and without a token it
// answers 401.
// Every response is checked against api/openapi.yaml.
//
// Runs on the backend chosen by DCMS_TEST_BACKEND (see lib/server.mjs).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { checkResponse } from './lib/openapi.mjs';
import { client } from './lib/http.mjs';
import { dcmsBin, repoRoot, startServer } from './lib/server.mjs';
import { adminEnv, adminToken, bearer, login } from './lib/iam.mjs';

const ROUTE = '/api/v1/attestation/verify';
const vectorsDir = process.env.DCMS_VECTORS_DIR
  ? path.join(process.env.DCMS_VECTORS_DIR, 'nitro')
  : path.join(repoRoot, 'tests', 'vectors', 'nitro');

function vector(name) {
  return {
    bytes: fs.readFileSync(path.join(vectorsDir, `${name}.cbor`)),
    side: JSON.parse(fs.readFileSync(path.join(vectorsDir, `${name}.json`), 'utf8')),
  };
}

const cape = vector('capejs_attestation_20220915');
const debugDoc = vector('evervault_debugmode_20221012');

function failedCheck(report) {
  return report.checks.find((c) => !c.ok);
}

describe('attestation verify API', () => {
  let srv;
  let c;
  let token; // an operator's

  async function verify(body) {
    const r = await c.call('POST', ROUTE, { headers: bearer(token), json: body });
    checkResponse('POST', ROUTE, r.res, r.text);
    return r;
  }

  function assertValidation(r, field) {
    assert.equal(r.status, 422, r.text);
    assert.equal(r.json.error.code, 'validation_failed');
    assert.ok(r.json.error.details?.some((d) => d.field === field),
      `a detail for ${field}: ${JSON.stringify(r.json.error.details)}`);
  }

  before(async () => {
    srv = await startServer({ env: adminEnv });
    c = client(srv);
    const email = 'operator@dcms.test';
    const password = 'operator test passphrase 42';
    const r = await c.call('POST', '/api/v1/identities', {
      headers: bearer(await adminToken(srv)),
      json: { name: 'Operator', email, password, roles: ['operator'] },
    });
    assert.equal(r.status, 201, r.text);
    token = (await login(srv, email, password)).access_token;
  });

  after(async () => {
    if (srv) await srv.stop();
  });

  test('a real AWS document verifies against the AWS root at its own time', async () => {
    const r = await verify({ document: cape.bytes.toString('base64'), policy: { root: 'aws', max_age_seconds: null } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.valid, true, JSON.stringify(failedCheck(r.json)));
    assert.equal(r.json.failure, null);
    const d = r.json.document;
    assert.equal(d.module_id, cape.side.payload.module_id);
    assert.equal(d.timestamp, cape.side.payload.timestamp_ms);
    assert.deepEqual(d.pcrs, cape.side.payload.pcrs_hex);
    assert.equal(d.nonce, cape.side.payload.nonce.hex);
    assert.equal(d.cabundle.length, 4);
    for (const name of ['root_pinned', 'chain', 'signature', 'chain_at_document_time', 'debug']) {
      assert.ok(r.json.checks.some((ch) => ch.name === name && ch.ok), `check ${name} passed`);
    }
    assert.ok(!r.json.checks.some((ch) => ch.name === 'freshness'), 'no freshness check with max_age_seconds null');
  });

  test('unpadded base64 is accepted', async () => {
    const b64 = cape.bytes.toString('base64').replace(/=+$/, '');
    const r = await verify({ document: b64, policy: { max_age_seconds: null } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.valid, true);
  });

  test('the default policy refuses an old document as freshness', async () => {
    const r = await verify({ document: cape.bytes.toString('base64') });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.valid, false);
    assert.equal(r.json.failure, 'freshness');
    assert.ok(r.json.document, 'the document is decoded once chain and signature passed');
    assert.ok(r.json.checks.some((ch) => ch.name === 'chain_at_now' && !ch.ok && /expired/.test(ch.reason)));
  });

  test('debug-mode documents are refused unless allowed', async () => {
    const doc = debugDoc.bytes.toString('base64');
    let r = await verify({ document: doc, policy: { max_age_seconds: null } });
    assert.equal(r.json.failure, 'debug');
    r = await verify({ document: doc, policy: { max_age_seconds: null, allow_debug: true } });
    assert.equal(r.json.valid, true, r.text);
  });

  test('expected PCRs and nonce', async () => {
    const doc = cape.bytes.toString('base64');
    const pcrs = cape.side.payload.pcrs_hex;
    let r = await verify({
      document: doc,
      policy: { max_age_seconds: null, expected_pcrs: { 0: pcrs['0'], 1: pcrs['1'], 2: pcrs['2'], 8: pcrs['8'] }, nonce: cape.side.payload.nonce.hex },
    });
    assert.equal(r.json.valid, true, r.text);
    const wrong = pcrs['0'].replace(/^./, (ch) => (ch === '0' ? '1' : '0'));
    r = await verify({ document: doc, policy: { max_age_seconds: null, expected_pcrs: { 0: wrong } } });
    assert.equal(r.json.failure, 'pcr');
    r = await verify({ document: doc, policy: { max_age_seconds: null, nonce: '00' } });
    assert.equal(r.json.failure, 'nonce');
  });

  test('an AWS document fails against the local dev root, at the pin', async () => {
    const r = await verify({ document: cape.bytes.toString('base64'), policy: { root: 'local', max_age_seconds: null } });
    assert.equal(r.json.failure, 'chain');
    assert.equal(failedCheck(r.json).name, 'root_pinned');
    assert.equal(r.json.document, null);
  });

  test('garbage and corrupted documents', async () => {
    let r = await verify({ document: Buffer.from('this is not an attestation document').toString('base64') });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.failure, 'decode');
    assert.equal(r.json.document, null);
    const bad = Buffer.from(cape.bytes);
    bad[bad.length - 1] ^= 1;
    r = await verify({ document: bad.toString('base64'), policy: { max_age_seconds: null } });
    assert.equal(r.json.failure, 'signature');
    r = await verify({ document: Buffer.concat([cape.bytes, Buffer.from([0])]).toString('base64') });
    assert.equal(r.json.failure, 'decode');
  });

  test('the dev CA was created in the data directory with private modes', () => {
    const dir = path.join(srv.dataDir, 'attestation');
    assert.equal(fs.statSync(dir).mode & 0o777, 0o700);
    for (const f of ['root.key', 'root.crt', 'intermediate.key', 'intermediate.crt']) {
      assert.equal(fs.statSync(path.join(dir, f)).mode & 0o777, 0o600, f);
    }
  });

  test('bad requests answer 422 with a detail per field', async () => {
    const doc = cape.bytes.toString('base64');
    assertValidation(await verify({ document: doc, extra: 1 }), 'extra');
    assertValidation(await verify({ policy: {} }), 'document');
    assertValidation(await verify({ document: 'not base64!' }), 'document');
    assertValidation(await verify({ document: `${doc.slice(0, 20)}\n${doc.slice(20)}` }), 'document');
    assertValidation(await verify({ document: 42 }), 'document');
    assertValidation(await verify({ document: Buffer.alloc(17409).toString('base64') }), 'document');
    assertValidation(await verify({ document: doc, policy: { colour: 'red' } }), 'policy.colour');
    assertValidation(await verify({ document: doc, policy: { max_age_seconds: -1 } }), 'policy.max_age_seconds');
    assertValidation(await verify({ document: doc, policy: { max_age_seconds: '5' } }), 'policy.max_age_seconds');
    assertValidation(await verify({ document: doc, policy: { allow_debug: 'yes' } }), 'policy.allow_debug');
    assertValidation(await verify({ document: doc, policy: { root: 'gcp' } }), 'policy.root');
    assertValidation(await verify({ document: doc, policy: { nonce: 'xyz' } }), 'policy.nonce');
    assertValidation(await verify({ document: doc, policy: { expected_pcrs: { 0: 'abcd' } } }), 'policy.expected_pcrs.0');
    assertValidation(await verify({ document: doc, policy: { expected_pcrs: { 32: '00'.repeat(48) } } }), 'policy.expected_pcrs.32');
    assertValidation(await verify({ document: doc, policy: { expected_pcrs: [] } }), 'policy.expected_pcrs');
    assertValidation(await verify({ document: doc, policy: { expected_pcrs: { 8: '00'.repeat(48) } } }), 'policy.expected_pcrs.8');
    assertValidation(await verify([]), '');
  });
});

describe('attestation verify API without a token', () => {
  let srv;
  before(async () => {
    srv = await startServer();
  });
  after(async () => {
    if (srv) await srv.stop();
  });

  test('answers 401', async () => {
    const c = client(srv);
    const r = await c.call('POST', ROUTE, { json: { document: cape.bytes.toString('base64') } });
    checkResponse('POST', ROUTE, r.res, r.text);
    assert.equal(r.status, 401, r.text);
    assert.equal(r.json.error.code, 'unauthenticated');
  });
});

describe('dcmsd attestation verify', () => {
  const run = (...args) => spawnSync(dcmsBin, ['attestation', 'verify', ...args], { encoding: 'utf8', timeout: 30000 });
  const file = path.join(vectorsDir, 'capejs_attestation_20220915.cbor');

  test('a real document is valid at its own time, and the report is the API shape', () => {
    const r = run(file);
    assert.equal(r.status, 0, r.stderr + r.stdout);
    const rep = JSON.parse(r.stdout);
    assert.equal(rep.valid, true);
    assert.equal(rep.document.module_id, cape.side.payload.module_id);
  });

  test('exit 1 when the policy refuses it: freshness, debug, PCR, nonce', () => {
    let r = run(file, '--max-age-seconds', '300');
    assert.equal(r.status, 1);
    assert.equal(JSON.parse(r.stdout).failure, 'freshness');
    r = run(path.join(vectorsDir, 'evervault_debugmode_20221012.cbor'));
    assert.equal(JSON.parse(r.stdout).failure, 'debug');
    assert.equal(run(path.join(vectorsDir, 'evervault_debugmode_20221012.cbor'), '--allow-debug').status, 0);
    r = run(file, '--expect-pcr', `0=${'11'.repeat(48)}`);
    assert.equal(JSON.parse(r.stdout).failure, 'pcr');
    // An all-zero expected PCR pins nothing: a usage error, not a policy.
    r = run(file, '--expect-pcr', `8=${'00'.repeat(48)}`);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /all zeros/);
    r = run(file, '--expect-pcr', `0=${cape.side.payload.pcrs_hex['0']}`, '--nonce', cape.side.payload.nonce.hex);
    assert.equal(r.status, 0, r.stdout);
    r = run(file, '--nonce', 'ff');
    assert.equal(JSON.parse(r.stdout).failure, 'nonce');
  });

  test('base64 text input, another root, and usage errors', () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dcms-attest-cli-'));
    try {
      const b64 = path.join(tmp, 'doc.b64');
      fs.writeFileSync(b64, `${cape.bytes.toString('base64').replace(/(.{76})/g, '$1\n')}\n`);
      assert.equal(run(b64).status, 0);
      const other = path.join(tmp, 'other.pem');
      fs.writeFileSync(other, fs.readFileSync(path.join(vectorsDir, 'aws_nitro_root_g1.pem')));
      assert.equal(run(file, '--root', other).status, 0);
      assert.equal(run(file, '--expect-pcr', '40=00').status, 2);
      assert.equal(run().status, 2);
      assert.equal(run(path.join(tmp, 'missing')).status, 2);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});
