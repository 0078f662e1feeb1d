// What the UI knows of the contract lifecycle (docs/contracts.md): the
// states in order, and for each action whether the caller may take it now
// and, when not, why. The API decides in the end; this only keeps illegal
// actions disabled with their reason.
import { fmtDate, t } from './messages.js';

export const STATES = ['draft', 'pending_signature', 'active', 'suspended', 'terminated', 'expired'];
export const STEPS = ['draft', 'pending_signature', 'active', 'terminated'];
export const FINAL = ['terminated', 'expired'];

/** The sides the caller may act for: 'provider' and/or 'consumer' (party and role). */
export function sidesOf(contract, me) {
  const mine = (id) => id === me.identity.id || (me.identity.organization_id && id === me.identity.organization_id);
  const roles = me.token.roles;
  const sides = [];
  if (mine(contract.provider_id)) sides.push('provider');
  if (mine(contract.consumer_id)) sides.push('consumer');
  return { parties: sides, signing: sides.filter((s) => roles.includes(s)) };
}

export function liveSignature(contract, side) {
  return contract.signatures.find((s) => s.side === side && s.signed_hash === contract.terms_hash);
}

export function actions(contract, me, now = Date.now()) {
  const st = contract.status;
  const status = t('status.' + st).toLowerCase();
  const admin = me.token.roles.includes('admin');
  const { parties, signing } = sidesOf(contract, me);
  const party = parties.length > 0;
  const can = (perm) => admin || me.token.roles.some((r) => ROLE_PERMS[r]?.includes(perm));
  const out = {};
  const set = (name, why) => (out[name] = { enabled: !why, why: why || null });
  const final = FINAL.includes(st) ? t('why.final', { status }) : null;
  const notParty = !party && !admin ? t('why.not_party') : null;

  set('edit', notParty || (!can('update') && t('why.no_permission')) || (!['draft', 'pending_signature'].includes(st) && t('why.only_editable', { status })));
  set('submit', notParty || (!can('update') && t('why.no_permission')) || (st !== 'draft' && t('why.only_draft', { action: t('action.submit').toLowerCase(), status })));
  set('delete', notParty || (!can('delete') && t('why.no_permission')) || (st !== 'draft' && t('why.only_draft', { action: t('action.delete').toLowerCase(), status })));

  let signWhy = null;
  const mySigs = contract.signatures.filter((s) => s.signer_id === me.identity.id && s.signed_hash === contract.terms_hash);
  const unsigned = signing.filter((s) => !liveSignature(contract, s));
  if (st !== 'pending_signature') signWhy = final || t('why.only_pending', { status });
  else if (!party) signWhy = admin ? t('why.admin_never_signs') : t('why.not_party');
  else if (!signing.length) signWhy = t('why.no_sign_role');
  else if (!unsigned.length) signWhy = t('why.signed_already');
  else if (mySigs.length) signWhy = t('why.other_side_signed_by_you');
  set('sign', signWhy);
  out.sign.side = unsigned[0];

  let actWhy = notParty || (!can('activate') && t('why.no_permission'));
  if (!actWhy && st !== 'pending_signature') actWhy = final || t('why.only_pending', { status });
  if (!actWhy) {
    const missing = ['provider', 'consumer'].filter((s) => !liveSignature(contract, s));
    if (missing.length) actWhy = t('why.missing_signatures', { missing: missing.map((s) => t('detail.' + s).toLowerCase()).join(', ') });
    else if (Date.parse(contract.terms.effective_from) > now) actWhy = t('why.not_effective', { date: fmtDate(contract.terms.effective_from) });
  }
  set('activate', actWhy);

  const providerSide = admin || (parties.includes('provider') && me.token.roles.includes('provider'));
  set('suspend', notParty || (!providerSide && t('why.provider_only')) || (st !== 'active' && (final || t('why.only_active', { status }))));
  set('resume', notParty || (!providerSide && t('why.provider_only')) || (st !== 'suspended' && (final || t('why.only_suspended', { status }))));
  set('terminate', notParty || (!can('terminate') && t('why.no_permission')) || (!['active', 'suspended'].includes(st) && (final || t('why.only_running', { status }))));
  return out;
}

// The contract permissions of each role (src/iam/policy.c, docs/contracts.md).
const ROLE_PERMS = {
  provider: ['create', 'read', 'update', 'sign', 'delete', 'activate', 'suspend', 'terminate'],
  consumer: ['create', 'read', 'update', 'sign', 'delete', 'activate', 'terminate'],
  auditor: ['read'],
};
