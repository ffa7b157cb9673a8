"""The reliability suite's counts see what they count: a command without events is lost, an
upstream event applied twice or a command that made two aggregates is doubled, a version out
of turn is reordered (checked here on made-up logs; the suite checks them on real ones)."""

from __future__ import annotations

from tuoyu_shared.envelope import Envelope
from tuoyu_shared.reliability import checks
from tuoyu_shared.reliability.workload import Outcome


def env(source: str, n: int, aggregate: str, version: int, event_type: str = "Happened",
        correlation: str = "c", causation: str = "", event_id: str | None = None) -> Envelope:
    return Envelope(event_id=event_id or f"{source}-{n}", event_type=event_type,
                    schema_version=1, source=source, aggregate_id=aggregate,
                    aggregate_version=version, notification_id=n,
                    occurred_at="2026-12-03T00:00:00+00:00", actor="a", department="d",
                    correlation_id=correlation, causation_id=causation, payload={})


def outcome(correlation: str, status: int | None = 201, service: str = "registration",
            aggregate: str | None = None, noop: bool = False) -> Outcome:
    return Outcome("register_institution", service, correlation, status, None, aggregate, 0.01,
                   noop=noop)


def test_an_accepted_command_without_events_is_lost_and_others_are_not():
    logs = {"registration": [env("registration", 1, "a", 1, correlation="seen")]}
    found = checks.lost([outcome("seen"), outcome("missing"), outcome("refused", 409),
                         outcome("no-answer", None), outcome("noop", 200, noop=True),
                         outcome("seen", service="credit")], logs)
    assert [(o.correlation_id, o.service) for o in found] == [("missing", "registration"),
                                                              ("seen", "credit")]


def test_an_upstream_event_applied_twice_is_doubled():
    upstream = env("registration", 1, "i", 1, event_id="u1")
    once = {"registration": [upstream],
            "credit": [env("credit", 1, "r", 1, causation="u1", event_type="Scored")]}
    assert checks.duplicated([], once) == []
    twice = {**once, "credit": [*once["credit"],
                                env("credit", 2, "r", 2, causation="u1", event_type="Scored")]}
    [found] = checks.duplicated([], twice)
    assert "2x Scored on r from registration#1" in found


def test_a_command_that_made_two_aggregates_is_doubled():
    logs = {"registration": [env("registration", 1, "a", 1, correlation="c1"),
                             env("registration", 2, "b", 1, correlation="c1")]}
    [found] = checks.duplicated([outcome("c1", aggregate="a")], logs)
    assert "created 2" in found
    assert checks.duplicated([outcome("c2", aggregate="a")], logs) == []


def test_a_version_out_of_turn_is_reordered():
    good = {"inspection": [env("inspection", 1, "v", 1), env("inspection", 2, "v", 2)]}
    assert checks.reordered(good) == []
    bad = {"inspection": [env("inspection", 1, "v", 1), env("inspection", 2, "v", 3)]}
    assert checks.reordered(bad) == ["inspection: v version 3 after 1"]


def test_behind_names_a_relay_and_a_consumer_that_have_not_caught_up():
    state = {"heads": {"registration": 10, "credit": 4},
             "relays": {"registration.events": 9, "credit.events": 4},
             "consumers": {("dashboard", "dashboard", "registration"): 10,
                           ("credit", "credit", "registration"): 7}}
    assert checks.behind(state) == ["registration relay at 9 of 10",
                                    "credit/credit at 7 of registration's 10"]
