-- Announce every new official version when its transaction commits, so each API process
-- drops its cached "latest" for that snap (and the series' history pages) at once.
-- NOTIFY is transactional: nothing is sent for a rolled-back version, and listeners get
-- the notifications in commit order. Payload: '<series>|<snap, UTC epoch µs>|<version>'
-- (app/adapters/postgres/publications.py parses it; series ids never contain '|').
CREATE FUNCTION qis_official_value_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(
        'qis_official_values',
        NEW.reference_data_id || '|'
            || (extract(epoch FROM NEW.snap) * 1000000)::bigint || '|'
            || NEW.version);
    RETURN NULL;
END $$;

CREATE TRIGGER official_values_notify
    AFTER INSERT ON official_values
    FOR EACH ROW EXECUTE FUNCTION qis_official_value_notify();
