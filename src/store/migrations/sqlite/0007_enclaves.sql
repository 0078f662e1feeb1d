-- dcms schema version 7 (SQLite): enclave runtime, measurement and metrics history.
-- The enclaves table itself is in 0001; see src/enclaves/README.md.

-- SHA-384 of the workload image measured at creation (hex), and the PCR0 an
-- attestation must show (the same, or all zeros for a debug-mode enclave).
ALTER TABLE enclaves ADD COLUMN image_sha384 TEXT;
ALTER TABLE enclaves ADD COLUMN expected_pcr0 TEXT;
-- The backend's name for the running workload and its host pid (local).
ALTER TABLE enclaves ADD COLUMN runtime_ref TEXT;
ALTER TABLE enclaves ADD COLUMN runtime_pid INTEGER;
ALTER TABLE enclaves ADD COLUMN started_at TEXT;
-- When the last attestation verified (what attestation freshness is measured from).
ALTER TABLE enclaves ADD COLUMN attested_at TEXT;
CREATE INDEX enclaves_status ON enclaves (status);

-- A short, bounded history of metrics samples per enclave (pruned as it goes).
CREATE TABLE enclave_metric_samples (
    enclave_id        TEXT NOT NULL REFERENCES enclaves (id),
    at                TEXT NOT NULL,
    cpu_time_ms       INTEGER NOT NULL,
    rss_bytes         INTEGER NOT NULL,
    peak_rss_bytes    INTEGER NOT NULL,
    uptime_ms         INTEGER NOT NULL,
    channel_bytes_in  INTEGER NOT NULL,
    channel_bytes_out INTEGER NOT NULL,
    nprocs            INTEGER NOT NULL,
    notice            TEXT,
    PRIMARY KEY (enclave_id, at)
) STRICT;

-- Workload images are pinned by name when first used: the SHA-384 measured
-- then is the PCR0 every later enclave of that name must show, so a file
-- changed in place fails attestation. A new version takes a new name.
CREATE TABLE enclave_images (
    name          TEXT PRIMARY KEY,
    sha384        TEXT NOT NULL,
    registered_at TEXT NOT NULL,
    registered_by TEXT NOT NULL
) STRICT;
