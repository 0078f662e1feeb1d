// Create or edit a draft: a form over the terms, or the raw JSON, with every
// problem the API reports shown next to its field (matched by JSON path)
// and all of them in a summary at the top.
import { useEffect, useState } from 'preact/hooks';
import { api, ApiError } from './api.js';
import { useContract } from './detail.js';
import { t } from './messages.js';
import { navigate } from './router.js';
import { ErrorSummary, Failure, FieldProblems, Loading, fieldId, html } from './ui.js';

const PERMISSIONS = ['read', 'train', 'evaluate', 'aggregate'];
const FRAMEWORKS = ['GDPR', 'HIPAA', 'CCPA', 'SOC2', 'ISO27001', 'PCI-DSS', 'FedRAMP', 'NIST-800-53', 'LGPD', 'PIPEDA', 'EU-AI-ACT'];

// The form: one row per field, by the JSON path the API names in its problems.
const SECTIONS = [
  ['editor.general', [
    ['title', 'text', 'editor.title'],
    ['description', 'textarea', 'editor.description'],
    ['provider_id', 'text', 'editor.provider_id', { fixed: true }],
    ['consumer_id', 'text', 'editor.consumer_id', { fixed: true }],
  ]],
  ['editor.access', [
    ['terms.data_access.datasets', 'lines', 'editor.datasets'],
    ['terms.data_access.permissions', 'checks', 'editor.permissions', { options: PERMISSIONS }],
  ]],
  ['editor.usage', [
    ['terms.usage.purposes', 'lines', 'editor.purposes'],
    ['terms.usage.allowed_model_types', 'lines', 'editor.model_types'],
    ['terms.usage.max_training_runs', 'number', 'editor.max_runs'],
  ]],
  ['editor.retention', [
    ['terms.retention.days', 'number', 'editor.retention_days'],
    ['terms.retention.deletion', 'select', 'editor.deletion', { options: ['delete', 'crypto_shred'] }],
  ]],
  ['editor.security', [
    ['terms.security.encryption_level', 'select', 'editor.encryption', { options: ['standard', 'high', 'military'] }],
    ['terms.security.network_isolation', 'bool', 'editor.isolation'],
    ['terms.security.audit_logging', 'bool', 'editor.audit_logging'],
    ['terms.security.custom_policies', 'lines', 'editor.custom_policies'],
  ]],
  ['editor.compliance', [
    ['terms.compliance.frameworks', 'checks', 'editor.frameworks', { options: FRAMEWORKS }],
    ['terms.compliance.data_residency', 'lines', 'editor.residency'],
  ]],
  ['editor.pricing', [
    ['terms.pricing.model', 'select', 'editor.pricing.model', { options: ['', 'fixed', 'per_training_run', 'subscription_monthly'], none: 'editor.pricing.none' }],
    ['terms.pricing.amount', 'number', 'editor.pricing.amount', { pricing: true }],
    ['terms.pricing.currency', 'text', 'editor.pricing.currency', { pricing: true }],
  ]],
  ['editor.dates', [
    ['terms.effective_from', 'datetime', 'editor.effective_from'],
    ['terms.expires_at', 'datetime', 'editor.expires_at'],
  ]],
];
const PATHS = SECTIONS.flatMap(([, rows]) => rows.map((r) => r[0]));

/** The form field a problem belongs to: the longest field path that is a prefix of it. */
export function fieldOf(path) {
  let best = null;
  for (const p of PATHS) {
    if ((path === p || path.startsWith(p + '.') || path.startsWith(p + '[')) && (!best || p.length > best.length)) best = p;
  }
  if (!best && path === 'terms.pricing') best = 'terms.pricing.model';
  return best;
}

const get = (o, path) => path.split('.').reduce((x, k) => (x == null ? undefined : x[k]), o);
function set(o, path, v) {
  const keys = path.split('.');
  const copy = structuredClone(o);
  let x = copy;
  for (const k of keys.slice(0, -1)) x = x[k] ??= {};
  x[keys.at(-1)] = v;
  return copy;
}

function toLocalInput(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function blank(me) {
  const now = new Date(Date.now() - 60e3);
  now.setSeconds(0, 0);
  const later = new Date(now.getTime() + 365 * 86400e3);
  const roles = me.token.roles;
  return {
    title: '',
    description: '',
    provider_id: roles.includes('provider') ? me.identity.id : '',
    consumer_id: !roles.includes('provider') && roles.includes('consumer') ? me.identity.id : '',
    terms: {
      data_access: { datasets: [], permissions: ['train'] },
      usage: { purposes: [], allowed_model_types: [], max_training_runs: 10, raw_data_export: false },
      retention: { days: 30, deletion: 'crypto_shred' },
      security: { encryption_level: 'high', network_isolation: true, audit_logging: true, custom_policies: [] },
      compliance: { frameworks: [], data_residency: [] },
      effective_from: now.toISOString(),
      expires_at: later.toISOString(),
    },
  };
}

const INPUT = ['title', 'description', 'provider_id', 'consumer_id', 'terms'];
function docOf(c) {
  return Object.fromEntries(INPUT.map((k) => [k, structuredClone(c[k])]));
}

export function ContractEditor({ id, me }) {
  return id ? html`<${EditContract} key=${id} id=${id} me=${me} />` : html`<${Editor} key="new" me=${me} initial=${blank(me)} />`;
}

function EditContract({ id, me }) {
  const [state, reload] = useContract(id);
  if (state.loading) return html`<${Loading} />`;
  if (state.error) return html`<${Failure} error=${state.error} retry=${reload} />`;
  return html`<${Editor} me=${me} contract=${state.contract} initial=${docOf(state.contract)} />`;
}

function Editor({ me, contract, initial }) {
  const [doc, setDoc] = useState(initial);
  const [mode, setMode] = useState('form');
  const [text, setText] = useState('');
  const [jsonError, setJsonError] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    document.querySelector('main h1')?.focus();
  }, []);

  const byField = {};
  const orphans = [];
  for (const d of error?.details ?? []) {
    const f = fieldOf(d.field);
    if (f) (byField[f] ??= []).push(d);
    else orphans.push(d);
  }

  function switchMode(next) {
    if (next === mode) return;
    if (next === 'json') {
      setText(JSON.stringify(doc, null, 2));
      setJsonError(null);
      setMode('json');
    } else {
      try {
        setDoc(JSON.parse(text));
        setJsonError(null);
        setMode('form');
      } catch (e) {
        setJsonError(t('editor.json.invalid', { message: e.message }));
      }
    }
  }

  async function save(ev) {
    ev.preventDefault();
    let body = doc;
    if (mode === 'json') {
      try {
        body = JSON.parse(text);
      } catch (e) {
        setJsonError(t('editor.json.invalid', { message: e.message }));
        return;
      }
    }
    setBusy(true);
    setError(null);
    try {
      const r = contract
        ? await api('PUT', `/api/v1/contracts/${contract.id}`, { json: body, headers: { 'If-Match': `"${contract.version}"` } })
        : await api('POST', '/api/v1/contracts', { json: body });
      navigate(`/contracts/${r.body.id}`);
    } catch (e) {
      setError(e instanceof ApiError ? e : new ApiError(0, 'error', String(e)));
    } finally {
      setBusy(false);
    }
  }

  const field = ([path, kind, label, opt = {}]) => {
    const id = fieldId(path);
    const problems = byField[path] ?? [];
    const invalid = problems.length ? 'true' : undefined;
    const described = [problems.length ? id + '-problems' : null, opt.fixed && contract ? id + '-hint' : null].filter(Boolean).join(' ') || undefined;
    const value = get(doc, path);
    const change = (v) => setDoc((d) => set(d, path, v));
    const common = { id, name: path, 'aria-invalid': invalid, 'aria-describedby': described };
    let control;
    if (kind === 'checks') {
      const cur = value ?? [];
      return html`<fieldset class=${'field' + (invalid ? ' invalid' : '')} id=${id} tabindex="-1" aria-describedby=${described}>
        <legend>${t(label)}</legend>
        <div class="checks">
          ${opt.options.map(
            (o) => html`<label class="check"><input type="checkbox" checked=${cur.includes(o)}
              onChange=${(e) => change(e.currentTarget.checked ? [...cur, o] : cur.filter((x) => x !== o))} /> ${o}</label>`,
          )}
        </div>
        <${FieldProblems} id=${id} problems=${problems} />
      </fieldset>`;
    }
    if (kind === 'bool') {
      return html`<div class=${'field' + (invalid ? ' invalid' : '')}>
        <label class="check"><input type="checkbox" ...${common} checked=${!!value} onChange=${(e) => change(e.currentTarget.checked)} /> ${t(label)}</label>
        <${FieldProblems} id=${id} problems=${problems} />
      </div>`;
    }
    if (kind === 'textarea') control = html`<textarea ...${common} rows="3" value=${value ?? ''} onInput=${(e) => change(e.currentTarget.value)} />`;
    else if (kind === 'lines')
      control = html`<textarea ...${common} rows="3" value=${(value ?? []).join('\n')}
        onInput=${(e) => change(e.currentTarget.value.split('\n').map((s) => s.trim()).filter(Boolean))} />`;
    else if (kind === 'number')
      control = html`<input ...${common} type="number" inputmode="numeric" value=${value ?? ''} disabled=${opt.pricing && !doc.terms.pricing?.model}
        onInput=${(e) => change(e.currentTarget.value === '' ? null : Number(e.currentTarget.value))} />`;
    else if (kind === 'select')
      control = html`<select ...${common} value=${value ?? ''} onChange=${(e) => {
        const v = e.currentTarget.value;
        if (path === 'terms.pricing.model')
          setDoc((d) => {
            const n = structuredClone(d);
            if (!v) delete n.terms.pricing;
            else n.terms.pricing = { amount: 0, currency: 'EUR', ...n.terms.pricing, model: v };
            return n;
          });
        else change(v);
      }}>${opt.options.map((o) => html`<option value=${o}>${o || t(opt.none)}</option>`)}</select>`;
    else if (kind === 'datetime')
      control = html`<input ...${common} type="datetime-local" value=${toLocalInput(value)}
        onInput=${(e) => { const d = new Date(e.currentTarget.value); change(Number.isNaN(d.getTime()) ? e.currentTarget.value : d.toISOString()); }} />`;
    else
      control = html`<input ...${common} type="text" value=${value ?? ''} readonly=${opt.fixed && !!contract}
        disabled=${opt.pricing && !doc.terms.pricing?.model} onInput=${(e) => change(e.currentTarget.value)} />`;
    return html`<div class=${'field' + (invalid ? ' invalid' : '')}>
      <label for=${id}>${t(label)}</label>
      ${control}
      ${opt.fixed && contract && html`<p class="hint" id=${id + '-hint'}>${t('editor.parties.hint')}</p>`}
      <${FieldProblems} id=${id} problems=${problems} />
    </div>`;
  };

  return html`<section>
    <p><a href=${contract ? '#/contracts/' + contract.id : '#/contracts'}>${contract ? t('sign.back') : t('common.back')}</a></p>
    <h1 tabindex="-1">${contract ? t('editor.edit') : t('editor.new')}</h1>
    ${contract && contract.signatures.length > 0 && html`<p class="note">${t('editor.edit.voids')}</p>`}
    <${ErrorSummary} error=${error} fieldFor=${(p) => (mode === 'form' && fieldOf(p) ? fieldId(fieldOf(p)) : mode === 'json' ? 'f-json' : null)} />
    <div class="mode" role="group" aria-label=${t('editor.mode')}>
      <button type="button" aria-pressed=${mode === 'form' ? 'true' : 'false'} onClick=${() => switchMode('form')}>${t('editor.mode.form')}</button>
      <button type="button" aria-pressed=${mode === 'json' ? 'true' : 'false'} onClick=${() => switchMode('json')}>${t('editor.mode.json')}</button>
    </div>
    <form onSubmit=${save} novalidate aria-busy=${busy ? 'true' : 'false'}>
      ${mode === 'form' &&
      SECTIONS.map(([title, rows]) => html`<fieldset class="section"><legend>${t(title)}</legend>${rows.map(field)}</fieldset>`)}
      ${mode === 'form' && orphans.length > 0 && html`<${FieldProblems} id="f-other" problems=${orphans} />`}
      ${mode === 'json' &&
      html`<div class=${'field' + (error || jsonError ? ' invalid' : '')}>
        <label for="f-json">${t('editor.json')}</label>
        <textarea id="f-json" class="code" rows="28" spellcheck="false" value=${text} onInput=${(e) => setText(e.currentTarget.value)}
          aria-invalid=${error || jsonError ? 'true' : undefined} aria-describedby=${error || jsonError ? 'f-json-problems' : undefined} />
        ${jsonError && html`<p class="field-problems" id="f-json-problems" role="alert">${jsonError}</p>`}
        ${!jsonError && error?.details?.length > 0 && html`<div><p>${t('editor.json.problems')}</p><${FieldProblems} id="f-json" problems=${error.details} /></div>`}
      </div>`}
      <div class="buttons">
        <button type="submit" class="primary" disabled=${busy}>${busy ? t('editor.saving') : t('editor.save')}</button>
        <a class="button" href=${contract ? '#/contracts/' + contract.id : '#/contracts'}>${t('editor.cancel')}</a>
      </div>
    </form>
  </section>`;
}
