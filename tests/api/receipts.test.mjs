// Receipts returned to the parties (issue 20, "Receipts"): each signature in
// a contract answer names its contract.sign audit event and the path of its
// receipt; the signer (a provider or a consumer without audit:read) reads
// that receipt, and so does the other party; it verifies offline with
// `dcmsd audit verify-receipt` against the pinned audit key, and the same
// receipt with one byte of its event changed does not. A third user who is
// not a party gets 404 on the receipt and the event, as for an unknown id,
// and the refusal is audited; a party gets 404 on the refusals recorded on
// its contract (they are the refused caller's). /verify shows the links too.
// The training side (key release, model download) is in training.test.mjs.
// Every response is checked against api/openapi.yaml.
// Runs on the backend chosen by DCMS_TEST_BACKEND.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {after, before, test} from 'node:test';
import {bearer, contractsContext} from './lib/contracts.mjs';
import {eventOf, readReceipt, tampered, verifyReceipt} from './lib/receipts.mjs';
import {stopAll} from './lib/server.mjs';

let ctx, p, outsider, key, tmp;

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dcms-receipts-'));
  ctx = await contractsContext();
  p = await ctx.parties();
  outsider = await ctx.identity({roles: ['consumer', 'provider']});
  key = (await ctx.call('GET', '/api/v1/audit/public-key')).json.public_key;
});

after(async () => {
  await stopAll();
  if (tmp) fs.rmSync(tmp, {recursive: true, force: true});
});

test('each signer reads the receipt its signature links to and checks it offline; so does the other party', async () => {
  const c = await ctx.inState(p, 'pending_signature');
  const links = {};
  for (const side of ['provider', 'consumer']) {
    const r = await ctx.signDigital(p[side], c);
    assert.equal(r.status, 200, JSON.stringify(r.json));
    const sig = r.json.signatures.find((s) => s.side === side);
    assert.ok(sig, JSON.stringify(r.json.signatures));
    assert.equal(sig.receipt, `/api/v1/audit/events/${sig.audit_event_id}/receipt`);
    links[side] = sig;
  }
  // The contract read later shows the same links.
  const g = await ctx.call('GET', `/api/v1/contracts/${c.id}`, {headers: bearer(p.consumer.token)});
  assert.equal(g.status, 200);
  assert.deepEqual(g.json.signatures.map((s) => s.receipt).sort(),
                   [links.provider.receipt, links.consumer.receipt].sort());

  for (const side of ['provider', 'consumer']) {
    const sig = links[side];
    for (const who of [p[side], p[side === 'provider' ? 'consumer' : 'provider']]) {
      const r = await readReceipt(ctx, who.token, sig.receipt);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.event.id, eventOf(sig.receipt));
      assert.equal(r.json.event.action, 'contract.sign');
      assert.equal(r.json.event.resource_id, c.id);
      assert.equal(r.json.event.actor, p[side].id);
      assert.equal(r.json.event.details.signature_id, sig.id);
      assert.equal(r.json.event.details.side, side);
      const ok = verifyReceipt(tmp, `${side}.json`, r.text, key);
      assert.equal(ok.status, 0, ok.out);
      assert.equal(ok.report.ok, true, ok.out);
      const bad = verifyReceipt(tmp, `${side}-tampered.json`, tampered(r.text), key);
      assert.equal(bad.status, 1, bad.out);
      assert.equal(bad.report.ok, false, bad.out);
      // The event itself, for the same readers.
      const ev = await ctx.call('GET', `/api/v1/audit/events/${sig.audit_event_id}`, {headers: bearer(who.token)},
                                '/api/v1/audit/events/{id}');
      assert.equal(ev.status, 200, ev.text);
      assert.equal(ev.json.id, sig.audit_event_id);
    }
  }
});

test('a third user who is not a party gets 404 on the receipt and the event, as for an unknown id', async () => {
  const c = await ctx.inState(p, 'pending_signature');
  const r = await ctx.signDigital(p.provider, c);
  assert.equal(r.status, 200, JSON.stringify(r.json));
  const sig = r.json.signatures[0];
  assert.equal((await readReceipt(ctx, p.provider.token, sig.receipt)).status, 200);
  const unknown = '00000000-0000-7000-8000-000000000000';
  const a = await readReceipt(ctx, outsider.token, sig.receipt);
  const b = await readReceipt(ctx, outsider.token, `/api/v1/audit/events/${unknown}/receipt`);
  assert.equal(a.status, 404, a.text);
  assert.equal(b.status, 404, b.text);
  assert.equal(a.json.error.message, b.json.error.message);
  const e = await ctx.call('GET', `/api/v1/audit/events/${sig.audit_event_id}`, {headers: bearer(outsider.token)},
                           '/api/v1/audit/events/{id}');
  assert.equal(e.status, 404, e.text);
  // The admin (audit:read) reads it as before.
  assert.equal((await readReceipt(ctx, ctx.admin, sig.receipt)).status, 200);
  // The refusal is on record.
  let seen = [];
  for (let i = 0; i < 40 && seen.length < 2; i++) {
    seen = (await ctx.auditEvents(`action=audit.event_hidden&resource_id=${sig.audit_event_id}&limit=10`))
        .filter((x) => x.actor === outsider.id && x.outcome === 'denied');
    if (seen.length < 2) await new Promise((res) => setTimeout(res, 50));
  }
  assert.equal(seen.length, 2, JSON.stringify(seen));
  // A party may not read the refusals recorded on its contract: they are the refused caller's.
  const h = await ctx.call('GET', `/api/v1/contracts/${unknown}`, {headers: bearer(outsider.token)});
  assert.equal(h.status, 404);
  const hidden = await ctx.call('GET', `/api/v1/contracts/${c.id}`, {headers: bearer(outsider.token)});
  assert.equal(hidden.status, 404);
  let ev = [];
  for (let i = 0; i < 40 && !ev.length; i++) {
    ev = await ctx.auditEvents(`action=contract.hidden&resource_id=${c.id}&limit=10`);
    if (!ev.length) await new Promise((res) => setTimeout(res, 50));
  }
  assert.ok(ev.length, 'contract.hidden recorded');
  const rc = await readReceipt(ctx, p.provider.token, `/api/v1/audit/events/${ev[0].id}/receipt`);
  assert.equal(rc.status, 404, rc.text);
});

test('/verify lists each signature with its receipt', async () => {
  const c = await ctx.inState(p, 'pending_signature');
  const s = await ctx.signDigital(p.provider, c);
  assert.equal(s.status, 200, JSON.stringify(s.json));
  const link = s.json.signatures[0].receipt;
  const v = await ctx.call('GET', `/api/v1/contracts/${c.id}/verify`, {headers: bearer(p.provider.token)},
                           '/api/v1/contracts/{id}/verify');
  assert.equal(v.status, 200, v.text);
  assert.equal(v.json.signatures[0].receipt, link);
  const r = await readReceipt(ctx, p.consumer.token, link);
  assert.equal(r.status, 200, r.text);
  assert.equal(verifyReceipt(tmp, 'void.json', r.text, key).status, 0);
});

test('migration 0023 finds the event of a signature from before it (the backfill, run again)', async () => {
  const c = await ctx.inState(p, 'pending_signature');
  const s = await ctx.signDigital(p.consumer, c);
  assert.equal(s.status, 200, JSON.stringify(s.json));
  const link = s.json.signatures[0].receipt;
  const backend = ctx.server.backend === 'postgres' ? 'pg' : 'sqlite';
  const migration = fs.readFileSync(new URL(`../../src/store/migrations/${backend}/0023_audit_receipts.sql`,
                                            import.meta.url), 'utf8');
  const backfill = migration.slice(migration.indexOf('UPDATE contract_signatures'));
  const verify = () => ctx.call('GET', `/api/v1/contracts/${c.id}/verify`, {headers: bearer(p.consumer.token)},
                                '/api/v1/contracts/{id}/verify');
  const read = () => ctx.call('GET', `/api/v1/contracts/${c.id}`, {headers: bearer(p.consumer.token)});
  // The row and the contract's mirror of its signatures as they were before 0023.
  const old = s.json.signatures.map(({audit_event_id: _a, receipt: _r, ...rest}) => rest);
  ctx.sql(`UPDATE contract_signatures SET audit_event_id = NULL WHERE contract_id = '${c.id}'`);
  ctx.sql(`UPDATE contracts SET signatures = '${JSON.stringify(old).replaceAll("'", "''")}' WHERE id = '${c.id}'`);
  assert.equal((await verify()).json.signatures[0].receipt, undefined, 'an old row has no link');
  assert.equal((await read()).json.signatures[0].receipt, undefined, 'nor has the old mirror');
  ctx.sql(backfill);
  assert.equal((await verify()).json.signatures[0].receipt, link);
  const after = await read();
  assert.equal(after.status, 200);
  assert.deepEqual(after.json.signatures, s.json.signatures);
});
