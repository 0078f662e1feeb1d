-- dcms schema version 23 (SQLite): the audit event of a signature and of a
-- training job's key release, so that the answers link to their receipts
-- (GET /api/v1/audit/events/{id}/receipt; docs/audit.md, "Receipts").
-- contract_signatures is owned by src/contracts, training_jobs by src/training.

ALTER TABLE contract_signatures ADD COLUMN audit_event_id TEXT;
ALTER TABLE training_jobs ADD COLUMN key_release_event_id TEXT;

-- Rows from before this version: their event names them (details.signature_id
-- of contract.sign; the job of training.key_release). An event may still wait
-- for its position in audit_pending.
UPDATE contract_signatures SET audit_event_id = (
    SELECT id FROM (
        SELECT id, resource_type, resource_id, action, details FROM audit_events
        UNION ALL
        SELECT id, resource_type, resource_id, action, details FROM audit_pending) e
    WHERE e.resource_type = 'contract' AND e.resource_id = contract_signatures.contract_id
      AND e.action = 'contract.sign'
      AND json_extract(e.details, '$.signature_id') = contract_signatures.id
    LIMIT 1);
UPDATE training_jobs SET key_release_event_id = (
    SELECT id FROM (
        SELECT id, resource_type, resource_id, action FROM audit_events
        UNION ALL
        SELECT id, resource_type, resource_id, action FROM audit_pending) e
    WHERE e.resource_type = 'training' AND e.resource_id = training_jobs.id
      AND e.action = 'training.key_release'
    LIMIT 1);
-- contracts.signatures mirrors the live signatures (as ct_sig_json writes
-- them): theirs gain the same two members.
UPDATE contracts SET signatures = (
    SELECT json_group_array(CASE WHEN s.audit_event_id IS NULL THEN json(j.value)
                                 ELSE json_set(j.value, '$.audit_event_id', s.audit_event_id,
                                               '$.receipt', '/api/v1/audit/events/' ||
                                               s.audit_event_id || '/receipt') END)
    FROM json_each(contracts.signatures) j
    LEFT JOIN contract_signatures s ON s.id = json_extract(j.value, '$.id'))
WHERE id IN (SELECT contract_id FROM contract_signatures
             WHERE audit_event_id IS NOT NULL AND voided_at IS NULL);
