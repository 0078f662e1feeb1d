-- dcms schema version 13 (PostgreSQL): what the contract an enclave serves holds it to.
-- See src/enclaves/README.md, "Decisions" (the contract governs its enclaves).

-- NULL: nothing. 'suspended': the contract's suspension suspended the enclave,
-- so the contract's resumption resumes it. 'terminated': the contract's end
-- terminated the enclave in its transaction and the workload is still to be
-- stopped by the node that runs it (cleared once it is).
ALTER TABLE enclaves ADD COLUMN contract_hold TEXT
    CHECK (contract_hold IS NULL OR contract_hold IN ('suspended', 'terminated'));
