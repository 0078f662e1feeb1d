// Faults: dcmsd killed with -9 in the middle of a write burst, a full disk,
// SIGTERM with a slow request in flight, and (PostgreSQL backend) the
// database restarted under load. Each case is bounded (the file
// takes well under a minute). Runs on the backend DCMS_TEST_BACKEND names,
// like the API tests; the disk-full case needs root (to mount a small tmpfs)
// and the SQLite backend (PostgreSQL's disk is not ours to fill), and says so
// when it skips.
//   DCMS_BIN=build/dcmsd node --test --test-concurrency=1 tests/faults/

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

import { adminEnv, adminToken } from '../api/lib/iam.mjs';
import { checkResponse } from '../api/lib/openapi.mjs';
import { backend, startServer } from '../api/lib/server.mjs';
import { call } from './lib.mjs';


/** Lines of `s`'s log whose msg matches `re`, once at least one is there (the pipe lags the answers). */
async function logLines(s, re, waitMs = 3000) {
  const t0 = Date.now();
  let hits = [];
  while (Date.now() - t0 < waitMs) {
    hits = s.logs().filter((l) => re.test(l.msg ?? ''));
    if (hits.length) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  await new Promise((r) => setTimeout(r, 50)); // and whatever followed it
  return s.logs().filter((l) => re.test(l.msg ?? ''));
}

let policyN = 0;
const policy = (tag) => ({
  name: `fault-${tag}-${process.pid}-${policyN++}`,
  effect: 'allow',
  actions: ['identities:read'],
  resources: ['identity:*'],
  attach: { roles: ['auditor'] },
});

/** The DCMS_DATABASE_URL that reopens `s`'s store (its data directory for SQLite). */
function sameStoreEnv(s) {
  if (s.backend !== 'postgres') return { DCMS_DATA_DIR: s.dataDir };
  const u = new URL(process.env.DCMS_TEST_PG_URL);
  u.pathname = `/${s.database}`;
  return { DCMS_DATA_DIR: s.dataDir, DCMS_DATABASE_URL: u.toString() };
}

test('kill -9 during a write burst: every acknowledged write is there and the audit chain verifies', async () => {
  const s = await startServer({ env: adminEnv });
  const token = await adminToken(s);
  const acked = [];
  let stop = false;
  const writer = async (w) => {
    while (!stop) {
      try {
        const r = await call(s, 'POST', '/api/v1/policies', { token, json: policy(`k${w}`) });
        if (r.status === 201) acked.push(r.json.id);
      } catch {
        return; // the server is gone
      }
    }
  };
  const writers = [0, 1, 2, 3].map(writer);
  const t0 = Date.now();
  while (acked.length < 40 && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 20));
  s.proc.kill('SIGKILL'); // in the middle of the burst: requests are in flight
  await s.exited;
  stop = true;
  await Promise.all(writers);
  assert.ok(acked.length >= 10, `only ${acked.length} writes were acknowledged before the kill`);

  // The same store again: writes were acknowledged only after their commit.
  const s2 = await startServer({ env: { ...adminEnv, ...sameStoreEnv(s) } });
  try {
    const token2 = await adminToken(s2);
    for (const id of acked) {
      const r = await call(s2, 'GET', `/api/v1/policies/${id}`, { token: token2 });
      assert.equal(r.status, 200, `acknowledged policy ${id} is missing: ${r.text}`);
    }
    const v = await call(s2, 'GET', '/api/v1/audit/verify', { token: token2 });
    assert.equal(v.status, 200, v.text);
    assert.equal(v.json.ok, true, v.text);
  } finally {
    await s2.stop();
    await s.stop();
  }
});

const rootReason = process.getuid?.() !== 0
  ? 'needs root to mount a small tmpfs (run the fault suite as root to cover it)'
  : backend !== 'sqlite'
    ? 'the PostgreSQL data directory is not on a disk this test may fill (SQLite only)'
    : false;

test('disk full: 507 insufficient_storage with Retry-After, /readyz read_only, one log line, recovery',
  { skip: rootReason }, async () => {
    const mnt = fs.mkdtempSync(path.join(os.tmpdir(), 'dcms-full-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=48m,mode=0700', 'tmpfs', mnt]);
    let s;
    try {
      s = await startServer({ env: { ...adminEnv, DCMS_DATA_DIR: mnt } });
      const token = await adminToken(s);
      assert.equal((await call(s, 'POST', '/api/v1/policies', { token, json: policy('pre') })).status, 201);

      // Fill the file system to the last block.
      const filler = path.join(mnt, 'filler');
      const fd = fs.openSync(filler, 'w');
      const chunk = Buffer.alloc(1 << 20);
      try {
        for (let i = 0; i < 64; i++) fs.writeSync(fd, chunk);
      } catch (e) {
        assert.equal(e.code, 'ENOSPC');
      }
      try {
        for (;;) fs.writeSync(fd, chunk.subarray(0, 4096));
      } catch (e) {
        assert.equal(e.code, 'ENOSPC');
      }
      fs.closeSync(fd);

      // Writes fail for want of space (SQLite may still fit a few in its WAL first).
      let full;
      for (let i = 0; i < 200 && !full; i++) {
        const r = await call(s, 'POST', '/api/v1/policies', { token, json: policy('full') });
        if (r.status !== 201) full = r;
      }
      assert.ok(full, 'no write failed on a full disk');
      assert.equal(full.status, 507, full.text);
      assert.equal(full.json.error.code, 'insufficient_storage');
      assert.equal(full.headers.get('retry-after'), '5');
      checkResponse('POST', '/api/v1/policies', full, full.json); // documented in api/openapi.yaml
      for (let i = 0; i < 3; i++) {
        const r = await call(s, 'POST', '/api/v1/policies', { token, json: policy('full') });
        assert.equal(r.status, 507);
      }
      const ready = await call(s, 'GET', '/readyz');
      assert.equal(ready.status, 503, ready.text);
      assert.equal(ready.json.store, 'read_only');
      assert.equal(ready.headers.get('retry-after'), '5');
      // Reads still work.
      assert.equal((await call(s, 'GET', '/api/v1/policies', { token })).status, 200);
      // One line for the episode, none per request.
      assert.equal((await logLines(s, /database disk is full/)).length, 1,
        JSON.stringify(s.logs().filter((l) => l.level !== 'info').slice(-10)));
      const logs = s.logs();
      assert.equal(logs.filter((l) => /insufficient_storage|failed: .*full/.test(l.msg ?? '')).length, 0,
        'no line per request');
      // Nor any other warning: neither rollbacks of what SQLite already ended nor sequencer passes.
      const loud = logs.filter((l) => l.level === 'warn' || l.level === 'error');
      assert.equal(loud.length, 1, JSON.stringify(loud.slice(0, 5)));

      // Space comes back: dcmsd recovers by itself, no restart.
      fs.rmSync(filler);
      const t0 = Date.now();
      let again;
      while (Date.now() - t0 < 10000) {
        again = await call(s, 'GET', '/readyz');
        if (again.status === 200) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      assert.equal(again.status, 200, `still not ready ${Date.now() - t0} ms after space came back`);
      assert.equal((await call(s, 'POST', '/api/v1/policies', { token, json: policy('post') })).status, 201);
      assert.equal((await logLines(s, /writes succeed again/)).length, 1,
        JSON.stringify(s.logs().filter((l) => l.sub === 'store')));
      const v = await call(s, 'GET', '/api/v1/audit/verify', { token });
      assert.equal(v.json.ok, true, v.text);
    } finally {
      if (s) await s.stop();
      execFileSync('umount', [mnt]);
      fs.rmSync(mnt, { recursive: true, force: true });
    }
  });

test('SIGTERM with a slow request in flight: dcmsd exits within DCMS_SHUTDOWN_TIMEOUT_MS', async () => {
  const timeoutMs = 600;
  const s = await startServer({ env: { DCMS_SHUTDOWN_TIMEOUT_MS: String(timeoutMs) } });
  // A request whose body never finishes arriving: in flight until dcmsd gives up on it.
  const sock = net.connect(s.port, '127.0.0.1');
  await new Promise((r, j) => sock.once('connect', r).once('error', j));
  const closed = new Promise((r) => sock.once('close', r));
  sock.on('error', () => {});
  let answer = '';
  sock.on('data', (d) => { answer += d; });
  sock.write('POST /api/v1/canonicalize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
    'Content-Length: 100\r\n\r\n{"a":');
  await new Promise((r) => setTimeout(r, 200)); // the head has been read: the request is in flight
  const start = Date.now();
  const code = await s.stop('SIGTERM', 10000);
  const took = Date.now() - start;
  assert.equal(code, 0);
  assert.ok(took < timeoutMs + 1500, `dcmsd took ${took} ms to exit (DCMS_SHUTDOWN_TIMEOUT_MS=${timeoutMs})`);
  assert.ok(took >= timeoutMs - 50, `dcmsd did not wait for the request (${took} ms)`);
  await Promise.race([closed, new Promise((r) => setTimeout(r, 2000))]);
  assert.equal(sock.destroyed || sock.readableEnded, true, 'the slow connection was closed');
  assert.ok(!/^HTTP\/1\.1 2/.test(answer), `an unfinished request was not run: ${answer}`);
  sock.destroy();
});

test('PostgreSQL restarted under load: 503 during the outage, no hang, recovery within 2 s',
  { skip: backend !== 'postgres' ? 'PostgreSQL backend only (DCMS_TEST_BACKEND=postgres)' : false }, async () => {
    // A cluster of our own: the shared one must not be restarted.
    const script = path.join(path.dirname(new URL(import.meta.url).pathname), '../../scripts/pg-cluster.sh');
    const dir = fs.mkdtempSync('/tmp/dcms-pgfault-');
    const url = execFileSync(script, ['start', dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60000 }).trim();
    let s;
    try {
      s = await startServer({ env: { ...adminEnv, DCMS_DATABASE_URL: url, DCMS_STORE_TIMEOUT_MS: '2000' } });
      const token = await adminToken(s);
      const seen = { ok: 0, unavailable: 0, other: [] };
      let slowest = 0;
      let stop = false;
      const worker = async (w) => {
        while (!stop) {
          const t0 = Date.now();
          const r = w % 2
            ? await call(s, 'GET', '/api/v1/policies', { token })
            : await call(s, 'POST', '/api/v1/policies', { token, json: policy(`pg${w}`) });
          slowest = Math.max(slowest, Date.now() - t0);
          if (r.status === 200 || r.status === 201) seen.ok++;
          else if (r.status === 503) seen.unavailable++;
          else seen.other.push(`${r.status} ${r.text.slice(0, 200)}`);
          await new Promise((res) => setTimeout(res, 20));
        }
      };
      const workers = [0, 1, 2].map(worker);
      await new Promise((r) => setTimeout(r, 500));
      // Fast shutdown and start again (pg_ctl restart -m fast): in-flight sessions are cut.
      execFileSync(script, ['restart', dir], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 60000 });
      const back = Date.now();
      // Within 2 s of PostgreSQL accepting again, requests succeed.
      let recovered = null;
      while (Date.now() - back < 5000) {
        const r = await call(s, 'POST', '/api/v1/policies', { token, json: policy('pgback') });
        if (r.status === 201) { recovered = Date.now() - back; break; }
        await new Promise((res) => setTimeout(res, 50));
      }
      await new Promise((r) => setTimeout(r, 300));
      stop = true;
      await Promise.all(workers);
      assert.ok(recovered !== null && recovered <= 2000, `writes succeeded again after ${recovered} ms`);
      assert.deepEqual(seen.other, [], 'only 2xx and 503 during the outage');
      assert.ok(slowest < 8000, `a request took ${slowest} ms (a hang)`);
      assert.ok(seen.ok > 0);
      assert.equal((await call(s, 'GET', '/readyz')).status, 200);
    } finally {
      if (s) await s.stop();
      execFileSync(script, ['stop', dir], { stdio: 'ignore', timeout: 60000 });
    }
  });
