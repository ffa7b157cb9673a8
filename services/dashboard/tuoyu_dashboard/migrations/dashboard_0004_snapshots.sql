-- The indicators' counts by street at past instants, kept once computed (a leader's monthly
-- series asks for the same month ends again and again). An event of registration earlier than
-- a kept instant deletes it (the projector does, in the statement that applies the event),
-- and a computation holds a SHARE lock on dash_snapshot_instants so that no event is applied
-- meanwhile: a kept instant is always what the history says.
-- "Now" reads dash_institution_now. A past instant is computed once, from the history (the
-- latest row of each institution before it).
-- depends: dashboard_0003_indicators

CREATE TABLE IF NOT EXISTS dash_snapshot_instants (
    at timestamptz PRIMARY KEY,
    computed_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS dash_area_snapshots (
    at timestamptz NOT NULL REFERENCES dash_snapshot_instants ON DELETE CASCADE,
    district text NOT NULL,
    street text NOT NULL,
    registered int NOT NULL,
    filed int NOT NULL,
    places bigint NOT NULL,
    affordable_places bigint NOT NULL,
    affordable_institutions int NOT NULL,
    enrolled bigint NOT NULL,
    health_managed bigint NOT NULL,
    staff bigint NOT NULL,
    certified_staff bigint NOT NULL,
    PRIMARY KEY (at, district, street)
);

DROP INDEX IF EXISTS dash_institution_now;  -- of the release before: its name is now a table's
-- Each institution's current state in a table of its own, changed in place; the history is
-- only appended to (closing a row rewrote its index entries: the projection was slower).
ALTER TABLE dash_institution_history DROP COLUMN IF EXISTS valid_to;
CREATE TABLE IF NOT EXISTS dash_institution_now (LIKE dash_institution_history INCLUDING DEFAULTS,
                                                 PRIMARY KEY (institution_id));
-- a district's institutions (changed rarely: the other columns' updates stay HOT)
CREATE INDEX IF NOT EXISTS dash_institution_now_area ON dash_institution_now (district, street);
DROP INDEX IF EXISTS dash_institution_as_of;
DROP INDEX IF EXISTS dash_credit_as_of;

-- replay registration's log into them once
TRUNCATE institution_directory, dash_institution_history, dash_hires;
DELETE FROM consumer_tracking WHERE consumer = 'dashboard' AND upstream = 'registration';
