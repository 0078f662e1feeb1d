// The message catalog (web/src/messages.js) in node, without a browser:
// counted messages pick their singular or plural form.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { tn } from '../../web/src/messages.js';

test('the server verdict says "1 signed checkpoint", "2 signed checkpoints"', () => {
  assert.match(tn('audit.verify.facts', 1, { events: '19', key: 'k' }), /^19 events and 1 signed checkpoint checked/);
  assert.match(tn('audit.verify.facts', 2, { events: '19', key: 'k' }), /^19 events and 2 signed checkpoints checked/);
  assert.match(tn('audit.verify.facts', 0, { events: '0', key: 'k' }), /0 signed checkpoints/);
});
