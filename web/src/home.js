// The home page (#/home), where sign-in lands, by role: a provider or a
// consumer sees the contracts awaiting their signature, their datasets in
// use under active contracts (providers) and the trainings under their
// active contracts; an auditor or an admin sees what needs attention
// (suspended contracts, failed or lost enclaves and refused requests as
// anomalies, failed trainings from the audit log) and the audit chain's
// verdict. Each panel loads on its own, with its loading, empty and error
// states.
import { useEffect, useState } from 'preact/hooks';
import { api } from './api.js';
import { EnclaveBadge } from './enclaves.js';
import { actions, sidesOf } from './lifecycle.js';
import { fmtDate, fmtNumber, t, tn } from './messages.js';
import { href } from './router.js';
import { Counterparty } from './parties.js';
import { Empty, Failure, Loading, StatusBadge, html } from './ui.js';

const get = async (p) => (await api('GET', p)).body;

function useLoad(fn, deps) {
  const [st, setSt] = useState({ loading: true });
  async function load() {
    setSt({ loading: true });
    try {
      setSt({ data: await fn() });
    } catch (e) {
      setSt({ error: e });
    }
  }
  useEffect(() => {
    load();
  }, deps);
  return [st, load];
}

function Panel({ id, title, st, load, empty, more, children }) {
  const has = st.data && (!Array.isArray(st.data) || st.data.length > 0);
  return html`<section class="panel" aria-labelledby=${id + '-h'} data-testid=${id}>
    <h2 id=${id + '-h'}>${title}</h2>
    ${st.loading && html`<${Loading} />`}
    ${st.error && html`<${Failure} error=${st.error} retry=${load} />`}
    ${st.data && !has && html`<${Empty}><p>${empty}</p></${Empty}>`}
    ${has && children(st.data)}
    ${more && html`<p><a href=${more.href}>${more.label}</a></p>`}
  </section>`;
}

const ContractRows = ({ items, me }) => html`<ul class="plain">
  ${items.map((c) => {
    const sides = sidesOf(c, me).parties;
    return html`<li><a href=${'#/contracts/' + c.id}>${c.title}</a> <${StatusBadge} status=${c.status} />
    <span class="why">${sides.map((s) => t('detail.' + s)).join(', ')}${sides.length ? ' · ' : ''}${sides.length === 1 ? t('party.with') + ' ' : ''}<${Counterparty} c=${c} sides=${sides} /> · ${fmtDate(c.updated_at)}</span></li>`;
  })}
</ul>`;

function AwaitingSignature({ me }) {
  const [st, load] = useLoad(async () => {
    const r = await get('/api/v1/contracts?status=pending_signature&limit=200');
    return r.contracts.filter((c) => actions(c, me).sign.enabled);
  }, []);
  return html`<${Panel} id="home-sign" title=${t('home.sign')} st=${st} load=${load} empty=${t('home.sign.empty')}>
    ${(items) => html`<${ContractRows} items=${items} me=${me} />`}
  </${Panel}>`;
}

function DatasetsInUse() {
  const [st, load] = useLoad(async () => {
    const [ds, cs] = await Promise.all([get('/api/v1/datasets?limit=200'), get('/api/v1/contracts?status=active&role=provider&limit=200')]);
    return ds.datasets
      .map((d) => ({ d, under: cs.contracts.filter((c) => (c.terms.data_access?.datasets ?? []).includes(d.id)) }))
      .filter((x) => x.under.length);
  }, []);
  return html`<${Panel} id="home-datasets" title=${t('home.datasets')} st=${st} load=${load} empty=${t('home.datasets.empty')}>
    ${(items) => html`<ul class="plain">
      ${items.map(({ d, under }) => html`<li><a href=${'#/datasets/' + d.id}>${d.name}</a>
        ${' '}<span class="why">${t('home.datasets.under')}</span>${' '}${under.map((c, i) => html`${i ? ', ' : ''}<a href=${'#/contracts/' + c.id}>${c.title}</a>`)}</li>`)}
    </ul>`}
  </${Panel}>`;
}

function MyTrainings() {
  const [st, load] = useLoad(async () => {
    const cs = (await get('/api/v1/contracts?status=active&limit=20')).contracts;
    const lists = await Promise.all(cs.map(async (c) => (await get(`/api/v1/contracts/${c.id}/trainings?limit=10`)).trainings.map((j) => ({ j, c }))));
    return lists.flat().sort((a, b) => (a.j.created_at < b.j.created_at ? 1 : -1)).slice(0, 10);
  }, []);
  return html`<${Panel} id="home-trainings" title=${t('home.trainings')} st=${st} load=${load} empty=${t('home.trainings.empty')}>
    ${(items) => html`<ul class="plain">
      ${items.map(({ j, c }) => html`<li>
        <a href=${'#/trainings/' + j.id} aria-label=${t('home.trainings.job', { id: j.id.slice(0, 8) })}><code>${j.id.slice(0, 8)}</code></a>
        ${' '}<span class=${'badge badge-job-' + j.state}>${t('job.state.' + j.state)}</span>
        ${' '}${j.model} · <a href=${'#/contracts/' + c.id}>${c.title}</a>
        ${' '}<span class="why">${fmtDate(j.created_at)}</span>
      </li>`)}
    </ul>`}
  </${Panel}>`;
}

function Suspended({ me }) {
  const [st, load] = useLoad(async () => (await get('/api/v1/contracts?status=suspended&limit=50')).contracts, []);
  return html`<${Panel} id="home-suspended" title=${t('home.suspended')} st=${st} load=${load} empty=${t('home.suspended.empty')}
    more=${{ href: href('/contracts', { status: 'suspended' }), label: t('home.suspended.all') }}>
    ${(items) => html`<${ContractRows} items=${items} me=${me} />`}
  </${Panel}>`;
}

const EventRows = ({ items, link }) => html`<ul class="plain">
  ${items.map((e) => html`<li>${link(e)} <span class="why">${fmtDate(e.time)} · ${t('home.actor', { actor: e.actor })}</span></li>`)}
</ul>`;

function Anomalies() {
  const [st, load] = useLoad(async () => {
    const [failed, lost, denied] = await Promise.all([
      get('/api/v1/enclaves?status=failed&limit=10'),
      get('/api/v1/enclaves?status=lost&limit=10'),
      get('/api/v1/audit/events?outcome=denied&limit=10'),
    ]);
    const enclaves = [...failed.enclaves, ...lost.enclaves];
    return enclaves.length || denied.events.length ? { enclaves, denied: denied.events } : [];
  }, []);
  return html`<${Panel} id="home-anomalies" title=${t('home.anomalies')} st=${st} load=${load} empty=${t('home.anomalies.empty')}>
    ${(d) => html`
      <h3>${t('home.anomalies.enclaves')}</h3>
      ${d.enclaves.length
        ? html`<ul class="plain">${d.enclaves.map((e) => html`<li><a href=${'#/enclaves/' + e.id}>${e.name}</a> <${EnclaveBadge} status=${e.status} /> <span class="why">${e.status_reason ?? ''}</span></li>`)}</ul>`
        : html`<p class="why">${t('home.anomalies.enclaves.none')}</p>`}
      <h3>${t('home.anomalies.denied')}</h3>
      ${d.denied.length
        ? html`<${EventRows} items=${d.denied} link=${(e) => html`<code>${e.action}</code>`} />
          <p><a href=${href('/audit', { outcome: 'denied' })}>${t('home.audit.more')}</a></p>`
        : html`<p class="why">${t('home.anomalies.denied.none')}</p>`}`}
  </${Panel}>`;
}

function FailedTrainings() {
  const [st, load] = useLoad(async () => (await get('/api/v1/audit/events?action=training.failed&limit=10')).events, []);
  return html`<${Panel} id="home-failed" title=${t('home.failed')} st=${st} load=${load} empty=${t('home.failed.empty')}>
    ${(items) => html`<${EventRows} items=${items} link=${(e) => html`<a href=${'#/trainings/' + e.resource_id}><code>${(e.resource_id ?? '').slice(0, 8)}</code></a> ${e.details?.reason_code ?? ''}`} />`}
  </${Panel}>`;
}

function Verdict() {
  const [st, load] = useLoad(() => get('/api/v1/audit/verify'), []);
  return html`<${Panel} id="home-verdict" title=${t('home.verdict')} st=${st} load=${load} empty="">
    ${(r) => html`<div class=${r.ok ? 'verdict ok' : 'verdict bad'} role="status" data-testid="verdict">
      <p><strong>${r.ok ? t('audit.verified', { n: fmtNumber(r.last_seq) }) : t('audit.broken', { n: r.first_bad_seq ?? '—' })}</strong></p>
      <p>${tn('audit.verify.facts', r.checkpoints_checked, { events: fmtNumber(r.events_checked), key: r.key_id })}</p>
      ${!r.ok && html`<p>${r.reason}</p>`}
      <p><a href="#/audit">${t('home.audit.more')}</a></p>
    </div>`}
  </${Panel}>`;
}

export function Home({ me }) {
  const roles = me.token.roles;
  const party = roles.includes('provider') || roles.includes('consumer');
  const oversight = roles.includes('auditor') || roles.includes('admin');
  return html`<section>
    <h1 tabindex="-1">${t('home.title')}</h1>
    <p>${t('home.hello', { name: me.identity.name, roles: roles.join(', ') || '—' })}</p>
    ${party &&
    html`<div class="panels">
      <${AwaitingSignature} me=${me} />
      ${roles.includes('provider') && html`<${DatasetsInUse} />`}
      <${MyTrainings} />
    </div>`}
    ${oversight &&
    html`<h2 class="group">${t('home.compliance')}</h2>
      <div class="panels">
        <${Verdict} />
        <${Suspended} me=${me} />
        <${Anomalies} />
        <${FailedTrainings} />
      </div>`}
    ${!party && !oversight && html`<p><a href="#/contracts">${t('nav.contracts')}</a></p>`}
  </section>`;
}
