// The only way the UI talks to dcmsd: fetch to this origin's public JSON API.
// The access token lives in this module's memory only; the refresh token is
// an HttpOnly cookie the browser sends to /api/v1/auth/refresh alone
// (cookie mode, header X-DCMS-Session: cookie; see web/README.md).
import { t } from './messages.js';

let access = null;
let refreshTimer = null;
let refreshing = null;
const listeners = new Set();
export const net = { online: true };

/** Calls fn() whenever the reachability or the session changes. */
export function subscribe(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}
function emit() {
  for (const fn of listeners) fn();
}

export class ApiError extends Error {
  constructor(status, code, message, details = [], body = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
    this.body = body;
  }
}

let probe = null;
function setOnline(v) {
  if (net.online === v) return;
  net.online = v;
  emit();
  if (!v && !probe) {
    // While unreachable, probe /healthz every 3 s until it answers.
    probe = setInterval(async () => {
      try {
        const r = await fetch('/healthz', { cache: 'no-store' });
        if (r.ok) {
          clearInterval(probe);
          probe = null;
          setOnline(true);
        }
      } catch {
        /* still unreachable */
      }
    }, 3000);
  }
}

async function raw(method, path, { json, headers = {}, auth = true } = {}) {
  const h = { Accept: 'application/json', ...headers };
  if (json !== undefined) h['Content-Type'] = 'application/json';
  if (auth && access) h.Authorization = `Bearer ${access}`;
  let res;
  try {
    res = await fetch(path, {
      method,
      headers: h,
      body: json !== undefined ? JSON.stringify(json) : undefined,
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch {
    setOnline(false);
    throw new ApiError(0, 'unreachable', t('errors.unreachable'));
  }
  setOnline(true);
  const text = await res.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  return { status: res.status, ok: res.ok, body, headers: res.headers };
}

function errorOf(r) {
  const e = r.body?.error;
  return new ApiError(r.status, e?.code ?? 'http_' + r.status, e?.message ?? `HTTP ${r.status}`, e?.details ?? [], r.body);
}

/**
 * One API call. A 401 on an authenticated call refreshes the session once
 * and retries; an answer outside 2xx throws ApiError with the API's code,
 * message and details (field paths).
 */
export async function api(method, path, opts = {}) {
  let r = await raw(method, path, opts);
  if (r.status === 401 && opts.auth !== false && access !== null) {
    if (await refresh()) r = await raw(method, path, opts);
    else signedOut();
  }
  if (!r.ok) throw errorOf(r);
  return r;
}

const COOKIE_MODE = { 'X-DCMS-Session': 'cookie' };

function accept(body) {
  access = body.access_token;
  clearTimeout(refreshTimer);
  // Refresh a minute before the access token expires (at least after 10 s).
  const ms = Math.max(10, (body.expires_in ?? 900) - 60) * 1000;
  refreshTimer = setTimeout(() => refresh(), ms);
  emit();
}

/** Exchanges the refresh cookie for a new access token; true on success. */
export function refresh() {
  if (!refreshing) {
    refreshing = (async () => {
      try {
        const r = await raw('POST', '/api/v1/auth/refresh', { json: {}, headers: COOKIE_MODE, auth: false });
        if (!r.ok) return false;
        accept(r.body);
        return true;
      } catch {
        return false;
      } finally {
        refreshing = null;
      }
    })();
  }
  return refreshing;
}

/**
 * Logs in. Resolves {ok: true}, or {mfa: {ticket, factors}} when the API
 * asks for a second factor; throws ApiError otherwise.
 */
export async function login(body) {
  const r = await raw('POST', '/api/v1/auth/login', { json: body, headers: COOKIE_MODE, auth: false });
  if (r.status === 401 && r.body?.error?.code === 'mfa_required') {
    return { mfa: { ticket: r.body.mfa_ticket, factors: r.body.factors, challenges: r.body.challenges ?? {} } };
  }
  if (!r.ok) throw errorOf(r);
  accept(r.body);
  return { ok: true };
}

/**
 * Logs in again for a credential change (a recent login, docs/iam.md): as
 * login(); once the new session is there, the old one is revoked by its
 * bearer token (not in cookie mode, so the new cookie stays).
 */
export async function reauthenticate(body) {
  const old = access;
  const r = await login(body);
  if (r.ok && old && old !== access) {
    await raw('POST', '/api/v1/auth/logout', { headers: { Authorization: `Bearer ${old}` }, auth: false }).catch(() => {});
  }
  return r;
}

/** Ends the session on the server and forgets the access token; the cookie is cleared. */
export async function logout() {
  try {
    await raw('POST', '/api/v1/auth/logout', { headers: COOKIE_MODE });
  } catch {
    /* unreachable: the token is forgotten anyway */
  }
  signedOut();
}

let onSignedOut = () => {};
export function whenSignedOut(fn) {
  onSignedOut = fn;
}
function signedOut() {
  const had = access !== null;
  access = null;
  clearTimeout(refreshTimer);
  if (had) onSignedOut();
  emit();
}

export function hasSession() {
  return access !== null;
}

/**
 * A request with the session's bearer token and any body (bytes for a tus
 * PATCH, a stream reader for Server-Sent Events): the raw Response, after
 * one refresh-and-retry on 401. Network failures raise the banner and throw
 * ApiError(0, 'unreachable').
 */
export async function authFetch(path, { method = 'GET', headers = {}, body, signal } = {}) {
  const go = () =>
    fetch(path, {
      method,
      headers: { ...headers, ...(access ? { Authorization: `Bearer ${access}` } : {}) },
      body,
      signal,
      credentials: 'same-origin',
      cache: 'no-store',
    });
  let res;
  try {
    res = await go();
    if (res.status === 401 && access !== null) {
      if (await refresh()) res = await go();
      else signedOut();
    }
  } catch (e) {
    if (e?.name === 'AbortError') throw e;
    setOnline(false);
    throw new ApiError(0, 'unreachable', t('errors.unreachable'));
  }
  setOnline(true);
  return res;
}

/** The ApiError of a non-2xx Response from authFetch (its JSON error body). */
export async function responseError(res) {
  let body = null;
  try {
    body = await res.json();
  } catch {
    body = null;
  }
  return errorOf({ status: res.status, body });
}
