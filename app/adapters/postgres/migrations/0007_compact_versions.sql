-- Versions are what the readers keep in memory: make each row small.
--
-- quality: five float8 columns (40 bytes) instead of a jsonb object (about 136 bytes).
-- observation_ids: no longer written here; a version's lineage is in its hash-chained
-- `official_value.created` audit record and in its published event (about 170 bytes a
-- row saved). Rows written before keep both columns, and reads fall back to the jsonb.
ALTER TABLE official_values
    ADD COLUMN quality_score double precision,
    ADD COLUMN completeness  double precision,
    ADD COLUMN timeliness    double precision,
    ADD COLUMN consistency   double precision,
    ADD COLUMN validity      double precision,
    ALTER COLUMN quality DROP NOT NULL,
    ALTER COLUMN observation_ids DROP NOT NULL,
    ADD CONSTRAINT official_values_quality_present CHECK (
        quality IS NOT NULL
        OR (quality_score IS NOT NULL AND completeness IS NOT NULL AND timeliness IS NOT NULL
            AND consistency IS NOT NULL AND validity IS NOT NULL));
