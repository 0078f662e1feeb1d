// Passkey ceremonies: the API's options (WebAuthn JSON form, base64url
// members) turned into what navigator.credentials.create() / .get() take,
// and the resulting PublicKeyCredential back into the JSON the API reads
// (docs/iam.md, "Passkeys"). Only the members the API's schemas name.
import { b64url, fromB64url } from './keystore.js';

const TRANSPORTS = ['usb', 'nfc', 'ble', 'internal', 'hybrid', 'smart-card'];

export function passkeysSupported() {
  return typeof PublicKeyCredential !== 'undefined' && !!navigator.credentials;
}

const descriptors = (list) => (list ?? []).map((c) => ({ ...c, id: fromB64url(c.id) }));

/** navigator.credentials.create({publicKey}) from POST /webauthn/register/options. */
export function creationOptions(o) {
  return { ...o, challenge: fromB64url(o.challenge), user: { ...o.user, id: fromB64url(o.user.id) }, excludeCredentials: descriptors(o.excludeCredentials) };
}

/** navigator.credentials.get({publicKey}) from assertion options. */
export function requestOptions(o) {
  return { ...o, challenge: fromB64url(o.challenge), allowCredentials: descriptors(o.allowCredentials) };
}

/**
 * navigator.credentials.get({publicKey}) for a biometric contract signature:
 * the challenge is the 32 bytes of the terms hash itself (no challenge from
 * the API), the passkeys are the signer's (GET /webauthn/credentials rows),
 * user verification is required. No rpId: the browser uses this page's host,
 * which must be dcmsd's DCMS_WEBAUTHN_RP_ID (docs/contracts.md).
 */
export function hashRequestOptions(hash, credentials) {
  return {
    challenge: hash,
    allowCredentials: credentials.map((c) => ({ type: 'public-key', id: fromB64url(c.credential_id), transports: (c.transports ?? []).filter((x) => TRANSPORTS.includes(x)) })),
    userVerification: 'required',
    timeout: 120000,
  };
}

/** The body of POST /webauthn/register/verify (plus the passkey's name). */
export function registrationJSON(cred, name) {
  const r = cred.response;
  const transports = (typeof r.getTransports === 'function' ? r.getTransports() : []).filter((x) => TRANSPORTS.includes(x));
  const body = {
    id: cred.id,
    rawId: b64url(cred.rawId),
    type: cred.type,
    authenticatorAttachment: cred.authenticatorAttachment ?? null,
    clientExtensionResults: {},
    response: { clientDataJSON: b64url(r.clientDataJSON), attestationObject: b64url(r.attestationObject), transports },
  };
  if (name) body.name = name;
  return body;
}

/** The `webauthn` member of a login (or the body of /webauthn/assert/verify). */
export function assertionJSON(cred) {
  const r = cred.response;
  return {
    id: cred.id,
    rawId: b64url(cred.rawId),
    type: cred.type,
    authenticatorAttachment: cred.authenticatorAttachment ?? null,
    clientExtensionResults: {},
    response: {
      clientDataJSON: b64url(r.clientDataJSON),
      authenticatorData: b64url(r.authenticatorData),
      signature: b64url(r.signature),
      userHandle: r.userHandle ? b64url(r.userHandle) : null,
    },
  };
}
