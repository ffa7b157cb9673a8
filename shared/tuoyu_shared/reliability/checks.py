"""What the reliability suite counts after each fault, once the system has converged.

- **converged**: every relay has published its service's log to the head, and every consumer's
  position on every upstream is that upstream's head (nothing in flight), steady for a while;
- **lost**: a command the load driver saw accepted (2xx) whose events are not in its service's
  log (found by the correlation id the driver sent);
- **duplicated**: an upstream event applied twice by a reacting service (two events of one
  type on one aggregate caused by the same upstream event), or one create command that made
  two aggregates;
- **read-model mismatches**: a view table that differs (by the hash of its rows) from the same
  view rebuilt from its upstream's log into an empty database;
- **dead letters**: every open dead letter is a poison message injected on purpose, and every
  message set aside at the door is one injected on purpose;
- **audit**: each service's log verifies against its Merkle leaves and signed checkpoints.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import psycopg

from tuoyu_shared.envelope import Envelope

PAGE = 2000


@dataclass
class Expected:
    """What a scenario injected on purpose."""
    poison: set[tuple[str, int]] = field(default_factory=set)  # (upstream, notification id)
    unreadable_marker: str = "reliability-unreadable"
    unreadable: int = 0  # bodies injected that no consumer can read


class Logs:
    """Each service's whole log, read incrementally (only new entries each time)."""

    def __init__(self, system: Any):
        self.system = system
        self.entries: dict[str, list[Envelope]] = defaultdict(list)

    def refresh(self) -> dict[str, list[Envelope]]:
        for service in self.system.event_services():
            app = self.system.app(service)
            entries = self.entries[service]
            while True:
                start = entries[-1].notification_id + 1 if entries else 1
                page = app.read_log(start, PAGE)
                entries.extend(page)
                if len(page) < PAGE:
                    break
        return self.entries


# ---- convergence -----------------------------------------------------------------------------
def _scalar_rows(url: str, query: str) -> list[tuple]:
    with psycopg.connect(url, connect_timeout=5) as conn:
        return conn.execute(query).fetchall()


def positions(system: Any) -> dict[str, Any]:
    """Heads, relay positions and consumer positions, read from each store directly."""
    heads = {s: system.app(s).log_head() for s in system.event_services()}
    relays: dict[str, int] = {}
    consumers: dict[tuple[str, str, str], int] = {}
    for service in [*system.event_services(), "dashboard"]:
        url = system.direct[service]
        with psycopg.connect(url, connect_timeout=5) as conn:
            def exists(table: str) -> bool:
                return conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is not None

            if exists("relay_position"):
                for exchange, n in conn.execute(
                        "SELECT exchange, notification_id FROM relay_position"):
                    relays[exchange] = n
            if exists("consumer_tracking"):
                for consumer, upstream, n in conn.execute(
                        "SELECT consumer, upstream, notification_id FROM consumer_tracking"):
                    consumers[(service, consumer, upstream)] = n
            for (table,) in conn.execute(
                    "SELECT table_name FROM information_schema.columns WHERE table_schema = "
                    "current_schema() AND column_name = 'application_name' AND table_name "
                    "LIKE '%%tracking'").fetchall():
                for name, n in conn.execute(
                        f'SELECT application_name, max(notification_id) FROM "{table}" '
                        "WHERE application_name LIKE '%<-%' GROUP BY application_name"):
                    consumer, upstream = name.split("<-", 1)
                    if upstream == service:  # a one-off data migration's mark, no consumer
                        continue
                    consumers[(service, consumer, upstream)] = n
    return {"heads": heads, "relays": relays, "consumers": consumers}


def behind(state: dict[str, Any]) -> list[str]:
    """What has not caught up, in words (empty when converged)."""
    heads = state["heads"]
    late = []
    for service, head in heads.items():
        published = state["relays"].get(f"{service}.events", 0)
        if published < head:
            late.append(f"{service} relay at {published} of {head}")
    for (service, consumer, upstream), n in state["consumers"].items():
        if upstream in heads and n < heads[upstream]:
            late.append(f"{service}/{consumer} at {n} of {upstream}'s {heads[upstream]}")
    return late


def wait_converged(system: Any, timeout: float = 120.0, steady: float = 2.0
                   ) -> tuple[float, list[str]]:
    """Seconds until nothing is behind and the heads have not moved for ``steady`` seconds,
    and what was the last to catch up (its description when last seen behind)."""
    started = time.monotonic()
    deadline = started + timeout
    last_heads: dict[str, int] | None = None
    steady_since = None
    late: list[str] = ["not read yet"]
    slowest: list[str] = []
    while time.monotonic() < deadline:
        try:
            state = positions(system)
        except psycopg.OperationalError as e:  # a store still starting
            late = slowest = [f"a store is away: {str(e).splitlines()[0]}"]
            time.sleep(0.5)
            continue
        late = behind(state)
        if late:
            slowest = late
        if not late and state["heads"] == last_heads:
            steady_since = steady_since or time.monotonic()
            if time.monotonic() - steady_since >= steady:
                return steady_since - started, slowest[:5]
        else:
            steady_since = None
        last_heads = state["heads"]
        time.sleep(0.25)
    raise TimeoutError(f"not converged after {timeout:.0f}s: {'; '.join(late[:8])}")


# ---- lost and duplicated ---------------------------------------------------------------------
def lost(outcomes: list[Any], logs: dict[str, list[Envelope]]) -> list[Any]:
    """Accepted commands with no event of their correlation id in their service's log."""
    seen: dict[str, set[str]] = {s: {e.correlation_id for e in entries}
                                 for s, entries in logs.items()}
    return [o for o in outcomes if o.accepted and o.correlation_id not in seen.get(o.service, ())]


def duplicated(outcomes: list[Any], logs: dict[str, list[Envelope]]) -> list[str]:
    found = []
    event_ids = {e.event_id: (s, e) for s, entries in logs.items() for e in entries}
    # an upstream event applied twice by a reaction
    for service, entries in logs.items():
        caused = Counter((e.causation_id, e.aggregate_id, e.event_type) for e in entries
                         if e.causation_id in event_ids
                         and event_ids[e.causation_id][0] != service)
        for (cause, aggregate, event_type), count in caused.items():
            if count > 1:
                source, upstream = event_ids[cause]
                found.append(f"{service}: {count}x {event_type} on {aggregate} from "
                             f"{source}#{upstream.notification_id} {upstream.event_type}")
    # a command that created two aggregates (executed twice)
    created: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for service, entries in logs.items():
        for e in entries:
            if e.aggregate_version == 1 and e.correlation_id:
                created[(service, e.correlation_id, e.event_type)].add(e.aggregate_id)
    for o in outcomes:
        if o.aggregate_id is None:
            continue
        for (service, correlation, event_type), aggregates in created.items():
            if service == o.service and correlation == o.correlation_id \
                    and o.aggregate_id in aggregates and len(aggregates) > 1:
                found.append(f"{service}: {o.name} {correlation} created {len(aggregates)} "
                             f"{event_type} aggregates")
    return found


def reordered(logs: dict[str, list[Envelope]]) -> list[str]:
    """Each aggregate's versions in its log: 1, 2, 3... in notification order."""
    found = []
    for service, entries in logs.items():
        last: dict[str, int] = {}
        for e in entries:
            if e.aggregate_version != last.get(e.aggregate_id, 0) + 1:
                found.append(f"{service}: {e.aggregate_id} version {e.aggregate_version} after "
                             f"{last.get(e.aggregate_id, 0)}")
            last[e.aggregate_id] = e.aggregate_version
    return found


# ---- read models against a rebuild -----------------------------------------------------------
def _views_of(system: Any, service: str) -> list[Any]:
    import importlib

    worker = importlib.import_module(f"tuoyu_{service}.worker").WORKER
    views = list(worker.read_models)
    app = system.app(service) if service in system.event_services() else None
    if app is not None and getattr(app, "views", None) is not None:
        views.append(app.views)
    return views


def _rows_hash(url: str, table: str) -> tuple[str, int]:
    """SHA-256 of a table's rows as canonical JSON, sorted, without the columns that say when
    a row was projected (those whose default is ``now()``: a rebuild projects later) or
    number rows in the order projected (a sequence's: the rebuild's table is reused)."""
    from psycopg import sql
    from psycopg.rows import dict_row

    from tuoyu_shared import merkle
    from tuoyu_shared.audit import _plain

    with psycopg.connect(url) as conn, conn.cursor(row_factory=dict_row) as cur:
        columns = [r["column_name"] for r in cur.execute(
            "SELECT column_name, column_default FROM information_schema.columns WHERE "
            "table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position",
            (table,)) if not (r["column_default"] or "").startswith(("now()", "nextval("))]
        cur.execute(sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(table)))
        rows = sorted(merkle.canonical(_plain(row)).decode() for row in cur)
    h = hashlib.sha256()
    for row in rows:
        h.update(row.encode() + b"\n")
    return h.hexdigest(), len(rows)


def read_model_mismatches(system: Any, rebuild_urls: dict[str, str]) -> tuple[list[str], int]:
    """Every view of every service rebuilt into ``rebuild_urls[service]`` (a migrated
    database of that service's, kept for this) and compared table by table. Returns the
    mismatches and how many tables were compared."""
    from dataclasses import replace

    from tuoyu_shared.consumer import ApplicationLog

    mismatches, compared = [], 0
    for service, url in rebuild_urls.items():
        settings = replace(system.settings(service), database_url=url,
                           consumer_max_attempts=2, consumer_retry_delay=0.01)
        for view in _views_of(system, service):
            view.rebuild(settings, ApplicationLog(system.app(view.upstream)))
            for table in view.tables:
                live, live_rows = _rows_hash(system.direct[service], table)
                again, rows = _rows_hash(url, table)
                compared += 1
                if live != again:
                    mismatches.append(f"{service}.{table} ({view.name}): {live_rows} rows live, "
                                      f"{rows} rebuilt, contents differ")
    return mismatches, compared


# ---- dead letters ----------------------------------------------------------------------------
def letters(system: Any) -> tuple[list[tuple], list[tuple]]:
    """Open dead letters (service, consumer, upstream, notification id, held) and messages set
    aside at the door (service, consumer, upstream, body)."""
    parked, unreadable = [], []
    for service in [*system.event_services(), "dashboard"]:
        with psycopg.connect(system.direct[service], connect_timeout=5) as conn:
            parked += [(service, *r) for r in conn.execute(
                "SELECT consumer, upstream, notification_id, held FROM consumer_dead_letters "
                "WHERE redriven_at IS NULL ORDER BY id")]
            unreadable += [(service, *r) for r in conn.execute(
                "SELECT consumer, upstream, body FROM consumer_unreadable_messages ORDER BY id")]
    return parked, unreadable


def unexpected_letters(system: Any, expected: Expected) -> tuple[list[str], int, int]:
    """Dead letters that are not the injected poison (and poison nobody parked), and what the
    door set aside that was not injected. Returns (problems, parked, set aside)."""
    parked, unreadable = letters(system)
    problems = []
    for service, consumer, upstream, n, held in parked:
        if (upstream, n) not in expected.poison:
            problems.append(f"{service}/{consumer} parked {upstream}#{n}"
                            + (" (held)" if held else ""))
    for upstream, n in expected.poison:
        if not any((u, m) == (upstream, n) for _, _, u, m, _ in parked):
            problems.append(f"the poison {upstream}#{n} was parked by no consumer")
    for service, consumer, upstream, body in unreadable:
        if expected.unreadable_marker not in body:
            problems.append(f"{service}/{consumer} set aside a message of {upstream} that was "
                            f"not injected: {body[:120]}")
    if expected.unreadable and not unreadable:
        problems.append("the unreadable messages injected were set aside by no consumer")
    return problems, len(parked), len(unreadable)


# ---- audit -----------------------------------------------------------------------------------
def audit_failures(system: Any, wait: float = 60.0) -> list[str]:
    """Each service's log verified (after its worker has hashed it up to the head)."""
    failures = []
    for service in system.event_services():
        app = system.app(service)
        trail = app.audit_trail
        deadline = time.monotonic() + wait
        table = app.recorder.events_table_name
        while time.monotonic() < deadline:  # a leaf per record (ids may have holes: count)
            with psycopg.connect(system.direct[service]) as conn:
                leaves, records = conn.execute(
                    f'SELECT (SELECT count(*) FROM audit_leaves), (SELECT count(*) FROM "{table}")'
                ).fetchone()
            if leaves >= records:
                break
            time.sleep(0.3)
        else:
            failures.append(f"{service}: the audit worker hashed {leaves} of {records} records "
                            f"in {wait:.0f}s")
        report = trail.verify()
        if not report["ok"]:
            failures.append(f"{service}: {report.get('problems') or report}")
    return failures


def digest(outcomes: list[Any]) -> str:
    return hashlib.sha256("".join(sorted(o.correlation_id for o in outcomes)).encode()
                          ).hexdigest()[:12]
