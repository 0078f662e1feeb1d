// The contract list: a tab per lifecycle state with its count, a search and
// a side filter, all kept in the URL (#/contracts?status=&q=&role=).
import { useEffect, useState } from 'preact/hooks';
import { api } from './api.js';
import { STATES, sidesOf } from './lifecycle.js';
import { fmtDate, fmtNumber, t } from './messages.js';
import { href, navigate } from './router.js';
import { Counterparty } from './parties.js';
import { Empty, Failure, Loading, StatusBadge, html } from './ui.js';

const PAGE = 50;
const COUNT_PAGE = 200;
const SOON_MS = 30 * 86400e3;

function query(params, extra) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries({ ...params, ...extra })) if (v) q.set(k, v);
  return q.toString();
}

export function ContractList({ route, me }) {
  const status = route.query.get('status') ?? '';
  const q = route.query.get('q') ?? '';
  const role = route.query.get('role') ?? '';
  const filters = { q, role };
  const [page, setPage] = useState({ loading: true });
  const [counts, setCounts] = useState({});
  const [more, setMore] = useState(false);
  const key = `${status}|${q}|${role}`;

  async function load() {
    setPage({ loading: true });
    try {
      const r = await api('GET', `/api/v1/contracts?${query(filters, { status, limit: PAGE })}`);
      setPage({ items: r.body.contracts, next: r.body.next_cursor });
    } catch (e) {
      setPage({ error: e });
    }
  }

  async function loadCounts() {
    // One request per state (limit 200; "200+" beyond), after the page itself.
    const out = {};
    await Promise.all(
      STATES.map(async (s) => {
        try {
          const r = await api('GET', `/api/v1/contracts?${query(filters, { status: s, limit: COUNT_PAGE })}`);
          out[s] = { n: r.body.contracts.length, more: !!r.body.next_cursor };
        } catch {
          out[s] = null;
        }
      }),
    );
    setCounts(out);
  }

  useEffect(() => {
    load().then(loadCounts);
  }, [key]);

  async function loadMore() {
    setMore(true);
    try {
      const r = await api('GET', `/api/v1/contracts?${query(filters, { status, limit: PAGE, cursor: page.next })}`);
      setPage({ items: [...page.items, ...r.body.contracts], next: r.body.next_cursor });
    } catch (e) {
      setPage({ ...page, moreError: e });
    } finally {
      setMore(false);
    }
  }

  function applyFilters(ev) {
    ev.preventDefault();
    const f = new FormData(ev.currentTarget);
    navigate('/contracts', { status, q: f.get('q').trim(), role: f.get('role') });
  }

  const countText = (s) => {
    const c = counts[s];
    if (!c) return '';
    return c.more ? t('list.countmore', { count: fmtNumber(c.n) }) : fmtNumber(c.n);
  };

  return html`<section>
    <div class="heading">
      <h1 tabindex="-1">${t('list.title')}</h1>
      <a class="button primary" href="#/contracts/new">${t('nav.new')}</a>
    </div>
    <form class="filters" role="search" onSubmit=${applyFilters}>
      <div class="field inline">
        <label for="f-q">${t('list.search')}</label>
        <input id="f-q" name="q" type="search" value=${q} />
      </div>
      <div class="field inline">
        <label for="f-role">${t('list.role')}</label>
        <select id="f-role" name="role" value=${role}>
          <option value="">${t('list.role.any')}</option>
          <option value="provider">${t('list.role.provider')}</option>
          <option value="consumer">${t('list.role.consumer')}</option>
        </select>
      </div>
      <button type="submit">${t('list.apply')}</button>
    </form>
    <nav aria-label=${t('list.tabs')} class="tabs">
      <ul>
        ${['', ...STATES].map(
          (s) => html`<li>
            <a href=${href('/contracts', { status: s, q, role })} aria-current=${s === status ? 'page' : undefined}>
              ${t('status.' + (s || 'all'))}
              ${s && counts[s] && html` <span class="count" aria-label=${`(${countText(s)})`}>${countText(s)}</span>`}
            </a>
          </li>`,
        )}
      </ul>
    </nav>
    ${page.loading && html`<${Loading} label=${t('list.loading')} />`}
    ${page.error && html`<${Failure} error=${page.error} retry=${load} />`}
    ${page.items && page.items.length === 0 &&
    html`<${Empty}><p>${t('list.empty')}</p><a href="#/contracts/new">${t('list.empty.create')}</a></${Empty}>`}
    ${page.items && page.items.length > 0 &&
    html`<table class="contracts">
        <caption class="visually-hidden">${t('list.count', { count: fmtNumber(page.items.length) })}</caption>
        <thead><tr>
          <th scope="col">${t('list.col.title')}</th><th scope="col">${t('list.col.status')}</th>
          <th scope="col">${t('list.col.side')}</th><th scope="col">${t('list.col.counterparty')}</th>
          <th scope="col">${t('list.col.updated')}</th>
          <th scope="col">${t('list.col.expires')}</th>
        </tr></thead>
        <tbody>
          ${page.items.map((c) => html`<${Row} key=${c.id} c=${c} me=${me} />`)}
        </tbody>
      </table>
      ${page.next && html`<p><button type="button" onClick=${loadMore} disabled=${more}>${t('list.more')}</button></p>`}
      ${page.moreError && html`<${Failure} error=${page.moreError} retry=${loadMore} />`}`}
  </section>`;
}

function Row({ c, me }) {
  const sides = sidesOf(c, me).parties;
  const exp = Date.parse(c.terms.expires_at);
  const soon = c.status === 'active' && exp - Date.now() < SOON_MS;
  return html`<tr>
    <td><a href=${'#/contracts/' + c.id}>${c.title}</a></td>
    <td><${StatusBadge} status=${c.status} /></td>
    <td>${sides.map((s) => t('detail.' + s)).join(', ') || '—'}</td>
    <td><${Counterparty} c=${c} sides=${sides} /></td>
    <td>${fmtDate(c.updated_at)}</td>
    <td>${fmtDate(c.terms.expires_at)}${soon && html` <span class="badge badge-soon">${t('list.expiring')}</span>`}</td>
  </tr>`;
}
