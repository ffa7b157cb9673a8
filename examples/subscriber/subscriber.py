#!/usr/bin/env python3
"""An external subscriber of Tuoyu's events, written with plain kombu and the standard library
(no nameko, nothing of Tuoyu's code): what another government system would write.

    python examples/subscriber/subscriber.py --amqp amqp://tuoyu-subscriber:…@host/ \\
        --gateway http://127.0.0.1:8000 --token "$SUBSCRIBER_TOKEN" \\
        --sources registration,credit --db subscriber.sqlite3 --name mysystem

What it does, by the contract (``/catalogue/`` on the gateway, the AsyncAPI documents):

- **Its own durable queue per source**, ``subscriber.<name>.<source>``, bound to the
  source's topic exchange ``<source>.events`` for every current event type (routing key
  ``*``; an earlier version still served for a while comes as ``<Type>.v<N>``). The exchange is
  not declared (the subscriber user may not): the queue is bound once the source exists.
- **In order, once, per source.** It keeps, in its SQLite file, the last notification id it
  applied of each source, and applies an event (here: stores it) in the same transaction that
  moves that position. A message at or before the position is a duplicate and is skipped; a
  message whose ``previous_notification_id`` header is past the position means messages were
  lost (a queue purged, a subscription made late): the gap is filled first from the source's
  notification log through the gateway (``GET /api/events/<source>?start=…&stop=…``).
- **Resumes after being stopped**: at start it reads the log from its position to the
  source's head, then consumes; whatever the queue kept meanwhile is then a duplicate.
- **CloudEvents**: it also records each message's ``cloudEvents_type`` header, which generic
  CloudEvents tooling reads the same way.

SIGTERM or Ctrl-C stop it after the message in hand.
"""

from __future__ import annotations

import argparse
import json
import signal
import sqlite3
import sys
import threading
import time
import urllib.parse
import urllib.request

from kombu import Connection, Consumer, Exchange, Queue

SCHEMA = """
CREATE TABLE IF NOT EXISTS positions (source TEXT PRIMARY KEY, notification_id INTEGER);
CREATE TABLE IF NOT EXISTS events (
    source TEXT, notification_id INTEGER, event_id TEXT, event_type TEXT,
    schema_version INTEGER, aggregate_id TEXT, occurred_at TEXT, cloudevents_type TEXT,
    via TEXT, envelope TEXT, PRIMARY KEY (source, notification_id));
"""


class Store:
    """The subscriber's own state: positions and what it applied."""

    def __init__(self, path: str):
        self.db = sqlite3.connect(path, check_same_thread=False)
        self.db.executescript(SCHEMA)
        self.lock = threading.Lock()

    def position(self, source: str) -> int:
        row = self.db.execute("SELECT notification_id FROM positions WHERE source = ?",
                              (source,)).fetchone()
        return row[0] if row else 0

    def apply(self, source: str, envelope: dict, via: str, ce_type: str | None) -> bool:
        """Apply one event in order; False if it was applied already."""
        with self.lock, self.db:  # one transaction: the event and the position
            if envelope["notification_id"] <= self.position(source):
                return False
            self.db.execute(
                "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (source, envelope["notification_id"], envelope["event_id"],
                 envelope["event_type"], envelope["schema_version"], envelope["aggregate_id"],
                 envelope["occurred_at"], ce_type, via, json.dumps(envelope)))
            self.db.execute("INSERT INTO positions VALUES (?, ?) ON CONFLICT (source) DO "
                            "UPDATE SET notification_id = excluded.notification_id",
                            (source, envelope["notification_id"]))
            return True


class Log:
    """A source's notification log through the gateway (a subscriber's token)."""

    def __init__(self, gateway: str, token: str):
        self.gateway, self.token = gateway.rstrip("/"), token

    def _get(self, path: str, **query) -> dict:
        url = f"{self.gateway}{path}"
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items()
                                                 if v is not None})
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def head(self, source: str) -> int:
        return self._get(f"/api/events/{source}/head")["head"]

    def read(self, source: str, start: int, stop: int | None) -> list[dict]:
        """Every envelope from ``start`` to ``stop`` (the head when None), page by page."""
        found: list[dict] = []
        while True:
            page = self._get(f"/api/events/{source}", start=start, stop=stop,
                             limit=500)["events"]
            found.extend(page)
            if len(page) < 500:
                return found
            start = page[-1]["notification_id"] + 1


class Subscriber:
    def __init__(self, args: argparse.Namespace):
        self.sources = [s.strip() for s in args.sources.split(",") if s.strip()]
        self.store = Store(args.db)
        self.log = Log(args.gateway, args.token)
        self.amqp, self.name = args.amqp, args.name
        self.stop = threading.Event()
        self.applied = 0

    def say(self, what: str, **facts) -> None:
        print(json.dumps({"at": time.time(), "event": what, **facts}, ensure_ascii=False),
              flush=True)

    def fill(self, source: str, stop: int | None, why: str) -> None:
        start = self.store.position(source) + 1
        if stop is not None and stop < start:
            return
        for envelope in self.log.read(source, start, stop):
            if self.store.apply(source, envelope, "log", None):
                self.applied += 1
        self.say("filled", source=source, why=why, position=self.store.position(source))

    def on_message(self, body, message) -> None:
        try:
            envelope = json.loads(body) if isinstance(body, (bytes, str)) else body
            headers = message.headers or {}
            source = envelope["source"]
            previous = int(headers.get("previous_notification_id", 0))
            if previous > self.store.position(source):
                self.fill(source, previous, f"gap before {envelope['notification_id']}")
            if self.store.apply(source, envelope, "broker", headers.get("cloudEvents_type")):
                self.applied += 1
        except (ValueError, KeyError, TypeError) as e:  # not an envelope: set aside, go on
            self.say("unreadable", error=repr(e))
        message.ack()

    def queues(self) -> list[Queue]:
        return [Queue(f"subscriber.{self.name}.{source}",
                      Exchange(f"{source}.events", "topic", durable=True, no_declare=True),
                      routing_key="*", durable=True) for source in self.sources]

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with Connection(self.amqp, heartbeat=10, connect_timeout=5) as conn:
                    channel = conn.channel()
                    for queue in self.queues():
                        queue(channel).declare()  # first: events from now on are kept
                    for source in self.sources:  # then: everything before, from the log
                        self.fill(source, None, "start")
                    with Consumer(channel, self.queues(), callbacks=[self.on_message],
                                  accept=["json"], prefetch_count=100):
                        self.say("consuming", sources=self.sources)
                        while not self.stop.is_set():
                            try:
                                conn.drain_events(timeout=0.5)
                            except TimeoutError:
                                conn.heartbeat_check()
            except Exception as e:  # the broker or the gateway away: wait, start again
                self.say("retrying", error=repr(e))
                self.stop.wait(2)
        self.say("stopped", applied=self.applied,
                 positions={s: self.store.position(s) for s in self.sources})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--amqp", required=True, help="the broker, as the subscriber user")
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--token", required=True, help="a subscriber's token")
    parser.add_argument("--sources", default="registration")
    parser.add_argument("--db", default="subscriber.sqlite3")
    parser.add_argument("--name", default="example")
    subscriber = Subscriber(parser.parse_args(argv))
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: subscriber.stop.set())
    subscriber.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
