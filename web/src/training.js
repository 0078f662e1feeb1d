// Trainings (docs/training.md): a contract's jobs, the start form (model,
// optimizer, epochs, batch size, learning rate, split, and DP when the
// contract has a privacy budget), and a job's page: live progress from the
// Server-Sent Events stream, the metrics and confusion matrix on success,
// the failure reason, cancel, the model download (consumer) and the job's
// audit trail.
//
// The events route takes the bearer token like every route, and EventSource
// cannot send an Authorization header; so the stream is read with fetch and
// a ReadableStream reader, and reconnected after the server's `retry:` with
// Last-Event-ID, as an EventSource would.
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, authFetch, responseError } from './api.js';
import { useContract } from './detail.js';
import { Field, fieldFor, fmtBytes, fmtFixed } from './forms.js';
import { fmtDate, fmtNumber, t } from './messages.js';
import { navigate } from './router.js';
import { Empty, ErrorSummary, Failure, Loading, html, saveBlob } from './ui.js';

export const FINAL = ['succeeded', 'failed', 'cancelled'];
const STATES = ['queued', 'provisioning', 'attesting', 'running', 'validating', 'succeeded'];
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function JobBadge({ state }) {
  return html`<span class=${'badge badge-job-' + state}>${t('job.state.' + state)}</span>`;
}

/** Parses SSE text blocks: [{id, event, data}] and the rest not yet complete. */
export function parseSse(buf) {
  const out = [];
  let retry = null;
  const blocks = buf.split(/\r?\n\r?\n/);
  const rest = blocks.pop();
  for (const b of blocks) {
    const ev = { event: 'message', data: '' };
    for (const line of b.split(/\r?\n/)) {
      if (!line || line.startsWith(':')) continue;
      const i = line.indexOf(':');
      const k = i < 0 ? line : line.slice(0, i);
      const v = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
      if (k === 'data') ev.data += (ev.data ? '\n' : '') + v;
      else if (k === 'event') ev.event = v;
      else if (k === 'id') ev.id = v;
      else if (k === 'retry') retry = Number(v);
    }
    if (ev.data || ev.id !== undefined) out.push(ev);
  }
  return { events: out, rest, retry };
}

/**
 * Follows a job's event stream until an `end` event (or until stopped):
 * onEvent({event, id, data}) for each. Returns a stop function.
 */
export function follow(jobId, onEvent, onError) {
  const ctl = new AbortController();
  let last = null;
  let stopped = false;
  (async () => {
    let failures = 0;
    while (!stopped) {
      let retry = 1000;
      let ended = false;
      try {
        const headers = { Accept: 'text/event-stream' };
        if (last !== null) headers['Last-Event-ID'] = last;
        const res = await authFetch(`/api/v1/trainings/${encodeURIComponent(jobId)}/events`, { headers, signal: ctl.signal });
        if (!res.ok) throw await responseError(res);
        const reader = res.body.getReader();
        const dec = new TextDecoder();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += dec.decode(value, { stream: true });
          const p = parseSse(buf);
          buf = p.rest;
          if (p.retry) retry = p.retry;
          for (const ev of p.events) {
            if (ev.id !== undefined) last = ev.id;
            if (ev.event === 'end') ended = true;
            let data = null;
            try {
              data = ev.data ? JSON.parse(ev.data) : null;
            } catch {
              data = ev.data;
            }
            onEvent({ event: ev.event, id: ev.id, data });
          }
        }
        failures = 0;
      } catch (e) {
        if (e?.name === 'AbortError' || stopped) return;
        onError?.(e);
        if (e?.status && e.status !== 0 && e.status < 500) return;
        failures++;
      }
      if (ended) return;
      await new Promise((ok) => setTimeout(ok, Math.min(10000, retry * 2 ** Math.min(failures, 3))));
    }
  })();
  return () => {
    stopped = true;
    ctl.abort();
  };
}

/** A contract's jobs, and the start link for the consumer (on the contract page). */
export function TrainingsPanel({ contract, me }) {
  const [state, setState] = useState({ loading: true });
  async function load() {
    setState({ loading: true });
    try {
      const r = await api('GET', `/api/v1/contracts/${contract.id}/trainings?limit=50`);
      setState({ items: r.body.trainings });
    } catch (e) {
      setState({ error: e });
    }
  }
  useEffect(() => {
    load();
  }, [contract.id]);
  const consumer = me.token.roles.includes('consumer') && (contract.consumer_id === me.identity.id || contract.consumer_id === me.identity.organization_id);
  const canStart = consumer && contract.status === 'active';
  return html`<section aria-labelledby="trainings-h">
    <h2 id="trainings-h">${t('job.list')}</h2>
    ${consumer &&
    html`<p>
      ${canStart ? html`<a class="button primary" href=${'#/contracts/' + contract.id + '/train'}>${t('job.start')}</a>` : html`<span class="why">${t('job.start.why', { status: t('status.' + contract.status).toLowerCase() })}</span>`}
    </p>`}
    ${state.loading && html`<${Loading} label=${t('job.loading')} />`}
    ${state.error && html`<${Failure} error=${state.error} retry=${load} />`}
    ${state.items && !state.items.length && html`<${Empty}><p>${t('job.empty')}</p></${Empty}>`}
    ${state.items?.length > 0 &&
    html`<table class="trainings stack">
      <thead><tr><th scope="col">${t('job.col.job')}</th><th scope="col">${t('job.col.model')}</th><th scope="col">${t('job.col.state')}</th><th scope="col">${t('job.col.accuracy')}</th><th scope="col">${t('job.col.created')}</th></tr></thead>
      <tbody>${state.items.map(
        (j) => html`<tr>
          <td><a href=${'#/trainings/' + j.id}><code>${j.id.slice(0, 8)}</code></a></td>
          <td>${j.model}</td><td><${JobBadge} state=${j.state} /></td>
          <td>${fmtFixed(j.result?.metrics?.accuracy)}</td><td>${fmtDate(j.created_at)}</td>
        </tr>`,
      )}</tbody>
    </table>`}
  </section>`;
}

const num = (s) => (s === '' || s === null || s === undefined ? undefined : Number(s));

export function TrainingStart({ id, me }) {
  const [state, reload] = useContract(id);
  const [sets, setSets] = useState(null);
  const [f, setF] = useState({
    datasets: [], label: '', model: '', hidden: '16', optimizer: 'sgd', epochs: '100', batch_size: '0', learning_rate: '0.1', l2: '0', seed: '1',
    split: 'modulo', folds: '5', holdout_fold: '4', fraction: '0.2', split_seed: '1', dp_mode: 'target_epsilon', dp_value: '1', max_grad_norm: '1',
  });
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const c = state.contract;

  useEffect(() => {
    if (!c) return;
    const ids = (c.terms.data_access?.datasets ?? []).filter((x) => UUID.test(x));
    Promise.all(ids.map((x) => api('GET', `/api/v1/datasets/${x}`).then((r) => r.body, () => ({ id: x, name: x, schema: null }))))
      .then((list) => {
        setSets(list);
        const models = (c.terms.usage?.allowed_model_types ?? []).filter((m) => m === 'logistic_regression' || m === 'mlp');
        setF((v) => ({ ...v, datasets: list.map((d) => d.id), label: list[0]?.schema?.label ?? v.label, model: v.model || models[0] || 'logistic_regression', batch_size: c.terms.privacy ? '32' : v.batch_size }));
      });
  }, [c?.id]);

  if (state.loading) return html`<${Loading} />`;
  if (state.error) return html`<${Failure} error=${state.error} retry=${reload} />`;
  const models = (c.terms.usage?.allowed_model_types ?? []).filter((m) => m === 'logistic_regression' || m === 'mlp');
  const dp = !!c.terms.privacy;
  const set = (k) => (e) => {
    const v = e.currentTarget.type === 'checkbox' ? e.currentTarget.checked : e.currentTarget.value;
    setF((x) => ({ ...x, [k]: v }));
  };
  const known = ['datasets', 'label', 'model', 'hidden', 'optimizer', 'epochs', 'batch_size', 'learning_rate', 'l2', 'seed', 'split', 'split.folds', 'split.holdout_fold', 'split.fraction', 'split.seed', 'dp', 'dp.max_grad_norm', 'dp.target_epsilon', 'dp.noise_multiplier'];
  const input = (path, key, attrs = {}) => ({ id, described }) => html`<input id=${id} value=${f[key]} onInput=${set(key)} aria-describedby=${described} ...${attrs} />`;

  async function submit(ev) {
    ev.preventDefault();
    setBusy(true);
    setError(null);
    const body = {
      datasets: f.datasets, label: f.label, model: f.model, optimizer: f.optimizer,
      epochs: num(f.epochs), batch_size: num(f.batch_size), learning_rate: num(f.learning_rate), l2: num(f.l2), seed: num(f.seed),
      split: f.split === 'modulo' ? { method: 'modulo', folds: num(f.folds), holdout_fold: num(f.holdout_fold) } : { method: 'random', fraction: num(f.fraction), seed: num(f.split_seed) },
    };
    if (f.model === 'mlp') body.hidden = f.hidden.split(',').map((x) => Number(x.trim())).filter((x) => x > 0);
    if (dp) body.dp = { max_grad_norm: num(f.max_grad_norm), [f.dp_mode]: num(f.dp_value) };
    for (const k of Object.keys(body)) if (body[k] === undefined) delete body[k];
    try {
      const r = await api('POST', `/api/v1/contracts/${c.id}/trainings`, { json: body });
      navigate(`/trainings/${r.body.id}`);
    } catch (e) {
      setError(e);
      setBusy(false);
    }
  }

  return html`<section>
    <p><a href=${'#/contracts/' + c.id}>${t('sign.back')}</a></p>
    <h1 tabindex="-1">${t('job.start')}</h1>
    <p>${t('job.start.intro', { title: c.title })}</p>
    <${ErrorSummary} error=${error} fieldFor=${fieldFor(known)} />
    ${!sets && html`<${Loading} />`}
    ${sets &&
    html`<form onSubmit=${submit} novalidate>
      <fieldset class=${error?.details?.some((d) => d.field?.startsWith('datasets')) ? 'field invalid' : 'field'} id="f-datasets" tabindex="-1">
        <legend>${t('job.datasets')}</legend>
        ${!sets.length && html`<p class="note">${t('job.datasets.none')}</p>`}
        ${sets.map(
          (d) => html`<label class="check"><input type="checkbox" checked=${f.datasets.includes(d.id)}
            onChange=${(e) => setF((x) => ({ ...x, datasets: e.currentTarget.checked ? [...x.datasets, d.id] : x.datasets.filter((y) => y !== d.id) }))} />
            ${d.name} ${d.rows ? `(${t('job.rows', { n: fmtNumber(d.rows) })})` : ''}</label>`,
        )}
        ${(error?.details ?? []).filter((d) => d.field?.startsWith('datasets')).map((p) => html`<p class="field-problems"><code>${p.field}</code> ${p.problem}</p>`)}
      </fieldset>
      <${Field} path="label" label=${t('job.label')} error=${error} known=${known}>${input('label', 'label')}</${Field}>
      <${Field} path="model" label=${t('job.model')} error=${error} known=${known}>
        ${({ id, described }) => html`<select id=${id} value=${f.model} onChange=${set('model')} aria-describedby=${described}>
          ${(models.length ? models : ['logistic_regression', 'mlp']).map((m) => html`<option value=${m}>${t('job.model.' + m)}</option>`)}
        </select>`}
      </${Field}>
      ${f.model === 'mlp' && html`<${Field} path="hidden" label=${t('job.hidden')} error=${error} known=${known} hint=${t('job.hidden.hint')}>${input('hidden', 'hidden')}</${Field}>`}
      <${Field} path="optimizer" label=${t('job.optimizer')} error=${error} known=${known}>
        ${({ id, described }) => html`<select id=${id} value=${f.optimizer} onChange=${set('optimizer')} aria-describedby=${described}>
          <option value="sgd">SGD</option><option value="adam">Adam</option>
        </select>`}
      </${Field}>
      <div class="grid3">
        <${Field} path="epochs" label=${t('job.epochs')} error=${error} known=${known}>${input('epochs', 'epochs', { type: 'number', min: 1, inputmode: 'numeric' })}</${Field}>
        <${Field} path="batch_size" label=${t('job.batch_size')} error=${error} known=${known} hint=${t('job.batch_size.hint')}>${input('batch_size', 'batch_size', { type: 'number', min: 0 })}</${Field}>
        <${Field} path="learning_rate" label=${t('job.learning_rate')} error=${error} known=${known}>${input('learning_rate', 'learning_rate', { inputmode: 'decimal' })}</${Field}>
        <${Field} path="l2" label=${t('job.l2')} error=${error} known=${known}>${input('l2', 'l2', { inputmode: 'decimal' })}</${Field}>
        <${Field} path="seed" label=${t('job.seed')} error=${error} known=${known}>${input('seed', 'seed', { type: 'number', min: 0 })}</${Field}>
      </div>
      <fieldset class="section">
        <legend>${t('job.split')}</legend>
        <${Field} path="split" label=${t('job.split.method')} error=${error} known=${known}>
          ${({ id }) => html`<select id=${id} value=${f.split} onChange=${set('split')}><option value="modulo">${t('job.split.modulo')}</option><option value="random">${t('job.split.random')}</option></select>`}
        </${Field}>
        ${f.split === 'modulo'
          ? html`<div class="grid3">
              <${Field} path="split.folds" label=${t('job.split.folds')} error=${error} known=${known}>${input('split.folds', 'folds', { type: 'number', min: 2 })}</${Field}>
              <${Field} path="split.holdout_fold" label=${t('job.split.holdout')} error=${error} known=${known}>${input('split.holdout_fold', 'holdout_fold', { type: 'number', min: 0 })}</${Field}>
            </div>`
          : html`<div class="grid3">
              <${Field} path="split.fraction" label=${t('job.split.fraction')} error=${error} known=${known}>${input('split.fraction', 'fraction', { inputmode: 'decimal' })}</${Field}>
              <${Field} path="split.seed" label=${t('job.split.seed')} error=${error} known=${known}>${input('split.seed', 'split_seed', { type: 'number', min: 0 })}</${Field}>
            </div>`}
      </fieldset>
      ${dp &&
      html`<fieldset class="section">
        <legend>${t('job.dp')}</legend>
        <p class="hint">${t('job.dp.hint', { epsilon: fmtNumber(c.terms.privacy.epsilon), per_run: c.terms.privacy.max_epsilon_per_run ?? '—' })}</p>
        <${Field} path="dp" label=${t('job.dp.mode')} error=${error} known=${known}>
          ${({ id, described }) => html`<select id=${id} value=${f.dp_mode} onChange=${set('dp_mode')} aria-describedby=${described}>
            <option value="target_epsilon">${t('job.dp.target_epsilon')}</option><option value="noise_multiplier">${t('job.dp.noise_multiplier')}</option>
          </select>`}
        </${Field}>
        <div class="grid3">
          <${Field} path=${'dp.' + f.dp_mode} label=${t('job.dp.value')} error=${error} known=${known}>${input('dp.value', 'dp_value', { inputmode: 'decimal' })}</${Field}>
          <${Field} path="dp.max_grad_norm" label=${t('job.dp.max_grad_norm')} error=${error} known=${known}>${input('dp.max_grad_norm', 'max_grad_norm', { inputmode: 'decimal' })}</${Field}>
        </div>
      </fieldset>`}
      <div class="buttons">
        <button type="submit" class="primary" disabled=${busy}>${busy ? t('job.starting') : t('job.start.submit')}</button>
        <a class="button" href=${'#/contracts/' + c.id}>${t('editor.cancel')}</a>
      </div>
    </form>`}
  </section>`;
}

/** A small SVG line chart of the losses per epoch, with the same numbers in a table. */
function LossChart({ points }) {
  if (points.length < 2) return null;
  const W = 320;
  const H = 120;
  const ys = points.flatMap((p) => [p.loss, p.val_loss].filter((v) => typeof v === 'number'));
  const lo = Math.min(...ys);
  const hi = Math.max(...ys);
  const x0 = points[0].epoch;
  const x1 = points[points.length - 1].epoch;
  const sx = (e) => (x1 === x0 ? 0 : ((e - x0) / (x1 - x0)) * (W - 10) + 5);
  const sy = (v) => (hi === lo ? H / 2 : H - 5 - ((v - lo) / (hi - lo)) * (H - 10));
  const line = (k) => points.filter((p) => typeof p[k] === 'number').map((p) => `${sx(p.epoch).toFixed(1)},${sy(p[k]).toFixed(1)}`).join(' ');
  return html`<figure class="chart">
    <svg viewBox=${`0 0 ${W} ${H}`} role="img" aria-label=${t('job.chart')}>
      <polyline points=${line('loss')} class="series-a" fill="none" />
      <polyline points=${line('val_loss')} class="series-b" fill="none" />
    </svg>
    <figcaption><span class="key-a">${t('job.loss')}</span> <span class="key-b">${t('job.val_loss')}</span></figcaption>
  </figure>`;
}

function Metrics({ m }) {
  if (!m) return null;
  const cm = m.confusion_matrix;
  return html`<div data-testid="metrics">
    <dl class="facts">
      <dt>${t('job.m.accuracy')}</dt><dd data-testid="accuracy">${fmtFixed(m.accuracy)}</dd>
      <dt>${t('job.m.loss')}</dt><dd>${fmtFixed(m.loss)}</dd>
      <dt>${t('job.m.rows')}</dt><dd>${m.rows === undefined ? '—' : fmtNumber(m.rows)}</dd>
      ${m.macro && html`<dt>${t('job.m.macro')}</dt><dd>${t('job.m.prf', { p: fmtFixed(m.macro.precision), r: fmtFixed(m.macro.recall), f: fmtFixed(m.macro.f1) })}</dd>`}
      ${m.train_seconds !== undefined && html`<dt>${t('job.m.seconds')}</dt><dd>${fmtFixed(m.train_seconds, 3)}</dd>`}
      ${m.dp && html`<dt>${t('job.dp')}</dt><dd><code>${JSON.stringify(m.dp)}</code></dd>`}
    </dl>
    ${m.per_class &&
    html`<table class="stack">
      <caption>${t('job.m.per_class')}</caption>
      <thead><tr><th scope="col">${t('job.m.class')}</th><th scope="col">${t('job.m.precision')}</th><th scope="col">${t('job.m.recall')}</th><th scope="col">F1</th><th scope="col">${t('job.m.support')}</th></tr></thead>
      <tbody>${Object.entries(m.per_class).map(([k, v]) => html`<tr><th scope="row">${k}</th><td>${fmtFixed(v.precision)}</td><td>${fmtFixed(v.recall)}</td><td>${fmtFixed(v.f1)}</td><td>${fmtNumber(v.support ?? 0)}</td></tr>`)}</tbody>
    </table>`}
    ${cm &&
    html`<table class="confusion" data-testid="confusion">
      <caption>${t('job.m.confusion')}</caption>
      <thead><tr><td></td>${cm.labels.map((l) => html`<th scope="col">${t('job.m.predicted', { l })}</th>`)}</tr></thead>
      <tbody>${cm.matrix.map((row, i) => html`<tr><th scope="row">${t('job.m.actual', { l: cm.labels[i] })}</th>${row.map((n, j) => html`<td class=${i === j ? 'diag' : ''}>${fmtNumber(n)}</td>`)}</tr>`)}</tbody>
    </table>`}
  </div>`;
}

export function TrainingPage({ id, me }) {
  const [state, setState] = useState({ loading: true });
  const [points, setPoints] = useState([]);
  const [live, setLive] = useState('');
  const [streamErr, setStreamErr] = useState(null);
  const [error, setError] = useState(null);
  const [audit, setAudit] = useState(null);
  const [dl, setDl] = useState(null);
  const stop = useRef(null);

  async function load() {
    try {
      const r = await api('GET', `/api/v1/trainings/${encodeURIComponent(id)}`);
      setState({ job: r.body });
      return r.body;
    } catch (e) {
      setState({ error: e });
      return null;
    }
  }

  useEffect(() => {
    let cancelled = false;
    load().then((job) => {
      if (!job || cancelled) return;
      stop.current = follow(
        id,
        (ev) => {
          setStreamErr(null);
          if (ev.event === 'progress' && ev.data) {
            setPoints((ps) => (ps.some((p) => p.epoch === ev.data.epoch) ? ps : [...ps, ev.data]));
            setState((s) => (s.job ? { job: { ...s.job, progress: ev.data } } : s));
          } else if (ev.event === 'state' && ev.data) {
            setLive(t('job.state.now', { state: t('job.state.' + ev.data.state) }));
            setState((s) => (s.job ? { job: { ...s.job, state: ev.data.state, reason_code: ev.data.reason_code ?? s.job.reason_code, reason: ev.data.reason ?? s.job.reason } } : s));
            if (FINAL.includes(ev.data.state)) load();
          } else if (ev.event === 'end') load();
        },
        (e) => setStreamErr(e),
      );
    });
    return () => {
      cancelled = true;
      stop.current?.();
    };
  }, [id]);

  if (state.loading) return html`<${Loading} label=${t('job.loading.one')} />`;
  if (state.error) return html`<section><h1 tabindex="-1">${t('job.title')}</h1><${Failure} error=${state.error} retry=${load} /></section>`;
  const j = state.job;
  const mine = (x) => x && (x === me.identity.id || x === me.identity.organization_id);
  const isConsumer = mine(j.consumer_id) && me.token.roles.includes('consumer');
  const auditor = me.token.roles.includes('auditor') || me.token.roles.includes('admin');
  const ended = FINAL.includes(j.state);
  const p = j.progress;
  const epochs = j.request?.epochs;

  async function cancel() {
    setError(null);
    try {
      const r = await api('POST', `/api/v1/trainings/${j.id}/cancel`);
      setState({ job: r.body });
    } catch (e) {
      setError(e);
    }
  }
  async function download() {
    setDl({ loading: true });
    try {
      const res = await authFetch(`/api/v1/trainings/${j.id}/model`);
      if (!res.ok) throw await responseError(res);
      const blob = await res.blob();
      saveBlob(blob, `model-${j.id}.safetensors`);
      setDl({ done: fmtBytes(blob.size) });
    } catch (e) {
      setDl({ error: e });
    }
  }
  async function loadAudit() {
    setAudit({ loading: true });
    try {
      // Auditors read the log itself; the parties read the contract's slice
      // (the contract's and its enclaves' events), here those of this job's enclave.
      if (auditor) {
        const r = await api('GET', `/api/v1/audit/events?resource_type=training&resource_id=${j.id}&limit=200`);
        setAudit({ events: r.body.events.slice().reverse() });
      } else {
        const r = await api('GET', `/api/v1/contracts/${j.contract_id}/audit?limit=1000`);
        setAudit({ events: r.body.events.filter((e) => e.resource_id === j.id || (j.enclave_id && e.resource_id === j.enclave_id)) });
      }
    } catch (e) {
      setAudit({ error: e });
    }
  }

  const at = STATES.indexOf(j.state);
  return html`<section>
    <p><a href=${'#/contracts/' + j.contract_id}>${t('sign.back')}</a></p>
    <div class="heading"><h1 tabindex="-1">${t('job.title')} <code>${j.id.slice(0, 8)}</code></h1><${JobBadge} state=${j.state} /></div>
    <ol class="stepper" aria-label=${t('job.states')}>
      ${(j.state === 'failed' || j.state === 'cancelled' ? [...STATES.slice(0, -1), j.state] : STATES).map((s, i) => {
        const cur = s === j.state;
        const done = at >= 0 ? i < at : i < STATES.length - 1 && !!j.timestamps?.[s];
        return html`<li class=${cur ? 'current' : done ? 'done' : 'todo'} aria-current=${cur ? 'step' : undefined}><span class="dot" aria-hidden="true"></span>${t('job.state.' + s)}</li>`;
      })}
    </ol>
    <p role="status" aria-live="polite" class="live" data-testid="job-live">${live}</p>
    <${ErrorSummary} error=${error} refocus=${false} />
    ${streamErr && !ended && html`<p class="note" role="status">${t('job.stream.error', { message: streamErr.message })}</p>`}
    ${(j.state === 'failed' || j.state === 'cancelled') &&
    html`<div class="state error" role="alert" data-testid="job-failure"><p><strong>${t('job.failed', { code: j.reason_code ?? '—' })}</strong></p>${j.reason && html`<p>${j.reason}</p>`}</div>`}

    ${!ended && isConsumer && html`<p><button type="button" class="danger" onClick=${cancel}>${t('job.cancel')}</button></p>`}

    <h2>${t('job.progress')}</h2>
    ${!p && !ended && html`<${Loading} label=${t('job.waiting')} />`}
    ${p &&
    html`<div>
      ${epochs && html`<label for="job-progress">${t('job.epoch', { e: fmtNumber(p.epoch), n: fmtNumber(epochs) })}</label> <progress id="job-progress" max=${epochs} value=${p.epoch}></progress>`}
      <dl class="facts">
        <dt>${t('job.loss')}</dt><dd>${fmtFixed(p.loss)}</dd>
        <dt>${t('job.val_loss')}</dt><dd>${fmtFixed(p.val_loss)}</dd>
        <dt>${t('job.train_acc')}</dt><dd>${fmtFixed(p.train_accuracy)}</dd>
        <dt>${t('job.val_acc')}</dt><dd>${fmtFixed(p.val_accuracy)}</dd>
      </dl>
      <${LossChart} points=${points} />
    </div>`}

    ${j.state === 'succeeded' &&
    html`<h2>${t('job.metrics')}</h2>
      <${Metrics} m=${j.result?.metrics} />
      ${isConsumer &&
      html`<p><button type="button" class="primary" onClick=${download} disabled=${dl?.loading}>${t('job.download')}</button>
        ${j.result?.model_size !== undefined && html` <span class="hint">${fmtBytes(j.result.model_size)}</span>`}</p>
        ${dl?.error && html`<${Failure} error=${dl.error} />`}
        ${dl?.done && html`<p role="status">${t('job.downloaded', { size: dl.done })}</p>`}`}`}

    <h2>${t('detail.facts')}</h2>
    <dl class="facts">
      <dt>${t('job.col.model')}</dt><dd>${t('job.model.' + j.model)}</dd>
      <dt>${t('sign.contract')}</dt><dd><a href=${'#/contracts/' + j.contract_id}><code>${j.contract_id}</code></a></dd>
      <dt>${t('job.data_released')}</dt><dd>${t(j.data_released ? 'common.yes' : 'common.no')}</dd>
      ${j.privacy && html`<dt>${t('job.dp')}</dt><dd>${t('job.dp.record', { eps: fmtFixed(j.privacy.epsilon), sigma: fmtFixed(j.privacy.sigma), steps: fmtNumber(j.privacy.steps) })}</dd>`}
      ${j.result?.model_sha256 && html`<dt>${t('job.model_sha256')}</dt><dd><code class="hash">${j.result.model_sha256}</code></dd>`}
      <dt>${t('job.col.created')}</dt><dd>${fmtDate(j.created_at)}</dd>
      <dt>${t('detail.updated')}</dt><dd>${fmtDate(j.updated_at)}</dd>
    </dl>

    <h2>${t('audit.trail')}</h2>
    ${!audit && html`<p><button type="button" onClick=${loadAudit}>${t('audit.show')}</button></p>`}
    ${audit?.loading && html`<${Loading} />`}
    ${audit?.error && html`<${Failure} error=${audit.error} retry=${loadAudit} />`}
    ${audit?.events && (audit.events.length ? html`<${EventTable} events=${audit.events} />` : html`<${Empty}><p>${t('audit.empty')}</p></${Empty}>`)}
  </section>`;
}

/**
 * Audit events as a table (seq, time with its zone, actor, action, resource,
 * outcome); `nameOf(type, id)` (names.js) puts names beside the ids.
 */
export function EventTable({ events, nameOf }) {
  const named = (type, id, shown) => {
    const name = nameOf?.(type, id);
    return name ? html`${name} <code class="muted">${shown}</code>` : html`<code>${shown}</code>`;
  };
  const tz = Intl.DateTimeFormat().resolvedOptions().timeZone;
  return html`<table class="events">
    <thead><tr>
      <th scope="col">${t('audit.col.seq')}</th><th scope="col">${t('audit.col.time', { tz })}</th><th scope="col">${t('audit.col.actor')}</th>
      <th scope="col">${t('audit.col.action')}</th><th scope="col">${t('audit.col.resource')}</th><th scope="col">${t('audit.col.outcome')}</th>
    </tr></thead>
    <tbody>${events.map(
      (e) => html`<tr>
        <td>${e.seq}</td><td><time datetime=${e.time}>${fmtDate(e.time)}</time></td><td>${named('identity', e.actor, e.actor)}</td><td><code>${e.action}</code></td>
        <td>${e.resource_type ? html`${e.resource_type} ${named(e.resource_type, e.resource_id, (e.resource_id ?? '').slice(0, 8))}` : '—'}</td>
        <td><span class=${'badge badge-' + e.outcome}>${t('audit.outcome.' + e.outcome)}</span></td>
      </tr>`,
    )}</tbody>
  </table>`;
}
