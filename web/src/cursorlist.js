// A list read page by page with the API's `next_cursor`, for the filters a
// screen keeps in its URL (the admin's identities, the audit events).
import { useEffect, useRef, useState } from 'preact/hooks';
import { api } from './api.js';

/**
 * `key` names the current filters; `url(cursor)` is the page's path with them;
 * `member` the answer's array. Returns [state, load, setState]: state is
 * {loading} | {items, next} | {..., error}; load(cursor) appends the next
 * page (load() reloads). An answer for filters that are no longer the
 * current ones is dropped. The first page is read whenever `key` changes.
 */
export function useCursorList(key, url, member) {
  const [state, setState] = useState({ loading: true });
  const current = useRef(key);
  current.current = key;
  async function load(cursor) {
    const mine = key;
    setState((s) => ({ ...s, loading: true, error: null }));
    try {
      const r = await api('GET', url(cursor));
      if (current.current !== mine) return;
      setState((s) => ({ items: [...(cursor ? s.items ?? [] : []), ...r.body[member]], next: r.body.next_cursor }));
    } catch (e) {
      if (current.current !== mine) return;
      setState((s) => ({ ...s, loading: false, error: e }));
    }
  }
  useEffect(() => {
    load();
  }, [key]);
  return [state, load, setState];
}
