// api/openapi.yaml itself: a well-formed OpenAPI 3.1 document whose schemas
// compile, whose operations are named, summarised and tagged, whose responses
// all document X-Request-Id, whose response objects reject stray fields, and
// whose error codes exist in src/core/err.def.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { spec, validateAt } from './lib/openapi.mjs';
import { repoRoot } from './lib/server.mjs';

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

function at(pointer) {
  return pointer.split('/').slice(1).reduce((n, p) => n?.[p.replace(/~1/g, '/').replace(/~0/g, '~')], spec);
}
const esc = (s) => s.replace(/~/g, '~0').replace(/\//g, '~1');

function operations() {
  const ops = [];
  for (const [p, item] of Object.entries(spec.paths)) {
    for (const m of METHODS) if (item[m]) ops.push({ path: p, method: m, op: item[m], ptr: `/paths/${esc(p)}/${m}` });
  }
  return ops;
}

function derefPtr(ptr) {
  let n = at(ptr);
  while (n && n.$ref) {
    ptr = n.$ref.slice(1);
    n = at(ptr);
  }
  return { node: n, ptr };
}

test('openapi.yaml: OpenAPI 3.1.0, dcms API 0.1.0', () => {
  assert.equal(spec.openapi, '3.1.0');
  assert.equal(spec.info.title, 'dcms API');
  assert.equal(spec.info.version, '0.1.0');
});

test('openapi.yaml: every $ref resolves', () => {
  const bad = [];
  const walk = (n, where) => {
    if (!n || typeof n !== 'object') return;
    if (typeof n.$ref === 'string') {
      if (!n.$ref.startsWith('#/') || at(n.$ref.slice(1)) === undefined) bad.push(`${where}: ${n.$ref}`);
    }
    for (const [k, v] of Object.entries(n)) walk(v, `${where}/${k}`);
  };
  walk(spec, '');
  assert.deepEqual(bad, []);
});

test('openapi.yaml: every operation has a unique operationId, a summary and a declared tag', () => {
  const declared = new Set((spec.tags ?? []).map((t) => t.name));
  const ids = new Set();
  const problems = [];
  for (const { path: p, method, op } of operations()) {
    const w = `${method.toUpperCase()} ${p}`;
    if (!op.operationId) problems.push(`${w}: no operationId`);
    else if (ids.has(op.operationId)) problems.push(`${w}: duplicate operationId ${op.operationId}`);
    ids.add(op.operationId);
    if (!op.summary) problems.push(`${w}: no summary`);
    if (!op.tags?.length) problems.push(`${w}: no tag`);
    for (const t of op.tags ?? []) if (!declared.has(t)) problems.push(`${w}: tag ${t} not declared in tags`);
    if (!op.responses || !Object.keys(op.responses).length) problems.push(`${w}: no responses`);
  }
  assert.deepEqual(problems, []);
});

test('openapi.yaml: every response documents X-Request-Id and its schema compiles', () => {
  const problems = [];
  const responses = [];
  for (const { path: p, method, op, ptr } of operations()) {
    for (const code of Object.keys(op.responses ?? {})) {
      responses.push({ w: `${method.toUpperCase()} ${p} ${code}`, ptr: `${ptr}/responses/${esc(code)}` });
    }
  }
  for (const name of Object.keys(spec.components?.responses ?? {})) {
    responses.push({ w: `components.responses.${name}`, ptr: `/components/responses/${esc(name)}` });
  }
  for (const { w, ptr } of responses) {
    const { node, ptr: rp } = derefPtr(ptr);
    if (!node.description) problems.push(`${w}: no description`);
    const rid = node.headers?.['X-Request-Id'] && derefPtr(`${rp}/headers/X-Request-Id`).node;
    if (!rid) problems.push(`${w}: X-Request-Id header not documented`);
    else if (!rid.required) problems.push(`${w}: X-Request-Id not required`);
    for (const mt of Object.keys(node.content ?? {})) {
      try {
        validateAt(`${rp}/content/${esc(mt)}/schema`, null);
      } catch (e) {
        problems.push(`${w} ${mt}: schema does not compile: ${e.message}`);
      }
    }
  }
  assert.deepEqual(problems, []);
});

test('openapi.yaml: JSON object schemas in responses have additionalProperties: false', () => {
  const problems = [];
  const visited = new Set();
  // allOf branches that only narrow properties of another schema are exempt.
  const walk = (ptr, narrowing) => {
    if (visited.has(ptr)) return;
    visited.add(ptr);
    const s = at(ptr);
    if (!s || typeof s !== 'object') return;
    if (s.$ref) return walk(s.$ref.slice(1), false);
    const isObject = s.type === 'object' || (Array.isArray(s.type) && s.type.includes('object')) ||
      (s.properties && !narrowing);
    // A schema marked x-free-form (event details, say) is open on purpose.
    if (isObject && s.additionalProperties !== false && !narrowing && !s['x-free-form']) problems.push(`${ptr}: object without additionalProperties: false`);
    for (const [k, v] of Object.entries(s.properties ?? {})) walk(`${ptr}/properties/${esc(k)}`, narrowing);
    if (s.items) walk(`${ptr}/items`, narrowing);
    (s.allOf ?? []).forEach((b, i) => walk(`${ptr}/allOf/${i}`, narrowing || !b.$ref));
    for (const kw of ['oneOf', 'anyOf']) (s[kw] ?? []).forEach((_, i) => walk(`${ptr}/${kw}/${i}`, narrowing));
  };
  const roots = [];
  for (const { ptr, op } of operations()) {
    for (const code of Object.keys(op.responses ?? {})) roots.push(`${ptr}/responses/${esc(code)}`);
  }
  for (const name of Object.keys(spec.components?.responses ?? {})) roots.push(`/components/responses/${esc(name)}`);
  for (const r of roots) {
    const { node, ptr } = derefPtr(r);
    for (const [mt] of Object.entries(node.content ?? {})) {
      if (/json/.test(mt)) walk(`${ptr}/content/${esc(mt)}/schema`, false);
    }
  }
  assert.deepEqual(problems, []);
});

test('openapi.yaml: error codes are slugs of src/core/err.def', () => {
  const errDef = path.join(repoRoot, 'src', 'core', 'err.def');
  assert.ok(fs.existsSync(errDef), `${errDef} missing`);
  const slugs = new Set([...fs.readFileSync(errDef, 'utf8').matchAll(/DCMS_ERR_ROW\(\s*\w+\s*,\s*"([^"]+)"/g)].map((m) => m[1]));
  const codes = spec.components.schemas.ErrorCode.enum;
  assert.deepEqual(codes.filter((c) => !slugs.has(c)), [], 'codes in openapi.yaml that err.def does not define');
});

test('openapi.yaml: every write route documents 507 insufficient_storage with Retry-After', () => {
  // A full disk answers every write 507 (docs/operations.md, "Faults"): POST, PUT, PATCH and
  // DELETE all reach the store, so each must say so, through the one shared response.
  const ref = '#/components/responses/InsufficientStorage';
  const shared = at(ref.slice(1));
  assert.ok(shared, `${ref} is missing`);
  assert.equal(shared.headers?.['Retry-After']?.required, true, 'Retry-After must be documented as sent');
  assert.ok(shared.headers?.['X-Request-Id']);
  const code = shared.content['application/json'].schema.allOf[1].properties.error.properties.code;
  assert.equal(code.const, 'insufficient_storage');
  const missing = [];
  for (const { path: p, method, op } of operations()) {
    if (!['post', 'put', 'patch', 'delete'].includes(method)) continue;
    if (op.responses?.['507']?.$ref !== ref) missing.push(`${method.toUpperCase()} ${p}`);
  }
  assert.deepEqual(missing, [], 'write routes without the shared 507 response');
});
