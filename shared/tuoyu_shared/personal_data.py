"""Personal data at rest: encrypted with a key per person, found through a keyed hash.

Resident ID numbers, names and phone numbers of people (legal representatives, practitioners,
parents) never enter an event in clear. The application layer seals each value before the
domain sees it; the event stores a :class:`Sealed` value:

    {"ref": <person ref>, "sealed": <AES-GCM ciphertext, base64>, "masked": "张**"}

- ``ref`` is a keyed hash (HMAC-SHA256 with the service's secret) of the person's resident ID
  number, so the same person is found again without storing the number in clear.
- Each person has their own data key in ``personal_data_keys``. Erasing a person deletes that
  key (crypto-shredding): their events stay in the log and replay, but the sealed values no
  longer open (:meth:`PersonalDataVault.open` returns None); the masks remain for read models.
  Nothing more can be sealed for an erased person: ``seal`` and ``seal_person`` raise
  :class:`PersonalDataErased` ("personal data of <ref> was erased"; HTTP 410, code ``erased``;
  a PermissionError too), which callers let propagate (a command or an import sealing for that
  person fails as a whole, recording nothing).
- Key cache time-to-live: each vault keeps the keys it has read in memory for ``key_ttl``
  seconds (:data:`DEFAULT_KEY_TTL`, 60 s; a constructor argument), then reads them again. An
  erasure in this process takes effect at once; an erasure in another process (another
  worker, another service instance) takes effect here within ``key_ttl``: after it, ``open``
  returns None and ``seal`` raises. An erasure is final, so it is remembered without expiry.
- Published envelopes drop ``sealed`` (see :func:`tuoyu_shared.envelope.to_json_value`):
  subscribers get the mask and the ref only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from typing import Any

import psycopg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tuoyu_shared.errors import Erased

# The table personal_data_keys (person_ref, data_key, created_at, erased_at) comes from the
# kit's migrations.

Sealed = dict[str, str]

#: Seconds a vault trusts the keys it has read before reading them again (see the module's
#: docstring): how long an erasure in another process may take to be seen here.
DEFAULT_KEY_TTL = 60.0


class PersonalDataErased(Erased, PermissionError):
    """Nothing can be sealed for this person any more: their key was erased (410). Still a
    PermissionError, as it was before it had a type of its own."""


class PersonalDataVault:
    def __init__(self, database_url: str, secret: str, key_ttl: float = DEFAULT_KEY_TTL):
        if key_ttl < 0:
            raise ValueError(f"key_ttl must be seconds >= 0, got {key_ttl!r}")
        self.database_url = database_url
        self.key_ttl = key_ttl
        self._secret = secret.encode()
        # person ref → (data key, or None once erased; monotonic time it was read)
        self._keys: dict[str, tuple[bytes | None, float]] = {}
        self._conn: psycopg.Connection | None = None
        self._connection()  # creates the key table

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self.database_url, autocommit=True)
        return self._conn

    def person_ref(self, resident_id: str) -> str:
        """The keyed hash that finds a person by resident ID number."""
        digest = hmac.new(self._secret, b"resident-id:" + resident_id.encode(), hashlib.sha256)
        return digest.hexdigest()[:32]

    def lookup_hash(self, kind: str, value: str) -> str:
        """A keyed hash of any personal value, for exact-match search."""
        return hmac.new(self._secret, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()

    def _cached(self, person_ref: str) -> tuple[bool, bytes | None]:
        """(found, key) from the cache: an erasure is kept for good, a key for ``key_ttl``."""
        entry = self._keys.get(person_ref)
        if entry is None:
            return False, None
        key, read_at = entry
        if key is None or time.monotonic() - read_at < self.key_ttl:
            return True, key
        return False, None

    def _remember(self, person_ref: str, key: bytes | None) -> None:
        self._keys[person_ref] = (key, time.monotonic())

    def _key(self, person_ref: str, create: bool) -> bytes | None:
        found, key = self._cached(person_ref)
        if not found:
            conn = self._connection()
            row = None
            if create:  # one round trip for a new person
                row = conn.execute(
                    "INSERT INTO personal_data_keys (person_ref, data_key) VALUES (%s, %s) "
                    "ON CONFLICT DO NOTHING RETURNING data_key",
                    (person_ref, AESGCM.generate_key(bit_length=256))).fetchone()
            if row is None:
                row = conn.execute(
                    "SELECT data_key FROM personal_data_keys WHERE person_ref=%s",
                    (person_ref,)).fetchone()
            key = bytes(row[0]) if row and row[0] is not None else None
            if row is not None:  # a person without a row is not remembered: may come later
                self._remember(person_ref, key)
        if key is None and create:
            raise PersonalDataErased(f"personal data of {person_ref} was erased")
        return key

    def ensure_keys(self, person_refs: list[str]) -> None:
        """Create the keys of many people in two statements (bulk imports). An erased person
        gets no key: sealing for them afterwards raises PersonalDataErased."""
        missing = sorted({r for r in person_refs if not self._cached(r)[0]})
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
            self._remember(ref, bytes(key) if key is not None else None)

    def seal(self, person_ref: str, value: str, masked: str) -> Sealed:
        """Seal one value under the person's key (created if new); PersonalDataErased if the
        person was erased."""
        key = self._key(person_ref, create=True)
        nonce = os.urandom(12)
        ciphertext = AESGCM(key).encrypt(nonce, value.encode(), person_ref.encode())
        return {"ref": person_ref, "sealed": base64.b64encode(nonce + ciphertext).decode(),
                "masked": masked}

    def seal_person(self, person_ref: str, values: dict[str, tuple[str, str]]) -> dict[str, Any]:
        """Seal several values of one person, ``{field: (value, masked)}``, with one key
        schedule; returns ``{"ref": ref, field: sealed, …}``. PersonalDataErased if the person
        was erased."""
        aead = AESGCM(self._key(person_ref, create=True))
        aad = person_ref.encode()
        sealed: dict[str, Any] = {"ref": person_ref}
        for field, (value, masked) in values.items():
            nonce = os.urandom(12)
            sealed[field] = {"ref": person_ref, "masked": masked, "sealed": base64.b64encode(
                nonce + aead.encrypt(nonce, value.encode(), aad)).decode()}
        return sealed

    def open(self, sealed: Sealed | dict[str, Any]) -> str | None:
        """The clear value, or None when the person's key was erased (here, or in another
        process more than ``key_ttl`` seconds ago)."""
        if "sealed" not in sealed:
            return None
        key = self._key(sealed["ref"], create=False)
        if key is None:
            return None
        raw = base64.b64decode(sealed["sealed"])
        return AESGCM(key).decrypt(raw[:12], raw[12:], sealed["ref"].encode()).decode()

    def erase(self, person_ref: str) -> None:
        """Delete the person's key for good (a person without a key yet is recorded as erased,
        so no process creates one later)."""
        self._connection().execute(
            "INSERT INTO personal_data_keys (person_ref, data_key, erased_at) "
            "VALUES (%s, NULL, now()) ON CONFLICT (person_ref) DO UPDATE SET data_key=NULL, "
            "erased_at=coalesce(personal_data_keys.erased_at, now())",
            (person_ref,))
        self._remember(person_ref, None)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
