// Audit (auditors and admins, docs/audit.md): the event list with filters
// kept in the URL (actor, action prefix, resource, outcome, time range in
// the browser's time zone), the chain check of the server (GET
// /audit/verify) with its verdict, the export; and a contract's audit trail
// (its slice with the signed inclusion proof) with the evidence bundle.
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, authFetch, responseError } from './api.js';
import { useContract } from './detail.js';
import { fmtBytes } from './forms.js';
import { fmtDate, fmtNumber, t } from './messages.js';
import { navigate } from './router.js';
import { EventTable } from './training.js';
import { Empty, Failure, Loading, html } from './ui.js';

const FILTERS = ['actor', 'action', 'resource_type', 'resource_id', 'outcome', 'since', 'until'];

/** datetime-local value (local time) <-> RFC 3339 in UTC. */
const toIso = (local) => (local ? new Date(local).toISOString() : '');
function toLocal(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

/** Saves a Response's body as a file. */
async function save(res, name) {
  const blob = await res.blob();
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  return blob.size;
}

function useDownload() {
  const [st, setSt] = useState(null);
  async function run(path, name) {
    setSt({ loading: true });
    try {
      const res = await authFetch(path);
      if (!res.ok) throw await responseError(res);
      setSt({ done: fmtBytes(await save(res, name)) });
    } catch (e) {
      setSt({ error: e });
    }
  }
  return [st, run];
}

function Verify() {
  const [st, setSt] = useState(null);
  async function run() {
    setSt({ loading: true });
    try {
      setSt({ r: (await api('GET', '/api/v1/audit/verify')).body });
    } catch (e) {
      setSt({ error: e });
    }
  }
  const r = st?.r;
  return html`<div>
    <p><button type="button" class="primary" onClick=${run} disabled=${st?.loading}>${t('audit.verify')}</button></p>
    ${st?.loading && html`<${Loading} label=${t('audit.verifying')} />`}
    ${st?.error && html`<${Failure} error=${st.error} retry=${run} />`}
    ${r &&
    html`<div class=${r.ok ? 'verdict ok' : 'verdict bad'} role="status" data-testid="verdict">
      <p><strong>${r.ok ? t('audit.verified', { n: fmtNumber(r.last_seq) }) : t('audit.broken', { n: r.first_bad_seq ?? '—' })}</strong></p>
      <p>${t('audit.verify.facts', { events: fmtNumber(r.events_checked), checkpoints: fmtNumber(r.checkpoints_checked), key: r.key_id })}</p>
      ${!r.ok && html`<p>${r.reason}</p>`}
    </div>`}
  </div>`;
}

export function AuditPage({ route }) {
  const q = route.query;
  const [state, setState] = useState({ loading: true });
  const [dl, download] = useDownload();
  const key = FILTERS.map((k) => q.get(k) ?? '').join('|');
  const current = useRef(key);
  current.current = key;

  async function load(cursor) {
    const mine = key;
    setState((s) => ({ ...s, loading: true, error: null }));
    const p = new URLSearchParams();
    for (const k of FILTERS) if (q.get(k)) p.set(k, q.get(k));
    p.set('limit', '100');
    if (cursor) p.set('cursor', cursor);
    try {
      const r = await api('GET', `/api/v1/audit/events?${p}`);
      // An answer for filters the URL no longer has is dropped.
      if (current.current !== mine) return;
      setState((s) => ({ events: [...(cursor ? s.events ?? [] : []), ...r.body.events], next: r.body.next_cursor }));
    } catch (e) {
      if (current.current !== mine) return;
      setState((s) => ({ ...s, loading: false, error: e }));
    }
  }
  useEffect(() => {
    load();
  }, [key]);

  function apply(ev) {
    ev.preventDefault();
    const fd = new FormData(ev.currentTarget);
    const out = {};
    for (const k of FILTERS) {
      const v = String(fd.get(k) ?? '').trim();
      out[k] = k === 'since' || k === 'until' ? toIso(v) : v;
    }
    navigate('/audit', out);
  }
  const tz = Intl.DateTimeFormat().resolvedOptions().timeZone;
  const events = state.events ?? [];
  return html`<section>
    <h1 tabindex="-1">${t('audit.title')}</h1>
    <h2>${t('audit.chain')}</h2>
    <${Verify} />
    <p>
      <button type="button" onClick=${() => download('/api/v1/audit/export', 'dcms-audit.jsonl')} disabled=${dl?.loading}>${t('audit.export')}</button>
      ${dl?.done && html` <span role="status">${t('audit.exported', { size: dl.done })}</span>`}
    </p>
    ${dl?.error && html`<${Failure} error=${dl.error} />`}

    <h2>${t('audit.events')}</h2>
    <form class="filters" onSubmit=${apply} key=${key}>
      <div class="field inline"><label for="a-actor">${t('audit.col.actor')}</label><input id="a-actor" name="actor" value=${q.get('actor') ?? ''} /></div>
      <div class="field inline"><label for="a-action">${t('audit.f.action')}</label><input id="a-action" name="action" value=${q.get('action') ?? ''} placeholder="contract." /></div>
      <div class="field inline"><label for="a-rtype">${t('audit.f.rtype')}</label><input id="a-rtype" name="resource_type" value=${q.get('resource_type') ?? ''} /></div>
      <div class="field inline"><label for="a-rid">${t('audit.f.rid')}</label><input id="a-rid" name="resource_id" value=${q.get('resource_id') ?? ''} /></div>
      <div class="field inline"><label for="a-outcome">${t('audit.col.outcome')}</label>
        <select id="a-outcome" name="outcome" value=${q.get('outcome') ?? ''}>
          <option value="">${t('status.all')}</option>
          ${['success', 'denied', 'error'].map((o) => html`<option value=${o}>${t('audit.outcome.' + o)}</option>`)}
        </select></div>
      <div class="field inline"><label for="a-since">${t('audit.f.since', { tz })}</label><input id="a-since" name="since" type="datetime-local" value=${toLocal(q.get('since'))} /></div>
      <div class="field inline"><label for="a-until">${t('audit.f.until', { tz })}</label><input id="a-until" name="until" type="datetime-local" value=${toLocal(q.get('until'))} /></div>
      <button type="submit">${t('list.apply')}</button>
      <a class="button" href="#/audit">${t('audit.f.clear')}</a>
    </form>
    ${state.error && html`<${Failure} error=${state.error} retry=${() => load()} />`}
    ${state.loading && !events.length && html`<${Loading} label=${t('audit.loading')} />`}
    ${!state.loading && !state.error && !events.length && html`<${Empty}><p>${t('audit.empty')}</p></${Empty}>`}
    ${events.length > 0 && html`<${EventTable} events=${events} />`}
    ${state.next && html`<p><button type="button" onClick=${() => load(state.next)} disabled=${state.loading}>${t('list.more')}</button></p>`}
  </section>`;
}

export function ContractAudit({ id }) {
  const [cstate, reloadC] = useContract(id);
  const [state, setState] = useState({ loading: true });
  const [dl, download] = useDownload();
  async function load(cursor) {
    setState((s) => ({ ...s, loading: true, error: null }));
    try {
      const r = await api('GET', `/api/v1/contracts/${encodeURIComponent(id)}/audit?limit=200${cursor ? '&cursor=' + encodeURIComponent(cursor) : ''}`);
      setState((s) => ({ events: [...(cursor ? s.events ?? [] : []), ...r.body.events], next: r.body.next_cursor, proof: r.body.proof }));
    } catch (e) {
      setState((s) => ({ ...s, loading: false, error: e }));
    }
  }
  useEffect(() => {
    load();
  }, [id]);
  if (cstate.loading) return html`<${Loading} />`;
  if (cstate.error) return html`<section><h1 tabindex="-1">${t('audit.trail')}</h1><${Failure} error=${cstate.error} retry=${reloadC} /></section>`;
  const c = cstate.contract;
  const events = state.events ?? [];
  const cp = state.proof?.checkpoint;
  return html`<section>
    <p><a href=${'#/contracts/' + c.id}>${t('sign.back')}</a></p>
    <h1 tabindex="-1">${t('audit.trail.of', { title: c.title })}</h1>
    <p>
      <button type="button" class="primary" onClick=${() => download(`/api/v1/contracts/${c.id}/evidence`, `dcms-evidence-${c.id}.json`)} disabled=${dl?.loading}>${t('audit.evidence')}</button>
      ${dl?.done && html` <span role="status">${t('audit.exported', { size: dl.done })}</span>`}
    </p>
    <p class="hint">${t('audit.evidence.hint')}</p>
    ${dl?.error && html`<${Failure} error=${dl.error} />`}
    ${cp && html`<p class="note">${t('audit.proof', { seq: fmtNumber(cp.seq), time: fmtDate(cp.time), key: state.proof.key_id })}</p>`}
    ${state.error && html`<${Failure} error=${state.error} retry=${() => load()} />`}
    ${state.loading && !events.length && html`<${Loading} label=${t('audit.loading')} />`}
    ${!state.loading && !state.error && !events.length && html`<${Empty}><p>${t('audit.empty')}</p></${Empty}>`}
    ${events.length > 0 && html`<${EventTable} events=${events} />`}
    ${state.next && html`<p><button type="button" onClick=${() => load(state.next)} disabled=${state.loading}>${t('list.more')}</button></p>`}
  </section>`;
}
