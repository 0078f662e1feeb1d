-- dcms schema version 21 (PostgreSQL): nodes sharing one store, leases, and the
-- node that owns each enclave and training job. See src/nodes/README.md.
-- nodes and leases are owned by src/nodes; enclaves.owner_node by
-- src/enclaves; training_jobs.owner_node by src/training.

-- One row per dcmsd that ever served this store: its advertised URL and its
-- heartbeat. swept_us is when another node last handled its disappearance
-- (its enclaves lost, its jobs failed or re-queued); a heartbeat after that
-- makes it live again.
CREATE TABLE nodes (
    id           TEXT PRIMARY KEY,
    url          TEXT NOT NULL,
    started_us   BIGINT NOT NULL,
    last_seen_us BIGINT NOT NULL,
    swept_us     BIGINT
);

-- Named leases, taken and renewed by compare-and-set: a holder keeps a lease
-- only by renewing it before expires_us; epoch counts changes of holder.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_us BIGINT NOT NULL,
    epoch      BIGINT NOT NULL
);

-- The node whose process runs the enclave's workload / the job's runner
-- (NULL: created before this migration, by the single node of that time).
ALTER TABLE enclaves ADD COLUMN owner_node TEXT;
CREATE INDEX enclaves_owner_node ON enclaves (owner_node);
ALTER TABLE training_jobs ADD COLUMN owner_node TEXT;
CREATE INDEX training_jobs_owner_node ON training_jobs (owner_node);

-- An enclave whose node stopped beating is `lost` (src/enclaves/enclaves_nodes.c).
-- SQLite keeps its CHECK: one SQLite file is never shared by running nodes,
-- so there an old node id's enclaves fail as after a restart.
ALTER TABLE enclaves DROP CONSTRAINT enclaves_status_check;
ALTER TABLE enclaves ADD CONSTRAINT enclaves_status_check
    CHECK (status IN ('initializing', 'running', 'suspended', 'failed', 'terminated', 'lost'));
