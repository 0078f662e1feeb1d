// Debian's chromium through playwright-core, launched one way for the
// browser tests (harness.mjs) and the documentation screenshots
// (scripts/ui-screenshots.mjs): DCMS_CHROMIUM, else the headless shell, else
// the full browser; `localhost` mapped to 127.0.0.1 so pages are opened at
// http://localhost:PORT (a secure context).
import fs from 'node:fs';
import { chromium } from 'playwright-core';

const CANDIDATES = [
  process.env.DCMS_CHROMIUM,
  '/usr/lib/chromium/chromium-headless-shell',
  '/usr/lib/chromium/chromium',
  '/usr/bin/chromium',
].filter(Boolean);

export function chromiumPath() {
  const p = CANDIDATES.find((c) => fs.existsSync(c));
  if (!p) throw new Error(`no chromium found (${CANDIDATES.join(', ')}); scripts/deps.sh installs Debian's chromium`);
  return p;
}

/** A headless chromium (playwright-core Browser). */
export function launchChromium() {
  return chromium.launch({
    executablePath: chromiumPath(),
    args: ['--host-resolver-rules=MAP localhost 127.0.0.1', '--disable-gpu', '--no-first-run'],
  });
}
