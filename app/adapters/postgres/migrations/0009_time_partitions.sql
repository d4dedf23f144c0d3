-- Time partitioning (docs/lake.md, "Retention"): `observations` by `snap`, `audit_log`
-- by `at`, one partition per UTC day. Retention detaches and drops a whole day once the
-- lake holds every hour of it, verified; a day is 24 lake hours and, at the expected
-- retention of weeks, keeps the partition count (what every query that cannot prune pays
-- for at plan and execution time) in the tens. A DEFAULT partition catches rows outside
-- the created days, so a hostile or far `snap` never fails an insert.

-- The name of the day partition of `parent` holding `day` (UTC).
CREATE FUNCTION qis_day_partition(parent text, day date) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT parent || '_p' || to_char(day, 'YYYYMMDD') $$;

-- Create the partition of `parent` (range-partitioned on a timestamptz) for UTC `day`,
-- unless it exists; true when created. Rows the DEFAULT partition holds in that day are
-- moved into it: the default is detached, the day created, a new default attached and
-- the old default's rows re-inserted through the parent (an INSERT, so the append-only
-- triggers of audit_log are not in the way), then the old default is dropped. Only the
-- default's rows are rewritten, and the default is small (rows of days without a
-- partition). Audit partitions get the parent's TRUNCATE guard, which PostgreSQL does
-- not clone (a TRUNCATE naming a partition would bypass the parent's trigger).
CREATE FUNCTION qis_ensure_day_partition(parent text, key text, day date)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    part text := qis_day_partition(parent, day);
    deflt text := parent || '_default';
    lo timestamptz := (day::timestamp AT TIME ZONE 'UTC');
    hi timestamptz := ((day + 1)::timestamp AT TIME ZONE 'UTC');
    moving boolean;
BEGIN
    IF to_regclass(part) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I WHERE %I >= $1 AND %I < $2)',
                   deflt, key, key)
        INTO moving USING lo, hi;
    IF moving THEN
        EXECUTE format('ALTER TABLE %I DETACH PARTITION %I', parent, deflt);
        EXECUTE format('ALTER TABLE %I RENAME TO %I', deflt, deflt || '_moving');
        EXECUTE format('CREATE TABLE %I PARTITION OF %I DEFAULT', deflt, parent);
    END IF;
    EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                   part, parent, lo, hi);
    IF parent = 'audit_log' THEN
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT'
                       ' EXECUTE FUNCTION qis_refuse_change()', part || '_no_truncate', part);
    END IF;
    IF moving THEN
        EXECUTE format('INSERT INTO %I SELECT * FROM %I', parent, deflt || '_moving');
        EXECUTE format('DROP TABLE %I', deflt || '_moving');
    END IF;
    RETURN true;
END $$;

-- Days from `first` to `last` (inclusive) get their partitions; the number created.
CREATE FUNCTION qis_ensure_day_partitions(parent text, key text, first date, last date)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    created integer := 0;
    d date;
BEGIN
    IF last - first > 1000 THEN
        RAISE EXCEPTION 'refusing to create % day partitions of % at once', last - first + 1,
            parent;
    END IF;
    FOR d IN SELECT generate_series(first, last, interval '1 day')::date LOOP
        IF qis_ensure_day_partition(parent, key, d) THEN
            created := created + 1;
        END IF;
    END LOOP;
    RETURN created;
END $$;

-- observations: the same columns and key (migration 0006); the key holds `snap`, so the
-- primary key (and ON CONFLICT on it) works per partition.
ALTER TABLE observations RENAME TO observations_unpartitioned;
ALTER TABLE observations_unpartitioned
    RENAME CONSTRAINT observations_pkey TO observations_unpartitioned_pkey;
CREATE TABLE observations (
    observation_id    text             NOT NULL,
    reference_data_id text             NOT NULL,
    source            text             NOT NULL,
    snap              timestamptz      NOT NULL,
    value             double precision NOT NULL,
    observed_at       timestamptz      NOT NULL,
    received_at       timestamptz      NOT NULL,
    attributes        jsonb,
    stored_at         timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (reference_data_id, snap, observation_id)
) PARTITION BY RANGE (snap);
CREATE TABLE observations_default PARTITION OF observations DEFAULT;

-- audit_log: `seq` stays the chain's order (handed out under the journal lock) and keeps
-- its sequence; the primary key must hold the partition key, so it is (seq, at). `at` is
-- the database clock under the same lock, so a day's records are a contiguous seq range.
ALTER SEQUENCE audit_log_seq_seq OWNED BY NONE;
ALTER TABLE audit_log RENAME TO audit_log_unpartitioned;
ALTER TABLE audit_log_unpartitioned
    RENAME CONSTRAINT audit_log_pkey TO audit_log_unpartitioned_pkey;
ALTER INDEX audit_log_entity RENAME TO audit_log_unpartitioned_entity;
CREATE TABLE audit_log (
    seq         bigint      NOT NULL DEFAULT nextval('audit_log_seq_seq'),
    actor       text        NOT NULL,
    action      text        NOT NULL,
    entity_type text        NOT NULL,
    entity_id   text        NOT NULL,
    before      json,
    after       json,
    at          timestamptz NOT NULL,
    prev_hash   text        NOT NULL,
    hash        text        NOT NULL,
    PRIMARY KEY (seq, at)
) PARTITION BY RANGE (at);
ALTER SEQUENCE audit_log_seq_seq OWNED BY audit_log.seq;
CREATE INDEX audit_log_entity ON audit_log (entity_type, entity_id);
CREATE TABLE audit_log_default PARTITION OF audit_log DEFAULT;
CREATE TRIGGER audit_log_default_no_truncate BEFORE TRUNCATE ON audit_log_default
    FOR EACH STATEMENT EXECUTE FUNCTION qis_refuse_change();
DROP TRIGGER audit_log_append_only ON audit_log_unpartitioned;
DROP TRIGGER audit_log_no_truncate ON audit_log_unpartitioned;
DROP TRIGGER audit_log_notify ON audit_log_unpartitioned;
CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION qis_refuse_change();
CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION qis_refuse_change();
CREATE TRIGGER audit_log_notify
    AFTER INSERT ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION qis_outbox_notify();

-- Partitions for the days that hold rows (within the last 400 days: older or far-future
-- rows stay in the default partition, so a hostile snap cannot make the migration create
-- thousands of tables), and for today and the week ahead (`qis migrate` and the
-- scheduler's leader keep creating them ahead).
SELECT qis_ensure_day_partition('observations', 'snap', d)
  FROM (SELECT DISTINCT (snap AT TIME ZONE 'UTC')::date AS d FROM observations_unpartitioned) s
 WHERE d BETWEEN current_date - 400 AND current_date + 7;
SELECT qis_ensure_day_partition('audit_log', 'at', d)
  FROM (SELECT DISTINCT (at AT TIME ZONE 'UTC')::date AS d FROM audit_log_unpartitioned) s
 WHERE d BETWEEN current_date - 400 AND current_date + 7;
SELECT qis_ensure_day_partitions('observations', 'snap', current_date, current_date + 7);
SELECT qis_ensure_day_partitions('audit_log', 'at', current_date, current_date + 7);

-- Move the rows (one transaction with the rest of the migration).
INSERT INTO observations
    (observation_id, reference_data_id, source, snap, value, observed_at, received_at,
     attributes, stored_at)
SELECT observation_id, reference_data_id, source, snap, value, observed_at, received_at,
       attributes, stored_at
  FROM observations_unpartitioned;
INSERT INTO audit_log
    (seq, actor, action, entity_type, entity_id, before, after, at, prev_hash, hash)
SELECT seq, actor, action, entity_type, entity_id, before, after, at, prev_hash, hash
  FROM audit_log_unpartitioned;
DROP TABLE observations_unpartitioned;
DROP TABLE audit_log_unpartitioned;

-- The hash of the last audit record (the chain's head), for a writer holding the journal
-- lock whose clock says `near`: the newest record of that day's partition when the
-- sequence's last value is its seq (under the journal lock no one else draws from it),
-- a one-table query; otherwise (no partition or no record of that day yet, a rolled back
-- append, a clock stepped back) the newest of the whole table, which probes every day
-- partition. NULL: an empty trail.
CREATE FUNCTION qis_audit_head(near timestamptz) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    part regclass := to_regclass(qis_day_partition('audit_log', (near AT TIME ZONE 'UTC')::date));
    head_seq bigint;
    head_hash text;
BEGIN
    IF part IS NOT NULL THEN
        EXECUTE format('SELECT seq, hash FROM %s ORDER BY seq DESC LIMIT 1', part)
            INTO head_seq, head_hash;
        IF head_seq IS NOT NULL
           AND head_seq = (SELECT last_value FROM audit_log_seq_seq) THEN
            RETURN head_hash;
        END IF;
    END IF;
    SELECT hash INTO head_hash FROM audit_log ORDER BY seq DESC LIMIT 1;
    RETURN head_hash;
END $$;

-- Where `qis audit verify` starts once audit partitions were dropped: the last dropped
-- record (its seq and hash) and the lake manifest holding it. The newest checkpoint is
-- the chain's anchor; the first retained record must link to its hash.
CREATE TABLE audit_checkpoints (
    seq          bigint      PRIMARY KEY,
    hash         text        NOT NULL,
    at           timestamptz NOT NULL,
    manifest_key text        NOT NULL,
    partition    text        NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER audit_checkpoints_append_only
    BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION qis_refuse_change();
