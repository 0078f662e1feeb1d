-- dcms schema version 1 (PostgreSQL): the core tables of DESIGN.md.

CREATE TABLE identities (
    id              UUID PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('organization', 'user', 'service')),
    name            TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    email           TEXT,
    roles           JSONB NOT NULL DEFAULT '[]',
    status          TEXT NOT NULL DEFAULT 'pending_verification'
                    CHECK (status IN ('pending_verification', 'active', 'suspended')),
    organization_id UUID REFERENCES identities (id),
    verified_at     TIMESTAMPTZ,
    verified_by     TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    version         INTEGER NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX identities_email ON identities (lower(email)) WHERE email IS NOT NULL;
CREATE INDEX identities_organization ON identities (organization_id);

CREATE TABLE contracts (
    id          UUID PRIMARY KEY,
    title       TEXT NOT NULL CHECK (length(title) BETWEEN 1 AND 255),
    description TEXT NOT NULL DEFAULT '',
    provider_id UUID NOT NULL REFERENCES identities (id),
    consumer_id UUID NOT NULL REFERENCES identities (id),
    status      TEXT NOT NULL DEFAULT 'draft'
                CHECK (status IN ('draft', 'pending_signature', 'active', 'suspended',
                                  'terminated', 'expired')),
    terms       JSONB NOT NULL,
    signatures  JSONB NOT NULL DEFAULT '[]',
    terms_hash  TEXT NOT NULL,
    version     INTEGER NOT NULL DEFAULT 1,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    CHECK (provider_id <> consumer_id)
);
CREATE INDEX contracts_provider ON contracts (provider_id);
CREATE INDEX contracts_consumer ON contracts (consumer_id);
CREATE INDEX contracts_status ON contracts (status);

CREATE TABLE enclaves (
    id            UUID PRIMARY KEY,
    name          TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    provider_id   UUID NOT NULL REFERENCES identities (id),
    contract_id   UUID REFERENCES contracts (id),
    backend       TEXT NOT NULL CHECK (backend IN ('local', 'nitro')),
    status        TEXT NOT NULL DEFAULT 'initializing'
                  CHECK (status IN ('initializing', 'running', 'suspended', 'failed',
                                    'terminated')),
    status_reason TEXT,
    attestation   JSONB,
    configuration JSONB NOT NULL,
    metrics       JSONB NOT NULL DEFAULT '{}',
    version       INTEGER NOT NULL DEFAULT 1,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX enclaves_provider ON enclaves (provider_id);
CREATE INDEX enclaves_contract ON enclaves (contract_id);

CREATE TABLE audit_events (
    seq           BIGINT PRIMARY KEY CHECK (seq > 0),
    id            UUID NOT NULL UNIQUE,
    time          TIMESTAMPTZ NOT NULL,
    actor         TEXT NOT NULL,
    action        TEXT NOT NULL,
    resource_type TEXT,
    resource_id   TEXT,
    outcome       TEXT NOT NULL CHECK (outcome IN ('success', 'denied', 'error')),
    details       JSONB NOT NULL DEFAULT '{}',
    client_ip     TEXT,
    request_id    TEXT,
    prev_hash     TEXT NOT NULL,
    hash          TEXT NOT NULL UNIQUE
);
CREATE INDEX audit_events_time ON audit_events (time);
CREATE INDEX audit_events_actor ON audit_events (actor, seq);
CREATE INDEX audit_events_action ON audit_events (action, seq);
CREATE INDEX audit_events_resource ON audit_events (resource_type, resource_id, seq);
