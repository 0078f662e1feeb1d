-- dcms schema version 20 (PostgreSQL): the audit log as a Merkle tree (RFC 9162).
-- An audited write inserts its event into audit_pending, in its own
-- transaction, touching no shared row (pid comes from a sequence, which
-- takes no row lock). The sequencer (one at a time across nodes, under an
-- advisory lock) moves pending events into audit_events in batches: it gives
-- each its seq, its prev_hash and hash (the chain), its leaf in the tree, the
-- complete subtree hashes that leaf finishes, and signs a tree head per batch.

CREATE TABLE audit_pending (
    pid           BIGSERIAL PRIMARY KEY,
    id            UUID NOT NULL UNIQUE,
    time          TIMESTAMPTZ NOT NULL,
    actor         TEXT NOT NULL,
    action        TEXT NOT NULL,
    resource_type TEXT,
    resource_id   TEXT,
    outcome       TEXT NOT NULL CHECK (outcome IN ('success', 'denied', 'error')),
    details       JSONB NOT NULL DEFAULT '{}',
    client_ip     TEXT,
    request_id    TEXT
);

-- The hash of every complete subtree: leaves [idx * 2^level, (idx + 1) * 2^level).
CREATE TABLE audit_tree_nodes (
    level INTEGER NOT NULL CHECK (level >= 0 AND level < 64),
    idx   BIGINT NOT NULL CHECK (idx >= 0),
    hash  TEXT NOT NULL,
    PRIMARY KEY (level, idx)
);

-- Signed tree heads: {type, tree_size, root_hash, time, key_id}.
CREATE TABLE audit_tree_heads (
    tree_size BIGINT PRIMARY KEY CHECK (tree_size >= 0),
    root_hash TEXT NOT NULL,
    time      TIMESTAMPTZ NOT NULL,
    key_id    TEXT NOT NULL,
    signature TEXT NOT NULL
);
