"""Prometheus metrics of every Tuoyu process, through ``prometheus_client``.

What ops watch on every service, read from the service's own database when scraped (a
collector, so the numbers are never stale): its event log head, the relay's position and lag,
each consumer's position per upstream, and the messages its consumers parked or hold behind a
parked one (with the aggregate held and the error). Beside them, the process's own metrics in
``prometheus_client``'s default registry: memory, CPU, open file descriptors (the process
collector), garbage collection, the requests the adapter handled (:data:`REQUESTS`,
:data:`REQUEST_SECONDS`) and the events the relay published (:data:`RELAY_PUBLISHED`).

A service's ``/metrics`` (nameko adapter) and a worker's (``tuoyu_shared.worker``) both answer
with :func:`render`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import psycopg
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.openmetrics import exposition as openmetrics

from tuoyu_shared.logs import get_logger

log = get_logger("tuoyu.metrics")

#: Parked letters listed one by one (with their error) per consumer; the count covers all.
LISTED_LETTERS = 20

# ---- process-level metrics (the default registry) -----------------------------------------

#: Every HTTP and RPC entrypoint call the nameko adapter handled (commands and queries), by
#: outcome: ``ok``, ``refused`` (a 4xx, or an RPC refused with a validation or domain error)
#: or ``error`` (a 5xx, or an RPC that failed otherwise).
REQUESTS = Counter("tuoyu_requests", "Entrypoint calls handled, by outcome.",
                   ["service", "entrypoint", "transport", "outcome"])
REQUEST_SECONDS = Histogram("tuoyu_request_duration_seconds",
                            "Time to handle an entrypoint call.",
                            ["service", "entrypoint", "transport"])
#: Events the relay published (confirmed by the broker), since the process started.
RELAY_PUBLISHED = Counter("tuoyu_relay_published", "Events published and confirmed.",
                          ["exchange"])


# ---- the database's metrics, read at scrape time -------------------------------------------

def _text(value: Any) -> str:
    """A label value: any text, a lone surrogate replaced (the exposition is UTF-8)."""
    return str(value).encode("utf-8", "replace").decode("utf-8")


def _gauge(name: str, documentation: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=labels)


def _add(family: GaugeMetricFamily, values: Iterable[Any], value: Any) -> None:
    family.add_metric([_text(v) for v in values], value)


def _rows(conn: psycopg.Connection, table: str, query: str) -> list[tuple]:
    if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None:
        return []
    return conn.execute(query).fetchall()


def consumer_families(service: str, conn: psycopg.Connection,
                      tracking_table: str | None = None) -> list[Metric]:
    """Consumer positions and dead letters in one service's database."""
    consumer_labels = ["service", "consumer", "upstream"]
    positions = _gauge("tuoyu_consumer_position", "Last upstream notification id applied.",
                       consumer_labels)
    rows: list[tuple] = _rows(
        conn, "consumer_tracking",
        "SELECT consumer, upstream, notification_id FROM consumer_tracking")
    if tracking_table:
        rows += [(*name.split("<-", 1), n) for name, n in _rows(
            conn, tracking_table,
            f'SELECT application_name, max(notification_id) FROM "{tracking_table}" '
            "WHERE application_name LIKE '%<-%' GROUP BY application_name")]
    from tuoyu_shared.consumer import UPSTREAM_SEEN

    lag = _gauge("tuoyu_consumer_lag_events",
                 "Upstream events this consumer has heard of and not yet applied (from its "
                 "worker only: the newest id a message or log head brought, less the "
                 "position).", consumer_labels)
    for consumer, upstream, position in rows:
        _add(positions, (service, consumer, upstream), position)
        seen = UPSTREAM_SEEN.get((consumer, upstream))
        if seen is not None:
            _add(lag, (service, consumer, upstream), max(0, seen - position))
    letters = _rows(
        conn, "consumer_dead_letters",
        "SELECT consumer, upstream, held, count(*), count(DISTINCT aggregate_id) "
        "FROM consumer_dead_letters WHERE redriven_at IS NULL "
        "GROUP BY consumer, upstream, held")
    parked = _gauge("tuoyu_parked_messages", "Messages that failed every try, not re-driven.",
                    consumer_labels)
    held = _gauge("tuoyu_held_messages",
                  "Later events of an aggregate waiting behind its parked one.", consumer_labels)
    held_aggregates = _gauge("tuoyu_held_aggregates",
                             "Aggregates whose events wait on a parked one.", consumer_labels)
    for consumer, upstream, is_held, count, aggregates in letters:
        labels = (service, consumer, upstream)
        if is_held:
            _add(held, labels, count)
        else:
            _add(parked, labels, count)
            _add(held_aggregates, labels, aggregates)
    listed = _gauge("tuoyu_parked_message", "A parked message: which, of which aggregate, why.",
                    ["service", "consumer", "upstream", "dead_letter_id", "notification_id",
                     "event_type", "aggregate_id", "error"])
    for consumer, upstream, i, n, event_type, aggregate, error in _rows(
            conn, "consumer_dead_letters",
            "SELECT consumer, upstream, id, notification_id, event_type, aggregate_id, error "
            "FROM (SELECT *, row_number() OVER (PARTITION BY consumer ORDER BY id) AS k "
            "FROM consumer_dead_letters WHERE redriven_at IS NULL AND NOT held) AS open "
            f"WHERE k <= {LISTED_LETTERS} ORDER BY id"):
        _add(listed, (service, consumer, upstream, i, n, event_type, aggregate,
                      ((error or "").splitlines() or [""])[-1][:200]), 1)
    return [positions, lag, parked, held, held_aggregates, listed]


class _DatabaseCollector:
    """Reads its families from the database at each collect; with the database away it
    yields ``tuoyu_database_up 0`` alone (the process's metrics are still served)."""

    service: str

    def families(self) -> list[Metric]:
        raise NotImplementedError

    def collect(self) -> Iterator[Metric]:
        try:
            families = self.families()
            up = 1
        except Exception as e:  # psycopg's or eventsourcing's: the database is away
            log.warning("metrics.database_unavailable", service=self.service, error=repr(e))
            families, up = [], 0
        reachable = _gauge("tuoyu_database_up",
                           "Whether the service's database answered this scrape.", ["service"])
        _add(reachable, (self.service,), up)
        yield reachable
        yield from families


class EventLogCollector(_DatabaseCollector):
    """An event-sourced service's (an eventsourcing application's): log head, relay position
    and lag per exchange, consumers and dead letters."""

    def __init__(self, service: str, app: Any):
        self.service = service
        self.app = app

    def families(self) -> list[Metric]:
        head = self.app.log_head()
        log_head = _gauge("tuoyu_log_head", "Newest notification id in the service's event log.",
                          ["service"])
        _add(log_head, (self.service,), head)
        position = _gauge("tuoyu_relay_position", "Last notification id the relay published.",
                          ["service", "exchange"])
        lag = _gauge("tuoyu_relay_lag", "Events recorded but not yet published.",
                     ["service", "exchange"])
        with psycopg.connect(self.app.settings.database_url, autocommit=True) as conn:
            for exchange, published in _rows(
                    conn, "relay_position", "SELECT exchange, notification_id FROM relay_position"):
                _add(position, (self.service, exchange), published)
                _add(lag, (self.service, exchange), max(head - published, 0))
            consumers = consumer_families(self.service, conn,
                                          getattr(self.app.recorder, "tracking_table_name", None))
        return [log_head, position, lag, *consumers]


class ReadModelCollector(_DatabaseCollector):
    """A service with read models only (the dashboard): consumers and dead letters."""

    def __init__(self, service: str, database_url: str):
        self.service = service
        self.database_url = database_url

    def families(self) -> list[Metric]:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            return consumer_families(self.service, conn)


# ---- exposition ----------------------------------------------------------------------------

class _Forward:
    """Another registry's metrics, collected into a per-request one."""

    def __init__(self, registry: CollectorRegistry):
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        yield from self.registry.collect()


def registry_of(*collectors: Any, process: bool = True) -> CollectorRegistry:
    """A registry for one scrape: the given collectors and, with ``process``, everything in
    the default registry (process, platform and GC collectors, requests, relay)."""
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)
    if process:
        registry.register(_Forward(REGISTRY))
    return registry


def wants_openmetrics(accept: str | None) -> bool:
    """Whether an ``Accept`` header asks for OpenMetrics 1.0.0 (any header at all is read
    without failing: prometheus_client's own negotiation raises on a malformed version)."""
    for part in (accept or "").split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if media.lower() == "application/openmetrics-text":
            version = next((p.split("=", 1)[1].strip() for p in params
                            if p.lower().startswith("version=")), "1.0.0")
            if version == "1.0.0":
                return True
    return False


def render(*collectors: Any, accept: str | None = None) -> tuple[bytes, str]:
    """The body and content type of a ``/metrics`` answer: the Prometheus text format
    (0.0.4), or OpenMetrics 1.0.0 when the scraper's ``Accept`` header asks for it."""
    registry = registry_of(*collectors)
    if wants_openmetrics(accept):
        return openmetrics.generate_latest(registry), openmetrics.CONTENT_TYPE_LATEST
    return generate_latest(registry), CONTENT_TYPE_PLAIN_0_0_4


def event_log_metrics(service: str, app: Any) -> str:
    """The database's metrics of an event-sourced service, as Prometheus text."""
    return generate_latest(registry_of(EventLogCollector(service, app), process=False)).decode()


def read_model_metrics(service: str, database_url: str) -> str:
    """The database's metrics of a read-model service (the dashboard), as Prometheus text."""
    return generate_latest(registry_of(ReadModelCollector(service, database_url),
                                       process=False)).decode()
