-- dcms schema version 18 (PostgreSQL): the per-contract differential-privacy
-- budget. One row per contract that has reserved a DP run (the row each
-- reservation locks, so concurrent starts cannot overspend) and one row per
-- run with what the accountant needs to price it again: q, sigma, steps.
-- Reals are stored as text with 17 significant digits (they read back as
-- the same double on both backends). See src/privacy/README.md. Owned by
-- src/privacy.

CREATE TABLE privacy_budgets (
    contract_id          TEXT PRIMARY KEY,
    epsilon              TEXT NOT NULL,  -- terms.privacy.epsilon at the last reservation
    delta                TEXT NOT NULL,
    max_epsilon_per_run  TEXT,
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL
);

CREATE TABLE privacy_runs (
    run_id       TEXT PRIMARY KEY,
    contract_id  TEXT NOT NULL REFERENCES privacy_budgets (contract_id),
    state        TEXT NOT NULL CHECK (state IN ('reserved', 'charged', 'released')),
    q            TEXT NOT NULL,  -- Poisson sampling rate
    sigma        TEXT NOT NULL,  -- noise multiplier
    steps        BIGINT NOT NULL CHECK (steps > 0),
    delta        TEXT NOT NULL,  -- the delta its epsilon is stated at
    epsilon      TEXT NOT NULL,  -- the run alone
    epsilon_after TEXT NOT NULL, -- the contract's total after it, when reserved
    reserved_at  TEXT NOT NULL,
    charged_at   TEXT,
    released_at  TEXT
);
CREATE INDEX privacy_runs_contract ON privacy_runs (contract_id, reserved_at);
