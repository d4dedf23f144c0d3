-- Relays that read an ordered log directly instead of the outbox: the audit trail.
--
-- Audit records are appended under the journal lock, so `seq` is handed out in commit
-- order and a relay can follow the trail with a position: nothing below a visible seq
-- can still commit. Records up to the current end were queued in the outbox (as
-- `audit_record_appended` events) by the previous release; the position starts after them.
CREATE TABLE relay_positions (
    name       text        PRIMARY KEY,
    position   bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO relay_positions (name, position)
SELECT 'audit', coalesce(max(seq), 0) FROM audit_log;

-- Wake the relay when audit records commit (the same channel as the outbox).
CREATE TRIGGER audit_log_notify
    AFTER INSERT ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION qis_outbox_notify();
