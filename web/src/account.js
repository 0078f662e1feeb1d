// The account screen (#/account): the second factors (TOTP with a QR code
// and recovery codes; passkeys), the signing keys (made or imported in this
// browser), API keys for service identities (admins) and the sessions.
// Credential changes need a recent login: a 403 reauthentication_required
// opens a sign-in dialog and the change is retried once after it.
import { useEffect, useRef, useState } from 'preact/hooks';
import { encode } from 'uqr';
import { api, reauthenticate } from './api.js';
import { fingerprint, fromB64url, loadKey } from './keystore.js';
import { fmtDate, t, tn } from './messages.js';
import { SignIn, passkeyError } from './signin.js';
import { importPem, registerKey } from './signkeys.js';
import { Empty, ErrorSummary, Failure, FieldProblems, Loading, html, saveBlob } from './ui.js';
import { creationOptions, passkeysSupported, registrationJSON } from './webauthn.js';

/** {loading} | {data} | {error}, with a reload. */
function useLoad(fn, deps = []) {
  const [state, setState] = useState({ loading: true });
  async function load() {
    setState((s) => ({ ...s, loading: true, error: null }));
    try {
      setState({ data: await fn() });
    } catch (e) {
      setState({ error: e });
    }
  }
  useEffect(() => {
    load();
  }, deps);
  return [state, load];
}

/** The problems of an ApiError about `field` (its JSON path, or a path below it). */
function problemsOf(error, field) {
  return (error?.details ?? []).filter((d) => d.field === field || d.field.startsWith(field + '.') || d.field.startsWith(field + '['));
}

/** An error the summary shows: the message, and only the problems no field of the form shows. */
function unplaced(error, fields) {
  if (!error) return null;
  const rest = (error.details ?? []).filter((d) => !fields.some((f) => problemsOf({ details: [d] }, f).length));
  return { message: error.message, details: rest };
}

function Field({ id, label, error, field, hint, children }) {
  const pr = problemsOf(error, field);
  return html`<div class=${pr.length ? 'field invalid' : 'field'}>
    <label for=${id}>${label}</label>
    ${hint && html`<p class="hint" id=${id + '-hint'}>${hint}</p>`}
    ${children({ id, invalid: pr.length ? 'true' : undefined, describedby: [hint && id + '-hint', pr.length && id + '-problems'].filter(Boolean).join(' ') || undefined })}
    <${FieldProblems} id=${id} problems=${pr} />
  </div>`;
}

/**
 * Runs credential changes: on 403 reauthentication_required the user signs
 * in again in a dialog, then the change runs once more. Returns [run, dialog].
 */
function useStepUp(me) {
  const [ask, setAsk] = useState(null);
  const ref = useRef(null);
  useEffect(() => {
    if (ask && ref.current && !ref.current.open) ref.current.showModal();
  }, [ask]);
  async function run(fn) {
    try {
      return await fn();
    } catch (e) {
      if (e?.code !== 'reauthentication_required') throw e;
      await new Promise((resolve, reject) => setAsk({ resolve, reject: () => reject(Object.assign(e, { message: t('errors.reauth') })) }));
      return fn();
    }
  }
  function end(ok) {
    const a = ask;
    setAsk(null);
    ref.current?.close();
    if (a) (ok ? a.resolve : a.reject)();
  }
  const dialog = html`<dialog ref=${ref} aria-labelledby="reauth-title" onCancel=${(e) => { e.preventDefault(); end(false); }}>
    ${ask && html`<${SignIn} reauth=${{ email: me.identity.email ?? '', cancel: () => end(false) }} notice=${t('reauth.why')} doLogin=${reauthenticate} onDone=${() => end(true)} />`}
  </dialog>`;
  return [run, dialog];
}

/** A QR code as SVG paths: always dark modules on a light ground, whatever the theme. */
export function Qr({ text, label }) {
  const { size, data } = encode(text, { ecc: 'M', border: 4 });
  let d = '';
  data.forEach((row, y) => row.forEach((on, x) => { if (on) d += `M${x} ${y}h1v1h-1z`; }));
  return html`<svg class="qr" data-testid="totp-qr" viewBox=${`0 0 ${size} ${size}`} role="img" aria-label=${label} shape-rendering="crispEdges">
    <rect width=${size} height=${size} fill="#ffffff" /><path d=${d} fill="#000000" />
  </svg>`;
}

const download = (name, text) => saveBlob(new Blob([text], { type: 'text/plain;charset=utf-8' }), name);

/** Recovery codes, shown this once: copy, download, print. */
function RecoveryCodes({ codes, onDone }) {
  const [copied, setCopied] = useState(null);
  const text = codes.join('\n') + '\n';
  async function copy() {
    try {
      await navigator.clipboard.writeText(text);
      setCopied(t('recovery.copied'));
    } catch {
      setCopied(t('recovery.copy_failed'));
    }
  }
  return html`<div class="recovery" data-testid="recovery-codes">
    <h3>${t('recovery.title')}</h3>
    <p>${t('recovery.once')}</p>
    <ol class="codes">${codes.map((c) => html`<li><code>${c}</code></li>`)}</ol>
    <div class="buttons no-print">
      <button type="button" onClick=${copy}>${t('recovery.copy')}</button>
      <button type="button" onClick=${() => download('dcms-recovery-codes.txt', text)}>${t('recovery.download')}</button>
      <button type="button" onClick=${() => window.print()}>${t('recovery.print')}</button>
      <button type="button" class="primary" onClick=${onDone}>${t('recovery.saved')}</button>
    </div>
    <p role="status" aria-live="polite" class="live no-print">${copied}</p>
  </div>`;
}

function groups(secret) {
  return secret.replace(/(.{4})/g, '$1 ').trim();
}

function Totp({ mfa, reloadMfa, run }) {
  const [enrol, setEnrol] = useState(null); // {secret, otpauth_uri}: the pending secret, kept across wrong codes
  const [codes, setCodes] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const [code, setCode] = useState('');

  async function act(fn) {
    setBusy(true);
    setError(null);
    try {
      await fn();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  }
  const start = () => act(async () => setEnrol((await run(() => api('POST', '/api/v1/mfa/totp/enroll'))).body));
  const confirm = (ev) => {
    ev.preventDefault();
    act(async () => {
      const r = await run(() => api('POST', '/api/v1/mfa/totp/confirm', { json: { code: code.trim() } }));
      setEnrol(null);
      setCode('');
      setCodes(r.body.recovery_codes);
      reloadMfa();
    });
  };
  const withCode = (path, after) => (ev) => {
    ev.preventDefault();
    act(async () => {
      const r = await run(() => api('POST', path, { json: { code: code.trim() } }));
      setCode('');
      after(r);
      reloadMfa();
    });
  };
  const regenerate = withCode('/api/v1/mfa/recovery-codes', (r) => setCodes(r.body.recovery_codes));
  const disable = withCode('/api/v1/mfa/totp/disable', () => setCodes(null));

  const codeField = (label) => html`<${Field} id="f-totp-code" label=${label} error=${error} field="code">
    ${(a) => html`<input id=${a.id} name="code" inputmode="numeric" autocomplete="one-time-code" required pattern="[0-9]{6}" maxlength="6" class="short"
      value=${code} onInput=${(e) => setCode(e.currentTarget.value)} aria-invalid=${a.invalid} aria-describedby=${a.describedby} />`}
  </${Field}>`;
  const summary = html`<${ErrorSummary} error=${unplaced(error, ['code'])} refocus=${false} />`;

  let body;
  if (codes) body = html`<${RecoveryCodes} codes=${codes} onDone=${() => setCodes(null)} />`;
  else if (enrol)
    body = html`<div class="enrol">
      <p>${t('totp.scan')}</p>
      <${Qr} text=${enrol.otpauth_uri} label=${t('totp.qr')} />
      <p>${t('totp.manual')}</p>
      <p><code class="secret" data-testid="totp-secret">${groups(enrol.secret)}</code></p>
      ${summary}
      <form onSubmit=${confirm} novalidate>
        ${codeField(t('totp.code'))}
        <div class="buttons">
          <button type="submit" class="primary" disabled=${busy}>${t('totp.confirm')}</button>
          <button type="button" onClick=${() => { setEnrol(null); setError(null); }}>${t('action.cancel')}</button>
        </div>
      </form>
    </div>`;
  else if (mfa.totp === 'confirmed')
    body = html`<div>
      <p><span class="badge badge-active">${t('totp.on')}</span>${' '}
        <span data-testid="recovery-left">${tn('totp.left', mfa.recovery_codes_remaining)}</span></p>
      ${summary}
      <form novalidate onSubmit=${regenerate}>
        ${codeField(t('totp.current'))}
        <div class="buttons">
          <button type="submit" disabled=${busy}>${t('totp.regenerate')}</button>
          <button type="button" class="danger" disabled=${busy} onClick=${disable}>${t('totp.disable')}</button>
        </div>
      </form>
    </div>`;
  else
    body = html`<div>
      <p>${mfa.totp === 'pending' ? t('totp.pending') : t('totp.none')}</p>
      ${summary}
      <div class="buttons"><button type="button" class="primary" disabled=${busy} onClick=${start}>${t('totp.start')}</button></div>
    </div>`;

  return html`<section class="card" aria-labelledby="h-totp">
    <h2 id="h-totp">${t('totp.title')}</h2>
    ${body}
  </section>`;
}

function Passkeys({ mfa, reloadMfa, run }) {
  const [list, reload] = useLoad(async () => (await api('GET', '/api/v1/webauthn/credentials')).body.credentials);
  const [name, setName] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const [removing, setRemoving] = useState(null);
  const [rowError, setRowError] = useState(null);
  const [done, setDone] = useState(null);
  const supported = passkeysSupported();

  async function add(ev) {
    ev.preventDefault();
    setBusy(true);
    setError(null);
    setDone(null);
    try {
      const created = await run(async () => {
        const opts = (await api('POST', '/api/v1/webauthn/register/options', { json: {} })).body;
        let cred;
        try {
          cred = await navigator.credentials.create({ publicKey: creationOptions(opts) });
        } catch (e) {
          throw passkeyError(e);
        }
        return (await api('POST', '/api/v1/webauthn/register/verify', { json: registrationJSON(cred, name.trim() || undefined) })).body;
      });
      setName('');
      setDone(t('passkey.added', { name: created.name ?? t('passkey.unnamed') }));
      reload();
      reloadMfa();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  }

  async function remove(c) {
    setRowError(null);
    try {
      await run(() => api('DELETE', `/api/v1/webauthn/credentials/${encodeURIComponent(c.id)}`));
      setRemoving(null);
      setDone(t('passkey.removed', { name: c.name ?? t('passkey.unnamed') }));
      reload();
      reloadMfa();
    } catch (e) {
      setRowError({ id: c.id, error: e });
    }
  }

  // Never the last second factor: with one passkey and no TOTP, add another factor first.
  const lastFactor = list.data?.length === 1 && mfa.totp !== 'confirmed';
  let table;
  if (list.loading && !list.data) table = html`<${Loading} label=${t('passkey.loading')} />`;
  else if (list.error) table = html`<${Failure} error=${list.error} retry=${reload} />`;
  else if (!list.data.length) table = html`<${Empty}><p>${t('passkey.empty')}</p></${Empty}>`;
  else
    table = html`<table class="cards">
      <caption class="visually-hidden">${t('passkey.title')}</caption>
      <thead><tr><th scope="col">${t('passkey.col.name')}</th><th scope="col">${t('passkey.col.created')}</th><th scope="col">${t('passkey.col.used')}</th><th scope="col">${t('passkey.col.actions')}</th></tr></thead>
      <tbody>
        ${list.data.map(
          (c) => html`<tr data-passkey=${c.id}>
            <td>${c.name ?? t('passkey.unnamed')}</td>
            <td>${fmtDate(c.created_at)}</td>
            <td>${c.last_used_at ? fmtDate(c.last_used_at) : t('passkey.never')}</td>
            <td>
              ${removing === c.id
                ? html`<span class="confirm">${t('passkey.remove.confirm', { name: c.name ?? t('passkey.unnamed') })}
                    <button type="button" class="danger" onClick=${() => remove(c)}>${t('passkey.remove')}</button>
                    <button type="button" onClick=${() => { setRemoving(null); setRowError(null); }}>${t('action.cancel')}</button></span>`
                : html`<button type="button" class="danger" aria-disabled=${lastFactor ? 'true' : undefined}
                    aria-describedby=${lastFactor ? 'passkey-last' : undefined}
                    aria-label=${t('passkey.remove.named', { name: c.name ?? t('passkey.unnamed') })}
                    onClick=${() => !lastFactor && setRemoving(c.id)}>${t('passkey.remove')}</button>`}
              ${rowError?.id === c.id &&
              html`<div class="field-problems" role="alert"><p>${rowError.error.message}</p>
                ${(rowError.error.details ?? []).map((d) => html`<p><code>${d.field}</code> ${d.problem}</p>`)}</div>`}
            </td>
          </tr>`,
        )}
      </tbody>
    </table>
    ${lastFactor && html`<p class="why" id="passkey-last">${t('passkey.last')}</p>`}`;

  return html`<section class="card" aria-labelledby="h-passkeys">
    <h2 id="h-passkeys">${t('passkey.title')}</h2>
    <p>${t('passkey.intro')}</p>
    ${table}
    <p role="status" aria-live="polite" class="live">${done}</p>
    ${!supported
      ? html`<p class="note">${t('passkey.unsupported')}</p>`
      : html`<form onSubmit=${add} novalidate>
          <${ErrorSummary} error=${unplaced(error, ['name'])} refocus=${false} />
          <${Field} id="f-passkey-name" label=${t('passkey.name')} error=${error} field="name" hint=${t('passkey.name.hint')}>
            ${(a) => html`<input id=${a.id} maxlength="100" value=${name} onInput=${(e) => setName(e.currentTarget.value)} aria-invalid=${a.invalid} aria-describedby=${a.describedby} />`}
          </${Field}>
          <div class="buttons"><button type="submit" class="primary" disabled=${busy}>${busy ? t('passkey.adding') : t('passkey.add')}</button></div>
        </form>`}
  </section>`;
}

function SigningKeys({ me, run }) {
  const id = me.identity.id;
  const [list, reload] = useLoad(async () => {
    const keys = (await api('GET', `/api/v1/identities/${id}/keys`)).body.keys;
    const local = await loadKey(id).catch(() => undefined);
    for (const k of keys) k.fingerprint = await fingerprint(fromB64url(k.public_key));
    return { keys, local: local?.keyId ?? null };
  }, [id]);
  const [name, setName] = useState('');
  const [pem, setPem] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const [done, setDone] = useState(null);
  const [confirmRevoke, setConfirmRevoke] = useState(null);
  const [rowError, setRowError] = useState(null);
  const supported = typeof crypto !== 'undefined' && !!crypto.subtle;

  async function act(fn, msg, fail = setError) {
    setBusy(true);
    setError(null);
    setRowError(null);
    setDone(null);
    try {
      const rec = await run(fn);
      setDone(t(msg, { fingerprint: rec?.fingerprint ?? '' }));
      setName('');
      reload();
    } catch (e) {
      fail(e);
    } finally {
      setBusy(false);
    }
  }
  const generateKey = () => act(() => registerKey(me, { name: name.trim() || undefined }), 'keys.generated');
  const importKey = async (ev) => {
    ev.preventDefault();
    let pair;
    try {
      pair = await importPem(pem);
    } catch (e) {
      setError({ message: t('keys.import.invalid'), details: [{ field: 'pem', problem: e.message }] });
      return;
    }
    setPem('');
    act(() => registerKey(me, { pair, name: name.trim() || undefined }), 'keys.imported');
  };
  const rotate = (k) => act(() => registerKey(me, { rotate: k.id, name: k.name ?? undefined }), 'keys.rotated', (e) => setRowError({ id: k.id, error: e }));
  const revoke = (k) =>
    act(async () => {
      await api('DELETE', `/api/v1/identities/${id}/keys/${encodeURIComponent(k.id)}`);
      setConfirmRevoke(null);
    }, 'keys.revoked', (e) => setRowError({ id: k.id, error: e }));

  let table;
  if (list.loading && !list.data) table = html`<${Loading} label=${t('keys.loading')} />`;
  else if (list.error) table = html`<${Failure} error=${list.error} retry=${reload} />`;
  else if (!list.data.keys.length) table = html`<${Empty}><p>${t('keys.empty')}</p></${Empty}>`;
  else
    table = html`<table class="cards">
      <caption class="visually-hidden">${t('keys.title')}</caption>
      <thead><tr><th scope="col">${t('keys.col.name')}</th><th scope="col">${t('keys.col.fingerprint')}</th><th scope="col">${t('keys.col.status')}</th><th scope="col">${t('keys.col.created')}</th><th scope="col">${t('keys.col.actions')}</th></tr></thead>
      <tbody>
        ${list.data.keys.map((k) => {
          const here = k.id === list.data.local;
          return html`<tr data-key=${k.id}>
            <td>${k.name ?? '—'} ${here && html`<span class="badge">${t('keys.here')}</span>`}</td>
            <td><code class="hash" data-testid="key-fp">${k.fingerprint}</code></td>
            <td><span class=${'badge badge-' + (k.status === 'active' ? 'active' : 'terminated')}>${t('keys.status.' + k.status)}</span>
              ${k.revoked_at && html` ${fmtDate(k.revoked_at)}`}</td>
            <td>${fmtDate(k.created_at)}</td>
            <td>${k.status === 'active' &&
              (confirmRevoke === k.id
                ? html`<span class="confirm">${t('keys.revoke.confirm')}
                    <button type="button" class="danger" disabled=${busy} onClick=${() => revoke(k)}>${t('keys.revoke')}</button>
                    <button type="button" onClick=${() => setConfirmRevoke(null)}>${t('action.cancel')}</button></span>`
                : html`<span class="row-actions">
                    <button type="button" disabled=${busy || !supported} aria-label=${t('keys.rotate.named', { name: k.name ?? k.fingerprint.slice(0, 16) })} onClick=${() => rotate(k)}>${t('keys.rotate')}</button>
                    <button type="button" class="danger" disabled=${busy} aria-label=${t('keys.revoke.named', { name: k.name ?? k.fingerprint.slice(0, 16) })} onClick=${() => setConfirmRevoke(k.id)}>${t('keys.revoke')}</button></span>`)}
              ${rowError?.id === k.id && html`<p class="field-problems" role="alert">${rowError.error.message}</p>`}
            </td>
          </tr>`;
        })}
      </tbody>
    </table>`;

  return html`<section class="card" aria-labelledby="h-keys">
    <h2 id="h-keys">${t('keys.title')}</h2>
    <p>${t('keys.intro')}</p>
    ${table}
    <p role="status" aria-live="polite" class="live">${done}</p>
    ${!supported && html`<p class="note">${t('sign.unsupported')}</p>`}
    <${ErrorSummary} error=${unplaced(error, ['name', 'pem'])} refocus=${false} />
    <form onSubmit=${(e) => { e.preventDefault(); generateKey(); }} novalidate>
      <${Field} id="f-key-name" label=${t('keys.name')} error=${error} field="name" hint=${t('keys.name.hint')}>
        ${(a) => html`<input id=${a.id} maxlength="100" value=${name} onInput=${(e) => setName(e.currentTarget.value)} aria-invalid=${a.invalid} aria-describedby=${a.describedby} />`}
      </${Field}>
      <div class="buttons"><button type="submit" class="primary" disabled=${busy || !supported}>${t('keys.generate')}</button></div>
    </form>
    <details class="import">
      <summary>${t('keys.import')}</summary>
      <form onSubmit=${importKey} novalidate>
        <${Field} id="f-key-pem" label=${t('keys.import.pem')} error=${error} field="pem" hint=${t('keys.import.hint')}>
          ${(a) => html`<textarea id=${a.id} class="code" rows="4" autocomplete="off" spellcheck="false" value=${pem} onInput=${(e) => setPem(e.currentTarget.value)} aria-invalid=${a.invalid} aria-describedby=${a.describedby}></textarea>`}
        </${Field}>
        <div class="buttons"><button type="submit" disabled=${busy || !supported}>${t('keys.import.submit')}</button></div>
      </form>
    </details>
  </section>`;
}

const in90days = () => new Date(Date.now() + 90 * 86400e3).toISOString().slice(0, 10);

function ApiKeys({ run }) {
  const [list, reload] = useLoad(async () => {
    const [keys, services] = await Promise.all([
      api('GET', '/api/v1/api-keys'),
      api('GET', '/api/v1/identities?kind=service&limit=200'),
    ]);
    return { keys: keys.body.api_keys, services: services.body.identities };
  });
  const [form, setForm] = useState({ identity_id: '', name: '', permissions: '', expires: in90days() });
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const [created, setCreated] = useState(null);
  const [rowError, setRowError] = useState(null);
  const set = (k) => (e) => setForm({ ...form, [k]: e.currentTarget.value });

  async function create(ev) {
    ev.preventDefault();
    setBusy(true);
    setError(null);
    setCreated(null);
    try {
      const json = {
        name: form.name.trim(),
        identity_id: form.identity_id || list.data?.services[0]?.id,
        permissions: form.permissions.split(/[\s,]+/).filter(Boolean),
        expires_at: form.expires ? new Date(form.expires + 'T23:59:59Z').toISOString().replace(/\.\d+Z$/, 'Z') : '',
      };
      const r = await run(() => api('POST', '/api/v1/api-keys', { json }));
      setCreated(r.body);
      setForm({ ...form, name: '', permissions: '' });
      reload();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  }
  async function revoke(k) {
    setRowError(null);
    try {
      await api('DELETE', `/api/v1/api-keys/${encodeURIComponent(k.id)}`);
      reload();
    } catch (e) {
      setRowError({ id: k.id, error: e });
    }
  }

  const nameOf = (iid) => list.data?.services.find((s) => s.id === iid)?.name ?? iid;
  let table;
  if (list.loading && !list.data) table = html`<${Loading} label=${t('apikeys.loading')} />`;
  else if (list.error) table = html`<${Failure} error=${list.error} retry=${reload} />`;
  else if (!list.data.keys.length) table = html`<${Empty}><p>${t('apikeys.empty')}</p></${Empty}>`;
  else
    table = html`<table class="cards">
      <caption class="visually-hidden">${t('apikeys.title')}</caption>
      <thead><tr><th scope="col">${t('apikeys.col.name')}</th><th scope="col">${t('apikeys.col.identity')}</th><th scope="col">${t('apikeys.col.scope')}</th><th scope="col">${t('apikeys.col.expires')}</th><th scope="col">${t('apikeys.col.status')}</th><th scope="col">${t('apikeys.col.actions')}</th></tr></thead>
      <tbody>
        ${list.data.keys.map(
          (k) => html`<tr>
            <td>${k.name}</td><td>${nameOf(k.identity_id)}</td><td><code>${k.permissions.join(' ')}</code></td>
            <td>${fmtDate(k.expires_at)}</td><td>${t('apikeys.status.' + k.status)}</td>
            <td>${k.status === 'active' && html`<button type="button" class="danger" aria-label=${t('apikeys.revoke.named', { name: k.name })} onClick=${() => revoke(k)}>${t('apikeys.revoke')}</button>`}
              ${rowError?.id === k.id && html`<p class="field-problems" role="alert">${rowError.error.message}</p>`}</td>
          </tr>`,
        )}
      </tbody>
    </table>`;

  const services = list.data?.services ?? [];
  const fields = ['identity_id', 'name', 'permissions', 'expires_at'];
  return html`<section class="card" aria-labelledby="h-apikeys">
    <h2 id="h-apikeys">${t('apikeys.title')}</h2>
    <p>${t('apikeys.intro')}</p>
    ${table}
    ${created &&
    html`<div class="note" role="status" data-testid="apikey-created">
      <p><strong>${t('apikeys.created', { name: created.name })}</strong></p>
      <p><code class="hash">${created.key}</code></p>
      <div class="buttons"><button type="button" onClick=${() => navigator.clipboard?.writeText(created.key).catch(() => {})}>${t('recovery.copy')}</button>
        <button type="button" onClick=${() => setCreated(null)}>${t('apikeys.hide')}</button></div>
    </div>`}
    ${list.data && !services.length && html`<p class="note">${t('apikeys.noservices')}</p>`}
    ${services.length > 0 &&
    html`<form onSubmit=${create} novalidate>
      <h3>${t('apikeys.new')}</h3>
      <${ErrorSummary} error=${unplaced(error, fields)} refocus=${false} />
      <${Field} id="f-apikey-identity" label=${t('apikeys.identity')} error=${error} field="identity_id">
        ${(a) => html`<select id=${a.id} value=${form.identity_id || services[0].id} onChange=${set('identity_id')} aria-invalid=${a.invalid} aria-describedby=${a.describedby}>
          ${services.map((s) => html`<option value=${s.id}>${s.name}</option>`)}</select>`}
      </${Field}>
      <${Field} id="f-apikey-name" label=${t('apikeys.name')} error=${error} field="name">
        ${(a) => html`<input id=${a.id} maxlength="255" value=${form.name} onInput=${set('name')} aria-invalid=${a.invalid} aria-describedby=${a.describedby} />`}
      </${Field}>
      <${Field} id="f-apikey-permissions" label=${t('apikeys.permissions')} error=${error} field="permissions" hint=${t('apikeys.permissions.hint')}>
        ${(a) => html`<input id=${a.id} value=${form.permissions} onInput=${set('permissions')} aria-invalid=${a.invalid} aria-describedby=${a.describedby} />`}
      </${Field}>
      <${Field} id="f-apikey-expires" label=${t('apikeys.expires')} error=${error} field="expires_at">
        ${(a) => html`<input id=${a.id} type="date" value=${form.expires} onInput=${set('expires')} aria-invalid=${a.invalid} aria-describedby=${a.describedby} />`}
      </${Field}>
      <div class="buttons"><button type="submit" class="primary" disabled=${busy}>${t('apikeys.create')}</button></div>
    </form>`}
  </section>`;
}

const AMR = { pwd: 'session.amr.pwd', otp: 'session.amr.otp', hwk: 'session.amr.hwk', mfa: 'session.amr.mfa', user: 'session.amr.user' };

function Sessions({ onSignOut }) {
  const [list, reload] = useLoad(async () => (await api('GET', '/api/v1/auth/sessions')).body.sessions);
  const [rowError, setRowError] = useState(null);
  async function revoke(s) {
    setRowError(null);
    try {
      await api('DELETE', `/api/v1/auth/sessions/${encodeURIComponent(s.id)}`);
      reload();
    } catch (e) {
      setRowError({ id: s.id, error: e });
    }
  }
  const methods = (s) => (s.amr ?? []).map((a) => t(AMR[a] ?? a)).join(', ') || '—';
  let table;
  if (list.loading && !list.data) table = html`<${Loading} label=${t('session.loading')} />`;
  else if (list.error) table = html`<${Failure} error=${list.error} retry=${reload} />`;
  else if (!list.data.length) table = html`<${Empty}><p>${t('session.empty')}</p></${Empty}>`;
  else
    table = html`<table class="cards" data-testid="sessions">
      <caption class="visually-hidden">${t('session.title')}</caption>
      <thead><tr><th scope="col">${t('session.col.started')}</th><th scope="col">${t('session.methods')}</th><th scope="col">${t('session.col.active')}</th><th scope="col">${t('session.col.expires')}</th><th scope="col">${t('apikeys.col.actions')}</th></tr></thead>
      <tbody>
        ${list.data.map(
          (s) => html`<tr data-session=${s.id}>
            <td>${fmtDate(s.created_at)} ${s.current && html`<span class="badge">${t('session.current')}</span>`}</td>
            <td>${methods(s)}</td><td>${fmtDate(s.last_active_at)}</td><td>${fmtDate(s.expires_at)}</td>
            <td>${s.current
              ? html`<button type="button" onClick=${onSignOut}>${t('session.signout')}</button>`
              : html`<button type="button" class="danger" aria-label=${t('session.revoke.named', { when: fmtDate(s.created_at) })} onClick=${() => revoke(s)}>${t('session.revoke')}</button>`}
              ${rowError?.id === s.id && html`<p class="field-problems" role="alert">${rowError.error.message}</p>`}</td>
          </tr>`,
        )}
      </tbody>
    </table>`;
  return html`<section class="card" aria-labelledby="h-session">
    <h2 id="h-session">${t('session.title')}</h2>
    <p class="hint">${t('session.others')}</p>
    ${table}
  </section>`;
}

export function Account({ me, onSignOut }) {
  const [mfa, reloadMfa] = useLoad(async () => (await api('GET', '/api/v1/mfa')).body);
  const [run, dialog] = useStepUp(me);
  const admin = (me.token?.roles ?? me.identity.roles ?? []).includes('admin');

  let factors;
  if (mfa.loading && !mfa.data) factors = html`<${Loading} label=${t('account.loading')} />`;
  else if (mfa.error) factors = html`<${Failure} error=${mfa.error} retry=${reloadMfa} />`;
  else
    factors = html`<${Totp} mfa=${mfa.data} reloadMfa=${reloadMfa} run=${run} />
      <${Passkeys} mfa=${mfa.data} reloadMfa=${reloadMfa} run=${run} />`;

  return html`<section class="account">
    <h1 tabindex="-1">${t('account.title')}</h1>
    <p>${t('account.intro', { name: me.identity.name, email: me.identity.email ?? me.identity.id })}</p>
    ${mfa.data && html`<p data-testid="factors">${mfa.data.factors.length ? t('account.factors', { list: mfa.data.factors.map((f) => t('factor.' + f)).join(', ') }) : t('account.nofactor')}</p>`}
    ${factors}
    <${SigningKeys} me=${me} run=${run} />
    ${admin && html`<${ApiKeys} run=${run} />`}
    <${Sessions} onSignOut=${onSignOut} />
    ${dialog}
  </section>`;
}


