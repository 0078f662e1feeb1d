// The `dcms` command-line client against a live dcmsd (SQLite or PostgreSQL,
// as DCMS_TEST_BACKEND says):
//   - docs/cli.md's flow, run literally: every ```sh block preceded by
//     <!-- cli-flow --> goes to one bash, with only the server address
//     replaced by the test server's; two parties, a dataset uploaded, a
//     contract drafted, submitted, signed by both, activated, a model
//     trained under it (watched to the end, downloaded, its accuracy checked
//     outside dcms), its evidence downloaded and verified; then the `train`
//     commands' other paths (list, show, watch on a terminal and as JSON,
//     the download's refusals, a failed and a cancelled job);
//   - an upload interrupted by killing dcmsd mid-upload, resumed after a
//     restart by running the same command again, complete with the file's
//     SHA-256;
//   - exit statuses, --json, the configuration file's modes and contents,
//     and a login with a second factor.
// The dcms binary is the one beside $DCMS_BIN (build/dcms, build-dev/dcms).

import assert from 'node:assert/strict';
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { backend, dcmsBin, psqlAdmin, repoRoot, startServer } from './lib/server.mjs';
import { bearer, login } from './lib/iam.mjs';

const cliBin = path.join(path.dirname(dcmsBin), 'dcms');
const CSV = path.join(repoRoot, 'tests', 'data', 'breast_cancer.csv');
const DEV_ADMIN = { DCMS_ADMIN_EMAIL: 'admin@dcms.local', DCMS_ADMIN_PASSWORD: 'dev-admin-passphrase' };
const PW = 'correct horse battery staple';
const BUDGET_MS = 120000; // per case, per backend (scripts/test.sh runs both)
// The flow trains three models (one in the flow, a failed and a cancelled job after it):
// 33 s in the release build, 40-70 s in the sanitizer build on a loaded 2-core machine.
const FLOW_BUDGET_MS = 180000;
const sha256 = (b) => createHash('sha256').update(b).digest('hex');

function workdir() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcms-cli-'));
  fs.mkdirSync(path.join(dir, 'tests', 'data'), { recursive: true });
  fs.copyFileSync(CSV, path.join(dir, 'tests', 'data', 'breast_cancer.csv'));
  fs.mkdirSync(path.join(dir, 'training'));
  fs.copyFileSync(path.join(repoRoot, 'training', 'check_model.py'), path.join(dir, 'training', 'check_model.py'));
  return dir;
}

function cliEnv(dir, server) {
  const env = { ...process.env, XDG_CONFIG_HOME: path.join(dir, 'config'), HOME: dir,
    PATH: `${path.dirname(cliBin)}:${process.env.PATH}` };
  for (const k of Object.keys(env)) if (k.startsWith('DCMS_')) delete env[k];
  if (server) env.DCMS_SERVER = server.url;
  return env;
}

/** Runs dcms synchronously; resolves {status, stdout, stderr}. */
function dcms(dir, server, args, opts = {}) {
  // setsid: no controlling terminal, as in CI, so that no prompt can reach a developer's terminal.
  const r = spawnSync('setsid', ['-w', cliBin, ...args], { cwd: dir, env: { ...cliEnv(dir, server), ...(opts.env || {}) },
    input: opts.input ?? '', encoding: 'utf8', timeout: 60000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** dcms without blocking the event loop (needed when it talks through relay() below). */
function dcmsAsync(dir, server, args) {
  return new Promise((resolve) => {
    const p = spawn(cliBin, args, { cwd: dir, env: cliEnv(dir, server), stdio: ['ignore', 'pipe', 'pipe'],
      detached: true });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => p.kill('SIGKILL'), 60000);
    p.stdout.on('data', (b) => { stdout += b; });
    p.stderr.on('data', (b) => { stderr += b; });
    p.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

/** The bash of the docs/cli.md blocks marked <!-- cli-flow -->. */
function docFlow() {
  const md = fs.readFileSync(path.join(repoRoot, 'docs', 'cli.md'), 'utf8');
  const blocks = [...md.matchAll(/<!-- cli-flow -->\n```sh\n([\s\S]*?)```/g)].map((m) => m[1]);
  assert.equal(blocks.length, 3, 'docs/cli.md has its three flow blocks');
  return blocks;
}

/** Counts the commands of a shell block: lines that start one (continuations and heredoc bodies excluded). */
function commandCount(block) {
  let n = 0;
  let heredoc = null;
  let cont = false;
  for (const line of block.split('\n')) {
    if (heredoc) {
      if (line.trim() === heredoc) heredoc = null;
      continue;
    }
    const t = line.trim();
    if (!t || t.startsWith('#')) continue;
    if (!cont) n++;
    cont = t.endsWith('\\');
    const h = t.match(/<<-?'?(\w+)'?/);
    if (h) heredoc = h[1];
  }
  return n;
}

describe('docs/cli.md, run literally', () => {
  test('two parties: keys, a dataset, a contract signed by both and activated, a model trained, the evidence verified',
    { timeout: FLOW_BUDGET_MS }, async () => {
      // An enclave serves the contract between the flow and the evidence block, so that the
      // bundle carries an attestation document too.
      const imagesDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcms-cli-images-'));
      for (const f of ['dcms-workload', 'dcms-trainer']) {
        fs.copyFileSync(path.join(path.dirname(dcmsBin), 'workload', f), path.join(imagesDir, f));
        fs.chmodSync(path.join(imagesDir, f), 0o755);
      }
      const server = await startServer({ env: { ...DEV_ADMIN, DCMS_LOGIN_MAX_FAILURES_PER_IP: '100000',
        DCMS_ENCLAVE_IMAGES_DIR: imagesDir, DCMS_ENCLAVE_MAX_MEMORY_MB: '512' } });
      const dir = workdir();
      try {
        const [setup, flow, evidence] = docFlow();
        assert.ok(commandCount(flow) + commandCount(evidence) < 20,
          `the parties' flow has ${commandCount(flow) + commandCount(evidence)} commands`);
        const bash = (script, env = {}) => spawnSync('setsid', ['-w', 'bash', '-euo', 'pipefail', '-c',
          script.replaceAll('http://127.0.0.1:8080', server.url)], {
          cwd: dir, env: { ...cliEnv(dir, null), ...env }, encoding: 'utf8', timeout: 60000 });
        let r = bash([setup, flow, 'echo "FLOW_CONTRACT=$ID FLOW_DATASET=$DS FLOW_JOB=$JOB"'].join('\n'));
        assert.equal(r.status, 0, `the flow failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
        const m = r.stdout.match(/FLOW_CONTRACT=(\S+) FLOW_DATASET=(\S+) FLOW_JOB=(\S+)/);
        assert.ok(m, r.stdout);
        const [, id, ds, job] = m;
        // The model trained in the enclave, downloaded, and checked outside dcms as training.md does.
        assert.match(r.stdout, /\{"rows": 113, "correct": 112, "accuracy": 0\.9911504424778761\}/);
        const modelFile = fs.readFileSync(path.join(dir, 'model.safetensors'));
        assert.match(r.stdout, new RegExp(`model of training ${job}: model\\.safetensors, ${modelFile.length} bytes, `
          + `SHA-256 ${sha256(modelFile)} \\(the job's result\\)`));

        const ptoken = (await login(server, 'provider@example.test', PW)).access_token;
        const made = await fetch(`${server.url}/api/v1/enclaves`, { method: 'POST',
          headers: { ...bearer(ptoken), 'Content-Type': 'application/json' },
          body: JSON.stringify({ name: 'cli enclave', contract_id: id,
            configuration: { image: 'dcms-workload', cpu_cores: 1, memory_mb: 256, storage_gb: 1 } }) });
        const enclave = await made.json();
        assert.equal(made.status, 201, JSON.stringify(enclave));

        // The third block runs in a shell of its own: $ID and the exported DCMS_SERVER of the
        // second block are given to it.
        r = bash(evidence, { ID: id, DCMS_SERVER: server.url });
        assert.equal(r.status, 0, `the evidence block failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
        assert.match(r.stdout, /PASS attestation 0 \(enclave /);
        assert.match(r.stdout, /PASS: \d+ checks passed, 0 failed/);
        assert.match(r.stdout, /PASS signature 0 \(provider, digital\)/);
        assert.match(r.stdout, /PASS signature 1 \(consumer, digital\)/);
        // What the server holds: an active contract signed by both sides, naming the ready dataset.
        const admin = (await login(server, DEV_ADMIN.DCMS_ADMIN_EMAIL, DEV_ADMIN.DCMS_ADMIN_PASSWORD)).access_token;
        const c = await (await fetch(`${server.url}/api/v1/contracts/${id}`, { headers: bearer(admin) })).json();
        assert.equal(c.status, 'active');
        assert.deepEqual(c.signatures.map((s) => s.side).sort(), ['consumer', 'provider']);
        assert.deepEqual(c.terms.data_access.datasets, [ds]);
        const d = await (await fetch(`${server.url}/api/v1/datasets/${ds}`, { headers: bearer(admin) })).json();
        assert.equal(d.status, 'ready');
        assert.equal(d.sha256, sha256(fs.readFileSync(CSV)));
        assert.equal(d.rows, 569);
        // The bundle on disk is the server's, and the sessions ended: the profiles hold no token.
        const bundle = JSON.parse(fs.readFileSync(path.join(dir, 'evidence.json'), 'utf8'));
        assert.equal(bundle.contract.id, id);
        const cfg = fs.readFileSync(path.join(dir, 'config', 'dcms', 'config'), 'utf8');
        assert.doesNotMatch(cfg, /refresh_token/);
        assert.match(cfg, /\[profile provider\]/);

        // Signing again after an edit shows what changed since the version this signer signed.
        const run = (args) => dcms(dir, server, args);
        for (const who of ['provider', 'consumer']) {
          const l = run(['--profile', who, 'login', '-e', `${who}@example.test`, '--password-file', `${who}.pw`]);
          assert.equal(l.status, 0, l.stderr);
        }
        const provider = run(['--profile', 'provider', '-q', 'whoami']).stdout.trim();
        let x = run(['--profile', 'consumer', '-q', 'contracts', 'create', '-f', 'terms.json', '--title', 'First title',
          '--provider', provider]);
        assert.equal(x.status, 0, x.stderr);
        const id2 = x.stdout.trim();
        assert.equal(run(['--profile', 'consumer', 'contracts', 'submit', id2]).status, 0);
        x = run(['--profile', 'provider', 'contracts', 'sign', id2, '--yes']);
        assert.equal(x.status, 0, x.stderr);
        assert.match(x.stdout, /You have not signed this contract before/);
        // Without --yes and without a terminal nothing is signed (usage: 2).
        x = run(['--profile', 'consumer', 'contracts', 'sign', id2]);
        assert.equal(x.status, 2, x.stderr);
        assert.match(x.stderr, /pass --yes/);
        x = run(['--profile', 'consumer', 'contracts', 'edit', id2, '--title', 'Second title']);
        assert.equal(x.status, 0, x.stderr);
        assert.equal(run(['--profile', 'consumer', 'contracts', 'submit', id2]).status, 0);
        // This time an mfa signature: the provider enrols TOTP, dcms asks for a code.
        const pat = (await login(server, 'provider@example.test', PW)).access_token;
        const en = await (await fetch(`${server.url}/api/v1/mfa/totp/enroll`, { method: 'POST', headers: bearer(pat) })).json();
        const now = Date.now() / 1000;
        const conf = await fetch(`${server.url}/api/v1/mfa/totp/confirm`, { method: 'POST',
          headers: { ...bearer(pat), 'Content-Type': 'application/json' }, body: JSON.stringify({ code: totp(en.secret, now) }) });
        assert.equal(conf.status, 200, await conf.text());
        fs.writeFileSync(path.join(dir, 'code'), `${totp(en.secret, now + 30)}\n`);
        x = run(['--profile', 'provider', 'contracts', 'sign', id2, '--yes', '--mfa', '--code-file', 'code']);
        assert.equal(x.status, 0, x.stderr);
        assert.match(x.stdout, /terms version 2, SHA-256 [0-9a-f]{64} \(recomputed here/);
        assert.match(x.stdout, /Changes since version 1, which you signed:\n- title = "First title"\n\+ title = "Second title"\n/);
        const signed = await (await fetch(`${server.url}/api/v1/contracts/${id2}`, { headers: bearer(admin) })).json();
        assert.deepEqual(signed.signatures.map((s) => [s.side, s.type]), [['provider', 'mfa']]);
        x = run(['--profile', 'provider', 'contracts', 'diff', id2, '1', '2']);
        assert.equal(x.stdout, '- title = "First title"\n+ title = "Second title"\n- version = 1\n+ version = 2\n');
        // A side signs once per version: the server's refusal is exit 1 with its message.
        x = run(['--profile', 'provider', 'contracts', 'sign', id2, '--yes']);
        assert.equal(x.status, 1);
        assert.match(x.stderr, /^error: .*\(conflict, 409\)/m);

        // The enclave as each party sees it, and its attestation document checked offline.
        // (the flow's training had an enclave of its own)
        let y = run(['--profile', 'consumer', '-q', 'enclaves', 'list', '--contract', id]);
        assert.equal(y.stdout.trim().split('\n').length, 2, y.stdout);
        assert.ok(y.stdout.trim().split('\n').includes(enclave.id), y.stdout);
        y = run(['--profile', 'consumer', 'enclaves', 'show', enclave.id]);
        assert.match(y.stdout, /^status +running$/m);
        y = run(['--profile', 'consumer', 'enclaves', 'attestation', enclave.id, '-o', 'att.b64']);
        assert.equal(y.status, 0, y.stderr);
        assert.match(y.stdout, /dcms attestation verify att\.b64 --root att\.b64\.root\.pem/);
        y = run(['attestation', 'verify', 'att.b64', '--root', 'att.b64.root.pem',
          '--expect-pcr', `0=${enclave.measurement.expected_pcr0}`]);
        assert.equal(y.status, 0, y.stdout + y.stderr);
        assert.equal(JSON.parse(y.stdout).valid, true);

        // Training: the flow's job as each side sees it, watched again (not a terminal: a line
        // per event), the model's download refusals, a refused start, a job that fails and one
        // cancelled.
        let z = run(['--profile', 'consumer', '-q', 'train', 'list', id]);
        assert.equal(z.status, 0, z.stderr);
        assert.equal(z.stdout, `${job}\n`);
        z = run(['--profile', 'provider', 'train', 'show', job]);
        assert.equal(z.status, 0, z.stderr);
        assert.match(z.stdout, /^state +succeeded$/m);
        assert.match(z.stdout, /^accuracy +0\.9912 \(loss [0-9.]+, 113 held-out rows\)$/m);
        z = run(['--profile', 'consumer', 'train', 'watch', job]);
        assert.equal(z.status, 0, z.stderr);
        assert.match(z.stdout, /^state running\nepoch \d+\/1000 {2}loss [0-9.]+ {2}val_accuracy [0-9.]+$/m);
        assert.match(z.stdout, /^epoch 1000\/1000 {2}loss [0-9.]+ {2}val_accuracy 0\.9912$/m);
        assert.match(z.stdout, new RegExp(`^state succeeded\ntraining ${job} succeeded: accuracy 0\\.9912 on 113 `
          + `held-out rows; model ${modelFile.length} bytes, SHA-256 ${sha256(modelFile)}$`, 'm'));
        // On a terminal (script(1) gives it one) a single line is redrawn in place.
        z = spawnSync('script', ['-qec', `${cliBin} --profile consumer train watch ${job}`, '/dev/null'],
          { cwd: dir, env: cliEnv(dir, server), encoding: 'utf8', timeout: 60000 });
        assert.equal(z.status, 0, z.stdout);
        assert.match(z.stdout, /\r(\x1b\[1m)?succeeded (\x1b\[0m)? {2}epoch 1000\/1000 {2}loss [0-9.]+ {2}val_accuracy 0\.9912\x1b\[K\r?\n/);
        assert.doesNotMatch(z.stdout, /^state /m);
        z = run(['--profile', 'consumer', '--json', 'train', 'watch', job]);
        const evs = z.stdout.trim().split('\n').map((l) => JSON.parse(l));
        assert.deepEqual(evs.at(-1), { event: 'end', data: { state: 'succeeded' } });
        assert.ok(evs.some((e) => e.event === 'progress' && e.data.epoch === 1000 && /^\d+$/.test(e.id)));
        z = run(['--profile', 'consumer', 'train', 'model', job, '-o', 'model.safetensors']);
        assert.equal(z.status, 2, 'an existing file is kept');
        assert.match(z.stderr, /model\.safetensors exists: pass --force/);
        z = run(['--profile', 'consumer', '-q', 'train', 'model', job, '-o', 'model.safetensors', '--force']);
        assert.equal(z.status, 0, z.stderr);
        assert.equal(z.stdout, `${sha256(modelFile)}\n`);
        z = spawnSync(cliBin, ['--profile', 'consumer', 'train', 'model', job, '-o', '-'],
          { cwd: dir, env: cliEnv(dir, server), timeout: 60000 });
        assert.equal(z.status, 0, String(z.stderr));
        assert.ok(z.stdout.equals(modelFile), 'the model on standard output');
        assert.match(String(z.stderr), new RegExp(`SHA-256 ${sha256(modelFile)}`));
        z = run(['--profile', 'provider', 'train', 'model', job, '-o', 'provider.safetensors']);
        assert.equal(z.status, 1, 'the provider does not receive the model');
        assert.match(z.stderr, /^error: .*\((forbidden|not_found), 40[34]\)/m);
        assert.deepEqual(fs.readdirSync(dir).filter((f) => f.startsWith('provider.safetensors')), [], 'no file, no temporary');
        z = run(['--profile', 'consumer', 'train', 'cancel', job]);
        assert.equal(z.status, 1);
        assert.match(z.stderr, /\(conflict, 409\)/);
        assert.equal(run(['--profile', 'consumer', 'train', 'start', id, '--split', 'modulo:5']).status, 2);
        assert.equal(run(['--profile', 'consumer', 'train', 'start', id, '--epochs', 'ten']).status, 2);
        assert.equal(run(['--profile', 'consumer', 'train', 'start']).status, 2);
        z = run(['--profile', 'consumer', 'train', 'start', id, '--label', 'diagnosis', '--model', 'mlp', '--hidden', '16,8']);
        assert.equal(z.status, 1, 'the terms allow logistic_regression only');
        assert.match(z.stderr, /\(validation_failed, 422\)\n {2}model: /);
        // -f FILE is the body (options over it): the file's mlp is refused, the option's is sent instead.
        fs.writeFileSync(path.join(dir, 'body.json'), JSON.stringify({ label: 'diagnosis', model: 'mlp', hidden: [4] }));
        z = run(['--profile', 'consumer', 'train', 'start', id, '-f', 'body.json']);
        assert.equal(z.status, 1);
        assert.match(z.stderr, /\n {2}model: /);
        z = run(['--profile', 'consumer', 'train', 'start', id, '-f', 'body.json', '--model', 'logistic_regression',
          '--epochs', '0']);
        assert.equal(z.status, 1);
        assert.doesNotMatch(z.stderr, /\n {2}model: /);
        assert.match(z.stderr, /\n {2}epochs: /);
        z = run(['--profile', 'consumer', 'train', 'start', id, '--label', 'no_such_column', '--model', 'logistic_regression',
          '--epochs', '5', '--watch']);
        assert.equal(z.status, 1, z.stdout + z.stderr);
        const failed = (z.stdout.match(/^started training (\S+) /m) ?? assert.fail(z.stdout + z.stderr))[1];
        assert.match(z.stdout, /^state failed$/m);
        assert.match(z.stderr, new RegExp(`^error: training ${failed} failed: .+ \\([a-z_]+\\)$`, 'm'));
        z = run(['--profile', 'consumer', '-q', 'train', 'start', id, '--label', 'diagnosis', '--model', 'logistic_regression', '--epochs', '100000',
          '--batch-size', '1']);
        assert.equal(z.status, 0, z.stderr);
        const j3 = z.stdout.trim();
        // --timeout cuts the held-open event stream of a job that is still going
        const w0 = Date.now();
        z = run(['--profile', 'consumer', 'train', 'watch', j3, '--timeout', '2']);
        assert.equal(z.status, 1, z.stdout + z.stderr);
        assert.match(z.stderr, new RegExp(`training ${j3} is still [a-z]+ after 2 seconds`));
        assert.ok(Date.now() - w0 < 15000, `watch --timeout 2 took ${Date.now() - w0} ms`);
        z = run(['--profile', 'consumer', 'train', 'cancel', j3]);
        assert.equal(z.status, 0, z.stderr);
        assert.equal(z.stdout, `training ${j3} is cancelled\n`);
        z = run(['--profile', 'consumer', '-q', 'train', 'watch', j3]);
        assert.equal(z.status, 1);
        assert.equal(z.stdout, 'cancelled\n');
        assert.match(z.stderr, /cancelled: .* \(cancelled_by_consumer\)/);
        z = run(['--profile', 'consumer', '--json', 'train', 'list', id, '--all', '--limit', '1']);
        assert.deepEqual(JSON.parse(z.stdout).trainings.map((t) => t.id), [job, failed, j3]);
        z = run(['--profile', 'consumer', 'train', 'list', id, '--limit', '2']);
        assert.match(z.stdout, /^ID +STATE +MODEL +EPOCH +ACCURACY +REASON +CREATED\n/);
        assert.match(z.stdout, /\(more: --cursor \S+\)\n$/);

        // The lifecycle of the flow's contract, and what each side reads.
        assert.equal(run(['--profile', 'provider', 'contracts', 'suspend', id, '--reason', 'security review']).status, 0);
        assert.equal(run(['--profile', 'consumer', '-q', 'contracts', 'show', id]).stdout, 'suspended\n');
        x = run(['--profile', 'consumer', 'contracts', 'resume', id]);
        assert.equal(x.status, 1, 'only the provider side resumes');
        assert.match(x.stderr, /\((forbidden|conflict), 40[39]\)/);
        assert.equal(run(['--profile', 'provider', 'contracts', 'resume', id]).status, 0);
        x = run(['--profile', 'consumer', 'contracts', 'verify', id]);
        assert.equal(x.status, 0, x.stderr);
        assert.match(x.stdout, new RegExp(`^contract ${id} \\(active\\): valid$`, 'm'));
        x = run(['--profile', 'consumer', '-q', 'contracts', 'list', '--status', 'active']);
        assert.deepEqual(x.stdout.trim().split('\n'), [id]);
        x = run(['--profile', 'consumer', 'contracts', 'versions', id]);
        assert.match(x.stdout, new RegExp(`^1 +${c.terms_hash} `, 'm'));
        assert.equal(run(['--profile', 'consumer', 'contracts', 'terminate', id]).status, 2, '--reason is required');
        assert.equal(run(['--profile', 'consumer', 'contracts', 'terminate', id, '--reason', 'done']).status, 0);
        x = run(['--profile', 'consumer', '--json', 'contracts', 'show', id]);
        assert.equal(JSON.parse(x.stdout).status, 'terminated');
        assert.equal(JSON.parse(x.stdout).status_reason, 'done');
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
        await server.stop();
        fs.rmSync(imagesDir, { recursive: true, force: true });
      }
    });
});

/**
 * A TCP relay between dcms and dcmsd, so that the test knows when no request
 * is in flight: hold() parks new connections; idle() resolves once the
 * requests already relayed are answered; drop() closes the parked ones.
 */
async function relay() {
  let target = 0;
  let holding = false;
  let active = 0;
  const parked = new Set();
  const srv = net.createServer((c) => {
    c.on('error', () => {});
    if (holding) {
      parked.add(c);
      return;
    }
    active++;
    const u = net.connect(target, '127.0.0.1');
    u.on('error', () => {});
    let closed = false;
    const done = () => {
      if (closed) return;
      closed = true;
      active--;
      c.destroy();
      u.destroy();
    };
    c.pipe(u);
    u.pipe(c);
    c.on('close', done);
    u.on('close', done);
  });
  const port = await new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve(srv.address().port)));
  return {
    url: `http://127.0.0.1:${port}`,
    to(p) { target = p; },
    hold() { holding = true; },
    async idle(ms = 15000) {
      const end = Date.now() + ms;
      while (active > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
      return active === 0;
    },
    drop() {
      for (const c of parked) c.destroy();
      parked.clear();
      holding = false;
    },
    close() { srv.close(); },
  };
}

describe('an upload interrupted by a dcmsd crash', () => {
  test('resumes after the restart with the same command and completes with the right SHA-256',
    { timeout: BUDGET_MS }, async () => {
      // One data directory (and one database) for two dcmsd processes, one after the other.
      const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcms-cli-data-'));
      const env = { ...DEV_ADMIN, DCMS_DATA_DIR: dataDir };
      let db = null;
      if (backend === 'postgres') {
        db = `dcms_t_${randomBytes(6).toString('hex')}`;
        psqlAdmin(`CREATE DATABASE ${db}`);
        const u = new URL(process.env.DCMS_TEST_PG_URL);
        u.pathname = `/${db}`;
        env.DCMS_DATABASE_URL = u.toString();
      }
      const dir = workdir();
      const link = await relay();
      let server = await startServer({ env });
      link.to(server.port);
      const via = { url: link.url }; // dcms talks to dcmsd through the relay
      try {
        const admin = (await login(server, DEV_ADMIN.DCMS_ADMIN_EMAIL, DEV_ADMIN.DCMS_ADMIN_PASSWORD)).access_token;
        const res = await fetch(`${server.url}/api/v1/identities`, { method: 'POST',
          headers: { ...bearer(admin), 'Content-Type': 'application/json' },
          body: JSON.stringify({ name: 'Provider', email: 'provider@example.test', password: PW, roles: ['provider'] }) });
        assert.equal(res.status, 201);
        fs.writeFileSync(path.join(dir, 'pw'), `${PW}\n`, { mode: 0o600 });
        let r = await dcmsAsync(dir, via, ['login', '--email', 'provider@example.test', '--password-file', 'pw']);
        assert.equal(r.status, 0, r.stderr);

        // 120 kB at 16 kB/s in 8 kB chunks: about 7 s; dcmsd is killed once some chunks are in.
        const args = ['datasets', 'upload', 'tests/data/breast_cancer.csv', '--name', 'bc', '--label', 'diagnosis',
          '--chunk-size', '8192', '--max-rate', '16384'];
        const child = spawn(cliBin, args, { cwd: dir, env: cliEnv(dir, via), stdio: ['ignore', 'pipe', 'pipe'],
          detached: true });
        let err = '';
        child.stderr.on('data', (b) => { err += b; });
        const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
        const uploads = path.join(dir, 'config', 'dcms', 'uploads');
        const deadline = Date.now() + 30000;
        let state = null;
        while (Date.now() < deadline) {
          const f = fs.existsSync(uploads) ? fs.readdirSync(uploads).filter((x) => x.endsWith('.json')) : [];
          if (f.length === 1) {
            try {
              state = JSON.parse(fs.readFileSync(path.join(uploads, f[0]), 'utf8'));
            } catch { state = null; } // being renamed into place
            if (state && state.offset >= 16384) break;
          }
          await new Promise((res2) => setTimeout(res2, 50));
        }
        assert.ok(state && state.offset >= 16384, `the upload made progress: ${JSON.stringify(state)} ${err}`);
        assert.equal(fs.statSync(path.join(uploads, fs.readdirSync(uploads)[0])).mode & 0o777, 0o600);
        // The crash falls between two PATCH requests: a request cut by the crash would leave the
        // dataset claimed by it for the server's writer lease (see the report of this change).
        link.hold();
        assert.ok(await link.idle(), 'the PATCH in flight is answered');
        server.proc.kill('SIGKILL');
        await server.exited;
        link.drop();
        assert.equal(await exited, 3, `dcms exits 3 (unreachable) when the server dies: ${err}`);
        assert.match(err, /run the same command again to resume/);
        await server.stop();

        server = await startServer({ env });
        link.to(server.port);
        const head = await fetch(`${server.url}/api/v1/datasets/${state.dataset_id}/content`, {
          headers: bearer((await login(server, 'provider@example.test', PW)).access_token) });
        const before = await head.json();
        assert.equal(before.status, 'uploading');
        assert.ok(before.upload_offset >= state.offset && before.upload_offset < fs.statSync(CSV).size,
          JSON.stringify(before));

        r = await dcmsAsync(dir, via, args.slice(0, 7));
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.stderr, new RegExp(`resuming the upload of tests/data/breast_cancer.csv into dataset ${state.dataset_id}`));
        const fresh = (await login(server, DEV_ADMIN.DCMS_ADMIN_EMAIL, DEV_ADMIN.DCMS_ADMIN_PASSWORD)).access_token;
        const d = await (await fetch(`${server.url}/api/v1/datasets/${state.dataset_id}`, { headers: bearer(fresh) })).json();
        assert.equal(d.status, 'ready');
        assert.equal(d.sha256, sha256(fs.readFileSync(CSV)));
        assert.equal(d.rows, 569);
        assert.deepEqual(fs.readdirSync(uploads).filter((x) => x.endsWith('.json')), [], 'the state is forgotten');
        // Only one dataset: the second run resumed, it did not start over.
        r = await dcmsAsync(dir, via, ['--json', 'datasets', 'list']);
        assert.equal(r.status, 0, r.stderr);
        assert.deepEqual(JSON.parse(r.stdout).datasets.map((x) => x.id), [state.dataset_id]);
      } finally {
        link.close();
        await server.stop();
        fs.rmSync(dir, { recursive: true, force: true });
        fs.rmSync(dataDir, { recursive: true, force: true });
        if (db) psqlAdmin(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
      }
    });
});

/** RFC 6238 TOTP (SHA-1, 6 digits, 30 s) of a base32 secret at time t (seconds). */
function totp(secret, t) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const ch of secret) bits += alphabet.indexOf(ch).toString(2).padStart(5, '0');
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(t / 30)));
  const h = createHmac('sha1', key).update(counter).digest();
  const o = h[19] & 15;
  return String((h.readUInt32BE(o) & 0x7fffffff) % 1000000).padStart(6, '0');
}

describe('sessions, output and exit statuses', () => {
  test('exit codes 0/1/2/3, --json unchanged, config 0600 in 0700 holding only server and refresh token, '
    + 'a TOTP second factor', { timeout: BUDGET_MS }, async () => {
    const server = await startServer({ env: { ...DEV_ADMIN, DCMS_LOGIN_MAX_FAILURES_PER_IP: '100000' } });
    const dir = workdir();
    try {
      // Usage errors: 2.
      assert.equal(dcms(dir, server, []).status, 2);
      assert.equal(dcms(dir, server, ['contracts', 'sign']).status, 2);
      assert.equal(dcms(dir, server, ['keys', 'list', '--bogus']).status, 2);
      assert.equal(dcms(dir, server, ['contracts', '--help']).status, 0);
      assert.equal(dcms(dir, server, ['train', '--help']).status, 0);
      assert.match(dcms(dir, server, ['train', 'start', '--help']).stdout, /--dp-max-grad-norm C/);
      assert.equal(dcms(dir, server, ['train']).status, 2);
      assert.equal(dcms(dir, server, ['train', 'watch']).status, 2);
      assert.equal(dcms(dir, server, ['train', 'watch', 'x', '--timeout', '-1']).status, 2);
      assert.equal(dcms(dir, server, ['train', 'show', 'x', '--bogus']).status, 2);
      // Not logged in: 1, saying what to do.
      let r = dcms(dir, server, ['whoami']);
      assert.equal(r.status, 1);
      assert.match(r.stderr, /not logged in .*dcms login/);
      // Unreachable: 3.
      fs.writeFileSync(path.join(dir, 'bad'), 'not the password\n');
      r = dcms(dir, null, ['--server', 'http://127.0.0.1:9', 'login', '-e', 'x@example.test', '--password-file', 'bad']);
      assert.equal(r.status, 3, r.stderr);
      // A wrong password: refused (1) with the server's message; nothing stored.
      fs.writeFileSync(path.join(dir, 'bad'), 'not the password\n');
      r = dcms(dir, server, ['login', '--email', 'admin@dcms.local', '--password-file', 'bad']);
      assert.equal(r.status, 1);
      assert.match(r.stderr, /error: .*\(unauthenticated, 401\)/);

      // The password from stdin (no terminal), never from argv.
      r = dcms(dir, server, ['login', '-e', 'admin@dcms.local'], { input: 'dev-admin-passphrase\n' });
      assert.equal(r.status, 0, r.stderr);
      const cfgDir = path.join(dir, 'config', 'dcms');
      assert.equal(fs.statSync(cfgDir).mode & 0o777, 0o700);
      assert.equal(fs.statSync(path.join(cfgDir, 'config')).mode & 0o777, 0o600);
      let cfg = fs.readFileSync(path.join(cfgDir, 'config'), 'utf8');
      assert.doesNotMatch(cfg, /dev-admin-passphrase|access_token|eyJ/);
      const keys = cfg.split('\n').filter((l) => /=/.test(l)).map((l) => l.split('=')[0].trim());
      assert.deepEqual(keys.sort(), ['refresh_token', 'server']);
      const rt1 = cfg.match(/refresh_token = (\S+)/)[1];

      // --json is the API's JSON unchanged; the refresh token rotates and is saved.
      r = dcms(dir, server, ['--json', 'whoami']);
      assert.equal(r.status, 0, r.stderr);
      const me = JSON.parse(r.stdout);
      assert.equal(me.identity.email, 'admin@dcms.local');
      cfg = fs.readFileSync(path.join(cfgDir, 'config'), 'utf8');
      assert.notEqual(cfg.match(/refresh_token = (\S+)/)[1], rt1);
      assert.equal(dcms(dir, server, ['-q', 'whoami']).stdout.trim(), me.identity.id);

      // Signing keys: generated here (0600), registered with a proof of possession, rotated, revoked.
      r = dcms(dir, server, ['-q', 'keys', 'generate', '--name', 'first', '--register']);
      assert.equal(r.status, 0, r.stderr);
      const k1 = r.stdout.trim();
      const keyFile = path.join(cfgDir, 'keys', 'default.first.key');
      assert.equal(fs.statSync(keyFile).mode & 0o777, 0o600);
      assert.equal(fs.statSync(path.join(cfgDir, 'keys')).mode & 0o777, 0o700);
      assert.equal(JSON.parse(fs.readFileSync(keyFile, 'utf8')).key_id, k1);
      r = dcms(dir, server, ['-q', 'keys', 'rotate', k1, '--name', 'second']);
      assert.equal(r.status, 0, r.stderr);
      const k2 = r.stdout.trim();
      assert.equal(dcms(dir, server, ['keys', 'revoke', k2]).status, 0);
      r = dcms(dir, server, ['--json', 'keys', 'list']);
      const listed = Object.fromEntries(JSON.parse(r.stdout).keys.map((k) => [k.id, k]));
      assert.equal(listed[k1].status, 'rotated');
      assert.equal(listed[k1].replaced_by, k2);
      assert.equal(listed[k2].status, 'revoked');
      assert.equal(JSON.parse(fs.readFileSync(path.join(cfgDir, 'keys', 'default.second.key'), 'utf8')).status,
        'revoked');
      r = dcms(dir, server, ['keys', 'list']);
      assert.match(r.stdout, new RegExp(`${k2} +second +revoked`));

      // An audit receipt (the key registration's event), fetched and checked offline: with the
      // pinned key, with the server's (printed), and refused when the event or the key differ.
      r = dcms(dir, server, ['--json', 'audit', 'events', '--action', 'signing_key.', '--limit', '1']);
      assert.equal(r.status, 0, r.stderr);
      const evId = JSON.parse(r.stdout).events[0].id;
      r = dcms(dir, server, ['audit', 'receipt', evId, '-o', 'receipt.json']);
      assert.equal(r.status, 0, r.stderr);
      const auditKey = (await (await fetch(`${server.url}/api/v1/audit/public-key`)).json()).public_key;
      r = dcms(dir, null, ['audit', 'verify-receipt', 'receipt.json', '--public-key', auditKey]);
      assert.equal(r.status, 0, r.stdout + r.stderr);
      assert.equal(JSON.parse(r.stdout).ok, true);
      r = dcms(dir, server, ['audit', 'verify-receipt', 'receipt.json']);
      assert.equal(r.status, 0, r.stdout + r.stderr);
      assert.match(r.stderr, new RegExp(`audit key \\(from the server; compare it out of band\\): ${auditKey.replace(/[+/]/g, '\\$&')}`));
      const receipt = JSON.parse(fs.readFileSync(path.join(dir, 'receipt.json'), 'utf8'));
      receipt.event.action += '.forged';
      fs.writeFileSync(path.join(dir, 'forged.json'), JSON.stringify(receipt));
      r = dcms(dir, null, ['audit', 'verify-receipt', 'forged.json', '--public-key', auditKey]);
      assert.equal(r.status, 1);
      assert.equal(JSON.parse(r.stdout).ok, false);
      r = dcms(dir, null, ['audit', 'verify-receipt', 'receipt.json', '--public-key', randomBytes(32).toString('base64')]);
      assert.equal(r.status, 1, 'another key');

      // Refused by the server: 1, with the message and every field path.
      fs.writeFileSync(path.join(dir, 'bad-terms.json'), JSON.stringify({ retention: { days: 0 } }));
      r = dcms(dir, server, ['contracts', 'create', '-f', 'bad-terms.json', '--title', 'x',
        '--provider', me.identity.id, '--consumer', me.identity.id]);
      assert.equal(r.status, 1);
      assert.match(r.stderr, /validation_failed, 422/);
      assert.match(r.stderr, /\n {2}terms\.retention\.days: /);

      // A second factor: enrol TOTP through the API, then dcms login asks for the code.
      const at = (await login(server, 'admin@dcms.local', 'dev-admin-passphrase')).access_token;
      const en = await (await fetch(`${server.url}/api/v1/mfa/totp/enroll`, { method: 'POST', headers: bearer(at) })).json();
      const now = Date.now() / 1000;
      let res = await fetch(`${server.url}/api/v1/mfa/totp/confirm`, { method: 'POST',
        headers: { ...bearer(at), 'Content-Type': 'application/json' }, body: JSON.stringify({ code: totp(en.secret, now) }) });
      const confirmed = await res.json();
      assert.equal(res.status, 200, JSON.stringify(confirmed));
      fs.writeFileSync(path.join(dir, 'pw'), 'dev-admin-passphrase\n');
      // A recovery code works as the second factor too (told apart by its dashes).
      fs.writeFileSync(path.join(dir, 'code'), `${confirmed.recovery_codes[0]}\n`);
      r = dcms(dir, server, ['login', '-e', 'admin@dcms.local', '--password-file', 'pw', '--code-file', 'code']);
      assert.equal(r.status, 0, r.stderr);
      // Without the second factor the login is refused and the session above stays.
      fs.writeFileSync(path.join(dir, 'code'), '000000\n');
      r = dcms(dir, server, ['login', '-e', 'admin@dcms.local', '--password-file', 'pw', '--code-file', 'code']);
      assert.equal(r.status, 1);
      assert.equal(dcms(dir, server, ['-q', 'whoami']).status, 0);
      fs.writeFileSync(path.join(dir, 'code'), `${totp(en.secret, now + 30)}\n`);
      r = dcms(dir, server, ['login', '-e', 'admin@dcms.local', '--password-file', 'pw', '--code-file', 'code']);
      assert.equal(r.status, 0, r.stderr);
      r = dcms(dir, server, ['--json', 'whoami']);
      assert.deepEqual(JSON.parse(r.stdout).token.amr.sort(), ['mfa', 'otp', 'pwd']);

      // Datasets: describe with the schema inferred, upload into it, show, crypto-shred.
      r = dcms(dir, server, ['-q', 'datasets', 'create', '--name', 'bc', '--from-csv', 'tests/data/breast_cancer.csv',
        '--label', 'diagnosis']);
      assert.equal(r.status, 0, r.stderr);
      const dsId = r.stdout.trim();
      r = dcms(dir, server, ['datasets', 'upload', 'tests/data/breast_cancer.csv', '--dataset', dsId]);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`^sha256 +${sha256(fs.readFileSync(CSV))}$`, 'm'));
      assert.equal(dcms(dir, server, ['-q', 'datasets', 'show', dsId]).stdout, 'ready\n');
      assert.equal(dcms(dir, server, ['datasets', 'delete', dsId]).status, 0);
      r = dcms(dir, server, ['datasets', 'show', dsId]);
      assert.equal(r.status, 1);
      assert.match(r.stderr, /dataset not found \(not_found, 404\)/);

      // Audit: the server's check, an export verified offline (the code of dcmsd audit verify), events.
      r = dcms(dir, server, ['audit', 'verify']);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /^audit chain verified: \d+ events/);
      r = dcms(dir, server, ['audit', 'export', '-o', 'audit.jsonl', '--verify']);
      assert.equal(r.status, 0, r.stdout + r.stderr);
      assert.match(r.stderr, /audit key \(from the server; compare it out of band\): \S+/);
      const lines = fs.readFileSync(path.join(dir, 'audit.jsonl'), 'utf8').trim().split('\n');
      const ev = lines.findIndex((l) => l.startsWith('{"event"'));
      fs.writeFileSync(path.join(dir, 'audit.jsonl'),
        lines.map((l, i) => (i === ev ? l.replace('"outcome":"success"', '"outcome":"denied"') : l)).join('\n') + '\n');
      const pk = (await (await fetch(`${server.url}/api/v1/audit/public-key`)).json()).public_key;
      assert.equal(dcms(dir, server, ['audit', 'export', '--verify']).status, 0);
      r = spawnSync(dcmsBin, ['audit', 'verify', path.join(dir, 'audit.jsonl'), '--public-key', pk], { encoding: 'utf8' });
      assert.equal(r.status, 1, 'the edited export fails offline');
      r = dcms(dir, server, ['-q', 'audit', 'events', '--action', 'signing_key.', '--limit', '5']);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /^\d+ signing_key\.(register|rotate|revoke)$/m);
      assert.equal(dcms(dir, server, ['enclaves', 'list']).status, 0);

      // Attestation documents offline: dcmsd attestation verify's code, exit 0 valid, 1 not.
      const doc = path.join(repoRoot, 'tests', 'vectors', 'nitro', 'capejs_attestation_20220915.cbor');
      r = dcms(dir, null, ['attestation', 'verify', doc]);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(JSON.parse(r.stdout).valid, true);
      const bad = Buffer.from(fs.readFileSync(doc));
      bad[bad.length - 10] ^= 1;
      fs.writeFileSync(path.join(dir, 'bad.cbor'), bad);
      r = dcms(dir, null, ['attestation', 'verify', 'bad.cbor']);
      assert.equal(r.status, 1);
      assert.equal(JSON.parse(r.stdout).valid, false);

      // The completion scripts come from the same tables as the help.
      r = dcms(dir, null, ['completion', 'bash']);
      assert.equal(r.status, 0);
      assert.match(r.stdout, /complete -o filenames -F _dcms dcms/);
      assert.match(r.stdout, /contracts\) COMPREPLY=\(\$\(compgen -W "list show create edit submit sign /);
      assert.equal(spawnSync('bash', ['-n'], { input: r.stdout }).status, 0);
      assert.match(r.stdout, /train\) COMPREPLY=\(\$\(compgen -W "start list show watch cancel model /);
      // Completing: a subcommand's options (from its usage) and the words an option takes.
      const complete = (words) => spawnSync('bash', ['-c', `${r.stdout}\nCOMP_WORDS=(${words}); `
        + 'COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _dcms; echo "${COMPREPLY[*]}"'], { encoding: 'utf8' }).stdout.trim();
      assert.equal(complete('dcms train start C --model ""'), 'logistic_regression mlp');
      assert.equal(complete('dcms train start C --opt'), '--optimizer');
      assert.equal(complete('dcms train model J --f'), '--force');
      assert.equal(complete('dcms contracts list --role ""'), 'provider consumer');
      assert.equal(complete('dcms tr'), 'train');
      assert.match(dcms(dir, null, ['completion', 'zsh']).stdout, /^#compdef dcms\n/);

      // Logout revokes the session and forgets the token.
      r = dcms(dir, server, ['logout']);
      assert.equal(r.status, 0, r.stderr);
      assert.doesNotMatch(fs.readFileSync(path.join(cfgDir, 'config'), 'utf8'), /refresh_token/);
      assert.equal(dcms(dir, server, ['whoami']).status, 1);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
      await server.stop();
    }
  });
});
