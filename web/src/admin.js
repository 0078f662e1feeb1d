// The admin area (#/admin, administrators; docs/iam.md, docs/keys.md):
// identities (filters in the URL, create with roles and an organization,
// verify, suspend, reactivate), organizations and their members (add,
// remove), access policies (list, create, delete: /policies), the data-key
// rotation and rewrap (/admin/data-keys*) and the
// rotation of the key that signs access tokens (/admin/keys/rotate). Every
// change asks for a confirmation in a modal dialog; every API problem lands
// on its field. The UI hides the area from other roles, but the API decides:
// a 403 shows the same "not allowed" state.
import { useEffect, useRef, useState } from 'preact/hooks';
import { api } from './api.js';
import { useCursorList } from './cursorlist.js';
import { Field, fieldFor, problemsAt } from './forms.js';
import { fmtDate, fmtNumber, t } from './messages.js';
import { href, navigate } from './router.js';
import { Empty, ErrorSummary, Failure, Loading, fieldId, html } from './ui.js';

// The enums of api/openapi.yaml (Role, OrgRole, IdentityKind, IdentityStatus).
const ROLES = ['admin', 'provider', 'consumer', 'auditor', 'operator', 'org_admin'];
const ORG_ROLES = ['provider', 'consumer', 'org_admin'];
const KINDS = ['user', 'service', 'organization'];
const STATUSES = ['pending_verification', 'active', 'suspended'];
const SECTIONS = ['identities', 'organizations', 'policies', 'keys'];
const CONDITIONS = ['party_of_contract', 'mfa_present', 'self', 'same_organization'];

/** Whether the signed-in identity may open the admin area (the API decides in the end). */
export function isAdmin(me) {
  return (me?.token?.roles ?? []).includes('admin');
}

// A message for the list after a screen that navigated to it (e.g. "created").
let flash = null;

const enc = encodeURIComponent;

/** {loading} | {data} | {error}, with a reload; `deps` reload it. */
function useLoad(fn, deps) {
  const [state, setState] = useState({ loading: true });
  async function load() {
    setState((s) => ({ ...s, loading: true, error: null }));
    try {
      setState({ data: await fn() });
    } catch (e) {
      setState((s) => ({ ...s, loading: false, error: e }));
    }
  }
  useEffect(() => {
    load();
  }, deps);
  return [state, load];
}

/** Every page of a list route (limit 500 a page), as one array. */
async function all(path, member) {
  const out = [];
  let cursor = null;
  do {
    const sep = path.includes('?') ? '&' : '?';
    const r = await api('GET', `${path}${sep}limit=500${cursor ? '&cursor=' + enc(cursor) : ''}`);
    out.push(...r.body[member]);
    cursor = r.body.next_cursor;
  } while (cursor && out.length < 5000);
  return out;
}

function Forbidden() {
  return html`<div class="state error" role="alert" data-testid="admin-forbidden">
    <p><strong>${t('adm.forbidden')}</strong></p>
    <p>${t('adm.forbidden.hint')}</p>
    <p><a href="#/contracts">${t('common.back')}</a></p>
  </div>`;
}

/** A failure, or the "not allowed" state when the API answered 403. */
function AdmFailure({ error, retry }) {
  if (error?.status === 403) return html`<${Forbidden} />`;
  return html`<${Failure} error=${error} retry=${retry} />`;
}

function IdBadge({ status }) {
  return html`<span class=${'badge badge-id-' + status}>${t('adm.status.' + status)}</span>`;
}

/**
 * A confirmation in a modal dialog: a title, what will happen, an optional
 * text field (a note or a reason: its API problems are shown under it) and
 * the action. `ask({title, text, field, action, danger, run})` opens it;
 * run(value) is the API call: the dialog closes when it succeeds and stays
 * open with the problems when it fails.
 */
function useConfirm() {
  const [req, setReq] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const ref = useRef(null);
  useEffect(() => {
    if (req && ref.current && !ref.current.open) ref.current.showModal();
  }, [req]);
  function close() {
    if (ref.current?.open) ref.current.close();
    setReq(null);
    setError(null);
  }
  async function submit(ev) {
    ev.preventDefault();
    const value = req.field ? String(new FormData(ev.currentTarget).get(req.field.name) ?? '').trim() : undefined;
    setBusy(true);
    setError(null);
    try {
      await req.run(value);
      close();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  }
  const f = req?.field;
  const known = f ? [f.name] : [];
  const dialog = html`<dialog ref=${ref} aria-labelledby="adm-dlg-title" onClose=${() => { setReq(null); setError(null); }}>
    ${req &&
    html`<form onSubmit=${submit} novalidate data-testid="confirm">
      <h2 id="adm-dlg-title">${req.title}</h2>
      <${ErrorSummary} error=${error} fieldFor=${fieldFor(known)} refocus=${false} />
      <p>${req.text}</p>
      ${f &&
      html`<${Field} path=${f.name} label=${f.label} error=${error} known=${known} hint=${f.hint}>
        ${({ id, described, invalid }) =>
          f.number
            ? html`<input id=${id} name=${f.name} inputmode="numeric" class="short" aria-describedby=${described} aria-invalid=${invalid ? 'true' : undefined} />`
            : html`<textarea id=${id} name=${f.name} rows="2" maxlength="1000" aria-describedby=${described} aria-invalid=${invalid ? 'true' : undefined}></textarea>`}
      </${Field}>`}
      <div class="buttons">
        <button type="submit" class=${req.danger ? 'danger' : 'primary'} disabled=${busy}>${req.action}</button>
        <button type="button" onClick=${close}>${t('action.cancel')}</button>
      </div>
    </form>`}
  </dialog>`;
  return [setReq, dialog];
}

/** The admin area: a section per tab. */
export function AdminPage({ route, me }) {
  const [, section = 'identities', id] = route.segments;
  let body;
  if (!isAdmin(me)) body = html`<${Forbidden} />`;
  else if (section === 'identities' && id === 'new') body = html`<${IdentityNew} route=${route} />`;
  else if (section === 'identities') body = html`<${Identities} route=${route} me=${me} />`;
  else if (section === 'organizations' && id) body = html`<${Organization} key=${id} id=${id} />`;
  else if (section === 'organizations') body = html`<${Organizations} />`;
  else if (section === 'policies' && id === 'new') body = html`<${PolicyNew} />`;
  else if (section === 'policies') body = html`<${Policies} />`;
  else if (section === 'keys') body = html`<${Keys} />`;
  else body = html`<${Empty}><p>${t('adm.unknown')}</p></${Empty}>`;
  return html`<section class="admin">
    <h1 tabindex="-1">${t('adm.title')}</h1>
    ${isAdmin(me) &&
    html`<nav aria-label=${t('adm.sections')} class="tabs">
      <ul>
        ${SECTIONS.map((s) => html`<li><a href=${'#/admin/' + s} aria-current=${s === section ? 'page' : undefined}>${t('adm.tab.' + s)}</a></li>`)}
      </ul>
    </nav>`}
    ${body}
  </section>`;
}

// ---- identities ----

function Identities({ route, me }) {
  const kind = route.query.get('kind') ?? '';
  const status = route.query.get('status') ?? '';
  const [orgs] = useLoad(() => all('/api/v1/identities?kind=organization', 'identities'), []);
  const [notice, setNotice] = useState(() => {
    const f = flash;
    flash = null;
    return f;
  });
  const [ask, dialog] = useConfirm();
  const key = `${kind}|${status}`;
  const [state, load, setState] = useCursorList(key, (cursor) => {
    const q = new URLSearchParams();
    if (kind) q.set('kind', kind);
    if (status) q.set('status', status);
    q.set('limit', '100');
    if (cursor) q.set('cursor', cursor);
    return `/api/v1/identities?${q}`;
  }, 'identities');

  function apply(ev) {
    ev.preventDefault();
    const fd = new FormData(ev.currentTarget);
    navigate('/admin/identities', { kind: fd.get('kind'), status: fd.get('status') });
  }

  const replace = (i) => setState((s) => ({ ...s, items: s.items.map((x) => (x.id === i.id ? i : x)) }));
  const orgName = (oid) => orgs.data?.find((o) => o.id === oid)?.name ?? oid;

  function act(i, what) {
    setNotice(null);
    const field =
      what === 'verify'
        ? { name: 'note', label: t('adm.verify.note'), hint: t('adm.verify.note.hint') }
        : { name: 'reason', label: t('action.reason.optional') };
    ask({
      title: t(`adm.${what}.title`, { name: i.name }),
      text: t(`adm.${what}.text`, { name: i.name }),
      field,
      action: t(`adm.${what}`),
      danger: what === 'suspend',
      run: async (v) => {
        const body = v ? { [field.name]: v } : {};
        const r = await api('POST', `/api/v1/identities/${enc(i.id)}/${what}`, { json: body });
        replace(r.body);
        setNotice(t(`adm.${what}.done`, { name: r.body.name }));
      },
    });
  }

  const items = state.items ?? [];
  return html`<div>
    <div class="heading">
      <h2>${t('adm.tab.identities')}</h2>
      <a class="button primary" href="#/admin/identities/new">${t('adm.new')}</a>
    </div>
    <p role="status" aria-live="polite" class="live" data-testid="admin-notice">${notice}</p>
    <form class="filters" role="search" onSubmit=${apply} key=${key}>
      <div class="field inline"><label for="adm-kind">${t('adm.col.kind')}</label>
        <select id="adm-kind" name="kind" value=${kind}>
          <option value="">${t('status.all')}</option>
          ${KINDS.map((k) => html`<option value=${k}>${t('adm.kind.' + k)}</option>`)}
        </select></div>
      <div class="field inline"><label for="adm-status">${t('adm.col.status')}</label>
        <select id="adm-status" name="status" value=${status}>
          <option value="">${t('status.all')}</option>
          ${STATUSES.map((s) => html`<option value=${s}>${t('adm.status.' + s)}</option>`)}
        </select></div>
      <button type="submit">${t('list.apply')}</button>
      <a class="button" href="#/admin/identities">${t('audit.f.clear')}</a>
    </form>
    ${state.error && html`<${AdmFailure} error=${state.error} retry=${() => load()} />`}
    ${state.loading && !items.length && html`<${Loading} label=${t('adm.loading')} />`}
    ${!state.loading && !state.error && !items.length && html`<${Empty}><p>${t('adm.empty')}</p></${Empty}>`}
    ${items.length > 0 &&
    html`<table class="cards identities">
      <caption class="visually-hidden">${t('adm.tab.identities')}</caption>
      <thead><tr>
        <th scope="col">${t('adm.col.name')}</th><th scope="col">${t('adm.col.kind')}</th><th scope="col">${t('adm.col.roles')}</th>
        <th scope="col">${t('adm.col.org')}</th><th scope="col">${t('adm.col.status')}</th><th scope="col">${t('apikeys.col.actions')}</th>
      </tr></thead>
      <tbody>
        ${items.map(
          (i) => html`<tr data-identity=${i.id}>
            <td><strong>${i.name}</strong>${i.id === me.identity.id && html` <strong>${t('detail.you')}</strong>`}${i.email && html`<br /><span class="hint">${i.email}</span>`}<br /><code class="hint id">${i.id}</code></td>
            <td class="kind">${t('adm.kind.' + i.kind)}</td>
            <td>${i.roles.length ? i.roles.map((r) => t('adm.role.' + r)).join(', ') : '—'}</td>
            <td>${i.kind === 'organization' ? html`<a href=${'#/admin/organizations/' + i.id}>${t('adm.members')}</a>` : i.organization_id ? html`<a href=${'#/admin/organizations/' + i.organization_id}>${orgName(i.organization_id)}</a>` : '—'}</td>
            <td><${IdBadge} status=${i.status} /></td>
            <td><div class="row-actions">
              ${i.status === 'pending_verification' && html`<button type="button" class="primary" aria-label=${t('adm.verify.named', { name: i.name })} onClick=${() => act(i, 'verify')}>${t('adm.verify')}</button>`}
              ${i.status !== 'suspended' &&
              (i.id === me.identity.id
                ? html`<button type="button" class="danger" aria-label=${t('adm.suspend.named', { name: i.name })} aria-disabled="true" aria-describedby="why-suspend-self">${t('adm.suspend')}</button>
                    <span class="why" id="why-suspend-self">${t('adm.suspend.self')}</span>`
                : html`<button type="button" class="danger" aria-label=${t('adm.suspend.named', { name: i.name })} onClick=${() => act(i, 'suspend')}>${t('adm.suspend')}</button>`)}
              ${i.status === 'suspended' && html`<button type="button" aria-label=${t('adm.reactivate.named', { name: i.name })} onClick=${() => act(i, 'reactivate')}>${t('adm.reactivate')}</button>`}
            </div></td>
          </tr>`,
        )}
      </tbody>
    </table>`}
    ${state.next && html`<p><button type="button" onClick=${() => load(state.next)} disabled=${state.loading}>${t('list.more')}</button></p>`}
    ${dialog}
  </div>`;
}

function IdentityNew({ route }) {
  const [form, setForm] = useState(() => ({ kind: KINDS.includes(route.query.get('kind')) ? route.query.get('kind') : 'user', name: '', email: '', password: '', roles: [], org: '', reason: '' }));
  const [orgs] = useLoad(() => all('/api/v1/identities?kind=organization&status=active', 'identities'), []);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  // The identity made by a submit whose membership then failed: the next submit only adds it.
  const [made, setMade] = useState(null);
  const set = (k) => (e) => setForm((f) => ({ ...f, [k]: e.currentTarget.value }));
  const toggle = (r) => setForm((f) => ({ ...f, roles: f.roles.includes(r) ? f.roles.filter((x) => x !== r) : [...f.roles, r] }));
  const isOrg = form.kind === 'organization';
  const person = form.kind === 'user';
  const known = ['kind', 'name', 'email', 'password', 'roles', 'organization_id', 'reason'];

  async function submit(ev) {
    ev.preventDefault();
    setBusy(true);
    setError(null);
    const org = !isOrg && form.org;
    try {
      let ident = made;
      if (!ident) {
        const body = { kind: form.kind, name: form.name };
        if (!isOrg && form.email) body.email = form.email;
        if (person || form.password) body.password = form.password;
        if (!isOrg) body.roles = org ? form.roles.filter((r) => !ORG_ROLES.includes(r)) : form.roles;
        ident = (await api('POST', '/api/v1/identities', { json: body })).body;
      }
      if (org) {
        setMade(ident);
        await api('POST', `/api/v1/organizations/${enc(org)}/members`, {
          json: { identity_id: ident.id, roles: form.roles.filter((r) => ORG_ROLES.includes(r)), ...(form.reason.trim() ? { reason: form.reason.trim() } : {}) },
        });
      }
      flash = t('adm.created', { name: ident.name });
      navigate('/admin/identities', {});
    } catch (e) {
      setError(e);
      setBusy(false);
    }
  }

  const orgRoles = !isOrg && form.org;
  return html`<div>
    <p><a href="#/admin/identities">${t('adm.back')}</a></p>
    <h2>${t('adm.new')}</h2>
    ${made && html`<p class="note" role="status">${t('adm.made', { name: made.name })}</p>`}
    <${ErrorSummary} error=${error} fieldFor=${fieldFor(known)} />
    <form onSubmit=${submit} novalidate class="adm-form" data-testid="identity-form">
      <${Field} path="kind" label=${t('adm.col.kind')} error=${error} known=${known}>
        ${({ id, described }) => html`<select id=${id} value=${form.kind} onChange=${set('kind')} aria-describedby=${described} disabled=${!!made}>
          ${KINDS.map((k) => html`<option value=${k}>${t('adm.kind.' + k)}</option>`)}
        </select>`}
      </${Field}>
      <${Field} path="name" label=${t('adm.col.name')} error=${error} known=${known}>
        ${({ id, described, invalid }) => html`<input id=${id} value=${form.name} onInput=${set('name')} maxlength="255" disabled=${!!made} aria-describedby=${described} aria-invalid=${invalid ? 'true' : undefined} />`}
      </${Field}>
      ${!isOrg &&
      html`<${Field} path="email" label=${t('adm.email')} error=${error} known=${known}>
        ${({ id, described, invalid }) => html`<input id=${id} type="email" autocomplete="off" value=${form.email} onInput=${set('email')} disabled=${!!made} aria-describedby=${described} aria-invalid=${invalid ? 'true' : undefined} />`}
      </${Field}>`}
      ${person &&
      html`<${Field} path="password" label=${t('adm.password')} error=${error} known=${known} hint=${t('adm.password.hint')}>
        ${({ id, described, invalid }) => html`<input id=${id} type="password" autocomplete="new-password" value=${form.password} onInput=${set('password')} disabled=${!!made} aria-describedby=${described} aria-invalid=${invalid ? 'true' : undefined} />`}
      </${Field}>`}
      ${!isOrg &&
      html`<fieldset class=${problemsAt(error, 'roles', known).length ? 'field invalid' : 'field'} id=${fieldId('roles')} tabindex="-1">
        <legend>${t('adm.col.roles')}</legend>
        <div class="checks">
          ${ROLES.map((r) => html`<label class="check"><input type="checkbox" name="roles" value=${r} checked=${form.roles.includes(r)} onChange=${() => toggle(r)} disabled=${!!made && !ORG_ROLES.includes(r)} /> ${t('adm.role.' + r)}</label>`)}
        </div>
        <span class="hint">${t('adm.roles.hint')}</span>
        ${problemsAt(error, 'roles', known).length > 0 && html`<ul class="field-problems">${problemsAt(error, 'roles', known).map((p) => html`<li><code>${p.field}</code> ${p.problem}</li>`)}</ul>`}
      </fieldset>
      <${Field} path="organization_id" label=${t('adm.org')} error=${error} known=${known} hint=${t('adm.org.hint')}>
        ${({ id, described }) => html`<select id=${id} value=${form.org} onChange=${set('org')} aria-describedby=${described}>
          <option value="">${t('adm.org.none')}</option>
          ${(orgs.data ?? []).map((o) => html`<option value=${o.id}>${o.name}</option>`)}
        </select>`}
      </${Field}>
      ${orgs.error && html`<${Failure} error=${orgs.error} />`}`}
      ${orgRoles &&
      html`<${Field} path="reason" label=${t('adm.reason')} error=${error} known=${known} hint=${t('adm.reason.hint')}>
        ${({ id, described, invalid }) => html`<input id=${id} value=${form.reason} onInput=${set('reason')} maxlength="1000" aria-describedby=${described} aria-invalid=${invalid ? 'true' : undefined} />`}
      </${Field}>`}
      <div class="buttons">
        <button type="submit" class="primary" disabled=${busy}>${made ? t('adm.member.add') : t('adm.create')}</button>
        <a class="button" href="#/admin/identities">${t('editor.cancel')}</a>
      </div>
    </form>
  </div>`;
}

// ---- organizations ----

function Organizations() {
  const [list, reload] = useLoad(() => all('/api/v1/identities?kind=organization', 'identities'), []);
  return html`<div>
    <div class="heading">
      <h2>${t('adm.tab.organizations')}</h2>
      <a class="button primary" href=${href('/admin/identities/new', { kind: 'organization' })}>${t('adm.org.new')}</a>
    </div>
    ${list.error && html`<${AdmFailure} error=${list.error} retry=${reload} />`}
    ${list.loading && !list.data && html`<${Loading} label=${t('adm.loading')} />`}
    ${list.data && !list.data.length && html`<${Empty}><p>${t('adm.org.empty')}</p></${Empty}>`}
    ${list.data?.length > 0 &&
    html`<table class="cards">
      <caption class="visually-hidden">${t('adm.tab.organizations')}</caption>
      <thead><tr><th scope="col">${t('adm.col.name')}</th><th scope="col">${t('adm.col.status')}</th><th scope="col">${t('detail.created')}</th></tr></thead>
      <tbody>
        ${list.data.map((o) => html`<tr><td><a href=${'#/admin/organizations/' + o.id}>${o.name}</a></td><td><${IdBadge} status=${o.status} /></td><td>${fmtDate(o.created_at)}</td></tr>`)}
      </tbody>
    </table>`}
  </div>`;
}

function Organization({ id }) {
  const [org] = useLoad(async () => (await api('GET', `/api/v1/identities/${enc(id)}`)).body, [id]);
  const [members, reloadMembers] = useLoad(() => all(`/api/v1/organizations/${enc(id)}/members`, 'members'), [id]);
  // Who may join: active users and services in no organization.
  const [cands, reloadCands] = useLoad(async () => (await all('/api/v1/identities?status=active', 'identities')).filter((i) => i.kind !== 'organization' && !i.organization_id), [id]);
  const [form, setForm] = useState({ identity_id: '', roles: [], reason: '' });
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const [notice, setNotice] = useState(null);
  const [ask, dialog] = useConfirm();
  const known = ['identity_id', 'roles', 'reason'];
  const toggle = (r) => setForm((f) => ({ ...f, roles: f.roles.includes(r) ? f.roles.filter((x) => x !== r) : [...f.roles, r] }));

  async function add(ev) {
    ev.preventDefault();
    setBusy(true);
    setError(null);
    setNotice(null);
    const who = form.identity_id || cands.data?.[0]?.id || '';
    try {
      const r = await api('POST', `/api/v1/organizations/${enc(id)}/members`, {
        json: { identity_id: who, roles: form.roles, ...(form.reason.trim() ? { reason: form.reason.trim() } : {}) },
      });
      setNotice(t('adm.member.added', { name: r.body.name }));
      setForm({ identity_id: '', roles: [], reason: '' });
      reloadMembers();
      reloadCands();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  }

  function remove(m) {
    setNotice(null);
    ask({
      title: t('adm.member.remove.title', { name: m.name }),
      text: t('adm.member.remove.text', { name: m.name }),
      field: { name: 'reason', label: t('adm.reason'), hint: t('adm.reason.hint') },
      action: t('adm.member.remove'),
      danger: true,
      run: async (v) => {
        await api('DELETE', `/api/v1/organizations/${enc(id)}/members/${enc(m.identity_id)}${v ? '?reason=' + enc(v) : ''}`);
        setNotice(t('adm.member.removed', { name: m.name }));
        reloadMembers();
        reloadCands();
      },
    });
  }

  if (org.loading && !org.data) return html`<${Loading} label=${t('adm.loading')} />`;
  if (org.error) return html`<div><p><a href="#/admin/organizations">${t('adm.org.back')}</a></p><${AdmFailure} error=${org.error} /></div>`;
  const o = org.data;
  const list = members.data ?? [];
  return html`<div>
    <p><a href="#/admin/organizations">${t('adm.org.back')}</a></p>
    <div class="heading"><h2>${t('adm.org.of', { name: o.name })}</h2><${IdBadge} status=${o.status} /></div>
    <p class="hint"><code>${o.id}</code></p>
    <p role="status" aria-live="polite" class="live" data-testid="admin-notice">${notice}</p>
    <h3>${t('adm.members')}</h3>
    ${members.error && html`<${AdmFailure} error=${members.error} retry=${reloadMembers} />`}
    ${members.loading && !members.data && html`<${Loading} label=${t('adm.loading')} />`}
    ${members.data && !list.length && html`<${Empty}><p>${t('adm.member.empty')}</p></${Empty}>`}
    ${list.length > 0 &&
    html`<table class="cards" data-testid="members">
      <caption class="visually-hidden">${t('adm.members')}</caption>
      <thead><tr><th scope="col">${t('adm.col.name')}</th><th scope="col">${t('adm.col.kind')}</th><th scope="col">${t('adm.col.roles')}</th><th scope="col">${t('adm.col.status')}</th><th scope="col">${t('apikeys.col.actions')}</th></tr></thead>
      <tbody>
        ${list.map(
          (m) => html`<tr data-member=${m.identity_id}>
            <td><strong>${m.name}</strong>${m.email && html`<br /><span class="hint">${m.email}</span>`}</td>
            <td>${t('adm.kind.' + m.kind)}</td>
            <td>${m.roles.length ? m.roles.map((r) => t('adm.role.' + r)).join(', ') : '—'}</td>
            <td><${IdBadge} status=${m.status} /></td>
            <td><button type="button" class="danger" aria-label=${t('adm.member.remove.named', { name: m.name })} onClick=${() => remove(m)}>${t('adm.member.remove')}</button></td>
          </tr>`,
        )}
      </tbody>
    </table>`}

    <form onSubmit=${add} novalidate class="card adm-form">
      <h3>${t('adm.member.add')}</h3>
      <${ErrorSummary} error=${error} fieldFor=${fieldFor(known)} refocus=${false} />
      ${cands.error && html`<${AdmFailure} error=${cands.error} retry=${reloadCands} />`}
      ${cands.data && !cands.data.length && html`<p class="note">${t('adm.member.nocandidates')}</p>`}
      <${Field} path="identity_id" label=${t('adm.member.who')} error=${error} known=${known} hint=${t('adm.member.who.hint')}>
        ${({ id: fid, described, invalid }) => html`<select id=${fid} value=${form.identity_id || cands.data?.[0]?.id || ''} onChange=${(e) => setForm((f) => ({ ...f, identity_id: e.currentTarget.value }))} aria-describedby=${described} aria-invalid=${invalid ? 'true' : undefined}>
          ${(cands.data ?? []).map((c) => html`<option value=${c.id}>${c.name}${c.email ? ` <${c.email}>` : ''}</option>`)}
        </select>`}
      </${Field}>
      <fieldset class=${problemsAt(error, 'roles', known).length ? 'field invalid' : 'field'} id=${fieldId('roles')} tabindex="-1">
        <legend>${t('adm.member.roles')}</legend>
        <div class="checks">
          ${ORG_ROLES.map((r) => html`<label class="check"><input type="checkbox" value=${r} checked=${form.roles.includes(r)} onChange=${() => toggle(r)} /> ${t('adm.role.' + r)}</label>`)}
        </div>
        ${problemsAt(error, 'roles', known).length > 0 && html`<ul class="field-problems">${problemsAt(error, 'roles', known).map((p) => html`<li><code>${p.field}</code> ${p.problem}</li>`)}</ul>`}
      </fieldset>
      <${Field} path="reason" label=${t('adm.reason')} error=${error} known=${known} hint=${t('adm.reason.hint')}>
        ${({ id: fid, described, invalid }) => html`<input id=${fid} value=${form.reason} onInput=${(e) => setForm((f) => ({ ...f, reason: e.currentTarget.value }))} maxlength="1000" aria-describedby=${described} aria-invalid=${invalid ? 'true' : undefined} />`}
      </${Field}>
      <div class="buttons"><button type="submit" class="primary" disabled=${busy || !cands.data?.length}>${t('adm.member.add')}</button></div>
    </form>
    ${dialog}
  </div>`;
}

// ---- access policies ----

/** The lines of a textarea, trimmed, without the empty ones. */
const lines = (text) => text.split(/[\n,]/).map((x) => x.trim()).filter(Boolean);

function Policies() {
  const [list, reload] = useLoad(async () => (await api('GET', '/api/v1/policies')).body.policies, []);
  const [notice, setNotice] = useState(() => {
    const f = flash;
    flash = null;
    return f;
  });
  const [ask, dialog] = useConfirm();

  function remove(p) {
    setNotice(null);
    ask({
      title: t('adm.pol.delete.title', { name: p.name }),
      text: t('adm.pol.delete.text'),
      action: t('adm.pol.delete'),
      danger: true,
      run: async () => {
        await api('DELETE', `/api/v1/policies/${enc(p.id)}`);
        setNotice(t('adm.pol.deleted', { name: p.name }));
        reload();
      },
    });
  }

  const conds = (c = {}) => [...CONDITIONS.filter((k) => c[k]).map((k) => t('adm.pol.cond.' + k)), ...(c.ip_range ?? []).map((r) => t('adm.pol.from', { range: r }))];
  return html`<div>
    <div class="heading">
      <h2>${t('adm.tab.policies')}</h2>
      <a class="button primary" href="#/admin/policies/new">${t('adm.pol.new')}</a>
    </div>
    <p class="hint">${t('adm.pol.intro')}</p>
    <p role="status" aria-live="polite" class="live" data-testid="admin-notice">${notice}</p>
    ${list.error && html`<${AdmFailure} error=${list.error} retry=${reload} />`}
    ${list.loading && !list.data && html`<${Loading} label=${t('adm.loading')} />`}
    ${list.data && !list.data.length && html`<${Empty}><p>${t('adm.pol.empty')}</p></${Empty}>`}
    ${list.data?.length > 0 &&
    html`<table class="cards" data-testid="policies">
      <caption class="visually-hidden">${t('adm.tab.policies')}</caption>
      <thead><tr><th scope="col">${t('adm.col.name')}</th><th scope="col">${t('adm.pol.effect')}</th><th scope="col">${t('adm.pol.actions')}</th><th scope="col">${t('adm.pol.resources')}</th><th scope="col">${t('adm.pol.conditions')}</th><th scope="col">${t('adm.pol.attach')}</th><th scope="col">${t('apikeys.col.actions')}</th></tr></thead>
      <tbody>
        ${list.data.map(
          (p) => html`<tr data-policy=${p.id}>
            <td><strong>${p.name}</strong>${p.description && html`<br /><span class="hint">${p.description}</span>`}<br /><span class="hint">${fmtDate(p.created_at)}</span></td>
            <td><span class=${'badge badge-effect-' + p.effect}>${t('adm.pol.effect.' + p.effect)}</span></td>
            <td>${p.actions.map((a) => html`<code>${a}</code> `)}</td>
            <td>${p.resources.map((r) => html`<code>${r}</code> `)}</td>
            <td>${conds(p.conditions).join(', ') || '—'}</td>
            <td>${[...(p.attach.roles ?? []).map((r) => t('adm.role.' + r)), ...(p.attach.identities ?? []).map((i) => i.slice(0, 8) + '…')].join(', ') || '—'}</td>
            <td><button type="button" class="danger" aria-label=${t('adm.pol.delete.named', { name: p.name })} onClick=${() => remove(p)}>${t('adm.pol.delete')}</button></td>
          </tr>`,
        )}
      </tbody>
    </table>`}
    ${dialog}
  </div>`;
}

function PolicyNew() {
  const [form, setForm] = useState({ name: '', description: '', effect: 'allow', actions: '', resources: '*', conds: [], ip: '', roles: [], identities: '' });
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const set = (k) => (e) => setForm((f) => ({ ...f, [k]: e.currentTarget.value }));
  const toggle = (k, v) => setForm((f) => ({ ...f, [k]: f[k].includes(v) ? f[k].filter((x) => x !== v) : [...f[k], v] }));
  // The roles' fieldset shows the problems of `attach` itself (nothing attached) and of attach.roles.
  const known = ['name', 'description', 'effect', 'actions', 'resources', 'conditions', 'conditions.ip_range', 'attach', 'attach.identities'];

  async function submit(ev) {
    ev.preventDefault();
    setBusy(true);
    setError(null);
    const conditions = Object.fromEntries(form.conds.map((k) => [k, true]));
    if (lines(form.ip).length) conditions.ip_range = lines(form.ip);
    const attach = {};
    if (form.roles.length) attach.roles = form.roles;
    if (lines(form.identities).length) attach.identities = lines(form.identities);
    const body = { name: form.name.trim(), effect: form.effect, actions: lines(form.actions), resources: lines(form.resources), attach };
    if (form.description.trim()) body.description = form.description.trim();
    if (Object.keys(conditions).length) body.conditions = conditions;
    try {
      const r = await api('POST', '/api/v1/policies', { json: body });
      flash = t('adm.pol.created', { name: r.body.name });
      navigate('/admin/policies', {});
    } catch (e) {
      setError(e);
      setBusy(false);
    }
  }

  const area = (k, path, label, hint, rows = 3) => html`<${Field} path=${path} label=${label} error=${error} known=${known} hint=${hint}>
    ${({ id, described, invalid }) => html`<textarea id=${id} rows=${rows} value=${form[k]} onInput=${set(k)} aria-describedby=${described} aria-invalid=${invalid ? 'true' : undefined}></textarea>`}
  </${Field}>`;
  const checks = (path, legend, values, k, label) => {
    const probs = problemsAt(error, path, known);
    return html`<fieldset class=${probs.length ? 'field invalid' : 'field'} id=${fieldId(path)} tabindex="-1">
      <legend>${legend}</legend>
      <div class="checks">
        ${values.map((v) => html`<label class="check"><input type="checkbox" value=${v} checked=${form[k].includes(v)} onChange=${() => toggle(k, v)} /> ${label(v)}</label>`)}
      </div>
      ${probs.length > 0 && html`<ul class="field-problems">${probs.map((p) => html`<li><code>${p.field}</code> ${p.problem}</li>`)}</ul>`}
    </fieldset>`;
  };
  return html`<div>
    <p><a href="#/admin/policies">${t('adm.pol.back')}</a></p>
    <h2>${t('adm.pol.new')}</h2>
    <${ErrorSummary} error=${error} fieldFor=${fieldFor(known)} />
    <form onSubmit=${submit} novalidate class="adm-form" data-testid="policy-form">
      <${Field} path="name" label=${t('adm.col.name')} error=${error} known=${known}>
        ${({ id, described, invalid }) => html`<input id=${id} value=${form.name} onInput=${set('name')} maxlength="255" aria-describedby=${described} aria-invalid=${invalid ? 'true' : undefined} />`}
      </${Field}>
      ${area('description', 'description', t('adm.pol.description'), null, 2)}
      <${Field} path="effect" label=${t('adm.pol.effect')} error=${error} known=${known} hint=${t('adm.pol.effect.hint')}>
        ${({ id, described }) => html`<select id=${id} value=${form.effect} onChange=${set('effect')} aria-describedby=${described}>
          <option value="allow">${t('adm.pol.effect.allow')}</option>
          <option value="deny">${t('adm.pol.effect.deny')}</option>
        </select>`}
      </${Field}>
      ${area('actions', 'actions', t('adm.pol.actions'), t('adm.pol.actions.hint'))}
      ${area('resources', 'resources', t('adm.pol.resources'), t('adm.pol.resources.hint'))}
      ${checks('conditions', t('adm.pol.conditions'), CONDITIONS, 'conds', (c) => t('adm.pol.cond.' + c))}
      ${area('ip', 'conditions.ip_range', t('adm.pol.ip'), t('adm.pol.ip.hint'), 2)}
      ${checks('attach', t('adm.pol.roles'), ROLES, 'roles', (r) => t('adm.role.' + r))}
      ${area('identities', 'attach.identities', t('adm.pol.identities'), t('adm.pol.identities.hint'), 2)}
      <div class="buttons">
        <button type="submit" class="primary" disabled=${busy}>${t('adm.pol.create')}</button>
        <a class="button" href="#/admin/policies">${t('editor.cancel')}</a>
      </div>
    </form>
  </div>`;
}

// ---- keys ----

function Keys() {
  const [dk, reloadDk] = useLoad(async () => (await api('GET', '/api/v1/admin/data-keys')).body, []);
  const [jwks, reloadJwks] = useLoad(async () => (await api('GET', '/.well-known/jwks.json', { auth: false })).body.keys, []);
  const [notice, setNotice] = useState(null);
  const [ask, dialog] = useConfirm();
  const [status, setStatus] = useState(null);
  const s = status ?? dk.data;

  function rotate() {
    setNotice(null);
    ask({
      title: t('adm.dk.rotate.title'),
      text: t('adm.dk.rotate.text', { next: fmtNumber(s.active_version + 1), active: fmtNumber(s.active_version) }),
      action: t('adm.dk.rotate'),
      run: async () => {
        const r = await api('POST', '/api/v1/admin/data-keys/rotate');
        setStatus(r.body);
        setNotice(t('adm.dk.rotated', { v: fmtNumber(r.body.active_version), n: fmtNumber(r.body.pending_rewrap) }));
      },
    });
  }
  function rewrap() {
    setNotice(null);
    ask({
      title: t('adm.dk.rewrap.title'),
      text: t('adm.dk.rewrap.text', { n: fmtNumber(s.pending_rewrap), v: fmtNumber(s.active_version) }),
      field: { name: 'batch', label: t('adm.dk.batch'), hint: t('adm.dk.batch.hint'), number: true },
      action: t('adm.dk.rewrap'),
      run: async (v) => {
        // The batch goes as typed (a number when it is one), so the API judges it.
        const batch = v === '' || v === undefined ? undefined : /^\d+$/.test(v) ? Number(v) : v;
        const r = await api('POST', '/api/v1/admin/data-keys/rewrap', { json: batch === undefined ? {} : { batch } });
        setNotice(t('adm.dk.rewrapped', { n: fmtNumber(r.body.rewrapped), left: fmtNumber(r.body.remaining) }));
        setStatus((await api('GET', '/api/v1/admin/data-keys')).body);
      },
    });
  }
  function retire(v) {
    setNotice(null);
    ask({
      title: t('adm.dk.retire.title', { v: fmtNumber(v.version) }),
      text: t('adm.dk.retire.text', { v: fmtNumber(v.version) }),
      action: t('adm.dk.retire'),
      danger: true,
      run: async () => {
        const r = await api('POST', '/api/v1/admin/data-keys/retire', { json: { version: v.version } });
        setStatus(r.body);
        setNotice(t('adm.dk.retired', { v: fmtNumber(v.version) }));
      },
    });
  }
  function rotateJwt() {
    setNotice(null);
    ask({
      title: t('adm.jwt.rotate.title'),
      text: t('adm.jwt.rotate.text'),
      action: t('adm.jwt.rotate'),
      run: async () => {
        const r = await api('POST', '/api/v1/admin/keys/rotate');
        setNotice(t('adm.jwt.rotated', { kid: r.body.kid }));
        reloadJwks();
      },
    });
  }

  let dataKeys;
  if (dk.loading && !dk.data) dataKeys = html`<${Loading} label=${t('adm.loading')} />`;
  else if (dk.error) dataKeys = html`<${AdmFailure} error=${dk.error} retry=${reloadDk} />`;
  else
    dataKeys = html`<dl class="facts" data-testid="dk-facts">
        <dt>${t('adm.dk.backend')}</dt><dd>${s.backend}</dd>
        <dt>${t('adm.dk.active')}</dt><dd data-testid="dk-active">${fmtNumber(s.active_version)}</dd>
        <dt>${t('adm.dk.count')}</dt><dd>${fmtNumber(s.data_keys)}</dd>
        <dt>${t('adm.dk.pending')}</dt><dd data-testid="dk-pending">${fmtNumber(s.pending_rewrap)}</dd>
      </dl>
      <div class="buttons">
        <button type="button" class="primary" onClick=${rotate}>${t('adm.dk.rotate')}</button>
        <button type="button" onClick=${() => s.pending_rewrap && rewrap()} aria-disabled=${s.pending_rewrap ? undefined : 'true'} aria-describedby=${s.pending_rewrap ? undefined : 'why-rewrap'}>${t('adm.dk.rewrap')}</button>
        ${!s.pending_rewrap && html`<span class="why" id="why-rewrap">${t('adm.dk.rewrap.none')}</span>`}
      </div>
      <table class="cards" data-testid="dk-versions">
        <caption>${t('adm.dk.versions')}</caption>
        <thead><tr><th scope="col">${t('adm.dk.version')}</th><th scope="col">${t('adm.col.status')}</th><th scope="col">${t('adm.dk.count')}</th><th scope="col">${t('detail.created')}</th><th scope="col">${t('adm.dk.retired_at')}</th><th scope="col">${t('apikeys.col.actions')}</th></tr></thead>
        <tbody>
          ${s.versions.map((v) => {
            const why = v.state === 'active' ? t('adm.dk.retire.active') : v.data_keys > 0 ? t('adm.dk.retire.inuse', { n: fmtNumber(v.data_keys) }) : null;
            return html`<tr data-version=${v.version}>
              <td>${fmtNumber(v.version)}</td>
              <td><span class=${'badge badge-kek-' + v.state}>${t('adm.dk.state.' + v.state)}</span></td>
              <td>${fmtNumber(v.data_keys)}</td>
              <td>${fmtDate(v.created_at)}</td>
              <td>${v.retired_at ? fmtDate(v.retired_at) : '—'}</td>
              <td>${v.state !== 'retired' &&
                html`<button type="button" class="danger" aria-label=${t('adm.dk.retire.named', { v: fmtNumber(v.version) })} aria-disabled=${why ? 'true' : undefined}
                  aria-describedby=${why ? 'why-retire-' + v.version : undefined} onClick=${() => !why && retire(v)}>${t('adm.dk.retire')}</button>
                  ${why && html` <span class="why" id=${'why-retire-' + v.version}>${why}</span>`}`}</td>
            </tr>`;
          })}
        </tbody>
      </table>`;

  let signing;
  if (jwks.loading && !jwks.data) signing = html`<${Loading} label=${t('adm.loading')} />`;
  else if (jwks.error) signing = html`<${Failure} error=${jwks.error} retry=${reloadJwks} />`;
  else
    signing = html`<ul class="kids" data-testid="jwks">${jwks.data.map((k) => html`<li><code>${k.kid}</code> (${k.alg})</li>`)}</ul>`;

  return html`<div>
    <p role="status" aria-live="polite" class="live" data-testid="admin-notice">${notice}</p>
    <section class="card" aria-labelledby="h-dk">
      <h2 id="h-dk">${t('adm.dk.title')}</h2>
      <p class="hint">${t('adm.dk.intro')}</p>
      ${dataKeys}
    </section>
    <section class="card" aria-labelledby="h-jwt">
      <h2 id="h-jwt">${t('adm.jwt.title')}</h2>
      <p class="hint">${t('adm.jwt.intro')}</p>
      ${signing}
      <div class="buttons"><button type="button" onClick=${rotateJwt}>${t('adm.jwt.rotate')}</button></div>
    </section>
    ${dialog}
  </div>`;
}
