// Small shared pieces: html (htm bound to Preact), states (loading, empty,
// error), the problem summary and the problem list of one field.
import { h } from 'preact';
import htm from 'htm';
import { t, tn } from './messages.js';

export const html = htm.bind(h);

/** Saves `blob` as a file named `name` (the browser's download). */
export function saveBlob(blob, name) {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

export function Loading({ label }) {
  return html`<p class="state" role="status" aria-live="polite"><span class="spinner" aria-hidden="true"></span>${label ?? t('app.loading')}</p>`;
}

export function Empty({ children }) {
  return html`<div class="state empty">${children}</div>`;
}

/** An ApiError shown where the data would be, with a retry. */
export function Failure({ error, retry }) {
  return html`<div class="state error" role="alert">
    <p>${error?.message ?? String(error)}</p>
    ${retry && html`<button type="button" onClick=${retry}>${t('errors.retry')}</button>`}
  </div>`;
}

/** A field id from a JSON path: terms.retention.days -> f-terms-retention-days. */
export function fieldId(path) {
  return 'f-' + path.replace(/[^A-Za-z0-9]+/g, '-');
}

/**
 * The list of problems at the top of a form: every problem of the answer,
 * each naming its field; a button moves the focus to the field (the page
 * uses hash routes, so no #anchor links).
 */
export function ErrorSummary({ error, fieldFor, refocus = true }) {
  if (!error) return null;
  const details = error.details ?? [];
  const focus = (path) => {
    const id = fieldFor ? fieldFor(path) : null;
    const el = id && document.getElementById(id);
    if (el) el.focus();
  };
  return html`<div class="summary" role="alert" tabindex="-1" ref=${(el) => refocus && el && el.focus()}>
    <p><strong>${error.message}</strong></p>
    ${details.length > 0 &&
    html`<p>${tn('errors.summary', details.length)}</p>
      <ul>
        ${details.map(
          (d) => html`<li>
            ${fieldFor && fieldFor(d.field)
              ? html`<button type="button" class="link" onClick=${() => focus(d.field)}><code>${d.field || '(body)'}</code></button>`
              : html`<code>${d.field || '(body)'}</code>`}
            ${' '}${d.problem}
          </li>`,
        )}
      </ul>`}
  </div>`;
}

/** The problems of one field, linked to its input by aria-describedby. */
export function FieldProblems({ id, problems }) {
  if (!problems?.length) return null;
  return html`<ul class="field-problems" id=${id + '-problems'}>
    ${problems.map((p) => html`<li><code>${p.field}</code> ${p.problem}</li>`)}
  </ul>`;
}

export function StatusBadge({ status }) {
  return html`<span class=${'badge badge-' + status}>${t('status.' + status)}</span>`;
}
