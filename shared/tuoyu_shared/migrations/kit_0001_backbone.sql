-- The kit's tables, in every service's database: consumers' positions and dead letters, the
-- relay's position, the personal-data vault's keys. Also brings a database made by the release
-- before migrations (tables created by the code on start) up to this shape.
-- depends:

CREATE TABLE IF NOT EXISTS consumer_tracking (
    consumer text NOT NULL,
    upstream text NOT NULL,
    notification_id bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, upstream)
);

-- The envelope is kept as ASCII-escaped JSON text, not jsonb: jsonb refuses "\u0000", and a
-- message that could not be applied may carry exactly that.
CREATE TABLE IF NOT EXISTS consumer_dead_letters (
    id bigserial PRIMARY KEY,
    consumer text NOT NULL,
    upstream text NOT NULL,
    notification_id bigint NOT NULL,
    event_type text NOT NULL,
    aggregate_id text,
    held boolean NOT NULL DEFAULT false,
    envelope text NOT NULL,
    error text NOT NULL,
    attempts int NOT NULL,
    parked_at timestamptz NOT NULL DEFAULT now(),
    redriven_at timestamptz,
    UNIQUE (consumer, upstream, notification_id)
);
ALTER TABLE consumer_dead_letters ADD COLUMN IF NOT EXISTS aggregate_id text;
ALTER TABLE consumer_dead_letters ADD COLUMN IF NOT EXISTS held boolean NOT NULL DEFAULT false;
DO $$ BEGIN
    IF (SELECT data_type FROM information_schema.columns WHERE table_schema = current_schema()
        AND table_name = 'consumer_dead_letters' AND column_name = 'envelope') = 'jsonb' THEN
        ALTER TABLE consumer_dead_letters ALTER COLUMN envelope TYPE text USING envelope::text;
        UPDATE consumer_dead_letters SET aggregate_id = envelope::jsonb->>'aggregate_id',
            held = (attempts = 0 AND error LIKE 'held:%');
    END IF;
END $$;
CREATE INDEX IF NOT EXISTS consumer_dead_letters_open
    ON consumer_dead_letters (consumer, upstream, aggregate_id) WHERE redriven_at IS NULL;

CREATE TABLE IF NOT EXISTS consumer_unreadable_messages (
    id bigserial PRIMARY KEY,
    consumer text NOT NULL,
    upstream text NOT NULL,
    body text NOT NULL,
    error text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS relay_position (
    exchange text PRIMARY KEY,
    notification_id bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS personal_data_keys (
    person_ref text PRIMARY KEY,
    data_key bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    erased_at timestamptz
);
