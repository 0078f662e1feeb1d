// The foundation of dcmsd: probes, metrics, the API description, the system
// read, request ids and security headers, error shapes, JSON canonicalization,
// access logs, graceful shutdown and (on PostgreSQL) reconnecting after the
// database restarts. Every response is checked against api/openapi.yaml.
//
// Runs on the backend chosen by DCMS_TEST_BACKEND (sqlite by default; see
// lib/server.mjs for postgres).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import YAML from 'yaml';
import { checkResponse, spec, specText } from './lib/openapi.mjs';
import { client, JSON_CT, rawBigRequest, REQUEST_ID_RE, securityHeaderProblems } from './lib/http.mjs';
import { backend, repoRoot, startServer } from './lib/server.mjs';

// dcmsd reports the version of the CMake project it was built from.
const serverVersion = /project\(dcms\s+VERSION\s+([0-9.]+)/.exec(
  fs.readFileSync(path.join(repoRoot, 'CMakeLists.txt'), 'utf8'))?.[1];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Parses Prometheus text format 0.0.4; throws on a line it cannot read. */
function parseMetrics(text) {
  const samples = [];
  const types = {};
  const lines = text.split('\n');
  lines.forEach((line, i) => {
    if (line === '') return;
    if (line.startsWith('#')) {
      const m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
      if (m) types[m[1]] = m[2];
      return;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: (-?\d+))?$/.exec(line);
    assert.ok(m, `metrics line ${i + 1} is not in the Prometheus text format: ${JSON.stringify(line)}`);
    const labels = {};
    if (m[2]) {
      const re = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"\s*(,|$)/gy;
      let lm;
      let consumed = 0;
      while (consumed < m[2].length && (lm = re.exec(m[2]))) {
        labels[lm[1]] = lm[2].replace(/\\n/g, '\n').replace(/\\(["\\])/g, '$1');
        consumed = re.lastIndex;
      }
      assert.equal(consumed, m[2].length, `metrics line ${i + 1}: cannot parse labels: ${JSON.stringify(line)}`);
    }
    const value = m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3]);
    assert.ok(m[3] === 'NaN' || !Number.isNaN(value), `metrics line ${i + 1}: bad value ${m[3]}`);
    samples.push({ name: m[1], labels, value });
  });
  return { samples, types };
}

function healthzCount(metrics) {
  return metrics.samples
    .filter((s) => s.name === 'dcms_http_requests_total' && s.labels.route === '/healthz' && s.labels.status === '200')
    .reduce((a, s) => a + s.value, 0);
}

/** RFC 8785 reference: ECMAScript's JSON.stringify gives numbers and strings, sort gives UTF-16 order. */
function jcs(v) {
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(jcs).join(',')}]`;
  return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${jcs(v[k])}`).join(',')}}`;
}

const sha256 = (s) => createHash('sha256').update(s, 'utf8').digest('hex');

function errCode(e) {
  return e?.cause?.code || e?.code || e?.cause?.name || e?.name || String(e);
}

describe('foundation', () => {
  let srv;
  let c;
  const jsonCtProblems = [];

  // call() plus: check against openapi.yaml, and note a JSON Content-Type that is not exactly JSON_CT.
  async function req(method, p, opts, template = p) {
    const r = await c.call(method, p, opts);
    const ct = r.headers.get('content-type') ?? '';
    if (ct.toLowerCase().startsWith('application/json') && ct !== JSON_CT) {
      jsonCtProblems.push(`${method} ${p} → Content-Type "${ct}"`);
    }
    checkResponse(method, template, r.res, method === 'HEAD' ? undefined : r.text);
    return r;
  }

  function assertError(r, status, code) {
    assert.equal(r.status, status, `want ${status}, got ${r.status}: ${r.text}`);
    assert.ok(r.json, `error body is not JSON: ${r.text}`);
    assert.equal(r.json.error?.code, code, `want code ${code}: ${r.text}`);
    assert.equal(r.json.request_id, r.headers.get('x-request-id'), 'request_id in the body = X-Request-Id header');
  }

  before(async () => {
    srv = await startServer();
    c = client(srv);
  });

  after(async () => {
    if (srv) await srv.stop();
  });

  test('GET /healthz answers 200 {status: ok}', async () => {
    const r = await req('GET', '/healthz');
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), JSON_CT);
    assert.equal(r.json.status, 'ok');
    assert.equal(r.json.version, serverVersion, 'healthz version = project version in CMakeLists.txt');
    assert.ok(Number.isInteger(r.json.uptime_s) && r.json.uptime_s >= 0);
  });

  test('HEAD /healthz answers 200 without a body', async () => {
    const r = await req('HEAD', '/healthz');
    assert.equal(r.status, 200);
    assert.equal(r.text, '');
  });

  test('GET /readyz answers 200 with the backend under test', async () => {
    const r = await req('GET', '/readyz');
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, { status: 'ready', store: backend });
  });

  test('GET /metrics is Prometheus text with the HTTP and store metrics', async () => {
    for (let i = 0; i < 3; i++) assert.equal((await req('GET', '/healthz')).status, 200);
    const r = await req('GET', '/metrics');
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /^text\/plain; ?version=0\.0\.4/);
    const m = parseMetrics(r.text);
    const names = new Set(m.samples.map((s) => s.name));
    assert.ok(r.text.includes('dcms_http_requests_total{'), 'dcms_http_requests_total{...} sample');
    const reqs = m.samples.filter((s) => s.name === 'dcms_http_requests_total');
    assert.ok(reqs.length > 0 && reqs.every((s) => 'route' in s.labels && 'status' in s.labels),
      `every dcms_http_requests_total sample has route and status labels: ${JSON.stringify(reqs.slice(0, 3))}`);
    assert.ok(reqs.some((s) => s.labels.route === '/healthz' && s.labels.status === '200'),
      'a sample for route="/healthz",status="200"');
    for (const n of ['dcms_http_request_duration_seconds_bucket', 'dcms_http_request_duration_seconds_sum',
      'dcms_http_request_duration_seconds_count', 'dcms_http_requests_in_flight', 'dcms_store_pool_connections',
      'dcms_store_reconnects_total']) {
      assert.ok(names.has(n), `metric ${n} present`);
    }
    assert.ok(m.samples.some((s) => s.name === 'dcms_http_request_duration_seconds_bucket' && s.labels.le === '+Inf'),
      'histogram has an le="+Inf" bucket');
    assert.equal(m.types.dcms_http_requests_total, 'counter', '# TYPE dcms_http_requests_total counter');
    assert.equal(m.types.dcms_http_request_duration_seconds, 'histogram', '# TYPE ... histogram');
    assert.equal(m.types.dcms_http_requests_in_flight, 'gauge', '# TYPE dcms_http_requests_in_flight gauge');
    assert.equal(m.types.dcms_store_pool_connections, 'gauge', '# TYPE dcms_store_pool_connections gauge');
  });

  test('the /healthz request counter grows by the requests made', async () => {
    const before1 = healthzCount(parseMetrics((await req('GET', '/metrics')).text));
    for (let i = 0; i < 3; i++) assert.equal((await req('GET', '/healthz')).status, 200);
    // The counter may be bumped when the response completes, just after the
    // client has it: poll briefly.
    let delta = 0;
    for (let i = 0; i < 20; i++) {
      delta = healthzCount(parseMetrics((await req('GET', '/metrics')).text)) - before1;
      if (delta >= 3) break;
      await sleep(50);
    }
    assert.equal(delta, 3, 'dcms_http_requests_total{route="/healthz",status="200"} grew by exactly 3');
  });

  test('GET /api/v1/openapi.yaml serves api/openapi.yaml', async () => {
    const r = await req('GET', '/api/v1/openapi.yaml');
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /^application\/yaml/);
    assert.deepEqual(YAML.parse(r.text), spec, 'served document parses to the same value as the file');
    assert.equal(r.text, specText, 'served document is byte for byte api/openapi.yaml (stale build?)');
  });

  test('GET /api/v1/system lists migration 1 "init" on the backend under test', async () => {
    const r = await req('GET', '/api/v1/system');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get('content-type'), JSON_CT);
    const { version, store } = r.json;
    assert.equal(version, serverVersion, 'version = project version in CMakeLists.txt');
    assert.equal(store.backend, backend);
    const m1 = store.migrations.find((m) => m.version === 1);
    assert.ok(m1, `migration 1 listed: ${r.text}`);
    assert.equal(m1.name, 'init');
    const versions = store.migrations.map((m) => m.version);
    assert.deepEqual(versions, [...versions].sort((a, b) => a - b), 'migrations in ascending order');
    assert.equal(store.schema_version, Math.max(...versions), 'schema_version = highest applied migration');
    const t = Date.parse(m1.applied_at);
    assert.ok(t > Date.parse('2020-01-01') && t <= Date.now() + 60000, `applied_at plausible: ${m1.applied_at}`);
  });

  test('security headers on success and error responses', async () => {
    const cases = [
      ['GET', '/healthz'], ['GET', '/readyz'], ['GET', '/metrics'], ['GET', '/api/v1/openapi.yaml'],
      ['GET', '/api/v1/system'], ['GET', '/no/such/route'], ['DELETE', '/healthz'],
      ['POST', '/api/v1/canonicalize', { json: '{"a":' }],
    ];
    const problems = [];
    for (const [m, p, o] of cases) {
      const r = await req(m, p, o);
      for (const x of securityHeaderProblems(r.headers)) problems.push(`${m} ${p} (${r.status}): ${x}`);
    }
    assert.deepEqual(problems, []);
  });

  test('X-Request-Id: a valid one is echoed, in the header and in error bodies', async () => {
    let r = await req('GET', '/healthz', { headers: { 'X-Request-Id': 'abc-123' } });
    assert.equal(r.headers.get('x-request-id'), 'abc-123');
    for (const id of ['A.b_c:d-9', 'z'.repeat(128)]) {
      r = await req('GET', '/healthz', { headers: { 'X-Request-Id': id } });
      assert.equal(r.headers.get('x-request-id'), id, 'any 1-128 characters of [A-Za-z0-9._:-] are echoed');
    }
    r = await req('GET', '/no/such/route', { headers: { 'X-Request-Id': 'abc-123' } });
    assert.equal(r.status, 404);
    assert.equal(r.headers.get('x-request-id'), 'abc-123');
    assert.equal(r.json.request_id, 'abc-123');
  });

  test('X-Request-Id: an invalid one is replaced by a generated one', async () => {
    const bad = ['x'.repeat(300), 'y'.repeat(129), 'has space', 'quo"te', "it's", '<script>', 'a/b', ''];
    const got = [];
    for (const id of bad) {
      const r = await req('GET', '/no/such/route', { headers: { 'X-Request-Id': id } });
      const echoed = r.headers.get('x-request-id');
      assert.notEqual(echoed, id, `invalid id ${JSON.stringify(id.slice(0, 20))} must not be echoed`);
      assert.match(echoed, REQUEST_ID_RE);
      assert.equal(r.json.request_id, echoed);
      got.push(echoed);
    }
    const r1 = await req('GET', '/healthz');
    const r2 = await req('GET', '/healthz');
    got.push(r1.headers.get('x-request-id'), r2.headers.get('x-request-id'));
    assert.equal(new Set(got).size, got.length, `generated ids are unique: ${got.join(' ')}`);
  });

  test('unknown route → 404 not_found', async () => {
    for (const p of ['/nope', '/api/v1/nope', '/api/v2/system', '/healthz/extra']) {
      assertError(await req('GET', p), 404, 'not_found');
    }
  });

  test('wrong method → 405 method_not_allowed with Allow', async () => {
    let r = await req('DELETE', '/healthz');
    assertError(r, 405, 'method_not_allowed');
    const allow = (r.headers.get('allow') ?? '').split(',').map((s) => s.trim());
    assert.ok(allow.includes('GET') && allow.includes('HEAD'), `Allow lists GET and HEAD: "${r.headers.get('allow')}"`);
    assert.ok(!allow.includes('DELETE'));

    r = await req('POST', '/api/v1/system', { json: {} });
    assertError(r, 405, 'method_not_allowed');
    assert.ok(r.headers.get('allow').includes('GET'));

    r = await req('GET', '/api/v1/canonicalize');
    assertError(r, 405, 'method_not_allowed');
    const allow2 = r.headers.get('allow').split(',').map((s) => s.trim());
    assert.ok(allow2.includes('POST') && !allow2.includes('GET'), `Allow: "${r.headers.get('allow')}"`);
  });

  test('canonicalize: malformed JSON → 400 malformed_json naming line and column', async () => {
    const r = await req('POST', '/api/v1/canonicalize', { json: '{"a":' });
    assertError(r, 400, 'malformed_json');
    assert.match(r.json.error.message, /line/, r.json.error.message);
    assert.match(r.json.error.message, /column/, r.json.error.message);
  });

  test('canonicalize: duplicate keys → 400 malformed_json', async () => {
    assertError(await req('POST', '/api/v1/canonicalize', { json: '{"a":1,"a":2}' }), 400, 'malformed_json');
  });

  test('canonicalize: text/plain → 415 unsupported_media_type', async () => {
    const r = await req('POST', '/api/v1/canonicalize', { json: '{"a":1}', headers: { 'Content-Type': 'text/plain' } });
    assertError(r, 415, 'unsupported_media_type');
  });

  test('canonicalize: a 10 MiB body → 413 payload_too_large', async (t) => {
    const r = await rawBigRequest(srv.url, 'POST', '/api/v1/canonicalize', 10 * 1024 * 1024,
      { 'Content-Type': 'application/json' });
    c.seen.push({ method: 'POST', path: '/api/v1/canonicalize', status: r.status, requestId: r.headers['x-request-id'] });
    if (r.writeError) t.diagnostic(`write error after the 413: ${r.writeError} (${r.bytesWritten} bytes written)`);
    assert.equal(r.status, 413, `want 413, got ${r.status}: ${r.text}`);
    checkResponse('POST', '/api/v1/canonicalize', r, r.text);
    const body = JSON.parse(r.text);
    assert.equal(body.error.code, 'payload_too_large');
    assert.equal(body.request_id, r.headers['x-request-id']);
    assert.deepEqual(securityHeaderProblems(r.headers), []);
  });

  test('canonicalize: {"b":2,"a":[1.0,"x"]} → sorted, 1.0 as 1, with its sha256', async () => {
    const r = await req('POST', '/api/v1/canonicalize', { json: '{"b":2,"a":[1.0,"x"]}' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get('content-type'), JSON_CT);
    assert.equal(r.json.canonical, '{"a":[1,"x"],"b":2}');
    assert.equal(r.json.sha256, sha256('{"a":[1,"x"],"b":2}'));
  });

  test('canonicalize: 1e400 (does not fit a double) → 400 malformed_json, as openapi.yaml says', async () => {
    assertError(await req('POST', '/api/v1/canonicalize', { json: '1e400' }), 400, 'malformed_json');
    assertError(await req('POST', '/api/v1/canonicalize', { json: '{"x":[-1e400]}' }), 400, 'malformed_json');
  });

  test('canonicalize: agrees with the RFC 8785 reference on numbers, strings and member order', async () => {
    const inputs = [
      'null', 'true', '"x"', '0', '-0', '[]', '{}',
      '1E2', '1e21', '1e-7', '0.000001', '123456789012345680000', '1.5e-300', '5e-324',
      '1.7976931348623157e308', '-0.0', '0.1', '333333333.33333329', '1e+30', '4.50', '2e-3',
      '9007199254740993', '-9007199254740993', '18446744073709551616',
      '"\\u0001\\u001f\\u007f \\"\\\\ \\/ \\b\\f\\n\\r\\t \\u2028\\u2029 €💩"',
      '{"\\u20ac":1,"\\r":2,"\\ud83d\\ude00":3,"\\ufb33":4,"1":5,"\\u0080":6,"\\u00f6":7,"\\u0001":8,"":9}',
      '{ "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],' +
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/", "literals": [null, true, false] }',
      '[[[[[{"z":{"y":{"x":[]}}}]]]]]',
    ];
    const problems = [];
    for (const input of inputs) {
      const want = jcs(JSON.parse(input));
      const r = await req('POST', '/api/v1/canonicalize', { json: input });
      if (r.status !== 200) {
        problems.push(`${input} → ${r.status} ${r.text}`);
        continue;
      }
      if (r.json.canonical !== want) problems.push(`${input} → ${JSON.stringify(r.json.canonical)}, want ${JSON.stringify(want)}`);
      else if (r.json.sha256 !== sha256(want)) problems.push(`${input} → sha256 ${r.json.sha256}, want ${sha256(want)}`);
    }
    assert.deepEqual(problems, []);
  });

  test('canonicalize: U+0000 in a string or a member name → 400 malformed_json, as openapi.yaml says', async () => {
    assertError(await req('POST', '/api/v1/canonicalize', { json: '"a\\u0000b"' }), 400, 'malformed_json');
    assertError(await req('POST', '/api/v1/canonicalize', { json: '{"\\u0000":1}' }), 400, 'malformed_json');
  });

  test('the server is still up and healthy', async () => {
    const r = await req('GET', '/healthz');
    assert.equal(r.status, 200);
    assert.equal(srv.proc.exitCode, null);
  });

  test('JSON responses are application/json; charset=utf-8', () => {
    assert.deepEqual(jsonCtProblems, []);
  });

  test('every response carried the security headers', () => {
    const problems = c.seen.filter((s) => s.headerProblems?.length)
      .map((s) => `${s.method} ${s.path} (${s.status}): ${s.headerProblems.join('; ')}`);
    assert.deepEqual(problems, []);
  });

  test('one access-log line per request, with its request id', async () => {
    const ids = c.seen.map((s) => s.requestId);
    assert.ok(ids.every(Boolean), 'every response had an X-Request-Id');
    const count = () => {
      const n = new Map();
      for (const l of srv.logs()) {
        if (l.sub === 'access' && typeof l.request_id === 'string') n.set(l.request_id, (n.get(l.request_id) ?? 0) + 1);
      }
      return n;
    };
    // Access lines may be written just after the response is sent.
    let n = count();
    for (let i = 0; i < 40 && ids.some((id) => !n.get(id)); i++) {
      await sleep(50);
      n = count();
    }
    const want = new Map();
    for (const id of ids) want.set(id, (want.get(id) ?? 0) + 1);
    const missing = c.seen.filter((s) => !n.get(s.requestId)).map((s) => `${s.method} ${s.path} ${s.status} id=${s.requestId}`);
    const wrong = [...n].filter(([id, k]) => want.has(id) && k !== want.get(id))
      .map(([id, k]) => `${id}: ${k} lines for ${want.get(id)} requests`);
    const unknown = [...n.keys()].filter((id) => !want.has(id));
    assert.deepEqual(missing, [], `requests without an access-log line (of ${ids.length})`);
    assert.deepEqual(wrong, [], 'request ids with more access-log lines than requests');
    assert.deepEqual(unknown, [], 'access-log lines for requests this test did not make');
    const total = srv.logs().filter((l) => l.sub === 'access').length;
    assert.equal(total, ids.length, 'access-log lines = requests made');
  });

  test('SIGTERM when idle → exit 0', async () => {
    const code = await srv.stop('SIGTERM');
    assert.equal(code, 0, `exit code; stderr tail:\n${srv.stderr().slice(-2000)}`);
  });
});

describe('graceful shutdown', () => {
  const SHUTDOWN_TIMEOUT_MS = 5000;

  test('SIGTERM under keep-alive load: responses are 200, failures only before a response, exit 0', async (t) => {
    const srv = await startServer({ env: { DCMS_SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS) } });
    const LOOPS = 8;
    const MAX_PER_LOOP = 50000;
    const deadline = Date.now() + 3000;
    const st = { ok: 0, okAfterSignal: 0, bad: [], failedBefore: [], failedAfter: [] };
    let signalled = false;

    const loop = async (i) => {
      for (let n = 0; n < MAX_PER_LOOP && Date.now() < deadline; n++) {
        let res;
        try {
          res = await fetch(`${srv.url}/healthz`, { signal: AbortSignal.timeout(SHUTDOWN_TIMEOUT_MS + 2000) });
        } catch (e) {
          st.failedBefore.push({ loop: i, code: errCode(e), signalled });
          if (errCode(e) === 'ECONNREFUSED') return; // the listener is gone; nothing more to learn
          await sleep(5);
          continue;
        }
        try {
          await res.text();
        } catch (e) {
          st.failedAfter.push({ loop: i, status: res.status, code: errCode(e) });
          continue;
        }
        if (res.status === 200) {
          st.ok++;
          if (signalled) st.okAfterSignal++;
        } else {
          st.bad.push(res.status);
        }
      }
    };

    const loops = Array.from({ length: LOOPS }, (_, i) => loop(i));
    await sleep(1000);
    const okBefore = st.ok;
    signalled = true;
    const t0 = Date.now();
    const stopped = srv.stop('SIGTERM', SHUTDOWN_TIMEOUT_MS + 3000);
    const [code] = await Promise.all([stopped, Promise.all(loops)]);
    const exitMs = Date.now() - t0;

    const byCode = {};
    for (const f of st.failedBefore) byCode[f.code] = (byCode[f.code] ?? 0) + 1;
    t.diagnostic(`ok=${st.ok} (before SIGTERM ${okBefore}, after ${st.okAfterSignal}), ` +
      `failed before a response=${st.failedBefore.length} ${JSON.stringify(byCode)}, ` +
      `failed after a response=${st.failedAfter.length}, non-200=${st.bad.length}, exit ${code} after ${exitMs} ms`);

    assert.ok(okBefore > 0, 'the load ran before SIGTERM');
    assert.deepEqual(st.bad, [], 'every response was 200 (no 5xx)');
    assert.deepEqual(st.failedAfter, [], 'no request failed after its response began');
    const allowed = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET']);
    const other = st.failedBefore.filter((f) => !allowed.has(f.code) || !f.signalled);
    assert.deepEqual(other, [], 'requests failed only with connection refused/reset, and only after SIGTERM');
    assert.equal(code, 0, `exit code; stderr tail:\n${srv.stderr().slice(-2000)}`);
    assert.ok(exitMs <= SHUTDOWN_TIMEOUT_MS + 1000, `exited within the shutdown timeout (${exitMs} ms)`);
  });

  test('SIGINT → exit 0', async () => {
    const srv = await startServer();
    const r = await fetch(`${srv.url}/healthz`, { signal: AbortSignal.timeout(5000) });
    assert.equal(r.status, 200);
    await r.text();
    const code = await srv.stop('SIGINT');
    assert.equal(code, 0, `exit code; stderr tail:\n${srv.stderr().slice(-2000)}`);
  });
});

describe('postgres', () => {
  const pgDir = process.env.DCMS_TEST_PG_DIR;
  const skip = backend !== 'postgres' ? 'DCMS_TEST_BACKEND is not postgres'
    : !pgDir ? 'DCMS_TEST_PG_DIR (the test cluster directory) is not set' : false;

  test('reconnects after the database restarts', { skip }, async (t) => {
    const script = path.join(repoRoot, 'scripts', 'pg-cluster.sh');
    assert.ok(fs.existsSync(script), `${script} is missing`);
    const srv = await startServer();
    const c = client(srv);
    const get = async (p) => {
      const r = await c.call('GET', p);
      checkResponse('GET', p, r.res, r.text);
      return r;
    };
    assert.equal((await get('/readyz')).status, 200);
    assert.equal((await get('/api/v1/system')).status, 200);

    try {
      execFileSync(script, ['restart', pgDir], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 120000 });
    } catch (e) {
      assert.fail(`scripts/pg-cluster.sh restart ${pgDir} failed: ${e.stderr?.toString() || e.message}`);
    }
    const deadline = Date.now() + 10000;
    const seen = [];
    let ready = false;
    while (Date.now() < deadline) {
      const r = await get('/readyz');
      seen.push(`readyz ${r.status}`);
      if (r.status === 200) {
        ready = true;
        break;
      }
      await sleep(200);
    }
    assert.ok(ready, `/readyz back to 200 within 10 s: ${seen.join(', ')}`);

    // Every pooled connection may be stale; within the same 10 s a burst of
    // store reads must all succeed.
    let burstOk = false;
    while (Date.now() < deadline) {
      const rs = await Promise.all(Array.from({ length: 8 }, () => get('/api/v1/system')));
      seen.push(`system ${rs.map((r) => r.status).join('/')}`);
      if (rs.every((r) => r.status === 200)) {
        burstOk = true;
        assert.equal(rs[0].json.store.backend, 'postgres');
        break;
      }
      await sleep(200);
    }
    const m = parseMetrics((await get('/metrics')).text);
    const reconnects = m.samples.filter((x) => x.name === 'dcms_store_reconnects_total').reduce((a, x) => a + x.value, 0);
    t.diagnostic(`after restart: ${seen.join(', ')}; dcms_store_reconnects_total ${reconnects}`);
    assert.ok(burstOk, `/api/v1/system works within 10 s of the restart: ${seen.join(', ')}`);
    const statuses = new Set(c.seen.map((s) => s.status));
    assert.ok([...statuses].every((s) => s === 200 || s === 503), `only 200 or 503 while recovering: ${[...statuses]}`);
    assert.equal(await srv.stop(), 0);
  });
});
