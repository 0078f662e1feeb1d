-- dcms schema version 10 (PostgreSQL): datasets and their encrypted segments.
-- See src/datasets/README.md. Owned by src/datasets.

CREATE TABLE datasets (
    id              TEXT PRIMARY KEY,
    provider_id     TEXT NOT NULL,
    created_by      TEXT NOT NULL,
    name            TEXT NOT NULL,
    description     TEXT NOT NULL,
    format          TEXT NOT NULL,
    schema          TEXT NOT NULL,
    expected_size   BIGINT,
    expected_sha256 TEXT,
    status          TEXT NOT NULL,
    upload_length   BIGINT,
    upload_offset   BIGINT NOT NULL DEFAULT 0,
    segments        BIGINT NOT NULL DEFAULT 0,
    dek_id          TEXT NOT NULL,
    sha256          TEXT,
    row_count       BIGINT,
    report          TEXT,
    upload_state    BYTEA,
    writer          TEXT,
    writer_at       TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    version         BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX datasets_provider ON datasets (provider_id, id);

CREATE TABLE dataset_segments (
    dataset_id TEXT NOT NULL REFERENCES datasets (id),
    idx        BIGINT NOT NULL,
    final      INTEGER NOT NULL,
    nonce      BYTEA NOT NULL,
    ct         BYTEA NOT NULL,
    PRIMARY KEY (dataset_id, idx)
);
ALTER TABLE dataset_segments ALTER COLUMN ct SET STORAGE EXTERNAL; -- ciphertext does not compress
