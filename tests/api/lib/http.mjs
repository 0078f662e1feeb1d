// Small HTTP helpers for the API tests: a client bound to one server that
// records every response (for the access-log and header checks), the header
// checks every dcms response must pass, and a raw node:http request for the
// cases fetch cannot express (a huge body with an early answer).

import http from 'node:http';

export const JSON_CT = 'application/json; charset=utf-8';
export const REQUEST_ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;
const REQUEST_TIMEOUT_MS = 15000;
const PACE_MS = 5;

/** Problems with the headers every response must carry ([] when fine). */
export function securityHeaderProblems(headers) {
  const get = (n) => (typeof headers.get === 'function' ? headers.get(n) : headers[n.toLowerCase()] ?? null);
  const p = [];
  const eq = (name, want) => {
    const v = get(name);
    if (v === null || v === undefined) p.push(`${name} missing`);
    else if (String(v).trim().toLowerCase() !== want.toLowerCase()) p.push(`${name} is "${v}", want "${want}"`);
  };
  eq('X-Content-Type-Options', 'nosniff');
  eq('X-Frame-Options', 'DENY');
  eq('Referrer-Policy', 'no-referrer');
  const csp = get('Content-Security-Policy');
  if (!csp) p.push('Content-Security-Policy missing');
  else {
    if (!csp.includes("default-src 'none'")) p.push(`Content-Security-Policy "${csp}" lacks default-src 'none'`);
    if (!csp.includes("frame-ancestors 'none'")) p.push(`Content-Security-Policy "${csp}" lacks frame-ancestors 'none'`);
  }
  const cc = get('Cache-Control');
  if (!cc) p.push('Cache-Control missing');
  else if (!/(^|[\s,])no-store($|[\s,])/i.test(cc)) p.push(`Cache-Control "${cc}" lacks no-store`);
  const rid = get('X-Request-Id');
  if (!rid) p.push('X-Request-Id missing');
  return p;
}

/**
 * A client for one server. Every response is recorded in `seen`
 * ({method, path, status, requestId, headerProblems, contentType}).
 */
export function client(server) {
  const seen = [];
  async function call(method, path, { headers = {}, body, json } = {}) {
    const h = { ...headers };
    let b = body;
    if (json !== undefined) {
      b = typeof json === 'string' ? json : JSON.stringify(json);
      if (!Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) h['Content-Type'] = 'application/json';
    }
    const res = await fetch(server.url + path, {
      method,
      headers: h,
      body: b,
      redirect: 'manual',
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    const text = await res.text();
    let parsed;
    const ct = res.headers.get('content-type');
    if (ct && ct.toLowerCase().startsWith('application/json') && text) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
    }
    seen.push({
      method,
      path,
      status: res.status,
      requestId: res.headers.get('x-request-id'),
      contentType: ct,
      headerProblems: securityHeaderProblems(res.headers),
    });
    return { res, status: res.status, headers: res.headers, text, json: parsed };
  }
  return { call, seen };
}

/**
 * Sends `method path` with a body of `size` bytes (Content-Length set) via
 * node:http, writing in chunks and stopping as soon as a response arrives.
 * Resolves {status, headers, text, writeError, bytesWritten}; a write error
 * (EPIPE, ECONNRESET) after the response is reported, not thrown. Rejects if
 * no response arrives.
 */
export function rawBigRequest(url, method, path, size, headers = {}, timeoutMs = REQUEST_TIMEOUT_MS) {
  return new Promise((resolve, reject) => {
    const u = new URL(path, url);
    let response = null;
    let writeError = null;
    let bytesWritten = 0;
    let done = false;
    const finish = (fn, v) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      fn(v);
    };
    const req = http.request({
      host: u.hostname,
      port: u.port,
      path: u.pathname,
      method,
      agent: false,
      headers: { ...headers, 'Content-Length': String(size), Connection: 'close' },
    });
    const timer = setTimeout(() => {
      req.destroy();
      finish(reject, new Error(`no response within ${timeoutMs} ms (wrote ${bytesWritten} of ${size} bytes` +
        `${writeError ? `, write error ${writeError.code || writeError.message}` : ''})`));
    }, timeoutMs);
    req.on('response', (res) => {
      response = res;
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      const end = () => { req.destroy(); finish(resolve, {
        status: res.statusCode,
        headers: res.headers,
        text: Buffer.concat(chunks).toString('utf8'),
        writeError: writeError && (writeError.code || writeError.message),
        bytesWritten,
      }); };
      res.on('end', end);
      res.on('error', end); // the body may be cut by the close; what arrived is checked by the caller
      res.on('close', end);
    });
    req.on('error', (e) => {
      writeError = e;
      // Before the response this may still be followed by one (the 413 can be
      // sitting in our receive buffer); the timer bounds the wait.
      if (response) return;
      const wait = ['EPIPE', 'ECONNRESET'].includes(e.code) ? 1000 : 0;
      setTimeout(() => {
        if (!response) {
          req.destroy();
          finish(reject, new Error(`request failed before any response: ${e.code || e.message} ` +
            `(after writing ${bytesWritten} of ${size} bytes)`));
        }
      }, wait);
    });
    // Node destroys a socket on EPIPE without reading what is already in its
    // receive buffer, so a 413 sent just before the server closes would be
    // lost if we kept writing flat out. Pausing a few ms after each chunk lets
    // the event loop read the answer before the next write can fail.
    const chunk = Buffer.alloc(64 * 1024, 0x20); // spaces: valid JSON whitespace
    const pump = () => {
      if (response || writeError || done) return;
      if (bytesWritten >= size) {
        req.end();
        return;
      }
      const n = Math.min(chunk.length, size - bytesWritten);
      bytesWritten += n;
      const more = req.write(n === chunk.length ? chunk : chunk.subarray(0, n));
      const next = () => setTimeout(pump, PACE_MS);
      if (more) next();
      else req.once('drain', next);
    };
    pump();
  });
}
