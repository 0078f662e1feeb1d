// The fault suite's one HTTP call: bounded in time (a fault must not hang a
// test), the body parsed when it is JSON, and checked against api/openapi.yaml
// when the caller names the route's template.

import { checkResponse } from '../api/lib/openapi.mjs';
import { bearer } from '../api/lib/iam.mjs';

const REQ_TIMEOUT_MS = 10000;

export async function call(server, method, p, { token, json, template } = {}) {
  const headers = token ? bearer(token) : {};
  if (json !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(server.url + p, {
    method, headers, body: json === undefined ? undefined : JSON.stringify(json),
    signal: AbortSignal.timeout(REQ_TIMEOUT_MS),
  });
  const text = await res.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (template) checkResponse(method, template, res, body ?? text);
  return { status: res.status, headers: res.headers, json: body, text };
}
