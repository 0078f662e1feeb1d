// SMTP over TLS: dcmsd's mail (a self-registration's verification mail)
// goes to a throwaway SMTP server started here, with a throwaway CA made by
// openssl. smtps:// verifies the server's certificate and its name: the
// right CA is accepted and the mail arrives; a wrong CA or a name the
// certificate does not hold is refused with a clear log line and nothing
// is sent. smtp:// requires STARTTLS: accepted over TLS when offered;
// refused (never sent in the clear) when the server does not offer it or
// the upgrade's handshake fails. Runs on the backend DCMS_TEST_BACKEND names.
//   DCMS_BIN=build/dcmsd node --test --test-concurrency=1 tests/api/smtp_tls.test.mjs

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, test } from 'node:test';

import { adminEnv } from './lib/iam.mjs';
import { startServer } from './lib/server.mjs';

let dir, pki;

function openssl(args) {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A CA (name.pem / name.key). */
function makeCa(name) {
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '1', '-subj', `/CN=dcms test ${name}`]);
}

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcms-smtp-'));
  makeCa('ca');
  makeCa('otherca');
  // The server's certificate names localhost only (not 127.0.0.1), signed by ca.
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost']);
  fs.writeFileSync(path.join(dir, 'ext.cnf'), 'subjectAltName=DNS:localhost\n');
  openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key',
    '-CAcreateserial', '-out', 'server.pem', '-days', '1', '-extfile', 'ext.cnf']);
  pki = {
    ca: path.join(dir, 'ca.pem'),
    otherCa: path.join(dir, 'otherca.pem'),
    key: fs.readFileSync(path.join(dir, 'server.key')),
    cert: fs.readFileSync(path.join(dir, 'server.pem')),
  };
});

after(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/**
 * A throwaway SMTP server on 127.0.0.1 speaking just enough SMTP for
 * libcurl. mode: 'smtps' (TLS from the first byte), 'starttls' (plain,
 * offers STARTTLS) or 'plain' (plain, does not offer it). Every message
 * received is kept with whether it came over TLS; so is every command.
 */
async function smtpServer(mode) {
  const messages = [];
  const commands = [];
  const sockets = new Set();
  const serve = (sock, secure) => {
    let buf = '';
    let data = null;
    const reply = (line) => sock.write(`${line}\r\n`);
    const onData = (chunk) => {
      buf += chunk.toString('latin1');
      for (let nl; (nl = buf.indexOf('\r\n')) >= 0;) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 2);
        if (data !== null) {
          if (line === '.') {
            messages.push({ secure, text: data.join('\n') });
            data = null;
            reply('250 2.0.0 queued');
          } else {
            data.push(line);
          }
          continue;
        }
        const verb = line.split(' ')[0].toUpperCase();
        commands.push({ secure, verb });
        if (verb === 'EHLO') {
          sock.write('250-localhost\r\n');
          reply(mode === 'starttls' && !secure ? '250 STARTTLS' : '250 8BITMIME');
        } else if (verb === 'HELO' || verb === 'MAIL' || verb === 'RCPT' || verb === 'RSET' || verb === 'NOOP') {
          reply('250 2.0.0 ok');
        } else if (verb === 'DATA') {
          data = [];
          reply('354 go ahead');
        } else if (verb === 'QUIT') {
          reply('221 2.0.0 bye');
          sock.end();
        } else if (verb === 'STARTTLS' && mode === 'starttls' && !secure) {
          sock.removeListener('data', onData);
          reply('220 2.0.0 ready to start TLS');
          const up = new tls.TLSSocket(sock, { isServer: true, key: pki.key, cert: pki.cert });
          up.on('error', () => sock.destroy());
          serve(up, true);
          return;
        } else {
          reply('502 5.5.1 not implemented');
        }
      }
    };
    sock.on('data', onData);
    if (!(sock instanceof tls.TLSSocket) || mode === 'smtps') reply('220 localhost ESMTP dcms-test');
  };
  const onConn = (sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => {});
    serve(sock, mode === 'smtps');
  };
  const srv = mode === 'smtps'
    ? tls.createServer({ key: pki.key, cert: pki.cert }, onConn)
    : net.createServer(onConn);
  srv.on('tlsClientError', () => {});
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return {
    port: srv.address().port,
    messages,
    commands,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((r) => srv.close(r));
    },
  };
}

let n = 0;
/** Registers a new address, which sends its verification mail at once; returns the address. */
async function register(s) {
  const email = `smtp-${process.pid}-${++n}@example.com`;
  const res = await fetch(`${s.url}/api/v1/identities`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ name: `Mail ${n}`, email, password: 'correct horse battery staple' }),
    signal: AbortSignal.timeout(30000),
  });
  const body = await res.text();
  assert.ok(res.status >= 200 && res.status < 300, `registration: ${res.status} ${body}`);
  return email;
}

/** Log lines saying the outbox could not send, once at least one is there. */
async function mailFailures(s, waitMs = 3000) {
  const t0 = Date.now();
  let hits = [];
  while (Date.now() - t0 < waitMs) {
    hits = s.logs().filter((l) => /^outbox .*: mail not sent: /.test(l.msg ?? ''));
    if (hits.length) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  return hits;
}

async function withMail(mode, url, extraEnv, fn) {
  const smtp = await smtpServer(mode);
  const s = await startServer({
    env: {
      ...adminEnv,
      DCMS_SMTP_URL: url(smtp.port),
      DCMS_SMTP_FROM: 'dcms@example.com',
      DCMS_REGISTRATIONS_PER_HOUR: '1000',
      ...extraEnv,
    },
  });
  try {
    await fn(s, smtp);
  } finally {
    await s.stop();
    await smtp.close();
  }
}

test('smtps with the right CA: the mail arrives over TLS', async () => {
  await withMail('smtps', (p) => `smtps://localhost:${p}`, { DCMS_SMTP_CA_FILE: pki.ca }, async (s, smtp) => {
    const to = await register(s);
    assert.equal(smtp.messages.length, 1, 'one mail received');
    assert.equal(smtp.messages[0].secure, true);
    assert.match(smtp.messages[0].text, new RegExp(`^To: <${to}>$`, 'm'));
    assert.match(smtp.messages[0].text, /^Subject: Confirm your e-mail address$/m);
    assert.deepEqual(await mailFailures(s, 200), []);
  });
});

test('smtps with a wrong CA: refused, logged, nothing sent', async () => {
  await withMail('smtps', (p) => `smtps://localhost:${p}`, { DCMS_SMTP_CA_FILE: pki.otherCa }, async (s, smtp) => {
    await register(s);
    const f = await mailFailures(s);
    console.log(`# logged: ${f[0]?.msg}`);
    assert.equal(f.length, 1, JSON.stringify(s.logs().slice(-5)));
    assert.match(f[0].msg, /certificate/i);
    assert.equal(f[0].level, 'warn');
    assert.deepEqual(smtp.messages, []);
    assert.ok(!smtp.commands.some((c) => c.verb === 'MAIL'), 'a command went to an unverified server');
  });
});

test('smtps to a name the certificate does not hold: refused, nothing sent', async () => {
  await withMail('smtps', (p) => `smtps://127.0.0.1:${p}`, { DCMS_SMTP_CA_FILE: pki.ca }, async (s, smtp) => {
    await register(s);
    const f = await mailFailures(s);
    console.log(`# logged: ${f[0]?.msg}`);
    assert.equal(f.length, 1);
    assert.match(f[0].msg, /certificate|host ?name|subject/i);
    assert.deepEqual(smtp.messages, []);
  });
});

test('smtp:// with STARTTLS offered: upgraded, verified, the mail arrives over TLS', async () => {
  await withMail('starttls', (p) => `smtp://localhost:${p}`, { DCMS_SMTP_CA_FILE: pki.ca }, async (s, smtp) => {
    const to = await register(s);
    assert.equal(smtp.messages.length, 1);
    assert.equal(smtp.messages[0].secure, true);
    assert.match(smtp.messages[0].text, new RegExp(`^To: <${to}>$`, 'm'));
    assert.ok(smtp.commands.some((c) => c.verb === 'STARTTLS'));
    assert.ok(smtp.commands.filter((c) => !c.secure).every((c) => ['EHLO', 'STARTTLS'].includes(c.verb)),
      'only EHLO and STARTTLS before TLS');
  });
});

test('smtp:// when the server does not offer STARTTLS: refused, never sent in the clear', async () => {
  await withMail('plain', (p) => `smtp://localhost:${p}`, { DCMS_SMTP_CA_FILE: pki.ca }, async (s, smtp) => {
    await register(s);
    const f = await mailFailures(s);
    console.log(`# logged: ${f[0]?.msg}`);
    assert.equal(f.length, 1);
    assert.match(f[0].msg, /SSL|TLS|STARTTLS/);
    assert.deepEqual(smtp.messages, []);
    assert.ok(!smtp.commands.some((c) => c.verb === 'MAIL'), 'the mail started in plaintext');
  });
});

test('smtp:// when the STARTTLS handshake fails (wrong CA): refused, never sent in the clear', async () => {
  await withMail('starttls', (p) => `smtp://localhost:${p}`, { DCMS_SMTP_CA_FILE: pki.otherCa }, async (s, smtp) => {
    await register(s);
    const f = await mailFailures(s);
    console.log(`# logged: ${f[0]?.msg}`);
    assert.equal(f.length, 1);
    assert.match(f[0].msg, /certificate/i);
    assert.deepEqual(smtp.messages, []);
    assert.ok(!smtp.commands.some((c) => c.verb === 'MAIL'));
  });
});

test('DCMS_SMTP_STARTTLS=false: plaintext to a relay that offers no TLS', async () => {
  await withMail('plain', (p) => `smtp://localhost:${p}`, { DCMS_SMTP_STARTTLS: 'false' }, async (s, smtp) => {
    await register(s);
    assert.equal(smtp.messages.length, 1);
    assert.equal(smtp.messages[0].secure, false);
  });
});
