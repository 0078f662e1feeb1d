-- dcms schema version 23 (PostgreSQL): the audit event of a signature and of
-- a training job's key release, so that the answers link to their receipts
-- (GET /api/v1/audit/events/{id}/receipt; docs/audit.md, "Receipts").
-- contract_signatures is owned by src/contracts, training_jobs by src/training.

ALTER TABLE contract_signatures ADD COLUMN audit_event_id UUID;
ALTER TABLE training_jobs ADD COLUMN key_release_event_id TEXT;

-- Rows from before this version: their event names them (details.signature_id
-- of contract.sign; the job of training.key_release). An event may still wait
-- for its position in audit_pending.
UPDATE contract_signatures s SET audit_event_id = e.id
    FROM (SELECT id, resource_id, action, details FROM audit_events
            WHERE resource_type = 'contract' AND action = 'contract.sign'
          UNION ALL
          SELECT id, resource_id, action, details FROM audit_pending
            WHERE resource_type = 'contract' AND action = 'contract.sign') e
    WHERE e.resource_id = CAST(s.contract_id AS TEXT)
      AND e.details ->> 'signature_id' = CAST(s.id AS TEXT);
UPDATE training_jobs j SET key_release_event_id = CAST(e.id AS TEXT)
    FROM (SELECT id, resource_id FROM audit_events
            WHERE resource_type = 'training' AND action = 'training.key_release'
          UNION ALL
          SELECT id, resource_id FROM audit_pending
            WHERE resource_type = 'training' AND action = 'training.key_release') e
    WHERE e.resource_id = j.id;
-- contracts.signatures mirrors the live signatures (as ct_sig_json writes
-- them): theirs gain the same two members.
UPDATE contracts c SET signatures = (
    SELECT COALESCE(json_agg(CASE WHEN s.audit_event_id IS NULL THEN e.v
                                  ELSE (e.v::jsonb || jsonb_build_object(
                                      'audit_event_id', CAST(s.audit_event_id AS TEXT),
                                      'receipt', '/api/v1/audit/events/' ||
                                      CAST(s.audit_event_id AS TEXT) || '/receipt'))::json END
                             ORDER BY e.n), '[]'::json)::text
    FROM json_array_elements(c.signatures::json) WITH ORDINALITY e(v, n)
    LEFT JOIN contract_signatures s ON CAST(s.id AS TEXT) = e.v ->> 'id')
WHERE c.id IN (SELECT contract_id FROM contract_signatures
               WHERE audit_event_id IS NOT NULL AND voided_at IS NULL);
