-- dcms schema version 4 (SQLite): second factors and API keys.
-- TOTP secrets are sealed with the key-encryption key (bound to the identity),
-- recovery codes, login tickets and API key secrets are stored as SHA-256 hex.

-- One TOTP enrolment per identity: pending until confirmed with a first code.
-- last_step is the last accepted time step: a code for that step or an older
-- one is refused, so each code works once.
CREATE TABLE totp_credentials (
    identity_id   TEXT PRIMARY KEY REFERENCES identities (id),
    secret_sealed TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('pending', 'confirmed')),
    last_step     INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL,
    confirmed_at  TEXT
) STRICT;

CREATE TABLE recovery_codes (
    identity_id TEXT NOT NULL REFERENCES identities (id),
    code_hash   TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    used_at     TEXT,
    PRIMARY KEY (identity_id, code_hash)
) STRICT;

-- Issued after a correct password when a second factor is enrolled; works once.
CREATE TABLE mfa_tickets (
    ticket_hash TEXT PRIMARY KEY,
    identity_id TEXT NOT NULL REFERENCES identities (id),
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    used_at     TEXT
) STRICT;
CREATE INDEX mfa_tickets_expires ON mfa_tickets (expires_at);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    identity_id TEXT NOT NULL REFERENCES identities (id),
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    secret_hash TEXT NOT NULL,
    permissions TEXT NOT NULL CHECK (json_valid(permissions)),
    created_by  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    revoked_at  TEXT,
    revoked_by  TEXT
) STRICT;
CREATE INDEX api_keys_identity ON api_keys (identity_id);
