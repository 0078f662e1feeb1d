// src/http/routes.def and the role table of src/iam/policy.c, read by the
// tests that are generated from them (route x role matrix, existence leaks).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { repoRoot } from './server.mjs';

/** The rows of routes.def: {method, path, perm, maxBody}. */
export function routesDef() {
  const text = fs.readFileSync(path.join(repoRoot, 'src', 'http', 'routes.def'), 'utf8')
    .replace(/\/\*[\s\S]*?\*\//g, '');
  const rows = [...text.matchAll(/^DCMS_ROUTE\(\s*(\w+)\s*,\s*"([^"]+)"\s*,\s*\w+\s*,\s*(\w+)\s*,\s*(\w+)\s*\)/gm)]
    .map((m) => ({ method: m[1], path: m[2], perm: m[3], maxBody: m[4] }));
  assert.ok(rows.length > 20, 'routes.def parsed');
  return rows;
}

/** PUBLIC, AUTHENTICATED, or the action: lowercase, the first '_' read as ':'. */
export const action = (perm) => (perm === 'PUBLIC' || perm === 'AUTHENTICATED'
  ? perm : perm.toLowerCase().replace('_', ':'));

/** role name -> Set of permissions, from the roles[] table of src/iam/policy.c. */
export function rolePermissions() {
  const text = fs.readFileSync(path.join(repoRoot, 'src', 'iam', 'policy.c'), 'utf8');
  const out = {};
  for (const m of text.matchAll(/\{\s*DCMS_ROLE_\w+\s*,\s*"(\w+)"\s*,\s*\(const char \*const\[\]\)\s*\{([^}]*)\}\s*\}/g)) {
    out[m[1]] = new Set([...m[2].matchAll(/"([^"]+)"/g)].map((x) => x[1]));
  }
  for (const r of ['admin', 'provider', 'consumer', 'auditor']) assert.ok(out[r], `role ${r} in policy.c`);
  return out;
}

/** Does a permission set (from rolePermissions, or an API key's scope) grant action `a`? */
export const grants = (perms, a) => perms.has('*') || perms.has(a);
