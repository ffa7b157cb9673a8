-- Each state of an institution is numbered in the order the dashboard applied it
-- (``revision``): a past instant takes the latest revision recorded before it. The
-- notification id is not that order when a parked event of the institution was re-driven
-- after later events of its roster or reports (other aggregates) had been applied.
-- Replayed once, so every row has its number.
-- depends: dashboard_0004_snapshots

ALTER TABLE dash_institution_now ADD COLUMN IF NOT EXISTS revision int NOT NULL DEFAULT 1;
ALTER TABLE dash_institution_history ADD COLUMN IF NOT EXISTS revision int NOT NULL DEFAULT 1;
CREATE UNIQUE INDEX IF NOT EXISTS dash_institution_history_revision
    ON dash_institution_history (institution_id, revision);

TRUNCATE institution_directory, dash_institution_now, dash_institution_history, dash_hires,
    dash_area_snapshots, dash_snapshot_instants;
DELETE FROM consumer_tracking WHERE consumer = 'dashboard' AND upstream = 'registration';
