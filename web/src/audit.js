// Audit (auditors and admins, docs/audit.md): the event list with filters
// kept in the URL (actor, action prefix, resource, outcome, time range in
// the browser's time zone) and names beside ids (names.js), the chain
// verified twice side by side: by the server (GET /audit/verify) and in this
// browser over the export (auditverify.js); the export; and a contract's
// audit trail (its slice with the signed inclusion proof) with the evidence
// bundle.
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, authFetch, responseError } from './api.js';
import { useCursorList } from './cursorlist.js';
import { auditKey, verifyChain } from './auditverify.js';
import { useContract } from './detail.js';
import { Field, fmtBytes } from './forms.js';
import { fmtDate, fmtNumber, t, tn } from './messages.js';
import { useNames } from './names.js';
import { navigate } from './router.js';
import { EventTable } from './training.js';
import { Empty, ErrorSummary, Failure, Loading, fieldId, html, saveBlob } from './ui.js';

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
  saveBlob(blob, name);
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

/** GET /audit/verify: the server's own walk of the chain. */
function ServerVerdict({ st, retry }) {
  const r = st?.r;
  return html`<section class="verdict-col" aria-labelledby="v-server">
    <h3 id="v-server">${t('auditv.server')}</h3>
    ${!st && html`<p class="hint">${t('auditv.server.idle')}</p>`}
    ${st?.loading && html`<${Loading} label=${t('audit.verifying')} />`}
    ${st?.error && html`<${Failure} error=${st.error} retry=${retry} />`}
    <div class=${'live ' + (r ? (r.ok ? 'verdict ok' : 'verdict bad') : '')} role="status" data-testid="verdict">${r &&
    html`<p><strong>${r.ok ? t('audit.verified', { n: fmtNumber(r.last_seq) }) : t('audit.broken', { n: r.first_bad_seq ?? '—' })}</strong></p>
      <p>${tn('audit.verify.facts', r.checkpoints_checked, { events: fmtNumber(r.events_checked), key: r.key_id })}</p>
      ${!r.ok && html`<p>${r.reason}</p>`}`}</div>
  </section>`;
}

/** The audit key: its id and SHA-256 fingerprint computed here, and whether it is the one the server publishes. */
function KeyFacts({ ak, served }) {
  if (!ak && !served) return null;
  const id = ak?.keyId ?? served.key_id;
  return html`<dl class="facts" data-testid="audit-key">
    <dt>${ak?.pinned ? t('auditv.key.pinned') : t('auditv.key.served')}</dt>
    <dd><code>${id}</code>${ak && html` <span class="hint">${t('auditv.key.id_hint')}</span>`}</dd>
    ${ak && html`<dt>${t('auditv.key.fingerprint')}</dt><dd><code>${ak.fingerprint.match(/.{4}/g).join(' ')}</code></dd>`}
    ${ak?.pinned && served && html`<dt>${t('auditv.key.vs')}</dt>
      <dd class=${served.public_key === ak.publicKey ? 'ok' : 'bad'}>${served.public_key === ak.publicKey ? t('auditv.key.same') : t('auditv.key.other', { key: served.key_id })}</dd>`}
    ${ak && !ak.pinned && served && served.key_id !== ak.keyId && html`<dt>${t('auditv.key.vs')}</dt><dd class="bad">${t('auditv.key.misnamed', { key: served.key_id })}</dd>`}
  </dl>`;
}

/** The export checked in this browser (auditverify.js), with its progress and verdict. */
function BrowserVerdict({ st, stop, retry }) {
  const r = st?.r;
  const p = st?.progress;
  let verdict = null;
  if (r?.ok && r.events === 0) verdict = html`<p><strong>${t('auditv.empty')}</strong></p>`;
  else if (r?.ok) {
    verdict = html`<p><strong>${tn('auditv.verified', r.checkpoints, { n: fmtNumber(r.through) })}</strong></p>
      ${r.lastSeq > r.through && html`<p>${t('auditv.unsigned', { from: fmtNumber(r.through + 1), to: fmtNumber(r.lastSeq) })}</p>`}`;
  } else if (r) {
    verdict = html`<p><strong>${t('auditv.broken', { n: fmtNumber(r.badSeq), why: t('auditv.why.' + r.why.code, r.why) })}</strong></p>`;
  } else if (st?.stopped) verdict = html`<p>${t('auditv.stopped', { n: fmtNumber(st.stopped) })}</p>`;
  return html`<section class="verdict-col" aria-labelledby="v-browser">
    <h3 id="v-browser">${t('auditv.browser')}</h3>
    ${!st && html`<p class="hint">${t('auditv.browser.idle')}</p>`}
    ${st?.loading &&
    html`<div class="progress">
      <label for="bv-progress">${p?.total ? t('auditv.progress', { n: fmtNumber(p.checked), total: fmtNumber(p.total) }) : t('auditv.starting')}</label>
      <progress id="bv-progress" max=${p?.total || undefined} value=${p?.total ? p.checked : undefined}></progress>
      <button type="button" onClick=${stop}>${t('auditv.stop')}</button>
    </div>`}
    ${st?.error && html`<${Failure} error=${st.error} retry=${retry} />`}
    <div class=${'live ' + (r ? (r.ok ? 'verdict ok' : 'verdict bad') : '')} role="status" data-testid="browser-verdict">${verdict}${r &&
    html`<dl class="facts">
        <dt>${t('auditv.f.events')}</dt><dd>${fmtNumber(r.events)}</dd>
        <dt>${t('auditv.f.checkpoints')}</dt><dd>${fmtNumber(r.checkpoints)}</dd>
        <dt>${t('auditv.f.heads')}</dt><dd>${fmtNumber(r.treeHeads)}</dd>
      </dl>`}</div>
  </section>`;
}

/**
 * "Verify the audit chain": the server's verdict and this browser's, side by
 * side, with the key the browser used (the server's, or one the auditor pinned).
 */
function Verify() {
  const [server, setServer] = useState(null);
  const [br, setBr] = useState(null);
  const [served, setServed] = useState(null);
  const [ak, setAk] = useState(null);
  const [pin, setPin] = useState('');
  const [pinErr, setPinErr] = useState(null);
  const ctl = useRef(null);
  // The key's id and fingerprint are shown before any verification, to compare with a pinned copy.
  useEffect(() => {
    api('GET', '/api/v1/audit/public-key')
      .then(async (r) => {
        setServed(r.body);
        const k = await auditKey(r.body, '');
        setAk((cur) => cur ?? k); // a verification started meanwhile set the key it used
      })
      .catch(() => {}); // no Ed25519 in WebCrypto: the id as served; a verification says why
    return () => ctl.current?.abort();
  }, []);

  async function runServer() {
    setServer({ loading: true });
    try {
      setServer({ r: (await api('GET', '/api/v1/audit/verify')).body });
    } catch (e) {
      setServer({ error: e });
    }
  }

  async function runBrowser(onExport) {
    ctl.current?.abort();
    const c = new AbortController();
    ctl.current = c;
    let checked = 0;
    setBr({ loading: true });
    try {
      const key = (await api('GET', '/api/v1/audit/public-key')).body;
      setServed(key);
      const k = await auditKey(key, pin);
      setAk(k);
      const r = await verifyChain(k, {
        signal: c.signal,
        onExport,
        onProgress: (p) => {
          checked = p.checked;
          if (!c.signal.aborted) setBr({ loading: true, progress: p });
        },
      });
      if (ctl.current === c) setBr({ r });
    } catch (e) {
      if (ctl.current !== c) return;
      if (c.signal.aborted) setBr({ stopped: checked || '0' });
      else if (e?.field) {
        setPinErr({ message: t('auditv.pin.bad'), details: [{ field: 'pinned_key', problem: t('auditv.pin.problem') }] });
        setBr(null);
      } else setBr({ error: e?.unsupported ? new Error(t('auditv.unsupported')) : e });
    }
  }

  // The export signs the chain head first if it moved, so the server walks
  // the chain once the export has answered: both verdicts then count the
  // same checkpoints.
  function run(ev) {
    ev?.preventDefault();
    setPinErr(null);
    setServer({ loading: true });
    let asked = false;
    const serverToo = () => {
      if (!asked) {
        asked = true;
        runServer();
      }
    };
    runBrowser(serverToo).finally(serverToo);
  }

  return html`<div>
    <p class="hint">${t('auditv.intro')}</p>
    <${ErrorSummary} error=${pinErr} fieldFor=${() => fieldId('pinned_key')} />
    <form onSubmit=${run}>
      <${Field} path="pinned_key" label=${t('auditv.pin')} hint=${t('auditv.pin.hint')} error=${pinErr}>
        ${(a) => html`<input id=${a.id} class="code" autocomplete="off" spellcheck="false" value=${pin} onInput=${(e) => setPin(e.currentTarget.value)}
          aria-invalid=${a.invalid ? 'true' : undefined} aria-describedby=${a.described} />`}
      </${Field}>
      <p><button type="submit" class="primary" disabled=${server?.loading || br?.loading}>${t('audit.verify')}</button></p>
    </form>
    <${KeyFacts} ak=${ak} served=${served} />
    <div class="verdicts">
      <${ServerVerdict} st=${server} retry=${runServer} />
      <${BrowserVerdict} st=${br} stop=${() => ctl.current?.abort()} retry=${() => runBrowser()} />
    </div>
  </div>`;
}

/** The event table with names beside ids; a component of its own, so names arriving re-render the table only (not the filter form being typed in). */
function NamedEvents({ events, me }) {
  const nameOf = useNames(events, me);
  return html`<${EventTable} events=${events} nameOf=${nameOf} />`;
}

export function AuditPage({ route, me }) {
  const q = route.query;
  const [dl, download] = useDownload();
  const key = FILTERS.map((k) => q.get(k) ?? '').join('|');
  // An answer for filters the URL no longer has is dropped.
  const [state, load] = useCursorList(key, (cursor) => {
    const p = new URLSearchParams();
    for (const k of FILTERS) if (q.get(k)) p.set(k, q.get(k));
    p.set('limit', '100');
    if (cursor) p.set('cursor', cursor);
    return `/api/v1/audit/events?${p}`;
  }, 'events');

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
  const events = state.items ?? [];
  // The filter fields are uncontrolled (defaultValue; the form is new for each
  // set of filters), so a re-render (a page loaded meanwhile) keeps what is typed.
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
      <div class="field inline"><label for="a-actor">${t('audit.col.actor')}</label><input id="a-actor" name="actor" defaultValue=${q.get('actor') ?? ''} /></div>
      <div class="field inline"><label for="a-action">${t('audit.f.action')}</label><input id="a-action" name="action" defaultValue=${q.get('action') ?? ''} placeholder="contract." /></div>
      <div class="field inline"><label for="a-rtype">${t('audit.f.rtype')}</label><input id="a-rtype" name="resource_type" defaultValue=${q.get('resource_type') ?? ''} /></div>
      <div class="field inline"><label for="a-rid">${t('audit.f.rid')}</label><input id="a-rid" name="resource_id" defaultValue=${q.get('resource_id') ?? ''} /></div>
      <div class="field inline"><label for="a-outcome">${t('audit.col.outcome')}</label>
        <select id="a-outcome" name="outcome">
          <option value="" selected=${!q.get('outcome')}>${t('status.all')}</option>
          ${['success', 'denied', 'error'].map((o) => html`<option value=${o} selected=${q.get('outcome') === o}>${t('audit.outcome.' + o)}</option>`)}
        </select></div>
      <div class="field inline"><label for="a-since">${t('audit.f.since', { tz })}</label><input id="a-since" name="since" type="datetime-local" defaultValue=${toLocal(q.get('since'))} /></div>
      <div class="field inline"><label for="a-until">${t('audit.f.until', { tz })}</label><input id="a-until" name="until" type="datetime-local" defaultValue=${toLocal(q.get('until'))} /></div>
      <button type="submit">${t('list.apply')}</button>
      <a class="button" href="#/audit">${t('audit.f.clear')}</a>
    </form>
    ${state.error && html`<${Failure} error=${state.error} retry=${() => load()} />`}
    ${state.loading && !events.length && html`<${Loading} label=${t('audit.loading')} />`}
    ${!state.loading && !state.error && !events.length && html`<${Empty}><p>${t('audit.empty')}</p></${Empty}>`}
    ${events.length > 0 && html`<${NamedEvents} events=${events} me=${me} />`}
    ${state.next && html`<p><button type="button" onClick=${() => load(state.next)} disabled=${state.loading}>${t('list.more')}</button></p>`}
  </section>`;
}

export function ContractAudit({ id, me }) {
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
    ${events.length > 0 && html`<${NamedEvents} events=${events} me=${me} />`}
    ${state.next && html`<p><button type="button" onClick=${() => load(state.next)} disabled=${state.loading}>${t('list.more')}</button></p>`}
  </section>`;
}
