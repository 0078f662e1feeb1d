// Datasets through the API: tus uploads (three parts, one of them cut off
// mid-request, resumed where HEAD says), Upload-Checksum refusals (460),
// schema validation reports (column count, label, truncation), encrypted
// segments holding no plaintext, tampering with the stored segments
// (reordering, splicing from another dataset) detected by verify, who sees
// what (provider, consumer of an Active contract, non-party), and delete
// as crypto-shredding. Every response is checked against api/openapi.yaml.
// Runs on the backend chosen by DCMS_TEST_BACKEND.

import assert from 'node:assert/strict';
import {createHash} from 'node:crypto';
import {execFileSync} from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import {after, before, describe, test} from 'node:test';
import {fileURLToPath} from 'node:url';
import {bearer, contractsContext, validTerms} from './lib/contracts.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const CSV = fs.readFileSync(path.join(repo, 'tests/data/breast_cancer.csv'));
const CSV_SHA = createHash('sha256').update(CSV).digest('hex');
const header = CSV.toString('latin1').split('\n')[0].split(',');
const SCHEMA = {
  columns: header.map((name) => (name === 'diagnosis' ? {name, type: 'integer'} : {name, type: 'number'})),
  label: 'diagnosis',
  label_values: ['0', '1'],
};
const sha = (b) => createHash('sha256').update(b).digest();

let t, provider, consumer, stranger;

function genCsv(bytes, seed) {
  const f = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'dcms-gen-')), 'g.csv');
  const s = `${f}.schema.json`;
  execFileSync('python3', [path.join(repo, 'scripts/gen-csv.py'), '--bytes', String(bytes), '--columns', '5',
                           '--seed', String(seed), '--out', f, '--schema', s]);
  return {data: fs.readFileSync(f), schema: JSON.parse(fs.readFileSync(s, 'utf8'))};
}

/** Runs one SQL statement on the server's database and returns its output. */
function query(statement) {
  if (t.server.backend === 'postgres') {
    const u = new URL(process.env.DCMS_TEST_PG_URL);
    u.pathname = `/${t.server.database}`;
    return execFileSync('psql', [u.toString(), '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-c', statement],
                        {timeout: 30000}).toString();
  }
  return execFileSync('sqlite3', ['-cmd', '.timeout 10000', path.join(t.server.dataDir, 'dcms.db'), statement],
                      {timeout: 30000}).toString();
}

async function createDataset(who, extra = {}, schema = SCHEMA) {
  const r = await t.call('POST', '/api/v1/datasets', {
    headers: bearer(who.token), json: {name: 'breast cancer', description: 'UCI diagnostic', schema, ...extra},
  }, '/api/v1/datasets');
  assert.equal(r.status, 201, JSON.stringify(r.json));
  assert.equal(r.json.status, 'created');
  return r.json;
}

const content = (id) => `/api/v1/datasets/${id}/content`;

function patch(who, id, offset, body, headers = {}) {
  return t.call('PATCH', content(id), {
    headers: {...bearer(who.token), 'Tus-Resumable': '1.0.0', 'Content-Type': 'application/offset+octet-stream',
              'Upload-Offset': String(offset), ...headers},
    body,
  }, '/api/v1/datasets/{id}/content');
}

const get = (who, id) => t.call('GET', `/api/v1/datasets/${id}`, {headers: bearer(who.token)}, '/api/v1/datasets/{id}');
const verify = (who, id) => t.call('POST', `/api/v1/datasets/${id}/verify`, {headers: bearer(who.token)},
                                   '/api/v1/datasets/{id}/verify');

async function uploadState(who, id) {
  const r = await t.call('GET', content(id), {headers: bearer(who.token)}, '/api/v1/datasets/{id}/content');
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal(r.headers.get('upload-offset'), String(r.json.upload_offset));
  return r.json;
}

/** Sends a PATCH announcing `total` bytes, writes `part` of them, and cuts the connection. */
function cutPatch(who, id, offset, part, total) {
  return new Promise((resolve) => {
    const u = new URL(t.server.url);
    const req = http.request({
      host: u.hostname, port: u.port, method: 'PATCH', path: content(id),
      headers: {...bearer(who.token), 'Tus-Resumable': '1.0.0', 'Content-Type': 'application/offset+octet-stream',
                'Upload-Offset': String(offset), 'Content-Length': String(total)},
    });
    req.on('error', () => resolve());
    req.write(part, () => setTimeout(() => { req.destroy(); resolve(); }, 300));
  });
}

async function putWhole(who, id, body, headers = {}) {
  return t.call('PUT', content(id), {headers: {...bearer(who.token), 'Content-Type': 'text/csv', ...headers}, body},
                '/api/v1/datasets/{id}/content');
}

// A short writer lease, so that the lease tests below wait seconds, not the default 20.
const LEASE_S = 4;

before(async () => {
  t = await contractsContext({DCMS_DATASET_WRITER_LEASE_S: String(LEASE_S)});
  ({provider, consumer} = await t.parties());
  stranger = await t.identity({roles: ['consumer']});
});

after(async () => {
  await t?.server.stop();
});

describe('datasets', () => {
  test('tus discovery advertises the extensions, the algorithm and the limit', async () => {
    const r = await t.call('OPTIONS', content('00000000-0000-7000-8000-000000000000'), {},
                           '/api/v1/datasets/{id}/content');
    assert.equal(r.status, 204);
    assert.equal(r.headers.get('tus-version'), '1.0.0');
    assert.match(r.headers.get('tus-extension'), /creation/);
    assert.match(r.headers.get('tus-extension'), /checksum/);
    assert.equal(r.headers.get('tus-checksum-algorithm'), 'sha256');
    assert.equal(r.headers.get('tus-max-size'), String(10 * 1024 ** 3));
  });

  test('breast_cancer.csv in three parts, one cut off mid-request, resumes and becomes ready', async () => {
    const ds = await createDataset(provider, {expected_sha256: CSV_SHA});
    // part 1: a complete PATCH that also declares the length
    let r = await patch(provider, ds.id, 0, CSV.subarray(0, 40000), {'Upload-Length': String(CSV.length)});
    assert.equal(r.status, 204, r.text);
    assert.equal(r.headers.get('upload-offset'), '40000');
    // part 2: the connection drops after 30000 of the 80384 announced bytes
    await cutPatch(provider, ds.id, 40000, CSV.subarray(40000, 70000), CSV.length - 40000);
    let st;
    for (let i = 0; i < 50; i++) {
      st = await uploadState(provider, ds.id);
      if (st.upload_offset > 40000) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    assert.equal(st.status, 'uploading');
    assert.ok(st.upload_offset > 40000 && st.upload_offset <= 70000, `offset ${st.upload_offset}`);
    // a PATCH at the wrong offset is refused
    r = await patch(provider, ds.id, 40000, CSV.subarray(40000));
    assert.equal(r.status, 409);
    // part 3: the rest, from where HEAD says, with a checksum
    const rest = CSV.subarray(st.upload_offset);
    for (let i = 0; i < 50; i++) {
      r = await patch(provider, ds.id, st.upload_offset, rest,
                      {'Upload-Checksum': `sha256 ${sha(rest).toString('base64')}`});
      if (r.status !== 409) break; // the cut request may still be closing
      await new Promise((res) => setTimeout(res, 100));
    }
    assert.equal(r.status, 204, r.text);
    assert.equal(r.headers.get('upload-offset'), String(CSV.length));
    const d = (await get(provider, ds.id)).json;
    assert.equal(d.status, 'ready', JSON.stringify(d.report));
    assert.equal(d.sha256, CSV_SHA);
    assert.equal(d.rows, 569);
    assert.deepEqual(d.report, {valid: true, rows: 569, problems_total: 0, problems: []});
    const v = await verify(provider, ds.id);
    assert.equal(v.status, 200);
    assert.equal(v.json.ok, true, v.json.problem);
    // a ready dataset's content cannot change
    r = await patch(provider, ds.id, CSV.length, Buffer.from('x'));
    assert.equal(r.status, 409);
  });

  test('a body that does not match Upload-Checksum is refused with 460 and not kept', async () => {
    const ds = await createDataset(provider);
    const part = CSV.subarray(0, 50000);
    let r = await patch(provider, ds.id, 0, part, {'Upload-Length': String(CSV.length),
                                                   'Upload-Checksum': `sha256 ${sha(Buffer.from('other')).toString('base64')}`});
    assert.equal(r.status, 460);
    assert.equal(r.json.error.code, 'checksum_mismatch');
    assert.equal((await uploadState(provider, ds.id)).upload_offset, 0);
    r = await patch(provider, ds.id, 0, part, {'Upload-Checksum': 'md5 AAAA'});
    assert.equal(r.status, 422);
    assert.equal(r.json.error.details[0].field, 'Upload-Checksum');
    r = await putWhole(provider, ds.id, CSV, {'Upload-Checksum': `sha256 ${sha(CSV).toString('base64')}`});
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.status, 'ready');
  });

  test('a wrong column count is reported with its line', async () => {
    const ds = await createDataset(provider);
    const lines = CSV.toString('latin1').split('\n');
    lines[10] = lines[10].split(',').slice(1).join(','); // line 11 loses a column
    const r = await putWhole(provider, ds.id, Buffer.from(lines.join('\n'), 'latin1'));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.status, 'invalid');
    assert.equal(r.json.report.valid, false);
    assert.ok(r.json.report.problems.some((p) => p.line === 11 && /expected 31 columns, found 30/.test(p.problem)),
              JSON.stringify(r.json.report));
  });

  test('a label outside the allowed values is reported with its line', async () => {
    const ds = await createDataset(provider);
    const lines = CSV.toString('latin1').split('\n');
    lines[5] = lines[5].replace(/,[01]$/, ',7');
    const r = await putWhole(provider, ds.id, Buffer.from(lines.join('\n'), 'latin1'));
    assert.equal(r.json.status, 'invalid');
    assert.deepEqual(r.json.report.problems.map((p) => p.line), [6]);
    assert.match(r.json.report.problems[0].problem, /label "7" is not allowed/);
  });

  test('a truncated upload is refused: hash and last row do not match', async () => {
    const ds = await createDataset(provider, {expected_sha256: CSV_SHA});
    const cut = CSV.subarray(0, CSV.length - 40);
    const r = await putWhole(provider, ds.id, cut);
    assert.equal(r.json.status, 'invalid');
    const probs = r.json.report.problems;
    assert.ok(probs.some((p) => p.line === null && /SHA-256 differs/.test(p.problem)), JSON.stringify(probs));
    assert.ok(probs.some((p) => p.line === 570 && /columns/.test(p.problem)), JSON.stringify(probs));
    // and with the length fixed in advance, a short upload never completes
    const ds2 = await createDataset(provider, {expected_size: CSV.length});
    const r2 = await patch(provider, ds2.id, 0, cut);
    assert.equal(r2.status, 204);
    const st = await uploadState(provider, ds2.id);
    assert.deepEqual(st, {upload_offset: cut.length, upload_length: CSV.length, status: 'uploading'});
    assert.equal((await verify(provider, ds2.id)).json.ok, false);
  });

  test('the stored segments hold no plaintext', async () => {
    const row = CSV.toString('latin1').split('\n')[100];
    if (t.server.backend === 'postgres') {
      const hex = Buffer.from(row.slice(0, 40)).toString('hex');
      const n = query(`SELECT count(*) FROM dataset_segments WHERE position('\\x${hex}'::bytea IN ct) > 0`);
      assert.equal(n.trim(), '0');
      assert.ok(Number(query('SELECT count(*) FROM dataset_segments').trim()) > 0);
    } else {
      query('PRAGMA wal_checkpoint(TRUNCATE)');
      for (const f of ['dcms.db', 'dcms.db-wal']) {
        const p = path.join(t.server.dataDir, f);
        if (fs.existsSync(p)) assert.equal(fs.readFileSync(p).indexOf(Buffer.from(row.slice(0, 40))), -1, f);
      }
    }
  });

  test('reordered or spliced segments are detected on read', async () => {
    const a = genCsv(3 * 1024 * 1024 - 1000, 1);
    const b = genCsv(3 * 1024 * 1024 - 1000, 2);
    const dsa = await createDataset(provider, {}, a.schema);
    const dsb = await createDataset(provider, {}, b.schema);
    assert.equal((await putWhole(provider, dsa.id, a.data)).json.status, 'ready');
    assert.equal((await putWhole(provider, dsb.id, b.data)).json.status, 'ready');
    assert.equal((await get(provider, dsa.id)).json.rows > 0, true);
    assert.equal((await verify(provider, dsa.id)).json.ok, true);
    // swap segments 0 and 1 of a
    query(`UPDATE dataset_segments SET idx = 99 WHERE dataset_id = '${dsa.id}' AND idx = 0;` +
          `UPDATE dataset_segments SET idx = 0 WHERE dataset_id = '${dsa.id}' AND idx = 1;` +
          `UPDATE dataset_segments SET idx = 1 WHERE dataset_id = '${dsa.id}' AND idx = 99`);
    let v = await verify(provider, dsa.id);
    assert.equal(v.json.ok, false);
    assert.match(v.json.problem, /segment 0 does not authenticate/);
    // put them back: it reads again
    query(`UPDATE dataset_segments SET idx = 99 WHERE dataset_id = '${dsa.id}' AND idx = 0;` +
          `UPDATE dataset_segments SET idx = 0 WHERE dataset_id = '${dsa.id}' AND idx = 1;` +
          `UPDATE dataset_segments SET idx = 1 WHERE dataset_id = '${dsa.id}' AND idx = 99`);
    assert.equal((await verify(provider, dsa.id)).json.ok, true);
    // segment 1 of b spliced into a
    query(`UPDATE dataset_segments SET ct = (SELECT ct FROM dataset_segments WHERE dataset_id = '${dsb.id}' AND idx = 1),` +
          ` nonce = (SELECT nonce FROM dataset_segments WHERE dataset_id = '${dsb.id}' AND idx = 1)` +
          ` WHERE dataset_id = '${dsa.id}' AND idx = 1`);
    v = await verify(provider, dsa.id);
    assert.equal(v.json.ok, false);
    assert.match(v.json.problem, /segment 1 does not authenticate/);
    // truncation: the final segment removed
    query(`DELETE FROM dataset_segments WHERE dataset_id = '${dsb.id}' AND idx = 2`);
    v = await verify(provider, dsb.id);
    assert.equal(v.json.ok, false);
    const ev = await t.auditEvents(`resource_id=${dsb.id}&action=dataset.verify`);
    assert.ok(ev.length >= 1);
  });

  test('a resume after an upload stopped mid-segment-write overwrites the segments it left', async () => {
    // dcmsd stopping between a segment's insert and the save of the resume state leaves a
    // segment past the saved count; the next request must not collide with it.
    const g = genCsv(3 * 1024 * 1024 - 1000, 3);
    const ds = await createDataset(provider, {}, g.schema);
    const first = Math.floor(1.5 * 1024 * 1024);
    let r = await patch(provider, ds.id, 0, g.data.subarray(0, first), {'Upload-Length': String(g.data.length)});
    assert.equal(r.status, 204, r.text);
    assert.equal(query(`SELECT count(*) FROM dataset_segments WHERE dataset_id = '${ds.id}'`).trim(), '1');
    // what the stopped request wrote: a segment 1 beyond the saved state
    query(`INSERT INTO dataset_segments (dataset_id, idx, final, nonce, ct) SELECT dataset_id, 1, final, nonce, ct ` +
          `FROM dataset_segments WHERE dataset_id = '${ds.id}' AND idx = 0`);
    r = await patch(provider, ds.id, first, g.data.subarray(first));
    assert.equal(r.status, 204, r.text);
    const d = (await get(provider, ds.id)).json;
    assert.equal(d.status, 'ready', JSON.stringify(d.report));
    assert.equal(d.sha256, sha(g.data).toString('hex'));
    const v = await verify(provider, ds.id);
    assert.equal(v.json.ok, true, v.json.problem);
  });

  test('a live upload paused past the writer lease keeps its claim; a dead one loses it', async () => {
    const g = genCsv(2 * 1024 * 1024 + 5000, 5);
    const ds = await createDataset(provider, {}, g.schema);
    const first = Math.floor(1.5 * 1024 * 1024);
    const u = new URL(t.server.url);
    const done = new Promise((resolve, reject) => {
      const req = http.request({
        host: u.hostname, port: u.port, method: 'PATCH', path: content(ds.id),
        headers: {...bearer(provider.token), 'Tus-Resumable': '1.0.0', 'Upload-Length': String(g.data.length),
                  'Content-Type': 'application/offset+octet-stream', 'Upload-Offset': '0',
                  'Content-Length': String(g.data.length)},
      }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode)); });
      req.on('error', reject);
      req.write(g.data.subarray(0, first));
      // the client pauses for longer than the lease; its request still lives, so its writer
      // keeps renewing the claim and a second request is refused meanwhile
      setTimeout(async () => {
        try {
          const r = await patch(provider, ds.id, 0, g.data.subarray(0, 100));
          assert.equal(r.status, 409, r.text);
          assert.match(r.json.error.message, /in progress/);
        } catch (e) {
          req.destroy();
          reject(e);
          return;
        }
        req.end(g.data.subarray(first));
      }, (LEASE_S + 2) * 1000);
    });
    assert.equal(await done, 204);
    assert.equal((await get(provider, ds.id)).json.status, 'ready');

    // a claim whose holder is gone (dcmsd crashed mid-upload) lapses after the lease
    const ds2 = await createDataset(provider, {}, g.schema);
    let r = await patch(provider, ds2.id, 0, g.data.subarray(0, first), {'Upload-Length': String(g.data.length)});
    assert.equal(r.status, 204, r.text);
    const claim = (ageS) => query(`UPDATE datasets SET writer = 'a-request-of-a-crashed-dcmsd', writer_at = ` +
                                  `'${new Date(Date.now() - ageS * 1000).toISOString()}' WHERE id = '${ds2.id}'`);
    claim(1);
    r = await patch(provider, ds2.id, first, g.data.subarray(first));
    assert.equal(r.status, 409, r.text);
    claim(LEASE_S + 1);
    r = await patch(provider, ds2.id, first, g.data.subarray(first));
    assert.equal(r.status, 204, r.text);
    assert.equal((await get(provider, ds2.id)).json.sha256, sha(g.data).toString('hex'));
  });

  test('a consumer of an Active contract sees the metadata; a non-party gets 404', async () => {
    const ds = await createDataset(provider);
    assert.equal((await putWhole(provider, ds.id, CSV)).json.status, 'ready');
    // before any contract the consumer sees nothing
    assert.equal((await get(consumer, ds.id)).status, 404);
    const terms = validTerms({data_access: {datasets: [ds.id], permissions: ['train']}});
    await t.inState({provider, consumer}, 'active', {terms});
    const r = await get(consumer, ds.id);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.sha256, CSV_SHA);
    const list = await t.call('GET', '/api/v1/datasets?limit=500', {headers: bearer(consumer.token)}, '/api/v1/datasets');
    assert.deepEqual(list.json.datasets.map((d) => d.id), [ds.id]);
    assert.equal((await get(stranger, ds.id)).status, 404);
    const sl = await t.call('GET', '/api/v1/datasets', {headers: bearer(stranger.token)}, '/api/v1/datasets');
    assert.deepEqual(sl.json.datasets, []);
    // the consumer can neither upload, verify nor delete
    assert.equal((await t.call('DELETE', `/api/v1/datasets/${ds.id}`, {headers: bearer(consumer.token)},
                               '/api/v1/datasets/{id}')).status, 403);
    // no route returns the content: GET .../content is the upload state only
    const c = await t.call('GET', content(ds.id), {headers: bearer(provider.token)}, '/api/v1/datasets/{id}/content');
    assert.equal(c.text.includes('mean_radius'), false);
  });

  test('list pages with a cursor', async () => {
    const mine = await t.call('GET', '/api/v1/datasets?limit=2', {headers: bearer(provider.token)}, '/api/v1/datasets');
    assert.equal(mine.json.datasets.length, 2);
    assert.ok(mine.json.next_cursor);
    const next = await t.call('GET', `/api/v1/datasets?limit=2&cursor=${mine.json.next_cursor}`,
                              {headers: bearer(provider.token)}, '/api/v1/datasets');
    assert.ok(next.json.datasets.every((d) => d.id > mine.json.next_cursor));
  });

  test('delete crypto-shreds: the data key is destroyed and the segments removed', async () => {
    const ds = await createDataset(provider);
    assert.equal((await putWhole(provider, ds.id, CSV)).json.status, 'ready');
    const dek = query(`SELECT dek_id FROM datasets WHERE id = '${ds.id}'`).trim();
    const r = await t.call('DELETE', `/api/v1/datasets/${ds.id}`, {headers: bearer(provider.token)}, '/api/v1/datasets/{id}');
    assert.equal(r.status, 204);
    assert.equal((await get(provider, ds.id)).status, 404);
    assert.equal(query(`SELECT count(*) FROM dataset_segments WHERE dataset_id = '${ds.id}'`).trim(), '0');
    assert.equal(query(`SELECT count(*) FROM data_keys WHERE id = '${dek}' AND wrapped IS NULL AND destroyed_at IS NOT NULL`).trim(), '1');
    const ev = await t.auditEvents(`resource_id=${ds.id}&action=dataset.delete`);
    assert.equal(ev.length, 1);
    assert.equal(ev[0].details.method, 'crypto_shred');
  });

  test('bad metadata is refused with field paths', async () => {
    const r = await t.call('POST', '/api/v1/datasets', {
      headers: bearer(provider.token),
      json: {name: '', format: 'parquet', expected_sha256: 'xyz',
             schema: {columns: [{name: 'a', type: 'float'}], label: 'b', label_values: []}},
    }, '/api/v1/datasets');
    assert.equal(r.status, 422);
    const fields = r.json.error.details.map((d) => d.field).sort();
    for (const f of ['name', 'format', 'expected_sha256', 'schema.columns[0].type', 'schema.label', 'schema.label_values'])
      assert.ok(fields.includes(f), `${f} in ${fields}`);
    const c = await t.call('POST', '/api/v1/datasets', {headers: bearer(consumer.token), json: {name: 'x', schema: SCHEMA}},
                           '/api/v1/datasets');
    assert.equal(c.status, 403);
  });

  test('contracts: a UUID in terms.data_access.datasets must name a ready dataset of the provider', async () => {
    const p = await t.parties();
    const other = await t.identity({roles: ['provider']});
    const ready = await createDataset(p.provider);
    assert.equal((await putWhole(p.provider, ready.id, CSV)).json.status, 'ready');
    const notReady = await createDataset(p.provider);
    const foreign = await createDataset(other);
    assert.equal((await putWhole(other, foreign.id, CSV)).json.status, 'ready');
    const unknown = '00000000-0000-7000-8000-00000000abcd';
    const submit = async (datasets) => {
      const c = await t.create(p, {terms: validTerms({data_access: {datasets, permissions: ['train']}})});
      return {c, r: await t.op(p.provider, c, 'submit')};
    };
    // a ready dataset of the provider, next to a free-form name, passes
    let {r} = await submit(['s3://provider/records-2026', ready.id]);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.status, 'pending_signature');
    // each bad entry is named by its path; the contract stays a draft
    let c;
    ({c, r} = await submit([ready.id, unknown, foreign.id, notReady.id, 'free-form name']));
    assert.equal(r.status, 422, r.text);
    assert.equal(r.json.error.code, 'validation_failed');
    const details = Object.fromEntries(r.json.error.details.map((d) => [d.field, d.problem ?? d.message]));
    assert.deepEqual(Object.keys(details).sort(), ['terms.data_access.datasets[1]', 'terms.data_access.datasets[2]',
                                                   'terms.data_access.datasets[3]']);
    assert.match(details['terms.data_access.datasets[1]'], /dataset of the contract's provider/);
    assert.match(details['terms.data_access.datasets[2]'], /dataset of the contract's provider/);
    assert.match(details['terms.data_access.datasets[3]'], /created, not ready/);
    const still = await t.call('GET', `/api/v1/contracts/${c.id}`, {headers: bearer(p.provider.token)});
    assert.equal(still.json.status, 'draft');
    // re-checked at activation: the dataset deleted after signing blocks it
    const ds2 = await createDataset(p.provider);
    assert.equal((await putWhole(p.provider, ds2.id, CSV)).json.status, 'ready');
    const pending = await t.inState(p, 'pending_signature',
                                    {terms: validTerms({data_access: {datasets: [ds2.id], permissions: ['train']}})});
    assert.equal((await t.signDigital(p.provider, pending)).status, 200);
    assert.equal((await t.signDigital(p.consumer, pending)).status, 200);
    assert.equal((await t.call('DELETE', `/api/v1/datasets/${ds2.id}`, {headers: bearer(p.provider.token)},
                               '/api/v1/datasets/{id}')).status, 204);
    r = await t.op(p.consumer, pending, 'activate');
    assert.equal(r.status, 422, r.text);
    assert.deepEqual(r.json.error.details.map((d) => d.field), ['terms.data_access.datasets[0]']);
    const after = await t.call('GET', `/api/v1/contracts/${pending.id}`, {headers: bearer(p.provider.token)});
    assert.equal(after.json.status, 'pending_signature');
  });
});
