"""What auditors read and check of an event-sourced service (审计): its log as a Merkle tree
with signed checkpoints, proofs, verification, a case's history and state at any point, and
signed exports.

The tree and the proofs are :mod:`tuoyu_shared.merkle` (which is also the auditors' own
verifier, ``tools/tuoyu_verify.py``). Here is the service's side:

- **Leaves.** :meth:`AuditTrail.append` hashes each stored record after the last leaf,
  exactly as written (ciphertext of personal data included: erasing a person's key changes
  no hash), into ``audit_leaves`` in notification order, with the aggregate, time and
  correlation id auditors search by. The worker's ``audit`` part does it as events commit.
  Notification ids commit in order (the recorder's table lock), so a leaf is never skipped.
- **Checkpoints.** :meth:`AuditTrail.checkpoint` signs the tree's size and root (Ed25519,
  ``TUOYU_<SERVICE>_AUDIT_SIGNING_KEYS``), every ``TUOYU_AUDIT_CHECKPOINT_INTERVAL`` seconds
  while the log grows; the worker publishes each to the ``<service>.checkpoints`` exchange and
  appends it to ``<TUOYU_AUDIT_CHECKPOINT_DIR>/<service>.checkpoints.jsonl``: copies outside
  the database that whoever changes the database cannot change with it.
- **Verification.** :meth:`AuditTrail.verify` recomputes every leaf from the records, compares
  it with the leaf recorded at the time, checks every checkpoint's signature and root on the
  way, and names the first notification id changed, deleted or inserted. (Whoever can write
  the database and changes a record *and* its leaf is caught by the checkpoints' roots, at
  the first checkpoint after it; records after the latest checkpoint are protected only once
  the next one is made.)
- **Cases.** :meth:`AuditTrail.history`, :meth:`state` (as of a time or a version),
  :meth:`diff`, :meth:`correlated` (every event of one correlation id, so a case is followed
  across services) and :meth:`export` (a zip: JSON Lines, CSV, the raw records, their proof
  against a checkpoint, a manifest with each file's SHA-256, signed).

Ops and auditors reach it as ``python -m tuoyu_<service> audit …`` and, with the auditor
role, through the gateway (``/api/audit/<service>/…``).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import sys
import threading
import time
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from tuoyu_shared import merkle
from tuoyu_shared.envelope import to_json_value
from tuoyu_shared.errors import NotFound
from tuoyu_shared.history import history_entry
from tuoyu_shared.logs import get_logger

log = get_logger("tuoyu.audit")

#: Payload fields that say why an event happened (the legal basis, a reason), shown beside it.
REASON_FIELDS = ("legal_basis", "basis", "reason", "grounds", "cause")
_LOCK = "tuoyu-audit:{}"


def signing_keys(settings: Any) -> tuple[tuple[str, bytes], ...]:
    """The service's checkpoint keys: configured, or (outside production) its development
    key, as :func:`tuoyu_shared.config.settings_for` derives it."""
    if settings.audit_signing_keys:
        return settings.audit_signing_keys
    from tuoyu_shared.config import _audit_signing_keys

    return _audit_signing_keys(settings.service)


def _private(seed: bytes) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(seed)


def public_keys(settings: Any) -> dict[str, Any]:
    """``{"keys": [{key_id, algorithm, public_key}]}``: what an auditor's verifier trusts."""
    from cryptography.hazmat.primitives import serialization

    out = []
    for kid, seed in signing_keys(settings):
        raw = _private(seed).public_key().public_bytes(serialization.Encoding.Raw,
                                                       serialization.PublicFormat.Raw)
        out.append({"key_id": kid, "algorithm": "Ed25519",
                    "public_key": base64.b64encode(raw).decode()})
    return {"service": settings.service, "keys": out}


def _bad(field: str, message: str, code: str = "invalid") -> Exception:
    from tuoyu_shared.validation import FieldError, ValidationFailed

    return ValidationFailed([FieldError(field, message, code)])


def _uuid(value: Any, field: str = "aggregate_id") -> UUID:
    try:
        return UUID(str(value))
    except ValueError:
        raise _bad(field, "must be a UUID") from None


def _instant(value: Any, field: str) -> datetime:
    """An ISO 8601 date-time with its offset, or a date (the end of that day in
    Asia/Shanghai, where officers are)."""
    from zoneinfo import ZoneInfo

    text = str(value)
    try:
        if len(text) == 10:
            day = datetime.fromisoformat(text)
            return day.replace(hour=23, minute=59, second=59, microsecond=999999,
                               tzinfo=ZoneInfo("Asia/Shanghai")).astimezone(UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _bad(field, "must be an ISO 8601 date (2026-06-30) or date-time with its "
                   "offset (2026-06-30T12:00:00+08:00)") from None
    if moment.tzinfo is None:
        raise _bad(field, "a date-time needs its offset (+08:00 or Z)")
    return moment.astimezone(UTC)


def _plain(value: Any) -> Any:
    """JSON of an aggregate's attribute, whatever it is (a value object: its fields)."""
    value = to_json_value(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    import dataclasses

    if dataclasses.is_dataclass(value):
        return _plain({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    if hasattr(value, "__dict__"):
        return _plain({k: v for k, v in vars(value).items() if not k.startswith("_")})
    return str(value)


def state_of(aggregate: Any) -> dict[str, Any]:
    """An aggregate's fields, as an auditor reads them (personal data as its ref only)."""
    fields = {name.lstrip("_"): value for name, value in vars(aggregate).items()
              if name != "_pending_events"}
    return _plain(fields)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def diff_states(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """Field by field (nested fields by their dotted path): each one that differs."""
    a, b = _flatten(before), _flatten(after)
    return [{"field": name, "from": a.get(name), "to": b.get(name)}
            for name in sorted(a.keys() | b.keys()) if a.get(name) != b.get(name)]


class AuditTrail:
    """One service's audit trail over its own database (see the module's docstring)."""

    def __init__(self, app: Any):
        self.app = app
        self.settings = app.settings
        self.service = app.service_name
        self.origin = f"tuoyu/{self.service}"
        self.table = sql.Identifier(app.recorder.events_table_name)
        self._tree = merkle.CompactRange()
        self._tree_lock = threading.Lock()
        #: The worker loop's own connection, kept between wake-ups (None: one per call).
        self._held: psycopg.Connection | None = None
        self._holder: int | None = None  # the thread of the loop that keeps it

    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(self.settings.database_url)

    @contextmanager
    def _session(self) -> Iterator[psycopg.Connection]:
        """A connection for one step of the worker loop: the loop's own one, kept open
        between wake-ups (a new session per commit cost PostgreSQL a backend and an
        authentication each time), or a connection of its own outside the loop. A step ends
        with its transaction committed; one that fails drops the kept connection."""
        if self._holder != threading.get_ident():
            with self._connect() as conn:
                yield conn
            return
        conn = self._held
        if conn is None or conn.closed or conn.broken:
            conn = self._held = self._connect()
        try:
            yield conn
            conn.commit()
        except BaseException:
            self._drop_held()
            raise

    def _drop_held(self) -> None:
        conn, self._held = self._held, None
        if conn is not None:
            with suppress(Exception):
                conn.close()

    # ---- the tree ---------------------------------------------------------------------------
    def _records(self, conn: psycopg.Connection, after: int, limit: int,
                 upto: int | None = None) -> list[dict[str, Any]]:
        rows = conn.execute(sql.SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state FROM {} "
            "WHERE notification_id > %s AND (%s::bigint IS NULL OR notification_id <= %s) "
            "ORDER BY notification_id LIMIT %s").format(self.table),
            (after, upto, upto, limit)).fetchall()
        return _as_records(rows)

    def _event(self, record: dict[str, Any]) -> Any:
        from eventsourcing.persistence import StoredEvent

        return self.app.mapper.to_domain_event(StoredEvent(
            originator_id=UUID(record["originator_id"]),
            originator_version=record["originator_version"],
            topic=record["topic"], state=record["state"]))

    def _facts(self, record: dict[str, Any]) -> tuple[datetime | None, str]:
        """A record's time and correlation id (for searching; None and '' if it does not
        decode: its leaf is recorded all the same)."""
        try:
            event = self._event(record)
        except Exception:
            return None, ""
        meta = vars(event).get("meta") or {}
        return event.timestamp, str(meta.get("correlation_id") or "")[:200]

    def append(self, limit: int = 5000) -> int:
        """Hash the stored records after the last leaf into the tree (at most ``limit``);
        returns how many. One appender at a time (a transaction-scoped advisory lock)."""
        with self._session() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))",
                         (_LOCK.format(self.service),))
            last = conn.execute("SELECT position, notification_id FROM audit_leaves "
                                "ORDER BY position DESC LIMIT 1").fetchone()
            position, after = (last[0] + 1, last[1]) if last else (0, 0)
            records = self._records(conn, after, limit)
            if not records:
                return 0
            with conn.cursor().copy(
                    "COPY audit_leaves (position, notification_id, leaf_hash, aggregate_id, "
                    "aggregate_version, occurred_at, correlation_id) FROM STDIN") as copy:
                for offset, record in enumerate(records):
                    occurred_at, correlation_id = self._facts(record)
                    copy.write_row((position + offset, record["notification_id"],
                                    merkle.record_leaf_hash(record), record["originator_id"],
                                    record["originator_version"], occurred_at, correlation_id))
        return len(records)

    def leaves(self, size: int | None = None, conn: psycopg.Connection | None = None
               ) -> list[bytes]:
        """The leaf hashes, in position order (the first ``size``)."""
        own = conn is None
        conn = conn or self._connect()
        try:
            rows = conn.execute("SELECT leaf_hash FROM audit_leaves WHERE (%s::bigint IS NULL "
                                "OR position < %s) ORDER BY position", (size, size)).fetchall()
        finally:
            if own:
                conn.close()
        return [bytes(r[0]) for r in rows]

    def _current_tree(self, conn: psycopg.Connection) -> tuple[merkle.CompactRange, int]:
        """The tree of every leaf, and the last leaf's notification id: the cached one
        brought up to date with the leaves since (read again in full when it does not fit)."""
        with self._tree_lock:
            while True:
                rows = conn.execute("SELECT position, leaf_hash FROM audit_leaves "
                                    "WHERE position >= %s ORDER BY position",
                                    (self._tree.size,)).fetchall()
                if not rows or rows[0][0] == self._tree.size:
                    break
                self._tree = merkle.CompactRange()  # the cache does not fit: read all
            for _, leaf in rows:
                self._tree.append(bytes(leaf))
            last = conn.execute("SELECT notification_id FROM audit_leaves WHERE position = %s",
                                (self._tree.size - 1,)).fetchone()
            return self._tree, last[0] if last else 0

    def checkpoint(self) -> dict[str, Any] | None:
        """Sign the tree as it is, if it grew since the last checkpoint (None otherwise)."""
        with self._session() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))",
                         (_LOCK.format(self.service),))
            tree, last_id = self._current_tree(conn)
            latest = conn.execute("SELECT max(tree_size) FROM audit_checkpoints").fetchone()[0]
            if tree.size == 0 or (latest is not None and latest >= tree.size):
                return None
            kid, seed = signing_keys(self.settings)[0]
            body = merkle.checkpoint_body(self.origin, tree.size, tree.root(), last_id,
                                          datetime.now(UTC).isoformat(), kid)
            signed = merkle.sign_checkpoint(_private(seed), body)
            conn.execute(
                "INSERT INTO audit_checkpoints (tree_size, root_hash, last_notification_id, "
                "issued_at, key_id, checkpoint) VALUES (%s, %s, %s, %s, %s, %s)",
                (tree.size, tree.root(), last_id, body["issued_at"], kid,
                 Jsonb(signed)))
        log.info("audit.checkpoint", tree_size=signed["tree_size"],
                 root_hash=signed["root_hash"], last_notification_id=last_id)
        return signed

    def checkpoints(self, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """Signed checkpoints, oldest first, of trees larger than ``after``."""
        with self._connect() as conn:
            rows = conn.execute("SELECT checkpoint FROM audit_checkpoints WHERE tree_size > %s "
                                "ORDER BY tree_size LIMIT %s", (after, limit)).fetchall()
        return [r[0] for r in rows]

    def latest_checkpoint(self) -> dict[str, Any] | None:
        with self._connect() as conn:
            row = conn.execute("SELECT checkpoint FROM audit_checkpoints "
                               "ORDER BY tree_size DESC LIMIT 1").fetchone()
        return row[0] if row else None

    def _checkpoint_of(self, conn: psycopg.Connection, size: int | None) -> dict[str, Any]:
        row = conn.execute(
            "SELECT checkpoint FROM audit_checkpoints WHERE (%s::bigint IS NULL OR tree_size "
            "= %s) ORDER BY tree_size DESC LIMIT 1", (size, size)).fetchone()
        if row is None:
            raise NotFound("no checkpoint" + (f" of {size} events" if size else " yet"))
        return row[0]

    def inclusion(self, notification_id: int, tree_size: int | None = None) -> dict[str, Any]:
        """The audit path of an event in a checkpoint's tree (the latest by default)."""
        with self._connect() as conn:
            cp = self._checkpoint_of(conn, tree_size)
            row = conn.execute("SELECT position, leaf_hash FROM audit_leaves "
                               "WHERE notification_id = %s", (notification_id,)).fetchone()
            if row is None or row[0] >= cp["tree_size"]:
                raise NotFound(f"notification {notification_id} is not in the checkpoint of "
                               f"{cp['tree_size']} events")
            leaves = self.leaves(cp["tree_size"], conn)
        path = merkle.inclusion_proof(row[0], leaves)
        return {"notification_id": notification_id, "position": row[0],
                "tree_size": cp["tree_size"], "leaf_hash": bytes(row[1]).hex(),
                "path": [h.hex() for h in path], "checkpoint": cp}

    def consistency(self, first: int, second: int | None = None) -> dict[str, Any]:
        """That the checkpoint of ``first`` events is a prefix of the one of ``second``."""
        with self._connect() as conn:
            new = self._checkpoint_of(conn, second)
            if not 0 < first <= new["tree_size"]:
                raise _bad("first", f"must be from 1 to {new['tree_size']}")
            leaves = self.leaves(new["tree_size"], conn)
        proof = merkle.consistency_proof(first, leaves)
        return {"first": first, "second": new["tree_size"],
                "first_root": merkle.root_of(leaves[:first]).hex(),
                "proof": [h.hex() for h in proof], "checkpoint": new}

    def records(self, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """The stored records after notification ``after``, as written (``state`` base64):
        what the stand-alone verifier hashes."""
        with self._connect() as conn:
            rows = self._records(conn, after, limit)
        return [{**r, "state": base64.b64encode(r["state"]).decode()} for r in rows]

    def iter_records(self, conn: psycopg.Connection, page: int = 5000,
                     upto: int | None = None, after: int = 0) -> Iterator[dict[str, Any]]:
        while rows := self._records(conn, after, page, upto):
            yield from rows
            after = rows[-1]["notification_id"]

    def _iter_leaves(self, conn: psycopg.Connection) -> Iterator[tuple[int, bytes]]:
        with conn.cursor(name="audit_leaves") as cur:
            cur.itersize = 10000
            cur.execute("SELECT notification_id, leaf_hash FROM audit_leaves ORDER BY position")
            for nid, leaf in cur:
                yield nid, bytes(leaf)

    def _iter_hashed(self, conn: psycopg.Connection) -> Iterator[tuple[int, bytes]]:
        """Each stored record's leaf hash, recomputed, in notification order (one streamed
        read: a server-side cursor)."""
        leaf_bytes, sha256, prefix = merkle.leaf_bytes, hashlib.sha256, merkle.LEAF_PREFIX
        with conn.cursor(name="audit_records") as cur:
            cur.itersize = 5000
            cur.execute(sql.SQL("SELECT notification_id, originator_id, originator_version, "
                                "topic, state FROM {} ORDER BY notification_id").format(
                                    self.table))
            for nid, oid, version, topic, state in cur:
                yield nid, sha256(prefix + leaf_bytes(nid, oid, version, topic, state)).digest()

    def verify(self, kept: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
        """Check the log against its leaves and every checkpoint (its own, and ``kept``: those
        an auditor kept outside): names the first notification id changed, deleted or
        inserted, or the first checkpoint whose root the records do not make."""
        keys = merkle.load_keys(public_keys(self.settings))
        report = merkle.Report()
        started = time.perf_counter()
        with self._connect() as conn:
            own = [r[0] for r in conn.execute(
                "SELECT checkpoint FROM audit_checkpoints ORDER BY tree_size").fetchall()]
            checkpoints = sorted([*own, *kept], key=lambda cp: int(cp["tree_size"]))
            for cp in checkpoints:
                problem = merkle.checkpoint_problem(cp, keys)
                if problem:
                    report.fail("signature", problem)
                    return self._report(report, started, checkpoints)
            by_size: dict[int, str] = {}
            for cp in checkpoints:
                if by_size.setdefault(int(cp["tree_size"]), cp["root_hash"]) != cp["root_hash"]:
                    report.fail("root", f"two checkpoints of {cp['tree_size']} events have "
                                "different roots: history was forked")
                    return self._report(report, started, checkpoints)
            report.checked.append(f"{len(checkpoints)} checkpoints' signatures")
            tree = merkle.compare_leaves(self._iter_hashed(conn), self._iter_leaves(conn),
                                         report, checkpoints)
            largest = max(by_size, default=0)
            if report.ok and tree.size < largest:
                report.fail("deleted", f"{tree.size} records, the checkpoint has {largest}")
        if report.ok:
            report.checked.append(f"{tree.size} records match their leaves and make the root "
                                  "of every checkpoint")
        return self._report(report, started, checkpoints, tree.size - largest)

    def _report(self, report: merkle.Report, started: float, checkpoints: Sequence[Any],
                unchecked: int = 0) -> dict[str, Any]:
        seconds = time.perf_counter() - started
        out = {**report.to_dict(), "service": self.service, "checkpoints": len(checkpoints),
               "not_yet_checkpointed": max(unchecked, 0), "seconds": round(seconds, 3)}
        (log.info if report.ok else log.error)(
            "audit.verified", ok=report.ok, events=report.events, kind=report.kind,
            first_notification_id=report.first_notification_id)
        return out

    # ---- cases ------------------------------------------------------------------------------
    def _aggregate_records(self, conn: psycopg.Connection, aggregate_id: UUID
                           ) -> list[dict[str, Any]]:
        rows = conn.execute(sql.SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state FROM {} "
            "WHERE originator_id = %s ORDER BY originator_version").format(self.table),
            (aggregate_id,)).fetchall()
        if not rows:
            raise NotFound(f"{self.service} has no record {aggregate_id}")
        return _as_records(rows)

    def _entry(self, record: dict[str, Any]) -> dict[str, Any]:
        event = self._event(record)
        entry = history_entry(event, _reasons)
        return {"notification_id": record["notification_id"], "service": self.service,
                "aggregate_id": record["originator_id"], **entry}

    def history(self, aggregate_id: Any) -> dict[str, Any]:
        """Every event of one aggregate (an institution, a credit record, a visit, an
        application, a payment), oldest first: time, actor and department as authenticated,
        reason or legal basis, correlation and causation ids, and its data."""
        oid = _uuid(aggregate_id)
        with self._connect() as conn:
            records = self._aggregate_records(conn, oid)
        events = [self._entry(r) for r in records]
        return {"service": self.service, "aggregate_id": str(oid), "events": events,
                "count": len(events)}

    def _version_at(self, records: list[dict[str, Any]], at: datetime | None,
                    version: int | None) -> int:
        if version is not None:
            if not 1 <= version <= records[-1]["originator_version"]:
                raise _bad("version", f"must be from 1 to {records[-1]['originator_version']}")
            return version
        if at is None:
            return records[-1]["originator_version"]
        chosen = 0
        for record in records:
            if self._event(record).timestamp <= at:
                chosen = record["originator_version"]
        if not chosen:
            raise NotFound(f"{records[0]['originator_id']} did not exist yet at "
                           f"{at.isoformat()}")
        return chosen

    def state(self, aggregate_id: Any, at: Any = None, version: Any = None) -> dict[str, Any]:
        """The aggregate as it was at a date-time (or a date: its end in Asia/Shanghai), or
        at a version; the latest without either."""
        oid = _uuid(aggregate_id)
        moment = _instant(at, "at") if at not in (None, "") else None
        wanted = _version_number(version, "version")
        with self._connect() as conn:
            records = self._aggregate_records(conn, oid)
        chosen = self._version_at(records, moment, wanted)
        aggregate = self.app.repository.get(oid, version=chosen)
        return {"service": self.service, "aggregate_id": str(oid), "version": chosen,
                "as_of": moment.isoformat() if moment else None,
                "type": type(aggregate).__qualname__, "state": state_of(aggregate)}

    def diff(self, aggregate_id: Any, from_version: Any = None, to_version: Any = None,
             from_at: Any = None, to_at: Any = None) -> dict[str, Any]:
        """What changed, field by field, between two points (versions or times) of one
        aggregate; from its creation to now when neither is given."""
        before = self.state(aggregate_id, at=from_at,
                            version=from_version if from_version not in (None, "") else
                            (None if from_at else 1))
        after = self.state(aggregate_id, at=to_at, version=to_version)
        return {"service": self.service, "aggregate_id": before["aggregate_id"],
                "from": {"version": before["version"], "as_of": before["as_of"]},
                "to": {"version": after["version"], "as_of": after["as_of"]},
                "changes": diff_states(before["state"], after["state"])}

    def correlated(self, correlation_id: Any) -> dict[str, Any]:
        """Every event of this service recorded under one correlation id (one officer's
        request and all it set off), in notification order."""
        text = str(correlation_id or "")
        if not text or len(text) > 200:
            raise _bad("correlation_id", "must be 1 to 200 characters")
        # The worker hashes commits into leaves a window after they land: an auditor who
        # looks up the request just made finds it all the same.
        self.append_all()
        with self._connect() as conn:
            nids = [r[0] for r in conn.execute(
                "SELECT notification_id FROM audit_leaves WHERE correlation_id = %s "
                "ORDER BY position LIMIT 1000", (text,)).fetchall()]
            rows = conn.execute(sql.SQL(
                "SELECT notification_id, originator_id, originator_version, topic, state "
                "FROM {} WHERE notification_id = ANY(%s) ORDER BY notification_id").format(
                    self.table), (nids,)).fetchall()
        records = _as_records(rows)
        events = [self._entry(r) for r in records]
        return {"service": self.service, "correlation_id": text, "events": events,
                "count": len(events)}

    # ---- exports ----------------------------------------------------------------------------
    def export(self, since: Any = None, until: Any = None, aggregate_id: Any = None
               ) -> dict[str, Any]:
        """A signed bundle (zip) of one case (``aggregate_id``: its events, each with its
        inclusion proof) or of a period (events from ``since`` to before ``until``, by their
        time; the whole log without either: the records with a range proof), verified
        against a checkpoint made for it. ``{filename, media_type, content_base64}``."""
        oid = _uuid(aggregate_id) if aggregate_id not in (None, "") else None
        start = _instant(since, "since") if since not in (None, "") else None
        end = _instant(until, "until") if until not in (None, "") else None
        if start and end and start >= end:
            raise _bad("until", "must be after since")
        self.append_all()
        self.checkpoint()
        with self._connect() as conn:
            cp = self._checkpoint_of(conn, None)
            size = int(cp["tree_size"])
            if oid is not None:
                records = [r for r in self._aggregate_records(conn, oid)
                           if self._position(conn, r["notification_id"]) < size]
            else:
                lo, hi = conn.execute(
                    "SELECT min(position), max(position) FROM audit_leaves WHERE position < %s"
                    " AND (%s::timestamptz IS NULL OR occurred_at >= %s) AND "
                    "(%s::timestamptz IS NULL OR occurred_at < %s)",
                    (size, start, start, end, end)).fetchone()
                records = []
                if lo is not None:
                    first = conn.execute("SELECT notification_id FROM audit_leaves WHERE "
                                         "position = %s", (lo,)).fetchone()[0]
                    last = conn.execute("SELECT notification_id FROM audit_leaves WHERE "
                                        "position = %s", (hi,)).fetchone()[0]
                    records = list(self.iter_records(conn, upto=last, after=first - 1))
            positions = {nid: pos for nid, pos in conn.execute(
                "SELECT notification_id, position FROM audit_leaves WHERE notification_id = "
                "ANY(%s)", ([r["notification_id"] for r in records],)).fetchall()}
            leaves = self.leaves(size, conn)
        for record in records:
            record["position"] = positions[record["notification_id"]]
        if oid is not None:
            proof: dict[str, Any] = {"kind": "inclusion", "tree_size": size, "proofs": [
                {"position": r["position"], "notification_id": r["notification_id"],
                 "path": [h.hex() for h in merkle.inclusion_proof(r["position"], leaves)]}
                for r in records]}
        elif records:
            lo = records[0]["position"]
            proof = {"kind": "range", "tree_size": size, "first_position": lo,
                     "hashes": [h.hex() for h in merkle.range_proof(
                         lo, lo + len(records), leaves)]}
        else:
            proof = {"kind": "range", "tree_size": size, "hashes": []}
        scope = ({"case": str(oid)} if oid else
                 {"since": start.isoformat() if start else None,
                  "until": end.isoformat() if end else None})
        data = self._bundle(records, proof, cp, scope)
        name = f"tuoyu-{self.service}-audit-{str(oid) if oid else 'period'}.zip"
        return {"filename": name, "media_type": "application/zip",
                "content_base64": base64.b64encode(data).decode()}

    @staticmethod
    def _position(conn: psycopg.Connection, nid: int) -> int:
        row = conn.execute("SELECT position FROM audit_leaves WHERE notification_id = %s",
                           (nid,)).fetchone()
        return row[0] if row else 1 << 62

    def append_all(self) -> int:
        total = 0
        while n := self.append():
            total += n
        return total

    def _bundle(self, records: list[dict[str, Any]], proof: dict[str, Any],
                checkpoint: dict[str, Any], scope: dict[str, Any]) -> bytes:
        from tuoyu_shared.context import current_context

        entries = [{"position": r["position"], **self._entry(r)} for r in records]
        events = "".join(json.dumps(e, ensure_ascii=False, sort_keys=True) + "\n"
                         for e in entries).encode()
        raw = "".join(json.dumps({**r, "state": base64.b64encode(r["state"]).decode()},
                                 sort_keys=True) + "\n" for r in records).encode()
        table = io.StringIO()
        columns = ["notification_id", "position", "service", "aggregate_id", "version",
                   "event_type", "occurred_at", "actor", "department", "reason",
                   "correlation_id", "causation_id", "data"]
        writer = csv.DictWriter(table, columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for e in entries:
            writer.writerow({**e, "reason": e.get("reason") or e.get("legal_basis") or "",
                             "data": json.dumps(e["data"], ensure_ascii=False,
                                                sort_keys=True)})
        files = {"events.jsonl": events, "events.csv": ("\ufeff" + table.getvalue()).encode(),
                 "records.jsonl": raw,
                 "proof.json": json.dumps(proof, indent=1).encode()}
        context = current_context()
        kid, seed = signing_keys(self.settings)[0]
        manifest = {
            "format": merkle.MANIFEST_FORMAT, "service": self.service, "scope": scope,
            "created_at": datetime.now(UTC).isoformat(), "created_by": context.actor,
            "correlation_id": context.correlation_id, "key_id": kid,
            "counts": {"events": len(records)},
            "log_range": {"first_notification_id": records[0]["notification_id"]
                          if records else None,
                          "last_notification_id": records[-1]["notification_id"]
                          if records else None},
            "checkpoint": checkpoint,
            "files": {name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
                             **({"lines": data.count(b"\n")} if name != "proof.json" else {})}
                      for name, data in files.items()},
            "personal_data": "events.jsonl and events.csv carry people only as their random "
                             "ref; records.jsonl holds the stored records as written, personal "
                             "data only as AES-GCM ciphertext whose keys stay in the service",
        }
        manifest_bytes = json.dumps(manifest, ensure_ascii=False, indent=1,
                                    sort_keys=True).encode()
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as bundle:
            for name, data in files.items():
                bundle.writestr(name, data)
            bundle.writestr("manifest.json", manifest_bytes)
            bundle.writestr("manifest.json.sig", merkle.sign(_private(seed), manifest_bytes))
        log.info("audit.exported", events=len(records), scope=json.dumps(scope),
                 actor=context.actor)
        return out.getvalue()

    # ---- replay ----------------------------------------------------------------------------
    def replay_check(self, target_url: str) -> dict[str, Any]:
        """Rebuild the whole service from its log into an empty database (``target_url``,
        created and migrated here): the stored records copied as they are, with the
        personal-data vault's keys (not derived from the log); every aggregate loaded from
        the copy and every view table replayed there. Then compare both sides by hash: each
        aggregate's state and each view table's rows. ``ok`` when all are equal."""
        from dataclasses import replace

        from tuoyu_shared.config import ensure_database
        from tuoyu_shared.consumer import ApplicationLog
        from tuoyu_shared.migrate import migrate

        ensure_database(target_url)
        migrate(self.service, target_url)
        table = self.app.recorder.events_table_name
        with psycopg.connect(target_url) as target:
            if target.execute(sql.SQL("SELECT count(*) FROM {}").format(self.table)
                              ).fetchone()[0]:
                raise _bad("into", "the database to replay into must hold no events")
        started = time.perf_counter()
        with self._connect() as source, psycopg.connect(target_url) as target:
            for name, columns in ((table, "originator_id, originator_version, topic, state, "
                                          "notification_id"),
                                  ("person_keys", "*"), ("person_index", "*")):
                if source.execute("SELECT to_regclass(%s)", (name,)).fetchone()[0] is None:
                    continue
                with source.cursor().copy(sql.SQL("COPY (SELECT {} FROM {}) TO STDOUT "
                                                  "(FORMAT BINARY)").format(
                        sql.SQL(columns), sql.Identifier(name))) as out, \
                        target.cursor().copy(sql.SQL("COPY {} {} FROM STDIN (FORMAT BINARY)"
                                                     ).format(sql.Identifier(name), sql.SQL(
                                                         f"({columns})" if columns != "*"
                                                         else ""))) as into:
                    for block in out:
                        into.write(block)
            target.execute(sql.SQL("SELECT setval(pg_get_serial_sequence(%s, "
                                   "'notification_id'), greatest(max(notification_id), 1)) "
                                   "FROM {}").format(self.table), (table,))
            target.commit()
        copied = time.perf_counter() - started
        replayed = _build_like(self.app, replace(self.settings, database_url=target_url))
        try:
            views: dict[str, Any] = {}
            if self.app.views is not None:
                self.app.catch_up_views()
                self.app.views.rebuild(replayed.settings, ApplicationLog(replayed))
                for name in self.app.views.tables:
                    ours, count = _table_hash(self.settings.database_url, name)
                    theirs, again = _table_hash(target_url, name)
                    views[name] = {"rows": count, "equal": ours == theirs and count == again,
                                   "sha256": ours}
            with self._connect() as conn:
                ids = [r[0] for r in conn.execute(sql.SQL(
                    "SELECT DISTINCT originator_id FROM {} ORDER BY 1").format(self.table))]
            ours_all, theirs_all, different = hashlib.sha256(), hashlib.sha256(), []
            for oid in ids:
                ours = _state_hash(self.app, oid)
                theirs = _state_hash(replayed, oid)
                ours_all.update(f"{oid}:{ours}\n".encode())
                theirs_all.update(f"{oid}:{theirs}\n".encode())
                if ours != theirs and len(different) < 20:
                    different.append(str(oid))
        finally:
            replayed.close()
        ok = not different and all(v["equal"] for v in views.values())
        result = {"ok": ok, "service": self.service, "aggregates": len(ids),
                  "aggregates_sha256": ours_all.hexdigest(),
                  "replayed_aggregates_sha256": theirs_all.hexdigest(),
                  "different_aggregates": different, "views": views,
                  "seconds": {"copy": round(copied, 3),
                              "all": round(time.perf_counter() - started, 3)}}
        (log.info if ok else log.error)("audit.replayed", ok=ok, aggregates=len(ids))
        return result

    # ---- the worker's part ------------------------------------------------------------------
    def publish_pending(self, publisher: Any | None) -> int:
        """Send the checkpoints not yet published to the exchange and the folder."""
        with self._session() as conn:
            rows = conn.execute("SELECT tree_size, checkpoint FROM audit_checkpoints WHERE "
                                "published_at IS NULL ORDER BY tree_size").fetchall()
            for size, cp in rows:
                if publisher is not None:
                    publisher(cp)
                folder = self.settings.audit_checkpoint_dir
                if folder:
                    os.makedirs(folder, exist_ok=True)
                    with open(os.path.join(folder, f"{self.service}.checkpoints.jsonl"), "a",
                              encoding="utf-8") as f:
                        f.write(json.dumps(cp, sort_keys=True) + "\n")
                conn.execute("UPDATE audit_checkpoints SET published_at = now() "
                             "WHERE tree_size = %s", (size,))
                conn.commit()
        return len(rows)

    def run(self, stop: threading.Event) -> None:
        """Worker part: leaves as events commit, a checkpoint every interval while the log
        grows, each published (exchange and folder); never dies, backs off."""
        from tuoyu_shared.tail import CommitSignal, Pacer

        commits = CommitSignal(self.settings.database_url, self.app.events_channel)
        pacer = Pacer(getattr(self.settings, "audit_batch_window", 0.0))
        publisher = CheckpointPublisher(self.settings)
        interval = self.settings.audit_checkpoint_interval
        next_checkpoint = time.monotonic() + min(interval, 5.0)
        backoff = 0.1
        self._holder = threading.get_ident()
        while not stop.is_set():
            try:
                commits.listen()
                pacer.wait(stop)
                appended = self.append()
                if time.monotonic() >= next_checkpoint:
                    self.checkpoint()
                    next_checkpoint = time.monotonic() + interval
                self.publish_pending(publisher.publish)
                backoff = 0.1
                if appended < 5000:
                    commits.wait(min(1.0, max(next_checkpoint - time.monotonic(), 0.05)))
            except Exception as e:
                log.warning("audit.unavailable", error=repr(e), retry_in=backoff)
                publisher.close()
                commits.close()
                self._drop_held()
                stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
        self._holder = None
        self._drop_held()
        publisher.close()
        commits.close()


def _build_like(app: Any, settings: Any) -> Any:
    """The service's application on other settings, as its composition root builds it."""
    from tuoyu_shared.migrate import _composition_root

    root = _composition_root(app.service_name)
    return root.build(settings) if root is not None else type(app)(settings)


def _state_hash(app: Any, aggregate_id: Any) -> str:
    state = state_of(app.repository.get(aggregate_id))
    return hashlib.sha256(merkle.canonical(state)).hexdigest()


def _table_hash(database_url: str, table: str) -> tuple[str, int]:
    """SHA-256 of a table's rows (each as canonical JSON, sorted): equal for equal contents
    whatever their physical order."""
    from psycopg.rows import dict_row

    with psycopg.connect(database_url) as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table)))
        rows = sorted(merkle.canonical(_plain(row)).decode() for row in cur)
    digest = hashlib.sha256()
    for row in rows:
        digest.update(row.encode() + b"\n")
    return digest.hexdigest(), len(rows)


def _as_records(rows: Sequence[Any]) -> list[dict[str, Any]]:
    """Rows of (notification id, aggregate id, version, topic, state) as records."""
    return [{"notification_id": r[0], "originator_id": str(r[1]), "originator_version": r[2],
             "topic": r[3], "state": bytes(r[4] or b"")} for r in rows]


def _version_number(value: Any, field: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise _bad(field, "must be a whole number") from None
    if number < 1:
        raise _bad(field, "must be at least 1")
    return number


def _reasons(event: Any, data: dict[str, Any]) -> dict[str, Any]:
    return {name: data[name] for name in REASON_FIELDS if data.get(name) not in (None, "")}


class CheckpointPublisher:
    """Publishes checkpoints to ``<service>.checkpoints`` (topic, durable, persistent
    messages, publisher confirms), routing key ``checkpoint``."""

    def __init__(self, settings: Any):
        self.settings = settings
        self._conn: Any = None
        self._producer: Any = None

    def publish(self, checkpoint: dict[str, Any]) -> None:
        from kombu import Connection, Exchange, Producer

        if self._conn is None:
            self._conn = Connection(self.settings.amqp_uri, connect_timeout=5,
                                    transport_options={"confirm_publish": True})
            exchange = Exchange(self.settings.checkpoints_exchange, "topic", durable=True)
            self._producer = Producer(self._conn.channel(), exchange)
            exchange.declare(channel=self._producer.channel)
        self._producer.publish(json.dumps(checkpoint, sort_keys=True), routing_key="checkpoint",
                               content_type="application/json", delivery_mode=2,
                               headers={"origin": checkpoint["origin"],
                                        "tree_size": checkpoint["tree_size"]})

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.release()
            except Exception:
                pass
        self._conn = self._producer = None


# ---- the command line: python -m tuoyu_<service> audit … -------------------------------------
def add_command(sub: Any) -> None:
    """The ``audit`` subcommand of a service's command line (:func:`tuoyu_shared.migrate.
    service_main`)."""
    audit = sub.add_parser("audit", help="auditors' reads and checks of the event log")
    commands = audit.add_subparsers(dest="audit_command", required=True)
    commands.add_parser("keys", help="the public keys of the checkpoints (JSON: give it to "
                        "auditors)")
    commands.add_parser("checkpoint", help="hash new records and sign a checkpoint now")
    verify = commands.add_parser("verify", help="check the log against its leaves and "
                                 "every checkpoint; exit 1 naming the first record affected")
    verify.add_argument("--checkpoints", help="checkpoints kept outside (JSON lines)")
    history = commands.add_parser("history", help="every event of one case")
    history.add_argument("aggregate_id")
    state = commands.add_parser("state", help="a case's state as of a date-time or version")
    state.add_argument("aggregate_id")
    state.add_argument("--at", help="2026-06-30 (its end, Asia/Shanghai) or a date-time "
                       "with offset")
    state.add_argument("--version", type=int)
    diff = commands.add_parser("diff", help="a case's changes between two points")
    diff.add_argument("aggregate_id")
    for name in ("from-version", "to-version"):
        diff.add_argument(f"--{name}", type=int)
    for name in ("from-at", "to-at"):
        diff.add_argument(f"--{name}")
    correlated = commands.add_parser("correlated", help="every event of one correlation id")
    correlated.add_argument("correlation_id")
    proof = commands.add_parser("proof", help="an event's inclusion proof")
    proof.add_argument("notification_id", type=int)
    export = commands.add_parser("export", help="a signed export (zip) of a case or period")
    export.add_argument("--since")
    export.add_argument("--until")
    export.add_argument("--case", help="an aggregate id")
    export.add_argument("-o", "--output", required=True, help="the zip file to write")
    export.add_argument("--actor", default="ops-cli", help="who exports (recorded)")
    replay = commands.add_parser("replay", help="rebuild the service from its log into an "
                                 "empty database and compare every aggregate and view")
    replay.add_argument("--into", required=True, help="the empty database's URL")


def run_command(app: Any, args: Any) -> int:
    from tuoyu_shared.context import command_context
    from tuoyu_shared.errors import TuoyuError

    trail: AuditTrail = app.audit_trail
    command = args.audit_command

    def show(value: Any) -> None:
        print(json.dumps(value, ensure_ascii=False, indent=2, default=str))

    try:
        if command == "keys":
            show(public_keys(app.settings))
        elif command == "checkpoint":
            appended = trail.append_all()
            cp = trail.checkpoint() or trail.latest_checkpoint()
            show({"appended": appended, "checkpoint": cp})
        elif command == "verify":
            kept = []
            if args.checkpoints:
                with open(args.checkpoints, encoding="utf-8") as f:
                    kept = [json.loads(line) for line in f if line.strip()]
            report = trail.verify(kept)
            show(report)
            return 0 if report["ok"] else 1
        elif command == "history":
            show(trail.history(args.aggregate_id))
        elif command == "state":
            show(trail.state(args.aggregate_id, at=args.at, version=args.version))
        elif command == "diff":
            show(trail.diff(args.aggregate_id, from_version=args.from_version,
                            to_version=args.to_version, from_at=args.from_at,
                            to_at=args.to_at))
        elif command == "correlated":
            show(trail.correlated(args.correlation_id))
        elif command == "proof":
            show(trail.inclusion(args.notification_id))
        elif command == "replay":
            result = trail.replay_check(args.into)
            show(result)
            return 0 if result["ok"] else 1
        elif command == "export":
            with command_context(actor=args.actor, department="audit"):
                bundle = trail.export(since=args.since, until=args.until,
                                      aggregate_id=args.case)
            data = base64.b64decode(bundle["content_base64"])
            with open(args.output, "wb") as f:
                f.write(data)
            print(f"wrote {args.output} ({len(data)} bytes)")
    except TuoyuError as e:
        print(f"{app.service_name}: {e}", file=sys.stderr)
        return 2
    return 0
