"""Personal data at rest: a random pseudonym per person, a blind index per service, a data key
per person wrapped by the service's key-encryption key, crypto-shredding on erasure.

Resident ID numbers, names and phone numbers of people (persons in charge, practitioners,
children, parents) never enter an event in clear, nor any digit or character of them. The
application layer seals each value before the domain sees it; the event stores
:data:`Sealed` values, ``{"ref": <person ref>, "sealed": <AES-GCM ciphertext, base64>}``:

- ``ref`` is a **random pseudonym** (:func:`new_person_ref`, 128 random bits), not a hash of
  anything: holding every key of every service does not turn a ref back into an ID number.
- A person is found again by ID number through the service's **blind index**
  (``person_index``: HMAC-SHA256 of the number under the service's own secret,
  ``TUOYU_<SERVICE>_BLIND_INDEX_KEY``, -> ref, by *kind* of person: ``person_in_charge``,
  ``practitioner``, ``child``…). No other service holds that secret; a digest leaked from one
  service's database matches nothing in another's.
- Each person has their own 256-bit **data key** (``person_keys``), stored only wrapped
  (AES-GCM) by the service's current **key-encryption key** (``TUOYU_<SERVICE>_KEKS``, see
  :mod:`tuoyu_shared.config`), with the KEK's id beside it; the person's ref is the
  associated data, so a wrapped key moved to another row does not open. :meth:`rotate_kek`
  rewraps every key under the current KEK (``python -m tuoyu_<service> rotate-kek``).
- **Erasure** (:meth:`erase`, the kit's ``erase_person`` command) deletes the person's data
  key and every blind-index entry of theirs: their events stay in the log and replay, their
  sealed values no longer open (:meth:`open` returns None), and they can no longer be found
  by ID number. Nothing more can be sealed for an erased ref: :meth:`seal` and
  :meth:`seal_person` raise :class:`PersonalDataErased` (HTTP 410, code ``erased``). A person
  who comes back after an erasure is a new person with a new ref.
- Masks (``张**``) are never stored in the log: a read model that shows one derives it from
  the opened value (:meth:`masked`), and shows :data:`ERASED_MASK` once the key is gone, so a
  rebuilt read model equals the live one after an erasure too.
- Key cache time-to-live: each vault keeps the keys it has unwrapped in memory for
  ``key_ttl`` seconds (:data:`DEFAULT_KEY_TTL`, 60 s), then reads them again. An erasure in
  this process takes effect at once; one in another process of the same service within
  ``key_ttl``. An erasure is final, so it is remembered without expiry.
- Published envelopes drop ``sealed`` (see :func:`tuoyu_shared.envelope.to_json_value`):
  subscribers get the ref only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tuoyu_shared.errors import Erased, Unavailable

# The tables person_keys and person_index come from the kit's migrations (kit_0003).

Sealed = dict[str, str]

#: Seconds a vault trusts the keys it has read before reading them again (see the module's
#: docstring): how long an erasure in another process may take to be seen here.
DEFAULT_KEY_TTL = 60.0

#: What a read model shows for a person whose data was erased.
ERASED_MASK = "（已删除）"

#: The kinds of person a blind-index entry may name (one ref per kind and number).
PERSON_KINDS = ("person_in_charge", "practitioner", "child", "guardian")


class PersonalDataErased(Erased, PermissionError):
    """Nothing can be sealed for this person any more: their key was erased (410). Still a
    PermissionError, as it was before it had a type of its own."""


class KeyUnavailable(Unavailable, RuntimeError):
    """A data key is wrapped by a KEK that is not configured any more (rotate before you
    remove a KEK from ``TUOYU_<SERVICE>_KEKS``): 503, for ops to mend."""


def new_person_ref() -> str:
    """A random pseudonym: 32 hex digits (128 bits), the same shape refs always had."""
    return secrets.token_hex(16)


def _normalise(value: str) -> str:
    return value.strip().upper()


class PersonalDataVault:
    def __init__(self, database_url: str, blind_index_key: str | bytes,
                 keks: Iterable[tuple[str, bytes]], key_ttl: float = DEFAULT_KEY_TTL):
        if key_ttl < 0:
            raise ValueError(f"key_ttl must be seconds >= 0, got {key_ttl!r}")
        self._keks = dict(keks)
        if not self._keks:
            raise ValueError("a vault needs at least one key-encryption key")
        self._current_kid = next(iter(self._keks))
        self.database_url = database_url
        self.key_ttl = key_ttl
        self._index_key = (blind_index_key.encode() if isinstance(blind_index_key, str)
                           else bytes(blind_index_key))
        # person ref → (data key, or None once erased; monotonic time it was read)
        self._keys: dict[str, tuple[bytes | None, float]] = {}
        self._conn: psycopg.Connection | None = None
        self._connection()

    @classmethod
    def for_settings(cls, settings: Any, **kwargs: Any) -> PersonalDataVault:
        """The vault of a service from its :class:`~tuoyu_shared.config.Settings`."""
        return cls(settings.database_url, settings.blind_index_key, settings.keks, **kwargs)

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self.database_url, autocommit=True)
        return self._conn

    # ---- the blind index -------------------------------------------------------------------
    def blind_index(self, id_number: str) -> bytes:
        """This service's keyed digest of a resident ID number (never stored elsewhere)."""
        return hmac.new(self._index_key, b"resident-id:" + _normalise(id_number).encode(),
                        hashlib.sha256).digest()

    def find(self, kind: str, id_number: str) -> str | None:
        """The ref of the person of this kind with this ID number, or None."""
        row = self._connection().execute(
            "SELECT person_ref FROM person_index WHERE kind = %s AND digest = %s",
            (kind, self.blind_index(id_number))).fetchone()
        return row[0] if row else None

    def refs_of(self, id_number: str) -> dict[str, str]:
        """Every ref this service holds for the number, ``{kind: ref}`` (export, erasure)."""
        rows = self._connection().execute(
            "SELECT kind, person_ref FROM person_index WHERE digest = %s ORDER BY kind",
            (self.blind_index(id_number),)).fetchall()
        return {kind: ref for kind, ref in rows}

    def enrol(self, kind: str, id_number: str, ref: str | None = None) -> str:
        """The person's ref, entered in the blind index if new: a fresh random pseudonym, or
        ``ref`` when the service adopts one another service issued (a practitioner's, from
        the practitioner register). An entry already there wins (two enrolments at once
        agree on one ref)."""
        if kind not in PERSON_KINDS:
            raise ValueError(f"unknown kind of person {kind!r}")
        conn = self._connection()
        digest = self.blind_index(id_number)
        row = conn.execute(
            "INSERT INTO person_index (kind, digest, person_ref) VALUES (%s, %s, %s) "
            "ON CONFLICT (kind, digest) DO NOTHING RETURNING person_ref",
            (kind, digest, ref or new_person_ref())).fetchone()
        if row is None:
            row = conn.execute(
                "SELECT person_ref FROM person_index WHERE kind = %s AND digest = %s",
                (kind, digest)).fetchone()
        return row[0]

    def enrol_many(self, kind: str, id_numbers: list[str]) -> list[str]:
        """:meth:`enrol` for many numbers in two statements (bulk imports)."""
        if kind not in PERSON_KINDS:
            raise ValueError(f"unknown kind of person {kind!r}")
        digests = [self.blind_index(n) for n in id_numbers]
        unique = list(dict.fromkeys(digests))
        conn = self._connection()
        conn.execute(
            "INSERT INTO person_index (kind, digest, person_ref) "
            "SELECT %s, decode(d, 'hex'), r FROM unnest(%s::text[], %s::text[]) AS t(d, r) "
            "ON CONFLICT (kind, digest) DO NOTHING",
            (kind, [d.hex() for d in unique], [new_person_ref() for _ in unique]))
        found = {bytes(d): r for d, r in conn.execute(
            "SELECT digest, person_ref FROM person_index WHERE kind = %s "
            "AND digest = ANY(%s)", (kind, unique)).fetchall()}
        return [found[d] for d in digests]

    # ---- data keys, wrapped ----------------------------------------------------------------
    def _wrap(self, person_ref: str, key: bytes) -> tuple[bytes, str]:
        nonce = os.urandom(12)
        kek = AESGCM(self._keks[self._current_kid])
        return nonce + kek.encrypt(nonce, key, b"data-key:" + person_ref.encode()), \
            self._current_kid

    def _unwrap(self, person_ref: str, wrapped: bytes, kid: str) -> bytes:
        kek = self._keks.get(kid)
        if kek is None:
            raise KeyUnavailable(f"the data key of {person_ref} is wrapped by KEK {kid!r}, "
                                 "which is not configured")
        try:
            return AESGCM(kek).decrypt(wrapped[:12], wrapped[12:],
                                       b"data-key:" + person_ref.encode())
        except InvalidTag:
            raise KeyUnavailable(f"the data key of {person_ref} does not unwrap with KEK "
                                 f"{kid!r}") from None

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
                fresh = AESGCM.generate_key(bit_length=256)
                wrapped, kid = self._wrap(person_ref, fresh)
                inserted = conn.execute(
                    "INSERT INTO person_keys (person_ref, wrapped_key, kek_id) "
                    "VALUES (%s, %s, %s) ON CONFLICT DO NOTHING RETURNING person_ref",
                    (person_ref, wrapped, kid)).fetchone()
                if inserted is not None:
                    row = (wrapped, kid)
            if row is None:
                row = conn.execute(
                    "SELECT wrapped_key, kek_id FROM person_keys WHERE person_ref=%s",
                    (person_ref,)).fetchone()
            if row is not None:  # a person without a row is not remembered: may come later
                key = (self._unwrap(person_ref, bytes(row[0]), row[1])
                       if row[0] is not None else None)
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
        wrapped = [self._wrap(ref, AESGCM.generate_key(bit_length=256)) for ref in missing]
        conn.execute(  # hex text arrays: psycopg dumps them far faster than bytea arrays
            "INSERT INTO person_keys (person_ref, wrapped_key, kek_id) "
            "SELECT r, decode(k, 'hex'), i FROM unnest(%s::text[], %s::text[], %s::text[]) "
            "AS t(r, k, i) ON CONFLICT DO NOTHING",
            (missing, [w.hex() for w, _ in wrapped], [kid for _, kid in wrapped]))
        for ref, key, kid in conn.execute(
                "SELECT person_ref, wrapped_key, kek_id FROM person_keys "
                "WHERE person_ref = ANY(%s)", (missing,)).fetchall():
            self._remember(ref, self._unwrap(ref, bytes(key), kid) if key is not None
                           else None)

    def rotate_kek(self) -> dict[str, Any]:
        """Rewrap every data key not wrapped by the current KEK (in batches, each its own
        transaction; safe to run while the service runs, and again after an interruption).
        ``{"kek_id", "rewrapped", "remaining"}``; ``remaining`` counts keys whose KEK is not
        configured (KeyUnavailable: they stay as they are, listed by the command)."""
        conn = self._connection()
        rewrapped, unavailable = 0, []
        after = ""
        while True:
            rows = conn.execute(
                "SELECT person_ref, wrapped_key, kek_id FROM person_keys "
                "WHERE wrapped_key IS NOT NULL AND kek_id <> %s AND person_ref > %s "
                "ORDER BY person_ref LIMIT 500", (self._current_kid, after)).fetchall()
            if not rows:
                break
            updates = []
            for ref, wrapped, kid in rows:
                after = ref
                try:
                    key = self._unwrap(ref, bytes(wrapped), kid)
                except KeyUnavailable:
                    unavailable.append(ref)
                    continue
                new_wrapped, new_kid = self._wrap(ref, key)
                updates.append((new_wrapped, new_kid, ref, kid))
            with conn.transaction():
                with conn.cursor() as cur:  # only a key still wrapped as read is rewrapped
                    cur.executemany(
                        "UPDATE person_keys SET wrapped_key = %s, kek_id = %s "
                        "WHERE person_ref = %s AND kek_id = %s AND wrapped_key IS NOT NULL",
                        updates)
            rewrapped += len(updates)
        return {"kek_id": self._current_kid, "rewrapped": rewrapped,
                "remaining": len(unavailable), "unavailable": unavailable[:100]}

    def kek_usage(self) -> dict[str, int]:
        """How many live data keys each KEK wraps (``{kid: count}``)."""
        return {kid: n for kid, n in self._connection().execute(
            "SELECT kek_id, count(*) FROM person_keys WHERE wrapped_key IS NOT NULL "
            "GROUP BY kek_id ORDER BY kek_id").fetchall()}

    # ---- sealing and opening ---------------------------------------------------------------
    def seal(self, person_ref: str, value: str) -> Sealed:
        """Seal one value under the person's key (created if new); PersonalDataErased if the
        person was erased."""
        key = self._key(person_ref, create=True)
        nonce = os.urandom(12)
        ciphertext = AESGCM(key).encrypt(nonce, value.encode(), person_ref.encode())
        return {"ref": person_ref, "sealed": base64.b64encode(nonce + ciphertext).decode()}

    def seal_person(self, person_ref: str, values: dict[str, str],
                    display: dict[str, str] | None = None) -> dict[str, Any]:
        """Seal several values of one person, ``{field: value}``, with one key schedule;
        returns ``{"ref": ref, field: sealed, …}``. ``display`` (``{"name": "张**"}``) is
        what read models and queries may show of them (:meth:`display`), kept beside the key
        and erased with it, never in the log. PersonalDataErased if the person was erased."""
        sealed = self._sealed_under(self._key(person_ref, create=True), person_ref, values)
        if display:
            self.set_display({person_ref: display})
        return sealed

    @staticmethod
    def _sealed_under(key: bytes, person_ref: str, values: dict[str, str]) -> dict[str, Any]:
        aead = AESGCM(key)
        aad = person_ref.encode()
        sealed: dict[str, Any] = {"ref": person_ref}
        for field, value in values.items():
            nonce = os.urandom(12)
            sealed[field] = {"ref": person_ref, "sealed": base64.b64encode(
                nonce + aead.encrypt(nonce, value.encode(), aad)).decode()}
        return sealed

    def enrol_and_seal(self, kind: str, id_number: str, values: dict[str, str],
                       display: dict[str, str] | None = None) -> dict[str, Any]:
        """:meth:`enrol` then :meth:`seal_person`, in one round trip for a person new to the
        index: the index entry, the data key and what may be shown go in one statement, and
        the values are sealed under the key that statement stored. A person already in the
        index (or entered by a concurrent enrolment meanwhile) is sealed under their own key
        as :meth:`seal_person` does, and nothing of the fresh ref is left behind."""
        if kind not in PERSON_KINDS:
            raise ValueError(f"unknown kind of person {kind!r}")
        ref = new_person_ref()
        key = AESGCM.generate_key(bit_length=256)
        wrapped, kid = self._wrap(ref, key)
        fields = list(display or {})
        row = self._connection().execute(
            "WITH entered AS (INSERT INTO person_index (kind, digest, person_ref) "
            "  VALUES (%(kind)s, %(digest)s, %(ref)s) ON CONFLICT (kind, digest) DO NOTHING "
            "  RETURNING person_ref), "
            "keyed AS (INSERT INTO person_keys (person_ref, wrapped_key, kek_id) "
            "  SELECT person_ref, %(wrapped)s, %(kid)s FROM entered "
            "  ON CONFLICT DO NOTHING RETURNING person_ref), "
            "shown AS (INSERT INTO person_display (person_ref, field, shown) "
            "  SELECT keyed.person_ref, f, m FROM keyed, "
            "  unnest(%(fields)s::text[], %(masks)s::text[]) AS t(f, m) "
            "  ON CONFLICT (person_ref, field) DO UPDATE SET shown = EXCLUDED.shown) "
            "SELECT (SELECT person_ref FROM keyed), (SELECT person_ref FROM person_index "
            "  WHERE kind = %(kind)s AND digest = %(digest)s)",
            {"kind": kind, "digest": self.blind_index(id_number), "ref": ref,
             "wrapped": wrapped, "kid": kid, "fields": fields,
             "masks": [display[f] for f in fields] if display else []}).fetchone()
        keyed, existing = row
        if keyed is None:  # in the index already: their ref and their own key
            ref = existing or self.enrol(kind, id_number)
            return self.seal_person(ref, values, display)
        self._remember(ref, key)
        return self._sealed_under(key, ref, values)

    # ---- what read models show -------------------------------------------------------------
    def set_display(self, displays: dict[str, dict[str, str]]) -> None:
        """``{ref: {field: mask}}``: what may be shown of each person (the latest wins)."""
        rows = [(ref, field, mask) for ref, fields in displays.items()
                for field, mask in fields.items()]
        if not rows:
            return
        self._connection().execute(
            "INSERT INTO person_display (person_ref, field, shown) "
            "SELECT r, f, m FROM unnest(%s::text[], %s::text[], %s::text[]) AS t(r, f, m) "
            # Never for an erased person. The live key's row is locked (FOR SHARE): an
            # erasure under way is waited for and then seen, and an erasure that comes after
            # waits for this insert, then deletes it (erase updates the key row first). A
            # person without any key row (the carry-over of events of before) is shown too.
            "WHERE EXISTS (SELECT 1 FROM person_keys k WHERE k.person_ref = t.r "
            "AND k.wrapped_key IS NOT NULL FOR SHARE) "
            "OR NOT EXISTS (SELECT 1 FROM person_keys k WHERE k.person_ref = t.r) "
            "ON CONFLICT (person_ref, field) DO UPDATE SET shown = EXCLUDED.shown",
            ([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]))

    def display(self, refs: Iterable[str], field: str = "name") -> dict[str, str]:
        """``{ref: mask}`` for the refs given, :data:`ERASED_MASK` for a person with nothing
        to show (erased, or never shown)."""
        wanted = sorted({r for r in refs if r})
        if not wanted:
            return {}
        shown = dict(self._connection().execute(
            "SELECT person_ref, shown FROM person_display WHERE field = %s "
            "AND person_ref = ANY(%s)", (field, wanted)).fetchall())
        return {ref: shown.get(ref, ERASED_MASK) for ref in wanted}

    def open(self, sealed: Sealed | dict[str, Any] | None) -> str | None:
        """The clear value, or None when there is none (erased here, or in another process
        more than ``key_ttl`` seconds ago; a value from before sealing)."""
        if not sealed or "sealed" not in sealed:
            return None
        key = self._key(sealed["ref"], create=False)
        if key is None:
            return None
        raw = base64.b64decode(sealed["sealed"])
        return AESGCM(key).decrypt(raw[:12], raw[12:], sealed["ref"].encode()).decode()

    def masked(self, sealed: Sealed | dict[str, Any] | None,
               mask: Callable[[str], str]) -> str:
        """The mask a read model shows (``mask(value)``), or :data:`ERASED_MASK`."""
        value = self.open(sealed)
        return mask(value) if value is not None else ERASED_MASK

    def is_erased(self, person_ref: str) -> bool:
        found, key = self._cached(person_ref)
        if found:
            return key is None
        row = self._connection().execute(
            "SELECT wrapped_key IS NULL FROM person_keys WHERE person_ref = %s",
            (person_ref,)).fetchone()
        return bool(row and row[0])

    # ---- one person at a time -------------------------------------------------------------
    @contextmanager
    def person_lock(self, person_ref: str) -> Iterator[None]:
        """Hold the person's lock (a PostgreSQL advisory lock of this service's database,
        on a connection of its own) across several steps that must not interleave with
        another process's: an erasure's retention check and the erasure, against a ban;
        two identifications of one record. Released when the block ends."""
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 7321))",
                         ("person:" + person_ref,))
            yield  # the lock goes with the connection, however the block ends

    # ---- erasure ---------------------------------------------------------------------------
    def erase(self, person_ref: str) -> bool:
        """Delete the person's data key and blind-index entries for good (a person without a
        key yet is recorded as erased, so no process creates one later). True if something
        was there to erase."""
        conn = self._connection()
        with conn.transaction():
            # the key first: a concurrent set_display holding the key row waits here, and
            # its mask is deleted below (see set_display)
            key = conn.execute(
                "INSERT INTO person_keys (person_ref, wrapped_key, kek_id, erased_at) "
                "VALUES (%s, NULL, NULL, now()) ON CONFLICT (person_ref) DO UPDATE SET "
                "wrapped_key = NULL, kek_id = NULL, "
                "erased_at = coalesce(person_keys.erased_at, now()) "
                "WHERE person_keys.wrapped_key IS NOT NULL RETURNING (xmax = 0)",
                (person_ref,)).fetchone()
            index = conn.execute("DELETE FROM person_index WHERE person_ref = %s",
                                 (person_ref,)).rowcount
            index += conn.execute("DELETE FROM person_display WHERE person_ref = %s",
                                  (person_ref,)).rowcount
        self._remember(person_ref, None)
        return bool(index) or (key is not None and not key[0])

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
