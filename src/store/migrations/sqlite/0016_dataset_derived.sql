-- dcms schema version 16 (SQLite): the registry of what was derived from
-- datasets under a contract (staged copies, job scratch, models, results),
-- which the retention job purges once the contract has ended and
-- terms.retention.days have passed. See src/datasets/README.md. Owned by
-- src/datasets.

CREATE TABLE dataset_derived (
    id           TEXT PRIMARY KEY,
    contract_id  TEXT NOT NULL,
    dataset_id   TEXT,
    kind         TEXT NOT NULL,  -- names the module's purge function
    ref          TEXT NOT NULL,  -- the object, in the owning module's terms
    dek_id       TEXT,           -- the data key it is sealed under, if any
    created_by   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    purged_at    TEXT,
    purge_method TEXT            -- delete | crypto_shred
) STRICT;
CREATE INDEX dataset_derived_open ON dataset_derived (contract_id) WHERE purged_at IS NULL;
