-- dcms schema version 17 (SQLite): training jobs, their events, the models
-- they produced (sealed under their own data key) and the count of runs per
-- contract. See src/training/README.md. Owned by src/training.

CREATE TABLE training_jobs (
    id                 TEXT PRIMARY KEY,
    contract_id        TEXT NOT NULL,
    consumer_id        TEXT NOT NULL,          -- the contract's consumer party
    provider_id        TEXT NOT NULL,          -- the contract's provider party
    created_by         TEXT NOT NULL,
    request            TEXT NOT NULL,          -- JSON: the validated request
    model_type         TEXT NOT NULL,
    state              TEXT NOT NULL,          -- queued | provisioning | attesting | running
                                               -- | validating | succeeded | failed | cancelled
    reason_code        TEXT,
    reason             TEXT,
    enclave_id         TEXT,
    data_released      INTEGER NOT NULL DEFAULT 0,
    progress           TEXT,                   -- JSON: the last TRAIN_PROGRESS
    created_at         TEXT NOT NULL,
    provisioning_at    TEXT,
    attesting_at       TEXT,
    running_at         TEXT,
    validating_at      TEXT,
    finished_at        TEXT,
    deadline_at        TEXT,                   -- the current state's deadline
    model_dek_id       TEXT,
    model_size         INTEGER,
    model_sha256       TEXT,
    metrics            TEXT,                   -- JSON
    result_attestation TEXT,                   -- JSON: what the result's attestation said
    dataset_hashes     TEXT,                   -- JSON: {dataset id: sha256}
    updated_at         TEXT NOT NULL,
    version            INTEGER NOT NULL DEFAULT 1
) STRICT;
CREATE INDEX training_jobs_contract ON training_jobs (contract_id, id);
CREATE INDEX training_jobs_state ON training_jobs (state, created_at);

CREATE TABLE training_events (
    job_id TEXT NOT NULL REFERENCES training_jobs (id),
    seq    INTEGER NOT NULL,
    at     TEXT NOT NULL,
    type   TEXT NOT NULL,                      -- state | progress
    data   TEXT NOT NULL,                      -- JSON
    PRIMARY KEY (job_id, seq)
) STRICT;

-- The model file, AES-256-GCM under its own data key (purpose "model").
CREATE TABLE training_models (
    job_id TEXT PRIMARY KEY REFERENCES training_jobs (id),
    dek_id TEXT NOT NULL,
    nonce  BLOB NOT NULL,
    ct     BLOB NOT NULL
) STRICT;

-- Runs taken per contract (terms.usage.max_training_runs), counted atomically.
CREATE TABLE training_run_counts (
    contract_id TEXT PRIMARY KEY,
    used        INTEGER NOT NULL
) STRICT;
