// Training jobs through the API, end to end in the local sandbox: the
// provider uploads tests/data/breast_cancer.csv, a contract naming it goes
// Active, the consumer starts a logistic regression (full batch, sgd, lr
// 0.1, 1000 epochs, modulo 5/4) that reaches 0.991 held-out accuracy, the
// model downloads and training/check_model.py recomputes the same accuracy
// outside dcms. Then the refusals (non-party 404, provider 403, model type,
// dataset outside the scope, a suspended contract, two concurrent starts
// for the last run), cancel, the Server-Sent Events with Last-Event-ID, a
// contract suspended during a job, a trainer image changed by one byte, a
// restart, hostile trainers (a replayed attestation, a result attested
// with the wrong hash: tests/workloads/wl_rogue_trainer.c), and the audit
// trail (start, key release with the PCRs, each state, the download) that
// /audit/verify accepts, with the receipts of the key release (linked from
// the job) and of the download (its Link header) that both parties read and
// check offline, and a stranger does not see.
// Every response is checked against api/openapi.yaml.
// Runs on the backend chosen by DCMS_TEST_BACKEND.

import assert from 'node:assert/strict';
import {execFileSync, spawnSync} from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {after, before, describe, test} from 'node:test';
import {fileURLToPath} from 'node:url';
import {bearer, contractsContext, validTerms} from './lib/contracts.mjs';
import {randomBytes} from 'node:crypto';
import {checkResponse} from './lib/openapi.mjs';
import {backend, psqlAdmin, startServer} from './lib/server.mjs';
import {client} from './lib/http.mjs';
import {login} from './lib/iam.mjs';
import {eventOf, readReceipt, tampered, verifyReceipt} from './lib/receipts.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const CSV_PATH = path.join(repo, 'tests/data/breast_cancer.csv');
const CSV = fs.readFileSync(CSV_PATH);
const header = CSV.toString('latin1').split('\n')[0].split(',');
const SCHEMA = {
  columns: header.map((name) => (name === 'diagnosis' ? {name, type: 'integer'} : {name, type: 'number'})),
  label: 'diagnosis',
  label_values: ['0', '1'],
};
const LR = {label: 'diagnosis', model: 'logistic_regression', optimizer: 'sgd', epochs: 1000, batch_size: 0,
            learning_rate: 0.1, l2: 0, seed: 1, split: {method: 'modulo', folds: 5, holdout_fold: 4}};
const FINAL = new Set(['succeeded', 'failed', 'cancelled']);

let t, provider, consumer, stranger, ds, ds2, imagesDir;

async function dataset() {
  const c = await t.call('POST', '/api/v1/datasets', {
    headers: bearer(provider.token), json: {name: 'breast cancer', description: 'UCI diagnostic', schema: SCHEMA},
  }, '/api/v1/datasets');
  assert.equal(c.status, 201, JSON.stringify(c.json));
  const r = await t.call('PUT', `/api/v1/datasets/${c.json.id}/content`, {
    headers: {...bearer(provider.token), 'Content-Type': 'text/csv'}, body: CSV,
  }, '/api/v1/datasets/{id}/content');
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal(r.json.status, 'ready', JSON.stringify(r.json));
  return r.json;
}

function terms(over = {}) {
  const base = validTerms();
  return {
    ...base,
    data_access: {datasets: [ds.id], permissions: ['train']},
    // standard: the trainer image of the test build is not signed (high pins signers, PCR8)
    security: {...base.security, encryption_level: 'standard'},
    usage: {...base.usage, allowed_model_types: ['logistic_regression'], max_training_runs: 20},
    ...over,
  };
}

const start = (who, contract, body) =>
  t.call('POST', `/api/v1/contracts/${contract.id}/trainings`, {headers: bearer(who.token), json: body},
         '/api/v1/contracts/{id}/trainings');
const getJob = (who, id) => t.call('GET', `/api/v1/trainings/${id}`, {headers: bearer(who.token)},
                                   '/api/v1/trainings/{id}');

async function waitFor(id, pred, ms = 90000, who = consumer) {
  const end = Date.now() + ms;
  for (;;) {
    const r = await getJob(who, id);
    assert.equal(r.status, 200, JSON.stringify(r.json));
    if (pred(r.json)) return r.json;
    if (Date.now() > end) assert.fail(`job ${id} is still ${r.json.state}: ${JSON.stringify(r.json)}`);
    await new Promise((res) => setTimeout(res, 100));
  }
}
const waitFinal = (id, ms, who) => waitFor(id, (j) => FINAL.has(j.state), ms, who);

/** The events after `last` (an SSE body parsed). */
async function events(who, id, last) {
  const headers = bearer(who.token);
  if (last !== undefined) headers['Last-Event-ID'] = String(last);
  const r = await t.call('GET', `/api/v1/trainings/${id}/events`, {headers}, '/api/v1/trainings/{id}/events');
  assert.equal(r.status, 200, r.text);
  assert.match(r.headers.get('content-type'), /^text\/event-stream/);
  const out = [];
  for (const block of r.text.split('\n\n')) {
    const ev = {};
    for (const line of block.split('\n')) {
      const i = line.indexOf(': ');
      if (i > 0) ev[line.slice(0, i)] = line.slice(i + 2);
    }
    if (ev.event) out.push({id: ev.id === undefined ? undefined : Number(ev.id), event: ev.event,
                            data: JSON.parse(ev.data)});
  }
  return out;
}

/**
 * Opens the event stream of job `id` and reads it as it comes: `events`
 * fills up, `comments` counts heartbeat lines, `done` resolves when the body
 * ends (one connection, no reconnect), `close()` drops the connection.
 */
async function openStream(who, id, last, ctx = t) {
  const ac = new AbortController();
  const headers = bearer(who.token);
  if (last !== undefined) headers['Last-Event-ID'] = String(last);
  const res = await fetch(`${ctx.server.url}/api/v1/trainings/${id}/events`, {headers, signal: ac.signal});
  const s = {status: res.status, res, events: [], comments: 0, ended: false, close: () => ac.abort()};
  if (res.status !== 200) {
    s.json = await res.json();
    s.done = Promise.resolve();
    return s;
  }
  assert.match(res.headers.get('content-type'), /^text\/event-stream/);
  s.done = (async () => {
    const dec = new TextDecoder();
    let text = '';
    try {
      for await (const chunk of res.body) {
        text += dec.decode(chunk, {stream: true});
        let i;
        while ((i = text.indexOf('\n\n')) >= 0) {
          const block = text.slice(0, i);
          text = text.slice(i + 2);
          const ev = {};
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) s.comments++;
            const j = line.indexOf(': ');
            if (j > 0) ev[line.slice(0, j)] = line.slice(j + 2);
          }
          if (ev.event) s.events.push({id: ev.id === undefined ? undefined : Number(ev.id), event: ev.event,
                                       data: JSON.parse(ev.data), at: Date.now()});
        }
      }
      s.ended = true;
    } catch (err) {
      if (err.name !== 'AbortError') throw err;
    }
  })();
  return s;
}

async function until(pred, ms = 20000, what = 'condition') {
  const end = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((res) => setTimeout(res, 50));
  }
}

before(async () => {
  // A copy of the images, so one test can change the trainer in place.
  imagesDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcms-images-'));
  for (const f of ['dcms-trainer', 'dcms-workload'])
    fs.copyFileSync(path.join(path.dirname(path.resolve(process.env.DCMS_BIN ?? 'build/dcmsd')), 'workload', f),
                    path.join(imagesDir, f));
  fs.chmodSync(path.join(imagesDir, 'dcms-trainer'), 0o755);
  t = await contractsContext({DCMS_TRAINING_WORKERS: '2', DCMS_ENCLAVE_IMAGES_DIR: imagesDir,
                             DCMS_TRAINING_EVENT_STREAMS: '5', DCMS_TRAINING_EVENT_STREAMS_PER_IDENTITY: '3',
                             DCMS_TRAINING_EVENT_HEARTBEAT_MS: '1000'});
  ({provider, consumer} = await t.parties());
  stranger = await t.identity({roles: ['consumer']});
  ds = await dataset();
  ds2 = await dataset();
});

after(async () => {
  await t?.server.stop();
  if (imagesDir) fs.rmSync(imagesDir, {recursive: true, force: true});
});

describe('training', () => {
  let active, job;

  test('logistic regression on breast_cancer.csv reaches 0.991 and the model checks out', async () => {
    active = await t.inState({provider, consumer}, 'active', {terms: terms()});
    const r = await start(consumer, active, {datasets: [ds.id], ...LR});
    assert.equal(r.status, 202, JSON.stringify(r.json));
    assert.equal(r.headers.get('location'), `/api/v1/trainings/${r.json.id}`);
    assert.equal(r.json.state, 'queued');
    job = await waitFinal(r.json.id);
    assert.equal(job.state, 'succeeded', JSON.stringify(job));
    assert.equal(job.data_released, true);
    const acc = job.result.metrics.accuracy;
    assert.ok(Math.abs(acc - 0.991) <= 0.01, `accuracy ${acc}`);
    assert.equal(job.result.metrics.rows, 113);
    assert.equal(job.dataset_hashes[ds.id], ds.sha256);
    assert.equal(job.result.attestation.verified, true);

    // the consumer downloads the model; check_model.py recomputes the accuracy outside dcms
    const res = await fetch(`${t.server.url}/api/v1/trainings/${job.id}/model`, {headers: bearer(consumer.token)});
    const bytes = Buffer.from(await res.arrayBuffer());
    checkResponse('GET', '/api/v1/trainings/{id}/model', res, 'binary');
    assert.equal(res.status, 200);
    assert.equal(bytes.length, job.result.model_size);
    const f = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'dcms-model-')), 'm.safetensors');
    fs.writeFileSync(f, bytes);
    const out = JSON.parse(execFileSync('python3', [path.join(repo, 'training/check_model.py'), f, CSV_PATH,
                                                    'diagnosis', '5', '4']).toString());
    assert.equal(out.rows, 113);
    assert.ok(Math.abs(out.accuracy - acc) < 1e-9, `check_model.py says ${out.accuracy}, dcms ${acc}`);
    const meta = JSON.parse(bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString()).__metadata__;
    assert.equal(meta.training_id, job.id);
    assert.equal(meta.contract_id, active.id);

    // the provider sees the metrics, never the model
    const pv = await getJob(provider, job.id);
    assert.equal(pv.status, 200);
    assert.equal(pv.json.result.metrics.accuracy, acc);
    const pm = await t.call('GET', `/api/v1/trainings/${job.id}/model`, {headers: bearer(provider.token)},
                            '/api/v1/trainings/{id}/model');
    assert.equal(pm.status, 403, pm.text);
    // nor does anyone else learn that it exists
    const sg = await getJob(stranger, job.id);
    assert.equal(sg.status, 404, sg.text);
    const list = await t.call('GET', `/api/v1/contracts/${active.id}/trainings?limit=10`,
                              {headers: bearer(provider.token)}, '/api/v1/contracts/{id}/trainings');
    assert.equal(list.status, 200);
    assert.deepEqual(list.json.trainings.map((x) => x.id), [job.id]);
  });

  test('an MLP with 16 hidden units reaches at least 0.96', async () => {
    const base = terms();
    const c = await t.inState({provider, consumer}, 'active', {terms: {
      ...base, usage: {...base.usage, allowed_model_types: ['mlp']}}});
    const r = await start(consumer, c, {datasets: [ds.id], ...LR, model: 'mlp', hidden: [16], epochs: 500,
                                        seed: 7});
    assert.equal(r.status, 202, r.text);
    const j = await waitFinal(r.json.id);
    assert.equal(j.state, 'succeeded', JSON.stringify(j));
    assert.ok(j.result.metrics.accuracy >= 0.96, `accuracy ${j.result.metrics.accuracy}`);
  });

  test('the events come in order and Last-Event-ID resumes', async () => {
    assert.ok(job, 'needs the first job');
    const all = await events(consumer, job.id);
    const states = all.filter((e) => e.event === 'state').map((e) => e.data.state);
    assert.deepEqual(states, ['queued', 'provisioning', 'attesting', 'running', 'validating', 'succeeded']);
    const withId = all.filter((e) => e.id !== undefined);
    for (let i = 1; i < withId.length; i++) assert.equal(withId[i].id, withId[i - 1].id + 1);
    const progress = all.filter((e) => e.event === 'progress');
    assert.ok(progress.length >= 1);
    assert.equal(progress.at(-1).data.epoch, 1000);
    assert.equal(all.at(-1).event, 'end');
    const mid = withId[2].id;
    const rest = await events(consumer, job.id, mid);
    assert.deepEqual(rest.filter((e) => e.id !== undefined).map((e) => e.id),
                     withId.filter((e) => e.id > mid).map((e) => e.id));
    const bad = await t.call('GET', `/api/v1/trainings/${job.id}/events`,
                             {headers: {...bearer(consumer.token), 'Last-Event-ID': 'x'}},
                             '/api/v1/trainings/{id}/events');
    assert.equal(bad.status, 422);
  });

  test('one open stream carries every state and the progress as they happen, and ends with the job', async () => {
    const r = await start(consumer, active, {datasets: [ds.id], ...LR, epochs: 3000});
    assert.equal(r.status, 202, r.text);
    const live = await openStream(consumer, r.json.id);
    assert.equal(live.status, 200);
    // a second stream resumes after the first event (Last-Event-ID) and follows on
    const resumed = await openStream(consumer, r.json.id, 1);
    await Promise.all([live.done, resumed.done]);
    assert.equal(live.ended, true);
    const states = live.events.filter((e) => e.event === 'state').map((e) => e.data.state);
    assert.deepEqual(states, ['queued', 'provisioning', 'attesting', 'running', 'validating', 'succeeded']);
    assert.ok(live.events.some((e) => e.event === 'progress'), 'no progress event');
    assert.equal(live.events.at(-1).event, 'end');
    // pushed as it happened: the running state came well before the end
    const running = live.events.find((e) => e.event === 'state' && e.data.state === 'running');
    assert.ok(running.at < live.events.at(-1).at, 'every event came at the end');
    const ids = live.events.filter((e) => e.id !== undefined).map((e) => e.id);
    for (let i = 1; i < ids.length; i++) assert.equal(ids[i], ids[i - 1] + 1);
    assert.deepEqual(resumed.events.filter((e) => e.id !== undefined).map((e) => e.id), ids.filter((x) => x > 1));
    assert.equal(resumed.events.at(-1).event, 'end');
  });

  test('open streams are bounded per identity and in total (429)', async () => {
    const c = await t.inState({provider, consumer}, 'active', {terms: terms()});
    const r = await start(consumer, c, {datasets: [ds.id], ...LR, epochs: 100000});
    assert.equal(r.status, 202, r.text);
    await waitFor(r.json.id, (j) => j.state === 'running' || FINAL.has(j.state));
    const open = [];
    try {
      for (let i = 0; i < 3; i++) open.push(await openStream(consumer, r.json.id));
      assert.deepEqual(open.map((s) => s.status), [200, 200, 200]);
      const over = await openStream(consumer, r.json.id);
      assert.equal(over.status, 429);
      assert.equal(over.json.error.code, 'rate_limited', JSON.stringify(over.json));
      checkResponse('GET', '/api/v1/trainings/{id}/events', over.res, over.json);
      // the provider has streams of its own, up to the total of 5
      for (let i = 0; i < 2; i++) open.push(await openStream(provider, r.json.id));
      assert.deepEqual(open.slice(3).map((s) => s.status), [200, 200]);
      const total = await openStream(provider, r.json.id);
      assert.equal(total.status, 429);
      assert.match(total.json.error.message, /DCMS_TRAINING_EVENT_STREAMS\b/);
      // a closed stream gives its place back (the server notices at the next heartbeat)
      open.shift().close();
      await until(async () => {
        const s = await openStream(consumer, r.json.id);
        if (s.status === 200) open.push(s);
        return s.status === 200;
      }, 15000, 'a place after a stream closed');
    } finally {
      for (const s of open) s.close();
      await t.call('POST', `/api/v1/trainings/${r.json.id}/cancel`, {headers: bearer(consumer.token)},
                   '/api/v1/trainings/{id}/cancel');
    }
  });

  test('the audit trail shows the start, the key release with PCRs, each state and the download', async () => {
    assert.ok(job, 'needs the first job');
    const ev = await t.auditEvents(`resource_type=training&resource_id=${job.id}&limit=100`);
    const actions = ev.map((e) => e.action).reverse();
    for (const a of ['training.start', 'training.provisioning', 'training.attesting', 'training.key_release',
                     'training.running', 'training.validating', 'training.succeeded', 'training.model_download'])
      assert.ok(actions.includes(a), `${a} missing from ${actions}`);
    const rel = ev.find((e) => e.action === 'training.key_release');
    assert.match(rel.details.pcrs['0'], /^[0-9a-f]{96}$/);
    assert.match(rel.details.nonce, /^[0-9a-f]{64}$/);
    assert.deepEqual(rel.details.datasets, [{id: ds.id, sha256: ds.sha256}]);
    // the provider, who cannot read /audit/events, sees the job's trail in the contract's slice
    const sl = await t.call('GET', `/api/v1/contracts/${job.contract_id}/audit?limit=500`,
                            {headers: bearer(provider.token)}, '/api/v1/contracts/{id}/audit');
    assert.equal(sl.status, 200, sl.text);
    const mine = sl.json.events.filter((e) => e.resource_type === 'training' && e.resource_id === job.id);
    assert.deepEqual(mine.map((e) => e.action), actions);
    // and the contract's evidence carries receipts of the key release and the model download
    const b = await t.call('GET', `/api/v1/contracts/${job.contract_id}/evidence`, {headers: bearer(provider.token)},
                           '/api/v1/contracts/{id}/evidence');
    assert.equal(b.status, 200, b.text);
    const got = new Set(b.json.receipts.filter((r) => r.event.resource_id === job.id).map((r) => r.event.action));
    assert.deepEqual([...got].sort(), ['training.key_release', 'training.model_download']);
    // dcmsd evidence verify counts the job as the contract's and checks its receipts offline
    const bf = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'dcms-ev-')), 'evidence.json');
    fs.writeFileSync(bf, b.text);
    const ok = spawnSync(process.env.DCMS_BIN ?? 'build/dcmsd', ['evidence', 'verify', bf], {encoding: 'utf8'});
    assert.equal(ok.status, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /^PASS audit: every event concerns this contract, its enclaves or its [1-9]\d* training jobs \(0 do not\)$/m);
    assert.match(ok.stdout, /^PASS receipts: [4-9]\d* receipts/m);
    // a key release receipt presented as another job's is refused
    const forged = JSON.parse(b.text);
    const kr = forged.receipts.find((r) => r.event.action === 'training.key_release');
    kr.event.resource_id = '00000000-0000-7000-8000-000000000000';
    fs.writeFileSync(bf, JSON.stringify(forged));
    const bad = spawnSync(process.env.DCMS_BIN ?? 'build/dcmsd', ['evidence', 'verify', bf], {encoding: 'utf8'});
    assert.equal(bad.status, 1, bad.stdout);
    assert.match(bad.stdout, /^FAIL receipts/m);
    const v = await t.call('GET', '/api/v1/audit/verify', {headers: bearer(t.admin)});
    assert.equal(v.status, 200);
    assert.equal(v.json.ok, true, v.text);
  });

  test('receipts: the job links its key release, the download its event; the parties read and verify them', async () => {
    assert.ok(job, 'needs the first job');
    const key = (await t.call('GET', '/api/v1/audit/public-key')).json.public_key;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcms-rc-'));
    const kr = (await getJob(consumer, job.id)).json.key_release;
    assert.equal(kr.receipt, `/api/v1/audit/events/${kr.audit_event_id}/receipt`);
    const res = await fetch(`${t.server.url}/api/v1/trainings/${job.id}/model`, {headers: bearer(consumer.token)});
    checkResponse('GET', '/api/v1/trainings/{id}/model', res, 'binary');
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    const dl = res.headers.get('x-dcms-audit-event');
    assert.equal(res.headers.get('link'), `</api/v1/audit/events/${dl}/receipt>; rel="receipt"`);
    for (const [link, action, readers] of [[kr.receipt, 'training.key_release', [consumer, provider]],
                                           [`/api/v1/audit/events/${dl}/receipt`, 'training.model_download',
                                            [consumer, provider]]]) {
      for (const who of readers) {
        const r = await readReceipt(t, who.token, link);
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.event.id, eventOf(link));
        assert.equal(r.json.event.action, action);
        assert.equal(r.json.event.resource_id, job.id);
        const ok = verifyReceipt(dir, 'r.json', r.text, key);
        assert.equal(ok.status, 0, ok.out);
        const bad = verifyReceipt(dir, 'bad.json', tampered(r.text), key);
        assert.equal(bad.status, 1, bad.out);
      }
      const s = await readReceipt(t, stranger.token, link);
      assert.equal(s.status, 404, s.text);
    }
    fs.rmSync(dir, {recursive: true, force: true});
  });

  test('refusals: non-party, provider, model type, scope, suspended or expired contract, bad body', async () => {
    const c = active ?? await t.inState({provider, consumer}, 'active', {terms: terms()});
    let r = await start(stranger, c, {datasets: [ds.id], ...LR});
    assert.equal(r.status, 404, r.text);
    r = await start(provider, c, {datasets: [ds.id], ...LR});
    assert.equal(r.status, 403, r.text);
    r = await start(consumer, c, {datasets: [ds.id], ...LR, model: 'mlp', hidden: [16]});
    assert.equal(r.status, 422, r.text);
    assert.ok(r.json.error.details.some((d) => d.field === 'model'), r.text);
    r = await start(consumer, c, {datasets: [ds2.id], ...LR});
    assert.equal(r.status, 422, r.text);
    assert.ok(r.json.error.details.some((d) => d.field === 'datasets[0]'), r.text);
    r = await start(consumer, c, {datasets: [ds.id], ...LR, epochs: 0, split: {method: 'modulo', folds: 5,
                                                                                holdout_fold: 5}, bogus: 1});
    assert.equal(r.status, 422, r.text);
    for (const f of ['epochs', 'split.holdout_fold', 'bogus'])
      assert.ok(r.json.error.details.some((d) => d.field === f), `${f}: ${r.text}`);
    const s = await t.inState({provider, consumer}, 'suspended', {terms: terms()});
    r = await start(consumer, s, {datasets: [ds.id], ...LR});
    assert.equal(r.status, 409, r.text);
    // an Active contract past its expires_at reads expired at once
    const x = await t.inState({provider, consumer}, 'active', {terms: terms()});
    t.sql(`UPDATE contracts SET expires_at = '2020-01-01T00:00:00.000000Z' WHERE id = '${x.id}'`);
    r = await start(consumer, x, {datasets: [ds.id], ...LR});
    assert.equal(r.status, 409, r.text);
    assert.match(r.json.error.message, /expired/);
  });

  test('two concurrent starts for the last run: exactly one is accepted', async () => {
    const base = terms();
    const c = await t.inState({provider, consumer}, 'active',
                              {terms: {...base, usage: {...base.usage, max_training_runs: 1}}});
    const body = {datasets: [ds.id], ...LR, epochs: 5};
    const rs = await Promise.all([start(consumer, c, body), start(consumer, c, body)]);
    assert.deepEqual(rs.map((r) => r.status).sort(), [202, 409], rs.map((r) => r.text).join('\n'));
    const won = rs.find((r) => r.status === 202).json;
    const j = await waitFinal(won.id);
    assert.equal(j.state, 'succeeded', JSON.stringify(j));
    const again = await start(consumer, c, body);
    assert.equal(again.status, 409, again.text);
  });

  test('a job that fails before its key release gives its run back; one after the release keeps it', async () => {
    const base = terms();
    const c = await t.inState({provider, consumer}, 'active',
                              {terms: {...base, usage: {...base.usage, max_training_runs: 1}}});
    const body = {datasets: [ds.id], ...LR, epochs: 5};
    // cancelled while still queued or provisioning: no key released, the run comes back
    const a = await start(consumer, c, body);
    assert.equal(a.status, 202, a.text);
    const x = await t.call('POST', `/api/v1/trainings/${a.json.id}/cancel`, {headers: bearer(consumer.token)},
                           '/api/v1/trainings/{id}/cancel');
    assert.equal(x.status, 200, x.text);
    const ja = await waitFinal(a.json.id);
    assert.equal(ja.data_released, false);
    const ev = await t.auditEvents(`action=training.cancelled&resource_id=${a.json.id}`);
    assert.equal(ev[0].details.run_returned, true, JSON.stringify(ev[0]));
    // the run can be taken again; this job gets its key, so it keeps the run even though it fails
    const b = await start(consumer, c, {...body, epochs: 100000});
    assert.equal(b.status, 202, b.text);
    await waitFor(b.json.id, (j) => j.state === 'running' || FINAL.has(j.state));
    const y = await t.call('POST', `/api/v1/trainings/${b.json.id}/cancel`, {headers: bearer(consumer.token)},
                           '/api/v1/trainings/{id}/cancel');
    assert.equal(y.status, 200, y.text);
    assert.equal((await waitFinal(b.json.id)).data_released, true);
    const again = await start(consumer, c, body);
    assert.equal(again.status, 409, again.text);
  });

  test('cancel: the job stops, its enclave is terminated, and it cannot be cancelled twice', async () => {
    const c = active ?? await t.inState({provider, consumer}, 'active', {terms: terms()});
    const r = await start(consumer, c, {datasets: [ds.id], ...LR, epochs: 100000});
    assert.equal(r.status, 202, r.text);
    const running = await waitFor(r.json.id, (j) => j.state === 'running' || FINAL.has(j.state));
    assert.equal(running.state, 'running', JSON.stringify(running));
    const x = await t.call('POST', `/api/v1/trainings/${r.json.id}/cancel`, {headers: bearer(consumer.token)},
                           '/api/v1/trainings/{id}/cancel');
    assert.equal(x.status, 200, x.text);
    assert.equal(x.json.state, 'cancelled');
    assert.equal(x.json.reason_code, 'cancelled_by_consumer');
    const y = await t.call('POST', `/api/v1/trainings/${r.json.id}/cancel`, {headers: bearer(consumer.token)},
                           '/api/v1/trainings/{id}/cancel');
    assert.equal(y.status, 409, y.text);
    const p = await t.call('POST', `/api/v1/trainings/${r.json.id}/cancel`, {headers: bearer(provider.token)},
                           '/api/v1/trainings/{id}/cancel');
    assert.equal(p.status, 403, p.text);
    const end = Date.now() + 20000;
    for (;;) {
      const e = await t.call('GET', `/api/v1/enclaves/${running.enclave_id}`, {headers: bearer(provider.token)},
                             '/api/v1/enclaves/{id}');
      assert.equal(e.status, 200, e.text);
      if (e.json.status === 'terminated') break;
      assert.ok(Date.now() < end, `enclave still ${e.json.status}`);
      await new Promise((res) => setTimeout(res, 100));
    }
    const m = await t.call('GET', `/api/v1/trainings/${r.json.id}/model`, {headers: bearer(consumer.token)},
                           '/api/v1/trainings/{id}/model');
    assert.equal(m.status, 409, m.text);
  });

  test('a contract suspended during a job cancels it', async () => {
    const c = await t.inState({provider, consumer}, 'active', {terms: terms()});
    const r = await start(consumer, c, {datasets: [ds.id], ...LR, epochs: 100000});
    assert.equal(r.status, 202, r.text);
    await waitFor(r.json.id, (j) => j.state === 'running' || FINAL.has(j.state));
    const s = await t.op(provider, c, 'suspend', {reason: 'audit pending'});
    assert.equal(s.status, 200, s.text);
    const j = await waitFinal(r.json.id, 20000);
    assert.equal(j.state, 'cancelled', JSON.stringify(j));
    assert.equal(j.reason_code, 'contract_suspended');
  });

  test('a model above terms.output.max_model_bytes is refused and not stored', async () => {
    const c = await t.inState({provider, consumer}, 'active', {terms: terms({output: {max_model_bytes: 100}})});
    const r = await start(consumer, c, {datasets: [ds.id], ...LR, epochs: 5});
    assert.equal(r.status, 202, r.text);
    const j = await waitFinal(r.json.id);
    assert.equal(j.state, 'failed', JSON.stringify(j));
    assert.equal(j.reason_code, 'model_too_large', JSON.stringify(j));
    assert.equal(j.result, null);
    const m = await t.call('GET', `/api/v1/trainings/${j.id}/model`, {headers: bearer(consumer.token)},
                           '/api/v1/trainings/{id}/model');
    assert.equal(m.status, 409, m.text);
  });

  test('a trainer image changed by one byte is refused before any key is released', async () => {
    const c = await t.inState({provider, consumer}, 'active', {terms: terms()});
    const img = path.join(imagesDir, 'dcms-trainer');
    const good = fs.readFileSync(img);
    const bad = Buffer.from(good);
    bad[bad.length - 1] ^= 1;
    fs.writeFileSync(img, bad);
    try {
      const r = await start(consumer, c, {datasets: [ds.id], ...LR, epochs: 5});
      assert.equal(r.status, 202, r.text);
      const j = await waitFinal(r.json.id);
      assert.equal(j.state, 'failed', JSON.stringify(j));
      assert.equal(j.reason_code, 'provisioning_failed', JSON.stringify(j));
      assert.match(j.reason, /attest|PCR|pcr/i);
      assert.equal(j.data_released, false);
      const rel = await t.auditEvents(`action=training.key_release&resource_id=${j.id}`);
      assert.deepEqual(rel, []);
    } finally {
      fs.writeFileSync(img, good);
    }
  });
});

describe('restart', () => {
  test('a queued job survives a restart; the one in flight fails with its reason', async () => {
    // Two dcmsd processes, one after the other, on one data directory and one store.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcms-train-restart-'));
    let db = null;
    const env = {DCMS_DATA_DIR: dir, DCMS_ENCLAVE_IMAGES_DIR: imagesDir, DCMS_TRAINING_WORKERS: '1'};
    if (backend === 'postgres') {
      db = `dcms_t_${randomBytes(6).toString('hex')}`;
      psqlAdmin(`CREATE DATABASE ${db}`);
      const u = new URL(process.env.DCMS_TEST_PG_URL);
      u.pathname = `/${db}`;
      env.DCMS_DATABASE_URL = u.toString();
    }
    let a, b;
    try {
      a = await contractsContext(env);
      const p = await a.parties();
      const prev = t;
      t = a;
      [provider, consumer] = [p.provider, p.consumer];
      const d = await dataset();
      const base = terms();
      const c = await a.inState(p, 'active', {terms: {...base, data_access: {datasets: [d.id],
                                                                             permissions: ['train']}}});
      const long = await start(consumer, c, {datasets: [d.id], ...LR, epochs: 100000});
      assert.equal(long.status, 202, long.text);
      await waitFor(long.json.id, (j) => j.state === 'running');
      const queued = await start(consumer, c, {datasets: [d.id], ...LR, epochs: 5});
      assert.equal(queued.status, 202, queued.text);
      await a.server.stop();
      a = null;
      t = prev;
      b = await startServer({env});
      const api = client(b);
      const token = (await login(b, p.consumer.email, 'correct horse battery staple')).access_token;
      const job = async (id) => (await api.call('GET', `/api/v1/trainings/${id}`, {headers: bearer(token)})).json;
      const j1 = await job(long.json.id);
      assert.equal(j1.state, 'failed', JSON.stringify(j1));
      assert.match(j1.reason_code, /^node_(stopped|restarted)$/);
      const end = Date.now() + 60000;
      let j2;
      while (!FINAL.has((j2 = await job(queued.json.id)).state) && Date.now() < end)
        await new Promise((res) => setTimeout(res, 100));
      assert.equal(j2.state, 'succeeded', JSON.stringify(j2));
    } finally {
      await a?.server.stop();
      await b?.stop();
      fs.rmSync(dir, {recursive: true, force: true});
      if (db) psqlAdmin(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
    }
  });
});

describe('hostile trainers', () => {
  /** A server whose training image is `image` (tests/workloads), with parties, a dataset, a contract. */
  async function rogue(image, fn, meanwhile) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcms-rogue-'));
    const bin = path.join(path.dirname(path.resolve(process.env.DCMS_BIN ?? 'build/dcmsd')), 'tests/workloads', image);
    fs.copyFileSync(bin, path.join(dir, image));
    fs.chmodSync(path.join(dir, image), 0o755);
    const saved = [t, provider, consumer, ds];
    try {
      t = await contractsContext({DCMS_ENCLAVE_IMAGES_DIR: dir, DCMS_TRAINING_IMAGE: image});
      ({provider, consumer} = await t.parties());
      ds = await dataset();
      const c = await t.inState({provider, consumer}, 'active', {terms: terms()});
      const r = await start(consumer, c, {datasets: [ds.id], ...LR, epochs: 5});
      assert.equal(r.status, 202, r.text);
      if (meanwhile) await meanwhile(r.json.id);
      await fn(await waitFinal(r.json.id, 60000, provider));
    } finally {
      await t?.server.stop();
      [t, provider, consumer, ds] = saved;
      fs.rmSync(dir, {recursive: true, force: true});
    }
  }

  test('a caller suspended between the start and the key release: the job fails, no key is released',
       async () => {
    await rogue('wl_trainer_slow', async (j) => {
      assert.equal(j.state, 'failed', JSON.stringify(j));
      assert.equal(j.reason_code, 'caller_not_authorised', JSON.stringify(j));
      assert.match(j.reason, /suspended|not active/);
      assert.equal(j.data_released, false);
      assert.deepEqual(await t.auditEvents(`action=training.key_release&resource_id=${j.id}`), []);
      const f = await t.auditEvents(`action=training.failed&resource_id=${j.id}`);
      assert.equal(f[0].details.reason_code, 'caller_not_authorised');
      assert.equal(f[0].details.run_returned, true);
    }, async (id) => {
      // the trainer answers the training service's attestation after 3 s: suspend the caller meanwhile
      await waitFor(id, (j) => j.state === 'attesting' || FINAL.has(j.state));
      const s = await t.call('POST', `/api/v1/identities/${consumer.id}/suspend`,
                             {headers: bearer(t.admin), json: {reason: 'left the lab'}},
                             '/api/v1/identities/{id}/suspend');
      assert.equal(s.status, 200, s.text);
    });
  });

  test('a replayed attestation document (stale nonce) gets no key', async () => {
    await rogue('wl_trainer_replay', async (j) => {
      assert.equal(j.state, 'failed', JSON.stringify(j));
      assert.equal(j.reason_code, 'attestation_failed', JSON.stringify(j));
      assert.match(j.reason, /nonce/);
      assert.equal(j.data_released, false);
      assert.deepEqual(await t.auditEvents(`action=training.key_release&resource_id=${j.id}`), []);
    });
  });

  test('a result whose attestation does not bind its hash is refused and nothing is stored', async () => {
    await rogue('wl_trainer_badbind', async (j) => {
      assert.equal(j.state, 'failed', JSON.stringify(j));
      assert.equal(j.reason_code, 'result_attestation_failed', JSON.stringify(j));
      assert.equal(j.data_released, true);
      assert.equal(j.result, null);
      const m = await t.call('GET', `/api/v1/trainings/${j.id}/model`, {headers: bearer(consumer.token)},
                             '/api/v1/trainings/{id}/model');
      assert.equal(m.status, 409, m.text);
      const e = await t.call('GET', `/api/v1/enclaves/${j.enclave_id}`, {headers: bearer(provider.token)},
                             '/api/v1/enclaves/{id}');
      assert.equal(e.json.status, 'terminated', e.text);
    });
  });
});

describe('shutdown', () => {
  test('a stream open on a running job ends at once on SIGTERM: the shutdown does not wait for it', async () => {
    const saved = [t, provider, consumer, ds];
    try {
      // a long drain deadline: a stream that held the drain would take all of it
      t = await contractsContext({DCMS_ENCLAVE_IMAGES_DIR: imagesDir, DCMS_SHUTDOWN_TIMEOUT_MS: '20000',
                                  DCMS_TRAINING_WORKERS: '1', DCMS_TRAINING_EVENT_HEARTBEAT_MS: '1000'});
      ({provider, consumer} = await t.parties());
      ds = await dataset();
      const c = await t.inState({provider, consumer}, 'active', {terms: terms()});
      const r = await start(consumer, c, {datasets: [ds.id], ...LR, epochs: 100000});
      assert.equal(r.status, 202, r.text);
      await waitFor(r.json.id, (j) => j.state === 'running' || FINAL.has(j.state));
      const s = await openStream(consumer, r.json.id);
      assert.equal(s.status, 200);
      await until(() => s.events.some((e) => e.event === 'progress'), 20000, 'progress on the stream');
      // the one worker is busy: a second job waits queued, and its stream has nothing to say
      const q = await start(consumer, c, {datasets: [ds.id], ...LR, epochs: 5});
      assert.equal(q.status, 202, q.text);
      const idle = await openStream(consumer, q.json.id);
      assert.equal(idle.status, 200);
      // heartbeats (DCMS_TRAINING_EVENT_HEARTBEAT_MS=1000 here) while idle
      await until(() => idle.comments >= 2, 10000, 'heartbeats');
      assert.deepEqual(idle.events.map((e) => e.data.state), ['queued']);
      const t0 = Date.now();
      const code = await t.server.stop('SIGTERM', 30000);
      const took = Date.now() - t0;
      assert.equal(code, 0);
      assert.ok(took < 8000, `dcmsd took ${took} ms to stop with two streams open`);
      await Promise.all([s.done, idle.done]);
      assert.equal(s.ended, true, 'the stream did not end');
      assert.equal(idle.ended, true, 'the idle stream did not end');
    } finally {
      await t?.server.stop();
      [t, provider, consumer, ds] = saved;
    }
  });
});
