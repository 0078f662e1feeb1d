// The semantic diff between two terms versions (GET .../versions: each
// version's signed content {title, description, terms, ...}): one line per
// changed value by its path ("terms.privacy.epsilon 1 → 2"), and for lists
// of plain values the items added and removed ("terms.data_access.datasets
// + d2"), so a signer sees what changed, not two JSON texts.
import { useEffect, useState } from 'preact/hooks';
import { api } from './api.js';
import { fmtDate, t } from './messages.js';
import { Empty, Failure, Loading, html } from './ui.js';

const plain = (v) => v === null || typeof v !== 'object';
const show = (v) => (v === undefined ? '—' : typeof v === 'string' ? v : JSON.stringify(v));

/** [{path, kind: 'changed'|'added'|'removed', from, to}] from a to b. */
export function semanticDiff(a, b, path = '', out = []) {
  if (Array.isArray(a) && Array.isArray(b) && a.every(plain) && b.every(plain)) {
    const key = (v) => JSON.stringify(v);
    const ka = new Set(a.map(key));
    const kb = new Set(b.map(key));
    for (const v of b) if (!ka.has(key(v))) out.push({ path, kind: 'added', to: v });
    for (const v of a) if (!kb.has(key(v))) out.push({ path, kind: 'removed', from: v });
    return out;
  }
  if (a && b && typeof a === 'object' && typeof b === 'object' && Array.isArray(a) === Array.isArray(b)) {
    const keys = Array.isArray(a) ? [...Array(Math.max(a.length, b.length)).keys()] : [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    for (const k of keys) {
      const p = Array.isArray(a) ? `${path}[${k}]` : path ? `${path}.${k}` : k;
      if (!(k in a)) out.push({ path: p, kind: 'added', to: b[k] });
      else if (!(k in b)) out.push({ path: p, kind: 'removed', from: a[k] });
      else semanticDiff(a[k], b[k], p, out);
    }
    return out;
  }
  if (JSON.stringify(a) !== JSON.stringify(b)) out.push({ path, kind: 'changed', from: a, to: b });
  return out;
}

/** What is signed, without the bookkeeping fields that change on every version. */
function signed(content) {
  const { version, id, ...rest } = content ?? {};
  return rest;
}

export function DiffList({ changes }) {
  if (!changes.length) return html`<${Empty}><p>${t('diff.none')}</p></${Empty}>`;
  return html`<ul class="diff" data-testid="diff">
    ${changes.map(
      (c) => html`<li class=${'diff-' + c.kind}>
        <code>${c.path}</code>${' '}
        ${c.kind === 'changed' && html`<del>${show(c.from)}</del> → <ins>${show(c.to)}</ins>`}
        ${c.kind === 'added' && html`<ins>+ ${show(c.to)}</ins> <span class="hint">(${t('diff.added')})</span>`}
        ${c.kind === 'removed' && html`<del>− ${show(c.from)}</del> <span class="hint">(${t('diff.removed')})</span>`}
      </li>`,
    )}
  </ul>`;
}

function useVersions(id) {
  const [state, setState] = useState({ loading: true });
  async function load() {
    setState({ loading: true });
    try {
      setState({ versions: (await api('GET', `/api/v1/contracts/${encodeURIComponent(id)}/versions`)).body.versions });
    } catch (e) {
      setState({ error: e });
    }
  }
  useEffect(() => {
    load();
  }, [id]);
  return [state, load];
}

/** The contract page's diff: any two versions, by default the previous and the current. */
export function VersionsDiff({ contract }) {
  const [state, reload] = useVersions(contract.id);
  const [from, setFrom] = useState(null);
  const [to, setTo] = useState(null);
  const vs = state.versions ?? [];
  const n = vs.length;
  const fv = from ?? (n > 1 ? vs[n - 2].terms_version : vs[0]?.terms_version);
  const tv = to ?? vs[n - 1]?.terms_version;
  const a = vs.find((v) => v.terms_version === fv);
  const b = vs.find((v) => v.terms_version === tv);
  const opt = (v) => html`<option value=${v.terms_version}>${t('diff.version', { v: v.terms_version, date: fmtDate(v.created_at) })}</option>`;
  return html`<section aria-labelledby="diff-h">
    <h2 id="diff-h">${t('diff.title')}</h2>
    ${state.loading && html`<${Loading} />`}
    ${state.error && html`<${Failure} error=${state.error} retry=${reload} />`}
    ${n === 1 && html`<${Empty}><p>${t('diff.only_one')}</p></${Empty}>`}
    ${n > 1 &&
    html`<div class="filters">
        <div class="field inline"><label for="diff-from">${t('diff.from')}</label>
          <select id="diff-from" value=${fv} onChange=${(e) => setFrom(Number(e.currentTarget.value))}>${vs.map(opt)}</select></div>
        <div class="field inline"><label for="diff-to">${t('diff.to')}</label>
          <select id="diff-to" value=${tv} onChange=${(e) => setTo(Number(e.currentTarget.value))}>${vs.map(opt)}</select></div>
      </div>
      ${a && b && html`<${DiffList} changes=${semanticDiff(signed(a.content), signed(b.content))} />`}`}
  </section>`;
}

/** The signing sheet's diff: from the last version this signer signed to the current one. */
/**
 * The last terms version `me` signed: a live signature, else (an edit voids
 * signatures, and the contract shows only live ones) the newest
 * `contract.sign` of the contract's audit trail by this signer.
 */
async function lastSigned(contract, me) {
  const live = contract.signatures.filter((s) => s.signer_id === me.identity.id).map((s) => s.terms_version);
  if (live.length) return Math.max(...live);
  let best = null;
  let cursor = null;
  for (let page = 0; page < 20; page++) {
    const r = await api('GET', `/api/v1/contracts/${encodeURIComponent(contract.id)}/audit?limit=1000${cursor ? '&cursor=' + encodeURIComponent(cursor) : ''}`);
    for (const e of r.body.events) {
      const v = e.details?.terms_version;
      if (e.action === 'contract.sign' && e.outcome === 'success' && e.actor === me.identity.id && typeof v === 'number') best = Math.max(best ?? 0, v);
    }
    cursor = r.body.next_cursor;
    if (!cursor) break;
  }
  return best;
}

export function DiffSinceSigned({ contract, me }) {
  const [state, reload] = useVersions(contract.id);
  const [signed_, setSigned] = useState({ loading: true });
  useEffect(() => {
    lastSigned(contract, me).then((v) => setSigned({ v }), (e) => setSigned({ error: e }));
  }, [contract.id, contract.terms_version]);
  const last = signed_.v ?? null;
  if (state.loading || signed_.loading) return html`<${Loading} />`;
  if (state.error || signed_.error) return html`<${Failure} error=${state.error ?? signed_.error} retry=${reload} />`;
  const vs = state.versions;
  const cur = vs.find((v) => v.current) ?? vs[vs.length - 1];
  const prev = last !== null ? vs.find((v) => v.terms_version === last) : null;
  return html`<section aria-labelledby="since-h">
    <h2 id="since-h">${t('diff.since.title')}</h2>
    ${last === null
      ? html`<p>${t('diff.since.never')}</p>`
      : last === cur.terms_version
        ? html`<p>${t('diff.since.same', { v: last })}</p>`
        : html`<p>${t('diff.since.intro', { from: last, to: cur.terms_version })}</p>
            ${prev ? html`<${DiffList} changes=${semanticDiff(signed(prev.content), signed(cur.content))} />` : html`<p>${t('diff.since.missing')}</p>`}`}
  </section>`;
}
