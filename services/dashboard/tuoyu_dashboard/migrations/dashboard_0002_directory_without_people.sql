-- The directory keeps no personal data: registration publishes a person as a random ref only
-- (no mask), and leaders' dashboards need no name.
-- depends: dashboard_0001_directory

ALTER TABLE institution_directory DROP COLUMN IF EXISTS person_in_charge;
