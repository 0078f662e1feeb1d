// src/http/routes.def (what dcmsd serves) and api/openapi.yaml (what the API
// promises) must list the same routes: same methods, same path templates.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { routesInSpec } from './lib/openapi.mjs';
import { repoRoot } from './lib/server.mjs';

const routesDef = path.join(repoRoot, 'src', 'http', 'routes.def');

/**
 * Rows of routes.def: DCMS_ROUTE(METHOD, "/path/{param}", handler, PERMISSION, max_body_bytes).
 * Comments are stripped first; anything else that mentions DCMS_ROUTE( but
 * does not parse is an error.
 */
export function parseRoutesDef(text) {
  const code = text.replace(/\/\*[\s\S]*?\*\//g, (m) => m.replace(/[^\n]/g, ' ')).replace(/\/\/[^\n]*/g, '');
  const rows = [];
  const bad = [];
  const re = /DCMS_ROUTE\s*\(/g;
  let m;
  while ((m = re.exec(code))) {
    const line = code.slice(0, m.index).split('\n').length;
    // The arguments run to the matching parenthesis (max body may be an expression).
    let depth = 1;
    let i = re.lastIndex;
    for (; i < code.length && depth > 0; i++) {
      if (code[i] === '(') depth++;
      else if (code[i] === ')') depth--;
      else if (code[i] === '"') while (++i < code.length && code[i] !== '"') if (code[i] === '\\') i++;
    }
    const args = code.slice(re.lastIndex, i - 1);
    re.lastIndex = i;
    const row = /^\s*([A-Z]+)\s*,\s*"([^"]*)"\s*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*,\s*([\s\S]+?)\s*$/.exec(args);
    if (!row) {
      // A macro definition such as #define DCMS_ROUTE(method, path, ...) is not a row.
      if (!/#\s*define\s*$/.test(code.slice(0, m.index).split('\n').pop())) bad.push(`line ${line}: DCMS_ROUTE(${args})`);
      continue;
    }
    rows.push({ method: row[1], path: row[2], handler: row[3], permission: row[4], maxBody: row[5], line });
  }
  return { rows, bad };
}

test('routes.def and openapi.yaml list the same routes', () => {
  assert.ok(fs.existsSync(routesDef), `${routesDef} does not exist yet (dcmsd's route table); ` +
    'this test compares it with api/openapi.yaml');
  const { rows, bad } = parseRoutesDef(fs.readFileSync(routesDef, 'utf8'));
  assert.deepEqual(bad, [], 'routes.def rows that do not parse');
  assert.ok(rows.length > 0, 'routes.def has DCMS_ROUTE rows');

  const key = (r) => `${r.method} ${r.path}`;
  const dups = rows.map(key).filter((k, i, a) => a.indexOf(k) !== i);
  assert.deepEqual(dups, [], 'duplicate rows in routes.def');

  const inDef = new Set(rows.map(key));
  const inSpec = new Set(routesInSpec().map(key));
  const missingFromSpec = [...inDef].filter((k) => !inSpec.has(k)).sort();
  const missingFromDef = [...inSpec].filter((k) => !inDef.has(k)).sort();
  assert.deepEqual({ missingFromSpec, missingFromDef }, { missingFromSpec: [], missingFromDef: [] },
    'routes in routes.def but not in api/openapi.yaml (missingFromSpec), and the other way round (missingFromDef)');
});

test('routes.def: only bodies on methods that take one', () => {
  if (!fs.existsSync(routesDef)) return; // reported by the test above
  const { rows } = parseRoutesDef(fs.readFileSync(routesDef, 'utf8'));
  const wrong = rows
    .filter((r) => ['GET', 'HEAD', 'DELETE'].includes(r.method) && !/^0[uUlL]*$/.test(r.maxBody))
    .map((r) => `line ${r.line}: ${r.method} ${r.path} max body ${r.maxBody}`);
  assert.deepEqual(wrong, [], 'GET/HEAD/DELETE routes should accept no body (max body 0)');
});
