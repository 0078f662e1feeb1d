-- dcms schema version 8 (SQLite): the consumer of an enclave's contract, on the enclave.
-- See src/enclaves/README.md, "Decisions".

-- A contract's provider and consumer never change once it exists, so the
-- enclave service copies the consumer when it binds an enclave to a contract
-- (and clears it when it unbinds) instead of reading the contracts table to
-- decide who may see the enclave.
ALTER TABLE enclaves ADD COLUMN consumer_id TEXT;
UPDATE enclaves SET consumer_id = (SELECT c.consumer_id FROM contracts c
                                   WHERE c.id = enclaves.contract_id)
 WHERE contract_id IS NOT NULL;
CREATE INDEX enclaves_consumer ON enclaves (consumer_id);
