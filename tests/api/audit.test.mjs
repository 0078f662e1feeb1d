// The audit API: listing events with filters and a cursor, verifying the
// chain, exporting it and verifying the export offline with
// `dcmsd audit verify`, the public key, auditing of refused requests (and
// their rate limit), and two dcmsd processes appending to one PostgreSQL
// chain. Every JSON response is checked against api/openapi.yaml.
//
// The audit routes are read with real credentials: every server starts with
// the bootstrap admin (adminEnv), which creates an auditor through the API;
// the auditor's token reads the log. Refusals are requests without a token.
// Refusals are audited just after the answer is sent, so several tests send
// them to one server, stop it, and read what it recorded through a second
// server on the same data (the same DCMS_DATA_DIR for SQLite, the same
// DCMS_DATABASE_URL for PostgreSQL), which these tests create and remove
// themselves. The bootstrap, the logins and the auditor's creation are
// audited too, so the expected histories include them.
//
// Runs on the backend chosen by DCMS_TEST_BACKEND (sqlite by default; see
// lib/server.mjs for postgres).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { checkResponse } from './lib/openapi.mjs';
import { client } from './lib/http.mjs';
import { backend, dcmsBin, psqlAdmin, startServer } from './lib/server.mjs';
import { adminEnv, adminToken, bearer, login } from './lib/iam.mjs';

const AUDITOR_PASSWORD = 'auditor test passphrase 42';
const GENESIS = '0'.repeat(64);
const WAIT_MS = 10000;
const CLI_TIMEOUT_MS = 60000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- shared data: one database (and key) that several servers in turn open ----

const sharedDirs = [];
const sharedDbs = [];

/** A data directory (SQLite database and audit key) and, on PostgreSQL, a database. */
function sharedData() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcms-audit-api-'));
  sharedDirs.push(dir);
  const env = { DCMS_DATA_DIR: dir };
  if (backend === 'postgres') {
    const name = `dcms_ta_${randomBytes(6).toString('hex')}`;
    psqlAdmin(`CREATE DATABASE ${name}`);
    sharedDbs.push(name);
    const u = new URL(process.env.DCMS_TEST_PG_URL);
    u.pathname = `/${name}`;
    env.DCMS_DATABASE_URL = u.toString();
  }
  return env;
}

after(() => {
  for (const name of sharedDbs.splice(0)) {
    try {
      psqlAdmin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    } catch (e) {
      process.stderr.write(`# warning: cannot drop ${name}: ${e.stderr?.toString() || e.message}\n`);
    }
  }
  for (const dir of sharedDirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

// ---- helpers ----

/** The subject (identity id) of an access token. */
const subjectOf = (token) => JSON.parse(Buffer.from(token.split('.')[1], 'base64url')).sub;

/**
 * Reading as an auditor of `srv` (started with adminEnv): the bootstrap admin logs in and
 * creates an auditor, which logs in. Audited in this order: auth.login (admin),
 * identity.create (by the admin), auth.login (auditor). Resolves {c, adminId, auditorId}:
 * c is a client that sends the auditor's token with every request.
 */
async function asAuditor(srv) {
  const admin = await adminToken(srv);
  const email = `auditor-${randomBytes(4).toString('hex')}@dcms.test`;
  const r = await client(srv).call('POST', '/api/v1/identities', {
    headers: bearer(admin),
    json: { name: 'Auditor', email, password: AUDITOR_PASSWORD, roles: ['auditor'] },
  });
  assert.equal(r.status, 201, r.text);
  assert.equal(r.json.status, 'active', 'created by an admin: active at once');
  const token = (await login(srv, email, AUDITOR_PASSWORD)).access_token;
  const c = client(srv);
  const call = (method, p, opts = {}) => c.call(method, p, { ...opts, headers: { ...bearer(token), ...opts.headers } });
  return { c: { ...c, call }, adminId: subjectOf(admin), auditorId: r.json.id };
}

/** The events asAuditor() records, as [action, actor]. */
const readerSetup = (adminId, auditorId) =>
  [['auth.login', adminId], ['identity.create', adminId], ['auth.login', auditorId]];

/** What a first start with adminEnv records, as [action, actor]. */
const FIRST_START = [['system.start', 'system'], ['keys.kek_create', 'system'], ['iam.key_create', 'system'],
  ['identity.bootstrap_admin', 'system']];

/** call() plus the openapi.yaml check of every response (bodies of JSON responses included). */
async function req(c, p, { headers, template } = {}) {
  const r = await c.call('GET', p, { headers });
  checkResponse('GET', template ?? p, r.res, r.text);
  return r;
}

function assertError(r, status, code) {
  assert.equal(r.status, status, `want ${status}, got ${r.status}: ${r.text}`);
  assert.equal(r.json?.error?.code, code, `want ${code}: ${r.text}`);
  assert.equal(r.json.request_id, r.headers.get('x-request-id'));
}

/** Every event matching `query` (a query string without limit/cursor), newest first. */
async function listAll(c, query = '', limit = 500) {
  const out = [];
  let cursor = null;
  for (let page = 0; page < 1000; page++) {
    const q = new URLSearchParams(query);
    q.set('limit', String(limit));
    if (cursor !== null) q.set('cursor', cursor);
    const r = await req(c, `/api/v1/audit/events?${q}`, { template: '/api/v1/audit/events' });
    assert.equal(r.status, 200, r.text);
    assert.ok(r.json.events.length <= limit, `a page holds at most limit=${limit} events`);
    out.push(...r.json.events);
    cursor = r.json.next_cursor;
    if (cursor === null) return out;
  }
  assert.fail('pagination did not end after 1000 pages');
}

async function waitFor(what, fn, timeoutMs = WAIT_MS) {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - t0 > timeoutMs) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

/** RFC 8785 for what events hold (strings, integers, booleans, null): JSON.stringify and UTF-16 key order. */
function jcs(v) {
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(jcs).join(',')}]`;
  return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${jcs(v[k])}`).join(',')}}`;
}

const sha256 = (s) => createHash('sha256').update(s, 'utf8').digest('hex');

function eventHash(ev) {
  const { hash, ...body } = ev;
  return sha256(jcs(body));
}

/** The instant of an RFC 3339 UTC time with microseconds, written with a +02:00 offset. */
function withOffset(t) {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{6})Z$/.exec(t);
  assert.ok(m, `event time ${t} is RFC 3339 UTC with microseconds`);
  const shifted = new Date(Date.parse(`${m[1]}Z`) + 2 * 3600 * 1000).toISOString();
  return `${shifted.slice(0, 19)}.${m[2]}+02:00`;
}

/** Runs `dcmsd audit verify FILE --public-key KEY`; returns {status, report, stdout, stderr}. */
function cliVerify(file, key) {
  const r = spawnSync(dcmsBin, ['audit', 'verify', file, '--public-key', key], {
    encoding: 'utf8',
    timeout: CLI_TIMEOUT_MS,
  });
  assert.equal(r.error, undefined, `cannot run ${dcmsBin}: ${r.error?.message}`);
  let report = null;
  try {
    report = JSON.parse(r.stdout);
  } catch {
    // asserted by the callers that want a report
  }
  return { status: r.status, signal: r.signal, report, stdout: r.stdout, stderr: r.stderr };
}

function assertCli(r, status, label) {
  assert.equal(r.signal, null, `${label}: the verifier died of ${r.signal}; stderr:\n${r.stderr}`);
  assert.equal(r.status, status, `${label}: exit ${r.status}, want ${status}; stdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
  assert.ok(r.report, `${label}: stdout is not a JSON report: ${r.stdout}`);
}

function parseExport(text) {
  const lines = text.split('\n').filter((l) => l !== '');
  return lines.map((l) => JSON.parse(l));
}

function writeTemp(name, lines) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcms-audit-export-'));
  sharedDirs.push(dir);
  const file = path.join(dir, name);
  fs.writeFileSync(file, lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n') + '\n');
  return file;
}

/** A base64 Ed25519 public key no server has. */
function strangerKey() {
  const { publicKey } = generateKeyPairSync('ed25519');
  return publicKey.export({ format: 'der', type: 'spki' }).subarray(-32).toString('base64');
}

/** Sends `total` GETs to `p` with at most `inflight` at once; returns the status counts. */
async function hammer(c, p, total, inflight) {
  const counts = {};
  let next = 0;
  async function worker() {
    while (next < total) {
      next++;
      const r = await c.call('GET', p);
      counts[r.status] = (counts[r.status] ?? 0) + 1;
      if (r.status === 401) checkResponse('GET', p, r.res, r.text);
    }
  }
  await Promise.all(Array.from({ length: inflight }, worker));
  return counts;
}

// ---- a fresh server ----

describe('audit: a fresh server, read by an auditor', () => {
  let srv;
  let c;
  let expected; // the history, oldest first, as [action, actor]

  before(async () => {
    srv = await startServer({ env: adminEnv });
    const reader = await asAuditor(srv);
    c = reader.c;
    expected = [...FIRST_START, ...readerSetup(reader.adminId, reader.auditorId)];
  });

  after(async () => {
    if (srv) await srv.stop();
  });

  test('the chain starts with system.start by the system', async () => {
    const r = await req(c, '/api/v1/audit/events');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.next_cursor, null);
    // system.start, then what the services record while starting (the first KEK version, the
    // first JWT key, the bootstrap admin), then the admin's login, the auditor's creation and its login.
    assert.deepEqual(r.json.events.map((e) => [e.action, e.actor]).reverse(), expected, r.text);
    assert.deepEqual(r.json.events.map((e) => e.seq), expected.map((_, i) => expected.length - i), 'seq gap-free');
    for (const [i, e] of r.json.events.entries()) {
      assert.equal(e.hash, eventHash(e), `event ${e.seq} hash`);
      assert.equal(e.prev_hash, i + 1 < r.json.events.length ? r.json.events[i + 1].hash : GENESIS,
        `event ${e.seq} prev_hash`);
    }
    const ev = r.json.events.at(-1);
    assert.equal(ev.seq, 1);
    assert.equal(ev.actor, 'system');
    assert.equal(ev.action, 'system.start');
    assert.equal(ev.outcome, 'success');
    assert.equal(ev.prev_hash, GENESIS);
    assert.equal(ev.details.store, backend);
    assert.equal(ev.hash, eventHash(ev), 'hash = SHA-256 of the RFC 8785 form of the other fields');
  });

  test('GET /api/v1/audit/verify: ok', async () => {
    const r = await req(c, '/api/v1/audit/verify');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.ok, true, r.text);
    assert.equal(r.json.events_checked, expected.length);
    assert.equal(r.json.first_bad_seq, null);
    assert.equal(r.json.last_seq, expected.length);
  });

  test('GET /api/v1/audit/public-key: the Ed25519 key that verify uses', async () => {
    const r = await req(c, '/api/v1/audit/public-key');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.algorithm, 'Ed25519');
    const raw = Buffer.from(r.json.public_key, 'base64');
    assert.equal(raw.length, 32);
    assert.equal(r.json.key_id, createHash('sha256').update(raw).digest('hex').slice(0, 16));
    const v = await req(c, '/api/v1/audit/verify');
    assert.equal(v.json.key_id, r.json.key_id);
  });

  test('bad query parameters: 422 validation_failed naming the field', async () => {
    const cases = [
      ['limit=0', 'limit'],
      ['limit=abc', 'limit'],
      ['limit=501', 'limit'],
      ['limit=-1', 'limit'],
      ['outcome=maybe', 'outcome'],
      ['since=yesterday', 'since'],
      ['until=2026-13-01T00:00:00Z', 'until'],
      ['cursor=abc', 'cursor'],
      ['actor=', 'actor'],
    ];
    for (const [q, field] of cases) {
      const r = await req(c, `/api/v1/audit/events?${q}`, { template: '/api/v1/audit/events' });
      assertError(r, 422, 'validation_failed');
      const fields = (r.json.error.details ?? []).map((d) => d.field);
      assert.ok(fields.includes(field), `${q}: details name ${field}: ${r.text}`);
    }
    // Every problem is reported at once.
    const r = await req(c, '/api/v1/audit/events?limit=0&outcome=maybe&since=yesterday',
      { template: '/api/v1/audit/events' });
    assertError(r, 422, 'validation_failed');
    assert.deepEqual(r.json.error.details.map((d) => d.field).sort(), ['limit', 'outcome', 'since']);
    for (const [q, field] of [['from_seq=0', 'from_seq'], ['to_seq=x', 'to_seq'], ['from_seq=5&to_seq=4', 'to_seq']]) {
      const e = await req(c, `/api/v1/audit/export?${q}`, { template: '/api/v1/audit/export' });
      assertError(e, 422, 'validation_failed');
      assert.ok(e.json.error.details.some((d) => d.field === field), `${q}: details name ${field}: ${e.text}`);
    }
  });

  test('a cursor past every event lists from the newest (any 64-bit seq is a cursor)', async () => {
    for (const cursor of [String(expected.length + 1), '2147483648', '9999999999', '9223372036854775807']) {
      const r = await req(c, `/api/v1/audit/events?cursor=${cursor}`, { template: '/api/v1/audit/events' });
      assert.equal(r.status, 200, `cursor=${cursor}: ${r.text}`);
      assert.equal(r.json.events.length, expected.length, `cursor=${cursor}: ${r.text}`);
    }
  });
});

// ---- refusals, filters, pagination and the export, on one recorded history ----

describe('audit: refusals are audited; filters, pages and the export', () => {
  let data;
  let srv;
  let c;
  let all; // every event, newest first
  let expected; // the history, oldest first, as [action, actor]
  const denied = []; // {path, requestId} of the refused requests

  before(async () => {
    data = sharedData();
    const env = { ...data, ...adminEnv, DCMS_AUDIT_CHECKPOINT_EVERY: '2' };
    // Without a token: every audit read is refused, and each refusal is recorded.
    const closed = await startServer({ env });
    const cc = client(closed);
    const paths = ['/api/v1/audit/events', '/api/v1/audit/verify', '/api/v1/audit/export?from_seq=1',
      '/api/v1/audit/events?limit=5', '/api/v1/audit/events'];
    for (const [i, p] of paths.entries()) {
      const requestId = `audit-test-denied-${i}-${randomBytes(4).toString('hex')}`;
      const r = await req(cc, p, { headers: { 'X-Request-Id': requestId }, template: p.split('?')[0] });
      assertError(r, 401, 'unauthenticated');
      assert.equal(r.headers.get('x-request-id'), requestId);
      denied.push({ path: p.split('?')[0], requestId });
    }
    // The public key needs no credentials.
    const pk = await req(cc, '/api/v1/audit/public-key');
    assert.equal(pk.status, 200, pk.text);
    assert.equal(await closed.stop(), 0);

    // The same data, read by an auditor the admin creates.
    srv = await startServer({ env });
    const reader = await asAuditor(srv);
    c = reader.c;
    all = await listAll(c);
    expected = [...FIRST_START, ...denied.map(() => ['request.denied', 'anonymous']), ['system.stop', 'system'],
      ['system.start', 'system'], ...readerSetup(reader.adminId, reader.auditorId)];
  });

  after(async () => {
    if (srv) await srv.stop();
  });

  test('the history: start, the refusals, stop, start, the reader\'s logins', () => {
    assert.deepEqual(all.map((e) => [e.action, e.actor]).reverse(), expected);
    assert.deepEqual(all.map((e) => e.seq), all.map((_, i) => all.length - i), 'seq gap-free, newest first');
    for (const [i, ev] of all.entries()) {
      assert.equal(ev.hash, eventHash(ev), `event ${ev.seq} hash`);
      assert.equal(ev.prev_hash, i + 1 < all.length ? all[i + 1].hash : GENESIS, `event ${ev.seq} prev_hash`);
    }
  });

  test('a 401 is audited: request.denied by anonymous, with route, client ip and request id', () => {
    for (const d of denied) {
      const evs = all.filter((e) => e.request_id === d.requestId);
      assert.equal(evs.length, 1, `one event for ${d.requestId}`);
      const ev = evs[0];
      assert.equal(ev.action, 'request.denied');
      assert.equal(ev.outcome, 'denied');
      assert.equal(ev.actor, 'anonymous');
      assert.equal(ev.resource_type, 'route');
      assert.equal(ev.resource_id, d.path);
      assert.equal(ev.client_ip, '127.0.0.1');
      assert.equal(ev.details.status, 401);
      assert.equal(ev.details.method, 'GET');
      assert.equal(ev.details.code, 'unauthenticated');
    }
    const first = all.find((e) => e.request_id === denied[0].requestId);
    assert.equal(first.resource_id, '/api/v1/audit/events');
  });

  test('filters: actor, action prefix, outcome, resource, since/until', async () => {
    const check = async (query, pred) => {
      const got = await listAll(c, query);
      assert.deepEqual(got.map((e) => e.seq), all.filter(pred).map((e) => e.seq), `filter ${query}`);
      return got;
    };
    assert.equal((await check('actor=system', (e) => e.actor === 'system')).length,
      expected.filter(([, actor]) => actor === 'system').length);
    assert.equal((await check('actor=anonymous', (e) => e.actor === 'anonymous')).length, denied.length);
    assert.equal((await check('actor=nobody', () => false)).length, 0);
    await check('action=system.', (e) => e.action.startsWith('system.'));
    await check('action=system.st', (e) => e.action.startsWith('system.st'));
    await check('action=request.denied', (e) => e.action === 'request.denied');
    await check('action=request.denie', (e) => e.action.startsWith('request.denie'));
    await check('action=%25', () => false); // "%" is a character, not a wildcard
    await check('action=_', () => false);
    await check('outcome=denied', (e) => e.outcome === 'denied');
    await check('outcome=success', (e) => e.outcome === 'success');
    await check('outcome=error', () => false);
    await check('resource_type=route&resource_id=%2Fapi%2Fv1%2Faudit%2Fverify',
      (e) => e.resource_id === '/api/v1/audit/verify');
    await check('actor=anonymous&outcome=success', () => false);

    // since is inclusive, until exclusive; both take any RFC 3339 offset.
    const mid = all[Math.floor(all.length / 2)];
    await check(`since=${encodeURIComponent(mid.time)}`, (e) => e.time >= mid.time);
    await check(`until=${encodeURIComponent(mid.time)}`, (e) => e.time < mid.time);
    await check(`since=${encodeURIComponent(mid.time)}&until=${encodeURIComponent(mid.time)}`, () => false);
    const oldest = all[all.length - 1];
    await check(`since=${encodeURIComponent(oldest.time)}&until=2999-01-01T00:00:00Z`, () => true);
    await check('until=2000-01-01T00:00:00Z', () => false);
    // The same instant written with an offset.
    await check(`since=${encodeURIComponent(withOffset(mid.time))}`, (e) => e.time >= mid.time);
    await check(`until=${encodeURIComponent(withOffset(mid.time))}`, (e) => e.time < mid.time);
  });

  test('limit and cursor: pages newest first, no duplicates, until next_cursor is null', async () => {
    for (const limit of [1, 2, 3, all.length, all.length + 1]) {
      const got = await listAll(c, '', limit);
      assert.deepEqual(got.map((e) => e.seq), all.map((e) => e.seq), `limit=${limit}`);
      assert.equal(new Set(got.map((e) => e.id)).size, got.length, `limit=${limit}: no duplicates`);
    }
    // A filtered walk pages within the filter.
    const got = await listAll(c, 'action=request.', 2);
    assert.deepEqual(got.map((e) => e.seq), all.filter((e) => e.action.startsWith('request.')).map((e) => e.seq));
    // The first page of one: its cursor is its own seq, the next page starts below it.
    const r = await req(c, '/api/v1/audit/events?limit=1', { template: '/api/v1/audit/events' });
    assert.equal(r.json.events[0].seq, all[0].seq);
    assert.equal(r.json.next_cursor, String(all[0].seq));
    const defaults = await req(c, '/api/v1/audit/events');
    assert.equal(defaults.json.events.length, all.length, 'the default limit (50) covers this history');
    assert.equal(defaults.json.next_cursor, null);
  });

  test('verify: ok over the whole history, with checkpoints', async () => {
    const r = await req(c, '/api/v1/audit/verify');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.ok, true, r.text);
    assert.equal(r.json.events_checked, all.length);
    assert.equal(r.json.last_seq, all.length);
    assert.ok(r.json.checkpoints_checked >= Math.floor(all.length / 2), r.text);
  });

  describe('the export, verified offline by dcmsd audit verify', () => {
    let lines;
    let file;
    let key;

    before(async () => {
      const r = await req(c, '/api/v1/audit/export');
      assert.equal(r.status, 200, r.text);
      assert.match(r.headers.get('content-type'), /^application\/x-ndjson/);
      lines = parseExport(r.text);
      file = writeTemp('export.jsonl', lines);
      const pk = await req(c, '/api/v1/audit/public-key');
      key = pk.json.public_key;
    });

    test('JSON Lines: the header, then each event followed by its checkpoint and tree head', () => {
      assert.deepEqual(Object.keys(lines[0]), ['export']);
      const hdr = lines[0].export;
      assert.equal(hdr.format, 'dcms-audit-export/1');
      assert.equal(hdr.from_seq, 1);
      assert.equal(hdr.to_seq, all.length);
      assert.equal(hdr.events, all.length);
      assert.deepEqual(hdr.tree, { size: 0, hashes: [] }, 'the tree before seq 1 is empty');
      let lastSeq = 0;
      let cps = 0;
      let heads = 0;
      for (const l of lines.slice(1)) {
        const [kind] = Object.keys(l);
        assert.ok(['event', 'checkpoint', 'tree_head'].includes(kind), `line ${JSON.stringify(l)}`);
        if (kind === 'tree_head') {
          assert.equal(l.tree_head.tree_size, lastSeq, 'a tree head follows the last event it covers');
          assert.equal(l.tree_head.key_id, hdr.key_id);
          heads++;
        } else if (kind === 'event') {
          assert.equal(l.event.seq, lastSeq + 1);
          lastSeq = l.event.seq;
          assert.deepEqual(l.event, all.find((e) => e.seq === lastSeq), `event ${lastSeq} = the listed one`);
        } else {
          assert.equal(l.checkpoint.seq, lastSeq, 'a checkpoint follows its event');
          assert.equal(l.checkpoint.hash, all.find((e) => e.seq === lastSeq).hash);
          assert.equal(l.checkpoint.key_id, hdr.key_id);
          cps++;
        }
      }
      assert.equal(lastSeq, all.length);
      assert.ok(cps >= 2, `DCMS_AUDIT_CHECKPOINT_EVERY=2 gives checkpoints (${cps})`);
      assert.ok(heads >= 1, 'the sequencer signed tree heads');
    });

    test('the export verifies: exit 0, ok true', () => {
      const r = cliVerify(file, key);
      assertCli(r, 0, 'verify');
      assert.equal(r.report.ok, true, r.stdout);
      assert.equal(r.report.events_checked, all.length);
      assert.ok(r.report.checkpoints_checked >= 2);
      assert.equal(r.report.first_bad_seq, null);
      // The key may also be given as a file holding the public-key endpoint's JSON.
      const keyFile = writeTemp('key.json', [{ algorithm: 'Ed25519', key_id: lines[0].export.key_id, public_key: key }]);
      assertCli(cliVerify(file, keyFile), 0, 'verify with a key file');
    });

    test('a range export verifies on its own', async () => {
      const r = await req(c, '/api/v1/audit/export?from_seq=2&to_seq=5', { template: '/api/v1/audit/export' });
      assert.equal(r.status, 200, r.text);
      const ls = parseExport(r.text);
      // Seq 2 to 5 at least (the server may carry the range on to the next checkpoint, so
      // that a signature covers every exported event).
      const seqs = ls.filter((l) => l.event).map((l) => l.event.seq);
      assert.deepEqual(seqs, seqs.map((_, i) => 2 + i), `contiguous from 2: ${seqs}`);
      assert.ok(seqs.includes(5), `up to 5 at least: ${seqs}`);
      assert.equal(ls[0].export.from_seq, 2);
      assert.equal(ls[0].export.to_seq, seqs[seqs.length - 1]);
      assert.equal(ls[0].export.events, seqs.length);
      const v = cliVerify(writeTemp('range.jsonl', ls), key);
      assertCli(v, 0, 'range verify');
      assert.equal(v.report.ok, true, v.stdout);
      assert.equal(v.report.events_checked, seqs.length);
    });

    test('an edited event: exit 1, first_bad_seq is that event', () => {
      const victim = lines.findIndex((l) => l.event?.action === 'request.denied');
      const seq = lines[victim].event.seq;
      const forged = structuredClone(lines);
      forged[victim].event.details.status = 200;
      const r = cliVerify(writeTemp('edited.jsonl', forged), key);
      assertCli(r, 1, 'edited');
      assert.equal(r.report.ok, false);
      assert.equal(r.report.first_bad_seq, seq, r.stdout);
      assert.match(r.report.reason, /hash/);
    });

    test('a deleted event line: exit 1 at its seq', () => {
      const victim = lines.findIndex((l) => l.event?.seq === 3);
      const forged = lines.filter((_, i) => i !== victim);
      const r = cliVerify(writeTemp('deleted.jsonl', forged), key);
      assertCli(r, 1, 'deleted');
      assert.equal(r.report.first_bad_seq, 3, r.stdout);
    });

    test('a wrong public key: exit 1 at the first signature (checkpoint or tree head)', () => {
      const first = lines.find((l) => l.checkpoint || l.tree_head);
      const firstSeq = first.checkpoint ? first.checkpoint.seq : first.tree_head.tree_size;
      const r = cliVerify(file, strangerKey());
      assertCli(r, 1, 'wrong key');
      assert.equal(r.report.ok, false);
      assert.equal(r.report.first_bad_seq, firstSeq, r.stdout);
      assert.match(r.report.reason, first.checkpoint ? /checkpoint/ : /tree head/);
    });

    test('bad usage or input: exit 2', () => {
      const r1 = spawnSync(dcmsBin, ['audit', 'verify', file], { encoding: 'utf8', timeout: CLI_TIMEOUT_MS });
      assert.equal(r1.status, 2, r1.stderr);
      const r2 = spawnSync(dcmsBin, ['audit', 'verify', file, '--public-key', 'not-a-key'],
        { encoding: 'utf8', timeout: CLI_TIMEOUT_MS });
      assert.equal(r2.status, 2, r2.stderr);
      const r3 = spawnSync(dcmsBin, ['audit', 'verify', '/nonexistent/x.jsonl', '--public-key', key],
        { encoding: 'utf8', timeout: CLI_TIMEOUT_MS });
      assert.equal(r3.status, 2, r3.stderr);
      const r4 = cliVerify(writeTemp('garbage.jsonl', ['not json']), key);
      assertCli(r4, 1, 'garbage');
    });

    // A chain anyone can compute (no key needed) must not pass as verified by the key.
    test('an export no checkpoint signs does not verify (forged from the real one)', () => {
      const events = lines.filter((l) => l.event).map((l) => structuredClone(l.event));
      events[1].details.status = 200; // seq 2: rewrite history...
      for (let i = 1; i < events.length; i++) { // ...and re-chain it consistently
        events[i].prev_hash = events[i - 1].hash;
        events[i].hash = eventHash(events[i]);
      }
      const forged = [lines[0], ...events.map((event) => ({ event }))];
      const r = cliVerify(writeTemp('unsigned.jsonl', forged), strangerKey());
      assert.notEqual(r.report?.ok, true,
        `dcmsd audit verify reports ok for an export that carries no signature at all, with an ` +
        `arbitrary key: ${r.stdout}`);
      assert.equal(r.status, 1, r.stdout);
    });

    test('an export cut short of what its header declares does not verify', () => {
      const hdr = lines[0].export;
      const lastCp = lines.map((l, i) => (l.checkpoint ? i : -1)).filter((i) => i > 0);
      // Cut after the second to last checkpoint: what is left is all signed.
      const cut = lines.slice(0, lastCp[lastCp.length - 2] + 1);
      const left = cut.filter((l) => l.event).length;
      assert.ok(left < hdr.events);
      const r = cliVerify(writeTemp('cut.jsonl', cut), key);
      assert.notEqual(r.report?.ok, true,
        `dcmsd audit verify reports ok for ${left} of the ${hdr.events} events the header declares: ${r.stdout}`);
      assert.equal(r.status, 1, r.stdout);
    });
  });
});

// ---- the refusal rate limit ----

describe('audit: refused requests are rate limited per client', () => {
  test('DCMS_AUDIT_REFUSALS_PER_MINUTE=5: 20 refusals, 5 events', async () => {
    const data = { ...sharedData(), ...adminEnv };
    const closed = await startServer({ env: { ...data, DCMS_AUDIT_REFUSALS_PER_MINUTE: '5' } });
    const counts = await hammer(client(closed), '/api/v1/audit/events', 20, 1);
    assert.deepEqual(counts, { 401: 20 });
    assert.equal(await closed.stop(), 0);

    const srv = await startServer({ env: data });
    try {
      const { c } = await asAuditor(srv);
      const evs = await listAll(c, 'action=request.denied');
      assert.equal(evs.length, 5, `5 of 20 refusals recorded: ${JSON.stringify(evs.map((e) => e.request_id))}`);
      const v = await req(c, '/api/v1/audit/verify');
      assert.equal(v.json.ok, true, v.text);
    } finally {
      await srv.stop();
    }
  });
});

describe('audit: refusals past the limit are summarized, never invisible', () => {
  test('3 per window: 12 refusals over 4 routes give 3 events and one summary naming all 4', async () => {
    const srv = await startServer({
      env: { ...adminEnv, DCMS_AUDIT_REFUSALS_PER_MINUTE: '3', DCMS_AUDIT_REFUSAL_WINDOW_S: '2' },
    });
    try {
      const targets = ['/api/v1/audit/events', '/api/v1/identities', '/api/v1/policies', '/api/v1/contracts'];
      const anon = client(srv);
      for (let i = 0; i < 12; i++) {
        const r = await anon.call('GET', targets[i % targets.length]);
        assert.equal(r.status, 401, r.text);
      }
      await new Promise((r) => setTimeout(r, 2300));
      // The window has ended: the next refusal (from any address) writes its summary.
      assert.equal((await anon.call('GET', '/api/v1/enclaves')).status, 401);
      const { c } = await asAuditor(srv);
      const sums = await listAll(c, 'action=request.refusals_summarized');
      assert.equal(sums.length, 1, JSON.stringify(sums));
      const ev = sums[0];
      assert.equal(ev.resource_type, 'client');
      assert.equal(ev.resource_id, '127.0.0.1');
      assert.equal(ev.client_ip, '127.0.0.1');
      assert.equal(ev.outcome, 'denied');
      assert.equal(ev.details.recorded, 3);
      assert.equal(ev.details.suppressed, 9);
      assert.equal(ev.details.window_s, 2);
      assert.deepEqual([...ev.details.targets].sort(), targets.map((t) => `GET ${t}`).sort());
      assert.equal(ev.details.targets_truncated, false);
      const denied = await listAll(c, 'action=request.denied');
      assert.equal(denied.length, 4, 'the 3 of the first window and the one after it');
      const v = await req(c, '/api/v1/audit/verify');
      assert.equal(v.json.ok, true, v.text);
    } finally {
      await srv.stop();
    }
  });
});

// ---- two dcmsd processes on one PostgreSQL database ----

describe('audit: two dcmsd processes on one PostgreSQL database', () => {
  const skip = backend !== 'postgres' && 'needs DCMS_TEST_BACKEND=postgres';

  test('concurrent refusals on both: one gap-free chain, every 401 recorded', { skip }, async () => {
    const data = sharedData();
    const keyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcms-audit-key-'));
    sharedDirs.push(keyDir);
    const env = {
      ...adminEnv,
      DCMS_DATABASE_URL: data.DCMS_DATABASE_URL,
      DCMS_AUDIT_KEY_FILE: path.join(keyDir, 'audit', 'ed25519.key'),
      DCMS_IAM_KEK_FILE: path.join(keyDir, 'iam', 'kek.key'),
      DCMS_KEYS_FILE: path.join(keyDir, 'keys', 'keyring'),
      DCMS_AUDIT_REFUSALS_PER_MINUTE: '100000',
      DCMS_AUDIT_CHECKPOINT_EVERY: '50',
    };
    // One after the other: the first creates the shared keys and the bootstrap admin.
    const a = await startServer({ env });
    const b = await startServer({ env });
    const [ca, cb] = [client(a), client(b)];
    const [ka, kb] = await Promise.all([
      req(ca, '/api/v1/audit/public-key'), req(cb, '/api/v1/audit/public-key')]);
    assert.equal(ka.json.key_id, kb.json.key_id, 'both processes sign with the shared key');

    const [na, nb] = await Promise.all([
      hammer(ca, '/api/v1/audit/events', 300, 8),
      hammer(cb, '/api/v1/audit/verify', 300, 8),
    ]);
    assert.deepEqual(na, { 401: 300 }, `first process; stderr tail:\n${a.stderr().slice(-3000)}`);
    assert.deepEqual(nb, { 401: 300 }, `second process; stderr tail:\n${b.stderr().slice(-3000)}`);
    const refused = na[401] + nb[401];
    for (const [name, s] of [['first', a], ['second', b]]) {
      const code = await s.stop();
      assert.equal(code, 0, `${name} dcmsd exit status ${code}; stderr tail:\n${s.stderr().slice(-3000)}`);
    }

    const srv = await startServer({ env });
    try {
      const { c } = await asAuditor(srv);
      const v = await req(c, '/api/v1/audit/verify');
      assert.equal(v.status, 200, v.text);
      assert.equal(v.json.ok, true, v.text);
      const all = await listAll(c);
      const tally = {};
      for (const e of all) tally[e.action] = (tally[e.action] ?? 0) + 1;
      const seen = `${all.length} events: ${JSON.stringify(tally)}`;
      assert.equal(v.json.events_checked, all.length, `${v.text}; ${seen}`);
      assert.deepEqual(all.map((e) => e.seq), all.map((_, i) => all.length - i), 'gap-free');
      const deniedEvents = all.filter((e) => e.action === 'request.denied');
      assert.equal(deniedEvents.length, refused, `one request.denied per 401; ${seen}`);
      assert.equal(deniedEvents.filter((e) => e.resource_id === '/api/v1/audit/events').length, 300);
      assert.equal(deniedEvents.filter((e) => e.resource_id === '/api/v1/audit/verify').length, 300);
      assert.equal(new Set(deniedEvents.map((e) => e.request_id)).size, refused, 'distinct request ids');
      // Both processes wrote interleaved: their start/stop and one more start.
      assert.equal(all.filter((e) => e.action === 'system.start').length, 3, seen);
      assert.equal(all.filter((e) => e.action === 'system.stop').length, 2, seen);
      assert.equal(new Set(all.filter((e) => e.action === 'system.start').map((e) => e.details.pid)).size, 3);
      assert.ok(v.json.checkpoints_checked >= Math.floor(all.length / 50), v.text);
    } catch (e) {
      e.message += `\nthird dcmsd stderr tail:\n${srv.stderr().slice(-3000)}`;
      throw e;
    } finally {
      await srv.stop();
    }
  });
});

// ---- edge of the export range ----

describe('audit: export at the end of the seq range', () => {
  test('from_seq = 2^63-1 answers an empty export (no overflow)', async () => {
    const srv = await startServer({ env: adminEnv });
    try {
      const { c } = await asAuditor(srv);
      const r = await req(c, '/api/v1/audit/export?from_seq=9223372036854775807', { template: '/api/v1/audit/export' });
      assert.equal(r.status, 200, r.text);
      const ls = parseExport(r.text);
      assert.equal(ls.length, 1, r.text);
      assert.equal(ls[0].export.events, 0);
      const h = await c.call('GET', '/healthz');
      assert.equal(h.status, 200, 'the server is still up');
    } finally {
      const code = await srv.stop();
      assert.equal(code, 0, `dcmsd exit status ${code}; stderr tail:\n${srv.stderr().slice(-3000)}`);
    }
  });
});
