-- The lake archive goes from one hour holding rows to the next, never through the empty
-- hours between (docs/lake.md, "The archive"). The next time at or after a point is one
-- index descent per table (per day partition for the partitioned ones), instead of a scan.
CREATE INDEX official_values_snap ON official_values (snap);
CREATE INDEX observations_snap ON observations (snap);
CREATE INDEX audit_log_at ON audit_log (at);

-- The rows stored since a time (a late row in an hour the archive skipped as empty):
-- a range of these indexes, the rows of one round.
CREATE INDEX official_values_recorded ON official_values (recorded_at);
CREATE INDEX observations_stored ON observations (stored_at);

-- The archive's progress over the hours it skipped: every row stored before
-- `gaps_checked_at` of an hour up to the newest in lake_hours is in an hour of lake_hours
-- (one row; none yet: the archive reads the oldest `lake_hours.archived_at` instead).
CREATE TABLE lake_archive (
    singleton       boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    gaps_checked_at timestamptz NOT NULL
);
