// Form helpers of the work screens (datasets, trainings): the problems of
// a 422 that belong to one field (its JSON path, or a path below it), the
// field a problem belongs to (the longest known path that prefixes it),
// and sizes, rates and durations through Intl.
import { fmtNumber, t } from './messages.js';
import { FieldProblems, fieldId, html } from './ui.js';

const under = (field, path) => field === path || field.startsWith(path + '.') || field.startsWith(path + '[');

/** The problems of `error` at `path` or below it, unless a longer known path claims them. */
export function problemsAt(error, path, known = []) {
  return (error?.details ?? []).filter((d) => under(d.field ?? '', path) && !known.some((k) => k.length > path.length && k.startsWith(path) && under(d.field ?? '', k)));
}

/** fieldFor for ErrorSummary: the id of the longest known path prefixing a problem's field. */
export function fieldFor(known) {
  return (field) => {
    const best = known.filter((k) => under(field ?? '', k)).sort((a, b) => b.length - a.length)[0];
    return best ? fieldId(best) : null;
  };
}

/** One labelled field with its problems linked by aria-describedby. */
export function Field({ path, label, error, known, hint, children }) {
  const id = fieldId(path);
  const problems = problemsAt(error, path, known);
  const described = [hint ? id + '-hint' : null, problems.length ? id + '-problems' : null].filter(Boolean).join(' ') || undefined;
  const kids = typeof children === 'function' ? children({ id, invalid: problems.length > 0, described }) : children;
  return html`<div class=${problems.length ? 'field invalid' : 'field'}>
    <label for=${id}>${label}</label>
    ${kids}
    ${hint && html`<span class="hint" id=${id + '-hint'}>${hint}</span>`}
    <${FieldProblems} id=${id} problems=${problems} />
  </div>`;
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
export function fmtBytes(n) {
  if (n === null || n === undefined) return t('common.none');
  let i = 0;
  let v = n;
  while (v >= 1024 && i < UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  return `${new Intl.NumberFormat(undefined, { maximumFractionDigits: i ? 1 : 0 }).format(v)} ${UNITS[i]}`;
}

export function fmtSeconds(s) {
  if (s === null || s === undefined || !Number.isFinite(s)) return '—';
  if (s < 60) return t('time.seconds', { n: fmtNumber(Math.ceil(s)) });
  return t('time.minutes', { m: fmtNumber(Math.floor(s / 60)), s: fmtNumber(Math.ceil(s % 60)) });
}

export function fmtFixed(x, digits = 4) {
  if (typeof x !== 'number') return '—';
  return new Intl.NumberFormat(undefined, { maximumFractionDigits: digits }).format(x);
}
