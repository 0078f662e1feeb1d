// HTTPS in dcmsd: TLS 1.3 by default, 1.2 only as an opt-in, HSTS, the
// certificate reloaded on SIGHUP without dropping connections, and no plain
// HTTP on a non-loopback address unless a proxy is declared.
// Certificates come from a throwaway CA made here with the openssl CLI.

import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import { after, before, describe, test } from 'node:test';

import { backend, startServer } from './lib/server.mjs';
import { ADMIN_EMAIL, ADMIN_PASSWORD, adminEnv, bearer } from './lib/iam.mjs';
import { httpsCall, httpsGet, makeCa, makeClientCert, makeServerCert } from './lib/tls.mjs';

const WAIT_MS = 10000;

async function waitForLog(server, pred, what) {
  const t0 = Date.now();
  while (Date.now() - t0 < WAIT_MS) {
    const hit = server.logs().find(pred);
    if (hit) return hit;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`no log line ${what} within ${WAIT_MS} ms; stderr tail:\n${server.stderr().slice(-2000)}`);
}

describe('HTTPS', () => {
  let ca;
  let first;
  let second;
  let live; // the files dcmsd is configured with; rotated by copying over them
  before(() => {
    ca = makeCa();
    first = makeServerCert(ca, 'first', 'dcms-first');
    second = makeServerCert(ca, 'second', 'dcms-second', 'rsa');
    live = { cert: `${ca.dir}/live.pem`, key: `${ca.dir}/live.key` };
    fs.copyFileSync(first.cert, live.cert);
    fs.copyFileSync(first.key, live.key);
  });
  after(() => {
    if (ca) fs.rmSync(ca.dir, { recursive: true, force: true });
  });

  const tlsEnv = (extra = {}) => ({ DCMS_TLS_CERT_FILE: live.cert, DCMS_TLS_KEY_FILE: live.key, ...extra });

  test('TLS 1.3 by default, with HSTS; TLS 1.2 and plain HTTP are refused', async () => {
    const s = await startServer({ env: tlsEnv() });
    assert.ok(s.logs().some((l) => l.msg === 'listening' && l.tls === true), 'the listening line says tls');
    const r = await httpsGet(s.port, '/healthz', { ca: ca.caPem });
    assert.equal(r.status, 200);
    assert.equal(r.protocol, 'TLSv1.3');
    assert.equal(r.cn, 'dcms-first');
    assert.equal(r.headers['strict-transport-security'], 'max-age=63072000');
    // An error answer carries it too (every response over TLS does).
    const nf = await httpsGet(s.port, '/nope', { ca: ca.caPem });
    assert.equal(nf.status, 404);
    assert.equal(nf.headers['strict-transport-security'], 'max-age=63072000');

    await assert.rejects(httpsGet(s.port, '/healthz', { ca: ca.caPem, maxVersion: 'TLSv1.2' }),
      (e) => /alert|protocol|version|socket hang up|ECONNRESET/i.test(`${e.code} ${e.message}`),
      'a TLS 1.2 client is refused by default');
    // An untrusted chain is the client's refusal: the server presents our CA's chain only.
    await assert.rejects(httpsGet(s.port, '/healthz', {}), /self[- ]signed|unable to (get|verify)/i);
    // Plain HTTP to the TLS port gets no HTTP answer.
    const plain = await fetch(`http://127.0.0.1:${s.port}/healthz`).then((x) => x.status, () => 'refused');
    assert.notEqual(plain, 200);
    await s.stop();
  });

  test('DCMS_TLS_MIN_VERSION=1.2 lets TLS 1.2 clients in, with AEAD suites only', async () => {
    const s = await startServer({ env: tlsEnv({ DCMS_TLS_MIN_VERSION: '1.2' }) });
    const r = await httpsGet(s.port, '/healthz', { ca: ca.caPem, maxVersion: 'TLSv1.2' });
    assert.equal(r.status, 200);
    assert.equal(r.protocol, 'TLSv1.2');
    assert.equal(r.headers['strict-transport-security'], 'max-age=63072000');
    const r13 = await httpsGet(s.port, '/healthz', { ca: ca.caPem });
    assert.equal(r13.protocol, 'TLSv1.3');
    // A CBC-only TLS 1.2 client finds no common suite.
    await assert.rejects(httpsGet(s.port, '/healthz', {
      ca: ca.caPem, maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA',
    }));
    await s.stop();
  });

  test('SIGHUP: a keep-alive connection survives, new connections get the new certificate', async () => {
    fs.copyFileSync(first.cert, live.cert);
    fs.copyFileSync(first.key, live.key);
    const s = await startServer({ env: tlsEnv() });
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: ca.caPem });
    try {
      const a = await httpsGet(s.port, '/healthz', { agent });
      assert.equal(a.cn, 'dcms-first');

      // A broken pair (the second certificate with the first key) is refused; the old one stays.
      fs.copyFileSync(second.cert, live.cert);
      s.proc.kill('SIGHUP');
      const refused = await waitForLog(s, (l) => /not reloaded/.test(l.msg ?? ''), '"not reloaded"');
      assert.match(refused.msg, /is not the key of the first certificate/);
      assert.equal((await httpsGet(s.port, '/healthz', { ca: ca.caPem })).cn, 'dcms-first');

      fs.copyFileSync(second.key, live.key);
      s.proc.kill('SIGHUP');
      await waitForLog(s, (l) => /certificate reloaded/.test(l.msg ?? ''), '"certificate reloaded"');

      const b = await httpsGet(s.port, '/healthz', { agent });
      assert.equal(b.status, 200);
      assert.equal(b.reused, true, 'the keep-alive connection was kept');
      assert.equal(b.cn, 'dcms-first', 'an established connection keeps its certificate');
      const c = await httpsGet(s.port, '/healthz', { ca: ca.caPem });
      assert.equal(c.cn, 'dcms-second', 'a new connection gets the new certificate');
      const d = await httpsGet(s.port, '/readyz', { agent });
      assert.equal(d.status, 200);
      assert.equal(d.reused, true);
      assert.equal(s.proc.exitCode, null, 'dcmsd still runs');
    } finally {
      agent.destroy();
      fs.copyFileSync(first.cert, live.cert);
      fs.copyFileSync(first.key, live.key);
    }
    assert.equal(await s.stop(), 0);
  });

  test('start refuses a key that does not match the certificate, and a lone half', async () => {
    await assert.rejects(startServer({ env: { DCMS_TLS_CERT_FILE: first.cert, DCMS_TLS_KEY_FILE: second.key } }),
      /is not the key of the first certificate/);
    await assert.rejects(startServer({ env: { DCMS_TLS_CERT_FILE: first.cert } }),
      /DCMS_TLS_CERT_FILE and DCMS_TLS_KEY_FILE go together/);
    await assert.rejects(startServer({ env: tlsEnv({ DCMS_TLS_MIN_VERSION: '1.1' }) }),
      /DCMS_TLS_MIN_VERSION must be 1.3 or 1.2/);
  });

  test('plain HTTP on a non-loopback address needs DCMS_ALLOW_PLAINTEXT', async () => {
    // Refused before anything is bound.
    await assert.rejects(startServer({ env: { DCMS_LISTEN: '0.0.0.0:0' } }),
      /plain HTTP on the non-loopback address 0\.0\.0\.0.*DCMS_ALLOW_PLAINTEXT/);
  });

  test('a verified client certificate mapped to an API key authenticates as its service identity', async () => {
    fs.copyFileSync(first.cert, live.cert);
    fs.copyFileSync(first.key, live.key);
    const clientCa = makeCa('dcms client CA');
    const otherCa = makeCa('some other CA');
    try {
      const svcCert = makeClientCert(clientCa, 'svc', 'svc-billing');
      const unmapped = makeClientCert(clientCa, 'unmapped', 'svc-unmapped');
      const foreign = makeClientCert(otherCa, 'foreign', 'svc-billing');
      const mapFile = `${clientCa.dir}/clients.map`;
      fs.writeFileSync(mapFile, '# fingerprint  api-key-id\n');
      const s = await startServer({
        env: tlsEnv({ ...adminEnv, DCMS_TLS_CLIENT_CA_FILE: clientCa.ca, DCMS_TLS_CLIENT_MAP_FILE: mapFile }),
      });
      const base = { ca: ca.caPem };
      const login = await httpsCall(s.port, 'POST', '/api/v1/auth/login',
        { ...base, json: { email: ADMIN_EMAIL, password: ADMIN_PASSWORD } });
      assert.equal(login.status, 200, login.text);
      const admin = bearer(login.json.access_token);
      const svc = await httpsCall(s.port, 'POST', '/api/v1/identities',
        { ...base, headers: admin, json: { kind: 'service', name: 'billing', roles: ['auditor'] } });
      assert.equal(svc.status, 201, svc.text);
      const key = await httpsCall(s.port, 'POST', '/api/v1/api-keys', {
        ...base, headers: admin,
        json: { name: 'billing-mtls', identity_id: svc.json.id, permissions: ['identities:read'],
          expires_at: new Date(Date.now() + 86400e3).toISOString() },
      });
      assert.equal(key.status, 201, key.text);

      // Not mapped yet: the certificate alone is no identity.
      const me = (cert) => httpsCall(s.port, 'GET', '/api/v1/auth/me', { ...base, ...cert });
      assert.equal((await me(svcCert)).status, 401);

      const fp = new X509Certificate(svcCert.cert).fingerprint256; // AA:BB:... (colons accepted)
      fs.writeFileSync(mapFile, `# billing service\n${fp} ${key.json.id}\n`);
      s.proc.kill('SIGHUP');
      await waitForLog(s, (l) => /certificate reloaded/.test(l.msg ?? ''), '"certificate reloaded"');

      const ok = await me(svcCert);
      assert.equal(ok.status, 200, ok.text);
      assert.equal(ok.json.identity.id, svc.json.id);
      assert.equal(ok.json.token.api_key.id, key.json.id);
      // The key's scope bounds it: identities:read only.
      assert.equal((await httpsCall(s.port, 'GET', '/api/v1/audit/verify', { ...base, ...svcCert })).status, 403);
      assert.equal((await me({})).status, 401, 'no certificate');
      assert.equal((await me(unmapped)).status, 401, 'a certificate of the CA that is not mapped');
      assert.equal((await me(foreign)).status, 401, 'a certificate of another CA');

      // Revoking the key revokes the certificate's access too.
      const del = await httpsCall(s.port, 'DELETE', `/api/v1/api-keys/${key.json.id}`, { ...base, headers: admin });
      assert.ok(del.status === 200 || del.status === 204, del.text);
      assert.equal((await me(svcCert)).status, 401);
      // A bad map line is refused at reload; the previous map stays.
      fs.writeFileSync(mapFile, 'not-a-fingerprint x\n');
      s.proc.kill('SIGHUP');
      const refused = await waitForLog(s, (l) => /not reloaded/.test(l.msg ?? ''), '"not reloaded"');
      assert.match(refused.msg, /line 1: expected/);
      assert.equal(await s.stop(), 0);
    } finally {
      fs.rmSync(clientCa.dir, { recursive: true, force: true });
      fs.rmSync(otherCa.dir, { recursive: true, force: true });
    }
  });

  // scripts/test.sh runs this file once against a PostgreSQL that requires TLS
  // (scripts/pg-cluster.sh start DIR --ssl), whose URL carries sslmode=verify-full.
  const pgUrl = process.env.DCMS_TEST_PG_URL ?? '';
  const pgTls = backend === 'postgres' && /sslmode=verify-full/.test(pgUrl) && /sslrootcert=/.test(pgUrl);
  test('PostgreSQL with sslmode=verify-full: a wrong CA is refused at start with a clear error',
    { skip: pgTls ? false : 'needs DCMS_TEST_BACKEND=postgres and a verify-full DCMS_TEST_PG_URL' }, async () => {
      const wrong = makeCa('not the PostgreSQL CA');
      try {
        const u = new URL(pgUrl);
        u.searchParams.set('sslrootcert', wrong.ca);
        await assert.rejects(startServer({ env: { DCMS_DATABASE_URL: u.toString() } }),
          /its TLS certificate was not accepted \(check sslrootcert/);
        // And the right one works (every other test of this run connects the same way).
        const s = await startServer();
        assert.equal((await fetch(`${s.url}/readyz`)).status, 200);
        await s.stop();
      } finally {
        fs.rmSync(wrong.dir, { recursive: true, force: true });
      }
    });
});
