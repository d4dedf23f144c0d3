-- Nothing a row holds may stop the pipeline: what cannot be handled is set aside.
--
-- A snap whose window-closing reconciliation fails is `failed` (audited, alerted): no
-- longer due, so the scheduler does not retry it every round; new observations for it
-- reconcile it again.
ALTER TABLE snaps DROP CONSTRAINT snaps_state_check;
ALTER TABLE snaps ADD CONSTRAINT snaps_state_check
    CHECK (state IN ('open', 'published', 'insufficient', 'failed'));

-- An outbox event the broker refuses (too large, invalid) is set aside with the reason,
-- audited and counted, and the relay goes on with the events after it.
ALTER TABLE outbox ADD COLUMN set_aside_at timestamptz, ADD COLUMN set_aside_reason text;
DROP INDEX outbox_unpublished;
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL AND set_aside_at IS NULL;
