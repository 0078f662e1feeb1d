// Enclaves (docs/enclaves.md): the list with its filters in the URL
// (#/enclaves?status=&contract_id=) and cursor pages; an enclave's page
// with the actions the API allows (the others disabled with their reason),
// the last attestation check by check — expected against actual, and the
// rule that demands it: the contract's terms.security (docs/contracts.md,
// "Encryption levels") or the enclave's own policy — its configuration,
// and its metrics as an SVG chart with the same numbers in a table beside
// it; and the enclaves panel of a contract's page.
//
// The checks are worked out here from what the JSON API returns (the
// enclave with its verifier report, the contract's terms); dcmsd decides
// in the end, and its report's own verdicts are what the Result column
// shows whenever the report has the check.
import { useEffect, useRef, useState } from 'preact/hooks';
import { api } from './api.js';
import { fmtBytes, fmtSeconds, problemsAt } from './forms.js';
import { fmtDate, fmtNumber, t } from './messages.js';
import { href, navigate } from './router.js';
import { Party, nameOf } from './parties.js';
import { Empty, ErrorSummary, Failure, FieldProblems, Loading, html } from './ui.js';

export const ENCLAVE_STATES = ['initializing', 'running', 'suspended', 'failed', 'terminated', 'lost'];
const PAGE = 25;
const ZERO48 = '0'.repeat(96);
// The verifier's largest document age (docs/enclaves.md, "Attestation").
const DOC_MAX_AGE_S = 300;

// What each encryption level demands of the enclave serving the contract
// (docs/contracts.md, "Encryption levels"; include/dcms/security_level.h).
const LEVELS = {
  standard: { tls: '1.2', signers: false, boot: false, egress: true, maxAge: 86400, dedicated: false },
  high: { tls: '1.3', signers: true, boot: true, egress: true, maxAge: 3600, dedicated: false },
  military: { tls: '1.3', signers: true, boot: true, egress: false, maxAge: 300, dedicated: true },
};

export function EnclaveBadge({ status }) {
  return html`<span class=${'badge badge-enc-' + status}>${t('enc.status.' + status)}</span>`;
}

/** A limit or an age: "5 min", "1 h", "24 h", "42 s", "3 min 20 s". */
function dur(sec) {
  if (sec >= 3600 && sec % 3600 === 0) return t('enc.dur.h', { h: fmtNumber(sec / 3600) });
  if (sec >= 60 && Math.round(sec) % 60 === 0) return t('enc.dur.min', { m: fmtNumber(Math.round(sec) / 60) });
  if (sec >= 3600) return t('enc.dur.h_min', { h: fmtNumber(Math.floor(sec / 3600)), m: fmtNumber(Math.floor((sec % 3600) / 60)) });
  return fmtSeconds(sec);
}

const short = (id) => (id ? id.slice(0, 8) : '—');
const mine = (me, id) => !!id && (id === me.identity.id || id === me.identity.organization_id);

/** The list: filters (state, contract) in the URL, a page at a time (cursor). */
export function EnclaveList({ route }) {
  const status = route.query.get('status') ?? '';
  const contract = route.query.get('contract_id') ?? '';
  const [page, setPage] = useState({ loading: true });
  const [more, setMore] = useState(false);

  const query = (cursor) => {
    const q = new URLSearchParams({ limit: String(PAGE) });
    if (status) q.set('status', status);
    if (contract) q.set('contract_id', contract);
    if (cursor) q.set('cursor', cursor);
    return `/api/v1/enclaves?${q}`;
  };

  async function load() {
    setPage({ loading: true });
    try {
      const r = await api('GET', query());
      setPage({ items: r.body.enclaves, next: r.body.next_cursor });
    } catch (e) {
      setPage({ error: e });
    }
  }
  useEffect(() => {
    load();
  }, [status, contract]);

  async function loadMore() {
    setMore(true);
    try {
      const r = await api('GET', query(page.next));
      setPage({ items: [...page.items, ...r.body.enclaves], next: r.body.next_cursor });
    } catch (e) {
      setPage({ ...page, moreError: e });
    } finally {
      setMore(false);
    }
  }

  function apply(ev) {
    ev.preventDefault();
    const f = new FormData(ev.currentTarget);
    navigate('/enclaves', { status: f.get('status'), contract_id: f.get('contract_id').trim() });
  }

  // A refused filter (422) is shown on its field and in the summary.
  const invalid = page.error?.status === 422 ? page.error : null;
  const cProblems = problemsAt(invalid, 'contract_id');
  const sProblems = problemsAt(invalid, 'status');
  return html`<section>
    <h1 tabindex="-1">${t('enc.title')}</h1>
    <${ErrorSummary} error=${invalid} fieldFor=${(f) => ({ status: 'e-status', contract_id: 'e-contract' })[f] ?? null} refocus=${false} />
    <form class="filters" role="search" onSubmit=${apply}>
      <div class=${sProblems.length ? 'field inline invalid' : 'field inline'}>
        <label for="e-status">${t('enc.filter.status')}</label>
        <select id="e-status" name="status" value=${status}>
          <option value="">${t('enc.filter.any')}</option>
          ${ENCLAVE_STATES.map((s) => html`<option value=${s}>${t('enc.status.' + s)}</option>`)}
        </select>
        <${FieldProblems} id="e-status" problems=${sProblems} />
      </div>
      <div class=${cProblems.length ? 'field inline invalid' : 'field inline'}>
        <label for="e-contract">${t('enc.filter.contract')}</label>
        <input id="e-contract" name="contract_id" value=${contract} size="38" spellcheck="false"
          aria-invalid=${cProblems.length ? 'true' : undefined} aria-describedby=${cProblems.length ? 'e-contract-problems' : undefined} />
        <${FieldProblems} id="e-contract" problems=${cProblems} />
      </div>
      <button type="submit">${t('list.apply')}</button>
      ${(status || contract) && html`<a href="#/enclaves">${t('enc.filter.clear')}</a>`}
    </form>
    ${page.loading && html`<${Loading} label=${t('enc.loading')} />`}
    ${page.error && !invalid && html`<${Failure} error=${page.error} retry=${load} />`}
    ${page.items && page.items.length === 0 &&
    html`<${Empty}><p>${status || contract ? t('enc.empty.filtered') : t('enc.empty')}</p></${Empty}>`}
    ${page.items?.length > 0 &&
    html`<${EnclaveTable} items=${page.items} caption=${t('enc.count', { count: fmtNumber(page.items.length) })} />
      ${page.next && html`<p><button type="button" onClick=${loadMore} disabled=${more}>${t('list.more')}</button></p>`}
      ${page.moreError && html`<${Failure} error=${page.moreError} retry=${loadMore} />`}`}
  </section>`;
}

function EnclaveTable({ items, caption, contractColumn = true }) {
  return html`<table class="enclaves stack">
    <caption class="visually-hidden">${caption}</caption>
    <thead><tr>
      <th scope="col">${t('enc.col.name')}</th><th scope="col">${t('enc.col.status')}</th>
      ${contractColumn && html`<th scope="col">${t('enc.col.contract')}</th>`}
      <th scope="col">${t('enc.col.attestation')}</th><th scope="col">${t('enc.col.created')}</th>
    </tr></thead>
    <tbody>
      ${items.map(
        (e) => html`<tr key=${e.id}>
          <td><a href=${'#/enclaves/' + e.id}>${e.name}</a></td>
          <td><${EnclaveBadge} status=${e.status} /></td>
          ${contractColumn && html`<td>${e.contract_id ? html`<a href=${'#/contracts/' + e.contract_id}><code>${short(e.contract_id)}</code></a>` : t('enc.unbound')}</td>`}
          <td>${!e.attestation ? '—' : e.attestation.verified ? html`<span class="ok">${t('enc.verified')}</span> ${fmtDate(e.attested_at)}` : html`<span class="bad">${t('enc.not_verified')}</span>`}</td>
          <td>${fmtDate(e.created_at)}</td>
        </tr>`,
      )}
    </tbody>
  </table>`;
}

/** On a contract's page: the enclaves serving it. */
export function EnclavesPanel({ contract }) {
  const [st, setSt] = useState({ loading: true });
  async function load() {
    setSt({ loading: true });
    try {
      const r = await api('GET', `/api/v1/enclaves?contract_id=${encodeURIComponent(contract.id)}&limit=50`);
      setSt({ items: r.body.enclaves, more: !!r.body.next_cursor });
    } catch (e) {
      setSt({ error: e });
    }
  }
  useEffect(() => {
    load();
  }, [contract.id]);
  return html`<section aria-labelledby="enclaves-h">
    <h2 id="enclaves-h">${t('enc.panel')}</h2>
    ${st.loading && html`<${Loading} label=${t('enc.loading')} />`}
    ${st.error && html`<${Failure} error=${st.error} retry=${load} />`}
    ${st.items && !st.items.length && html`<${Empty}><p>${t('enc.panel.empty')}</p></${Empty}>`}
    ${st.items?.length > 0 && html`<${EnclaveTable} items=${st.items} caption=${t('enc.panel')} contractColumn=${false} />`}
    ${st.more && html`<p><a href=${href('/enclaves', { contract_id: contract.id })}>${t('enc.panel.all')}</a></p>`}
  </section>`;
}

/** Whether the caller may take each action now and, when not, why (docs/enclaves.md, "Lifecycle"). */
export function enclaveActions(enc, contract, me) {
  const roles = me.token.roles;
  const owner = roles.includes('admin') || (mine(me, enc.provider_id) && (roles.includes('provider') || roles.includes('operator')));
  const status = t('enc.status.' + enc.status).toLowerCase();
  const out = {};
  const set = (name, why) => (out[name] = { enabled: !why, why: why || null });
  const notOwner = owner ? null : t('enc.why.owner');
  const final = enc.status === 'terminated' ? t('enc.why.final') : null;
  set('attest', notOwner || final || (enc.status !== 'running' && t('enc.why.only_running', { action: t('enc.action.attest').toLowerCase(), status })));
  set('suspend', notOwner || final || (enc.status !== 'running' && t('enc.why.only_running', { action: t('enc.action.suspend').toLowerCase(), status })) || (enc.backend === 'nitro' && t('enc.why.nitro')));
  set('resume', notOwner || final || (enc.status !== 'suspended' && t('enc.why.only_suspended', { status })) || (contract && contract.status !== 'active' && t('enc.why.contract', { status: t('status.' + contract.status).toLowerCase() })));
  set('terminate', notOwner || final);
  return out;
}

const pcrsZero = (pcrs) => ['0', '1', '2'].every((i) => !pcrs?.[i] || /^0+$/.test(pcrs[i]));
const yn = (b) => t(b ? 'common.yes' : 'common.no');

/**
 * The checks of the last attestation and of the contract's level, one row
 * each: {id, label, expected, actual, ok (true, false, or null when not
 * checked), rule: {by: 'contract' | 'enclave' | 'dcms', text}, reason}.
 */
export function attestationChecks(enc, contract, now = Date.now()) {
  const att = enc.attestation;
  const report = att?.report;
  const doc = report?.document;
  const chk = Object.fromEntries((report?.checks ?? []).map((c) => [c.name, c]));
  const sec = enc.configuration.security_policy;
  const net = enc.configuration.network_policy;
  const terms = contract?.terms?.security;
  const levelName = terms?.encryption_level;
  const level = LEVELS[levelName];
  const ruleC = (key, p = {}) => ({ by: 'contract', text: t('enc.rule.' + key, { level: levelName, ...p }) });
  const ruleE = (key, p = {}) => ({ by: 'enclave', text: t('enc.rule.' + key, p) });
  const ruleD = (key) => ({ by: 'dcms', text: t('enc.rule.' + key) });
  const verdict = (...names) => {
    const cs = names.map((n) => chk[n]).filter(Boolean);
    if (!cs.length) return { ok: null, reason: null };
    const bad = cs.find((c) => !c.ok);
    return { ok: !bad, reason: (bad ?? cs[cs.length - 1]).reason };
  };
  const rows = [];
  const row = (id, expected, actual, v, rule) => rows.push({ id, label: t('enc.check.' + id), expected, actual, ok: v.ok, reason: v.reason ?? null, rule });

  // The document itself: its signature and the chain to the verifier's root.
  const sig = verdict('size', 'cbor', 'cose_sign1', 'protected_header', 'payload', 'certificates', 'root_pinned', 'chain_order', 'leaf', 'chain', 'signature', 'chain_at_document_time', 'chain_at_now');
  row('signature', t('enc.exp.signature', { root: att?.verifier ?? enc.backend }), sig.ok === null ? '—' : sig.ok ? t('enc.act.signature_ok') : t('enc.act.signature_bad'), sig,
    level ? ruleC('keyrelease') : ruleD('evidence'));

  // PCR0: the image measured when its name was first used.
  const pcr0 = doc?.pcrs?.['0'] ?? null;
  const pv = chk.pcrs ? verdict('pcrs') : { ok: pcr0 === null ? null : pcr0 === enc.measurement.expected_pcr0, reason: null };
  row('pcr0', enc.measurement.expected_pcr0, pcr0 ?? '—', pv, level ? ruleC('pcr0') : ruleE('pcr0.enclave'));

  // The nonce: the one dcmsd sent for this attestation.
  row('nonce', att?.nonce ?? '—', doc?.nonce ?? '—', chk.nonce ? verdict('nonce') : { ok: null }, ruleD('nonce'));

  // The document's age when it was verified.
  const docAge = doc && att ? Math.max(0, (Date.parse(att.verified_at) - doc.timestamp) / 1000) : null;
  row('age', t('enc.exp.age', { max: dur(DOC_MAX_AGE_S) }), docAge === null ? '—' : t('enc.act.age', { age: dur(Math.round(docAge)), at: fmtDate(new Date(doc.timestamp).toISOString()) }),
    chk.freshness ? verdict('freshness') : { ok: null }, ruleD('age'));

  // Debug mode: all-zero PCR0-2. No level lets a debug enclave serve.
  const debug = doc ? pcrsZero(doc.pcrs) : null;
  row('debug', sec.debug_mode && !level ? t('enc.exp.debug_allowed') : t('enc.exp.debug_off'), debug === null ? '—' : debug ? t('enc.act.debug_on') : t('enc.act.debug_off'),
    chk.debug ? (level && debug ? { ok: false, reason: t('enc.rule.debug', { level: levelName }) } : verdict('debug')) : { ok: null },
    level ? ruleC('debug') : ruleE('debug.enclave', { value: String(sec.debug_mode) }));

  // The image signer (PCR8), when the level pins signers or the policy lists some.
  const pcr8 = doc?.pcrs?.['8'] ?? null;
  const signers = sec.allowed_signers;
  let sv;
  if (!doc) sv = { ok: null };
  else if (signers.length) sv = { ok: signers.includes(pcr8), reason: att.verified || signers.includes(pcr8) ? null : att.reason };
  else sv = level?.signers ? { ok: false, reason: t('enc.rule.signers', { level: levelName }) } : { ok: true, reason: null };
  row('signer', signers.length ? signers.join('\n') : level?.signers ? t('enc.exp.signers_required') : t('enc.exp.any_signer'),
    pcr8 === null ? '—' : pcr8 === ZERO48 ? t('enc.act.unsigned') : pcr8, sv,
    level?.signers ? ruleC('signers') : level ? ruleC('signers_free') : ruleE('signers.enclave'));

  if (!level) return rows;
  // What the level demands of the enclave's configuration and evidence (the compatibility rules).
  const age = enc.attested_at ? Math.max(0, (now - Date.parse(enc.attested_at)) / 1000) : null;
  row('freshness', t('enc.exp.fresh', { max: dur(level.maxAge) }), age === null ? t('enc.act.never') : t('enc.act.attested_ago', { age: dur(Math.round(age)) }),
    { ok: age !== null && age <= level.maxAge }, ruleC('freshness', { max: dur(level.maxAge) }));
  row('encryption', yn(true), yn(net.encryption_required), { ok: net.encryption_required }, ruleC('encryption'));
  row('tls', t('enc.exp.tls', { v: level.tls }), net.min_tls_version, { ok: net.min_tls_version >= level.tls }, ruleC('tls', { v: level.tls }));
  if (level.boot) row('boot', t('enc.exp.boot'), t('enc.act.boot', { secure: yn(sec.secure_boot), measured: yn(sec.measured_boot) }), { ok: sec.secure_boot && sec.measured_boot }, ruleC('boot'));
  if (!level.egress) row('egress', '0', String(net.egress.length), { ok: net.egress.length === 0 }, ruleC('egress'));
  if (terms.network_isolation) {
    const n = net.ingress.length + net.egress.length;
    row('isolation', '0', String(n), { ok: n === 0 }, { by: 'contract', text: t('enc.rule.isolation') });
  }
  if (level.dedicated) row('dedicated', contract.id, enc.contract_id ?? '—', { ok: enc.contract_id === contract.id }, ruleC('dedicated'));
  return rows;
}

function Result({ ok }) {
  if (ok === null || ok === undefined) return html`<span class="muted">${t('enc.result.na')}</span>`;
  return ok ? html`<span class="ok">✓ ${t('enc.result.ok')}</span>` : html`<span class="bad">✗ ${t('enc.result.bad')}</span>`;
}

const long = (v) => (typeof v === 'string' && /^[0-9a-f\n]{32,}$/.test(v) ? html`<code class="hash">${v}</code>` : v);

function Checks({ enc, contract }) {
  const rows = attestationChecks(enc, contract);
  return html`<table class="checks-table stack" data-testid="checks">
    <caption>${t('enc.checks.caption')}</caption>
    <thead><tr>
      <th scope="col">${t('enc.col.check')}</th><th scope="col">${t('enc.col.expected')}</th><th scope="col">${t('enc.col.actual')}</th>
      <th scope="col">${t('enc.col.result')}</th><th scope="col">${t('enc.col.rule')}</th>
    </tr></thead>
    <tbody>
      ${rows.map(
        (r) => html`<tr data-check=${r.id} class=${r.ok === false ? 'failed' : ''}>
          <th scope="row">${r.label}</th>
          <td>${long(r.expected)}</td>
          <td>${long(r.actual)}</td>
          <td><${Result} ok=${r.ok} />${r.reason && html`<br /><span class="why">${r.reason}</span>`}</td>
          <td><strong>${t('enc.by.' + r.rule.by)}</strong>${' '}${r.rule.text}</td>
        </tr>`,
      )}
    </tbody>
  </table>`;
}

/** A line chart of one series (inline SVG, classes only: the CSP forbids inline styles). */
export function LineChart({ points, label, unit }) {
  if (points.length < 2) return html`<p class="why">${t('enc.metrics.few')}</p>`;
  const W = 320;
  const H = 140;
  const L = 44;
  const ys = points.map((p) => p.y);
  let lo = Math.min(...ys);
  let hi = Math.max(...ys);
  if (hi === lo) {
    hi += 1;
    lo = Math.max(0, lo - 1);
  }
  const x0 = points[0].x;
  const x1 = points[points.length - 1].x;
  const sx = (x) => L + (x1 === x0 ? 0 : ((x - x0) / (x1 - x0)) * (W - L - 6));
  const sy = (y) => H - 16 - ((y - lo) / (hi - lo)) * (H - 36);
  const line = points.map((p) => `${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join(' ');
  const f = (v) => new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 }).format(v);
  return html`<svg viewBox=${`0 0 ${W} ${H}`} role="img" aria-label=${label}>
    <line x1=${L} y1=${sy(hi)} x2=${W - 6} y2=${sy(hi)} class="grid" />
    <line x1=${L} y1=${sy(lo)} x2=${W - 6} y2=${sy(lo)} class="grid" />
    <text x=${L - 4} y=${sy(hi) + 4} text-anchor="end">${f(hi)}</text>
    <text x=${L - 4} y=${sy(lo) + 4} text-anchor="end">${f(lo)}</text>
    <text x=${L} y=${H - 2}>${new Date(x0).toLocaleTimeString()}</text>
    <text x=${W - 6} y=${H - 2} text-anchor="end">${new Date(x1).toLocaleTimeString()}</text>
    <text x=${6} y=${12}>${unit}</text>
    <polyline points=${line} class="series-a" fill="none" />
  </svg>`;
}

function Metrics({ id, status }) {
  const [st, setSt] = useState({ loading: true });
  async function load() {
    setSt((s) => ({ ...s, loading: true, error: null }));
    try {
      setSt({ m: (await api('GET', `/api/v1/enclaves/${encodeURIComponent(id)}/metrics`)).body });
    } catch (e) {
      setSt({ error: e });
    }
  }
  useEffect(() => {
    load();
  }, [id, status]);
  const hist = st.m?.history ?? [];
  const pts = hist.map((s) => ({ x: Date.parse(s.at), y: s.rss_bytes / 1048576 }));
  return html`<section aria-labelledby="metrics-h">
    <div class="heading">
      <h2 id="metrics-h">${t('enc.metrics')}</h2>
      <button type="button" onClick=${load} disabled=${st.loading}>${t('enc.metrics.refresh')}</button>
    </div>
    ${st.loading && !st.m && html`<${Loading} label=${t('enc.metrics.loading')} />`}
    ${st.error && html`<${Failure} error=${st.error} retry=${load} />`}
    ${st.m && !hist.length &&
    html`<${Empty}><p>${['running', 'suspended'].includes(status) ? t('enc.metrics.empty', { s: fmtNumber(st.m.interval_ms / 1000) }) : t('enc.metrics.none')}</p></${Empty}>`}
    ${hist.length > 0 &&
    html`<p class="why">${t('enc.metrics.facts', { n: fmtNumber(hist.length), max: fmtNumber(st.m.history_max), s: fmtNumber(st.m.interval_ms / 1000) })}</p>
      ${st.m.latest?.notice && html`<p class="note" role="status">${st.m.latest.notice}</p>`}
      <div class="chart-pair">
        <figure class="chart" data-testid="metrics-chart">
          <${LineChart} points=${pts} label=${t('enc.metrics.chart', { n: fmtNumber(hist.length) })} unit="MiB" />
          <figcaption><span class="key-a">${t('enc.metrics.rss')}</span></figcaption>
        </figure>
        <div class="scroll" tabindex="0" role="region" aria-labelledby="metrics-caption">
          <table class="metrics" data-testid="metrics-table">
            <caption id="metrics-caption">${t('enc.metrics.table')}</caption>
            <thead><tr>
              <th scope="col">${t('enc.m.at')}</th><th scope="col">${t('enc.m.rss')}</th><th scope="col">${t('enc.m.peak')}</th>
              <th scope="col">${t('enc.m.cpu')}</th><th scope="col">${t('enc.m.channel')}</th><th scope="col">${t('enc.m.procs')}</th>
            </tr></thead>
            <tbody>
              ${hist
                .slice()
                .reverse()
                .map(
                  (s) => html`<tr>
                    <th scope="row">${new Date(s.at).toLocaleTimeString()}</th>
                    <td>${fmtBytes(s.rss_bytes)}</td><td>${fmtBytes(s.peak_rss_bytes)}</td>
                    <td>${new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 }).format(s.cpu_time_ms / 1000)} s</td>
                    <td>${fmtBytes(s.channel_bytes_in)} / ${fmtBytes(s.channel_bytes_out)}</td>
                    <td>${fmtNumber(s.nprocs)}</td>
                  </tr>`,
                )}
            </tbody>
          </table>
        </div>
      </div>`}
  </section>`;
}

/** dcmsd's own verdict on the enclave and the contract, as a cross-check of the rows above. */
function Compatibility({ enc, contract }) {
  const [st, setSt] = useState({ loading: true });
  async function load() {
    setSt({ loading: true });
    try {
      setSt({ r: (await api('GET', `/api/v1/enclaves/${enc.id}/compatibility?contract_id=${encodeURIComponent(contract.id)}`)).body });
    } catch (e) {
      setSt({ error: e });
    }
  }
  useEffect(() => {
    load();
  }, [enc.id, enc.version, contract.id]);
  if (st.loading) return html`<${Loading} />`;
  if (st.error) return html`<${Failure} error=${st.error} retry=${load} />`;
  const bad = st.r.requirements.filter((q) => !q.ok);
  return html`<p class=${st.r.compatible ? 'ok' : 'bad'} data-testid="compatibility">
    ${st.r.compatible ? t('enc.compat.ok') : t('enc.compat.bad', { names: bad.map((q) => q.name).join(', ') })}
  </p>`;
}

const ORDER = ['attest', 'suspend', 'resume', 'terminate'];

export function EnclaveDetail({ id, me }) {
  const [st, setSt] = useState({ loading: true });
  const [error, setError] = useState(null);
  const [done, setDone] = useState(null);
  const [busy, setBusy] = useState(false);
  const [ask, setAsk] = useState(null);
  const dialog = useRef(null);

  async function load() {
    setSt((s) => ({ ...s, loading: true, error: null }));
    try {
      const enc = (await api('GET', `/api/v1/enclaves/${encodeURIComponent(id)}`)).body;
      let contract = null;
      let contractError = null;
      if (enc.contract_id) {
        try {
          contract = (await api('GET', `/api/v1/contracts/${encodeURIComponent(enc.contract_id)}`)).body;
        } catch (e) {
          contractError = e;
        }
      }
      setSt({ enc, contract, contractError });
    } catch (e) {
      setSt({ error: e.status === 404 ? Object.assign(e, { message: t('enc.notfound') }) : e });
    }
  }
  useEffect(() => {
    load();
  }, [id]);
  useEffect(() => {
    if (ask && dialog.current && !dialog.current.open) dialog.current.showModal();
  }, [ask]);

  if (st.loading && !st.enc) return html`<${Loading} label=${t('enc.loading.one')} />`;
  if (st.error) return html`<section><h1 tabindex="-1">${t('enc.title')}</h1><${Failure} error=${st.error} retry=${load} /><p><a href="#/enclaves">${t('enc.back')}</a></p></section>`;
  const { enc, contract } = st;
  const acts = enclaveActions(enc, contract, me);
  const att = enc.attestation;
  const cfg = enc.configuration;

  async function run(name, reason) {
    setBusy(true);
    setError(null);
    setDone(null);
    try {
      const r = await api('POST', `/api/v1/enclaves/${enc.id}/${name}`, { json: reason ? { reason } : {} });
      setSt({ ...st, enc: r.body });
      setDone(t('detail.done', { action: t('enc.action.' + name) }));
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  }
  function click(name) {
    if (!acts[name].enabled || busy) return;
    if (name === 'terminate' || name === 'suspend') return setAsk(name);
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

  return html`<section>
    <p><a href="#/enclaves">${t('enc.back')}</a></p>
    <div class="heading">
      <h1 tabindex="-1">${enc.name}</h1>
      <${EnclaveBadge} status=${enc.status} />
    </div>
    ${enc.status_reason && html`<p><strong>${t('detail.reason')}:</strong> ${enc.status_reason}</p>`}

    <h2>${t('detail.actions')}</h2>
    <div role="status" aria-live="polite" class="live">${done}</div>
    <${ErrorSummary} error=${error} />
    <ul class="actions">
      ${ORDER.map((name) => {
        const a = acts[name];
        return html`<li>
          <button type="button" class=${name === 'terminate' ? 'danger' : name === 'attest' ? 'primary' : ''}
            aria-disabled=${a.enabled && !busy ? undefined : 'true'} aria-describedby=${a.why ? 'why-' + name : undefined}
            onClick=${() => click(name)}>${t('enc.action.' + name)}</button>
          ${a.why && html`<span class="why" id=${'why-' + name}>${a.why}</span>`}
        </li>`;
      })}
    </ul>

    <h2>${t('detail.facts')}</h2>
    <dl class="facts">
      <dt>${t('detail.provider')}</dt><dd><${Party} id=${enc.provider_id} name=${nameOf(contract, enc.provider_id)} full=${true} />${mine(me, enc.provider_id) && html` <strong>${t('detail.you')}</strong>`}</dd>
      <dt>${t('enc.col.contract')}</dt>
      <dd>${enc.contract_id
        ? html`<a href=${'#/contracts/' + enc.contract_id}>${contract ? contract.title : html`<code>${enc.contract_id}</code>`}</a>
            ${contract && html` (${t('status.' + contract.status)}, ${t('enc.level', { level: contract.terms.security.encryption_level })})`}
            ${st.contractError && html`<span class="why"> ${st.contractError.message}</span>`}`
        : t('enc.unbound')}</dd>
      <dt>${t('enc.backend')}</dt><dd>${enc.backend}${enc.runtime?.pid ? ` (pid ${enc.runtime.pid})` : ''}</dd>
      <dt>${t('enc.image')}</dt><dd><code>${cfg.image}</code></dd>
      <dt>${t('enc.image_sha384')}</dt><dd><code class="hash">${enc.measurement.image_sha384 ?? '—'}</code></dd>
      <dt>${t('enc.resources')}</dt><dd>${t('enc.resources.v', { cpu: cfg.cpu_cores, mem: fmtNumber(cfg.memory_mb), disk: cfg.storage_gb })}</dd>
      <dt>${t('detail.created')}</dt><dd>${fmtDate(enc.created_at)}</dd>
    </dl>

    <h2>${t('enc.attestation')}</h2>
    ${!att
      ? html`<${Empty}><p>${t('enc.attestation.none')}</p></${Empty}>`
      : html`<div class=${att.verified ? 'verdict ok' : 'verdict bad'} data-testid="attestation-verdict">
            <p><strong>${att.verified ? t('enc.att.verified', { at: fmtDate(att.verified_at), root: att.verifier }) : t('enc.att.failed', { at: fmtDate(att.verified_at) })}</strong></p>
            ${att.reason && html`<p>${att.reason}</p>`}
          </div>
          <p class="why">${contract ? t('enc.checks.intro.contract', { level: contract.terms.security.encryption_level }) : t('enc.checks.intro')}</p>
          <${Checks} enc=${enc} contract=${contract} />
          ${contract && html`<${Compatibility} enc=${enc} contract=${contract} />`}
          ${att.report &&
          html`<details class="import">
            <summary>${t('enc.report.all', { n: att.report.checks.length })}</summary>
            <ul class="report">
              ${att.report.checks.map((c) => html`<li><code>${c.name}</code> <span class=${c.ok ? 'ok' : 'bad'}>${c.ok ? '✓' : '✗'}</span> ${c.reason}</li>`)}
            </ul>
          </details>`}`}

    <h2>${t('enc.config')}</h2>
    <dl class="facts">
      <dt>${t('enc.cfg.encryption')}</dt><dd>${yn(cfg.network_policy.encryption_required)}</dd>
      <dt>${t('enc.cfg.tls')}</dt><dd>${cfg.network_policy.min_tls_version}</dd>
      <dt>${t('enc.cfg.rules')}</dt><dd>${t('enc.cfg.rules.v', { i: cfg.network_policy.ingress.length, e: cfg.network_policy.egress.length })}</dd>
      <dt>${t('enc.cfg.boot')}</dt><dd>${t('enc.act.boot', { secure: yn(cfg.security_policy.secure_boot), measured: yn(cfg.security_policy.measured_boot) })}</dd>
      <dt>${t('enc.cfg.debug')}</dt><dd>${yn(cfg.security_policy.debug_mode)}</dd>
      <dt>${t('enc.cfg.signers')}</dt><dd>${cfg.security_policy.allowed_signers.length ? cfg.security_policy.allowed_signers.map((s) => html`<code class="hash">${s}</code> `) : t('enc.exp.any_signer')}</dd>
    </dl>

    <${Metrics} id=${enc.id} status=${enc.status} />

    <dialog ref=${dialog} aria-labelledby="enc-dlg-title" onClose=${() => setAsk(null)}>
      ${ask && html`<form method="dialog" onSubmit=${confirm}>
        <h2 id="enc-dlg-title">${t('action.confirm', { action: t('enc.action.' + ask) })}</h2>
        <p>${t('enc.confirm.' + ask)}</p>
        <div class="field">
          <label for="f-enc-reason">${t('action.reason.optional')}</label>
          <textarea id="f-enc-reason" name="reason" rows="3" maxlength="1000"></textarea>
        </div>
        <div class="buttons">
          <button type="submit" class="danger">${t('enc.action.' + ask)}</button>
          <button type="button" onClick=${() => dialog.current.close()}>${t('action.cancel')}</button>
        </div>
      </form>`}
    </dialog>
  </section>`;
}
