"""Read models (query tables) declared once: a name, the upstream whose log feeds them, their
tables (made by the service's migrations), and the handler that applies one envelope.

A view is projected by a tracked consumer (:mod:`tuoyu_shared.consumer`) whose name is the
view's, so its position and dead letters are found by that name. :meth:`View.rebuild` drops the
tables and replays them from the upstream's log; it may run while the worker's own projector of
the same view runs, because both apply under the same tracking row lock and position check
(effectively once).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from tuoyu_shared.consumer import (
    SqlTrackingStore,
    TrackedConsumer,
    UpstreamLog,
    tracked_consumer,
)
from tuoyu_shared.envelope import Envelope
from tuoyu_shared.logs import get_logger

log = get_logger("tuoyu.views")


def by_event_type(handlers: dict[str, Callable[[Envelope, psycopg.Cursor], None]]
                  ) -> Callable[[Envelope, psycopg.Cursor], None]:
    """A view's handler from one handler per event type: types it names are applied, the
    others only move the view's position."""

    def project(env: Envelope, cur: psycopg.Cursor) -> None:
        handler = handlers.get(env.event_type)
        if handler is not None:
            handler(env, cur)

    return project


@dataclass(frozen=True)
class View:
    name: str
    upstream: str
    tables: tuple[str, ...]
    handler: Callable[[Envelope, psycopg.Cursor], None]

    def reset(self, database_url: str) -> None:
        """Empty the tables and drop the position and the open letters of this view, in one
        transaction holding the tracking row: the next catch-up replays the whole log."""
        with psycopg.connect(database_url) as conn, conn.transaction():
            conn.execute("INSERT INTO consumer_tracking (consumer, upstream, notification_id) "
                         "VALUES (%s, %s, 0) ON CONFLICT DO NOTHING", (self.name, self.upstream))
            conn.execute("SELECT 1 FROM consumer_tracking WHERE consumer=%s AND upstream=%s "
                         "FOR UPDATE", (self.name, self.upstream))
            conn.execute(sql.SQL("TRUNCATE {}").format(
                sql.SQL(", ").join(map(sql.Identifier, self.tables))))
            conn.execute("UPDATE consumer_tracking SET notification_id=0, updated_at=now() "
                         "WHERE consumer=%s AND upstream=%s", (self.name, self.upstream))
            conn.execute("DELETE FROM consumer_dead_letters WHERE consumer=%s AND upstream=%s",
                         (self.name, self.upstream))

    def consumer(self, settings: Any, log_reader: UpstreamLog | None = None,
                 **options: Any) -> TrackedConsumer:
        """The tracked consumer that projects this view (over RPC unless a reader is given)."""
        return tracked_consumer(settings, name=self.name, upstream=self.upstream,
                                handler=self.handler,
                                store=SqlTrackingStore(settings.database_url, self.name),
                                log_reader=log_reader, **options)

    def rebuild(self, settings: Any, log_reader: UpstreamLog | None = None) -> int:
        """Drop and replay from the upstream's log; returns how many events were read."""
        self.reset(settings.database_url)
        consumer = self.consumer(settings, log_reader)
        try:
            count = consumer.catch_up()
        finally:
            consumer.store.close()
        # A replay writes the tables anew: their statistics (and visibility map, which
        # index-only scans need) are brought up to date now, not when autovacuum comes by.
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(
                sql.SQL(", ").join(map(sql.Identifier, self.tables))))
        log.info("view.rebuilt", view=self.name, upstream=self.upstream, events=count)
        return count
