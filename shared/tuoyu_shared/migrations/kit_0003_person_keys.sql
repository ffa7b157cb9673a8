-- Personal data, the scheme of tuoyu_shared.personal_data: data keys stored only wrapped by
-- the service's key-encryption key (with the KEK's id), and the service's own blind index
-- from an ID number's keyed digest to a random pseudonym, by kind of person.
--
-- personal_data_keys (the scheme before: data keys in clear) stays until the data migration
-- "personal-data-keys" (tuoyu_shared.people.CARRY_OVER, run by `migrate` and at start) has
-- wrapped its keys into person_keys, indexed the people its events sealed and kept the masks
-- they showed; that step then drops it. SQL cannot wrap a key: the KEK is configuration.
-- depends: kit_0002_audited_calls

CREATE TABLE IF NOT EXISTS person_keys (
    person_ref text PRIMARY KEY,
    wrapped_key bytea,           -- nonce || AES-GCM(KEK, data key, aad = ref); NULL once erased
    kek_id text,
    created_at timestamptz NOT NULL DEFAULT now(),
    erased_at timestamptz,
    CHECK ((wrapped_key IS NULL) = (kek_id IS NULL))
);
CREATE INDEX IF NOT EXISTS person_keys_kek ON person_keys (kek_id) WHERE wrapped_key IS NOT NULL;

CREATE TABLE IF NOT EXISTS person_index (
    kind text NOT NULL,
    digest bytea NOT NULL,       -- HMAC-SHA256(the service's blind-index key, the ID number)
    person_ref text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, digest)
);
CREATE INDEX IF NOT EXISTS person_index_ref ON person_index (person_ref);

-- What read models and queries may show of a person (a name's mask, 张**): beside the key,
-- erased with it, never in the log nor in a projected table.
CREATE TABLE IF NOT EXISTS person_display (
    person_ref text NOT NULL,
    field text NOT NULL,
    shown text NOT NULL,
    PRIMARY KEY (person_ref, field)
);
