-- dcms schema version 6 (SQLite): contract management.
-- Terms are stored as RFC 8785 canonical JSON text, so what was hashed is
-- exactly what is kept. `version` is the row version (ETag / If-Match);
-- `terms_version` counts changes of the signed content, each kept in
-- contract_versions with its hash. Signatures live in contract_signatures
-- (voided ones stay, with voided_at); contracts.signatures mirrors the
-- current (not voided) ones for one-row reads.

ALTER TABLE contracts ADD COLUMN terms_version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE contracts ADD COLUMN effective_from TEXT NOT NULL DEFAULT '';
ALTER TABLE contracts ADD COLUMN expires_at TEXT NOT NULL DEFAULT '';
ALTER TABLE contracts ADD COLUMN created_by TEXT NOT NULL DEFAULT '';
ALTER TABLE contracts ADD COLUMN status_reason TEXT;

-- Keyset pagination is newest first by id (UUIDv7, time-ordered); the
-- party indexes keep a party's pages an index range scan at any size.
DROP INDEX contracts_provider;
DROP INDEX contracts_consumer;
DROP INDEX contracts_status;
CREATE INDEX contracts_provider ON contracts (provider_id, id);
CREATE INDEX contracts_consumer ON contracts (consumer_id, id);
CREATE INDEX contracts_status ON contracts (status, id);
CREATE INDEX contracts_expiry ON contracts (expires_at) WHERE status IN ('active', 'suspended');

CREATE TABLE contract_versions (
    contract_id   TEXT NOT NULL REFERENCES contracts (id) ON DELETE CASCADE,
    terms_version INTEGER NOT NULL CHECK (terms_version >= 1),
    terms_hash    TEXT NOT NULL,
    content       TEXT NOT NULL CHECK (json_valid(content)),
    created_at    TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    PRIMARY KEY (contract_id, terms_version)
) STRICT;

CREATE TABLE contract_signatures (
    id            TEXT PRIMARY KEY,
    contract_id   TEXT NOT NULL REFERENCES contracts (id) ON DELETE CASCADE,
    terms_version INTEGER NOT NULL,
    side          TEXT NOT NULL CHECK (side IN ('provider', 'consumer')),
    signer_id     TEXT NOT NULL,
    type          TEXT NOT NULL CHECK (type IN ('digital', 'mfa', 'biometric')),
    key_id        TEXT NOT NULL,
    algorithm     TEXT NOT NULL,
    signed_hash   TEXT NOT NULL,
    signed_at     TEXT NOT NULL,
    evidence      TEXT NOT NULL CHECK (json_valid(evidence)),
    voided_at     TEXT,
    void_reason   TEXT
) STRICT;
CREATE INDEX contract_signatures_contract ON contract_signatures (contract_id, signed_at);
-- One live signature per side: a second concurrent signature for the same side fails.
CREATE UNIQUE INDEX contract_signatures_live ON contract_signatures (contract_id, side)
    WHERE voided_at IS NULL;
