// bench/bench-training-jobs.mjs — the training service's overhead per job
// (issue 16): from the POST to the `running` state and from the trainer's
// last epoch to `succeeded`, p50 and p99 over DCMS_BENCH_TRAINING_JOBS jobs
// run one after the other, as a client sees it on one open event stream
// (the time the POST was sent, the arrival of each pushed event), next to
// the server's own timestamps of the states, and the mean of each step of
// the worker (the "job ... steps (ms)" log line of training_runner.c).
//
// Run by bench/bench-training-jobs.sh (`make bench`); starts its own dcmsd
// (DCMS_BIN, default build/dcmsd) on 127.0.0.1 with a fresh SQLite store
// (or DCMS_TEST_BACKEND=postgres with DCMS_TEST_PG_URL), one worker.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {bearer, contractsContext, validTerms} from '../tests/api/lib/contracts.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const JOBS = Number(process.env.DCMS_BENCH_TRAINING_JOBS ?? 20);
const EPOCHS = Number(process.env.DCMS_BENCH_TRAINING_EPOCHS ?? 50);
if (!Number.isInteger(JOBS) || JOBS < 1 || JOBS > 500) throw new Error('DCMS_BENCH_TRAINING_JOBS must be 1..500');
if (!Number.isInteger(EPOCHS) || EPOCHS < 1 || EPOCHS > 10000) throw new Error('DCMS_BENCH_TRAINING_EPOCHS must be 1..10000');
const CSV = fs.readFileSync(path.join(here, '../tests/data/breast_cancer.csv'));
const header = CSV.toString('latin1').split('\n')[0].split(',');

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};
const ms = (a, b) => Date.parse(b) - Date.parse(a);

const t = await contractsContext({DCMS_TRAINING_WORKERS: '1', DCMS_ACCESS_LOG: 'false'});
try {
  const {provider, consumer} = await t.parties();
  const schema = {columns: header.map((name) => ({name, type: name === 'diagnosis' ? 'integer' : 'number'})),
                  label: 'diagnosis', label_values: ['0', '1']};
  const d = await t.call('POST', '/api/v1/datasets', {headers: bearer(provider.token), json: {name: 'bench', schema}});
  assert.equal(d.status, 201, d.text);
  const up = await t.call('PUT', `/api/v1/datasets/${d.json.id}/content`,
                          {headers: {...bearer(provider.token), 'Content-Type': 'text/csv'}, body: CSV});
  assert.equal(up.status, 200, up.text);
  const base = validTerms();
  const c = await t.inState({provider, consumer}, 'active', {terms: {
    ...base, data_access: {datasets: [d.json.id], permissions: ['train']},
    security: {...base.security, encryption_level: 'standard'},
    usage: {...base.usage, allowed_model_types: ['logistic_regression'], max_training_runs: JOBS + 1}}});
  const body = {datasets: [d.json.id], label: 'diagnosis', model: 'logistic_regression', optimizer: 'sgd',
                epochs: EPOCHS, batch_size: 0, learning_rate: 0.1, l2: 0, seed: 1,
                split: {method: 'modulo', folds: 5, holdout_fold: 4}};
  const toRunning = [], tail = [], srvRunning = [], srvTail = [], pickup = [];
  for (let i = 0; i < JOBS; i++) {
    const sent = performance.now();
    const r = await t.call('POST', `/api/v1/contracts/${c.id}/trainings`, {headers: bearer(consumer.token), json: body});
    assert.equal(r.status, 202, r.text);
    const res = await fetch(`${t.server.url}/api/v1/trainings/${r.json.id}/events`, {headers: bearer(consumer.token)});
    assert.equal(res.status, 200);
    const seen = {};
    const dec = new TextDecoder();
    let text = '';
    for await (const chunk of res.body) {
      const now = performance.now();
      text += dec.decode(chunk, {stream: true});
      let k;
      while ((k = text.indexOf('\n\n')) >= 0) {
        const block = text.slice(0, k);
        text = text.slice(k + 2);
        const ev = Object.fromEntries(block.split('\n').filter((l) => l.indexOf(': ') > 0)
          .map((l) => [l.slice(0, l.indexOf(': ')), l.slice(l.indexOf(': ') + 2)]));
        if (!ev.event || !ev.data) continue;
        const data = JSON.parse(ev.data);
        if (ev.event === 'state') seen[data.state] ??= now;
        if (ev.event === 'progress' && data.epoch === EPOCHS) seen.last_epoch ??= now;
      }
    }
    const j = (await t.call('GET', `/api/v1/trainings/${r.json.id}`, {headers: bearer(consumer.token)})).json;
    assert.equal(j.state, 'succeeded', JSON.stringify(j));
    toRunning.push(seen.running - sent);
    tail.push(seen.succeeded - seen.last_epoch);
    srvRunning.push(ms(j.timestamps.queued, j.timestamps.running));
    srvTail.push(ms(j.timestamps.validating, j.timestamps.finished));
    pickup.push(ms(j.timestamps.queued, j.timestamps.provisioning));
  }
  // the worker's steps, averaged over the jobs
  const sums = new Map();
  let n = 0;
  for (const l of t.server.logs()) {
    const m = /^job \S+ steps \(ms\): (.*)$/.exec(l.msg ?? '');
    if (!m) continue;
    n++;
    for (const kv of m[1].split(' ')) {
      const [k, v] = kv.split('=');
      sums.set(k, (sums.get(k) ?? 0) + Number(v));
    }
  }
  const f = (x) => x.toFixed(1).padStart(7);
  const line = (name, xs, goal) => {
    const p50 = pct(xs, 50);
    console.log(`  ${name.padEnd(44)} p50 ${f(p50)} ms  p99 ${f(pct(xs, 99))} ms` +
                (goal ? `  (${p50 <= goal ? 'meets' : 'misses'} the p50 <= ${goal} ms goal)` : ''));
  };
  console.log(`bench-training-jobs: ${JOBS} jobs one after the other, logistic regression x${EPOCHS} epochs, ` +
              `backend ${t.server.backend}, one worker`);
  line('POST -> running (client, pushed event)', toRunning, 100);
  line('last epoch -> succeeded (client, pushed events)', tail, 100);
  line('queued -> running (server timestamps)', srvRunning);
  line('queued -> provisioning (queue pickup)', pickup);
  line('validating -> succeeded (server timestamps)', srvTail);
  console.log(`  worker steps, mean ms over ${n} jobs: ` +
              [...sums].map(([k, v]) => `${k} ${(v / n).toFixed(1)}`).join(', '));
} finally {
  await t.server.stop();
}
