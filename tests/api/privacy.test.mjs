// The privacy term and the per-contract budget (issue 17): terms.privacy is
// validated like every term (every problem at once, with its path) and is
// part of the signed content; GET /api/v1/contracts/{id}/privacy shows the
// budget, each run's reservation or charge with its sigma, q and steps, and
// what remains, composed over the runs' RDP curves; parties and auditors
// read it, anyone else gets 404. The reservations themselves are made by the
// training service through the C API (tests/unit/test_privacy_budget.c);
// here they are written into the store directly to check the view.
// Runs on the backend chosen by DCMS_TEST_BACKEND.

import assert from 'node:assert/strict';
import {spawnSync} from 'node:child_process';
import {after, before, test} from 'node:test';
import {bearer, contractsContext, jcs, sha256hex, validTerms} from './lib/contracts.mjs';
import {dcmsBin, stopAll} from './lib/server.mjs';

let ctx, p, outsider, auditor;

before(async () => {
  ctx = await contractsContext();
  p = await ctx.parties();
  outsider = await ctx.identity({roles: ['consumer']});
  auditor = await ctx.identity({roles: ['auditor']});
});

after(stopAll);

const create = (terms) => ctx.call('POST', '/api/v1/contracts', {
  headers: bearer(p.provider.token),
  json: {title: 'DP contract', description: 'private training', provider_id: p.provider.id,
         consumer_id: p.consumer.id, terms},
});
const privacy = (who, id) =>
  ctx.call('GET', `/api/v1/contracts/${id}/privacy`, {headers: bearer(who.token ?? who)});

/* The accountant's figure for runs of (q, sigma, steps) composed, as `dcmsd privacy epsilon` prints it. */
function epsilon(q, sigma, steps, delta) {
  const r = spawnSync(dcmsBin, ['privacy', 'epsilon', '--q', String(q), '--sigma', String(sigma),
                                '--steps', String(steps), '--delta', String(delta)], {encoding: 'utf8'});
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout).epsilon;
}

test('terms.privacy: every problem at once, each with its path', async () => {
  let r = await create(validTerms({privacy: {epsilon: 0, delta: 0.01, max_epsilon_per_run: 'x', extra: 1}}));
  assert.equal(r.status, 422, JSON.stringify(r.json));
  const fields = r.json.error.details.map((d) => d.field).sort();
  assert.deepEqual(fields, ['terms.privacy.delta', 'terms.privacy.epsilon', 'terms.privacy.extra',
                            'terms.privacy.max_epsilon_per_run']);
  r = await create(validTerms({privacy: {epsilon: 100.5, delta: -1e-6}}));
  assert.equal(r.status, 422);
  assert.deepEqual(r.json.error.details.map((d) => d.field).sort(), ['terms.privacy.delta', 'terms.privacy.epsilon']);
  r = await create(validTerms({privacy: {epsilon: 2, delta: 1e-5, max_epsilon_per_run: 3}}));
  assert.equal(r.status, 422);
  assert.deepEqual(r.json.error.details, [{field: 'terms.privacy.max_epsilon_per_run',
                                           problem: 'must be at most terms.privacy.epsilon'}]);
  r = await create(validTerms({privacy: {delta: 1e-5}}));
  assert.equal(r.status, 422);
  assert.deepEqual(r.json.error.details.map((d) => d.field), ['terms.privacy.epsilon']);
  r = await create(validTerms({privacy: 'none'}));
  assert.equal(r.status, 422);
  assert.deepEqual(r.json.error.details.map((d) => d.field), ['terms.privacy']);
  // The bounds themselves are allowed.
  r = await create(validTerms({privacy: {epsilon: 100, delta: 1e-3}}));
  assert.equal(r.status, 201, JSON.stringify(r.json));
});

test('the term is signed content and the budget is readable by the parties and auditors only', async () => {
  const r = await create(validTerms({privacy: {epsilon: 3, delta: 1e-5, max_epsilon_per_run: 1.5}}));
  assert.equal(r.status, 201, JSON.stringify(r.json));
  const c = r.json;
  assert.deepEqual(c.terms.privacy, {epsilon: 3, delta: 1e-5, max_epsilon_per_run: 1.5});
  const content = {id: c.id, provider_id: c.provider_id, consumer_id: c.consumer_id, title: c.title,
                   description: c.description, terms: c.terms, version: c.terms_version};
  assert.equal(c.terms_hash, sha256hex(jcs(content)), 'terms_hash covers terms.privacy');

  for (const who of [p.provider, p.consumer, auditor, ctx.admin]) {
    const v = await privacy(who, c.id);
    assert.equal(v.status, 200, JSON.stringify(v.json));
    assert.deepEqual(v.json, {contract_id: c.id, budget: {epsilon: 3, delta: 1e-5, max_epsilon_per_run: 1.5},
                              runs: [], spent_epsilon: 0, committed_epsilon: 0, remaining_epsilon: 3});
  }
  const hidden = await privacy(outsider, c.id);
  assert.equal(hidden.status, 404);
  assert.equal(hidden.json.error.code, 'not_found');
  const refusals = await ctx.auditEvents(`action=contract.hidden&actor=${outsider.id}&limit=50`);
  assert.ok(refusals.some((e) => e.resource_id === c.id && e.outcome === 'denied'), 'the 404 is audited');
  const unknown = await privacy(p.provider, '00000000-0000-7000-8000-000000000000');
  assert.equal(unknown.status, 404);
  assert.equal((await ctx.call('GET', `/api/v1/contracts/${c.id}/privacy`, {})).status, 401);

  // A contract without the term: no budget.
  const plain = await ctx.create(p);
  const v = await privacy(p.consumer, plain.id);
  assert.equal(v.status, 200);
  assert.equal(v.json.budget, null);
  assert.equal(v.json.remaining_epsilon, null);
});

test('the view lists each run and composes their curves for what remains', async () => {
  const c = (await create(validTerms({privacy: {epsilon: 8, delta: 1e-5}}))).json;
  const t0 = '2026-12-01T10:00:00.000000Z';
  const t1 = '2026-12-01T10:05:00.000000Z';
  ctx.sql(`INSERT INTO privacy_budgets (contract_id, epsilon, delta, max_epsilon_per_run, created_at, updated_at)
           VALUES ('${c.id}', '8', '1.0000000000000001e-05', NULL, '${t0}', '${t0}')`);
  const run = (id, state, sigma, at, charged, released) =>
    ctx.sql(`INSERT INTO privacy_runs (run_id, contract_id, state, q, sigma, steps, delta, epsilon, epsilon_after,
             reserved_at, charged_at, released_at) VALUES ('${id}', '${c.id}', '${state}', '0.25', '${sigma}', 40,
             '1.0000000000000001e-05', '1', '1', '${at}', ${charged ? `'${charged}'` : 'NULL'},
             ${released ? `'${released}'` : 'NULL'})`);
  run('run-a', 'charged', '3', t0, t1, null);
  run('run-b', 'reserved', '3', t1, null, null);
  run('run-c', 'released', '0.8', t1, null, t1);
  const v = await privacy(p.provider, c.id);
  assert.equal(v.status, 200, JSON.stringify(v.json));
  assert.deepEqual(v.json.runs.map((x) => [x.run_id, x.state]),
                   [['run-a', 'charged'], ['run-b', 'reserved'], ['run-c', 'released']]);
  assert.deepEqual(v.json.runs[0], {run_id: 'run-a', state: 'charged', q: 0.25, sigma: 3, steps: 40, delta: 1e-5,
                                    epsilon: 1, reserved_at: t0, charged_at: t1, released_at: null});
  const spent = epsilon(0.25, 3, 40, 1e-5);
  const committed = epsilon(0.25, 3, 80, 1e-5); // two runs of one (q, sigma): their curves add
  assert.ok(Math.abs(v.json.spent_epsilon - spent) < 1e-9 * spent, `${v.json.spent_epsilon} vs ${spent}`);
  assert.ok(Math.abs(v.json.committed_epsilon - committed) < 1e-9 * committed);
  assert.ok(committed < 2 * spent, 'composition is tighter than adding epsilons');
  assert.ok(Math.abs(v.json.remaining_epsilon - (8 - committed)) < 1e-9 * committed);
});
