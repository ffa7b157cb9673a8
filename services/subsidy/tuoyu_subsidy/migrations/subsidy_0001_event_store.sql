-- The event store of the subsidy service: events with their notification log, the tracking
-- of the upstream events it reacted to, snapshots. The statements eventsourcing 9.5.6 runs
-- when it creates its tables itself, frozen here as this schema's first version.
-- depends: kit_0001_backbone

CREATE TABLE IF NOT EXISTS "public"."subsidy_events" (originator_id "uuid" NOT NULL, originator_version bigint NOT NULL, topic text, state bytea, notification_id bigserial, PRIMARY KEY (originator_id, originator_version)) WITH ( autovacuum_enabled = true, autovacuum_vacuum_threshold = 100000000, autovacuum_vacuum_scale_factor = 0.5, autovacuum_analyze_threshold = 1000, autovacuum_analyze_scale_factor = 0.01);

DO $$ BEGIN CREATE TYPE "public"."stored_event_uuid" AS (originator_id "uuid", originator_version bigint, topic text, state bytea); EXCEPTION WHEN duplicate_object THEN NULL; END $$;

CREATE UNIQUE INDEX IF NOT EXISTS "subsidy_events_notification_id_idx" ON "public"."subsidy_events" (notification_id ASC);

CREATE OR REPLACE FUNCTION "public"."es_insert_events_uuid"(events "public"."stored_event_uuid"[]) RETURNS SETOF bigint LANGUAGE plpgsql AS $BODY$BEGIN SET LOCAL lock_timeout = '0s'; NOTIFY "subsidy_events"; RETURN QUERY INSERT INTO "public"."subsidy_events" AS t ( originator_id, originator_version, topic, state) SELECT originator_id, originator_version, topic, state FROM unnest(events) RETURNING notification_id;END;$BODY$;

CREATE TABLE IF NOT EXISTS "public"."subsidy_tracking" (application_name text, notification_id bigint, PRIMARY KEY (application_name))WITH ( autovacuum_enabled = true, autovacuum_vacuum_threshold = 100000000, autovacuum_vacuum_scale_factor = 0.5, autovacuum_analyze_threshold = 1000, autovacuum_analyze_scale_factor = 0.01);

CREATE TABLE IF NOT EXISTS "public"."subsidy_snapshots" (originator_id "uuid" NOT NULL, originator_version bigint NOT NULL, topic text, state bytea, PRIMARY KEY (originator_id, originator_version)) WITH ( autovacuum_enabled = true, autovacuum_vacuum_threshold = 100000000, autovacuum_vacuum_scale_factor = 0.5, autovacuum_analyze_threshold = 1000, autovacuum_analyze_scale_factor = 0.01);

-- The library marks a tracking table it made as single-row ("__migration__" = 1), and
-- otherwise "migrates" it on start (renames it to bkup1_...): mark ours as its own.
INSERT INTO "public"."subsidy_tracking" (application_name, notification_id)
    VALUES ('__migration__', 1) ON CONFLICT DO NOTHING;
