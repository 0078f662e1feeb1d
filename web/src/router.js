// Hash routes (#/contracts?status=active; #/home when there is none): the server serves the page at `/`
// only, so every other path stays the API's (a 404 there is a real 404), and
// the filters of a screen live in the URL.
import { useEffect, useState } from 'preact/hooks';

export function parse(hash = location.hash) {
  const s = hash.replace(/^#/, '') || '/home';
  const [p, q = ''] = s.split('?');
  return { path: p, segments: p.split('/').filter(Boolean), query: new URLSearchParams(q) };
}

export function href(path, query) {
  const qs = query ? new URLSearchParams(Object.entries(query).filter(([, v]) => v !== undefined && v !== '' && v !== null)).toString() : '';
  return `#${path}${qs ? '?' + qs : ''}`;
}

export function navigate(path, query, { replace = false } = {}) {
  const h = href(path, query);
  if (replace) history.replaceState(null, '', h);
  else history.pushState(null, '', h);
  dispatchEvent(new HashChangeEvent('hashchange'));
}

export function useRoute() {
  const [route, setRoute] = useState(parse());
  useEffect(() => {
    const on = () => setRoute(parse());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return route;
}
