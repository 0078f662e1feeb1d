// Two dcmsd on one PostgreSQL behind nginx (tests/multinode/nginx.conf.in):
// contracts created through both nodes and the load balancer and read
// through the other; an enclave created on node A and suspended, resumed,
// attested and terminated through node B (relayed to A, its owner); a
// training job run by A's worker (B runs none) started, read and cancelled
// through B (A's runner sees the cancel in the store and stops); then A
// killed: B takes the periodic-jobs lease over within the lease time, runs
// the contract expiry job, marks A's enclave lost, and the audit log keeps
// verifying. PostgreSQL only (DCMS_TEST_BACKEND=postgres): SQLite is one
// node by construction.

import assert from 'node:assert/strict';
import {spawn, execFileSync} from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import {after, before, describe, test} from 'node:test';
import {checkResponse} from '../api/lib/openapi.mjs';
import {client} from '../api/lib/http.mjs';
import {backend, dcmsBin, repoRoot, startServer} from '../api/lib/server.mjs';
import {bearer, contractsContext, templateOf, validTerms} from '../api/lib/contracts.mjs';

const LEASE_MS = 1500;
const skip = backend !== 'postgres' && 'the multi-node setup needs DCMS_TEST_BACKEND=postgres';
const workload = path.join(path.dirname(dcmsBin), 'workload', 'dcms-workload');
const trainer = path.join(path.dirname(dcmsBin), 'workload', 'dcms-trainer');
const CSV = fs.readFileSync(path.join(repoRoot, 'tests/data/breast_cancer.csv'));
const header = CSV.toString('latin1').split('\n')[0].split(',');
const SCHEMA = {
  columns: header.map((name) => (name === 'diagnosis' ? {name, type: 'integer'} : {name, type: 'number'})),
  label: 'diagnosis',
  label_values: ['0', '1'],
};

let ctx, a, b, lb, nginx, nginxDir, imagesDir;
let apiA, apiB, apiLB;

const nodeEnv = (id, workers) => ({
  DCMS_NODE_ID: id,
  DCMS_TRAINING_WORKERS: String(workers),
  DCMS_NODE_LEASE_MS: String(LEASE_MS),
  DCMS_CONTRACT_EXPIRY_INTERVAL_S: '1',
  DCMS_ENCLAVE_IMAGES_DIR: imagesDir,
  DCMS_ENCLAVE_RECONCILE_MS: '300',
  DCMS_AUDIT_REFUSALS_PER_MINUTE: '100000',
});

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const {port} = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

async function waitFor(what, fn, timeoutMs) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function startNginx(ports) {
  nginxDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcms-lb-'));
  const v = execFileSync('/usr/sbin/nginx', ['-V'], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe']}) +
            '';
  let temp = `    client_body_temp_path ${nginxDir}/client_body;`;
  for (const m of ['proxy', 'fastcgi', 'uwsgi', 'scgi']) {
    if (!v.includes(`--without-http_${m}_module`)) temp += `\n    ${m}_temp_path ${nginxDir}/${m};`;
  }
  const port = await freePort();
  const conf = fs.readFileSync(path.join(repoRoot, 'tests/multinode/nginx.conf.in'), 'utf8')
      .replaceAll('@TMP@', nginxDir).replaceAll('@PORT@', String(port))
      .replaceAll('@USER@', process.getuid() === 0 ? 'user root;' : '')
      .replaceAll('@TEMP_PATHS@', temp)
      .replaceAll('@UPSTREAMS@',
                  ports.map((p) => `        server 127.0.0.1:${p} max_fails=1 fail_timeout=2s;`).join('\n'));
  fs.writeFileSync(path.join(nginxDir, 'nginx.conf'), conf);
  nginx = spawn('/usr/sbin/nginx', ['-p', `${nginxDir}/`, '-c', `${nginxDir}/nginx.conf`, '-e',
                                    `${nginxDir}/error.log`], {stdio: 'ignore'});
  const url = `http://127.0.0.1:${port}`;
  await waitFor('nginx', async () => {
    try {
      return (await fetch(`${url}/healthz`, {signal: AbortSignal.timeout(1000)})).status === 200;
    } catch {
      return false;
    }
  }, 10000);
  return {url};
}

async function call(api, method, p, opts = {}, template) {
  const r = await api.call(method, p, opts);
  checkResponse(method, template ?? templateOf(p), r.res, r.json ?? r.text);
  return r;
}

const nodes = async (api) => {
  const r = await call(api, 'GET', '/api/v1/nodes', {headers: bearer(ctx.admin)});
  assert.equal(r.status, 200, JSON.stringify(r.json));
  return r.json;
};

before(async () => {
  if (skip) return;
  imagesDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcms-images-'));
  fs.copyFileSync(workload, path.join(imagesDir, 'dcms-workload'));
  fs.copyFileSync(trainer, path.join(imagesDir, 'dcms-trainer'));
  fs.chmodSync(path.join(imagesDir, 'dcms-trainer'), 0o755);
  ctx = await contractsContext(nodeEnv('node-a', 1));
  a = ctx.server;
  const db = new URL(process.env.DCMS_TEST_PG_URL);
  db.pathname = `/${a.database}`;
  // Per node: the data directory, the node id, the enclaves it runs. Shared:
  // the store, the keyring (it seals the JWT keys in the store) and the audit key.
  b = await startServer({
    env: {
      ...nodeEnv('node-b', 0), // every training runs on node-a
      DCMS_DATABASE_URL: db.toString(),
      DCMS_KEYS_FILE: path.join(a.dataDir, 'keys', 'keyring'),
      DCMS_AUDIT_KEY_FILE: path.join(a.dataDir, 'audit', 'ed25519.key'),
      DCMS_LOGIN_MAX_FAILURES_PER_IP: '100000',
    },
  });
  lb = await startNginx([a.port, b.port]);
  apiA = client(a);
  apiB = client(b);
  apiLB = client(lb);
});

after(() => {
  if (process.env.MULTINODE_DEBUG && b) process.stderr.write(b.stderr().split('\n').filter((l) => /nodes|enclaves|warn|error/.test(l)).join('\n'));
  if (nginx && nginx.exitCode === null) nginx.kill('SIGTERM');
  if (nginxDir) fs.rmSync(nginxDir, {recursive: true, force: true});
  if (imagesDir) fs.rmSync(imagesDir, {recursive: true, force: true});
});

describe('two nodes on one PostgreSQL behind nginx', {skip}, () => {
  let parties, enclaveA, lostEnclave, expiring;

  test('both nodes are alive; the first one leads', async () => {
    const viaB = await nodes(apiB);
    assert.equal(viaB.self, 'node-b');
    assert.equal(viaB.leader, 'node-a');
    const states = Object.fromEntries(viaB.nodes.map((n) => [n.id, n.state]));
    assert.deepEqual(states, {'node-a': 'alive', 'node-b': 'alive'});
    const urls = Object.fromEntries(viaB.nodes.map((n) => [n.id, n.url]));
    assert.equal(urls['node-a'], a.url);
    assert.equal(urls['node-b'], b.url);
    // The load balancer reaches both.
    const seen = new Set();
    for (let i = 0; i < 6; i++) seen.add((await nodes(apiLB)).self);
    assert.deepEqual([...seen].sort(), ['node-a', 'node-b']);
  });

  test('contracts created through A, B and the balancer are read through the other', async () => {
    parties = await ctx.parties();
    const made = [];
    for (const [api, other] of [[apiA, apiB], [apiB, apiA], [apiLB, apiB], [apiLB, apiA]]) {
      const r = await call(api, 'POST', '/api/v1/contracts', {
        headers: bearer(parties.provider.token),
        json: {title: `multi-node ${made.length}`, description: 'shared store',
               provider_id: parties.provider.id, consumer_id: parties.consumer.id, terms: validTerms()},
      });
      assert.equal(r.status, 201, JSON.stringify(r.json));
      const g = await call(other, 'GET', `/api/v1/contracts/${r.json.id}`,
                           {headers: bearer(parties.consumer.token)});
      assert.equal(g.status, 200);
      assert.equal(g.json.terms_hash, r.json.terms_hash);
      assert.equal(g.res.headers.get('etag'), r.res.headers.get('etag'));
      made.push(r.json.id);
    }
    // A change made on B is seen on A with the new version (one store, optimistic concurrency).
    const id = made[0];
    const cur = await call(apiA, 'GET', `/api/v1/contracts/${id}`, {headers: bearer(parties.provider.token)});
    const put = await call(apiB, 'PUT', `/api/v1/contracts/${id}`, {
      headers: {...bearer(parties.provider.token), 'If-Match': cur.res.headers.get('etag')},
      json: {title: 'renamed on B', provider_id: parties.provider.id, consumer_id: parties.consumer.id,
             terms: cur.json.terms},
    });
    assert.equal(put.status, 200, JSON.stringify(put.json));
    const again = await call(apiA, 'GET', `/api/v1/contracts/${id}`, {headers: bearer(parties.provider.token)});
    assert.equal(again.json.title, 'renamed on B');
    const stale = await call(apiA, 'PUT', `/api/v1/contracts/${id}`, {
      headers: {...bearer(parties.provider.token), 'If-Match': cur.res.headers.get('etag')},
      json: {title: 'stale', provider_id: parties.provider.id, consumer_id: parties.consumer.id,
             terms: cur.json.terms},
    });
    assert.equal(stale.status, 412);
  });

  test('an enclave on A is read, suspended, resumed, attested and terminated through B', async () => {
    const token = parties.provider.token;
    const mk = async () => {
      const r = await call(apiA, 'POST', '/api/v1/enclaves', {
        headers: bearer(token),
        json: {name: 'on node a', configuration: {image: 'dcms-workload', cpu_cores: 1, memory_mb: 256,
                                                 storage_gb: 1}},
      }, '/api/v1/enclaves');
      assert.equal(r.status, 201, JSON.stringify(r.json));
      assert.equal(r.json.status, 'running', r.json.status_reason);
      assert.equal(r.json.runtime.node, 'node-a');
      return r.json;
    };
    enclaveA = await mk();
    lostEnclave = await mk();
    const T = '/api/v1/enclaves/{id}';
    const g = await call(apiB, 'GET', `/api/v1/enclaves/${enclaveA.id}`, {headers: bearer(token)}, T);
    assert.equal(g.status, 200);
    assert.equal(g.json.runtime.pid, enclaveA.runtime.pid);
    // B's reconcile leaves A's workloads alone (it cannot see them).
    await new Promise((r) => setTimeout(r, 700));
    const still = await call(apiB, 'GET', `/api/v1/enclaves/${enclaveA.id}`, {headers: bearer(token)}, T);
    assert.equal(still.json.status, 'running', still.json.status_reason);
    for (const [what, status] of [['suspend', 'suspended'], ['resume', 'running'], ['attest', 'running']]) {
      const r = await call(apiB, 'POST', `/api/v1/enclaves/${enclaveA.id}/${what}`,
                           {headers: bearer(token), json: {}}, `${T}/${what}`);
      assert.equal(r.status, 200, `${what}: ${JSON.stringify(r.json)}`);
      assert.equal(r.json.status, status);
      assert.ok(r.res.headers.get('etag'));
    }
    // The relayed request is authorized by the owner: another provider gets 404 through B too.
    const other = await ctx.identity({roles: ['provider']});
    const denied = await call(apiB, 'POST', `/api/v1/enclaves/${enclaveA.id}/suspend`,
                              {headers: bearer(other.token), json: {}}, `${T}/suspend`);
    assert.equal(denied.status, 404);
    const t = await call(apiB, 'POST', `/api/v1/enclaves/${enclaveA.id}/terminate`,
                         {headers: bearer(token), json: {reason: 'done via node b'}}, `${T}/terminate`);
    assert.equal(t.status, 200, JSON.stringify(t.json));
    assert.equal(t.json.status, 'terminated');
    assert.throws(() => process.kill(enclaveA.runtime.pid, 0), {code: 'ESRCH'});
  });

  test('a training running on A is read and cancelled through B', async () => {
    const {provider, consumer} = parties;
    const c = await call(apiA, 'POST', '/api/v1/datasets', {
      headers: bearer(provider.token), json: {name: 'breast cancer', description: 'UCI diagnostic', schema: SCHEMA},
    }, '/api/v1/datasets');
    assert.equal(c.status, 201, JSON.stringify(c.json));
    const up = await call(apiB, 'PUT', `/api/v1/datasets/${c.json.id}/content`, {
      headers: {...bearer(provider.token), 'Content-Type': 'text/csv'}, body: CSV,
    }, '/api/v1/datasets/{id}/content');
    assert.equal(up.status, 200, JSON.stringify(up.json));
    const base = validTerms();
    const active = await ctx.inState(parties, 'active', {terms: {
      ...base, data_access: {datasets: [c.json.id], permissions: ['train']},
      security: {...base.security, encryption_level: 'standard'},
      usage: {...base.usage, allowed_model_types: ['logistic_regression']},
    }});
    const r = await call(apiB, 'POST', `/api/v1/contracts/${active.id}/trainings`, {
      headers: bearer(consumer.token),
      json: {datasets: [c.json.id], label: 'diagnosis', model: 'logistic_regression', optimizer: 'sgd',
             epochs: 100000, batch_size: 1, learning_rate: 0.1, l2: 0, seed: 1,
             split: {method: 'modulo', folds: 5, holdout_fold: 4}},
    }, '/api/v1/contracts/{id}/trainings');
    assert.equal(r.status, 202, JSON.stringify(r.json));
    const T = '/api/v1/trainings/{id}';
    const running = await waitFor('the job to run on node-a', async () => {
      const g = await call(apiB, 'GET', `/api/v1/trainings/${r.json.id}`, {headers: bearer(consumer.token)}, T);
      assert.ok(!['failed', 'succeeded', 'cancelled'].includes(g.json.state), JSON.stringify(g.json));
      return g.json.state === 'running' && g.json;
    }, 30000);
    assert.equal(running.data_released, true);
    const x = await call(apiB, 'POST', `/api/v1/trainings/${r.json.id}/cancel`, {headers: bearer(consumer.token)},
                         `${T}/cancel`);
    assert.equal(x.status, 200, JSON.stringify(x.json));
    assert.equal(x.json.state, 'cancelled');
    // node-a's runner sees the cancel in the store and retires the enclave.
    await waitFor('the training enclave terminated by node-a', async () => {
      const g = await call(apiA, 'GET', `/api/v1/trainings/${r.json.id}`, {headers: bearer(consumer.token)}, T);
      if (!g.json.enclave_id) return false;
      const e = await call(apiB, 'GET', `/api/v1/enclaves/${g.json.enclave_id}`, {headers: bearer(ctx.admin)},
                           '/api/v1/enclaves/{id}');
      return e.json.status === 'terminated' && e.json.runtime?.node === 'node-a';
    }, 15000);
  });

  test('A killed: B takes the periodic jobs over, A is swept, the audit verifies', async () => {
    // An active contract that expires just after A dies: only the new leader can expire it.
    const terms = validTerms({expires_at: new Date(Date.now() + 3000).toISOString()});
    expiring = await ctx.inState(parties, 'active', {terms});
    const killedAt = Date.now();
    a.proc.kill('SIGKILL');
    await a.exited;
    const token = parties.provider.token;
    const viaB = await waitFor('node-b to lead', async () => {
      const n = await nodes(apiLB); // nginx skips the dead node
      return n.leader === 'node-b' && n.nodes.find((x) => x.id === 'node-a').state === 'lost' && n;
    }, 4 * LEASE_MS + 2000);
    assert.ok(Date.now() - killedAt < 3 * LEASE_MS + 2000, 'taken over within the lease time');
    assert.equal(viaB.self, 'node-b');
    const lost = await waitFor('the enclave of node-a lost', async () => {
      const r = await call(apiLB, 'GET', `/api/v1/enclaves/${lostEnclave.id}`, {headers: bearer(token)},
                           '/api/v1/enclaves/{id}');
      return r.json.status === 'lost' && r.json;
    }, 3 * LEASE_MS);
    assert.match(lost.status_reason, /node node-a stopped renewing its heartbeat/);
    // The terminated one stays terminated; a lost one can still be terminated (on any node).
    const t = await call(apiLB, 'POST', `/api/v1/enclaves/${lostEnclave.id}/terminate`,
                         {headers: bearer(token), json: {}}, '/api/v1/enclaves/{id}/terminate');
    assert.equal(t.status, 200, JSON.stringify(t.json));
    assert.equal(t.json.status, 'terminated');
    // The expiry job now runs on B.
    await waitFor('the contract expired by the new leader', async () => {
      const r = await call(apiLB, 'GET', `/api/v1/audit/events?resource_id=${expiring.id}`,
                           {headers: bearer(ctx.admin)}, '/api/v1/audit/events');
      return r.json.events.some((e) => e.action === 'contract.expire' && e.actor === 'system');
    }, 8000);
    const ev = async (action) => {
      const r = await call(apiLB, 'GET', `/api/v1/audit/events?action=${action}`,
                           {headers: bearer(ctx.admin)}, '/api/v1/audit/events');
      assert.equal(r.status, 200, JSON.stringify(r.json));
      return r.json.events;
    };
    assert.ok((await ev('node.lead')).some((e) => e.resource_id === 'node-b' && e.details.previous === 'node-a'));
    assert.ok((await ev('node.lost')).some((e) => e.resource_id === 'node-a' && e.details.swept_by === 'node-b'));
    assert.ok((await ev('enclave.lost')).some((e) => e.resource_id === lostEnclave.id));
    const v = await call(apiLB, 'GET', '/api/v1/audit/verify', {headers: bearer(ctx.admin)});
    assert.equal(v.status, 200);
    assert.equal(v.json.ok, true, JSON.stringify(v.json));
    // Writes keep working through the balancer with one node left.
    for (let i = 0; i < 3; i++) {
      const r = await call(apiLB, 'POST', '/api/v1/contracts', {
        headers: bearer(parties.provider.token),
        json: {title: `after the kill ${i}`, description: 'one node left', provider_id: parties.provider.id,
               consumer_id: parties.consumer.id, terms: validTerms()},
      });
      assert.equal(r.status, 201, JSON.stringify(r.json));
    }
  });
});
