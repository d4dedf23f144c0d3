-- Reconciliation pipeline: exact audit payloads, append-only guards, outbox wake-up.

-- The audit hash covers `before`/`after` as the writer encoded them. jsonb re-renders
-- numbers (1e20 comes back as 100000000000000000000, an int), which would break the
-- chain on read-back; json keeps the exact text that was hashed.
ALTER TABLE audit_log
    ALTER COLUMN before TYPE json USING before::json,
    ALTER COLUMN after TYPE json USING after::json;

-- Audit records are append-only and versions immutable: refuse in-place changes. (The
-- hash chain still detects what a superuser does with triggers disabled.)
CREATE FUNCTION qis_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION qis_refuse_change();
CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION qis_refuse_change();
CREATE TRIGGER official_values_immutable
    BEFORE UPDATE ON official_values
    FOR EACH ROW EXECUTE FUNCTION qis_refuse_change();

-- Wake the outbox relay as soon as a transaction that queued events commits (NOTIFY is
-- delivered at commit, and repeated notifications of one transaction are folded).
CREATE FUNCTION qis_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('qis_outbox', '');
    RETURN NULL;
END $$;

CREATE TRIGGER outbox_notify
    AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION qis_outbox_notify();
