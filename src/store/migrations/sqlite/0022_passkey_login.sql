-- dcms schema version 22 (SQLite): passkey-first sign-in (docs/iam.md,
-- "Signing in with a passkey alone"). Both tables are owned by src/iam.

-- The WebAuthn user handle of an identity (user.id at registration, returned
-- as userHandle by a discoverable credential): opaque random bytes, hex, one
-- per identity and stable, so every passkey of an identity carries the same
-- one. Identities that registered passkeys before this version keep the
-- handle those passkeys hold: the 16 bytes of the identity's UUID.
CREATE TABLE webauthn_user_handles (
    identity_id TEXT PRIMARY KEY REFERENCES identities (id),
    user_handle TEXT NOT NULL UNIQUE CHECK (length(user_handle) BETWEEN 32 AND 128),
    created_at  TEXT NOT NULL
) STRICT;
INSERT INTO webauthn_user_handles (identity_id, user_handle, created_at)
    SELECT identity_id, lower(replace(identity_id, '-', '')), min(created_at)
    FROM webauthn_credentials GROUP BY identity_id;

-- Challenges of passkey-first sign-in: bound to no identity (the assertion
-- names its credential), single use, short-lived.
CREATE TABLE webauthn_login_challenges (
    id         TEXT PRIMARY KEY,
    challenge  TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at    TEXT
) STRICT;
CREATE INDEX webauthn_login_challenges_expiry ON webauthn_login_challenges (expires_at);
