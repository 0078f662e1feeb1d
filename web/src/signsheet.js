// The signing sheet: what exactly is signed (terms hash and version), by
// whom, for which side, with which signature type (docs/contracts.md,
// "Signatures") and which key or passkey, and what changed since the
// version this signer last signed.
// - digital: an Ed25519 pair made in this browser (WebCrypto, private key
//   not extractable, kept in IndexedDB) and registered to the signer's
//   account with a proof of possession (docs/iam.md, "Signing keys");
// - mfa: the same signature plus a fresh code of the signer's confirmed
//   authenticator app (`totp_code`);
// - biometric: a WebAuthn assertion of one of the signer's passkeys whose
//   challenge is the 32 bytes of the terms hash, user verification required.
// A type the signer cannot use (no confirmed TOTP, no passkey, no WebAuthn
// or WebCrypto in this browser) is shown disabled with the reason; the API
// decides in the end, and each problem of its answer lands on its field.
import { useEffect, useState } from 'preact/hooks';
import { api } from './api.js';
import { useContract } from './detail.js';
import { DiffSinceSigned } from './diff.js';
import { actions } from './lifecycle.js';
import { t } from './messages.js';
import { navigate } from './router.js';
import { b64url, fromHex, loadKey, sign } from './keystore.js';
import { registerKey } from './signkeys.js';
import { Party } from './parties.js';
import { ErrorSummary, Failure, FieldProblems, Loading, StatusBadge, fieldId, html } from './ui.js';
import { assertionJSON, hashRequestOptions, passkeysSupported } from './webauthn.js';

const TYPES = ['digital', 'mfa', 'biometric'];
// Where the sign body's problems show: key_id, signature and side on the type choice.
const KNOWN = ['type', 'totp_code', 'assertion'];

/** The browser's key for `me` if it is still an active key of the account. */
async function usableKey(me) {
  const rec = await loadKey(me.identity.id);
  if (!rec) return { rec: null, state: 'none' };
  const r = await api('GET', `/api/v1/identities/${me.identity.id}/keys`);
  const ok = r.body.keys.some((k) => k.id === rec.keyId && k.status === 'active');
  return ok ? { rec, state: 'ready' } : { rec: null, state: 'unregistered' };
}

/** The signer's second factors: TOTP state and passkeys (none when the browser has no WebAuthn). */
async function factorsOf() {
  const [mfa, creds] = await Promise.all([
    api('GET', '/api/v1/mfa'),
    passkeysSupported() ? api('GET', '/api/v1/webauthn/credentials') : Promise.resolve({ body: { credentials: [] } }),
  ]);
  return { totp: mfa.body.totp, passkeys: creds.body.credentials };
}

/** Why `type` cannot be used now, or null. */
function whyNot(type, factors, cryptoOk) {
  if (type !== 'biometric' && !cryptoOk) return t('sign.type.why.webcrypto');
  if (type === 'digital') return null;
  if (factors.loading) return t('sign.type.checking');
  if (factors.error) return t('sign.type.why.unknown', { message: factors.error.message });
  if (type === 'mfa') return factors.totp === 'confirmed' ? null : factors.totp === 'pending' ? t('sign.type.why.pending_totp') : t('sign.type.why.no_totp');
  if (!passkeysSupported()) return t('sign.type.why.no_webauthn');
  return factors.passkeys.length ? null : t('sign.type.why.no_passkey');
}

const passkeyNames = (list) => list.map((c) => c.name ?? t('passkey.unnamed')).join(', ');

/** A failed navigator.credentials.get() in the catalog's words (browsers do not tell cancel, no passkey and no UV apart). */
function ceremonyError(e, names) {
  const msg =
    e?.name === 'NotAllowedError' || e?.name === 'AbortError'
      ? t('sign.passkey.refused', { names })
      : e?.name === 'SecurityError'
        ? t('sign.passkey.security')
        : t('sign.passkey.failed', { message: e?.message ?? String(e) });
  return Object.assign(new Error(msg), { ceremony: true });
}

export function SignSheet({ id, me, onReauth }) {
  const [state, reload] = useContract(id);
  const [key, setKey] = useState({ loading: true });
  const [factors, setFactors] = useState({ loading: true });
  const [type, setType] = useState('digital');
  const [code, setCode] = useState('');
  const [step, setStep] = useState(null);
  const [error, setError] = useState(null);
  const [done, setDone] = useState(false);
  const supported = typeof crypto !== 'undefined' && !!crypto.subtle;

  useEffect(() => {
    usableKey(me).then(setKey, (e) => setKey({ error: e }));
    factorsOf().then(
      (f) => {
        setFactors(f);
        if (!supported && f.passkeys.length) setType('biometric');
      },
      (e) => setFactors({ error: e }),
    );
  }, [me.identity.id]);

  if (state.loading) return html`<${Loading} />`;
  if (state.error) return html`<${Failure} error=${state.error} retry=${reload} />`;
  const c = state.contract;
  const a = actions(c, me).sign;
  const side = a.side;
  const passkeys = factors.passkeys ?? [];
  const why = Object.fromEntries(TYPES.map((k) => [k, whyNot(k, factors, supported)]));

  async function submit(ev) {
    ev.preventDefault();
    setError(null);
    try {
      let json;
      if (type === 'biometric') {
        setStep(t('sign.step.passkey'));
        let cred;
        try {
          cred = await navigator.credentials.get({ publicKey: hashRequestOptions(fromHex(c.terms_hash), passkeys) });
        } catch (e) {
          throw ceremonyError(e, passkeyNames(passkeys));
        }
        json = { type, terms_hash: c.terms_hash, assertion: assertionJSON(cred) };
      } else {
        let rec = key.rec;
        if (!rec) {
          setStep(t('sign.step.key'));
          rec = await registerKey(me);
          setKey({ rec, state: 'ready' });
        }
        setStep(t('sign.step.sign'));
        const sig = await sign(rec.privateKey, fromHex(c.terms_hash));
        json = { type, terms_hash: c.terms_hash, key_id: rec.keyId, signature: b64url(sig) };
        if (type === 'mfa') json.totp_code = code.replace(/\s+/g, '');
      }
      setStep(t('sign.step.sign'));
      await api('POST', `/api/v1/contracts/${c.id}/sign`, { json });
      setDone(true);
      setStep(null);
      navigate(`/contracts/${c.id}`);
    } catch (e) {
      setStep(null);
      if (e?.code === 'reauthentication_required') e.message = t('errors.reauth');
      const local = e instanceof Error && !('status' in e) && !e.ceremony; // WebCrypto or IndexedDB refused
      setError(local ? Object.assign(e, { message: t('sign.unsupported') + ' (' + e.message + ')' }) : e);
    }
  }

  // Each problem of the API's answer on its field (by the first member of its JSON path), all in the summary.
  const placeOf = (path) => {
    const top = (path ?? '').split(/[.[]/)[0];
    return ['key_id', 'signature', 'side'].includes(top) ? 'type' : top;
  };
  const at = (path) => (error?.details ?? []).filter((d) => placeOf(d.field) === path);
  const focusFor = (path) => (KNOWN.includes(placeOf(path)) ? fieldId(placeOf(path)) : null);
  const typeProblems = at('type');
  const codeProblems = at('totp_code');
  const assertionProblems = at('assertion');
  const described = (...ids) => ids.filter(Boolean).join(' ') || undefined;

  const fp = key.rec?.fingerprint;
  const keyFact =
    type === 'biometric'
      ? html`<dt>${t('sign.passkey')}</dt>
          <dd data-testid="passkey-name">${factors.loading ? t('app.loading') : passkeys.length === 1 ? passkeyNames(passkeys) : passkeys.length ? t('sign.passkey.any', { names: passkeyNames(passkeys) }) : t('sign.type.why.no_passkey')}</dd>`
      : html`<dt>${t('sign.key')}</dt>
          <dd>${key.error ? key.error.message : key.loading ? t('app.loading') : fp ? html`<code class="hash" data-testid="key-fingerprint">${fp}</code>` : key.state === 'unregistered' ? t('sign.key.unregistered') : t('sign.key.none')}</dd>`;
  const ready = type === 'biometric' ? !why.biometric : !key.loading && !key.error && !why[type];

  return html`<section>
    <p><a href=${'#/contracts/' + c.id}>${t('sign.back')}</a></p>
    <h1 tabindex="-1">${t('sign.title')}</h1>
    <p>${t('sign.intro')}</p>
    <${ErrorSummary} error=${error} fieldFor=${focusFor} />
    ${error?.code === 'reauthentication_required' && html`<p><button type="button" onClick=${onReauth}>${t('errors.reauth.action')}</button></p>`}
    <dl class="facts sheet">
      <dt>${t('sign.contract')}</dt><dd>${c.title} <${StatusBadge} status=${c.status} /></dd>
      <dt>${t('sign.hash')}</dt><dd><code class="hash" data-testid="terms-hash">${c.terms_hash}</code></dd>
      <dt>${t('sign.version')}</dt><dd>${c.terms_version}</dd>
      <dt>${t('sign.parties')}</dt>
      <dd>${t('detail.provider')}: <${Party} id=${c.provider_id} name=${c.provider_name} />; ${t('detail.consumer')}: <${Party} id=${c.consumer_id} name=${c.consumer_name} /></dd>
      <dt>${t('sign.side')}</dt><dd>${side ? t('detail.' + side) : '—'}</dd>
      <dt>${t('sign.signer')}</dt><dd>${me.identity.name} (${me.identity.email ?? me.identity.id})</dd>
      <dt>${t('sign.method')}</dt><dd data-testid="sign-method">${t('sign.method.' + type)}</dd>
      ${keyFact}
    </dl>
    <${DiffSinceSigned} contract=${c} me=${me} />
    ${!a.enabled && html`<p class="note" role="status">${a.why}</p>`}
    ${a.enabled && !done &&
    html`<form onSubmit=${submit}>
      <fieldset class=${typeProblems.length ? 'field invalid' : 'field'} id=${fieldId('type')} tabindex="-1"
        aria-describedby=${typeProblems.length ? fieldId('type') + '-problems' : undefined}>
        <legend>${t('sign.type')}</legend>
        ${TYPES.map(
          (k) => html`<div class="sign-type">
            <label class="check"><input type="radio" name="type" value=${k} checked=${type === k} disabled=${!!why[k] || !!step}
              aria-describedby=${why[k] ? 'why-type-' + k : undefined} onChange=${() => { setType(k); setError(null); }} /> ${t('sign.type.' + k)}</label>
            ${why[k] && html`<span class="why" id=${'why-type-' + k}>${why[k]}${k !== 'digital' && !factors.loading && !factors.error && html` <a href="#/account">${t('sign.type.account')}</a>`}</span>`}
          </div>`,
        )}
        <${FieldProblems} id=${fieldId('type')} problems=${typeProblems} />
      </fieldset>
      ${type === 'mfa' &&
      html`<div class=${codeProblems.length ? 'field invalid' : 'field'}>
        <label for=${fieldId('totp_code')}>${t('sign.totp')}</label>
        <input id=${fieldId('totp_code')} name="totp_code" required inputmode="numeric" autocomplete="one-time-code" maxlength="8" value=${code}
          onInput=${(e) => setCode(e.currentTarget.value)} aria-invalid=${codeProblems.length ? 'true' : undefined}
          aria-describedby=${described(fieldId('totp_code') + '-hint', codeProblems.length && fieldId('totp_code') + '-problems')} />
        <span class="hint" id=${fieldId('totp_code') + '-hint'}>${t('sign.totp.hint')}</span>
        <${FieldProblems} id=${fieldId('totp_code')} problems=${codeProblems} />
      </div>`}
      ${(type === 'biometric' || assertionProblems.length > 0) &&
      html`<div class=${assertionProblems.length ? 'field invalid' : 'field'} id=${fieldId('assertion')} tabindex="-1"
        aria-describedby=${assertionProblems.length ? fieldId('assertion') + '-problems' : undefined}>
        <p class="hint">${t('sign.passkey.hint')}</p>
        <${FieldProblems} id=${fieldId('assertion')} problems=${assertionProblems} />
      </div>`}
      <div class="field">
        <label class="check"><input type="checkbox" id="f-confirm" required /> ${t('sign.confirm')}</label>
      </div>
      ${!supported && html`<p class="note">${t('sign.unsupported')}</p>`}
      <div class="buttons">
        <button type="submit" class="primary" disabled=${!!step || !ready}>${step ? t('sign.busy') : t('sign.submit')}</button>
      </div>
      <p role="status" aria-live="polite" class="live">${step}</p>
    </form>`}
    ${done && html`<p role="status">${t('sign.done')}</p>`}
  </section>`;
}
