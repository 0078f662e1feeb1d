// The receipt of a signature's audit event (docs/audit.md, "Receipts for the
// parties"): the event, its inclusion proof and the signed tree head, saved
// as JSON for `dcmsd audit verify-receipt FILE --public-key KEY`.
import { useState } from 'preact/hooks';
import { authFetch, responseError } from './api.js';
import { t } from './messages.js';
import { Failure, html, saveBlob } from './ui.js';

/** GET `link`, waiting out the 202 of an event the log has not placed yet (about 100 ms). */
async function fetchReceipt(link) {
  for (let i = 0; i < 20; i++) {
    const res = await authFetch(link);
    if (res.status === 200) return res.blob();
    if (res.status !== 202) throw await responseError(res);
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error(t('receipt.pending'));
}

/** A button that downloads the receipt at `link` as file `name`. */
export function ReceiptButton({ link, name, label }) {
  const [st, setSt] = useState(null);
  async function run() {
    setSt({ loading: true });
    try {
      saveBlob(await fetchReceipt(link), name);
      setSt(null);
    } catch (e) {
      setSt({ error: e });
    }
  }
  return html`<button type="button" class="link" aria-label=${label} onClick=${run} disabled=${st?.loading}>${t('receipt.get')}</button>
    ${st?.loading && html` <span role="status">${t('receipt.loading')}</span>`}
    ${st?.error && html`<${Failure} error=${st.error} />`}`;
}
