-- dcms schema version 6 (PostgreSQL): contract management.
-- Terms are stored as RFC 8785 canonical JSON text, so what was hashed is
-- exactly what is kept. `version` is the row version (ETag / If-Match);
-- `terms_version` counts changes of the signed content, each kept in
-- contract_versions with its hash. Signatures live in contract_signatures
-- (voided ones stay, with voided_at); contracts.signatures mirrors the
-- current (not voided) ones for one-row reads.

ALTER TABLE contracts ALTER COLUMN terms TYPE TEXT USING terms::text;
ALTER TABLE contracts ALTER COLUMN signatures DROP DEFAULT;
ALTER TABLE contracts ALTER COLUMN signatures TYPE TEXT USING signatures::text;
ALTER TABLE contracts ALTER COLUMN signatures SET DEFAULT '[]';
ALTER TABLE contracts ADD COLUMN terms_version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE contracts ADD COLUMN effective_from TIMESTAMPTZ;
ALTER TABLE contracts ADD COLUMN expires_at TIMESTAMPTZ;
ALTER TABLE contracts ADD COLUMN created_by TEXT NOT NULL DEFAULT '';
ALTER TABLE contracts ADD COLUMN status_reason TEXT;

-- Keyset pagination is newest first by id (UUIDv7, time-ordered); the
-- party indexes keep a party's pages an index range scan at any size.
DROP INDEX IF EXISTS contracts_provider;
DROP INDEX IF EXISTS contracts_consumer;
DROP INDEX IF EXISTS contracts_status;
CREATE INDEX contracts_provider ON contracts (provider_id, id);
CREATE INDEX contracts_consumer ON contracts (consumer_id, id);
CREATE INDEX contracts_status ON contracts (status, id);
CREATE INDEX contracts_expiry ON contracts (expires_at) WHERE status IN ('active', 'suspended');

CREATE TABLE contract_versions (
    contract_id   UUID NOT NULL REFERENCES contracts (id) ON DELETE CASCADE,
    terms_version INTEGER NOT NULL CHECK (terms_version >= 1),
    terms_hash    TEXT NOT NULL,
    content       TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    created_by    TEXT NOT NULL,
    PRIMARY KEY (contract_id, terms_version)
);

CREATE TABLE contract_signatures (
    id            UUID PRIMARY KEY,
    contract_id   UUID NOT NULL REFERENCES contracts (id) ON DELETE CASCADE,
    terms_version INTEGER NOT NULL,
    side          TEXT NOT NULL CHECK (side IN ('provider', 'consumer')),
    signer_id     TEXT NOT NULL,
    type          TEXT NOT NULL CHECK (type IN ('digital', 'mfa', 'biometric')),
    key_id        TEXT NOT NULL,
    algorithm     TEXT NOT NULL,
    signed_hash   TEXT NOT NULL,
    signed_at     TIMESTAMPTZ NOT NULL,
    evidence      TEXT NOT NULL,
    voided_at     TIMESTAMPTZ,
    void_reason   TEXT
);
CREATE INDEX contract_signatures_contract ON contract_signatures (contract_id, signed_at);
CREATE UNIQUE INDEX contract_signatures_live ON contract_signatures (contract_id, side)
    WHERE voided_at IS NULL;
