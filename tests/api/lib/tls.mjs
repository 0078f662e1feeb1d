// Throwaway certificates for the TLS tests, made with the openssl CLI:
// a CA and server certificates for localhost / 127.0.0.1 signed by it.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';

const OPENSSL_TIMEOUT_MS = 20000;

function openssl(args, cwd) {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], timeout: OPENSSL_TIMEOUT_MS });
}

/** A directory with ca.pem/ca.key; remove it with fs.rmSync(dir, {recursive: true}). */
export function makeCa(cn = 'dcms test CA') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcms-tls-'));
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '30', '-subj', `/CN=${cn}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  return { dir, ca: path.join(dir, 'ca.pem'), caPem: fs.readFileSync(path.join(dir, 'ca.pem')) };
}

/**
 * A server certificate `<name>.pem` (leaf then CA: a chain) and key `<name>.key` in ca.dir,
 * for DNS:localhost and IP:127.0.0.1, with the common name `cn`. `keyType` 'ec' or 'rsa'.
 */
export function makeServerCert(ca, name, cn, keyType = 'ec') {
  const dir = ca.dir;
  const keyArgs = keyType === 'rsa'
    ? ['-newkey', 'rsa:2048']
    : ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];
  openssl(['req', ...keyArgs, '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`], dir);
  fs.writeFileSync(path.join(dir, `${name}.ext`),
    'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' +
    'keyUsage=critical,digitalSignature,keyEncipherment\nbasicConstraints=CA:FALSE\n');
  openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
    '-out', `${name}.leaf.pem`, '-days', '30', '-extfile', `${name}.ext`], dir);
  const chain = Buffer.concat([fs.readFileSync(path.join(dir, `${name}.leaf.pem`)), ca.caPem]);
  fs.writeFileSync(path.join(dir, `${name}.pem`), chain);
  fs.chmodSync(path.join(dir, `${name}.key`), 0o600);
  return { cert: path.join(dir, `${name}.pem`), key: path.join(dir, `${name}.key`) };
}

/** A client certificate `<name>.pem` / `<name>.key` (clientAuth) signed by `ca`. */
export function makeClientCert(ca, name, cn) {
  const dir = ca.dir;
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`,
    '-out', `${name}.csr`, '-subj', `/CN=${cn}`], dir);
  fs.writeFileSync(path.join(dir, `${name}.ext`),
    'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\n');
  openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
    '-out', `${name}.pem`, '-days', '30', '-extfile', `${name}.ext`], dir);
  return { cert: fs.readFileSync(path.join(dir, `${name}.pem`)), key: fs.readFileSync(path.join(dir, `${name}.key`)) };
}

/**
 * One HTTPS request with a JSON body (or none); resolves like httpsGet, plus `json`.
 */
export function httpsCall(port, method, pathName, { json, headers = {}, ...opts } = {}, timeoutMs = 15000) {
  return new Promise((resolve, reject) => {
    const body = json === undefined ? null : Buffer.from(JSON.stringify(json));
    const h = { ...headers };
    if (body) {
      h['Content-Type'] = 'application/json';
      h['Content-Length'] = String(body.length);
    }
    const req = https.request({
      host: '127.0.0.1', port, path: pathName, method, servername: 'localhost', agent: false, headers: h, ...opts,
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        let parsed;
        try {
          parsed = JSON.parse(text);
        } catch {
          parsed = undefined;
        }
        resolve({ status: res.statusCode, headers: res.headers, text, json: parsed });
      });
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body ?? undefined);
  });
}

/**
 * One HTTPS GET; resolves {status, headers, body, cn (peer certificate CN), protocol, reused}.
 * `opts` go to https.request (agent, minVersion, maxVersion, ca...); without an agent, a fresh
 * connection with no cached TLS session.
 */
export function httpsGet(port, pathName, opts = {}, timeoutMs = 10000) {
  return new Promise((resolve, reject) => {
    const req = https.request({
      host: '127.0.0.1', port, path: pathName, method: 'GET', servername: 'localhost', agent: false, ...opts,
    }, (res) => {
      const chunks = [];
      const cert = res.socket.getPeerCertificate();
      const protocol = res.socket.getProtocol();
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({
        status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString(),
        cn: cert?.subject?.CN, protocol, reused: req.reusedSocket,
      }));
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}
