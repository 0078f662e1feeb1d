-- dcms schema version 19 (PostgreSQL): an upload's sealed resume state moves
-- out of the datasets row into a table of its own (as in SQLite, where the
-- row's later columns sat behind it), and ciphertext is stored without
-- compression attempts (STORAGE EXTERNAL: sealed bytes do not compress).
-- See src/datasets/README.md. Owned by src/datasets.

CREATE TABLE dataset_upload_state (
    dataset_id TEXT PRIMARY KEY REFERENCES datasets (id),
    state      BYTEA NOT NULL          -- sealed resume state (tail, hash, validator)
);
ALTER TABLE dataset_upload_state ALTER COLUMN state SET STORAGE EXTERNAL;

INSERT INTO dataset_upload_state (dataset_id, state)
    SELECT id, upload_state FROM datasets WHERE upload_state IS NOT NULL;

ALTER TABLE datasets DROP COLUMN upload_state;
ALTER TABLE dataset_segments ALTER COLUMN ct SET STORAGE EXTERNAL;
