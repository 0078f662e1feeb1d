// Contracts through the API: creation and validation (every problem with its
// path), reads with ETag, lists with filters and cursors, replacement with
// If-Match (concurrent PUTs: exactly one wins), the whole lifecycle and every
// illegal transition, who may do what (non-parties get 404), versions, and
// the audit of every change. Every response is checked against
// api/openapi.yaml. Runs on the backend chosen by DCMS_TEST_BACKEND.

import assert from 'node:assert/strict';
import {before, describe, test} from 'node:test';
import {bearer, contractsContext, jcs, PW, sha256hex, validTerms} from './lib/contracts.mjs';
import {login} from './lib/iam.mjs';

let t; // the context: server, admin, helpers
let p; // a provider and a consumer with signing keys

before(async () => {
  t = await contractsContext();
  p = await t.parties();
});

describe('create and read', () => {
  test('a party creates a Draft; the answer has an ETag, a Location and the terms hash', async () => {
    const c = await t.create(p);
    assert.equal(c.status, 'draft');
    assert.equal(c.version, 1);
    assert.equal(c.terms_version, 1);
    assert.deepEqual(c.signatures, []);
    assert.equal(c.created_by, p.provider.id);
    const content = {id: c.id, provider_id: c.provider_id, consumer_id: c.consumer_id, title: c.title,
                     description: c.description, terms: c.terms, version: c.terms_version};
    assert.equal(c.terms_hash, sha256hex(jcs(content)), 'terms_hash is SHA-256 of the RFC 8785 content');
    const r = await t.call('GET', `/api/v1/contracts/${c.id}`, {headers: bearer(p.consumer.token)});
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('etag'), '"1"');
    assert.deepEqual(r.json, c);
    const ev = await t.auditEvents(`resource_id=${c.id}&action=contract.create`);
    assert.equal(ev.length, 1);
    assert.equal(ev[0].actor, p.provider.id);
    assert.equal(ev[0].details.terms_hash, c.terms_hash);
  });

  test('timestamps are normalized and pricing is optional', async () => {
    const terms = validTerms({effective_from: '2026-01-01T01:00:00+01:00'});
    delete terms.pricing;
    delete terms.security.custom_policies;
    const c = await t.create(p, {terms});
    assert.equal(c.terms.effective_from, '2026-01-01T00:00:00.000000Z');
    assert.equal(c.terms.pricing, undefined);
    assert.deepEqual(c.terms.security.custom_policies, []);
  });

  test('validation returns every problem at once, each with its JSON path', async () => {
    const terms = validTerms();
    terms.retention.days = 0;
    terms.retention.extra = 1;
    terms.security.encryption_level = 'ultra';
    terms.usage.raw_data_export = true;
    terms.usage.max_training_runs = 2.5;
    terms.pricing = {model: 'fixed', amount: 10.5, currency: 'EUX'};
    terms.compliance.data_residency = ['de'];
    terms.data_access.permissions = ['train', 'train'];
    terms.expires_at = terms.effective_from;
    terms.unknown = true;
    const r = await t.call('POST', '/api/v1/contracts', {
      headers: bearer(p.provider.token),
      json: {title: '', provider_id: p.provider.id, consumer_id: p.provider.id, terms, color: 'red'},
    });
    assert.equal(r.status, 422);
    const fields = r.json.error.details.map((d) => d.field);
    for (const f of ['color', 'title', 'consumer_id', 'terms.retention.days', 'terms.retention.extra',
                     'terms.security.encryption_level', 'terms.usage.raw_data_export',
                     'terms.usage.max_training_runs', 'terms.pricing.amount', 'terms.pricing.currency',
                     'terms.compliance.data_residency[0]', 'terms.data_access.permissions[1]',
                     'terms.expires_at', 'terms.unknown']) {
      assert.ok(fields.includes(f), `${f} missing in ${JSON.stringify(r.json.error.details)}`);
    }
  });

  test('missing members and wrong types are reported with their paths', async () => {
    const r = await t.call('POST', '/api/v1/contracts', {
      headers: bearer(p.provider.token),
      json: {provider_id: 'nope', consumer_id: p.consumer.id, terms: {security: {encryption_level: 5}}},
    });
    assert.equal(r.status, 422);
    const fields = r.json.error.details.map((d) => d.field);
    for (const f of ['title', 'provider_id', 'terms.data_access', 'terms.usage', 'terms.retention',
                     'terms.compliance', 'terms.security.encryption_level',
                     'terms.security.network_isolation', 'terms.effective_from', 'terms.expires_at']) {
      assert.ok(fields.includes(f), `${f} missing in ${JSON.stringify(fields)}`);
    }
  });

  test('parties must exist, be active and hold the role of their side', async () => {
    const noRole = await t.identity({roles: ['consumer']});
    const r1 = await t.call('POST', '/api/v1/contracts', {
      headers: bearer(t.admin),
      json: {title: 'x', provider_id: noRole.id, consumer_id: '01a20a82-0000-7000-8000-000000000000',
             terms: validTerms()},
    });
    assert.equal(r1.status, 422);
    assert.deepEqual(r1.json.error.details.map((d) => d.field).sort(), ['consumer_id', 'provider_id']);
    const susp = await t.identity({roles: ['consumer']});
    const s = await t.call('POST', `/api/v1/identities/${susp.id}/suspend`,
                           {headers: bearer(t.admin), json: {reason: 'test'}}, '/api/v1/identities/{id}/suspend');
    assert.equal(s.status, 200);
    const r2 = await t.call('POST', '/api/v1/contracts', {
      headers: bearer(t.admin),
      json: {title: 'x', provider_id: p.provider.id, consumer_id: susp.id, terms: validTerms()},
    });
    assert.equal(r2.status, 422);
    assert.match(r2.json.error.details[0].problem, /not an active identity/);
  });

  test('a caller creates contracts only between parties it belongs to (admins excepted)', async () => {
    const other = await t.identity({roles: ['provider']});
    const r = await t.call('POST', '/api/v1/contracts', {
      headers: bearer(other.token),
      json: {title: 'x', provider_id: p.provider.id, consumer_id: p.consumer.id, terms: validTerms()},
    });
    assert.equal(r.status, 403);
    const a = await t.call('POST', '/api/v1/contracts', {
      headers: bearer(t.admin),
      json: {title: 'by admin', provider_id: p.provider.id, consumer_id: p.consumer.id, terms: validTerms()},
    });
    assert.equal(a.status, 201);
  });

  test('malformed JSON and a wrong content type are refused', async () => {
    const r = await t.call('POST', '/api/v1/contracts',
                           {headers: {...bearer(p.provider.token), 'Content-Type': 'application/json'}, body: '{"title":'});
    assert.equal(r.status, 400);
    const r2 = await t.call('POST', '/api/v1/contracts', {headers: bearer(p.provider.token), json: [1, 2]});
    assert.equal(r2.status, 422);
  });
});

describe('who sees and does what', () => {
  test('a non-party gets 404 (not 403) for someone else\'s contract, on every route', async () => {
    const c = await t.inState(p, 'pending_signature');
    const stranger = await t.identity({roles: ['provider', 'consumer']});
    const h = bearer(stranger.token);
    for (const [m, suffix, json] of [['GET', ''], ['GET', '/versions'], ['GET', '/verify'],
                                     ['POST', '/sign', {type: 'digital', terms_hash: c.terms_hash, key_id: 'k', signature: Buffer.alloc(64).toString('base64')}],
                                     ['POST', '/activate'], ['POST', '/submit'], ['POST', '/terminate', {reason: 'x'}],
                                     ['DELETE', '']]) {
      const r = await t.call(m, `/api/v1/contracts/${c.id}${suffix}`, {headers: h, ...(json ? {json} : {})});
      assert.equal(r.status, 404, `${m} ${suffix}: ${JSON.stringify(r.json)}`);
    }
    const put = await t.call('PUT', `/api/v1/contracts/${c.id}`, {
      headers: {...h, 'If-Match': '"1"'},
      json: {title: 'x', provider_id: p.provider.id, consumer_id: p.consumer.id, terms: validTerms()},
    });
    assert.equal(put.status, 404);
    const list = await t.call('GET', '/api/v1/contracts', {headers: h});
    assert.equal(list.json.contracts.length, 0);
    const byParty = await t.call('GET', `/api/v1/contracts?party=${p.provider.id}&status=pending_signature`, {headers: h});
    assert.equal(byParty.json.contracts.length, 0, 'naming a party does not widen what one sees');
    const mine = await t.call('GET', `/api/v1/contracts?party=${p.provider.id}&status=pending_signature&limit=200`,
                              {headers: bearer(p.consumer.token)});
    assert.ok(mine.json.contracts.some((x) => x.id === c.id));
    const bogus = await t.call('GET', '/api/v1/contracts/not-a-uuid', {headers: h});
    assert.equal(bogus.status, 404);
    let ev = [];
    for (let i = 0; i < 40 && ev.length < 9; i++) {
      ev = (await t.auditEvents(`action=contract.hidden&resource_id=${c.id}&limit=100`))
               .filter((e) => e.actor === stranger.id);
      if (ev.length < 9) await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(ev.length, 9, 'every hidden answer is audited as a denial');
    assert.ok(ev.every((e) => e.outcome === 'denied'));
  });

  test('a non-party whose own signature checks out still gets 404, and nothing changes', async () => {
    // A digital signature is checked before the contract is read (its check says nothing of
    // the contract); the contract's checks then answer under the write lock.
    const c = await t.inState(p, 'pending_signature');
    const stranger = await t.identity({roles: ['consumer']});
    stranger.key = await t.signingKey(stranger);
    const r = await t.signDigital(stranger, c);
    assert.equal(r.status, 404, JSON.stringify(r.json));
    const g = await t.call('GET', `/api/v1/contracts/${c.id}`, {headers: bearer(p.consumer.token)});
    assert.equal(g.json.version, c.version);
    assert.deepEqual(g.json.signatures, []);
  });

  test('members of a party organization holding the role act for it', async () => {
    const org = await t.identity({kind: 'organization', roles: ['provider']});
    const member = await t.identity({roles: ['provider'], org: org.id});
    member.key = await t.signingKey(member);
    const viewer = await t.identity({roles: ['consumer'], org: org.id}); // same org, other role
    viewer.key = await t.signingKey(viewer);
    const q = {provider: {...member, id: org.id, token: member.token, key: member.key}, consumer: p.consumer};
    const c = await t.create(q, {by: member});
    assert.equal(c.provider_id, org.id);
    const sub = await t.op(member, c, 'submit');
    assert.equal(sub.status, 200);
    const seen = await t.call('GET', `/api/v1/contracts/${c.id}`, {headers: bearer(viewer.token)});
    assert.equal(seen.status, 200, 'an organization member may read');
    const bad = await t.signDigital(viewer, sub.json);
    assert.equal(bad.status, 403, 'a member without the provider role does not sign for the provider');
    const ok = await t.signDigital(member, sub.json);
    assert.equal(ok.status, 200, JSON.stringify(ok.json));
    assert.equal(ok.json.signatures[0].side, 'provider');
    assert.equal(ok.json.signatures[0].signer_id, member.id);
  });

  test('auditors read every contract and change none; admins manage but never sign', async () => {
    const c = await t.inState(p, 'pending_signature');
    const auditor = await t.identity({roles: ['auditor']});
    const r = await t.call('GET', `/api/v1/contracts/${c.id}`, {headers: bearer(auditor.token)});
    assert.equal(r.status, 200);
    const l = await t.call('GET', '/api/v1/contracts?limit=200', {headers: bearer(auditor.token)});
    assert.ok(l.json.contracts.some((x) => x.id === c.id));
    assert.equal((await t.op(auditor, c, 'activate')).status, 403);
    const s = await t.op(t.admin, c, 'sign', {type: 'digital', terms_hash: c.terms_hash, key_id: 'k',
                                              signature: Buffer.alloc(64).toString('base64')});
    assert.equal(s.status, 403);
    assert.match(s.json.error.message, /never sign/);
    const a = await t.inState(p, 'active');
    const sus = await t.op(t.admin, a, 'suspend', {reason: 'investigation'});
    assert.equal(sus.status, 200);
    assert.equal(sus.json.status_reason, 'investigation');
  });

  test('only the provider side suspends and resumes; the consumer may terminate', async () => {
    const c = await t.inState(p, 'active');
    const r = await t.op(p.consumer, c, 'suspend');
    assert.equal(r.status, 403);
    const s = await t.op(p.provider, c, 'suspend');
    assert.equal(s.status, 200);
    assert.equal((await t.op(p.consumer, c, 'resume')).status, 403);
    assert.equal((await t.op(p.provider, c, 'resume')).status, 200);
    const term = await t.op(p.consumer, c, 'terminate', {reason: 'no longer needed'});
    assert.equal(term.status, 200);
    assert.equal(term.json.status, 'terminated');
  });
});

describe('lifecycle', () => {
  test('create → submit → sign ×2 → activate → suspend → resume → terminate, each audited with versions', async () => {
    let c = await t.create(p);
    const steps = [];
    // Each answer is the contract as stored: the next read is the same document.
    const stored = async (r) => {
      const g = await t.call('GET', `/api/v1/contracts/${c.id}`, {headers: bearer(p.consumer.token)});
      assert.deepEqual(r.json, g.json, `${steps.at(-1)} answered what the store does not hold`);
    };
    let r = await t.op(p.provider, c, 'submit');
    assert.equal(r.status, 200);
    assert.equal(r.json.status, 'pending_signature');
    assert.equal(r.headers.get('etag'), '"2"');
    steps.push('submit');
    await stored(r);
    c = r.json;
    r = await t.signDigital(p.provider, c);
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal(r.json.signatures.length, 1);
    const s = r.json.signatures[0];
    assert.equal(s.side, 'provider');
    assert.equal(s.type, 'digital');
    assert.equal(s.algorithm, 'Ed25519');
    assert.equal(s.key_id, p.provider.key.key_id);
    assert.equal(s.signed_hash, c.terms_hash);
    assert.equal(s.signer_id, p.provider.id);
    assert.ok(s.evidence.signature);
    steps.push('sign');
    await stored(r);
    const early = await t.op(p.consumer, c, 'activate');
    assert.equal(early.status, 409);
    assert.match(early.json.error.message, /missing: consumer/);
    r = await t.signDigital(p.consumer, c);
    assert.equal(r.status, 200, JSON.stringify(r.json));
    steps.push('sign');
    await stored(r);
    // The contract's mirror of its signatures lists what the signature rows hold, in their order.
    const v = await t.call('GET', `/api/v1/contracts/${c.id}/verify`, {headers: bearer(p.consumer.token)});
    assert.equal(v.status, 200);
    assert.deepEqual(r.json.signatures.map(({evidence, ...rest}) => rest),
                     v.json.signatures.map(({valid, voided, problem, ...rest}) => rest));
    assert.equal(r.json.signatures.length, 2);
    r = await t.op(p.consumer, c, 'activate');
    assert.equal(r.status, 200);
    assert.equal(r.json.status, 'active');
    steps.push('activate');
    await stored(r);
    r = await t.op(p.provider, c, 'suspend', {reason: 'key rotation'});
    assert.equal(r.json.status, 'suspended');
    steps.push('suspend');
    await stored(r);
    r = await t.op(p.provider, c, 'resume');
    assert.equal(r.json.status, 'active');
    steps.push('resume');
    await stored(r);
    r = await t.op(p.provider, c, 'terminate');
    assert.equal(r.status, 422, 'terminate needs a reason');
    assert.equal(r.json.error.details[0].field, 'reason');
    r = await t.op(p.provider, c, 'terminate', {reason: 'project finished'});
    assert.equal(r.status, 200);
    assert.equal(r.json.status, 'terminated');
    assert.equal(r.json.status_reason, 'project finished');
    steps.push('terminate');
    await stored(r);
    const ev = await t.auditEvents(`resource_type=contract&resource_id=${c.id}&limit=100`);
    const actions = ev.map((e) => e.action).filter((a) => a !== 'contract.create');
    const ordered = ev[0].seq < ev[ev.length - 1].seq ? actions : actions.reverse();
    assert.deepEqual(ordered, steps.map((x) => `contract.${x}`));
    for (const e of ev.filter((x) => x.action !== 'contract.create')) {
      assert.equal(e.details.to_version, e.details.from_version + 1, JSON.stringify(e));
    }
  });

  test('every illegal transition is 409 naming the current state and the allowed operations', async () => {
    const allowed = {
      draft: ['submit', 'edit', 'delete'],
      pending_signature: ['sign', 'activate', 'edit'],
      active: ['suspend', 'terminate'],
      suspended: ['resume', 'terminate'],
      terminated: [],
    };
    for (const state of Object.keys(allowed)) {
      const c = await t.inState(p, state);
      assert.equal(c.status, state);
      const tries = {
        submit: () => t.op(p.provider, c, 'submit'),
        sign: () => t.signDigital(p.provider, c),
        activate: () => t.op(p.provider, c, 'activate'),
        suspend: () => t.op(p.provider, c, 'suspend'),
        resume: () => t.op(p.provider, c, 'resume'),
        terminate: () => t.op(p.provider, c, 'terminate', {reason: 'r'}),
        edit: () => t.call('PUT', `/api/v1/contracts/${c.id}`, {
          headers: {...bearer(p.provider.token), 'If-Match': `"${c.version}"`},
          json: {title: 'changed', provider_id: p.provider.id, consumer_id: p.consumer.id, terms: validTerms()},
        }),
        delete: () => t.call('DELETE', `/api/v1/contracts/${c.id}`, {headers: bearer(p.provider.token)}),
      };
      for (const [name, fn] of Object.entries(tries)) {
        if (allowed[state].includes(name)) continue;
        const r = await fn();
        assert.equal(r.status, 409, `${name} from ${state}: ${JSON.stringify(r.json)}`);
        assert.match(r.json.error.message, new RegExp(`is ${state}; allowed: `));
        const want = allowed[state].length ? allowed[state].join(', ') : 'nothing \\(final state\\)';
        assert.match(r.json.error.message, new RegExp(`allowed: ${want}$`));
        assert.equal(r.json.error.details[0].field, 'status');
      }
    }
  });

  test('only Draft contracts are deleted; the deletion is audited', async () => {
    const c = await t.create(p);
    const r = await t.call('DELETE', `/api/v1/contracts/${c.id}`, {headers: bearer(p.consumer.token)});
    assert.equal(r.status, 204);
    assert.equal((await t.call('GET', `/api/v1/contracts/${c.id}`, {headers: bearer(p.consumer.token)})).status, 404);
    const ev = await t.auditEvents(`resource_id=${c.id}&action=contract.delete`);
    assert.equal(ev.length, 1);
  });
});

describe('replacement with If-Match', () => {
  const body = (title, terms = validTerms()) =>
      ({title, provider_id: p.provider.id, consumer_id: p.consumer.id, terms});

  test('PUT needs If-Match (428 without), refuses a stale one (412), and bumps the versions', async () => {
    const c = await t.create(p);
    const h = bearer(p.provider.token);
    let r = await t.call('PUT', `/api/v1/contracts/${c.id}`, {headers: h, json: body('a')});
    assert.equal(r.status, 428);
    assert.equal(r.json.error.code, 'precondition_required');
    assert.match(r.json.error.message, /If-Match is required/);
    r = await t.call('PUT', `/api/v1/contracts/${c.id}`, {headers: {...h, 'If-Match': '"7"'}, json: body('a')});
    assert.equal(r.status, 412);
    r = await t.call('PUT', `/api/v1/contracts/${c.id}`, {headers: {...h, 'If-Match': '"1"'}, json: body('renamed')});
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal(r.json.title, 'renamed');
    assert.equal(r.json.version, 2);
    assert.equal(r.json.terms_version, 2);
    assert.equal(r.headers.get('etag'), '"2"');
    assert.notEqual(r.json.terms_hash, c.terms_hash);
    const ev = await t.auditEvents(`resource_id=${c.id}&action=contract.update`);
    assert.equal(ev[0].details.from_version, 1);
    assert.equal(ev[0].details.to_version, 2);
    assert.equal(ev[0].details.from_terms_hash, c.terms_hash);
    assert.equal(ev[0].details.to_terms_hash, r.json.terms_hash);
  });

  test('of concurrent PUTs with the same If-Match exactly one wins, the others get 412', async () => {
    const c = await t.create(p);
    const N = 8;
    const rs = await Promise.all(Array.from({length: N}, (_, i) => t.call('PUT', `/api/v1/contracts/${c.id}`, {
      headers: {...bearer(i % 2 ? p.provider.token : p.consumer.token), 'If-Match': '"1"'},
      json: body(`writer ${i}`),
    })));
    const codes = rs.map((r) => r.status).sort();
    assert.deepEqual(codes, [200, ...Array(N - 1).fill(412)], JSON.stringify(rs.map((r) => r.json)));
    const now = await t.call('GET', `/api/v1/contracts/${c.id}`, {headers: bearer(p.provider.token)});
    assert.equal(now.json.version, 2);
    assert.equal(now.json.title, rs.find((r) => r.status === 200).json.title);
  });

  test('editing a contract with signatures returns it to Draft and voids them (kept in history)', async () => {
    const c = await t.inState(p, 'pending_signature');
    const s = await t.signDigital(p.provider, c);
    assert.equal(s.status, 200);
    const r = await t.call('PUT', `/api/v1/contracts/${c.id}`, {
      headers: {...bearer(p.consumer.token), 'If-Match': `"${s.json.version}"`},
      json: body(c.title, validTerms({retention: {days: 60, deletion: 'delete'}})),
    });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal(r.json.status, 'draft');
    assert.deepEqual(r.json.signatures, []);
    assert.equal(r.json.terms_version, 2);
    const v = await t.call('GET', `/api/v1/contracts/${c.id}/verify`, {headers: bearer(p.consumer.token)});
    assert.equal(v.status, 200);
    assert.equal(v.json.signatures.length, 1);
    assert.equal(v.json.signatures[0].voided, true);
    assert.match(v.json.signatures[0].void_reason, /terms edited/);
    assert.equal(v.json.signatures[0].valid, true, 'a voided signature still verifies over its own version');
    const ev = await t.auditEvents(`resource_id=${c.id}&action=contract.update`);
    assert.equal(ev[0].details.signatures_voided, 1);
    assert.equal(ev[0].details.from_status, 'pending_signature');
  });

  test('a PUT that changes nothing signed keeps the version and the signatures', async () => {
    const c = await t.create(p);
    const r = await t.call('PUT', `/api/v1/contracts/${c.id}`, {
      headers: {...bearer(p.provider.token), 'If-Match': '"1"'},
      json: {title: c.title, description: c.description, provider_id: c.provider_id,
             consumer_id: c.consumer_id, terms: c.terms},
    });
    assert.equal(r.status, 200);
    assert.equal(r.json.version, 1);
  });
});

describe('versions', () => {
  test('every terms version is listed with its hash and signed content', async () => {
    const c = await t.create(p);
    const r1 = await t.call('PUT', `/api/v1/contracts/${c.id}`, {
      headers: {...bearer(p.provider.token), 'If-Match': '"1"'},
      json: {title: 'second', provider_id: p.provider.id, consumer_id: p.consumer.id, terms: validTerms()},
    });
    assert.equal(r1.status, 200);
    const r = await t.call('GET', `/api/v1/contracts/${c.id}/versions`, {headers: bearer(p.consumer.token)});
    assert.equal(r.status, 200);
    assert.deepEqual(r.json.versions.map((v) => v.terms_version), [1, 2]);
    assert.equal(r.json.versions[0].terms_hash, c.terms_hash);
    assert.equal(r.json.versions[1].terms_hash, r1.json.terms_hash);
    assert.deepEqual(r.json.versions.map((v) => v.current), [false, true]);
    for (const v of r.json.versions) assert.equal(sha256hex(jcs(v.content)), v.terms_hash);
  });
});

describe('lists', () => {
  test('filters by status, party, role and title text; cursor pages cover everything once', async () => {
    const q = await t.parties();
    const made = [];
    for (let i = 0; i < 5; i++) made.push(await t.create(q, {title: `Zebra deal ${i}`}));
    await t.op(q.provider, made[0], 'submit');
    const h = bearer(q.consumer.token);
    let r = await t.call('GET', '/api/v1/contracts?status=pending_signature', {headers: h});
    assert.deepEqual(r.json.contracts.map((c) => c.id), [made[0].id]);
    r = await t.call('GET', '/api/v1/contracts?q=zebra%20DEAL%203', {headers: h});
    assert.deepEqual(r.json.contracts.map((c) => c.id), [made[3].id]);
    r = await t.call('GET', '/api/v1/contracts?role=provider', {headers: h});
    assert.equal(r.json.contracts.length, 0, 'the consumer is on no provider side');
    r = await t.call('GET', `/api/v1/contracts?role=provider&party=${q.provider.id}`, {headers: bearer(t.admin)});
    assert.equal(r.json.contracts.length, 5);
    r = await t.call('GET', '/api/v1/contracts?q=100%25', {headers: h});
    assert.equal(r.json.contracts.length, 0, 'LIKE wildcards are literal');
    const seen = [];
    let cursor = null;
    for (let i = 0; i < 10; i++) {
      r = await t.call('GET', `/api/v1/contracts?limit=2${cursor ? `&cursor=${cursor}` : ''}`, {headers: h});
      assert.equal(r.status, 200);
      seen.push(...r.json.contracts.map((c) => c.id));
      cursor = r.json.next_cursor;
      if (!cursor) break;
    }
    assert.deepEqual(seen, made.map((c) => c.id).reverse(), 'newest first, each once');
  });

  test('a caller on both sides (itself and through its organization) sees each contract once', async () => {
    // Made while `me` was in no organization (the two sides of a new contract are two
    // organizations); `me` joins the provider organization afterwards.
    const org = await t.identity({kind: 'organization', roles: ['provider']});
    const me = await t.identity({roles: ['provider', 'consumer']});
    const q = {provider: {id: org.id, token: me.token}, consumer: {id: me.id, token: me.token}};
    const a = await t.create(q, {by: me});
    const b = await t.create(q, {by: me});
    t.sql(`UPDATE identities SET organization_id = '${org.id}' WHERE id = '${me.id}'`);
    me.token = (await login(t.server, me.email, PW)).access_token;
    const r = await t.call('GET', '/api/v1/contracts?limit=1', {headers: bearer(me.token)});
    assert.deepEqual(r.json.contracts.map((c) => c.id), [b.id]);
    const r2 = await t.call('GET', `/api/v1/contracts?limit=5&cursor=${r.json.next_cursor}`, {headers: bearer(me.token)});
    assert.deepEqual(r2.json.contracts.map((c) => c.id), [a.id]);
    assert.equal(r2.json.next_cursor, null);
    const r3 = await t.call('GET', '/api/v1/contracts?role=consumer', {headers: bearer(me.token)});
    assert.equal(r3.json.contracts.length, 2);
  });

  test('bad filters are 422 with the parameter named', async () => {
    const r = await t.call('GET', '/api/v1/contracts?status=open&role=x&limit=0&cursor=zzz&party=1',
                           {headers: bearer(p.provider.token)});
    assert.equal(r.status, 422);
    assert.deepEqual(r.json.error.details.map((d) => d.field).sort(), ['cursor', 'limit', 'party', 'role', 'status']);
  });
});
