-- dcms schema version 19 (SQLite): an upload's sealed resume state moves out
-- of the datasets row into a table of its own. In the row it sat before
-- writer, writer_at, created_at, updated_at and version, so every read of
-- those columns walked its overflow pages (up to a segment, 1 MiB) and every
-- update of the row rewrote it. See src/datasets/README.md. Owned by
-- src/datasets.

CREATE TABLE dataset_upload_state (
    dataset_id TEXT PRIMARY KEY REFERENCES datasets (id),
    state      BLOB NOT NULL           -- sealed resume state (tail, hash, validator)
) STRICT;

INSERT INTO dataset_upload_state (dataset_id, state)
    SELECT id, upload_state FROM datasets WHERE upload_state IS NOT NULL;

ALTER TABLE datasets DROP COLUMN upload_state;
