-- Every call an auditor makes on a service (auditors read everything and change nothing, and
-- every read of theirs is recorded): who (the verified token's subject, role, department,
-- district), what (the RPC method and the ids it was given; no body, so no personal data),
-- when, and the request's correlation id. Append-only: the services only insert.
-- depends: kit_0001_backbone

CREATE TABLE IF NOT EXISTS audited_calls (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    subject text NOT NULL,
    role text NOT NULL,
    department text NOT NULL,
    district text NOT NULL,
    method text NOT NULL,
    arguments jsonb NOT NULL DEFAULT '[]',
    correlation_id text NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS audited_calls_subject ON audited_calls (subject, at);
