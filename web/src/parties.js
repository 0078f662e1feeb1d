// Parties by name. Every contract answer carries provider_name and
// consumer_name beside the ids (the API reads them from IAM for whoever may
// read the contract, names only); the id stays at hand beside the name.
import { t } from './messages.js';
import { html } from './ui.js';

const SIDES = ['provider', 'consumer'];
const same = (a, b) => !!a && !!b && a.toLowerCase() === b.toLowerCase();

/** The name of identity `id` when it is a party of contract `c` (or null). */
export function nameOf(c, id) {
  const side = SIDES.find((s) => same(c?.[s + '_id'], id));
  return side ? c[side + '_name'] ?? null : null;
}

/** A party by name, its id in the tooltip and, with `full`, as small text beside it. */
export function Party({ id, name, full }) {
  if (!name) return html`<code>${id}</code>`;
  return html`<span class="party" title=${t('party.id', { id })}>${name}</span>${full && html` <code class="party-id">${id}</code>`}`;
}

/**
 * The other side of `c` for a viewer on `sides` (sidesOf(c, me).parties):
 * the counterparty's name when the viewer is on one side, else both.
 */
export function Counterparty({ c, sides }) {
  if (sides.length === 1) {
    const other = sides[0] === 'provider' ? 'consumer' : 'provider';
    return html`<${Party} id=${c[other + '_id']} name=${c[other + '_name']} />`;
  }
  return SIDES.map((s, i) => html`${i ? '; ' : ''}${t('detail.' + s)}: <${Party} id=${c[s + '_id']} name=${c[s + '_name']} />`);
}
