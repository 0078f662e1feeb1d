// The HTTP layer against hostile clients (issue 13): message framing that a
// proxy could read differently (Content-Length with Transfer-Encoding, two
// Content-Lengths, no Host, unknown codings, encoded separators in the path),
// slow clients holding connections (per-address cap, request-head deadline),
// and routes without a body accepting an empty JSON object.
//
// Runs on the backend chosen by DCMS_TEST_BACKEND (see lib/server.mjs).

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { checkResponse } from './lib/openapi.mjs';
import { client } from './lib/http.mjs';
import { adminEnv, adminToken, bearer } from './lib/iam.mjs';
import { startServer } from './lib/server.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Writes `data` on a fresh connection and collects what comes back until the
 * server closes it or `timeoutMs` passes. Resolves {text, closed, ms}.
 */
function rawExchange(port, data, { timeoutMs = 3000, localAddress } = {}) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const s = net.connect({ port, host: '127.0.0.1', localAddress });
    let text = '';
    let done = false;
    const finish = (closed) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ text, closed, ms: Date.now() - t0 });
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    s.setEncoding('latin1');
    s.on('data', (d) => { text += d; });
    s.on('close', () => finish(true));
    s.on('error', () => {});
    s.write(data);
  });
}

/** Status codes of every response in `text`, in order. */
const statuses = (text) => [...text.matchAll(/HTTP\/1\.[01] (\d{3}) /g)].map((m) => Number(m[1]));

describe('request framing', () => {
  let server;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server?.stop();
  });

  const smuggle = 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n';
  const cases = [
    ['Content-Length with Transfer-Encoding',
     'POST /api/v1/canonicalize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
     'Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n' + smuggle, 400],
    ['two different Content-Length values',
     'POST /api/v1/canonicalize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
     'Content-Length: 2\r\nContent-Length: 40\r\n\r\n{}' + smuggle, 400],
    ['no Host in HTTP/1.1', 'GET /healthz HTTP/1.1\r\n\r\n' + smuggle, 400],
    ['two Host headers', 'GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n' + smuggle, 400],
    ['an unknown transfer coding',
     'POST /api/v1/canonicalize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
     'Transfer-Encoding: gzip\r\n\r\n' + smuggle, 501],
    ['%2f in the path', 'GET /api%2fv1/system HTTP/1.1\r\nHost: x\r\n\r\n' + smuggle, 400],
    ['%2F in the path', 'GET /api/v1%2Fsystem HTTP/1.1\r\nHost: x\r\n\r\n' + smuggle, 400],
    ['%00 in the path', 'GET /healthz%00.json HTTP/1.1\r\nHost: x\r\n\r\n' + smuggle, 400],
    ['%5c in the path', 'GET /api/v1%5csystem HTTP/1.1\r\nHost: x\r\n\r\n' + smuggle, 400],
    ['%2e%2e in the path', 'GET /api/v1/%2e%2e/v1/system HTTP/1.1\r\nHost: x\r\n\r\n' + smuggle, 400],
  ];
  for (const [name, data, want] of cases) {
    test(`${name}: ${want}, the connection closed, nothing after it answered`, async () => {
      const r = await rawExchange(server.port, data);
      assert.deepEqual(statuses(r.text), [want], r.text);
      assert.ok(r.closed, `the connection stayed open: ${r.text}`);
      assert.ok(r.ms < 2000, `took ${r.ms} ms`);
      const body = JSON.parse(r.text.slice(r.text.indexOf('\r\n\r\n') + 4));
      assert.equal(body.error.code, want === 501 ? 'not_implemented' : 'bad_request');
    });
  }

  test('well-framed requests, pipelined or with a repeated equal Content-Length, still work', async () => {
    const r = await rawExchange(server.port,
      'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /api/v1/system HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    assert.deepEqual(statuses(r.text), [200, 200], r.text);
    const same = await rawExchange(server.port,
      'POST /api/v1/canonicalize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
      'Content-Length: 2\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}');
    assert.deepEqual(statuses(same.text), [200], same.text);
  });
});

describe('routes without a body', () => {
  let server;
  let admin;
  before(async () => {
    server = await startServer({ env: adminEnv });
    admin = await adminToken(server);
  });
  after(async () => {
    await server?.stop();
  });

  for (const [label, body] of [['{}', '{}'], ['{ } with whitespace', ' { }\n'], ['no body', undefined]]) {
    test(`POST /api/v1/mfa/totp/enroll accepts ${label}`, async () => {
      const api = client(server);
      const headers = { ...bearer(admin) };
      if (body !== undefined) headers['Content-Type'] = 'application/json';
      const r = await api.call('POST', '/api/v1/mfa/totp/enroll', { headers, body });
      checkResponse('POST', '/api/v1/mfa/totp/enroll', r.res, r.json ?? r.text);
      assert.notEqual(r.status, 413, r.text);
      assert.ok(r.status < 300, `${r.status} ${r.text}`);
    });
  }

  test('a non-empty body is still refused with 413', async () => {
    const api = client(server);
    const r = await api.call('POST', '/api/v1/mfa/totp/enroll', { headers: bearer(admin), json: { a: 1 } });
    checkResponse('POST', '/api/v1/mfa/totp/enroll', r.res, r.json ?? r.text);
    assert.equal(r.status, 413, r.text);
    assert.equal(r.json.error.code, 'payload_too_large');
  });
});

describe('slow clients', () => {
  const PER_IP = 4;
  const HEAD_S = 2;
  let server;
  before(async () => {
    server = await startServer({
      env: {
        DCMS_MAX_CONNECTIONS: String(PER_IP * 2),
        DCMS_MAX_CONNECTIONS_PER_IP: String(PER_IP),
        DCMS_HEADER_TIMEOUT_S: String(HEAD_S),
        DCMS_CONNECTION_TIMEOUT_S: '30',
      },
    });
  });
  after(async () => {
    await server?.stop();
  });

  test('2x the per-address cap of one-byte-per-second clients neither starve others nor stay', async () => {
    const head = 'GET /healthz HTTP/1.1\r\nHost: slow\r\nX-Pad: ' + 'a'.repeat(40) + '\r\n\r\n';
    const slow = [];
    for (let i = 0; i < PER_IP * 2; i++) {
      const s = net.connect({ port: server.port, host: '127.0.0.1' });
      const st = { sock: s, opened: Date.now(), closedAt: null, got: '' };
      s.on('data', (d) => { st.got += d; });
      s.on('close', () => { st.closedAt = Date.now(); });
      s.on('error', () => {});
      slow.push(st);
    }
    let pos = 0;
    const dribble = setInterval(() => {
      for (const st of slow) if (!st.closedAt && pos < head.length) st.sock.write(head[pos]);
      pos++;
    }, 1000);
    try {
      await sleep(1200);
      // The slow clients hold every slot their address may take; a client at another address
      // (all of 127/8 reaches the loopback) is served at once.
      for (let i = 0; i < 3; i++) {
        const t0 = performance.now();
        const r = await rawExchange(server.port, 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
          { localAddress: '127.0.0.2', timeoutMs: 2000 });
        const ms = performance.now() - t0;
        assert.deepEqual(statuses(r.text), [200], r.text);
        assert.ok(ms < 100, `/healthz took ${ms.toFixed(1)} ms next to slow clients`);
      }
      const early = slow.filter((st) => st.closedAt && st.closedAt - st.opened < 1000).length;
      assert.ok(early >= PER_IP, `connections past the per-address cap were not refused (${early} closed early)`);
      // Every slow connection is gone by the head deadline (plus a sweep period), though it
      // kept sending a byte each second and never went idle.
      const deadline = Date.now() + (HEAD_S + 2) * 1000;
      while (slow.some((st) => !st.closedAt) && Date.now() < deadline) await sleep(100);
      const open = slow.filter((st) => !st.closedAt);
      assert.equal(open.length, 0, `${open.length} slow connections still open after ${HEAD_S + 2} s`);
      for (const st of slow) assert.equal(st.got, '', 'a slow client got an answer to a partial head');
    } finally {
      clearInterval(dribble);
      for (const st of slow) st.sock.destroy();
    }
  });

  test('a client that sends its head in time is served, also on a kept-alive connection', async () => {
    const r = await rawExchange(server.port,
      'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    assert.deepEqual(statuses(r.text), [200, 200], r.text);
  });
});
