-- dcms schema version 1 (SQLite): the core tables of DESIGN.md.
-- Timestamps are RFC 3339 UTC text with microseconds; JSON is text checked by json_valid().

CREATE TABLE identities (
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('organization', 'user', 'service')),
    name            TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    email           TEXT,
    roles           TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(roles)),
    status          TEXT NOT NULL DEFAULT 'pending_verification'
                    CHECK (status IN ('pending_verification', 'active', 'suspended')),
    organization_id TEXT REFERENCES identities (id),
    verified_at     TEXT,
    verified_by     TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    version         INTEGER NOT NULL DEFAULT 1
) STRICT;
CREATE UNIQUE INDEX identities_email ON identities (lower(email)) WHERE email IS NOT NULL;
CREATE INDEX identities_organization ON identities (organization_id);

CREATE TABLE contracts (
    id          TEXT PRIMARY KEY,
    title       TEXT NOT NULL CHECK (length(title) BETWEEN 1 AND 255),
    description TEXT NOT NULL DEFAULT '',
    provider_id TEXT NOT NULL REFERENCES identities (id),
    consumer_id TEXT NOT NULL REFERENCES identities (id),
    status      TEXT NOT NULL DEFAULT 'draft'
                CHECK (status IN ('draft', 'pending_signature', 'active', 'suspended',
                                  'terminated', 'expired')),
    terms       TEXT NOT NULL CHECK (json_valid(terms)),
    signatures  TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(signatures)),
    terms_hash  TEXT NOT NULL,
    version     INTEGER NOT NULL DEFAULT 1,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    CHECK (provider_id <> consumer_id)
) STRICT;
CREATE INDEX contracts_provider ON contracts (provider_id);
CREATE INDEX contracts_consumer ON contracts (consumer_id);
CREATE INDEX contracts_status ON contracts (status);

CREATE TABLE enclaves (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    provider_id   TEXT NOT NULL REFERENCES identities (id),
    contract_id   TEXT REFERENCES contracts (id),
    backend       TEXT NOT NULL CHECK (backend IN ('local', 'nitro')),
    status        TEXT NOT NULL DEFAULT 'initializing'
                  CHECK (status IN ('initializing', 'running', 'suspended', 'failed',
                                    'terminated')),
    status_reason TEXT,
    attestation   TEXT CHECK (attestation IS NULL OR json_valid(attestation)),
    configuration TEXT NOT NULL CHECK (json_valid(configuration)),
    metrics       TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metrics)),
    version       INTEGER NOT NULL DEFAULT 1,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
) STRICT;
CREATE INDEX enclaves_provider ON enclaves (provider_id);
CREATE INDEX enclaves_contract ON enclaves (contract_id);

CREATE TABLE audit_events (
    seq           INTEGER PRIMARY KEY CHECK (seq > 0),
    id            TEXT NOT NULL UNIQUE,
    time          TEXT NOT NULL,
    actor         TEXT NOT NULL,
    action        TEXT NOT NULL,
    resource_type TEXT,
    resource_id   TEXT,
    outcome       TEXT NOT NULL CHECK (outcome IN ('success', 'denied', 'error')),
    details       TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(details)),
    client_ip     TEXT,
    request_id    TEXT,
    prev_hash     TEXT NOT NULL,
    hash          TEXT NOT NULL UNIQUE
) STRICT;
CREATE INDEX audit_events_time ON audit_events (time);
CREATE INDEX audit_events_actor ON audit_events (actor, seq);
CREATE INDEX audit_events_action ON audit_events (action, seq);
CREATE INDEX audit_events_resource ON audit_events (resource_type, resource_id, seq);
