-- The dashboard's indicator store: what every service's events say, kept as history so any
-- past day can be answered (each row is valid from the event that made it until the next one
-- of the same case), and the reference data (population by district and street) it divides by.
--
-- The registration view ("dashboard") now feeds these tables too: its position is reset here
-- (with the directory it feeds) so the worker replays registration's log into them once.
-- depends: dashboard_0002_directory_without_people

-- ---- registration: one row per institution per state, [valid_from, valid_to) --------------
CREATE TABLE IF NOT EXISTS dash_institution_history (
    institution_id uuid NOT NULL,
    valid_from timestamptz NOT NULL,
    valid_to timestamptz,
    name text NOT NULL,
    district text NOT NULL,
    street text NOT NULL,
    nature text NOT NULL,
    kind text NOT NULL,
    status text NOT NULL,
    places int NOT NULL DEFAULT 0,
    affordable boolean NOT NULL DEFAULT false,
    report_month text,
    enrolled int NOT NULL DEFAULT 0,
    health_managed int NOT NULL DEFAULT 0,
    staff int NOT NULL DEFAULT 0,
    certified_staff int NOT NULL DEFAULT 0,
    notification_id bigint NOT NULL,
    event_id text NOT NULL,
    event_type text NOT NULL,
    PRIMARY KEY (institution_id, notification_id)
);
CREATE INDEX IF NOT EXISTS dash_institution_now
    ON dash_institution_history (district, street) WHERE valid_to IS NULL;
CREATE INDEX IF NOT EXISTS dash_institution_as_of
    ON dash_institution_history USING gist (tstzrange(valid_from, valid_to, '(]'));

-- the roster: which hires are on it and whether they hold a certificate
CREATE TABLE IF NOT EXISTS dash_hires (
    institution_id uuid NOT NULL,
    hire_id text NOT NULL,
    certified boolean NOT NULL,
    state text NOT NULL,
    PRIMARY KEY (institution_id, hire_id)
);

-- ---- credit ----------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS dash_credit_history (
    institution_id uuid NOT NULL,
    valid_from timestamptz NOT NULL,
    valid_to timestamptz,
    grade text NOT NULL,
    score int,
    notification_id bigint NOT NULL,
    event_id text NOT NULL,
    event_type text NOT NULL,
    PRIMARY KEY (institution_id, notification_id)
);
CREATE INDEX IF NOT EXISTS dash_credit_now ON dash_credit_history (institution_id)
    WHERE valid_to IS NULL;
CREATE INDEX IF NOT EXISTS dash_credit_as_of
    ON dash_credit_history USING gist (tstzrange(valid_from, valid_to, '(]'));

CREATE TABLE IF NOT EXISTS dash_listings (
    listing_id text PRIMARY KEY,
    institution_id uuid NOT NULL,
    list_name text NOT NULL,
    listed_at timestamptz NOT NULL,
    term_start date,
    term_end date,
    ended_at timestamptz,
    notification_id bigint NOT NULL,
    event_id text NOT NULL
);

CREATE TABLE IF NOT EXISTS dash_bans (
    ban_ref text PRIMARY KEY,
    person_ref text NOT NULL,
    imposed_at timestamptz NOT NULL,
    ends_on date,
    lifted_at timestamptz,
    notification_id bigint NOT NULL,
    event_id text NOT NULL
);

-- ---- inspection ------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS dash_plans (
    plan_id uuid PRIMARY KEY,
    title text NOT NULL,
    district text,
    period text NOT NULL,
    target_count int NOT NULL,
    created_at timestamptz NOT NULL,
    drawn_at timestamptz,
    drawn int,
    closed_at timestamptz,
    notification_id bigint NOT NULL
);

CREATE TABLE IF NOT EXISTS dash_visits (
    visit_id uuid PRIMARY KEY,
    institution_id uuid NOT NULL,
    district text NOT NULL,
    plan_id uuid,
    kind text NOT NULL,
    item_areas jsonb NOT NULL,
    scheduled_at timestamptz NOT NULL,
    concluded_at timestamptz,
    outcome text,
    refused_at timestamptz,
    cancelled_at timestamptz,
    notification_id bigint NOT NULL,
    event_id text NOT NULL
);
CREATE INDEX IF NOT EXISTS dash_visits_plan ON dash_visits (plan_id);

CREATE TABLE IF NOT EXISTS dash_checklist_areas (
    area text PRIMARY KEY,
    title text NOT NULL
);

CREATE TABLE IF NOT EXISTS dash_findings (
    finding_id text NOT NULL,
    visit_id uuid NOT NULL,
    institution_id uuid NOT NULL,
    district text NOT NULL,
    area text NOT NULL,
    severity text NOT NULL,
    recorded_at timestamptz NOT NULL,
    notification_id bigint NOT NULL,
    event_id text NOT NULL,
    PRIMARY KEY (visit_id, finding_id)
);

CREATE TABLE IF NOT EXISTS dash_rectifications (
    order_id text NOT NULL,
    visit_id uuid NOT NULL,
    institution_id uuid NOT NULL,
    district text NOT NULL,
    severity text NOT NULL,
    due_on date NOT NULL,
    ordered_at timestamptz NOT NULL,
    corrected_on date,
    corrected_at timestamptz,
    notification_id bigint NOT NULL,
    event_id text NOT NULL,
    PRIMARY KEY (visit_id, order_id)
);

-- ---- subsidy ---------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS dash_subsidy_applications (
    application_id uuid PRIMARY KEY,
    institution_id uuid NOT NULL,
    district text NOT NULL,
    program text NOT NULL,
    kind text NOT NULL,
    year int NOT NULL,
    drafted_at timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS dash_budgets (
    budget_id uuid PRIMARY KEY,
    year int NOT NULL,
    fund text NOT NULL,
    opened_at timestamptz NOT NULL
);

-- every movement of a budget: allocated (the new total), reserved, released, committed (paid),
-- returned (a clawback recovered; negative: taken again)
CREATE TABLE IF NOT EXISTS dash_budget_entries (
    notification_id bigint PRIMARY KEY,
    budget_id uuid NOT NULL,
    kind text NOT NULL,
    application_id uuid,
    amount_fen bigint NOT NULL,
    at timestamptz NOT NULL,
    event_id text NOT NULL
);
CREATE INDEX IF NOT EXISTS dash_budget_entries_budget ON dash_budget_entries (budget_id, at);

-- ---- reference data (the dashboard's own: loaded from a CSV by an officer) -------------------
CREATE TABLE IF NOT EXISTS dash_reference_versions (
    version_id bigserial PRIMARY KEY,
    year int NOT NULL,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    loaded_by text NOT NULL,
    source text NOT NULL,
    sha256 text NOT NULL,
    row_count int NOT NULL
);
CREATE TABLE IF NOT EXISTS dash_reference_rows (
    version_id bigint NOT NULL REFERENCES dash_reference_versions,
    district text NOT NULL,
    street text NOT NULL,
    population int NOT NULL,
    under_three int NOT NULL,
    communities int NOT NULL,
    PRIMARY KEY (version_id, district, street)
);

-- replay registration's log into the new tables (and the directory) once
TRUNCATE institution_directory;
DELETE FROM consumer_tracking WHERE consumer = 'dashboard' AND upstream = 'registration';
