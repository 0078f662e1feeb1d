-- dcms schema version 2 (PostgreSQL): the audit chain head and signed checkpoints.
-- audit_head holds the last appended (seq, hash); appends advance it with a
-- compare-and-set under its row lock, so concurrent writers (threads or
-- dcmsd processes) can never fork the chain.

CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE audit_checkpoints (
    seq       BIGINT PRIMARY KEY CHECK (seq > 0),
    hash      TEXT NOT NULL,
    time      TIMESTAMPTZ NOT NULL,
    key_id    TEXT NOT NULL,
    signature TEXT NOT NULL
);
