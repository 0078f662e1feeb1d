// Sign in: e-mail and password, then (when the API answers mfa_required) a
// second factor against the single-use ticket: a passkey (WebAuthn
// assertion over the ticket's challenge), an authenticator code or a
// recovery code. Or a passkey alone (passkey-first): options without any
// identity from /api/v1/auth/passkey/options, the browser offers the
// discoverable passkeys it holds for this site, and the assertion is the
// whole login (docs/iam.md, "Signing in with a passkey alone"). The same form confirms a credential change (`reauth`: the
// e-mail fixed, login through api.reauthenticate, in a dialog).
import { useRef, useState } from 'preact/hooks';
import { api, login } from './api.js';
import { t } from './messages.js';
import { ErrorSummary, FieldProblems, fieldId, html } from './ui.js';
import { assertionJSON, passkeysSupported, requestOptions } from './webauthn.js';

function firstMode(factors) {
  if (factors.includes('webauthn') && passkeysSupported()) return 'passkey';
  if (factors.includes('totp')) return 'totp';
  return factors.includes('recovery_code') ? 'recovery' : 'passkey';
}

/** An error of the browser's passkey ceremony (DOMException) in the catalog's words. */
export function passkeyError(e) {
  if (e?.name === 'NotAllowedError') return new Error(t('passkey.cancelled'));
  if (e?.name === 'InvalidStateError') return new Error(t('passkey.exists'));
  return e;
}

export function SignIn({ onDone, notice, reauth = null, doLogin = login }) {
  const [mfa, setMfa] = useState(null);
  const [mode, setMode] = useState('totp');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const [email, setEmail] = useState(reauth?.email ?? ''); // kept when the second step starts again
  const challengeUsed = useRef(false);
  const H = reauth ? 'h2' : 'h1';
  const p = reauth ? 'ra-' : '';

  const problems = (field) => (error?.details ?? []).filter((d) => d.field === field || d.field.startsWith(field + '.'));
  const fieldFor = (path) =>
    ['email', 'password', 'totp', 'recovery_code'].includes(path) ? p + fieldId(path) : path.startsWith('webauthn') && !mfa && !reauth ? 'signin-passkey' : null;

  async function finish(body) {
    const r = await doLogin(body);
    if (r.mfa) {
      challengeUsed.current = false;
      setMfa(r.mfa);
      setMode(firstMode(r.mfa.factors));
    } else onDone();
  }

  async function submit(ev) {
    ev.preventDefault();
    const f = new FormData(ev.currentTarget);
    setBusy(true);
    setError(null);
    try {
      const body = mfa
        ? mode === 'recovery'
          ? { mfa_ticket: mfa.ticket, recovery_code: f.get('recovery_code').trim() }
          : { mfa_ticket: mfa.ticket, totp: f.get('totp').trim() }
        : { email: (reauth?.email ?? f.get('email')).trim(), password: f.get('password') };
      await finish(body);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  }

  async function passkey() {
    setBusy(true);
    setError(null);
    try {
      // The ticket's first challenge came with the answer; after an attempt it is used up.
      let opts = mfa.challenges?.webauthn;
      if (!opts || challengeUsed.current) {
        opts = (await api('POST', '/api/v1/webauthn/assert/options', { json: { mfa_ticket: mfa.ticket }, auth: false })).body;
      }
      challengeUsed.current = true;
      let cred;
      try {
        cred = await navigator.credentials.get({ publicKey: requestOptions(opts) });
      } catch (e) {
        throw passkeyError(e);
      }
      await finish({ mfa_ticket: mfa.ticket, webauthn: assertionJSON(cred) });
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  }

  // Passkey-first: no e-mail, no password; the passkey names the account and verifies the user.
  async function passkeyFirst() {
    setBusy(true);
    setError(null);
    try {
      const opts = (await api('POST', '/api/v1/auth/passkey/options', { json: {}, auth: false })).body;
      let cred;
      try {
        cred = await navigator.credentials.get({ publicKey: requestOptions(opts) });
      } catch (e) {
        throw e?.name === 'NotAllowedError' ? new Error(t('signin.passkey.cancelled')) : passkeyError(e);
      }
      await finish({ webauthn: assertionJSON(cred) });
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  }

  const input = (name, label, type, extra = {}) => {
    const id = p + fieldId(name);
    const pr = problems(name);
    return html`<div class="field">
      <label for=${id}>${label}</label>
      <input id=${id} name=${name} type=${type} required aria-invalid=${pr.length ? 'true' : undefined}
        aria-describedby=${pr.length ? id + '-problems' : undefined} ...${extra} />
      <${FieldProblems} id=${id} problems=${pr} />
    </div>`;
  };

  const other = mfa
    ? [
        ['passkey', 'signin.mfa.use_passkey', mfa.factors.includes('webauthn') && passkeysSupported()],
        ['totp', 'signin.mfa.use_totp', mfa.factors.includes('totp')],
        ['recovery', 'signin.mfa.use_recovery', mfa.factors.includes('recovery_code')],
      ].filter(([m, , ok]) => ok && m !== mode)
    : [];

  return html`<section class=${reauth ? '' : 'narrow'}>
    <${H} tabindex="-1" id=${reauth ? 'reauth-title' : undefined}>${mfa ? t('signin.mfa.title') : reauth ? t('reauth.title') : t('signin.title')}</${H}>
    ${notice && html`<p class="note" role="status">${notice}</p>`}
    <${ErrorSummary} error=${error} fieldFor=${fieldFor} />
    <form onSubmit=${submit} novalidate aria-busy=${busy ? 'true' : 'false'}>
      ${!mfa && reauth && html`<p>${t('reauth.intro', { email: reauth.email })}</p>`}
      ${!mfa && !reauth && input('email', t('signin.email'), 'email', { autocomplete: 'username', autofocus: true, value: email, onInput: (e) => setEmail(e.currentTarget.value) })}
      ${!mfa && input('password', t('signin.password'), 'password', { autocomplete: 'current-password', autofocus: !!reauth })}
      ${mfa &&
      html`<p>${mode === 'passkey' ? t('signin.mfa.intro.passkey') : t('signin.mfa.intro')}</p>
        ${mode === 'recovery' && input('recovery_code', t('signin.mfa.recovery'), 'text', { autocomplete: 'off', autofocus: true, key: 'rc' })}
        ${mode === 'totp' && input('totp', t('signin.mfa.totp'), 'text', { autocomplete: 'one-time-code', inputmode: 'numeric', autofocus: true, key: 'totp' })}
        ${mode === 'passkey' && (error?.details ?? []).length > 0 && html`<${FieldProblems} id=${p + 'f-webauthn'} problems=${error.details} />`}
        ${other.map(([m, label]) => html`<p><button type="button" class="link" onClick=${() => { setMode(m); setError(null); }}>${t(label)}</button></p>`)}`}
      <div class="buttons">
        ${mfa && mode === 'passkey'
          ? html`<button type="button" class="primary" disabled=${busy} onClick=${passkey}>${busy ? t('signin.busy') : t('signin.mfa.passkey')}</button>`
          : html`<button type="submit" class="primary" disabled=${busy}>${busy ? t('signin.busy') : mfa ? t('signin.mfa.submit') : reauth ? t('reauth.submit') : t('signin.submit')}</button>`}
        ${mfa && html`<button type="button" onClick=${() => { setMfa(null); setError(null); }}>${t('signin.mfa.restart')}</button>`}
        ${reauth && html`<button type="button" onClick=${reauth.cancel}>${t('action.cancel')}</button>`}
      </div>
    </form>
    ${!mfa && !reauth && passkeysSupported() && html`<div class="passkey-first">
      <p id="signin-passkey-hint">${t('signin.passkey.intro')}</p>
      <${FieldProblems} id="signin-passkey" problems=${problems('webauthn')} />
      <div class="buttons">
        <button type="button" id="signin-passkey" disabled=${busy} onClick=${passkeyFirst}
          aria-describedby=${problems('webauthn').length ? 'signin-passkey-hint signin-passkey-problems' : 'signin-passkey-hint'}>${t('signin.passkey')}</button>
      </div>
    </div>`}
  </section>`;
}
