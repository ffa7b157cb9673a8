-- The dashboard's directory of institutions (the view "dashboard", projected from the
-- registration service's log). A credit code may have several registration cases, so it is
-- no longer unique: the constraint of the release before is dropped.
-- depends: kit_0001_backbone

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
    person_in_charge text NOT NULL,
    status text NOT NULL,
    registered_at timestamptz NOT NULL,
    version int NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS institution_directory_area ON institution_directory (district, street);
CREATE INDEX IF NOT EXISTS institution_directory_code ON institution_directory (credit_code);
DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'institution_directory_credit_code_key'
               AND conrelid = 'institution_directory'::regclass) THEN
        ALTER TABLE institution_directory DROP CONSTRAINT institution_directory_credit_code_key;
    END IF;
END $$;
