// A tus 1.0 upload of a browser File to a dataset's content
// (docs/datasets.md): ask where to resume (HEAD: Upload-Offset), then
// PATCH chunks at that offset, each with its Upload-Checksum. A network
// error, a 5xx or a 409 (offset moved) asks HEAD again and carries on,
// with a growing pause; a reload resumes the same way once the same file
// is chosen again, since the server keeps what it acknowledged.
import { ApiError, authFetch, responseError } from './api.js';

const TUS = { 'Tus-Resumable': '1.0.0' };
const MIN_CHUNK = 64 * 1024;
const MAX_CHUNK = 8 * 1024 * 1024;
const MAX_RETRIES = 8; // about 40 s in all: longer than the server's writer lease (20 s) of a dropped request

/** A chunk size giving about twenty steps of progress. */
export function chunkSize(size) {
  return Math.min(MAX_CHUNK, Math.max(MIN_CHUNK, Math.ceil(size / 20)));
}

function b64(buf) {
  let s = '';
  const b = new Uint8Array(buf);
  for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]);
  return btoa(s);
}

/** {offset, length} the server holds for this dataset. */
export async function where(url, signal) {
  const res = await authFetch(url, { method: 'HEAD', headers: TUS, signal });
  if (!res.ok) throw await responseError(res);
  const len = res.headers.get('Upload-Length');
  return { offset: Number(res.headers.get('Upload-Offset') ?? 0), length: len === null ? null : Number(len) };
}

const sleep = (ms, signal) =>
  new Promise((ok, fail) => {
    const tm = setTimeout(ok, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(tm);
      fail(new DOMException('aborted', 'AbortError'));
    });
  });

/**
 * Uploads `file` to dataset `id`. onProgress({sent, total, rate, eta,
 * resumedFrom, retrying}) after each acknowledged chunk; resolves when the
 * server holds every byte. Throws ApiError on a refusal (4xx other than
 * 409), or after MAX_RETRIES failures in a row.
 */
export async function upload(id, file, { onProgress = () => {}, signal } = {}) {
  const url = `/api/v1/datasets/${encodeURIComponent(id)}/content`;
  const total = file.size;
  let { offset, length } = await where(url, signal);
  if (length !== null && length !== total) {
    throw new ApiError(409, 'size_mismatch', `this file has ${total} bytes; the upload started with ${length}`);
  }
  const resumedFrom = offset;
  const t0 = performance.now();
  const report = (retrying = false) => {
    const secs = (performance.now() - t0) / 1000;
    const rate = secs > 0 ? (offset - resumedFrom) / secs : 0;
    onProgress({ sent: offset, total, rate, eta: rate > 0 ? (total - offset) / rate : null, resumedFrom, retrying });
  };
  report();
  const step = chunkSize(total);
  let failures = 0;
  while (offset < total || (total === 0 && length === null)) {
    const chunk = await file.slice(offset, Math.min(total, offset + step)).arrayBuffer();
    const sum = b64(await crypto.subtle.digest('SHA-256', chunk));
    const headers = { ...TUS, 'Content-Type': 'application/offset+octet-stream', 'Upload-Offset': String(offset), 'Upload-Checksum': `sha256 ${sum}` };
    if (length === null) headers['Upload-Length'] = String(total);
    let res = null;
    try {
      res = await authFetch(url, { method: 'PATCH', headers, body: chunk, signal });
    } catch (e) {
      if (e?.name === 'AbortError') throw e;
    }
    if (res && res.ok) {
      failures = 0;
      length = total;
      offset = Number(res.headers.get('Upload-Offset') ?? offset + chunk.byteLength);
      report();
      if (total === 0) break;
      continue;
    }
    if (res && res.status !== 409 && res.status < 500) throw await responseError(res);
    if (++failures > MAX_RETRIES) throw res ? await responseError(res) : new ApiError(0, 'unreachable', 'the upload failed repeatedly');
    report(true);
    await sleep(Math.min(8000, 500 * 2 ** (failures - 1)), signal);
    try {
      ({ offset, length } = await where(url, signal));
    } catch (e) {
      if (e?.name === 'AbortError') throw e;
    }
  }
}
