"""A message its handler cannot apply, in every consumer of every service (issue 7).

For each consumer the upstream's log holds, in notification order, events of three
aggregates: B's first event is poison (a NUL character written straight into the store, past
the validation that would refuse it at the edge, or a payload off its schema), B's later event
comes after it, and A's and C's events are fine. Delivered one by one (the AMQP path) or read
from the log (catch-up), the result must be the same:

- the poison is parked after ``max_attempts`` tries, with its error;
- B's later event waits behind it (held), while A's and C's are applied;
- the consumer's position reaches the head: nothing else is stopped;
- after a fix of the handler, ``redrive --all`` applies B's events in their order.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tuoyu_credit.application import CreditApplication
from tuoyu_credit.reactions import inspection_consumer, subsidy_consumer
from tuoyu_credit.reactions import registration_consumer as credit_registration_consumer
from tuoyu_dashboard.projections import list_institutions
from tuoyu_dashboard.worker import registration_consumer as dashboard_consumer
from tuoyu_registration.application import RegistrationApplication
from tuoyu_registration.domain import Institution, Nature, ProviderKind, Roster
from tuoyu_registration.practitioners import InProcessRegister
from tuoyu_registration.reactions import credit_consumer
from tuoyu_registration.samples import (
    sample_filing_submission,
    sample_registration,
    sample_resident_id,
)
from tuoyu_shared.consumer import ApplicationLog, TrackedConsumer
from tuoyu_shared.envelope import Envelope
from tuoyu_shared.metrics import read_model_metrics
from tuoyu_shared.testing import metric_samples
from tuoyu_shared.worker import worker_main

NUL = "\x00"
MAX_ATTEMPTS = 3


class ListLog:
    """An upstream's log as a consumer reads it (for upstreams built as envelopes here)."""

    def __init__(self, envelopes: list[Envelope]):
        self.envelopes = [dataclasses.replace(e, notification_id=i)
                          for i, e in enumerate(envelopes, 1)]

    def read(self, start: int, limit: int, stop: int | None = None) -> list[Envelope]:
        return [e for e in self.envelopes if e.notification_id >= start
                and (stop is None or e.notification_id <= stop)][:limit]

    def head(self) -> int:
        return len(self.envelopes)


@dataclasses.dataclass
class Case:
    consumer: TrackedConsumer
    log: Any  # what the consumer reads: ListLog or ApplicationLog
    poisoned: str  # aggregate id of B
    fix: Callable[[Callable[..., Any]], Callable[..., Any]]  # the handler, mended
    applied: Callable[[], None]  # A's and C's effects are there
    redriven: Callable[[], None]  # B's effects are there, in order


def without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace(NUL, "")
    if isinstance(value, dict):
        return {k: without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_nul(v) for v in value]
    return value


def strip_nul_fix(handler: Callable[..., Any]) -> Callable[..., Any]:
    def mended(env: Envelope, *args: Any) -> Any:
        return handler(dataclasses.replace(env, payload=without_nul(env.payload)), *args)
    return mended


# ---- the registration log with a NUL in it ---------------------------------------------------
def register_with_nul(app: RegistrationApplication, n: int) -> str:
    """What the edge now refuses, written straight through the domain into the store."""
    data = sample_registration(n)
    institution = Institution.register(
        name=data["name"], credit_code=data["credit_code"], nature=Nature(data["nature"]),
        kind=ProviderKind(data["kind"]), district=data["district"],
        street=f"天平{NUL}路街道", address=data["address"],
        person_in_charge=app._seal_person(
            data["person_in_charge"]["name"], data["person_in_charge"]["id_number"],
            data["person_in_charge"].get("phone")))
    app.save(institution)
    return str(institution.id)


def registration_log_with_nul(app: RegistrationApplication) -> tuple[str, str, str]:
    """B (NUL, poison), A, B filed (held), C."""
    b = register_with_nul(app, 1)
    a = str(app.register_institution(sample_registration(2)))
    app.submit_filing(b, sample_filing_submission())
    c = str(app.register_institution(sample_registration(3)))
    return a, b, c


@pytest.fixture
def registration(settings_factory, credit):
    app = RegistrationApplication(settings_factory("registration",
                                                   consumer_max_attempts=MAX_ATTEMPTS),
                                  practitioners=InProcessRegister(credit))
    yield app
    app.close()


@pytest.fixture
def credit(settings_factory):
    app = CreditApplication(settings_factory("credit", consumer_max_attempts=MAX_ATTEMPTS))
    yield app
    app.close()


def registration_views_case(registration, credit, settings_factory) -> Case:
    a, b, c = registration_log_with_nul(registration)
    consumer = registration.views_projector()

    def awaiting() -> dict[str, dict]:
        return {row["institution_id"]: row for row in registration.filings_awaiting()}

    def directory() -> dict[str, str]:
        with psycopg.connect(registration.settings.database_url) as conn:
            return dict(conn.execute("SELECT institution_id::text, street FROM "
                                     "public_register").fetchall())

    def applied() -> None:
        assert set(directory()) == {a, c}

    def redriven() -> None:
        assert directory()[b] == "天平路街道"
        assert b in awaiting()  # the later event (filing) applied after the first

    return Case(consumer, ApplicationLog(registration), b, strip_nul_fix, applied, redriven)


def dashboard_case(registration, credit, settings_factory) -> Case:
    a, b, c = registration_log_with_nul(registration)
    settings = settings_factory("dashboard", consumer_max_attempts=MAX_ATTEMPTS)
    consumer = dashboard_consumer(settings, log_reader=ApplicationLog(registration))

    def rows() -> dict[str, dict]:
        with psycopg.connect(settings.database_url) as conn:
            return {r["institution_id"]: r for r in list_institutions(conn)}

    def applied() -> None:
        assert set(rows()) == {a, c}

    def redriven() -> None:
        row = rows()[b]
        assert (row["street"], row["status"]) == ("天平路街道", "filing_submitted")

    return Case(consumer, ApplicationLog(registration), b, strip_nul_fix, applied, redriven)


def credit_from_registration_case(registration, credit, settings_factory) -> Case:
    """A hire whose practitioner reference is missing (a payload off its contract)."""
    b = str(registration.register_institution(sample_registration(1)))
    a = str(registration.register_institution(sample_registration(2)))
    first = registration.request_hire(b, {"practitioner": {
        "name": "赵敏", "id_number": sample_resident_id(7)}, "role": "carer",
        "certificates": []})
    c = str(registration.register_institution(sample_registration(3)))
    second = registration.request_hire(b, {"practitioner": {
        "name": "钱芳", "id_number": sample_resident_id(8)}, "role": "carer",
        "certificates": []})
    envelopes = registration.read_log(1, 100)
    removed: dict[str, str] = {}
    for i, env in enumerate(envelopes):
        if env.event_type == "InstitutionPractitionerHireRequested" and \
                env.payload["hire_id"] == first:
            practitioner = dict(env.payload["practitioner"])
            removed[env.payload["hire_id"]] = practitioner.pop("ref")
            envelopes[i] = dataclasses.replace(
                env, payload={**env.payload, "practitioner": practitioner})
    log = ListLog(envelopes)
    consumer = credit_registration_consumer(credit, log_reader=log)
    checked: list[str] = []

    def fix(handler):
        def mended(env: Envelope) -> Any:
            p = env.payload
            if env.event_type == "InstitutionPractitionerHireRequested":
                if "ref" not in p["practitioner"]:
                    p = {**p, "practitioner": {**p["practitioner"],
                                               "ref": removed[p["hire_id"]]}}
                checked.append(p["hire_id"])
            return handler(dataclasses.replace(env, payload=p))
        return mended

    def credit_records() -> set[str]:
        return {e.payload["institution_id"] for e in credit.read_log(1, 1000)
                if e.event_type == "InstitutionCreditOpened"}

    def applied() -> None:
        assert {a, b, c} <= credit_records()  # every registration opened a credit record

    def redriven() -> None:
        assert checked == [first, second]
        checks = [e.payload for e in credit.read_log(1, 1000)
                  if e.event_type == "PractitionerCheckRequested"]
        assert [p["check_id"] for p in checks] == [first, second]

    # The hires are events of b's roster (a stream of its own): the second waits behind the
    # first, b's own events do not.
    return Case(consumer, log, str(Roster.id_for(b)), fix, applied, redriven)


def upstream_envelope(source: str, event_type: str, aggregate_id: str,
                      payload: dict[str, Any]) -> Envelope:
    return Envelope(
        event_id=str(uuid.uuid4()), event_type=event_type, schema_version=1, source=source,
        aggregate_id=aggregate_id, aggregate_version=1, notification_id=1,
        occurred_at="2025-03-03T02:00:00+00:00", actor="officer-1", department="health",
        correlation_id="case-1", causation_id="", payload=payload)


def open_credit(credit: CreditApplication) -> tuple[str, str, str]:
    ids = tuple(str(uuid.uuid4()) for _ in range(3))
    for institution_id in ids:
        credit.save(*credit.open_credit(institution_id))
    return ids  # type: ignore[return-value]


def causes(credit: CreditApplication, institution_id: str) -> list[str]:
    """The upstream events that moved the score, in order (each once)."""
    return list(dict.fromkeys(entry["cause_ref"] for entry in
                              credit.institution_credit_report(institution_id)["history"]
                              if entry.get("cause_ref")))


def credit_from_inspection_case(registration, credit, settings_factory) -> Case:
    a, b, c = open_credit(credit)

    def finding(visit: str, institution_id: str, severity: str) -> Envelope:
        return upstream_envelope("inspection", "InspectionFindingRecorded", visit, {
            "visit_id": visit, "institution_id": institution_id, "finding_id": f"f-{visit}",
            "severity": severity, "item": "一日三检", "description": "晨检记录缺失"})

    envelopes = [finding("v-b", b, f"minor{NUL}"), finding("v-a", a, "minor"),
                 finding("v-b", b, "major"), finding("v-c", c, "serious")]
    log = ListLog(envelopes)
    consumer = inspection_consumer(credit, log_reader=log)

    def applied() -> None:
        assert len(causes(credit, a)) == 1 and len(causes(credit, c)) == 1
        assert causes(credit, b) == []

    def redriven() -> None:
        assert causes(credit, b) == [log.envelopes[0].event_id, log.envelopes[2].event_id]
        # re-driven under the message's own correlation id, caused by its event
        changes = {(h["correlation_id"], h["causation_id"])
                   for h in credit.institution_credit_report(b)["history"]
                   if h.get("cause_ref")}
        assert changes == {("case-1", log.envelopes[0].event_id),
                           ("case-1", log.envelopes[2].event_id)}

    return Case(consumer, log, "v-b", strip_nul_fix, applied, redriven)


def credit_from_subsidy_case(registration, credit, settings_factory) -> Case:
    a, b, c = open_credit(credit)

    def clawback(application: str, institution_id: str, amount: Any) -> Envelope:
        return upstream_envelope("subsidy", "SubsidyClawedBack", application, {
            "application_id": application, "institution_id": institution_id,
            "amount_fen": amount, "reason": "fraud"})

    envelopes = [clawback("app-b", b, f"3000000{NUL}"), clawback("app-a", a, 3_000_000),
                 clawback("app-b", b, 100), clawback("app-c", c, 500)]
    log = ListLog(envelopes)
    consumer = subsidy_consumer(credit, log_reader=log)

    def fix(handler):
        def mended(env: Envelope) -> Any:
            p = env.payload
            if isinstance(p["amount_fen"], str):
                p = {**p, "amount_fen": int(p["amount_fen"].replace(NUL, ""))}
            return handler(dataclasses.replace(env, payload=p))
        return mended

    def applied() -> None:
        assert len(causes(credit, a)) == 1 and len(causes(credit, c)) == 1

    def redriven() -> None:
        assert causes(credit, b) == [log.envelopes[0].event_id, log.envelopes[2].event_id]

    return Case(consumer, log, "app-b", fix, applied, redriven)


def credit_views_case(registration, credit, settings_factory) -> Case:
    """Credit's own log, with a NUL where its query tables want a UUID."""
    a, b, c = open_credit(credit)
    credit.save(*credit.open_credit(b))  # nothing new: the record exists
    envelopes = credit.read_log(1, 100)
    opened = {e.payload["institution_id"]: e for e in envelopes
              if e.event_type == "InstitutionCreditOpened"}
    poisoned = dataclasses.replace(
        opened[b], payload={**opened[b].payload, "institution_id": f"{b}{NUL}"})
    later = dataclasses.replace(opened[b], aggregate_version=2,
                                event_type="InstitutionCreditScoreChanged",
                                payload={"institution_id": b, "score": 95, "grade": "B",
                                         "cause": {}, "delta": -5})
    log = ListLog([poisoned, opened[a], later, opened[c]])
    consumer = credit.views_projector()
    consumer.log_reader = log

    def fix(handler):
        def mended(env: Envelope, cur: Any) -> Any:
            if env.event_type == "InstitutionCreditScoreChanged":
                cur.execute("UPDATE credit_register SET score=%s, grade=%s "
                            "WHERE institution_id=%s", (95, "B", b))
                return None
            return strip_nul_fix(handler)(env, cur)
        return mended

    def register() -> dict[str, tuple]:
        with psycopg.connect(credit.settings.database_url) as conn:
            return {r[0]: r[1:] for r in conn.execute(
                "SELECT institution_id::text, score, grade FROM credit_register").fetchall()}

    def applied() -> None:
        assert set(register()) == {a, c}

    def redriven() -> None:
        assert register()[b] == (95, "B")  # opened at 100, then changed: in that order

    return Case(consumer, log, opened[b].aggregate_id, fix, applied, redriven)


def registration_from_credit_case(registration, credit, settings_factory) -> Case:
    """A listing decision without its decision (a payload off its contract)."""
    b = str(registration.register_institution(sample_registration(1)))
    a = str(registration.register_institution(sample_registration(2)))
    c = str(registration.register_institution(sample_registration(3)))

    def decided(institution_id: str, listing: str, decision: str | None) -> Envelope:
        payload = {"institution_id": institution_id, "listing_id": listing,
                   "list_name": "serious_dishonesty", "decided_on": "2025-03-03",
                   "officer": "o-1", "reason": "r", "legal_basis": "b", "evidence": [],
                   "term_start": "2025-03-03", "term_end": "2026-03-03"}
        if decision is not None:
            payload["decision"] = decision
        return upstream_envelope("credit", "InstitutionCreditListingDecided",
                                 institution_id, payload)

    ended = upstream_envelope("credit", "InstitutionCreditListingExpired", b, {
        "institution_id": b, "listing_id": "l-b", "list_name": "serious_dishonesty",
        "on": "2026-03-03"})
    log = ListLog([decided(b, "l-b", None), decided(a, "l-a", "listed"), ended,
                   decided(c, "l-c", "listed")])
    consumer = credit_consumer(registration, log_reader=log)
    seen: list[str] = []

    def fix(handler):
        def mended(env: Envelope) -> Any:
            if env.aggregate_id == b:
                seen.append(env.event_type)
            p = env.payload if "decision" in env.payload or \
                env.event_type != "InstitutionCreditListingDecided" else {
                    **env.payload, "decision": "listed"}
            return handler(dataclasses.replace(env, payload=p))
        return mended

    def version(institution_id: str) -> int:
        return registration.repository.get(uuid.UUID(institution_id)).version

    versions = {i: version(i) for i in (a, b, c)}

    def applied() -> None:
        assert version(a) == versions[a] + 1 and version(c) == versions[c] + 1
        assert version(b) == versions[b]

    def redriven() -> None:
        assert seen == ["InstitutionCreditListingDecided", "InstitutionCreditListingExpired"]
        assert version(b) == versions[b] + 2  # listed, then no longer listed

    return Case(consumer, log, b, fix, applied, redriven)


def inspection_directory_case(registration, credit, settings_factory) -> Case:
    """Inspection's directory of institutions (the frame its plans draw from)."""
    from tuoyu_inspection.projections import DIRECTORY_VIEW

    a, b, c = registration_log_with_nul(registration)
    settings = settings_factory("inspection", consumer_max_attempts=MAX_ATTEMPTS)
    consumer = DIRECTORY_VIEW.consumer(settings, ApplicationLog(registration))

    def rows() -> dict[str, tuple]:
        with psycopg.connect(settings.database_url) as conn:
            return {r[0]: r[1:] for r in conn.execute(
                "SELECT institution_id::text, street, status FROM institution_directory")}

    def applied() -> None:
        assert set(rows()) == {a, c}

    def redriven() -> None:
        assert rows()[b] == ("天平路街道", "filing_submitted")

    return Case(consumer, ApplicationLog(registration), b, strip_nul_fix, applied, redriven)


def inspection_views_case(registration, credit, settings_factory) -> Case:
    """Inspection's own views: a visit whose institution's name has a NUL (written straight
    through the domain), then its cancellation."""
    from tuoyu_inspection import bootstrap
    from tuoyu_inspection.domain import SupervisionVisit
    from tuoyu_shared.context import command_context

    app = bootstrap.application(settings_factory("inspection",
                                                 consumer_max_attempts=MAX_ATTEMPTS))
    checklist = app._checklist("joint-supervision", None)

    def visit(name: str) -> SupervisionVisit:
        v = SupervisionVisit(
            institution_id=str(uuid.uuid4()), institution_name=name, district="徐汇区",
            kind="targeted", trigger="complaint", reference="投诉", plan_id=None, period=None,
            departments=["health"], inspectors={"health": ["h1"]}, checklist=checklist,
            scheduled_on=datetime_date(), draw_seed=None)
        app.save(v)
        return v

    with command_context(actor="h1", department="health"):
        b = visit(f"阳光{NUL}托育园")
        a = visit("星星托育园")
        b.cancel("机构已停业", "h1", datetime_date())
        app.save(b)
        c = visit("月亮托育园")
    consumer = app.views_projector()

    def rows() -> dict[str, tuple]:
        with psycopg.connect(app.settings.database_url) as conn:
            return {r[0]: r[1:] for r in conn.execute(
                "SELECT visit_id::text, institution_name, status FROM inspection_visits")}

    def applied() -> None:
        assert set(rows()) == {str(a.id), str(c.id)}

    def redriven() -> None:
        assert rows()[str(b.id)] == ("阳光托育园", "cancelled")

    return Case(consumer, ApplicationLog(app), str(b.id), strip_nul_fix, applied, redriven)


def datetime_date():
    import datetime

    return datetime.date(2026, 3, 2)


CASES = {
    "registration views <- registration": registration_views_case,
    "inspection directory <- registration": inspection_directory_case,
    "inspection views <- inspection": inspection_views_case,
    "dashboard <- registration": dashboard_case,
    "credit <- registration": credit_from_registration_case,
    "credit <- inspection": credit_from_inspection_case,
    "credit <- subsidy": credit_from_subsidy_case,
    "credit views <- credit": credit_views_case,
    "registration <- credit": registration_from_credit_case,
}


@pytest.mark.parametrize("path", ["log", "messages"])
@pytest.mark.parametrize("name", list(CASES))
def test_a_poison_message_is_parked_its_aggregate_waits_and_everything_else_flows(
        name, path, registration, credit, settings_factory, capsys):
    case = CASES[name](registration, credit, settings_factory)
    consumer = case.consumer
    consumer.max_attempts = MAX_ATTEMPTS
    consumer.retry_delay = 0.001
    if path == "log":
        consumer.catch_up()
    else:  # one by one, in order, as RabbitMQ delivers them
        for envelope in case.log.read(1, 1000):
            consumer.handle(envelope, envelope.notification_id - 1)
    head = case.log.head()

    letters = consumer.store.dead_letters()
    assert [(d.aggregate_id, d.held) for d in letters] == [
        (case.poisoned, False), (case.poisoned, True)], name
    parked, held = letters
    assert parked.attempts == MAX_ATTEMPTS and parked.error
    assert held.notification_id > parked.notification_id
    assert consumer.store.position(consumer.upstream) == head  # nothing else stopped
    case.applied()

    # Ops see it in /metrics and the CLI, fix the handler, and re-drive everything in order.
    metrics = metric_samples(read_model_metrics("svc", consumer.store.database_url))
    labels = {"service": "svc", "consumer": consumer.name, "upstream": consumer.upstream}
    for name in ("tuoyu_parked_messages", "tuoyu_held_messages", "tuoyu_held_aggregates"):
        assert [(s.labels, s.value) for s in metrics[name]] == [(labels, 1)], name
    [letter] = metrics["tuoyu_parked_message"]
    assert letter.labels["aggregate_id"] == case.poisoned and letter.labels["error"]
    assert letter.labels["dead_letter_id"] == str(parked.id)
    capsys.readouterr()
    assert worker_main(dict, lambda: {"c": consumer}, ["dead-letters"]) == 0
    listed = capsys.readouterr().out
    assert case.poisoned in listed and '"state": "held"' in listed
    assert worker_main(dict, lambda: {"c": consumer}, ["redrive", "--all"]) == 1  # not fixed
    assert [d.id for d in consumer.store.dead_letters()] == [parked.id, held.id]
    consumer.handler = case.fix(consumer.handler)
    assert worker_main(dict, lambda: {"c": consumer}, ["redrive", "--all"]) == 0
    assert consumer.store.dead_letters() == []
    case.redriven()
    after = metric_samples(read_model_metrics("svc", consumer.store.database_url))
    assert after["tuoyu_parked_message"] == [] and after["tuoyu_parked_messages"] == []
    consumer.store.close()
