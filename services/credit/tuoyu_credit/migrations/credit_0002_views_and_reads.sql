-- The credit service's query tables (credit register, listings and bans due, rosters, last
-- checks; the view "credit-views", projected from its own log) and the append-only audit of
-- every read of a practitioner's record.
-- depends: credit_0001_event_store

CREATE TABLE IF NOT EXISTS credit_register (
    institution_id uuid PRIMARY KEY,
    score int NOT NULL,
    grade text NOT NULL,
    lists text[] NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS credit_register_grade ON credit_register (grade);
CREATE TABLE IF NOT EXISTS listings_due (
    institution_id uuid NOT NULL,
    listing_id text NOT NULL,
    list_name text NOT NULL,
    state text NOT NULL,
    respond_by date,
    term_end date,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (institution_id, listing_id)
);
CREATE INDEX IF NOT EXISTS listings_due_term_end ON listings_due (term_end);
CREATE TABLE IF NOT EXISTS bans_due (
    person_ref text NOT NULL,
    ban_ref text NOT NULL,
    ends_on date NOT NULL,
    PRIMARY KEY (person_ref, ban_ref)
);
CREATE INDEX IF NOT EXISTS bans_due_ends_on ON bans_due (ends_on);
CREATE TABLE IF NOT EXISTS roster_members (
    person_ref text NOT NULL,
    hire_id text NOT NULL,
    institution_id uuid NOT NULL,
    joined_on date NOT NULL,
    PRIMARY KEY (person_ref, hire_id)
);
CREATE TABLE IF NOT EXISTS last_checks (
    person_ref text PRIMARY KEY,
    last_checked_on date NOT NULL
);

CREATE TABLE IF NOT EXISTS practitioner_reads (
    read_id bigserial PRIMARY KEY,
    person_ref text NOT NULL,
    read_at timestamptz NOT NULL,
    actor text NOT NULL,
    department text NOT NULL,
    correlation_id text NOT NULL,
    purpose text NOT NULL,
    query text NOT NULL,
    record_found boolean NOT NULL,
    answered_barred boolean,
    answered_ban_reference text
);
CREATE INDEX IF NOT EXISTS practitioner_reads_person ON practitioner_reads (person_ref, read_id);
CREATE OR REPLACE FUNCTION practitioner_reads_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'practitioner_reads is append-only: % refused', TG_OP;
END
$$ LANGUAGE plpgsql;
CREATE OR REPLACE TRIGGER practitioner_reads_no_change BEFORE UPDATE OR DELETE
    ON practitioner_reads FOR EACH ROW EXECUTE FUNCTION practitioner_reads_append_only();
CREATE OR REPLACE TRIGGER practitioner_reads_no_truncate BEFORE TRUNCATE
    ON practitioner_reads FOR EACH STATEMENT EXECUTE FUNCTION practitioner_reads_append_only();
