-- 健康管理率's denominator: the children of the reports that state how many of them are under
-- health management (reports made before the figure existed say nothing of it, and their
-- children are left out of the rate rather than counted as not managed). Replayed once.
-- depends: dashboard_0005_revisions

ALTER TABLE dash_institution_now ADD COLUMN IF NOT EXISTS health_reported int NOT NULL DEFAULT 0;
ALTER TABLE dash_institution_history ADD COLUMN IF NOT EXISTS health_reported int NOT NULL
    DEFAULT 0;
ALTER TABLE dash_area_snapshots ADD COLUMN IF NOT EXISTS health_reported bigint NOT NULL
    DEFAULT 0;

TRUNCATE institution_directory, dash_institution_now, dash_institution_history, dash_hires,
    dash_area_snapshots, dash_snapshot_instants;
DELETE FROM consumer_tracking WHERE consumer = 'dashboard' AND upstream = 'registration';
