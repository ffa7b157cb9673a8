-- The registration service's query tables (the view "registration-views", projected from its
-- own log): the public register, filing deadlines, the staff roster, staff-removal cases.
-- depends: registration_0001_event_store

CREATE TABLE IF NOT EXISTS public_register (
    institution_id uuid PRIMARY KEY,
    name text NOT NULL,
    credit_code text NOT NULL,
    nature text NOT NULL,
    kind text NOT NULL,
    district text NOT NULL,
    street text NOT NULL,
    address text NOT NULL,
    person_in_charge text NOT NULL,
    status text NOT NULL,
    places int NOT NULL DEFAULT 0,
    filed_on date,
    affordable boolean NOT NULL DEFAULT false,
    guide_price_fen int,
    demonstration_level text,
    non_compliance text,
    credit_lists text[] NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS public_register_search
    ON public_register (district, street, kind, affordable);
CREATE TABLE IF NOT EXISTS filing_deadlines (
    institution_id uuid NOT NULL,
    stage text NOT NULL,
    due_on date NOT NULL,
    since date NOT NULL,
    PRIMARY KEY (institution_id, stage)
);
CREATE TABLE IF NOT EXISTS staff_roster (
    hire_id text PRIMARY KEY,
    institution_id uuid NOT NULL,
    practitioner_ref text NOT NULL,
    name text NOT NULL,
    role text NOT NULL,
    status text NOT NULL
);
CREATE INDEX IF NOT EXISTS staff_roster_person ON staff_roster (practitioner_ref, status);
CREATE TABLE IF NOT EXISTS staff_cases (
    case_id text PRIMARY KEY,
    institution_id uuid NOT NULL,
    practitioner_ref text NOT NULL,
    ban_reference text NOT NULL,
    opened_on date NOT NULL,
    due_on date NOT NULL,
    closed_on date,
    resolution text
);
