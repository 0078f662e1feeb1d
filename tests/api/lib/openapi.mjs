// Checks HTTP responses against api/openapi.yaml, the contract of the API.
//
// The whole OpenAPI document is registered with Ajv (JSON Schema 2020-12,
// which OpenAPI 3.1 uses) under the id "openapi", so a response schema is
// compiled as {$ref: "openapi#/<JSON pointer to it>"} and its own
// "#/components/schemas/..." references resolve inside the same document.
// OpenAPI-level references (responses, headers) are followed by deref().

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import YAML from 'yaml';
import { repoRoot } from './server.mjs';

export const specPath = path.join(repoRoot, 'api', 'openapi.yaml');
export const specText = fs.readFileSync(specPath, 'utf8');
export const spec = YAML.parse(specText);

const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];
const DOC_ID = 'openapi';

const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addSchema(spec, DOC_ID);
const compiled = new Map();

function escapePointer(s) {
  return s.replace(/~/g, '~0').replace(/\//g, '~1');
}

function unescapePointer(s) {
  return s.replace(/~1/g, '/').replace(/~0/g, '~');
}

function at(pointer) {
  let node = spec;
  for (const part of pointer.split('/').slice(1)) {
    if (node == null) return undefined;
    node = node[unescapePointer(part)];
  }
  return node;
}

/** Follows OpenAPI $refs (local only); returns {node, pointer}. */
function deref(pointer) {
  let node = at(pointer);
  for (let hops = 0; node && typeof node.$ref === 'string'; hops++) {
    assert.ok(hops < 20, `reference loop at ${pointer}`);
    assert.ok(node.$ref.startsWith('#/'), `only local references are supported: ${node.$ref}`);
    pointer = node.$ref.slice(1);
    node = at(pointer);
  }
  assert.ok(node !== undefined, `openapi.yaml: ${pointer} does not resolve`);
  return { node, pointer };
}

function validatorAt(pointer) {
  let v = compiled.get(pointer);
  if (!v) {
    v = ajv.compile({ $ref: `${DOC_ID}#${pointer}` });
    compiled.set(pointer, v);
  }
  return v;
}

/** Validates `value` against the schema at `pointer`; returns problem strings. */
export function validateAt(pointer, value, label = 'body') {
  const v = validatorAt(pointer);
  if (v(value)) return [];
  return v.errors.map((e) => `${label}${e.instancePath || ''} ${e.message}` +
    (e.params && Object.keys(e.params).length ? ` ${JSON.stringify(e.params)}` : ''));
}

/** [{method, path}] for every operation in openapi.yaml (method upper-case). */
export function routesInSpec() {
  const out = [];
  for (const [p, item] of Object.entries(spec.paths ?? {})) {
    for (const m of HTTP_METHODS) {
      if (item[m]) out.push({ method: m.toUpperCase(), path: p });
    }
  }
  return out;
}

function templateRegex(template) {
  const re = template
    .split(/(\{[^}]+\})/)
    .map((part) => (/^\{[^}]+\}$/.test(part) ? '[^/]+' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('');
  return new RegExp(`^${re}$`);
}

/** The path key in spec.paths for a template or a concrete path, or null. */
export function findPath(p) {
  const paths = spec.paths ?? {};
  const bare = p.split('?')[0];
  if (paths[bare]) return bare;
  for (const key of Object.keys(paths)) {
    if (templateRegex(key).test(bare)) return key;
  }
  return null;
}

function parseMediaType(s) {
  const [essence, ...params] = String(s).split(';');
  const map = {};
  for (const p of params) {
    const i = p.indexOf('=');
    if (i < 0) continue;
    map[p.slice(0, i).trim().toLowerCase()] = p.slice(i + 1).trim().replace(/^"(.*)"$/, '$1');
  }
  return { essence: essence.trim().toLowerCase(), params: map };
}

/** Whether the actual Content-Type matches a documented media type key. */
function mediaMatches(documented, actual) {
  const d = parseMediaType(documented);
  const a = parseMediaType(actual);
  if (d.essence !== a.essence) {
    const [dt, ds] = d.essence.split('/');
    const [at_, as] = a.essence.split('/');
    if (!((dt === '*' || dt === at_) && (ds === '*' || ds === as))) return false;
  }
  for (const [k, v] of Object.entries(d.params)) {
    const av = a.params[k];
    if (av === undefined) return false;
    if (k === 'charset' ? av.toLowerCase() !== v.toLowerCase() : av !== v) return false;
  }
  return true;
}

function getHeader(res, name) {
  const h = res.headers;
  if (!h) return null;
  if (typeof h.get === 'function') return h.get(name);
  const v = h[name.toLowerCase()];
  return v === undefined ? null : Array.isArray(v) ? v.join(', ') : String(v);
}

function isJsonMedia(mt) {
  const e = parseMediaType(mt).essence;
  return e === 'application/json' || e.endsWith('+json');
}

/**
 * Finds the documented response for (method, path, status) and returns
 * {pointer, where} or throws listing why there is none. Undocumented paths
 * fall back to components.responses.NotFound (404 only), undocumented
 * methods on a documented path to components.responses.MethodNotAllowed
 * (405 only), as the info.description of openapi.yaml says.
 */
function findResponse(method, pathTemplate, status) {
  const m = method.toLowerCase();
  const key = findPath(pathTemplate);
  if (!key) {
    assert.equal(status, 404, `${method} ${pathTemplate}: path not in openapi.yaml, so only 404 is allowed, got ${status}`);
    return { ...deref('/components/responses/NotFound'), where: `${method} ${pathTemplate} (undocumented path)` };
  }
  const item = spec.paths[key];
  let op = item[m];
  let opMethod = m;
  if (!op && m === 'head' && item.get) {
    op = item.get;
    opMethod = 'get';
  }
  if (!op) {
    assert.equal(status, 405, `${method} ${key}: method not in openapi.yaml, so only 405 is allowed, got ${status}`);
    return { ...deref('/components/responses/MethodNotAllowed'), where: `${method} ${key} (undocumented method)` };
  }
  const responses = op.responses ?? {};
  const s = String(status);
  const range = `${s[0]}XX`;
  const code = s in responses ? s : range in responses ? range : 'default' in responses ? 'default' : null;
  assert.ok(code, `${method} ${key}: status ${status} is not documented in openapi.yaml ` +
    `(documented: ${Object.keys(responses).join(', ')})`);
  const base = `/paths/${escapePointer(key)}/${opMethod}/responses/${escapePointer(code)}`;
  return { ...deref(base), where: `${method} ${key} ${code}` };
}

/**
 * Checks a response against openapi.yaml: the status is documented, the
 * documented headers are present and valid, the Content-Type is one of the
 * documented media types, and the body validates against its schema.
 *
 * @param method  'GET', 'POST', ... ('HEAD' uses the GET operation, no body)
 * @param pathTemplate  a path key of openapi.yaml or a concrete path
 * @param res  a fetch Response, or anything with {status|statusCode, headers}
 * @param body  the body: parsed JSON, or text (parsed here for JSON media)
 * @throws AssertionError listing every problem
 */
export function checkResponse(method, pathTemplate, res, body) {
  const status = res.status ?? res.statusCode;
  const { node: response, pointer, where } = findResponse(method, pathTemplate, status);
  const problems = [];

  for (const [name, hdrRef] of Object.entries(response.headers ?? {})) {
    const { node: hdr, pointer: hp } = deref(`${pointer}/headers/${escapePointer(name)}`);
    const value = getHeader(res, name);
    if (value === null) {
      if (hdr.required) problems.push(`header ${name} is required but missing`);
      continue;
    }
    if (hdr.schema) problems.push(...validateAt(`${hp}/schema`, value, `header ${name}`));
  }

  const content = response.content;
  const ct = getHeader(res, 'content-type');
  const noBody = method.toUpperCase() === 'HEAD' || status === 204 || status === 304;
  if (content && Object.keys(content).length) {
    const keys = Object.keys(content);
    const mt = ct === null ? undefined : keys.find((k) => mediaMatches(k, ct));
    if (ct === null) {
      problems.push(`Content-Type missing (documented: ${keys.join(', ')})`);
    } else if (!mt) {
      problems.push(`Content-Type "${ct}" is not documented (documented: ${keys.join(', ')})`);
    } else if (!noBody && content[mt].schema) {
      let value = body;
      let ok = true;
      if (isJsonMedia(mt) && typeof body === 'string') {
        try {
          value = JSON.parse(body);
        } catch (e) {
          problems.push(`body is not JSON: ${e.message}: ${body.slice(0, 200)}`);
          ok = false;
        }
      }
      if (ok && value === undefined) {
        problems.push('no body given to checkResponse');
        ok = false;
      }
      if (ok) {
        problems.push(...validateAt(`${pointer}/content/${escapePointer(mt)}/schema`, value));
      }
    }
  } else if (!noBody && body !== undefined && body !== '' && body !== null) {
    problems.push(`a body was returned but none is documented`);
  }

  if (problems.length) {
    const shown = typeof body === 'string' ? body.slice(0, 500) : JSON.stringify(body)?.slice(0, 500);
    throw new assert.AssertionError({
      message: `response does not match openapi.yaml (${where}, status ${status}):\n  - ` +
        `${problems.join('\n  - ')}\n  body: ${shown}`,
    });
  }
}
