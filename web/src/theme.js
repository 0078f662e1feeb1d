// The theme override: System (follow prefers-color-scheme), Light or Dark.
// The choice is kept in localStorage (it is no secret) and applied as
// data-theme on <html> when this module is evaluated, which main.js does
// first, before anything renders; app.css selects the palette from it.
import { useState } from 'preact/hooks';
import { t } from './messages.js';
import { html } from './ui.js';

const KEY = 'dcms.theme';
const CHOICES = ['system', 'light', 'dark'];

export function storedTheme() {
  try {
    const v = localStorage.getItem(KEY);
    return CHOICES.includes(v) && v !== 'system' ? v : 'system';
  } catch {
    return 'system'; // storage refused (privacy settings): the system's choice
  }
}

function apply(choice) {
  const root = document.documentElement;
  if (choice === 'system') delete root.dataset.theme;
  else root.dataset.theme = choice;
}

export function setTheme(choice) {
  try {
    if (choice === 'system') localStorage.removeItem(KEY);
    else localStorage.setItem(KEY, choice);
  } catch {
    // not kept across reloads, still applied to this page
  }
  apply(choice);
}

apply(storedTheme());

/** A labelled select in the header: System / Light / Dark. */
export function ThemePicker() {
  const [choice, setChoice] = useState(storedTheme);
  return html`<div class="theme">
    <label for="f-theme">${t('theme.label')}</label>
    <select id="f-theme" value=${choice} onChange=${(e) => { setTheme(e.currentTarget.value); setChoice(e.currentTarget.value); }}>
      ${CHOICES.map((c) => html`<option value=${c}>${t('theme.' + c)}</option>`)}
    </select>
  </div>`;
}
