-- Event store, official values, audit, outbox and consumer offsets.

CREATE TABLE reference_data (
    reference_data_id text PRIMARY KEY,
    config            jsonb       NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- Append-only raw observations; the id makes every write idempotent.
CREATE TABLE observations (
    observation_id    text             PRIMARY KEY,
    reference_data_id text             NOT NULL,
    source            text             NOT NULL,
    snap              timestamptz      NOT NULL,
    value             double precision NOT NULL,
    observed_at       timestamptz      NOT NULL,
    received_at       timestamptz      NOT NULL,
    attributes        jsonb,
    stored_at         timestamptz      NOT NULL DEFAULT now()
);
CREATE INDEX observations_series_snap ON observations (reference_data_id, snap);

-- Reconciliation state of one (series, snap): drives window closing by the scheduler.
CREATE TABLE snaps (
    reference_data_id text        NOT NULL,
    snap              timestamptz NOT NULL,
    window_closes_at  timestamptz NOT NULL,
    state             text        NOT NULL DEFAULT 'open'
        CHECK (state IN ('open', 'published', 'insufficient')),
    latest_version    integer,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (reference_data_id, snap)
);
CREATE INDEX snaps_open_by_close ON snaps (window_closes_at) WHERE state = 'open';

-- Immutable versions; recorded_at is the knowledge time used by as-of reads.
CREATE TABLE official_values (
    reference_data_id text             NOT NULL,
    snap              timestamptz      NOT NULL,
    version           integer          NOT NULL CHECK (version >= 1),
    value             double precision NOT NULL,
    status            text             NOT NULL CHECK (status IN ('official', 'suspect')),
    method            text             NOT NULL,
    sources_used      text[]           NOT NULL,
    sources_excluded  jsonb            NOT NULL,
    quality           jsonb            NOT NULL,
    observation_ids   text[]           NOT NULL,
    supersedes        integer,
    recorded_at       timestamptz      NOT NULL,
    PRIMARY KEY (reference_data_id, snap, version)
);
CREATE INDEX official_values_series_recorded ON official_values (reference_data_id, recorded_at);

-- Append-only, hash-chained audit trail.
CREATE TABLE audit_log (
    seq         bigserial   PRIMARY KEY,
    actor       text        NOT NULL,
    action      text        NOT NULL,
    entity_type text        NOT NULL,
    entity_id   text        NOT NULL,
    before      jsonb,
    after       jsonb,
    at          timestamptz NOT NULL,
    prev_hash   text        NOT NULL,
    hash        text        NOT NULL UNIQUE
);
CREATE INDEX audit_log_entity ON audit_log (entity_type, entity_id);

-- Transactional outbox. txid lets the relay wait for transactions still in flight, so a
-- row with a lower id that commits late is never skipped.
CREATE TABLE outbox (
    id           bigserial   PRIMARY KEY,
    event_id     text        NOT NULL UNIQUE,
    topic        text        NOT NULL,
    key          text        NOT NULL,
    payload      bytea       NOT NULL,
    headers      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    txid         xid8        NOT NULL DEFAULT pg_current_xact_id(),
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

-- Consumer positions live beside the effects they produced (same transaction).
-- owner/epoch fence a worker that lost its partition in a rebalance.
CREATE TABLE consumer_offsets (
    group_id    text        NOT NULL,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    next_offset bigint      NOT NULL DEFAULT 0,
    owner       text,
    epoch       bigint      NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);
