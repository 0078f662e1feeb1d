-- dcms schema version 5 (SQLite): passkeys (WebAuthn credentials) and Ed25519
-- signing keys, the credentials "biometric" and "digital" contract signatures
-- rest on, and the single-use challenges their registration and use consume.
-- Public keys only: nothing here is secret.

-- A challenge is 32 random bytes (base64url), single use, short-lived, bound
-- to one identity and one purpose.
CREATE TABLE credential_challenges (
    id          TEXT PRIMARY KEY,
    identity_id TEXT NOT NULL REFERENCES identities (id),
    purpose     TEXT NOT NULL
                CHECK (purpose IN ('signing_key', 'webauthn.register', 'webauthn.assert')),
    challenge   TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    used_at     TEXT
) STRICT;
CREATE INDEX credential_challenges_expiry ON credential_challenges (expires_at);

CREATE TABLE signing_keys (
    id             TEXT PRIMARY KEY,
    identity_id    TEXT NOT NULL REFERENCES identities (id),
    alg            TEXT NOT NULL CHECK (alg = 'Ed25519'),
    public_key     TEXT NOT NULL,
    name           TEXT,
    created_at     TEXT NOT NULL,
    revoked_at     TEXT,
    revoked_by     TEXT,
    revoked_reason TEXT CHECK (revoked_reason IN ('revoked', 'rotated')),
    replaced_by    TEXT
) STRICT;
CREATE INDEX signing_keys_identity ON signing_keys (identity_id);
CREATE UNIQUE INDEX signing_keys_active_public_key ON signing_keys (public_key)
    WHERE revoked_at IS NULL;

CREATE TABLE webauthn_credentials (
    id              TEXT PRIMARY KEY,
    identity_id     TEXT NOT NULL REFERENCES identities (id),
    credential_id   TEXT NOT NULL UNIQUE,
    public_key_cose TEXT NOT NULL,
    alg             INTEGER NOT NULL CHECK (alg IN (-7, -8, -257)),
    sign_count      INTEGER NOT NULL CHECK (sign_count BETWEEN 0 AND 4294967295),
    user_verified   INTEGER NOT NULL CHECK (user_verified IN (0, 1)),
    transports      TEXT NOT NULL CHECK (json_valid(transports)),
    attestation_fmt TEXT NOT NULL,
    aaguid          TEXT NOT NULL,
    name            TEXT,
    created_at      TEXT NOT NULL,
    last_used_at    TEXT
) STRICT;
CREATE INDEX webauthn_credentials_identity ON webauthn_credentials (identity_id);
