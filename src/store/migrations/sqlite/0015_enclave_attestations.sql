-- dcms schema version 15 (SQLite): the last attestation document of each enclave.
-- See src/enclaves/README.md, "Evidence for the parties".

-- The raw document (base64 COSE_Sign1) the workload returned at its last
-- attestation, with what dcmsd made of it ({verified, reason, verified_at,
-- nonce, verifier, report}), written in the transaction that records the
-- attestation, so the parties can verify the document themselves.
CREATE TABLE enclave_attestations (
    enclave_id  TEXT PRIMARY KEY REFERENCES enclaves (id),
    taken_at    TEXT NOT NULL,
    document    TEXT NOT NULL,
    attestation TEXT NOT NULL
) STRICT;
