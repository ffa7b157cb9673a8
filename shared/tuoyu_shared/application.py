"""The base of every service's eventsourcing ``Application``.

It adds three things to the library's Application:

- configuration from :mod:`tuoyu_shared.config` (the service's own database, whose schema its
  migrations make: the application runs no DDL);
- the command context (actor, department, correlation and causation ids) stamped on each new
  event as ``meta`` before it is recorded, so the relay can build the envelope from the store;
- the notification log read as envelopes, which the relay publishes and other services pull
  over RPC when they find a gap.
"""

from __future__ import annotations

import functools
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, TypeVar
from uuid import UUID

from eventsourcing.application import (
    AggregateNotFoundError,
    Application,
    ProcessingEvent,
    Repository,
)
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    StoredEvent,
    Tracking,
    Transcoder,
    Transcoding,
)
from eventsourcing.postgres import PostgresAggregateRecorder, PostgresProcessRecorder
from eventsourcing.utils import retry
from psycopg.sql import SQL, Identifier

from tuoyu_shared.config import Settings, settings_for
from tuoyu_shared.context import current_context
from tuoyu_shared.envelope import Envelope, envelope_from_event, event_type_of
from tuoyu_shared.errors import Conflict
from tuoyu_shared.logs import get_logger

log = get_logger("tuoyu.application")


T = TypeVar("T")


class DateAsISO(Transcoding):
    """Dates (a filing date, a birth month) stored as ISO strings."""

    import datetime as _dt

    type = _dt.date
    name = "date_iso"

    def encode(self, obj: Any) -> str:
        return obj.isoformat()

    def decode(self, data: str) -> Any:
        return self._dt.date.fromisoformat(data)


def _is_version_conflict(error: IntegrityError) -> bool:
    """Whether the library's IntegrityError is a key taken (an aggregate's version saved by
    another command), not some other constraint the data breaks."""
    sqlstate = getattr(error.__cause__, "sqlstate", None)
    return sqlstate in (None, "23505")


def _run_and_save(save: Callable[..., Any], load: Callable[[], Sequence[Any]],
                  command: Callable[..., T], retries: int) -> T:
    """Load, run the command, save; on a version conflict, all again after a jittered pause
    (:meth:`ServiceApplication.update`, :meth:`ServiceApplication.update_many`)."""
    for attempt in range(retries + 1):
        aggregates = tuple(load())
        result = command(*aggregates)
        try:
            save(*aggregates)
            return result
        except IntegrityError as e:
            if attempt == retries:
                if not _is_version_conflict(e):
                    raise  # a constraint the data breaks: a bug, not contention
                raise Conflict(
                    f"the record was changed by other commands each of the {retries + 1} "
                    "times this command tried to save it; try again") from e
            # jittered backoff, so contenders do not collide again in lockstep
            time.sleep(random.uniform(0, 0.002 * (attempt + 1)))
    raise AssertionError("unreachable")


class ServiceProcessRecorder(PostgresProcessRecorder):
    """The library's process recorder, with two changes.

    One hook: ``in_transaction(cursor)``, passed to ``save`` or
    :meth:`ServiceApplication.record_processing`, runs in the transaction that records the
    events and the tracking record. Consumers use it to write a parked message, or mark one
    re-driven, atomically with the effect.

    The events table's lock held for one round trip less. The library takes ``LOCK TABLE …
    IN EXCLUSIVE MODE`` (so notification ids commit in the order they were issued: a reader
    tailing the log never passes an id that commits later), inserts, waits for the insert's
    result and only then sends ``COMMIT``: every other writer of the service waits on the
    lock for a whole client round trip, and under eventlet for as long as the holder's green
    thread waits to be scheduled (docs/performance.md). Here the lock, the inserts and the
    ``COMMIT`` go to the server in one pipelined batch, so the lock is held only while the
    server runs them. A failed insert (a version taken: optimistic concurrency) aborts the
    batch, the ``COMMIT`` is skipped and the transaction rolled back: nothing of it stays.
    """

    def _insert_events(self, curs: Any, stored_events: Any, **kwargs: Any) -> None:
        super()._insert_events(curs, stored_events, **kwargs)
        in_transaction = kwargs.get("in_transaction")
        if in_transaction is not None:
            in_transaction(curs)

    def select_streams(self, limits: Mapping[UUID, int | None]) -> dict[UUID, list[StoredEvent]]:
        """The events of several aggregates in one statement (one round trip, where
        ``select_events`` for each would take one each): for each id, its events from the
        first version on, at most its limit of them (None: all)."""
        parts, params = [], []
        for originator_id, limit in limits.items():
            part = self.select_events_statement + SQL(" ORDER BY originator_version ASC")
            params.append(originator_id)
            if limit is not None:
                part += SQL(" LIMIT %s")
                params.append(limit)
            parts.append(SQL("({})").format(part))
        found: dict[UUID, list[StoredEvent]] = {originator_id: [] for originator_id in limits}
        if not parts:
            return found
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(SQL(" UNION ALL ").join(parts), params, prepare=True)
            for row in curs.fetchall():
                found[row["originator_id"]].append(stored_event_of(row))
        return found

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(self, stored_events: Sequence[Any], **kwargs: Any) -> Sequence[int] | None:
        from psycopg.pq import TransactionStatus

        notification_ids: Sequence[int] | None = None
        with self.datastore.get_connection() as conn:
            try:
                with conn.pipeline() as pipeline:
                    with conn.cursor() as curs:
                        curs.execute("BEGIN")
                        # the tracking record and the hook first: the lock comes after them
                        self._insert_events(curs, stored_events, **kwargs)
                        if stored_events:
                            self._lock_table(curs)
                            self._notify_channel(curs)
                    insert = conn.cursor()
                    if stored_events:
                        PostgresAggregateRecorder._insert_stored_events(
                            self, insert, stored_events)
                    conn.execute("COMMIT")
                    pipeline.sync()
                if stored_events:
                    notification_ids = self._fetch_ids_after_insert_events(insert,
                                                                           stored_events)
                insert.close()
            except BaseException:
                if conn.info.transaction_status != TransactionStatus.IDLE:
                    conn.rollback()
                raise
        return notification_ids


def stored_event_of(row: Any) -> StoredEvent:
    """A stored event from a row of an events or snapshots table (a dict row)."""
    return StoredEvent(originator_id=row["originator_id"],
                       originator_version=row["originator_version"],
                       topic=row["topic"], state=bytes(row["state"]))


def project_events(aggregate: Any, domain_events: Any) -> Any:
    """The library's ``project_aggregate`` without its ``isinstance`` check of each event
    against a runtime-checkable Protocol (an ``assert``, which ``typing`` answers by walking the
    protocol's attributes: 40% of the time of loading a 60-event aggregate, measured). Every
    event of the store is an event class of the library's, which mutates."""
    for domain_event in domain_events:
        aggregate = domain_event.mutate(aggregate)
    return aggregate


class BatchRepository(Repository):
    """The library's repository, with an identity map while a batch is open
    (:meth:`ServiceApplication.batch`): within it, getting an aggregate (latest version) a
    second time gives the same object, with the changes the batch's earlier steps made and
    have not saved yet, so one save records them all. Outside a batch, and for past
    versions, it is the library's repository unchanged. Per thread."""

    _batch: threading.local

    @classmethod
    def adopt(cls, repository: Repository) -> BatchRepository:
        repository.__class__ = cls  # the library's object, with the get below
        repository._batch = threading.local()  # type: ignore[attr-defined]
        return repository  # type: ignore[return-value]

    def get(self, aggregate_id: Any, *, version: int | None = None, **kwargs: Any) -> Any:
        kwargs.setdefault("projector_func", project_events)
        seen = getattr(self._batch, "seen", None)
        if seen is None or version is not None:
            return super().get(aggregate_id, version=version, **kwargs)
        found = seen.get(aggregate_id)
        if found is None:
            found = seen[aggregate_id] = super().get(aggregate_id, **kwargs)
        return found

    def _reconstruct_aggregate(self, aggregate_id: Any, version: int | None,
                               projector_func: Any) -> Any:
        """The latest version from its last snapshot and the events after it, read in one
        statement (the library reads the snapshot, then the events: two round trips for
        every get of an aggregate, in every command and reaction)."""
        statement = self._latest_statement() if version is None else None
        if statement is None:
            return super()._reconstruct_aggregate(aggregate_id, version, projector_func)
        snapshots, events = [], []
        with self._datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement, {"id": aggregate_id}, prepare=True)
            for row in curs.fetchall():
                stored = stored_event_of(row)
                if row["snapshot"]:
                    snapshots.append(self.snapshot_store.mapper.to_domain_event(stored))
                else:
                    events.append(self.event_store.mapper.to_domain_event(stored))
        aggregate = projector_func(None, [*snapshots, *events])
        if aggregate is None:
            raise AggregateNotFoundError(f"Aggregate {aggregate_id!r} version None not found.")
        return aggregate

    def _latest_statement(self) -> Any:
        statement = getattr(self, "_latest_sql", False)
        if statement is False:
            statement = self._latest_sql = None
            snapshots = getattr(self.snapshot_store, "recorder", None)
            events = getattr(self.event_store, "recorder", None)
            if (isinstance(snapshots, PostgresAggregateRecorder)
                    and isinstance(events, PostgresAggregateRecorder)
                    and snapshots.datastore is events.datastore):
                self._datastore = events.datastore
                values = {"schema": Identifier(events.datastore.schema),
                          "snapshots": Identifier(snapshots.events_table_name),
                          "events": Identifier(events.events_table_name)}
                statement = self._latest_sql = SQL(
                    "(SELECT true AS snapshot, originator_id, originator_version, topic, state "
                    "FROM {schema}.{snapshots} WHERE originator_id = %(id)s "
                    "ORDER BY originator_version DESC LIMIT 1) "
                    "UNION ALL "
                    "(SELECT false, originator_id, originator_version, topic, state "
                    "FROM {schema}.{events} WHERE originator_id = %(id)s "
                    "AND originator_version > coalesce((SELECT max(originator_version) "
                    "FROM {schema}.{snapshots} WHERE originator_id = %(id)s), 0) "
                    "ORDER BY originator_version)").format(**values)
        return statement


class SchemaNotMigrated(RuntimeError):
    """The service's database has not been migrated (``python -m tuoyu_<service> migrate``)."""


class ServiceApplication(Application[UUID]):
    service_name: ClassVar[str] = ""

    def __init__(self, settings: Settings | None = None, env: dict[str, str] | None = None):
        self.settings = settings or settings_for(self.service_name)
        super().__init__(env={
            **self.settings.eventsourcing_env(),
            "PROCESS_RECORDER_TOPIC": "tuoyu_shared.application:ServiceProcessRecorder",
            **(env or {})})
        self._check_migrated()

    def _check_migrated(self) -> None:
        """The application runs no DDL: its tables come from its migrations. Say so at
        start rather than at the first command."""
        import psycopg

        table = self.recorder.events_table_name  # type: ignore[attr-defined]
        with psycopg.connect(self.settings.database_url) as conn:
            if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None:
                raise SchemaNotMigrated(
                    f"{self.settings.database_url.rsplit('@', 1)[-1]} has no table {table}: "
                    f"run python -m tuoyu_{self.service_name} migrate")

    def register_transcodings(self, transcoder: Transcoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(DateAsISO())

    def construct_recorder(self):  # type: ignore[override]
        # A process recorder: events and a consumer's tracking commit in one transaction.
        return self.factory.process_recorder()

    def construct_repository(self):  # type: ignore[override]
        return BatchRepository.adopt(super().construct_repository())

    @contextmanager
    def batch(self) -> Iterator[dict[Any, Any]]:
        """An identity map for the steps of one batch (a consumer applying a page of
        messages in one transaction): the same aggregate object for every get of an id, so
        each step sees the earlier ones' unsaved changes. Yields the map, to which a step's
        new aggregates are added. Nested batches share the outer one's map."""
        local = self.repository._batch  # type: ignore[attr-defined]
        outer = getattr(local, "seen", None)
        if outer is not None:
            yield outer
            return
        local.seen, local.marks = {}, set()
        try:
            yield local.seen
        finally:
            local.seen = local.marks = None

    def streams(self, limits: Mapping[UUID, int | None]) -> dict[UUID, list[Any]]:
        """The domain events of several aggregates, read in one statement
        (:meth:`ServiceProcessRecorder.select_streams`): for each id, from its first version
        on, at most its limit of them (None: all). For a command that must look at several
        aggregates, most often absent, before it decides: one round trip, where a get of each
        would take one each. :meth:`aggregate_of` rebuilds one."""
        recorder: Any = self.recorder
        return {originator_id: [self.mapper.to_domain_event(e) for e in stored]
                for originator_id, stored in recorder.select_streams(limits).items()}

    @staticmethod
    def aggregate_of(domain_events: Sequence[Any]) -> Any:
        """The aggregate a whole stream of events (from its first version) makes; None for
        none."""
        return project_events(None, domain_events) if domain_events else None

    def batch_marks(self) -> set[int] | None:
        """Within a batch, a set the application may keep marks in (the ids of event objects
        a step has derived something from already, so the save does not derive it again);
        None outside one."""
        return getattr(self.repository._batch, "marks", None)  # type: ignore[attr-defined]

    def after_step(self, aggregates: list[Any]) -> list[Any]:
        """Within a batch, after each step (one message's reaction): the aggregates to save
        for it. A service whose save derives changes to other aggregates from these (as
        registration's employment records follow its rosters) derives them here, so that the
        batch's later steps read them as a later message would read them after a save."""
        return aggregates

    def stamp(self, aggregates: Sequence[Any]) -> None:
        """Stamp the aggregates' new events with the current command context now (a batch's
        steps each run under their own message's correlation and causation ids, and are
        saved together later)."""
        self._stamp(tuple(aggregates))

    def _stamp(self, objs: tuple[Any, ...]) -> tuple[list[Any], dict[str, str]]:
        meta = current_context().as_dict()
        pending = [event for obj in objs for event in getattr(obj, "pending_events", ())]
        for event in pending:
            if "meta" not in vars(event):  # stamped already by its own step of a batch
                object.__setattr__(event, "meta", meta)
        return pending, meta

    def _log_recorded(self, pending: list[Any], meta: dict[str, str]) -> None:
        if len(pending) > 20:  # a bulk save (an import): one line, not thousands
            types = sorted({event_type_of(e) for e in pending})
            log.info("events.recorded", count=len(pending), event_types=types,
                     actor=meta["actor"], department=meta["department"])
            return
        for event in pending:
            log.info("event.recorded", aggregate_id=str(event.originator_id),
                     aggregate_version=event.originator_version, event_type=event_type_of(event),
                     actor=meta["actor"], department=meta["department"])

    def save(self, *objs: Any, **kwargs: Any):  # type: ignore[override]
        pending, meta = self._stamp(objs)
        recordings = super().save(*objs, **kwargs)
        self._log_recorded(pending, meta)
        return recordings

    def bulk_save(self, *objs: Any) -> int:
        """Record many new aggregates' events (or new events themselves) with one binary
        COPY (imports).

        The same guarantees as :meth:`save` for readers of the notification log: the
        events table is locked for writes (so notification ids commit in order) and the
        commit notifies the followers. Version conflicts fail the whole batch (IntegrityError).
        No tracking, no snapshots: meant for new aggregates.
        """
        from psycopg import errors as pg_errors
        from psycopg.sql import SQL, Identifier

        meta = current_context().as_dict()
        events = [e for o in objs
                  for e in (o.collect_events() if hasattr(o, "collect_events") else (o,))]
        for event in events:
            object.__setattr__(event, "meta", meta)
        stored = [self.mapper.to_stored_event(e) for e in events]
        if not stored:
            return 0
        recorder: Any = self.recorder
        copy_sql = SQL("COPY {}.{} (originator_id, originator_version, topic, state) "
                       "FROM STDIN (FORMAT BINARY)").format(
            Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name))
        try:
            with recorder.datastore.get_connection() as conn, conn.transaction(), \
                    conn.cursor() as cur:
                for statement in recorder.lock_table_statements:
                    cur.execute(statement)
                cur.execute(SQL("NOTIFY {}").format(Identifier(recorder.channel_name)))
                with cur.copy(copy_sql) as copy:
                    copy.set_types(["uuid", "int8", "text", "bytea"])
                    for s in stored:
                        copy.write_row((s.originator_id, s.originator_version, s.topic,
                                        s.state))
        except pg_errors.UniqueViolation as e:
            raise IntegrityError(str(e)) from e
        self._log_recorded(events, meta)
        return len(stored)

    def update(self, aggregate_id: UUID, command: Callable[[Any], T], retries: int = 30) -> T:
        """Load an aggregate, run a command on it and save it.

        Optimistic concurrency: when another command saved the same aggregate in between, the
        save fails on the (id, version) key; the command is then run again on the fresh state,
        so concurrent commands are serialised, never lost. A command that the fresh state no
        longer allows raises its own domain error on the retry. When every try conflicts, the
        caller gets a :class:`~tuoyu_shared.errors.Conflict` (HTTP 409: try again).
        """
        return _run_and_save(self.save, lambda: (self.repository.get(aggregate_id),), command,
                             retries)

    def update_many(self, load: Callable[[], Sequence[Any]], command: Callable[..., T],
                    retries: int = 30) -> T:
        """:meth:`update` of several aggregates at once: ``load()`` gives them (loaded, or
        new), ``command(*them)`` changes any of them, and all their new events are saved in
        one transaction, with optimistic concurrency on each. A conflict on any runs
        ``load`` and the command again on fresh state; those that did not change are only
        read (their versions are not checked)."""
        return _run_and_save(self.save, load, command, retries)

    def update_creating(self, aggregate_id: UUID,
                        command: Callable[[Any], tuple[T, Sequence[Any]]],
                        retries: int = 30) -> T:
        """:meth:`update` of a command that also creates aggregates: ``command(aggregate)``
        returns its result and the new aggregates, which are saved with the aggregate in one
        transaction (a plan's draw and the visits it schedules). A conflict runs the command
        again on fresh state (new aggregates with derived ids then collide, never doubled)."""
        created: list[Any] = []

        def run(aggregate: Any) -> T:
            result, new = command(aggregate)
            created[:] = new
            return result

        return _run_and_save(lambda *loaded: self.save(*loaded, *created),
                             lambda: (self.repository.get(aggregate_id),), run, retries)

    # Reacting to other services, effectively once.
    def tracking_position(self, tracking_name: str) -> int:
        return self.recorder.max_tracking_id(tracking_name) or 0  # type: ignore[attr-defined]

    def record_processing(self, tracking_name: str, notification_id: int,
                          *aggregates: Any,
                          in_transaction: Callable[[Any], None] | None = None) -> bool:
        """Save the aggregates' new events and the tracking record in one transaction
        (with ``in_transaction(cursor)`` run in it too, if given).

        Returns False when the tracking position is already at or past this notification
        (a redelivery): nothing is written then.
        """
        pending, meta = self._stamp(aggregates)
        processing = ProcessingEvent(tracking=Tracking(tracking_name, notification_id))
        if in_transaction is not None:
            processing.collect_events(*aggregates, in_transaction=in_transaction)
        else:
            processing.collect_events(*aggregates)
        try:
            recordings = self._record(processing)
        except IntegrityError:
            if self.tracking_position(tracking_name) >= notification_id:
                return False
            raise
        self._take_snapshots(processing)
        self._notify(recordings)
        self._log_recorded(pending, meta)
        return True

    # The service's own query tables, projected from its own log.
    #: The view (:class:`tuoyu_shared.views.View`) of the service's query tables, if any.
    views: ClassVar[Any] = None

    def query(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        """Rows of a read on the service's query tables, as JSON values (dates ISO)."""
        from psycopg.rows import dict_row

        from tuoyu_shared.envelope import to_json_value

        # A connection of the application's pool (autocommit): a session opened for each
        # read cost PostgreSQL a backend and an authentication, several ms of both sides' CPU
        # on every list an officer opens.
        # (The pool itself, not the datastore's wrapper: psycopg's errors stay psycopg's.)
        pool = self.recorder.datastore.pool  # type: ignore[attr-defined]
        pool.open(wait=True, timeout=30)  # a no-op once open
        with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(sql, params)
            return to_json_value(cur.fetchall())

    def catch_up_views(self) -> None:
        """Bring the service's own query tables up to its log now (a timer about to read
        them; a decision that may read them), beside the worker's projector: both apply
        under the view's tracking row, effectively once."""
        projector = self.views_projector()
        try:
            projector.catch_up()
        finally:
            projector.store.close()

    def views_projector(self) -> Any:
        """A follower of this service's own log into its query tables. Each thread that
        projects needs its own (it holds a database connection)."""
        from tuoyu_shared.consumer import ApplicationLog

        assert self.views is not None, f"{type(self).__name__} has no views"
        return self.views.consumer(self.settings, ApplicationLog(self))

    @functools.cached_property
    def audit_trail(self) -> Any:
        """The log's Merkle tree, checkpoints, proofs and auditors' reads
        (:class:`tuoyu_shared.audit.AuditTrail`)."""
        from tuoyu_shared.audit import AuditTrail

        return AuditTrail(self)

    # What the service publishes (:class:`tuoyu_shared.contract.Contract`).
    contract: ClassVar[Any] = None

    # The notification log, as envelopes.
    def read_log(self, start: int, limit: int, stop: int | None = None) -> list[Envelope]:
        """The log from ``start`` as published: each event through the service's contract."""
        items = self.recorder.select_notifications(start=max(start, 1), limit=limit, stop=stop)
        if self.contract is None:
            return [envelope_from_event(self.service_name, n.id, self.mapper.to_domain_event(n))
                    for n in items]
        return [self.contract.envelope(n.id, self.mapper.to_domain_event(n)) for n in items]

    def log_head(self) -> int:
        return self.recorder.max_notification_id() or 0

    @property
    def events_channel(self) -> str:
        """The PostgreSQL NOTIFY channel the recorder signals on each commit."""
        return self.recorder.channel_name  # type: ignore[attr-defined]
