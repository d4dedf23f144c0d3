-- Keys with locality: an insert touches the few index pages at the end of its series, not
-- a random page of the whole history, so the writer's hot set is the recent data only.
--
-- observations: the content hash covers the series and the snap, so (series, snap, id) is
-- as unique as the id alone. The new key also serves "every observation of a (series,
-- snap)", so the separate (series, snap) index goes: one index per row instead of two,
-- neither on a random key.
ALTER TABLE observations DROP CONSTRAINT observations_pkey;
ALTER TABLE observations ADD PRIMARY KEY (reference_data_id, snap, observation_id);
DROP INDEX observations_series_snap;

-- audit_log: the hash chain is verified by walking `seq` (`qis audit verify`); a unique
-- index on the hash added a random-key index entry to every record and checked nothing
-- the chain does not.
ALTER TABLE audit_log DROP CONSTRAINT audit_log_hash_key;
