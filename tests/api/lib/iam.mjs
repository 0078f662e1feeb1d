// Helpers for tests that need real identities and tokens: start the server
// with adminEnv, then adminToken(server) / login(server, email, password).

export const ADMIN_EMAIL = 'admin@dcms.test';
export const ADMIN_PASSWORD = 'test-admin-passphrase-42';

/** Environment that makes dcmsd create the bootstrap admin on its first start. */
export const adminEnv = { DCMS_ADMIN_EMAIL: ADMIN_EMAIL, DCMS_ADMIN_PASSWORD: ADMIN_PASSWORD };

/** Logs in; resolves the token response ({access_token, refresh_token, ...}) or throws. */
export async function login(server, email, password) {
  const res = await fetch(`${server.url}/api/v1/auth/login`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ email, password }),
    signal: AbortSignal.timeout(15000),
  });
  const body = await res.json();
  if (res.status !== 200) throw new Error(`login ${email}: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

const adminTokens = new WeakMap();

/** An access token of the bootstrap admin (server started with adminEnv); cached per server. */
export async function adminToken(server) {
  if (!adminTokens.has(server)) adminTokens.set(server, (await login(server, ADMIN_EMAIL, ADMIN_PASSWORD)).access_token);
  return adminTokens.get(server);
}

/** {Authorization: Bearer token} */
export const bearer = (token) => ({ Authorization: `Bearer ${token}` });

/** The roles an organization membership grants (the others are platform roles). */
export const ORG_ROLES = ['provider', 'consumer', 'org_admin'];

/**
 * Makes `identityId` a member of organization `orgId` with `roles` (a subset
 * of ORG_ROLES), through POST /api/v1/organizations/{id}/members as `token`
 * (an org_admin of it, or an admin, who gives a reason). Resolves the member.
 */
export async function addMember(server, token, orgId, identityId, roles, reason = 'test fixture') {
  const res = await fetch(`${server.url}/api/v1/organizations/${orgId}/members`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...bearer(token) },
    body: JSON.stringify({ identity_id: identityId, roles, ...(reason ? { reason } : {}) }),
    signal: AbortSignal.timeout(15000),
  });
  const body = await res.json();
  if (res.status !== 201 && res.status !== 200) {
    throw new Error(`add member ${identityId} to ${orgId}: ${res.status} ${JSON.stringify(body)}`);
  }
  return body;
}
