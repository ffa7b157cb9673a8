"""Prometheus text for what ops watch on every service: its event log head, the relay's
position and lag, each consumer's position per upstream, and the messages its consumers parked
or hold behind a parked one (with the aggregate held and the error), read from the service's
own database.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg

#: Parked letters listed one by one (with their error) per consumer; the count covers all.
LISTED_LETTERS = 20


def label(value: Any) -> str:
    """A label value in the text exposition format: backslash, quote and newline escaped."""
    return (str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n"))


def sample(name: str, labels: dict[str, Any], value: Any) -> str:
    inner = ",".join(f'{key}="{label(v)}"' for key, v in labels.items())
    return f"{name}{{{inner}}} {value}"


def _rows(conn: psycopg.Connection, table: str, query: str) -> list[tuple]:
    if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None:
        return []
    return conn.execute(query).fetchall()


def consumer_metrics(service: str, conn: psycopg.Connection,
                     tracking_table: str | None = None) -> list[str]:
    """Consumer positions and dead letters in one service's database."""
    lines = ["# HELP tuoyu_consumer_position Last upstream notification id applied.",
             "# TYPE tuoyu_consumer_position gauge"]
    positions: list[tuple] = _rows(
        conn, "consumer_tracking",
        "SELECT consumer, upstream, notification_id FROM consumer_tracking")
    if tracking_table:
        positions += [(*name.split("<-", 1), n) for name, n in _rows(
            conn, tracking_table,
            f'SELECT application_name, max(notification_id) FROM "{tracking_table}" '
            "WHERE application_name LIKE '%<-%' GROUP BY application_name")]
    for consumer, upstream, position in positions:
        lines.append(sample("tuoyu_consumer_position", {
            "service": service, "consumer": consumer, "upstream": upstream}, position))
    letters = _rows(
        conn, "consumer_dead_letters",
        "SELECT consumer, upstream, held, count(*), count(DISTINCT aggregate_id) "
        "FROM consumer_dead_letters WHERE redriven_at IS NULL "
        "GROUP BY consumer, upstream, held")
    lines += ["# HELP tuoyu_parked_messages Messages that failed every try, not re-driven.",
              "# TYPE tuoyu_parked_messages gauge"]
    lines += [sample("tuoyu_parked_messages", {"service": service, "consumer": c,
                                               "upstream": u}, n)
              for c, u, held, n, _ in letters if not held]
    lines += ["# HELP tuoyu_held_messages Later events of an aggregate waiting behind its "
              "parked one.", "# TYPE tuoyu_held_messages gauge"]
    lines += [sample("tuoyu_held_messages", {"service": service, "consumer": c,
                                             "upstream": u}, n)
              for c, u, held, n, _ in letters if held]
    lines += ["# HELP tuoyu_held_aggregates Aggregates whose events wait on a parked one.",
              "# TYPE tuoyu_held_aggregates gauge"]
    held_aggregates: dict[tuple[str, str], int] = {}
    for c, u, held, _, aggregates in letters:
        if not held:
            held_aggregates[(c, u)] = aggregates
    lines += [sample("tuoyu_held_aggregates", {"service": service, "consumer": c,
                                               "upstream": u}, n)
              for (c, u), n in held_aggregates.items()]
    lines += ["# HELP tuoyu_parked_message A parked message: which, of which aggregate, why.",
              "# TYPE tuoyu_parked_message gauge"]
    lines += [sample("tuoyu_parked_message", {
        "service": service, "consumer": c, "upstream": u, "dead_letter_id": i,
        "notification_id": n, "event_type": t, "aggregate_id": a,
        "error": (e.splitlines() or [""])[-1][:200]}, 1)
        for c, u, i, n, t, a, e in _rows(
            conn, "consumer_dead_letters",
            "SELECT consumer, upstream, id, notification_id, event_type, aggregate_id, error "
            "FROM (SELECT *, row_number() OVER (PARTITION BY consumer ORDER BY id) AS k "
            "FROM consumer_dead_letters WHERE redriven_at IS NULL AND NOT held) AS open "
            f"WHERE k <= {LISTED_LETTERS} ORDER BY id")]
    return lines


def event_log_metrics(service: str, app: Any) -> str:
    """Everything above for an event-sourced service (an eventsourcing application)."""
    head = app.log_head()
    lines = [
        "# HELP tuoyu_log_head Newest notification id in the service's event log.",
        "# TYPE tuoyu_log_head gauge",
        sample("tuoyu_log_head", {"service": service}, head),
    ]
    with psycopg.connect(app.settings.database_url, autocommit=True) as conn:
        lines += ["# TYPE tuoyu_relay_position gauge", "# TYPE tuoyu_relay_lag gauge"]
        for exchange, position in _rows(conn, "relay_position",
                                        "SELECT exchange, notification_id FROM relay_position"):
            labels = {"service": service, "exchange": exchange}
            lines.append(sample("tuoyu_relay_position", labels, position))
            lines.append(sample("tuoyu_relay_lag", labels, max(head - position, 0)))
        lines += consumer_metrics(service, conn,
                                  getattr(app.recorder, "tracking_table_name", None))
    return exposition(lines)


def read_model_metrics(service: str, database_url: str) -> str:
    """For a service with read models only (the dashboard)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        return exposition(consumer_metrics(service, conn))


def exposition(lines: Iterable[str]) -> str:
    return "\n".join(lines) + "\n"
