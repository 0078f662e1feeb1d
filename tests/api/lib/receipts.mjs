// Audit receipts as a party gets them (docs/audit.md, "Receipts"): read the
// receipt an answer links to, waiting out the short 202 while the event has
// no position yet, and check it offline with `dcmsd audit verify-receipt`.

import assert from 'node:assert/strict';
import {spawnSync} from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {bearer} from './iam.mjs';
import {dcmsBin} from './server.mjs';

const RECEIPT = /^\/api\/v1\/audit\/events\/([0-9a-f-]{36})\/receipt$/;

/** GET `link` (a receipt path) as `token` through ctx.call; retries 202 for up to 5 s. */
export async function readReceipt(ctx, token, link) {
  assert.match(link, RECEIPT);
  for (let i = 0; ; i++) {
    const r = await ctx.call('GET', link, {headers: bearer(token)}, '/api/v1/audit/events/{id}/receipt');
    if (r.status !== 202 || i >= 100) return r;
    await new Promise((res) => setTimeout(res, 50));
  }
}

/** The event id a receipt path names. */
export const eventOf = (link) => RECEIPT.exec(link)[1];

/** Runs `dcmsd audit verify-receipt` on `text` (written to dir/name) against the pinned `key`. */
export function verifyReceipt(dir, name, text, key) {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  const r = spawnSync(dcmsBin, ['audit', 'verify-receipt', file, '--public-key', key],
                      {encoding: 'utf8', timeout: 30000});
  let report = null;
  try { report = JSON.parse(r.stdout); } catch { /* left null: the status says */ }
  return {status: r.status, report, out: r.stdout + r.stderr};
}

/** The same receipt with one byte of its event changed: verify-receipt must refuse it. */
export function tampered(text) {
  const rc = JSON.parse(text);
  const a = rc.event.action;
  rc.event.action = a.slice(0, -1) + (a.at(-1) === 'x' ? 'y' : 'x');
  return JSON.stringify(rc);
}
