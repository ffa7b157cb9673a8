"""The kit's recorder sends the events table's lock, the inserts and the COMMIT in one batch
(``ServiceProcessRecorder.insert_events``): these are the guarantees that must not change
with it. A taken version fails the whole transaction and leaves the pooled connection
usable; a failing hook or tracking record leaves nothing behind; concurrent writers get
notification ids that commit in the order they were issued, so a reader tailing the log never
passes an id that appears later."""

from __future__ import annotations

import threading

import pytest
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import IntegrityError, Tracking

from tuoyu_credit.application import CreditApplication


class Counter(Aggregate):
    def __init__(self) -> None:
        self.n = 0

    @event("Counted")
    def count(self) -> None:
        self.n += 1


@pytest.fixture
def app(settings_factory):
    application = CreditApplication(settings_factory("credit"))
    yield application
    application.close()


def _rows(app: CreditApplication) -> int:
    return len(app.recorder.select_notifications(start=1, limit=10_000))


def test_a_taken_version_fails_the_whole_transaction_and_the_connection_stays_usable(app):
    stored_first = [app.mapper.to_stored_event(e) for e in Counter().collect_events()]
    app.recorder.insert_events(stored_first)
    taken = stored_first[0]
    second = Counter()
    second.count()
    stored_second = [app.mapper.to_stored_event(e) for e in second.collect_events()]
    before = _rows(app)
    for _ in range(3):  # every pooled connection sees the failure and recovers from it
        with pytest.raises(IntegrityError):
            app.recorder.insert_events([*stored_second, taken])
    assert _rows(app) == before  # the new aggregate's two events did not stay either
    ids = app.recorder.insert_events(stored_second)
    assert len(ids) == 2 and ids[1] == ids[0] + 1  # (the failed ones used up sequence values)
    assert _rows(app) == before + 2
    assert app.repository.get(second.id).n == 1


def test_a_failing_hook_leaves_no_event_and_no_tracking(app):
    counter = Counter()
    stored = [app.mapper.to_stored_event(e) for e in counter.collect_events()]

    def fail(cursor):
        cursor.execute("SELECT 1/0")

    with pytest.raises(Exception, match="division by zero"):
        app.recorder.insert_events(stored, tracking=Tracking("upstream", 7),
                                   in_transaction=fail)
    assert _rows(app) == 0
    assert app.recorder.max_tracking_id("upstream") is None
    app.recorder.insert_events(stored, tracking=Tracking("upstream", 7))
    assert app.recorder.max_tracking_id("upstream") == 7
    assert _rows(app) == 1


def test_a_tracking_position_already_passed_leaves_no_event(app):
    app.recorder.insert_events([], tracking=Tracking("upstream", 9))
    stored = [app.mapper.to_stored_event(e) for e in Counter().collect_events()]
    with pytest.raises(IntegrityError):
        app.recorder.insert_events(stored, tracking=Tracking("upstream", 9))
    assert _rows(app) == 0


def test_streams_reads_several_aggregates_in_one_statement(app):
    one, two = Counter(), Counter()
    for _ in range(3):
        one.count()
    two.count()
    app.save(one, two)
    absent = Counter().id
    streams = app.streams({one.id: None, two.id: 1, absent: None})
    assert [e.originator_version for e in streams[one.id]] == [1, 2, 3, 4]
    assert [e.originator_version for e in streams[two.id]] == [1]  # its limit
    assert streams[absent] == []
    rebuilt = app.aggregate_of(streams[one.id])
    assert rebuilt.n == 3 and rebuilt.version == one.version == 4
    assert app.aggregate_of(streams[absent]) is None
    assert app.streams({}) == {}


def test_a_get_reads_the_last_snapshot_and_the_events_after_it_in_one_statement(app,
                                                                                  monkeypatch):
    assert app.snapshots is not None
    counter = Counter()
    for _ in range(3):
        counter.count()
    app.save(counter)
    app.take_snapshot(counter.id)
    counter = app.repository.get(counter.id)
    counter.count()
    counter.count()
    app.save(counter)
    never_alone = []  # the library's two reads are not used for the latest version
    monkeypatch.setattr(app.repository.snapshot_store, "get",
                        lambda *a, **k: never_alone.append(a) or [])
    monkeypatch.setattr(app.repository.event_store, "get",
                        lambda *a, **k: never_alone.append(a) or [])
    got = app.repository.get(counter.id)
    assert (got.n, got.version) == (5, 6) and never_alone == []
    without_snapshot = Counter()
    without_snapshot.count()
    app.save(without_snapshot)
    assert app.repository.get(without_snapshot.id).n == 1
    with pytest.raises(AggregateNotFoundError):
        app.repository.get(Counter().id)
    monkeypatch.undo()
    assert app.repository.get(counter.id, version=4).n == 3  # a past version: the library's


def test_concurrent_writers_ids_commit_in_order_for_a_tailing_reader(app):
    writers, each = 6, 40
    done = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for _ in range(each):
                app.save(Counter())
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    def tail() -> None:
        position = 0
        while True:
            finished = done.is_set()
            page = app.recorder.select_notifications(start=position + 1, limit=1000)
            for n in page:
                seen.append(n.id)
                position = n.id
            if finished and not page:
                return

    reader = threading.Thread(target=tail)
    reader.start()
    threads = [threading.Thread(target=write) for _ in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    reader.join(timeout=60)
    assert not errors
    # the reader, moving past every id it saw, still saw every event: none committed behind it
    assert seen == list(range(1, writers * each + 1))

