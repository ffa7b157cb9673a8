"""Personal data at rest: encrypted with a key per person, found through a keyed hash.

Resident ID numbers, names and phone numbers of people (legal representatives, practitioners,
parents) never enter an event in clear. The application layer seals each value before the
domain sees it; the event stores a :class:`Sealed` value:

    {"ref": <person ref>, "sealed": <AES-GCM ciphertext, base64>, "masked": "张**"}

- ``ref`` is a keyed hash (HMAC-SHA256 with the service's secret) of the person's resident ID
  number, so the same person is found again without storing the number in clear.
- Each person has their own data key in ``personal_data_keys``. Erasing a person deletes that
  key (crypto-shredding): their events stay in the log and replay, but the sealed values no
  longer open; the masks remain for read models.
- Published envelopes drop ``sealed`` (see :func:`tuoyu_shared.envelope.to_json_value`):
  subscribers get the mask and the ref only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Any

import psycopg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEYS_DDL = """
CREATE TABLE IF NOT EXISTS personal_data_keys (
    person_ref text PRIMARY KEY,
    data_key bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    erased_at timestamptz
)"""

Sealed = dict[str, str]


class PersonalDataVault:
    def __init__(self, database_url: str, secret: str):
        self.database_url = database_url
        self._secret = secret.encode()
        self._keys: dict[str, bytes | None] = {}
        self._conn: psycopg.Connection | None = None
        self._connection()  # creates the key table

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self.database_url, autocommit=True)
            self._conn.execute(KEYS_DDL)
        return self._conn

    def person_ref(self, resident_id: str) -> str:
        """The keyed hash that finds a person by resident ID number."""
        digest = hmac.new(self._secret, b"resident-id:" + resident_id.encode(), hashlib.sha256)
        return digest.hexdigest()[:32]

    def lookup_hash(self, kind: str, value: str) -> str:
        """A keyed hash of any personal value, for exact-match search."""
        return hmac.new(self._secret, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()

    def _key(self, person_ref: str, create: bool) -> bytes | None:
        if person_ref in self._keys:
            return self._keys[person_ref]
        conn = self._connection()
        row = None
        if create:  # one round trip for a new person
            row = conn.execute(
                "INSERT INTO personal_data_keys (person_ref, data_key) VALUES (%s, %s) "
                "ON CONFLICT DO NOTHING RETURNING data_key",
                (person_ref, AESGCM.generate_key(bit_length=256))).fetchone()
        if row is None:
            row = conn.execute("SELECT data_key FROM personal_data_keys WHERE person_ref=%s",
                               (person_ref,)).fetchone()
        key = bytes(row[0]) if row and row[0] is not None else None
        if key is None and create:
            raise PermissionError(f"personal data of {person_ref} was erased")
        self._keys[person_ref] = key
        return key

    def ensure_keys(self, person_refs: list[str]) -> None:
        """Create the keys of many people in two statements (bulk imports)."""
        missing = sorted({r for r in person_refs if r not in self._keys})
        if not missing:
            return
        conn = self._connection()
        conn.execute(  # hex text arrays: psycopg dumps them far faster than bytea arrays
            "INSERT INTO personal_data_keys (person_ref, data_key) "
            "SELECT r, decode(k, 'hex') FROM unnest(%s::text[], %s::text[]) AS t(r, k) "
            "ON CONFLICT DO NOTHING",
            (missing, [os.urandom(32).hex() for _ in missing]))
        for ref, key in conn.execute(
                "SELECT person_ref, data_key FROM personal_data_keys WHERE person_ref = ANY(%s)",
                (missing,)).fetchall():
            self._keys[ref] = bytes(key) if key is not None else None

    def seal(self, person_ref: str, value: str, masked: str) -> Sealed:
        key = self._key(person_ref, create=True)
        nonce = os.urandom(12)
        ciphertext = AESGCM(key).encrypt(nonce, value.encode(), person_ref.encode())
        return {"ref": person_ref, "sealed": base64.b64encode(nonce + ciphertext).decode(),
                "masked": masked}

    def seal_person(self, person_ref: str, values: dict[str, tuple[str, str]]) -> dict[str, Any]:
        """Seal several values of one person, ``{field: (value, masked)}``, with one key
        schedule; returns ``{"ref": ref, field: sealed, …}``."""
        aead = AESGCM(self._key(person_ref, create=True))
        aad = person_ref.encode()
        sealed: dict[str, Any] = {"ref": person_ref}
        for field, (value, masked) in values.items():
            nonce = os.urandom(12)
            sealed[field] = {"ref": person_ref, "masked": masked, "sealed": base64.b64encode(
                nonce + aead.encrypt(nonce, value.encode(), aad)).decode()}
        return sealed

    def open(self, sealed: Sealed | dict[str, Any]) -> str | None:
        """The clear value, or None when the person's key was erased."""
        key = self._key(sealed["ref"], create=False)
        if key is None or "sealed" not in sealed:
            return None
        raw = base64.b64decode(sealed["sealed"])
        return AESGCM(key).decrypt(raw[:12], raw[12:], sealed["ref"].encode()).decode()

    def erase(self, person_ref: str) -> None:
        self._connection().execute(
            "UPDATE personal_data_keys SET data_key=NULL, erased_at=now() WHERE person_ref=%s",
            (person_ref,))
        self._keys[person_ref] = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
