-- dcms schema version 11 (PostgreSQL): organization membership and
-- self-registration limits. See docs/iam.md, "Organization membership" and
-- "Self-registration". Owned by src/iam.

-- Self-registrations per client address in fixed windows (iam_register.c):
-- key "ip:<address>", the window's start (Unix seconds) and the count in it.
CREATE TABLE registration_limits (
    key          TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    count        BIGINT NOT NULL
);

-- Self-registration no longer chooses an organization or roles: membership
-- is granted by the organization's org_admins (or an admin with a reason).
-- Identities that registered themselves and were never verified lose what
-- they asked for, so verifying them later admits them nowhere.
UPDATE identities SET organization_id = NULL, roles = '[]'
 WHERE kind = 'user' AND verified_at IS NULL AND verified_by IS NULL;
