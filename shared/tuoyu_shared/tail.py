"""Wake a log follower (relay, own-log projector) as soon as its application commits.

The eventsourcing PostgreSQL recorder sends ``NOTIFY <events table>`` in every transaction that
inserts events; followers LISTEN on that channel instead of polling, so new events are picked
up within milliseconds. The timeout is only a safety net.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from psycopg import sql


class CommitSignal:
    def __init__(self, database_url: str, channel: str):
        self.database_url = database_url
        self.channel = channel
        self._conn: psycopg.Connection | None = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self.database_url, autocommit=True)
            self._conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        return self._conn

    def listen(self) -> None:
        """Start listening now (before reading), so no commit between is missed."""
        self._connection()

    def wait(self, timeout: float) -> None:
        try:
            for _ in self._connection().notifies(timeout=timeout, stop_after=1):
                pass
        except psycopg.OperationalError:
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class Pacer:
    """At most one round per ``window`` seconds for a follower (relay, projector, consumer,
    audit appender): a round asked for sooner waits out the rest of the window.

    An idle follower answers a commit at once; under load the commits of the window land in
    one round (one read, one transaction, one position write, one publish confirm), instead of
    one round each: the fixed cost of a round is most of what a reaction costs when messages
    come one at a time. ``window`` 0 paces nothing."""

    def __init__(self, window: float):
        self.window = max(0.0, window)
        self._last = float("-inf")

    def due_in(self) -> float:
        """Seconds until the next round may start (0: now)."""
        return max(0.0, self._last + self.window - time.monotonic())

    def wait(self, stop: Any = None) -> None:
        """Wait until the next round may start (``stop``: an Event that ends the wait), and
        mark it started."""
        delay = self.due_in()
        if delay > 0:
            if stop is not None:
                stop.wait(delay)
            else:
                time.sleep(delay)
        self.started()

    def started(self) -> None:
        """Mark a round started now (a follower that gathers by itself)."""
        self._last = time.monotonic()
