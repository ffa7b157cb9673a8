-- The query tables hold people by ref only: what may be shown of a person (a name's mask)
-- is kept by the vault (person_display, kit_0003), erased with the person, and joined in by
-- the queries. The view is replayed from the log (its position reset; parked letters are
-- kept for ops to look at).
-- depends: registration_0002_views kit_0003_person_keys

ALTER TABLE public_register RENAME COLUMN person_in_charge TO person_in_charge_ref;
ALTER TABLE staff_roster DROP COLUMN IF EXISTS name;
TRUNCATE public_register, filing_deadlines, staff_roster, staff_cases;
UPDATE consumer_tracking SET notification_id = 0, updated_at = now()
    WHERE consumer = 'registration-views';
