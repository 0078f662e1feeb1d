-- dcms schema version 3 (SQLite): identity and access management.
-- Secrets are never stored in the clear: password hashes are argon2id strings
-- (with their parameters), refresh and e-mail tokens are stored as SHA-256 hex,
-- JWT private keys are sealed with the key-encryption key (see src/iam/README.md).

ALTER TABLE identities ADD COLUMN email_verified_at TEXT;
ALTER TABLE identities ADD COLUMN verification_note TEXT;

CREATE TABLE credentials (
    identity_id   TEXT PRIMARY KEY REFERENCES identities (id),
    password_hash TEXT NOT NULL,
    updated_at    TEXT NOT NULL
) STRICT;

-- A login starts a family; each refresh rotates the token inside it.
CREATE TABLE session_families (
    id             TEXT PRIMARY KEY,
    identity_id    TEXT NOT NULL REFERENCES identities (id),
    amr            TEXT NOT NULL CHECK (json_valid(amr)),
    created_at     TEXT NOT NULL,
    expires_at     TEXT NOT NULL,
    revoked_at     TEXT,
    revoked_reason TEXT
) STRICT;
CREATE INDEX session_families_identity ON session_families (identity_id);

CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    family_id  TEXT NOT NULL REFERENCES session_families (id),
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at    TEXT
) STRICT;
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

CREATE TABLE email_verifications (
    token_hash  TEXT PRIMARY KEY,
    identity_id TEXT NOT NULL REFERENCES identities (id),
    email       TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    used_at     TEXT
) STRICT;

CREATE TABLE email_outbox (
    id         TEXT PRIMARY KEY,
    recipient  TEXT NOT NULL,
    subject    TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    sent_at    TEXT,
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
) STRICT;

CREATE TABLE jwt_keys (
    kid            TEXT PRIMARY KEY,
    alg            TEXT NOT NULL CHECK (alg = 'ES256'),
    public_x       TEXT NOT NULL,
    public_y       TEXT NOT NULL,
    private_sealed TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('current', 'previous', 'retired')),
    created_at     TEXT NOT NULL,
    retire_at      TEXT
) STRICT;
CREATE UNIQUE INDEX jwt_keys_one_current ON jwt_keys (status) WHERE status = 'current';

CREATE TABLE policies (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 255),
    document    TEXT NOT NULL CHECK (json_valid(document)),
    created_by  TEXT NOT NULL,
    created_at  TEXT NOT NULL
) STRICT;

CREATE TABLE policy_attachments (
    policy_id    TEXT NOT NULL REFERENCES policies (id) ON DELETE CASCADE,
    subject_kind TEXT NOT NULL CHECK (subject_kind IN ('identity', 'role')),
    subject      TEXT NOT NULL,
    PRIMARY KEY (policy_id, subject_kind, subject)
) STRICT;

CREATE TABLE login_throttle (
    key          TEXT PRIMARY KEY,
    failures     INTEGER NOT NULL,
    locked_until TEXT,
    updated_at   TEXT NOT NULL
) STRICT;
