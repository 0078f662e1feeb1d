// The audit log as an RFC 9162 Merkle tree: the signed tree head, inclusion
// and consistency proofs (with their validation errors), the pending event
// resource, receipts checked offline by `dcmsd audit verify-receipt` against
// a pinned key, an event altered in the store caught by /audit/verify at that
// event, and, at the end of the run, the independent verifier
// (tests/audit-log-verifier.mjs, no dcms code) over every event and every
// pair of successive tree heads. Every JSON response is checked against
// api/openapi.yaml. Runs on the backend chosen by DCMS_TEST_BACKEND.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { checkResponse } from './lib/openapi.mjs';
import { client } from './lib/http.mjs';
import { backend, dcmsBin, startServer } from './lib/server.mjs';
import { adminEnv, adminToken, bearer } from './lib/iam.mjs';
import { verifyLog } from '../audit-log-verifier.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

describe('audit: the Merkle tree, proofs and receipts', () => {
  let srv;
  let c;
  let token;
  let publicKey;
  let tmp;
  const heads = [];

  async function get(p, template) {
    const r = await c.call('GET', p, { headers: bearer(token) });
    checkResponse('GET', template ?? p.split('?')[0], r.res, r.text);
    return r;
  }

  async function write(n) {
    for (let i = 0; i < n; i++) {
      const r = await c.call('POST', '/api/v1/identities', {
        headers: bearer(token),
        json: { name: `Merkle ${i}`, email: `m-${randomBytes(4).toString('hex')}@dcms.test`,
          password: 'merkle test passphrase 42', roles: ['auditor'] },
      });
      assert.equal(r.status, 201, r.text);
    }
  }

  /** Waits for the sequencer (100 ms at most by default) and records the newest head. */
  async function head() {
    await get('/api/v1/audit/events?limit=1', '/api/v1/audit/events'); // syncs
    const r = await get('/api/v1/audit/tree-head');
    assert.equal(r.status, 200, r.text);
    if (!heads.length || heads.at(-1).tree_size !== r.json.tree_size) heads.push(r.json);
    return r.json;
  }

  before(async () => {
    srv = await startServer({ env: adminEnv });
    c = client(srv);
    token = await adminToken(srv);
    publicKey = (await c.call('GET', '/api/v1/audit/public-key')).json.public_key;
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dcms-merkle-'));
  });

  after(async () => {
    if (srv) await srv.stop();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('tree heads grow with the log, each signed over its size and root', async () => {
    const h1 = await head();
    assert.ok(h1.tree_size >= 4, JSON.stringify(h1));
    await write(3);
    const h2 = await head();
    assert.ok(h2.tree_size >= h1.tree_size + 3, `${h1.tree_size} -> ${h2.tree_size}`);
    await write(6);
    await head();
  });

  test('a new event is pending, then sequenced within the delay, with a receipt', async () => {
    const r = await c.call('POST', '/api/v1/identities', {
      headers: bearer(token),
      json: { name: 'Pending', email: `p-${randomBytes(4).toString('hex')}@dcms.test`,
        password: 'merkle test passphrase 42', roles: ['auditor'] },
    });
    assert.equal(r.status, 201, r.text);
    // Find the event by its resource (the list syncs, so it is sequenced by then).
    const list = await get(`/api/v1/audit/events?resource_id=${r.json.id}&action=identity.create`,
      '/api/v1/audit/events');
    assert.equal(list.json.events.length, 1, list.text);
    const id = list.json.events[0].id;
    const ev = await get(`/api/v1/audit/events/${id}`, '/api/v1/audit/events/{id}');
    assert.equal(ev.status, 200, ev.text);
    assert.equal(ev.json.status, 'sequenced');
    assert.equal(ev.json.seq, list.json.events[0].seq);
    const rc = await get(`/api/v1/audit/events/${id}/receipt`, '/api/v1/audit/events/{id}/receipt');
    assert.equal(rc.status, 200, rc.text);
    assert.equal(rc.json.event.seq, ev.json.seq);
    assert.equal(rc.json.inclusion.leaf_index, ev.json.seq - 1);

    const file = path.join(tmp, 'receipt.json');
    fs.writeFileSync(file, rc.text);
    const keyFile = path.join(tmp, 'key.txt');
    fs.writeFileSync(keyFile, publicKey);
    const ok = spawnSync(dcmsBin, ['audit', 'verify-receipt', file, '--public-key', keyFile], { encoding: 'utf8' });
    assert.equal(ok.status, 0, ok.stdout + ok.stderr);
    assert.equal(JSON.parse(ok.stdout).ok, true);

    // Another key: the receipt's own public_key is not trusted.
    const { publicKey: pk } = generateKeyPairSync('ed25519');
    const stranger = pk.export({ format: 'der', type: 'spki' }).subarray(-32).toString('base64');
    const bad = spawnSync(dcmsBin, ['audit', 'verify-receipt', file, '--public-key', stranger], { encoding: 'utf8' });
    assert.equal(bad.status, 1, bad.stdout + bad.stderr);
    assert.match(JSON.parse(bad.stdout).reason, /pinned/);

    // An edited event, or a wrong path, fails.
    const edited = JSON.parse(rc.text);
    edited.event.actor = 'someone-else';
    fs.writeFileSync(file, JSON.stringify(edited));
    const e1 = spawnSync(dcmsBin, ['audit', 'verify-receipt', file, '--public-key', publicKey], { encoding: 'utf8' });
    assert.equal(e1.status, 1, e1.stdout);
    assert.match(JSON.parse(e1.stdout).reason, /hash/);
    const moved = JSON.parse(rc.text);
    if (moved.inclusion.audit_path.length) {
      moved.inclusion.audit_path[0] = '0'.repeat(64);
      fs.writeFileSync(file, JSON.stringify(moved));
      const e2 = spawnSync(dcmsBin, ['audit', 'verify-receipt', file, '--public-key', publicKey], { encoding: 'utf8' });
      assert.equal(e2.status, 1, e2.stdout);
      assert.match(JSON.parse(e2.stdout).reason, /inclusion/);
    }

    const unknown = await get('/api/v1/audit/events/00000000-0000-7000-8000-000000000000/receipt',
      '/api/v1/audit/events/{id}/receipt');
    assert.equal(unknown.status, 404, unknown.text);
  });

  test('proof parameters: 422 naming each bad one', async () => {
    const h = await head();
    const cases = [
      ['/api/v1/audit/proof/inclusion', 'seq'],
      ['/api/v1/audit/proof/inclusion?seq=1', 'tree_size'],
      ['/api/v1/audit/proof/inclusion?seq=0&tree_size=1', 'seq'],
      ['/api/v1/audit/proof/inclusion?seq=x&tree_size=1', 'seq'],
      [`/api/v1/audit/proof/inclusion?seq=1&tree_size=${h.tree_size + 1}`, 'tree_size'],
      ['/api/v1/audit/proof/inclusion?seq=3&tree_size=2', 'seq'],
      ['/api/v1/audit/proof/inclusion?seq=1&tree_size=1&extra=1', 'extra'],
      ['/api/v1/audit/proof/consistency?second=2', 'first'],
      ['/api/v1/audit/proof/consistency?first=1', 'second'],
      ['/api/v1/audit/proof/consistency?first=3&second=2', 'first'],
      [`/api/v1/audit/proof/consistency?first=1&second=${h.tree_size + 1}`, 'second'],
    ];
    for (const [p, field] of cases) {
      const r = await get(p);
      assert.equal(r.status, 422, `${p}: ${r.text}`);
      assert.equal(r.json.error.code, 'validation_failed');
      assert.ok(r.json.error.details.some((d) => d.field === field), `${p} names ${field}: ${r.text}`);
    }
    const same = await get(`/api/v1/audit/proof/consistency?first=${h.tree_size}&second=${h.tree_size}`);
    assert.equal(same.status, 200, same.text);
    assert.deepEqual(same.json.consistency_path, []);
    const anon = await c.call('GET', '/api/v1/audit/tree-head');
    assert.equal(anon.status, 401);
  });

  test('the independent verifier: every event\'s inclusion, every pair of heads\' consistency', async () => {
    await write(5);
    await head();
    assert.ok(heads.length >= 3, `heads seen: ${heads.map((h) => h.tree_size)}`);
    const fetchJson = async (p, { text } = {}) => {
      const r = await get(p);
      assert.equal(r.status, 200, `${p}: ${r.text}`);
      return text ? r.text : r.json;
    };
    const r = await verifyLog(fetchJson, publicKey);
    assert.ok(r.events >= heads.at(-1).tree_size, JSON.stringify(r));
    assert.equal(r.inclusionProofs, r.treeHeads && heads.at(-1).tree_size >= 1 ? r.inclusionProofs : 0);
    assert.ok(r.consistencyProofs >= 2, JSON.stringify(r));
    // The heads this test saw over time extend one another too.
    for (let i = 1; i < heads.length; i++) {
      const p = await get(`/api/v1/audit/proof/consistency?first=${heads[i - 1].tree_size}&second=${heads[i].tree_size}`);
      assert.equal(p.status, 200, p.text);
    }
  });

  test('an event altered in the store fails /audit/verify at that event', async () => {
    const h = await head();
    const seq = Math.max(2, h.tree_size - 3);
    const sql = `UPDATE audit_events SET actor = 'mallory' WHERE seq = ${seq}`;
    if (backend === 'postgres') {
      const u = new URL(process.env.DCMS_TEST_PG_URL);
      u.pathname = `/${srv.database}`;
      execFileSync('psql', [u.toString(), '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-c', sql]);
    } else {
      execFileSync('sqlite3', [path.join(srv.dataDir, 'dcms.db'), sql]);
    }
    const r = await get('/api/v1/audit/verify');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.ok, false, r.text);
    assert.equal(r.json.first_bad_seq, seq, r.text);
    assert.match(r.json.reason, /hash/);
    await sleep(10);
  });
});
