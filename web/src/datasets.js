// Datasets (providers, docs/datasets.md): the list with each state, a new
// dataset (name, description, schema columns with types, the label and its
// values; the columns can be read from a CSV's header), the upload over tus
// with its progress (bytes, rate, time left) that resumes after an error or
// a reload, the validation report, verify and delete.
import { useEffect, useRef, useState } from 'preact/hooks';
import { api } from './api.js';
import { Field, fieldFor, fmtBytes, fmtSeconds, problemsAt } from './forms.js';
import { fmtDate, fmtNumber, t } from './messages.js';
import { navigate } from './router.js';
import { upload } from './tus.js';
import { Empty, ErrorSummary, Failure, Loading, fieldId, html } from './ui.js';

const TYPES = ['number', 'integer', 'category', 'text'];
// The file picked on the "new" screen, handed to the detail screen that uploads it.
let handoff = null;

function DsBadge({ status }) {
  return html`<span class=${'badge badge-ds-' + status}>${t('ds.status.' + status)}</span>`;
}

export function DatasetList() {
  const [state, setState] = useState({ loading: true });
  async function load(cursor) {
    setState((s) => ({ ...s, loading: true, error: null }));
    try {
      const r = await api('GET', `/api/v1/datasets?limit=100${cursor ? '&cursor=' + encodeURIComponent(cursor) : ''}`);
      setState((s) => ({ items: [...(cursor ? s.items ?? [] : []), ...r.body.datasets], next: r.body.next_cursor }));
    } catch (e) {
      setState((s) => ({ ...s, loading: false, error: e }));
    }
  }
  useEffect(() => {
    load();
  }, []);
  const items = state.items ?? [];
  return html`<section>
    <div class="heading">
      <h1 tabindex="-1">${t('ds.title')}</h1>
      <a class="button primary" href="#/datasets/new">${t('ds.new')}</a>
    </div>
    ${state.error && html`<${Failure} error=${state.error} retry=${() => load()} />`}
    ${state.loading && !items.length && html`<${Loading} label=${t('ds.loading')} />`}
    ${!state.loading && !state.error && !items.length && html`<${Empty}><p>${t('ds.empty')}</p><p><a href="#/datasets/new">${t('ds.new')}</a></p></${Empty}>`}
    ${items.length > 0 &&
    html`<table class="datasets">
      <thead><tr>
        <th scope="col">${t('ds.col.name')}</th><th scope="col">${t('ds.col.status')}</th>
        <th scope="col">${t('ds.col.rows')}</th><th scope="col">${t('ds.col.size')}</th><th scope="col">${t('ds.col.updated')}</th>
      </tr></thead>
      <tbody>
        ${items.map(
          (d) => html`<tr>
            <td><a href=${'#/datasets/' + d.id}>${d.name}</a></td>
            <td><${DsBadge} status=${d.status} /></td>
            <td>${d.rows === null ? '—' : fmtNumber(d.rows)}</td>
            <td>${d.upload_length === null ? '—' : fmtBytes(d.upload_length)}</td>
            <td>${fmtDate(d.updated_at)}</td>
          </tr>`,
        )}
      </tbody>
    </table>`}
    ${state.next && html`<p><button type="button" onClick=${() => load(state.next)} disabled=${state.loading}>${t('list.more')}</button></p>`}
  </section>`;
}

/** Column types guessed from a CSV's header and first rows. */
export function guessColumns(text) {
  const lines = text.split(/\r?\n/).filter((l) => l.length);
  const head = (lines[0] ?? '').split(',').map((s) => s.trim().replace(/^"|"$/g, ''));
  const rows = lines.slice(1, 51).map((l) => l.split(','));
  return head.map((name, i) => {
    const vals = rows.map((r) => (r[i] ?? '').trim()).filter((v) => v !== '');
    if (vals.length && vals.every((v) => /^-?\d+$/.test(v))) return { name, type: 'integer', values: '' };
    if (vals.length && vals.every((v) => Number.isFinite(Number(v)))) return { name, type: 'number', values: '' };
    const distinct = [...new Set(vals)];
    if (distinct.length && distinct.length <= 20) return { name, type: 'category', values: distinct.join(', ') };
    return { name, type: 'text', values: '' };
  });
}

const splitList = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);

export function DatasetNew() {
  const [name, setName] = useState('');
  const [description, setDescription] = useState('');
  const [columns, setColumns] = useState([{ name: '', type: 'number', values: '' }]);
  const [label, setLabel] = useState('');
  const [labelValues, setLabelValues] = useState('');
  const [file, setFile] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);

  async function pick(ev) {
    const f = ev.currentTarget.files?.[0] ?? null;
    setFile(f);
    if (!f) return;
    const head = await f.slice(0, 64 * 1024).text();
    const cols = guessColumns(head);
    if (!cols.length) return;
    setColumns(cols);
    if (!name) setName(f.name.replace(/\.csv$/i, ''));
    const last = cols[cols.length - 1];
    setLabel(last.name);
    // The label's values as they appear in the file.
    const lines = head.split(/\r?\n/).slice(1).filter(Boolean);
    const vals = [...new Set(lines.map((l) => (l.split(',')[cols.length - 1] ?? '').trim()).filter(Boolean))];
    if (vals.length <= 50) setLabelValues(vals.sort().join(', '));
  }

  const setCol = (i, k, v) => setColumns((cs) => cs.map((c, j) => (j === i ? { ...c, [k]: v } : c)));

  const known = ['name', 'description', 'schema', 'schema.columns', 'schema.label', 'schema.label_values', 'expected_size', 'Upload-Length'];
  columns.forEach((_, i) => known.push(`schema.columns[${i}].name`, `schema.columns[${i}].type`, `schema.columns[${i}].values`));

  async function submit(ev) {
    ev.preventDefault();
    setBusy(true);
    setError(null);
    const body = {
      name,
      description,
      schema: {
        columns: columns.map((c) => (c.type === 'category' ? { name: c.name, type: c.type, values: splitList(c.values) } : { name: c.name, type: c.type })),
        label,
        label_values: splitList(labelValues),
      },
    };
    try {
      const headers = file ? { 'Tus-Resumable': '1.0.0', 'Upload-Length': String(file.size) } : {};
      if (file) body.expected_size = file.size;
      const r = await api('POST', '/api/v1/datasets', { json: body, headers });
      handoff = file ? { id: r.body.id, file } : null;
      navigate(`/datasets/${r.body.id}`);
    } catch (e) {
      setError(e);
      setBusy(false);
    }
  }

  return html`<section>
    <p><a href="#/datasets">${t('ds.back')}</a></p>
    <h1 tabindex="-1">${t('ds.new')}</h1>
    <${ErrorSummary} error=${error} fieldFor=${fieldFor(known)} />
    <form onSubmit=${submit} novalidate>
      <div class="field">
        <label for="f-file">${t('ds.file')}</label>
        <input id="f-file" type="file" accept=".csv,text/csv" onChange=${pick} aria-describedby="f-file-hint" />
        <span class="hint" id="f-file-hint">${t('ds.file.hint')}</span>
      </div>
      <${Field} path="name" label=${t('ds.name')} error=${error} known=${known}>
        ${({ id, described, invalid }) => html`<input id=${id} value=${name} onInput=${(e) => setName(e.currentTarget.value)} aria-describedby=${described} aria-invalid=${invalid ? 'true' : undefined} required maxlength="255" />`}
      </${Field}>
      <${Field} path="description" label=${t('ds.description')} error=${error} known=${known}>
        ${({ id, described }) => html`<textarea id=${id} rows="2" value=${description} onInput=${(e) => setDescription(e.currentTarget.value)} aria-describedby=${described}></textarea>`}
      </${Field}>
      <fieldset class="section">
        <legend>${t('ds.columns')}</legend>
        ${problemsAt(error, 'schema.columns', known).length > 0 && html`<ul class="field-problems" id=${fieldId('schema.columns')} tabindex="-1">${problemsAt(error, 'schema.columns', known).map((p) => html`<li><code>${p.field}</code> ${p.problem}</li>`)}</ul>`}
        <table class="columns">
          <thead><tr><th scope="col">#</th><th scope="col">${t('ds.col.colname')}</th><th scope="col">${t('ds.col.type')}</th><th scope="col">${t('ds.col.values')}</th><th scope="col"><span class="visually-hidden">${t('ds.col.remove')}</span></th></tr></thead>
          <tbody>
            ${columns.map((c, i) => {
              const p = (k) => `schema.columns[${i}].${k}`;
              const probs = (k) => problemsAt(error, p(k), known);
              const cell = (k, input) => html`<td class=${probs(k).length ? 'field invalid' : ''}>${input}${probs(k).length > 0 && html`<ul class="field-problems" id=${fieldId(p(k)) + '-problems'}>${probs(k).map((x) => html`<li>${x.problem}</li>`)}</ul>`}</td>`;
              return html`<tr>
                <td>${i + 1}</td>
                ${cell('name', html`<input id=${fieldId(p('name'))} aria-label=${t('ds.col.colname') + ' ' + (i + 1)} value=${c.name} onInput=${(e) => setCol(i, 'name', e.currentTarget.value)} aria-describedby=${probs('name').length ? fieldId(p('name')) + '-problems' : undefined} />`)}
                ${cell('type', html`<select id=${fieldId(p('type'))} aria-label=${t('ds.col.type') + ' ' + (i + 1)} value=${c.type} onChange=${(e) => setCol(i, 'type', e.currentTarget.value)}>${TYPES.map((x) => html`<option value=${x}>${t('ds.type.' + x)}</option>`)}</select>`)}
                ${cell('values', c.type === 'category' ? html`<input id=${fieldId(p('values'))} aria-label=${t('ds.col.values') + ' ' + (i + 1)} value=${c.values} onInput=${(e) => setCol(i, 'values', e.currentTarget.value)} />` : html`<span class="hint">—</span>`)}
                <td><button type="button" class="link" aria-label=${t('ds.col.remove') + ' ' + (i + 1)} onClick=${() => setColumns((cs) => cs.filter((_, j) => j !== i))} disabled=${columns.length === 1}>${t('ds.col.remove')}</button></td>
              </tr>`;
            })}
          </tbody>
        </table>
        <p><button type="button" onClick=${() => setColumns((cs) => [...cs, { name: '', type: 'number', values: '' }])}>${t('ds.col.add')}</button></p>
      </fieldset>
      <${Field} path="schema.label" label=${t('ds.label')} error=${error} known=${known}>
        ${({ id, described }) => html`<select id=${id} value=${label} onChange=${(e) => setLabel(e.currentTarget.value)} aria-describedby=${described}>
          <option value="">${t('ds.label.choose')}</option>
          ${columns.filter((c) => c.name).map((c) => html`<option value=${c.name}>${c.name}</option>`)}
        </select>`}
      </${Field}>
      <${Field} path="schema.label_values" label=${t('ds.label_values')} error=${error} known=${known} hint=${t('ds.label_values.hint')}>
        ${({ id, described }) => html`<input id=${id} value=${labelValues} onInput=${(e) => setLabelValues(e.currentTarget.value)} aria-describedby=${described} />`}
      </${Field}>
      <div class="buttons">
        <button type="submit" class="primary" disabled=${busy}>${busy ? t('ds.creating') : file ? t('ds.create.upload') : t('ds.create')}</button>
        <a class="button" href="#/datasets">${t('editor.cancel')}</a>
      </div>
    </form>
  </section>`;
}

function Progress({ p }) {
  if (!p) return null;
  const pct = p.total ? Math.floor((p.sent / p.total) * 100) : 100;
  return html`<div class="upload">
    <label for="upload-progress">${t('ds.upload.progress')}</label>
    <progress id="upload-progress" max=${p.total || 1} value=${p.sent}>${pct}%</progress>
    <p class="hint" data-testid="upload-figures">
      ${t('ds.upload.figures', { sent: fmtBytes(p.sent), total: fmtBytes(p.total), pct: fmtNumber(pct), rate: fmtBytes(Math.round(p.rate)) + '/s', eta: fmtSeconds(p.eta) })}
      ${p.resumedFrom > 0 && html` ${t('ds.upload.resumed', { from: fmtBytes(p.resumedFrom) })}`}
      ${p.retrying && html` ${t('ds.upload.retrying')}`}
    </p>
  </div>`;
}

export function DatasetDetail({ id }) {
  const [state, setState] = useState({ loading: true });
  const [prog, setProg] = useState(null);
  const [announce, setAnnounce] = useState('');
  const [uploading, setUploading] = useState(false);
  const [error, setError] = useState(null);
  const [verify, setVerify] = useState(null);
  const [file, setFile] = useState(null);
  const dialog = useRef(null);
  const abort = useRef(null);
  const lastPct = useRef(-1);

  async function load() {
    try {
      const r = await api('GET', `/api/v1/datasets/${encodeURIComponent(id)}`);
      setState({ ds: r.body });
      return r.body;
    } catch (e) {
      setState({ error: e });
      return null;
    }
  }

  async function send(f) {
    setError(null);
    setUploading(true);
    lastPct.current = -1;
    abort.current = new AbortController();
    try {
      await upload(id, f, {
        signal: abort.current.signal,
        onProgress: (p) => {
          setProg(p);
          // Announce every 25 % to screen readers, not every chunk.
          const q = p.total ? Math.floor((p.sent / p.total) * 4) : 4;
          if (q !== lastPct.current) {
            lastPct.current = q;
            setAnnounce(t('ds.upload.announce', { pct: fmtNumber(q * 25) }));
          }
        },
      });
      setAnnounce(t('ds.upload.done'));
    } catch (e) {
      if (e?.name !== 'AbortError') setError(e);
    } finally {
      setUploading(false);
      await load();
    }
  }

  useEffect(() => {
    load().then((ds) => {
      if (ds && handoff && handoff.id === id) {
        const f = handoff.file;
        handoff = null;
        setFile(f);
        send(f);
      }
    });
    return () => abort.current?.abort();
  }, [id]);

  if (state.loading) return html`<${Loading} label=${t('ds.loading.one')} />`;
  if (state.error) return html`<section><h1 tabindex="-1">${t('ds.title')}</h1><${Failure} error=${state.error} retry=${load} /><p><a href="#/datasets">${t('ds.back')}</a></p></section>`;
  const d = state.ds;
  const open = d.status === 'created' || d.status === 'uploading';

  async function doVerify() {
    setVerify({ loading: true });
    try {
      setVerify({ r: (await api('POST', `/api/v1/datasets/${d.id}/verify`)).body });
    } catch (e) {
      setVerify({ error: e });
    }
  }
  async function doDelete(ev) {
    ev.preventDefault();
    dialog.current.close();
    try {
      await api('DELETE', `/api/v1/datasets/${d.id}`);
      navigate('/datasets');
    } catch (e) {
      setError(e);
    }
  }

  return html`<section>
    <p><a href="#/datasets">${t('ds.back')}</a></p>
    <div class="heading"><h1 tabindex="-1">${d.name}</h1><${DsBadge} status=${d.status} /></div>
    ${d.description && html`<p class="prewrap">${d.description}</p>`}
    <${ErrorSummary} error=${error} refocus=${false} />
    <p role="status" aria-live="polite" class="live">${announce}</p>

    ${open &&
    html`<h2>${t('ds.upload')}</h2>
      <p>${d.status === 'uploading' && !uploading ? t('ds.upload.resume.hint', { sent: fmtBytes(d.upload_offset), total: fmtBytes(d.upload_length) }) : t('ds.upload.hint')}</p>
      <div class="filters">
        <div class="field inline">
          <label for="f-upload">${t('ds.file')}</label>
          <input id="f-upload" type="file" accept=".csv,text/csv" disabled=${uploading} onChange=${(e) => setFile(e.currentTarget.files?.[0] ?? null)} />
        </div>
        ${!uploading && html`<button type="button" class="primary" disabled=${!file} onClick=${() => send(file)}>${d.status === 'uploading' ? t('ds.upload.resume') : t('ds.upload.start')}</button>`}
        ${uploading && html`<button type="button" onClick=${() => abort.current?.abort()}>${t('ds.upload.pause')}</button>`}
      </div>`}
    <${Progress} p=${prog} />

    <h2>${t('detail.facts')}</h2>
    <dl class="facts">
      <dt>${t('ds.col.status')}</dt><dd>${t('ds.status.' + d.status)}</dd>
      <dt>${t('ds.col.rows')}</dt><dd data-testid="ds-rows">${d.rows === null ? '—' : fmtNumber(d.rows)}</dd>
      <dt>${t('ds.col.size')}</dt><dd>${fmtBytes(d.upload_offset)}${d.upload_length !== null && d.upload_offset !== d.upload_length ? ' / ' + fmtBytes(d.upload_length) : ''}</dd>
      <dt>${t('ds.sha256')}</dt><dd>${d.sha256 ? html`<code class="hash">${d.sha256}</code>` : '—'}</dd>
      <dt>${t('ds.id')}</dt><dd><code>${d.id}</code></dd>
      <dt>${t('detail.created')}</dt><dd>${fmtDate(d.created_at)}</dd>
      <dt>${t('detail.updated')}</dt><dd>${fmtDate(d.updated_at)}</dd>
    </dl>

    <h2>${t('ds.report')}</h2>
    ${!d.report
      ? html`<${Empty}><p>${t('ds.report.none')}</p></${Empty}>`
      : html`<div data-testid="ds-report">
          <p class=${d.report.valid ? 'ok' : 'bad'}><strong>${d.report.valid ? t('ds.report.valid', { rows: fmtNumber(d.report.rows) }) : t('ds.report.invalid', { n: fmtNumber(d.report.problems_total) })}</strong></p>
          ${d.report.problems.length > 0 &&
          html`<table class="stack"><thead><tr><th scope="col">${t('ds.report.line')}</th><th scope="col">${t('ds.report.problem')}</th></tr></thead>
            <tbody>${d.report.problems.map((p) => html`<tr><td>${p.line ?? t('ds.report.file')}</td><td>${p.problem}</td></tr>`)}</tbody></table>`}
        </div>`}

    <h2>${t('ds.schema')}</h2>
    <table class="stack">
      <thead><tr><th scope="col">${t('ds.col.colname')}</th><th scope="col">${t('ds.col.type')}</th><th scope="col">${t('ds.col.values')}</th></tr></thead>
      <tbody>${d.schema.columns.map((c) => html`<tr><td><code>${c.name}</code>${c.name === d.schema.label && html` <strong>(${t('ds.label')})</strong>`}</td><td>${t('ds.type.' + c.type)}</td><td>${c.values ? c.values.join(', ') : '—'}</td></tr>`)}</tbody>
    </table>
    <p>${t('ds.label_values')}: ${d.schema.label_values.join(', ')}</p>

    <h2>${t('detail.actions')}</h2>
    <div class="buttons">
      ${d.status === 'ready' && html`<button type="button" onClick=${doVerify} disabled=${verify?.loading}>${t('ds.verify')}</button>`}
      <button type="button" class="danger" onClick=${() => dialog.current.showModal()}>${t('ds.delete')}</button>
    </div>
    ${verify?.loading && html`<${Loading} />`}
    ${verify?.error && html`<${Failure} error=${verify.error} />`}
    ${verify?.r && html`<p role="status">${verify.r.ok ? t('ds.verify.ok') : t('ds.verify.bad')}</p>`}
    <dialog ref=${dialog} aria-labelledby="ds-dlg-title">
      <form method="dialog" onSubmit=${doDelete}>
        <h2 id="ds-dlg-title">${t('ds.delete')}</h2>
        <p>${t('ds.delete.confirm')}</p>
        <div class="buttons">
          <button type="submit" class="danger">${t('ds.delete')}</button>
          <button type="button" onClick=${() => dialog.current.close()}>${t('action.cancel')}</button>
        </div>
      </form>
    </dialog>
  </section>`;
}
