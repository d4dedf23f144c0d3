-- The data lake (docs/lake.md). Per dataset, the time before which rows have left the
-- database: retention dropped them after the lake's manifests for those hours were
-- verified. Reads of an older range are answered from the lake. No row: nothing dropped.
CREATE TABLE lake_horizon (
    dataset       text        PRIMARY KEY
        CHECK (dataset IN ('official-values', 'observations', 'audit')),
    retained_from timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- One row per archived hour: the newest generation written and whether the database
-- still matched its manifest when last verified (retention drops only verified hours).
CREATE TABLE lake_hours (
    hour        timestamptz PRIMARY KEY,
    generation  integer     NOT NULL CHECK (generation >= 1),
    archived_at timestamptz NOT NULL DEFAULT now(),
    verified_at timestamptz
);
