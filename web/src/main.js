// The dcms web UI: the shell (banner, header, navigation), the session and
// the routes. See web/README.md.
import './theme.js'; // first: the theme override is applied before anything renders
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { Account } from './account.js';
import { AdminPage, isAdmin } from './admin.js';
import { api, logout, net, refresh, subscribe, whenSignedOut } from './api.js';
import { AuditPage, ContractAudit } from './audit.js';
import { DatasetDetail, DatasetList, DatasetNew } from './datasets.js';
import { EnclaveDetail, EnclaveList } from './enclaves.js';
import { ContractDetail } from './detail.js';
import { ContractEditor } from './editor.js';
import { Home } from './home.js';
import { ContractList } from './list.js';
import { t } from './messages.js';
import { navigate, useRoute } from './router.js';
import { SignIn } from './signin.js';
import { SignSheet } from './signsheet.js';
import { ThemePicker } from './theme.js';
import { TrainingPage, TrainingStart } from './training.js';
import { Loading, html } from './ui.js';

function Banner() {
  const [online, setOnline] = useState(net.online);
  useEffect(() => subscribe(() => setOnline(net.online)), []);
  return html`<div role="alert" class=${online ? 'banner hidden' : 'banner'}>${online ? '' : t('banner.unreachable')}</div>`;
}

function App() {
  const route = useRoute();
  const [me, setMe] = useState(undefined); // undefined: booting; null: signed out
  const [notice, setNotice] = useState(null);

  async function loadMe() {
    try {
      const r = await api('GET', '/api/v1/auth/me');
      setMe(r.body);
    } catch {
      setMe(null);
    }
  }

  useEffect(() => {
    whenSignedOut(() => {
      setNotice(t('signin.expired'));
      setMe(null);
    });
    refresh().then((ok) => (ok ? loadMe() : setMe(null)));
  }, []);

  // Move the focus to the new screen's heading, so keyboard and screen reader users follow.
  useEffect(() => {
    const h = document.querySelector('main h1');
    if (h && document.activeElement?.tagName !== 'INPUT') h.focus({ preventScroll: false });
  }, [route.path, me === null]);

  async function signOut() {
    await logout();
    setNotice(null);
    setMe(null);
    navigate('/home', {}, { replace: true });
  }

  async function reauth() {
    await logout();
    setNotice(t('errors.reauth'));
    setMe(null);
  }

  let screen;
  const [, id, sub] = route.segments;
  if (me === undefined) screen = html`<${Loading} />`;
  else if (me === null) screen = html`<${SignIn} notice=${notice} onDone=${() => { setNotice(null); if (!location.hash || location.hash === '#/') navigate('/home', {}, { replace: true }); loadMe(); }} />`;
  else if (route.segments[0] === 'datasets') screen = id === 'new' ? html`<${DatasetNew} />` : id ? html`<${DatasetDetail} key=${id} id=${id} />` : html`<${DatasetList} />`;
  else if (route.segments[0] === 'trainings' && id) screen = html`<${TrainingPage} key=${id} id=${id} me=${me} />`;
  else if (route.segments[0] === 'home') screen = html`<${Home} me=${me} />`;
  else if (route.segments[0] === 'enclaves') screen = id ? html`<${EnclaveDetail} key=${id} id=${id} me=${me} />` : html`<${EnclaveList} route=${route} />`;
  else if (route.segments[0] === 'audit') screen = html`<${AuditPage} route=${route} me=${me} />`;
  else if (route.segments[0] === 'admin') screen = html`<${AdminPage} route=${route} me=${me} />`;
  else if (route.segments[0] === 'account') screen = html`<${Account} me=${me} onSignOut=${signOut} />`;
  else if (route.segments[0] !== 'contracts') screen = html`<${ContractList} route=${route} me=${me} />`;
  else if (id === 'new') screen = html`<${ContractEditor} me=${me} />`;
  else if (id && sub === 'edit') screen = html`<${ContractEditor} id=${id} me=${me} />`;
  else if (id && sub === 'train') screen = html`<${TrainingStart} id=${id} me=${me} />`;
  else if (id && sub === 'audit') screen = html`<${ContractAudit} key=${id} id=${id} me=${me} />`;
  else if (id && sub === 'sign') screen = html`<${SignSheet} id=${id} me=${me} onReauth=${reauth} />`;
  else if (id) screen = html`<${ContractDetail} key=${id} id=${id} me=${me} />`;
  else screen = html`<${ContractList} route=${route} me=${me} />`;

  return html`
    <a class="skip" href="#main" onClick=${(e) => { e.preventDefault(); document.getElementById('main').focus(); }}>${t('app.skip')}</a>
    <${Banner} />
    <header class="top">
      <a class="brand" href="#/home">${t('app.name')}</a>
      ${me &&
      html`<nav aria-label=${t('nav.label')}>
          <a href="#/home" aria-current=${route.segments[0] === 'home' ? 'page' : undefined}>${t('nav.home')}</a>
          <a href="#/contracts" aria-current=${route.segments[0] === 'contracts' && !id ? 'page' : undefined}>${t('nav.contracts')}</a>
          <a href="#/contracts/new" aria-current=${route.segments[0] === 'contracts' && id === 'new' ? 'page' : undefined}>${t('nav.new')}</a>
          ${(me.token.roles.includes('provider') || me.token.roles.includes('admin')) && html`<a href="#/datasets" aria-current=${route.segments[0] === 'datasets' ? 'page' : undefined}>${t('nav.datasets')}</a>`}
          <a href="#/enclaves" aria-current=${route.segments[0] === 'enclaves' ? 'page' : undefined}>${t('nav.enclaves')}</a>
          ${(me.token.roles.includes('auditor') || me.token.roles.includes('admin')) && html`<a href="#/audit" aria-current=${route.segments[0] === 'audit' ? 'page' : undefined}>${t('nav.audit')}</a>`}
          ${isAdmin(me) && html`<a href="#/admin" aria-current=${route.segments[0] === 'admin' ? 'page' : undefined}>${t('nav.admin')}</a>`}
          <a href="#/account" aria-current=${route.segments[0] === 'account' ? 'page' : undefined}>${t('nav.account')}</a>
        </nav>
        <div class="who">
          <span>${t('nav.signedin', { name: me.identity.name })}</span>
          <button type="button" onClick=${signOut}>${t('nav.signout')}</button>
        </div>`}
      <${ThemePicker} />
    </header>
    <main id="main" tabindex="-1">${screen}</main>`;
}

const root = document.getElementById('app');
root.textContent = ''; // the boot message; Preact 11 renders beside what is there
render(html`<${App} />`, root);
