// A contract: its lifecycle as a stepper, the legal actions (each disabled
// one says why), the parties, the signatures of each side and the terms.
import { useEffect, useRef, useState } from 'preact/hooks';
import { api } from './api.js';
import { EnclavesPanel } from './enclaves.js';
import { actions, liveSignature, sidesOf } from './lifecycle.js';
import { fmtDate, t } from './messages.js';
import { VersionsDiff } from './diff.js';
import { navigate } from './router.js';
import { Party, nameOf } from './parties.js';
import { ReceiptButton } from './receipt.js';
import { TrainingsPanel } from './training.js';
import { ErrorSummary, Failure, Loading, StatusBadge, html } from './ui.js';

export function useContract(id) {
  const [state, setState] = useState({ loading: true });
  async function load() {
    setState((s) => ({ ...s, loading: true, error: null }));
    try {
      const r = await api('GET', `/api/v1/contracts/${encodeURIComponent(id)}`);
      setState({ contract: r.body });
    } catch (e) {
      setState({ error: e.status === 404 ? Object.assign(e, { message: t('errors.notfound') }) : e });
    }
  }
  useEffect(() => {
    load();
  }, [id]);
  return [state, load, (c) => setState({ contract: c })];
}

function steps(status) {
  const s = ['draft', 'pending_signature', 'active'];
  if (status === 'suspended') s.push('suspended');
  s.push(status === 'expired' ? 'expired' : 'terminated');
  return s;
}

function Stepper({ status }) {
  const list = steps(status);
  const at = list.indexOf(status);
  return html`<ol class="stepper" aria-label=${t('detail.lifecycle')}>
    ${list.map(
      (s, i) => html`<li class=${i < at ? 'done' : i === at ? 'current' : 'todo'} aria-current=${i === at ? 'step' : undefined}>
        <span class="dot" aria-hidden="true"></span>${t('status.' + s)}
        ${i === at && html`<span class="visually-hidden"> (${t('detail.current')})</span>`}
      </li>`,
    )}
  </ol>`;
}

/** The terms as path → value rows (terms.retention.days → 30). */
function flatten(v, path, out) {
  if (Array.isArray(v)) out.push([path, v.length ? v.join(', ') : '—']);
  else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) flatten(x, path ? `${path}.${k}` : k, out);
  else out.push([path, typeof v === 'boolean' ? t(v ? 'common.yes' : 'common.no') : String(v)]);
  return out;
}

const ORDER = ['edit', 'submit', 'sign', 'activate', 'suspend', 'resume', 'terminate', 'delete'];

export function ContractDetail({ id, me }) {
  const [state, reload, setContract] = useContract(id);
  const [error, setError] = useState(null);
  const [done, setDone] = useState(null);
  const [ask, setAsk] = useState(null);
  const [busy, setBusy] = useState(false);
  const dialog = useRef(null);

  useEffect(() => {
    if (ask && dialog.current && !dialog.current.open) dialog.current.showModal();
  }, [ask]);

  if (state.loading && !state.contract) return html`<${Loading} label=${t('detail.loading')} />`;
  if (state.error) return html`<section><h1 tabindex="-1">${t('list.title')}</h1><${Failure} error=${state.error} retry=${reload} /><p><a href="#/contracts">${t('common.back')}</a></p></section>`;
  const c = state.contract;
  const acts = actions(c, me);
  const { parties } = sidesOf(c, me);

  async function run(name, reason) {
    setBusy(true);
    setError(null);
    setDone(null);
    try {
      if (name === 'delete') {
        await api('DELETE', `/api/v1/contracts/${c.id}`);
        navigate('/contracts', {});
        return;
      }
      const r = await api('POST', `/api/v1/contracts/${c.id}/${name}`, { json: reason ? { reason } : {} });
      setContract(r.body);
      setDone(t('detail.done', { action: t('action.' + name) }));
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  }

  function click(name) {
    const a = acts[name];
    if (!a.enabled || busy) return;
    if (name === 'edit') return navigate(`/contracts/${c.id}/edit`);
    if (name === 'sign') return navigate(`/contracts/${c.id}/sign`);
    if (['terminate', 'suspend', 'delete'].includes(name)) return setAsk(name);
    run(name);
  }

  function confirm(ev) {
    ev.preventDefault();
    const reason = new FormData(ev.currentTarget).get('reason')?.trim();
    const name = ask;
    dialog.current.close();
    setAsk(null);
    run(name, reason || undefined);
  }

  const party = (side) => {
    const pid = c[side + '_id'];
    return html`<${Party} id=${pid} name=${c[side + '_name']} full=${true} />${parties.includes(side) && html` <strong>${t('detail.you')}</strong>`}`;
  };

  return html`<section>
    <p><a href="#/contracts">${t('common.back')}</a></p>
    <div class="heading">
      <h1 tabindex="-1">${c.title}</h1>
      <${StatusBadge} status=${c.status} />
    </div>
    <${Stepper} status=${c.status} />
    ${c.status_reason && html`<p><strong>${t('detail.reason')}:</strong> ${c.status_reason}</p>`}

    <h2>${t('detail.actions')}</h2>
    <div role="status" aria-live="polite" class="live">${done}</div>
    <${ErrorSummary} error=${error} />
    <ul class="actions">
      ${ORDER.map((name) => {
        const a = acts[name];
        const why = `why-${name}`;
        return html`<li>
          <button type="button" class=${name === 'delete' || name === 'terminate' ? 'danger' : name === 'sign' || name === 'activate' || name === 'submit' ? 'primary' : ''}
            aria-disabled=${a.enabled && !busy ? undefined : 'true'} aria-describedby=${a.why ? why : undefined}
            onClick=${() => click(name)}>${t('action.' + name)}</button>
          ${a.why && html`<span class="why" id=${why}>${a.why}</span>`}
        </li>`;
      })}
    </ul>

    <h2>${t('detail.facts')}</h2>
    <dl class="facts">
      <dt>${t('detail.provider')}</dt><dd>${party('provider')}</dd>
      <dt>${t('detail.consumer')}</dt><dd>${party('consumer')}</dd>
      <dt>${t('detail.terms_version')}</dt><dd>${c.terms_version}</dd>
      <dt>${t('detail.terms_hash')}</dt><dd><code class="hash">${c.terms_hash}</code></dd>
      <dt>${t('detail.created')}</dt><dd>${fmtDate(c.created_at)}</dd>
      <dt>${t('detail.updated')}</dt><dd>${fmtDate(c.updated_at)}</dd>
    </dl>
    ${c.description && html`<h3>${t('detail.description')}</h3><p class="prewrap">${c.description}</p>`}

    <h2>${t('detail.signatures')}</h2>
    <table class="signatures">
      <thead><tr>
        <th scope="col">${t('detail.sig.side')}</th><th scope="col">${t('detail.sig.state')}</th>
        <th scope="col">${t('detail.sig.signer')}</th><th scope="col">${t('detail.sig.type')}</th>
        <th scope="col">${t('detail.sig.time')}</th><th scope="col">${t('detail.sig.key')}</th>
        <th scope="col">${t('receipt.col')}</th>
      </tr></thead>
      <tbody>
        ${['provider', 'consumer'].map((side) => {
          const s = liveSignature(c, side);
          return html`<tr data-side=${side}>
            <th scope="row">${t('detail.' + side)}</th>
            <td>${s ? t('detail.sig.signed') : t('detail.sig.missing')}</td>
            <td>${s ? html`<${Party} id=${s.signer_id} name=${nameOf(c, s.signer_id) ?? (s.signer_id === me.identity.id ? me.identity.name : null)} />${s.signer_id === me.identity.id && html` ${t('detail.you')}`}` : '—'}</td>
            <td>${s ? `${s.type} (${s.algorithm})` : '—'}</td>
            <td>${s ? fmtDate(s.signed_at) : '—'}</td>
            <td>${s ? html`<code>${s.key_id}</code>` : '—'}</td>
            <td>${s?.receipt ? html`<${ReceiptButton} link=${s.receipt} name=${`dcms-receipt-${c.id}-${side}.json`} label=${t('receipt.of', { side: t('detail.' + side).toLowerCase() })} />` : '—'}</td>
          </tr>`;
        })}
      </tbody>
    </table>

    <h2>${t('detail.terms')}</h2>
    <table class="terms">
      <tbody>
        ${flatten(c.terms, '', []).map(([k, v]) => html`<tr><th scope="row"><code>${k}</code></th><td>${v}</td></tr>`)}
      </tbody>
    </table>

    ${c.terms_version > 1 && html`<${VersionsDiff} contract=${c} />`}
    <${TrainingsPanel} contract=${c} me=${me} />
    <${EnclavesPanel} contract=${c} />
    <p><a href=${'#/contracts/' + c.id + '/audit'}>${t('audit.trail')}</a></p>

    <dialog ref=${dialog} aria-labelledby="dlg-title" onClose=${() => setAsk(null)}>
      ${ask && html`<form method="dialog" onSubmit=${confirm}>
        <h2 id="dlg-title">${t('action.confirm', { action: t('action.' + ask) })}</h2>
        ${ask === 'delete'
          ? html`<p>${t('action.delete.confirm')}</p>`
          : html`<div class="field">
              <label for="f-reason">${ask === 'terminate' ? t('action.reason') : t('action.reason.optional')}</label>
              <textarea id="f-reason" name="reason" rows="3" required=${ask === 'terminate'} maxlength="1000"></textarea>
            </div>`}
        <div class="buttons">
          <button type="submit" class="danger">${t('action.' + ask)}</button>
          <button type="button" onClick=${() => dialog.current.close()}>${t('action.cancel')}</button>
        </div>
      </form>`}
    </dialog>
  </section>`;
}
