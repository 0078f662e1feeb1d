// Sign in: e-mail and password, then (when the API answers mfa_required) an
// authenticator code or a recovery code against the single-use ticket.
import { useState } from 'preact/hooks';
import { login } from './api.js';
import { t } from './messages.js';
import { ErrorSummary, FieldProblems, fieldId, html } from './ui.js';

export function SignIn({ onDone, notice }) {
  const [mfa, setMfa] = useState(null);
  const [useRecovery, setUseRecovery] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const [email, setEmail] = useState(''); // kept when the second step starts again

  const problems = (field) => (error?.details ?? []).filter((d) => d.field === field);
  const fieldFor = (path) => (['email', 'password', 'totp', 'recovery_code'].includes(path) ? fieldId(path) : null);

  async function submit(ev) {
    ev.preventDefault();
    const f = new FormData(ev.currentTarget);
    setBusy(true);
    setError(null);
    try {
      const body = mfa
        ? useRecovery
          ? { mfa_ticket: mfa.ticket, recovery_code: f.get('recovery_code').trim() }
          : { mfa_ticket: mfa.ticket, totp: f.get('totp').trim() }
        : { email: f.get('email').trim(), password: f.get('password') };
      const r = await login(body);
      if (r.mfa) {
        setMfa(r.mfa);
        setUseRecovery(!r.mfa.factors.includes('totp') && r.mfa.factors.includes('recovery_code'));
      } else onDone();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  }

  const input = (name, label, type, extra = {}) => {
    const id = fieldId(name);
    const p = problems(name);
    return html`<div class="field">
      <label for=${id}>${label}</label>
      <input id=${id} name=${name} type=${type} required aria-invalid=${p.length ? 'true' : undefined}
        aria-describedby=${p.length ? id + '-problems' : undefined} ...${extra} />
      <${FieldProblems} id=${id} problems=${p} />
    </div>`;
  };

  return html`<section class="narrow">
    <h1 tabindex="-1">${mfa ? t('signin.mfa.title') : t('signin.title')}</h1>
    ${notice && html`<p class="note" role="status">${notice}</p>`}
    <${ErrorSummary} error=${error} fieldFor=${fieldFor} />
    <form onSubmit=${submit} novalidate aria-busy=${busy ? 'true' : 'false'}>
      ${!mfa &&
      html`${input('email', t('signin.email'), 'email', { autocomplete: 'username', autofocus: true, value: email, onInput: (e) => setEmail(e.currentTarget.value) })}
        ${input('password', t('signin.password'), 'password', { autocomplete: 'current-password' })}`}
      ${mfa &&
      html`<p>${t('signin.mfa.intro')}</p>
        ${useRecovery
          ? input('recovery_code', t('signin.mfa.recovery'), 'text', { autocomplete: 'off', autofocus: true, key: 'rc' })
          : input('totp', t('signin.mfa.totp'), 'text', { autocomplete: 'one-time-code', inputmode: 'numeric', autofocus: true, key: 'totp' })}
        ${mfa.factors.includes('totp') && mfa.factors.includes('recovery_code') &&
        html`<p><button type="button" class="link" onClick=${() => setUseRecovery(!useRecovery)}>
          ${useRecovery ? t('signin.mfa.use_totp') : t('signin.mfa.use_recovery')}</button></p>`}`}
      <div class="buttons">
        <button type="submit" class="primary" disabled=${busy}>${busy ? t('signin.busy') : mfa ? t('signin.mfa.submit') : t('signin.submit')}</button>
        ${mfa && html`<button type="button" onClick=${() => { setMfa(null); setError(null); }}>${t('signin.mfa.restart')}</button>`}
      </div>
    </form>
  </section>`;
}
