-- The subsidy service's query tables (the view "subsidy-views", from its own log).
-- depends: subsidy_0001_event_store

CREATE TABLE IF NOT EXISTS subsidy_applications (
    application_id uuid PRIMARY KEY,
    institution_id uuid NOT NULL,
    institution_name text NOT NULL,
    district text NOT NULL,
    program text NOT NULL,
    kind text NOT NULL,
    year int NOT NULL,
    state text NOT NULL,
    amount_fen bigint NOT NULL DEFAULT 0,
    paid_fen bigint NOT NULL DEFAULT 0,
    clawed_fen bigint NOT NULL DEFAULT 0,
    submitted_on date,
    notice_until date,
    appeal_decide_by date,
    updated_on date NOT NULL
);
CREATE INDEX IF NOT EXISTS subsidy_applications_state ON subsidy_applications (state, notice_until);
CREATE INDEX IF NOT EXISTS subsidy_applications_institution ON subsidy_applications (institution_id);

-- Money, one row per movement: approved, paid (and paid per child), clawed back, reversed.
CREATE TABLE IF NOT EXISTS subsidy_ledger (
    id bigserial PRIMARY KEY,
    event_id text NOT NULL UNIQUE,
    entry text NOT NULL,
    application_id uuid NOT NULL,
    institution_id uuid NOT NULL,
    program text NOT NULL,
    year int NOT NULL,
    child_ref text,
    month text,
    amount_fen bigint NOT NULL,
    recorded_on date NOT NULL
);
CREATE INDEX IF NOT EXISTS subsidy_ledger_institution ON subsidy_ledger (institution_id, id);
CREATE INDEX IF NOT EXISTS subsidy_ledger_child ON subsidy_ledger (child_ref) WHERE child_ref IS NOT NULL;

CREATE TABLE IF NOT EXISTS subsidy_child_claims (
    child_ref text NOT NULL,
    month text NOT NULL,
    application_id uuid NOT NULL,
    birth_order int NOT NULL,
    amount_fen bigint NOT NULL,
    paid boolean NOT NULL DEFAULT false,
    PRIMARY KEY (child_ref, month, application_id)
);
CREATE INDEX IF NOT EXISTS subsidy_child_claims_application ON subsidy_child_claims (application_id);

CREATE TABLE IF NOT EXISTS subsidy_budgets (
    budget_id uuid PRIMARY KEY,
    year int NOT NULL,
    fund text NOT NULL,
    allocated_fen bigint NOT NULL,
    reserved_fen bigint NOT NULL DEFAULT 0,
    paid_fen bigint NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS subsidy_batches (
    batch_id uuid PRIMARY KEY,
    cycle text NOT NULL,
    total_fen bigint NOT NULL,
    lines int NOT NULL,
    paid int NOT NULL DEFAULT 0,
    failed int NOT NULL DEFAULT 0,
    closed boolean NOT NULL DEFAULT false,
    created_on date NOT NULL
);

CREATE TABLE IF NOT EXISTS subsidy_program_names (
    code text PRIMARY KEY,
    kind text NOT NULL,
    title text NOT NULL
);
CREATE TABLE IF NOT EXISTS subsidy_programs (
    code text NOT NULL,
    kind text NOT NULL,
    title text NOT NULL,
    year int NOT NULL,
    version int NOT NULL,
    terms jsonb NOT NULL,
    PRIMARY KEY (code, version)
);
