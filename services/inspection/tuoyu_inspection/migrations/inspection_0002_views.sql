-- The inspection service's query tables.
-- institution_directory: the institutions, from registration's log (the view
--   "inspection-directory", tuoyu_shared.directory); institution_grades: their credit grades,
--   from credit's log ("inspection-grades"): together the frame a plan draws from.
-- inspection_*: visits, findings, rectification orders, plans and public results, from the
--   service's own log ("inspection-views").
-- depends: inspection_0001_event_store

CREATE TABLE IF NOT EXISTS institution_directory (
    institution_id uuid PRIMARY KEY,
    name text NOT NULL,
    credit_code text NOT NULL,
    nature text NOT NULL,
    kind text NOT NULL,
    district text NOT NULL,
    street text NOT NULL,
    address text NOT NULL,
    places int NOT NULL DEFAULT 0,
    status text NOT NULL,
    registered_at timestamptz NOT NULL,
    version int NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS institution_directory_area ON institution_directory (district, status);

CREATE TABLE IF NOT EXISTS institution_grades (
    institution_id uuid PRIMARY KEY,
    grade text NOT NULL,
    score int,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS inspection_visits (
    visit_id uuid PRIMARY KEY,
    institution_id uuid NOT NULL,
    institution_name text NOT NULL,
    district text NOT NULL,
    kind text NOT NULL,
    trigger text NOT NULL,
    plan_id uuid,
    period text,
    departments text[] NOT NULL,
    inspectors text[] NOT NULL,
    status text NOT NULL,
    outcome text,
    score int,
    findings int NOT NULL DEFAULT 0,
    scheduled_on date NOT NULL,
    started_on date,
    ended_on date,
    publish_by date,
    published_on date,
    version int NOT NULL
);
CREATE INDEX IF NOT EXISTS inspection_visits_institution ON inspection_visits (institution_id);
CREATE INDEX IF NOT EXISTS inspection_visits_district ON inspection_visits (district, scheduled_on);
CREATE INDEX IF NOT EXISTS inspection_visits_plan ON inspection_visits (plan_id);
CREATE INDEX IF NOT EXISTS inspection_visits_departments ON inspection_visits USING gin (departments);
CREATE INDEX IF NOT EXISTS inspection_visits_inspectors ON inspection_visits USING gin (inspectors);
CREATE INDEX IF NOT EXISTS inspection_visits_to_publish ON inspection_visits (publish_by)
    WHERE published_on IS NULL AND status IN ('concluded', 'refused');

CREATE TABLE IF NOT EXISTS inspection_findings (
    visit_id uuid NOT NULL,
    finding_id text NOT NULL,
    institution_id uuid NOT NULL,
    district text NOT NULL,
    item text NOT NULL,
    area text NOT NULL,
    severity text NOT NULL,
    department text NOT NULL,
    recorded_on date NOT NULL,
    PRIMARY KEY (visit_id, finding_id)
);
CREATE INDEX IF NOT EXISTS inspection_findings_area ON inspection_findings (area, severity);

CREATE TABLE IF NOT EXISTS inspection_orders (
    order_id uuid PRIMARY KEY,
    visit_id uuid NOT NULL,
    institution_id uuid NOT NULL,
    institution_name text NOT NULL,
    district text NOT NULL,
    finding_id text NOT NULL,
    item text NOT NULL,
    severity text NOT NULL,
    department text NOT NULL,
    ordered_on date NOT NULL,
    due_on date NOT NULL,
    state text NOT NULL,
    overdue boolean NOT NULL DEFAULT false,
    overdue_on date,
    escalation text,
    closed_on date
);
CREATE INDEX IF NOT EXISTS inspection_orders_open ON inspection_orders (due_on, order_id)
    WHERE state IN ('ordered', 'evidence_submitted');
CREATE INDEX IF NOT EXISTS inspection_orders_institution ON inspection_orders (institution_id);

CREATE TABLE IF NOT EXISTS inspection_plans (
    plan_id uuid PRIMARY KEY,
    title text NOT NULL,
    period text NOT NULL,
    starts_on date NOT NULL,
    ends_on date NOT NULL,
    departments text[] NOT NULL,
    district text NOT NULL,
    status text NOT NULL,
    target_count int NOT NULL,
    drawn int NOT NULL DEFAULT 0,
    clean int NOT NULL DEFAULT 0,
    planned_on date NOT NULL
);
CREATE INDEX IF NOT EXISTS inspection_plans_due ON inspection_plans (ends_on) WHERE status = 'drawn';

-- 公示: what the public sees of each visit, once published (no personal data: no inspector,
-- no finding's words, no evidence).
CREATE TABLE IF NOT EXISTS inspection_public_results (
    visit_id uuid PRIMARY KEY,
    institution_id uuid NOT NULL,
    institution_name text NOT NULL,
    district text NOT NULL,
    ended_on date,
    published_on date NOT NULL,
    outcome text NOT NULL,
    score int,
    result jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS inspection_public_results_district
    ON inspection_public_results (district, published_on DESC);
