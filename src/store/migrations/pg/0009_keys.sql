-- dcms schema version 9 (PostgreSQL): key-encryption key versions and wrapped data keys.
-- See src/keys/README.md.

-- KEK versions; the key material is in the keyring (file or PKCS#11 token).
CREATE TABLE kek_versions (
    version    BIGINT PRIMARY KEY,
    state      TEXT NOT NULL CHECK (state IN ('active', 'previous', 'retired')),
    backend    TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    retired_at TIMESTAMPTZ
);
CREATE UNIQUE INDEX kek_versions_one_active ON kek_versions (state) WHERE state = 'active';

-- Data keys, wrapped by a KEK version (base64 of nonce || ciphertext || tag).
-- A destroyed key keeps its row without the wrapped bytes.
CREATE TABLE data_keys (
    id           TEXT PRIMARY KEY,
    purpose      TEXT NOT NULL,
    owner        TEXT,
    -- a unique name for a module's singleton key ("iam.secrets"); NULL for most
    name         TEXT UNIQUE,
    kek_version  BIGINT NOT NULL REFERENCES kek_versions (version),
    wrapped      TEXT,
    created_at   TIMESTAMPTZ NOT NULL,
    rewrapped_at TIMESTAMPTZ,
    destroyed_at TIMESTAMPTZ
);
CREATE INDEX data_keys_version ON data_keys (kek_version, id) WHERE destroyed_at IS NULL;
CREATE INDEX data_keys_owner ON data_keys (owner);
