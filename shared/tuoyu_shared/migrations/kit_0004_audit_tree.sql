-- The log's Merkle tree (tuoyu_shared.audit): one leaf per stored event in notification order,
-- written by the worker after the event commits, and the signed checkpoints of the tree. A leaf
-- also keeps what auditors search by (the aggregate, the time, the correlation id), so a case's
-- history across services and a period's export do not decode the whole log. Append-only: the
-- services only insert (and mark a checkpoint published).
-- depends: kit_0003_person_keys

CREATE TABLE IF NOT EXISTS audit_leaves (
    position bigint PRIMARY KEY,
    notification_id bigint NOT NULL UNIQUE,
    leaf_hash bytea NOT NULL,
    aggregate_id uuid NOT NULL,
    aggregate_version bigint NOT NULL,
    occurred_at timestamptz,
    correlation_id text NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS audit_leaves_correlation ON audit_leaves (correlation_id)
    WHERE correlation_id <> '';
CREATE INDEX IF NOT EXISTS audit_leaves_occurred ON audit_leaves (occurred_at);

CREATE TABLE IF NOT EXISTS audit_checkpoints (
    tree_size bigint PRIMARY KEY,
    root_hash bytea NOT NULL,
    last_notification_id bigint NOT NULL,
    issued_at timestamptz NOT NULL,
    key_id text NOT NULL,
    checkpoint jsonb NOT NULL,
    published_at timestamptz
);
CREATE INDEX IF NOT EXISTS audit_checkpoints_unpublished ON audit_checkpoints (tree_size)
    WHERE published_at IS NULL;
