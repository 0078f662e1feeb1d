// Contracts: the parties are fixed at creation and belong to two different
// organizations; a contract needs two different signers (and keys), checked
// when signing and again at activation. SQLite and PostgreSQL.

import assert from 'node:assert/strict';
import {before, describe, test} from 'node:test';
import {bearer, contractsContext, PW, validTerms} from './lib/contracts.mjs';
import {login} from './lib/iam.mjs';

let t;
let p;

before(async () => {
  t = await contractsContext();
  p = await t.parties();
});


function fields(r) {
  return (r.json?.error?.details ?? []).map((d) => d.field).sort();
}

describe('parties are fixed at creation', () => {
  test('PUT with another provider_id or consumer_id is 422 naming the field; nothing changes', async () => {
    const c = await t.inState(p, 'draft');
    const other = await t.identity({roles: ['provider', 'consumer']});
    const put = (json) => t.call('PUT', `/api/v1/contracts/${c.id}`, {
      headers: {...bearer(p.consumer.token), 'If-Match': `"${c.version}"`},
      json: {title: c.title, description: c.description, provider_id: c.provider_id,
             consumer_id: c.consumer_id, terms: validTerms(), ...json},
    });
    let r = await put({provider_id: other.id, title: 'stolen'});
    assert.equal(r.status, 422, JSON.stringify(r.json));
    assert.deepEqual(fields(r), ['provider_id']);
    assert.match(r.json.error.details[0].problem, /fixed at creation/);
    r = await put({provider_id: other.id, consumer_id: p.provider.id});
    assert.equal(r.status, 422, JSON.stringify(r.json));
    assert.deepEqual(fields(r), ['consumer_id', 'provider_id']);
    const g = await t.call('GET', `/api/v1/contracts/${c.id}`, {headers: bearer(p.provider.token)});
    assert.equal(g.status, 200);
    assert.equal(g.json.provider_id, p.provider.id);
    assert.equal(g.json.consumer_id, p.consumer.id);
    assert.equal(g.json.title, c.title);
    const seen = await t.call('GET', `/api/v1/contracts/${c.id}`, {headers: bearer(other.token)});
    assert.equal(seen.status, 404, 'the third party never sees the terms');
  });

  test('a PUT that keeps the parties still edits', async () => {
    const c = await t.inState(p, 'draft');
    const r = await t.call('PUT', `/api/v1/contracts/${c.id}`, {
      headers: {...bearer(p.consumer.token), 'If-Match': `"${c.version}"`},
      json: {title: 'renamed', provider_id: c.provider_id.toUpperCase(), consumer_id: c.consumer_id,
             terms: validTerms()},
    });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal(r.json.title, 'renamed');
    assert.equal(r.json.provider_id, p.provider.id);
  });
});

describe('two organizations', () => {
  test('provider and consumer in the same organization are refused (422, consumer_id)', async () => {
    const org = await t.identity({kind: 'organization', roles: ['provider', 'consumer']});
    const a = await t.identity({roles: ['provider'], org: org.id});
    const b = await t.identity({roles: ['consumer'], org: org.id});
    const cases = [[a.id, b.id, a], [org.id, b.id, a], [a.id, org.id, a]];
    for (const [provider_id, consumer_id, by] of cases) {
      const r = await t.call('POST', '/api/v1/contracts', {
        headers: bearer(by.token), json: {title: 'inside', provider_id, consumer_id, terms: validTerms()},
      });
      assert.equal(r.status, 422, JSON.stringify(r.json));
      assert.deepEqual(fields(r), ['consumer_id']);
      assert.match(r.json.error.details[0].problem, /different organizations/);
    }
    const other = await t.identity({kind: 'organization', roles: ['consumer']});
    const r = await t.call('POST', '/api/v1/contracts', {
      headers: bearer(a.token), json: {title: 'across', provider_id: a.id, consumer_id: other.id, terms: validTerms()},
    });
    assert.equal(r.status, 201, JSON.stringify(r.json));
  });
});

describe('two signers', () => {
  /* A contract made while `me` was in no organization; then `me` joins the provider organization
   * (data from before the organization check, or a later membership change). */
  async function bothSides() {
    const org = await t.identity({kind: 'organization', roles: ['provider']});
    const me = await t.identity({roles: ['provider', 'consumer']});
    me.key = await t.signingKey(me);
    const q = {provider: {id: org.id, token: me.token}, consumer: {id: me.id, token: me.token}};
    let c = await t.create(q, {by: me});
    c = (await t.op(me, c, 'submit')).json;
    t.sql(`UPDATE identities SET organization_id = '${org.id}' WHERE id = '${me.id}'`);
    me.token = (await login(t.server, me.email, PW)).access_token;
    return {org, me, c};
  }

  test('one person holding both roles signs one side only (403), whatever the key', async () => {
    const {me, c} = await bothSides();
    let r = await t.signDigital(me, c, {});
    assert.equal(r.status, 422, 'a caller on both sides names the side');
    const sig = (await import('node:crypto')).sign(null, Buffer.from(c.terms_hash, 'hex'), me.key.privateKey)
        .toString('base64');
    const body = (side, key_id = me.key.key_id, s = sig) =>
      ({type: 'digital', terms_hash: c.terms_hash, key_id, signature: s, side});
    r = await t.op(me, c, 'sign', body('provider'));
    assert.equal(r.status, 200, JSON.stringify(r.json));
    r = await t.op(me, c, 'sign', body('consumer'));
    assert.equal(r.status, 403, JSON.stringify(r.json));
    assert.match(r.json.error.message, /different signer/);
    const k2 = await t.signingKey(me);
    const s2 = (await import('node:crypto')).sign(null, Buffer.from(c.terms_hash, 'hex'), k2.privateKey)
        .toString('base64');
    r = await t.op(me, c, 'sign', body('consumer', k2.key_id, s2));
    assert.equal(r.status, 403, 'another key of the same person does not help');
    r = await t.op(me, c, 'activate');
    assert.equal(r.status, 409);
  });

  test('a key that signed the other side is refused (422, key_id)', async () => {
    const c = await t.inState(p, 'pending_signature');
    let r = await t.signDigital(p.provider, c);
    assert.equal(r.status, 200, JSON.stringify(r.json));
    // The provider's signature row claims the consumer's key (a key shared between the sides).
    t.sql(`UPDATE contract_signatures SET key_id = '${p.consumer.key.key_id}' WHERE contract_id = '${c.id}'`);
    r = await t.signDigital(p.consumer, c);
    assert.equal(r.status, 422, JSON.stringify(r.json));
    assert.deepEqual(fields(r), ['key_id']);
  });

  test('activation re-checks two distinct signers (409)', async () => {
    const c = await t.inState(p, 'pending_signature');
    assert.equal((await t.signDigital(p.provider, c)).status, 200);
    assert.equal((await t.signDigital(p.consumer, c)).status, 200);
    // Both signatures recorded for one signer (signed before this check existed).
    t.sql(`UPDATE contract_signatures SET signer_id = '${p.provider.id}' WHERE contract_id = '${c.id}'`);
    let r = await t.op(p.consumer, c, 'activate');
    assert.equal(r.status, 409, JSON.stringify(r.json));
    assert.match(r.json.error.message, /same signer/);
    t.sql(`UPDATE contract_signatures SET signer_id = '${p.consumer.id}' WHERE contract_id = '${c.id}' AND side = 'consumer'`);
    r = await t.op(p.consumer, c, 'activate');
    assert.equal(r.status, 200, JSON.stringify(r.json));
  });
});

describe('the parties by name', () => {
  test('every contract answer names both parties (their names only, never an e-mail)', async () => {
    const names = (x) => [x.provider_name, x.consumer_name];
    const want = [p.provider.name, p.consumer.name];
    const noEmail = (r) => {
      const text = JSON.stringify(r.json ?? r);
      assert.ok(!text.includes(p.provider.email) && !text.includes(p.consumer.email), 'no e-mail of a party');
    };
    const c = await t.create(p, {title: 'named parties'});
    assert.deepEqual(names(c), want, 'the create answer');
    noEmail(c);
    const g = await t.call('GET', `/api/v1/contracts/${c.id}`, {headers: bearer(p.consumer.token)});
    assert.equal(g.status, 200);
    assert.deepEqual(names(g.json), want, 'the counterparty reads the other name');
    noEmail(g);
    const s = await t.op(p.provider, c, 'submit');
    assert.equal(s.status, 200);
    assert.deepEqual(names(s.json), want, 'a transition answer');
    const e = await t.call('PUT', `/api/v1/contracts/${c.id}`, {
      headers: {...bearer(p.provider.token), 'If-Match': `"${s.json.version}"`},
      json: {title: 'named parties 2', provider_id: c.provider_id, consumer_id: c.consumer_id, terms: validTerms()},
    });
    assert.equal(e.status, 200, JSON.stringify(e.json));
    assert.deepEqual(names(e.json), want, 'an edit answer');
    // A whole page: every row carries the names (read once for the page).
    const other = await t.create(p, {title: 'named parties 3'});
    const l = await t.call('GET', '/api/v1/contracts?q=named%20parties&limit=200', {headers: bearer(p.provider.token)});
    assert.equal(l.status, 200);
    const ids = l.json.contracts.map((x) => x.id);
    assert.ok(ids.includes(c.id) && ids.includes(other.id));
    for (const x of l.json.contracts) assert.deepEqual(names(x), want);
    noEmail(l);
    // A third party sees neither the contract nor the names.
    const third = await t.identity({roles: ['consumer']});
    const h = await t.call('GET', `/api/v1/contracts/${c.id}`, {headers: bearer(third.token)});
    assert.equal(h.status, 404);
    assert.ok(!JSON.stringify(h.json).includes(p.provider.name));
    const tl = await t.call('GET', '/api/v1/contracts?q=named%20parties', {headers: bearer(third.token)});
    assert.equal(tl.status, 200);
    assert.deepEqual(tl.json.contracts, []);
  });

  test('an organization as a party is named by its own name', async () => {
    const org = await t.identity({kind: 'organization', roles: ['consumer']});
    const r = await t.call('POST', '/api/v1/contracts', {
      headers: bearer(p.provider.token),
      json: {title: 'with an organization', provider_id: p.provider.id, consumer_id: org.id, terms: validTerms()},
    });
    assert.equal(r.status, 201, JSON.stringify(r.json));
    assert.equal(r.json.provider_name, p.provider.name);
    assert.equal(r.json.consumer_name, org.name);
  });
});
