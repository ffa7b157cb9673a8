"""A reacting consumer keeps the position it last read or recorded, and reads the recorded one
only where that matters (:meth:`ApplicationTrackingStore.known_position`). Two consumers of one
upstream stand for two worker processes taking over a queue from each other: the position one
knows falls behind while the other applies, and nothing may then be applied twice, skipped,
retried or parked (credit opening institutions' records from registration's events, on real
PostgreSQL)."""

from __future__ import annotations

import pytest

from tuoyu_credit.application import CreditApplication
from tuoyu_credit.reactions import registration_consumer
from tuoyu_registration.samples import sample_registration
from tuoyu_shared.consumer import ApplicationLog


@pytest.fixture
def credit(settings_factory):
    settings = settings_factory("credit", consumer_max_attempts=2)
    first, second = CreditApplication(settings), CreditApplication(settings)
    yield first, second
    first.close()
    second.close()


def opened(app: CreditApplication) -> list[str]:
    return [e.payload["institution_id"] for e in app.read_log(1, 1000)
            if e.event_type == "InstitutionCreditOpened"]


def three_registrations(registration):
    ids = [str(registration.register_institution(sample_registration(n))) for n in (1, 2, 3)]
    envelopes = registration.read_log(1, 100)
    assert [e.aggregate_id for e in envelopes] == ids
    return ids, envelopes


def test_a_message_after_the_other_process_applied_reads_the_position_first(
        registration, credit):
    ids, (one, two, three) = three_registrations(registration)
    app, other_app = credit
    log = ApplicationLog(registration)
    mine, other = (registration_consumer(app, log_reader=log),
                   registration_consumer(other_app, log_reader=log))
    mine.handle(one, 0)
    other.handle(two, one.notification_id)  # mine knows 1; the record says 2
    read: list[int] = []
    reading = log.read
    log.read = lambda start, limit, stop=None: read.append(start) or reading(start, limit, stop)
    mine.handle(three, two.notification_id)
    assert read == [], "no gap: the recorded position is read before one is filled"
    assert opened(app) == ids
    assert mine.store.position("registration") == three.notification_id


@pytest.mark.parametrize("refuses_twice", [False, True], ids=["quiet", "raising"])
def test_a_message_the_other_process_applied_is_not_applied_again_nor_parked(
        registration, credit, refuses_twice):
    ids, (one, two, three) = three_registrations(registration)
    app, other_app = credit
    log = ApplicationLog(registration)
    mine, other = (registration_consumer(app, log_reader=log),
                   registration_consumer(other_app, log_reader=log))
    mine.handle(one, 0)
    other.handle(two, one.notification_id)
    if refuses_twice:  # a handler that raises on what it has seen (not credit's own)
        handler = mine.handler

        def refusing(env):
            if env.aggregate_id in opened(app):
                raise ValueError(f"{env.aggregate_id} is open already")
            return handler(env)
        mine.handler = refusing
    # Redelivered to mine after the other applied it: the known position (1) is just before
    # it, so it looks like the next message.
    slept: list[float] = []
    mine.sleep = slept.append
    mine.handle(two, one.notification_id)
    mine.handle(three, two.notification_id)
    assert opened(app) == ids
    assert mine.store.dead_letters() == []
    assert slept == [], "no retries: the failure was a message applied meanwhile"
    assert mine.store.position("registration") == three.notification_id
