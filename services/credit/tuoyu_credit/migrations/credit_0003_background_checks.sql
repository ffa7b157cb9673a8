-- The background check through the public-security records inquiry (未成年人保护法 第62条),
-- and the credit service on the personal-data vault of kit_0003.
--
-- checks_pending: the checks requested and not completed, projected from the log (part of the
-- view "credit-views"): what the inquiry dispatch reads, never every practitioner. Its
-- dispatch columns (phase, attempts, next_attempt_at, last_error) are the dispatch's own
-- bookkeeping, not projected: a rebuild of the view resets them, which only has the next
-- round ask again (the inquiry is idempotent by its request id, the check id).
-- depends: credit_0002_views_and_reads kit_0003_person_keys

CREATE TABLE IF NOT EXISTS checks_pending (
    person_ref text NOT NULL,
    check_id text NOT NULL,
    reason text NOT NULL,
    institution_id uuid,
    requested_on date NOT NULL,
    state text NOT NULL DEFAULT 'awaiting_inquiry'
        CHECK (state IN ('awaiting_inquiry', 'flagged')),
    flag text,
    flag_reason text,
    flagged_on date,
    -- the dispatch's own: 'inquire' (send it) or 'poll' (accepted, ask for its answer)
    phase text NOT NULL DEFAULT 'inquire' CHECK (phase IN ('inquire', 'poll')),
    attempts int NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    last_error text,
    PRIMARY KEY (person_ref, check_id)
);
CREATE INDEX IF NOT EXISTS checks_pending_due ON checks_pending (next_attempt_at NULLS FIRST)
    WHERE state = 'awaiting_inquiry';

-- A look-up by an ID number credit does not hold finds no ref (the blind index is credit's
-- and a look-up enrols nobody): the read is recorded without one.
ALTER TABLE practitioner_reads ALTER COLUMN person_ref DROP NOT NULL;

-- The audit stays append-only, with one exception: the erasure of a person (个人信息保护法
-- 第47条) blanks the purposes typed in the reads of them (free text, which may name them);
-- who read, when, what was asked and answered stay.
CREATE OR REPLACE FUNCTION practitioner_reads_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.purpose = '（已删除）'
            AND (NEW.read_id, NEW.person_ref, NEW.read_at, NEW.actor, NEW.department,
                 NEW.correlation_id, NEW.query, NEW.record_found, NEW.answered_barred,
                 NEW.answered_ban_reference)
            IS NOT DISTINCT FROM
                (OLD.read_id, OLD.person_ref, OLD.read_at, OLD.actor, OLD.department,
                 OLD.correlation_id, OLD.query, OLD.record_found, OLD.answered_barred,
                 OLD.answered_ban_reference) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'practitioner_reads is append-only: % refused', TG_OP;
END
$$ LANGUAGE plpgsql;
