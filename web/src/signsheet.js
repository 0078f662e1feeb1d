// The signing sheet: what exactly is signed (terms hash and version), by
// whom, for which side, with which key (its fingerprint). The key is an
// Ed25519 pair made in this browser (WebCrypto, private key not
// extractable, kept in IndexedDB) and registered to the signer's account
// with a proof of possession (docs/iam.md, "Signing keys").
import { useEffect, useState } from 'preact/hooks';
import { api } from './api.js';
import { useContract } from './detail.js';
import { DiffSinceSigned } from './diff.js';
import { actions, liveSignature } from './lifecycle.js';
import { t } from './messages.js';
import { navigate } from './router.js';
import { b64url, fromHex, loadKey, sign } from './keystore.js';
import { registerKey } from './signkeys.js';
import { Party } from './parties.js';
import { ErrorSummary, Failure, Loading, StatusBadge, html } from './ui.js';

/** The browser's key for `me` if it is still an active key of the account. */
async function usableKey(me) {
  const rec = await loadKey(me.identity.id);
  if (!rec) return { rec: null, state: 'none' };
  const r = await api('GET', `/api/v1/identities/${me.identity.id}/keys`);
  const ok = r.body.keys.some((k) => k.id === rec.keyId && k.status === 'active');
  return ok ? { rec, state: 'ready' } : { rec: null, state: 'unregistered' };
}

export function SignSheet({ id, me, onReauth }) {
  const [state, reload] = useContract(id);
  const [key, setKey] = useState({ loading: true });
  const [step, setStep] = useState(null);
  const [error, setError] = useState(null);
  const [done, setDone] = useState(false);
  const supported = typeof crypto !== 'undefined' && !!crypto.subtle;

  useEffect(() => {
    usableKey(me).then(setKey, (e) => setKey({ error: e }));
  }, [me.identity.id]);

  if (state.loading) return html`<${Loading} />`;
  if (state.error) return html`<${Failure} error=${state.error} retry=${reload} />`;
  const c = state.contract;
  const a = actions(c, me).sign;
  const side = a.side;

  async function submit(ev) {
    ev.preventDefault();
    setError(null);
    try {
      let rec = key.rec;
      if (!rec) {
        setStep(t('sign.step.key'));
        rec = await registerKey(me);
        setKey({ rec, state: 'ready' });
      }
      setStep(t('sign.step.sign'));
      const sig = await sign(rec.privateKey, fromHex(c.terms_hash));
      await api('POST', `/api/v1/contracts/${c.id}/sign`, {
        json: { type: 'digital', terms_hash: c.terms_hash, key_id: rec.keyId, signature: b64url(sig) },
      });
      setDone(true);
      setStep(null);
      navigate(`/contracts/${c.id}`);
    } catch (e) {
      setStep(null);
      if (e?.code === 'reauthentication_required') e.message = t('errors.reauth');
      setError(e instanceof Error && !('status' in e) ? Object.assign(e, { message: t('sign.unsupported') + ' (' + e.message + ')' }) : e);
    }
  }

  const fp = key.rec?.fingerprint;
  return html`<section>
    <p><a href=${'#/contracts/' + c.id}>${t('sign.back')}</a></p>
    <h1 tabindex="-1">${t('sign.title')}</h1>
    <p>${t('sign.intro')}</p>
    <${ErrorSummary} error=${error} />
    ${error?.code === 'reauthentication_required' && html`<p><button type="button" onClick=${onReauth}>${t('errors.reauth.action')}</button></p>`}
    <dl class="facts sheet">
      <dt>${t('sign.contract')}</dt><dd>${c.title} <${StatusBadge} status=${c.status} /></dd>
      <dt>${t('sign.hash')}</dt><dd><code class="hash" data-testid="terms-hash">${c.terms_hash}</code></dd>
      <dt>${t('sign.version')}</dt><dd>${c.terms_version}</dd>
      <dt>${t('sign.parties')}</dt>
      <dd>${t('detail.provider')}: <${Party} id=${c.provider_id} name=${c.provider_name} />; ${t('detail.consumer')}: <${Party} id=${c.consumer_id} name=${c.consumer_name} /></dd>
      <dt>${t('sign.side')}</dt><dd>${side ? t('detail.' + side) : '—'}</dd>
      <dt>${t('sign.signer')}</dt><dd>${me.identity.name} (${me.identity.email ?? me.identity.id})</dd>
      <dt>${t('sign.method')}</dt><dd>${t('sign.method.digital')}</dd>
      <dt>${t('sign.key')}</dt>
      <dd>${key.error ? key.error.message : key.loading ? t('app.loading') : fp ? html`<code class="hash" data-testid="key-fingerprint">${fp}</code>` : key.state === 'unregistered' ? t('sign.key.unregistered') : t('sign.key.none')}</dd>
    </dl>
    <${DiffSinceSigned} contract=${c} me=${me} />
    ${!a.enabled && html`<p class="note" role="status">${a.why}</p>`}
    ${a.enabled && !done &&
    html`<form onSubmit=${submit}>
      <div class="field">
        <label class="check"><input type="checkbox" id="f-confirm" required /> ${t('sign.confirm')}</label>
      </div>
      ${!supported && html`<p class="note">${t('sign.unsupported')}</p>`}
      <div class="buttons">
        <button type="submit" class="primary" disabled=${!!step || key.loading || !!key.error || !supported}>${step ? t('sign.busy') : t('sign.submit')}</button>
      </div>
      <p role="status" aria-live="polite" class="live">${step}</p>
    </form>`}
    ${done && html`<p role="status">${t('sign.done')}</p>`}
  </section>`;
}
