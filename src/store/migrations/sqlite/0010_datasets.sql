-- dcms schema version 10 (SQLite): datasets and their encrypted segments.
-- See src/datasets/README.md. Owned by src/datasets.

CREATE TABLE datasets (
    id              TEXT PRIMARY KEY,
    provider_id     TEXT NOT NULL,
    created_by      TEXT NOT NULL,
    name            TEXT NOT NULL,
    description     TEXT NOT NULL,
    format          TEXT NOT NULL,
    schema          TEXT NOT NULL,          -- JSON: {columns, label, label_values}
    expected_size   INTEGER,
    expected_sha256 TEXT,
    status          TEXT NOT NULL,          -- created | uploading | ready | invalid
    upload_length   INTEGER,
    upload_offset   INTEGER NOT NULL DEFAULT 0,
    segments        INTEGER NOT NULL DEFAULT 0, -- full segments stored so far
    dek_id          TEXT NOT NULL,          -- the data key (keys module)
    sha256          TEXT,                   -- of the plaintext, once complete
    row_count       INTEGER,
    report          TEXT,                   -- JSON validation report
    upload_state    BLOB,                   -- sealed resume state (tail, hash, validator)
    writer          TEXT,                   -- request holding the upload, or NULL
    writer_at       TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    version         INTEGER NOT NULL DEFAULT 1
) STRICT;
CREATE INDEX datasets_provider ON datasets (provider_id, id);

-- AES-256-GCM segments of 1 MiB of plaintext (the last one shorter, flagged final).
CREATE TABLE dataset_segments (
    dataset_id TEXT NOT NULL REFERENCES datasets (id),
    idx        INTEGER NOT NULL,
    final      INTEGER NOT NULL,
    nonce      BLOB NOT NULL,
    ct         BLOB NOT NULL,
    PRIMARY KEY (dataset_id, idx)
) STRICT;
