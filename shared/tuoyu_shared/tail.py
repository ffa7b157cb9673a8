"""Wake a log follower (relay, own-log projector) as soon as its application commits.

The eventsourcing PostgreSQL recorder sends ``NOTIFY <events table>`` in every transaction that
inserts events; followers LISTEN on that channel instead of polling, so new events are picked
up within milliseconds. The timeout is only a safety net.
"""

from __future__ import annotations

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
