-- The lake archive goes from one hour holding rows to the next, never through the empty
-- hours between (docs/lake.md, "The archive"), and finds rows stored late into hours it
-- skipped. Its searches use BRIN indexes, not B-trees: these five columns follow the
-- order rows are written in (live snaps, storage times), so a block range's min/max
-- summary is narrow, the index is a few pages, and an insert updates a range's summary
-- at most instead of adding one entry per row to more B-trees (B-trees on observations'
-- snap and stored_at made a bulk insert about 40 % slower, BRIN about 15 %; the write
-- path is the platform's bottleneck; benchmarks/results/lake-gaps.md). A BRIN index cannot
-- return rows in order, so the queries ask "any row in this hour?" (EXISTS, the common
-- case) before "the smallest time from here on" (min(), once per gap). Ranges not yet
-- summarized are always returned, so results stay exact; autosummarize has autovacuum
-- summarize a range once it is full. 32 pages (256 kB) per range keeps a probe's heap
-- reads small.
-- Except official_values(snap), a B-tree: official_values is one table, not day
-- partitions, and for "any version in this hour?" the planner picks a seq scan of it
-- over the BRIN bitmap (it expects a match within the first rows, but versions lie in
-- snap order): 12 ms on 200,000 versions, growing with the table, against 0.15 ms with the
-- B-tree. Versions are written far less often than observations.
CREATE INDEX official_values_snap ON official_values (snap);
CREATE INDEX observations_snap ON observations USING brin (snap)
    WITH (pages_per_range = 32, autosummarize = on);
CREATE INDEX audit_log_at ON audit_log USING brin (at)
    WITH (pages_per_range = 32, autosummarize = on);

-- The rows stored since a time (a late row in an hour the archive skipped as empty):
-- the block ranges written since then, the rows of about one round.
CREATE INDEX official_values_recorded ON official_values USING brin (recorded_at)
    WITH (pages_per_range = 32, autosummarize = on);
CREATE INDEX observations_stored ON observations USING brin (stored_at)
    WITH (pages_per_range = 32, autosummarize = on);

-- The archive's progress over the hours it skipped: every row stored before
-- `gaps_checked_at` of an hour up to the newest in lake_hours is in an hour of lake_hours
-- (one row; none yet: the archive reads the oldest `lake_hours.archived_at` instead).
CREATE TABLE lake_archive (
    singleton       boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    gaps_checked_at timestamptz NOT NULL
);
