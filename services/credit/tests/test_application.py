"""The credit application against a real PostgreSQL (and RabbitMQ for the test publisher):
scoring from upstream envelopes in their documented shapes, each list's procedure with its
response window, expiry by the timer and credit repair, bans and their terms, background checks
answered by the public-security inquiry (the simulator, in this process), practitioners' ID
numbers never in clear, every read of a practitioner's record recorded, and bad input refused
with nothing written."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest
from kombu import Connection, Exchange, Producer
from psycopg import sql

from tuoyu_credit import bootstrap, projections
from tuoyu_credit.application import (
    CreditApplication,
    InstitutionNotFound,
    PractitionerNotFound,
    yearly_check_id,
)
from tuoyu_credit.domain import DomainRuleViolated, practitioner_id_for
from tuoyu_credit.inquiries import InquirySchedule
from tuoyu_credit.reactions import (
    inspection_consumer,
    registration_consumer,
    subsidy_consumer,
)
from tuoyu_credit.rules_config import ENV_VAR, CreditRules, RulesFileInvalid, load_rules
from tuoyu_credit.worker import Timers
from tuoyu_registration.samples import sample_credit_code, sample_resident_id
from tuoyu_shared.catalogue import SchemaViolation, validate_envelope
from tuoyu_shared.context import command_context
from tuoyu_shared.envelope import Envelope
from tuoyu_shared.personal_data import PersonalDataErased
from tuoyu_shared.public_security import HttpPublicSecurityInquiry
from tuoyu_shared.simulators.public_security import start_simulator
from tuoyu_shared.testing import FixedClock, wait_for
from tuoyu_shared.validation import ValidationFailed, mask_resident_id

# Monday 2025-03-03, 10:00 in Shanghai.
MONDAY = datetime(2025, 3, 3, 2, 0, tzinfo=UTC)
SD, TR = "serious_dishonesty", "trust_reward"
BASIS = "《社会信用体系建设条例》第二十条"
BAN_BASIS = "《中华人民共和国刑法》第三十七条之一"
NAMESPACE = uuid.UUID("0b9c2e4a-51d7-4f0e-8a3c-6d2e1f4b7a90")
ID_1, ID_2, ID_3 = sample_resident_id(301), sample_resident_id(302), sample_resident_id(303)
#: Someone the public-security records (the simulator) have a record for.
ID_RECORD = sample_resident_id(309)
NAME = "张三丰"
#: The dispatch's schedule in these tests: a round whenever called; an outage retried after a
#: minute (then 2, 4…), an accepted inquiry asked about after 30 s (then 60…).
SCHEDULE = InquirySchedule(interval=1, initial_retry=60, max_retry=600, poll=30)


Clock = FixedClock


@pytest.fixture
def clock():
    return Clock(MONDAY)


@pytest.fixture
def simulator():
    """The public-security records inquiry, simulated in this process."""
    with start_simulator(records={ID_RECORD: ["abuse", "violence"]}) as sim:
        yield sim


@pytest.fixture
def app(settings_factory, clock, simulator):
    application = CreditApplication(settings_factory("credit"), clock=clock,
                                    inquiry=HttpPublicSecurityInquiry(simulator.url, timeout=2),
                                    schedule=SCHEDULE)
    yield application
    application.close()


# ---- upstream envelopes in their documented shapes -------------------------------------------
class Upstream:
    """A test publisher of one upstream service: numbers its envelopes like a notification
    log, and serves that log to the consumer for gap filling."""

    def __init__(self, source: str):
        self.source = source
        self.log: list[Envelope] = []

    def publish(self, event_type: str, payload: dict[str, Any],
                aggregate_id: str | None = None) -> Envelope:
        aggregate_id = aggregate_id or str(uuid.uuid4())
        version = 1 + sum(1 for e in self.log if e.aggregate_id == aggregate_id)
        envelope = Envelope(
            event_id=str(uuid.uuid5(NAMESPACE, f"{self.source}:{aggregate_id}:{version}")),
            event_type=event_type, schema_version=1, source=self.source,
            aggregate_id=aggregate_id, aggregate_version=version,
            notification_id=len(self.log) + 1, occurred_at="2025-03-03T02:00:00+00:00",
            actor="officer-7", department="health", correlation_id="case-7", causation_id="",
            payload=payload)
        validate_envelope(envelope.to_dict())  # the documented shape, exactly
        self.log.append(envelope)
        return envelope

    def read(self, start: int, limit: int, stop: int | None = None) -> list[Envelope]:
        return [e for e in self.log if e.notification_id >= start
                and (stop is None or e.notification_id <= stop)][:limit]

    def head(self) -> int:
        return len(self.log)


def registered_payload(n: int) -> dict[str, Any]:
    ref = f"{n:032x}"
    return {"name": f"示范托育园 {n}", "credit_code": sample_credit_code(n),
            "nature": "for_profit", "kind": "childcare_institution",
            "registering_authority": "market_regulation",
            "person_in_charge": {"ref": ref, "name": {"ref": ref, "masked": "王**"},
                                 "id_number": {"ref": ref, "masked": "310104********0012"},
                                 "phone": {"ref": ref, "masked": "138****5678"}},
            "district": "徐汇区", "street": "天平路街道", "address": f"天平路 {n} 号"}


def hire_payload(app: CreditApplication, id_number: str | None = None,
                 hire_id: str | None = None, ref: str | None = None) -> dict:
    """A hire as registration publishes it: registration asked credit for the person's ref
    first (``register_practitioner``, as its practitioner register does over RPC), and the
    practitioner is in the event by that ref alone. ``ref`` instead: a ref credit never
    issued (an event of before)."""
    if ref is None:
        ref = app.register_practitioner({"name": NAME, "id_number": id_number})["person_ref"]
    return {"hire_id": hire_id or str(uuid.uuid4()),
            "practitioner": {"ref": ref, "name": {"ref": ref}, "id_number": {"ref": ref}},
            "role": "carer", "certificates": ["育婴师 0001"], "requested_on": "2025-03-03"}


@pytest.fixture
def registration(app):
    upstream = Upstream("registration")
    return upstream, registration_consumer(app, log_reader=upstream)


@pytest.fixture
def inspection(app):
    upstream = Upstream("inspection")
    return upstream, inspection_consumer(app, log_reader=upstream)


@pytest.fixture
def subsidy(app):
    upstream = Upstream("subsidy")
    return upstream, subsidy_consumer(app, log_reader=upstream)


def institution(registration, n: int = 1) -> str:
    upstream, consumer = registration
    envelope = upstream.publish("InstitutionRegistered", registered_payload(n))
    consumer.handle(envelope)
    return envelope.aggregate_id


def finding(institution_id: str, severity: str, n: int = 1) -> dict[str, Any]:
    return {"visit_id": f"visit-{n}", "institution_id": institution_id,
            "finding_id": f"finding-{n}", "severity": severity, "item": "一日三检",
            "description": "晨检记录缺失"}


# ---- what is written --------------------------------------------------------------------------
def counts(app) -> tuple[int, ...]:
    with psycopg.connect(app.settings.database_url) as conn:
        return tuple(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                     for table in ("credit_events", "person_keys", "person_index",
                                   "practitioner_reads"))


def refused(app, command: str, *args) -> list[dict]:
    before = counts(app)
    with pytest.raises(ValidationFailed) as e:
        getattr(app, command)(*args)
    assert counts(app) == before, "a refused command wrote something"
    return e.value.to_dict()["errors"]


def fields(errors: list[dict]) -> set[str]:
    return {e["field"] for e in errors}


def score(app, institution_id: str) -> tuple[int, str]:
    report = app.institution_credit_report(institution_id)
    return report["score"], report["grade"]


def events_of(app, event_type: str) -> list[Envelope]:
    return [e for e in app.read_log(1, 10000) if e.event_type == event_type]


def ban(app, person_ref: str, term: Any = 3, **overrides) -> str:
    data = {"source": "court_ruling", "legal_basis": BAN_BASIS,
            "evidence": ["(2025)沪0104刑初12号"], "officer": "officer-1", "term": term}
    data.update(overrides)
    return app.impose_ban(person_ref, data)


def check(app, purpose: str = "hire screening", **who) -> dict[str, Any]:
    return app.check_practitioner({**who, "purpose": purpose})


# ---- scoring from upstream events -------------------------------------------------------------
def test_registration_opens_credit_and_a_demonstration_level_commends(app, registration):
    upstream, consumer = registration
    institution_id = institution(registration)
    assert score(app, institution_id) == (100, "B")
    granted = upstream.publish("InstitutionDemonstrationLevelGranted", {
        "level": "provincial", "granted_on": "2025-03-03", "document": "沪卫〔2025〕1号"},
        aggregate_id=institution_id)
    consumer.handle(granted)
    assert score(app, institution_id) == (110, "A")
    head = app.log_head()
    consumer.handle(granted)  # redelivered: nothing changes
    consumer.handle(upstream.log[0])
    assert app.log_head() == head and score(app, institution_id) == (110, "A")
    report = app.institution_credit_report(institution_id)
    score_change, grade_change = report["history"][1:]
    assert (score_change["reason"], score_change["cause_ref"]) == (
        "demonstration status granted: +10", granted.event_id)
    assert score_change["data"]["details"] == {"level": "provincial",
                                               "document": "沪卫〔2025〕1号"}
    assert score_change["causation_id"] == granted.event_id
    assert score_change["correlation_id"] == "case-7"
    assert (grade_change["reason"], grade_change["cause_ref"]) == ("grade B → A",
                                                                   granted.event_id)
    # An imported filing opens a record too, and an institution opens only once.
    imported = upstream.publish("InstitutionImported", {
        **registered_payload(2), "filing": {"total_places": 40},
        "receipt": {"number": "BA-2", "issued_on": "2025-01-02"}, "source": "provincial-csv"})
    consumer.handle(imported)
    assert score(app, imported.aggregate_id) == (100, "B")


def test_inspection_and_subsidy_events_score_once_each(app, registration, inspection,
                                                       subsidy):
    institution_id = institution(registration)
    inspections, by_inspection = inspection
    subsidies, by_subsidy = subsidy
    expected = [("minor", 98, "B"), ("major", 93, "B"), ("serious", 83, "C")]
    for n, (severity, points, grade) in enumerate(expected, start=1):
        by_inspection.handle(inspections.publish(
            "InspectionFindingRecorded", finding(institution_id, severity, n)))
        assert score(app, institution_id) == (points, grade)
    by_inspection.handle(inspections.publish("RectificationOverdue", {
        "order_id": "order-1", "institution_id": institution_id, "due_on": "2025-02-28"}))
    assert score(app, institution_id) == (73, "C")
    by_inspection.handle(inspections.publish("CleanInspectionPeriodCompleted", {
        "institution_id": institution_id, "period": "2024-H2"}))
    assert score(app, institution_id) == (78, "C")
    # A clawback for an error says nothing about honesty; one for fraud costs 30.
    by_subsidy.handle(subsidies.publish("SubsidyClawedBack", {
        "application_id": "app-1", "institution_id": institution_id, "amount_fen": 300000,
        "reason": "error"}))
    assert score(app, institution_id) == (78, "C")
    fraud = subsidies.publish("SubsidyClawedBack", {
        "application_id": "app-2", "institution_id": institution_id,
        "amount_fen": 3_000_000, "reason": "fraud"})
    by_subsidy.handle(fraud)
    assert score(app, institution_id) == (48, "D")
    refused_visit = inspections.publish("InspectionRefused", {"visit_id": "visit-9",
                                                              "institution_id": institution_id})
    by_inspection.handle(refused_visit)
    assert score(app, institution_id) == (28, "D")
    # Redeliveries change nothing: not the last one, not an earlier one.
    head = app.log_head()
    for envelope in (refused_visit, fraud, inspections.log[0]):
        (by_subsidy if envelope.source == "subsidy" else by_inspection).handle(envelope)
    assert app.log_head() == head and score(app, institution_id) == (28, "D")
    # The same upstream event again under a new notification id (an upstream replay): the
    # cause is remembered, so the score does not move twice.
    inspections.log.append(Envelope(**{**refused_visit.to_dict(), "notification_id": 7}))
    by_inspection.handle(inspections.log[-1])
    assert score(app, institution_id) == (28, "D")
    history = app.institution_credit_report(institution_id)["history"]
    causes = [h["cause_ref"] for h in history if h["event_type"].endswith("ScoreChanged")]
    assert causes == [e.event_id for e in inspections.log[:5]] + [fraud.event_id,
                                                                  refused_visit.event_id]
    grades = [(h["data"]["old_grade"], h["data"]["new_grade"]) for h in history
              if h["event_type"].endswith("GradeChanged")]
    assert grades == [("B", "C"), ("C", "D")]
    app.views_projector().catch_up()
    assert [(r["institution_id"], r["score"], r["grade"]) for r in app.credit_register(
        grade="D")] == [(institution_id, 28, "D")]


def test_a_gap_is_filled_from_the_upstream_log_in_order(app, registration, inspection):
    institution_id = institution(registration)
    inspections, consumer = inspection
    for n in range(1, 4):
        inspections.publish("InspectionFindingRecorded", finding(institution_id, "minor", n))
    consumer.handle(inspections.log[2])  # 1 and 2 were lost on the fast path
    assert score(app, institution_id) == (94, "B")
    history = app.institution_credit_report(institution_id)["history"]
    assert [h["cause_ref"] for h in history[1:]] == [e.event_id for e in inspections.log]


def test_an_event_for_an_institution_not_known_yet_opens_its_record(app, inspection):
    inspections, consumer = inspection
    institution_id = str(uuid.uuid4())
    consumer.handle(inspections.publish("InspectionFindingRecorded",
                                        finding(institution_id, "critical")))
    assert score(app, institution_id) == (80, "C")


def test_an_envelope_off_its_schema_is_parked_and_the_others_flow(app, registration,
                                                                  inspection):
    institution_id = institution(registration)
    inspections, consumer = inspection
    bad = finding(institution_id, "minor")
    bad["severity"] = "catastrophic"
    envelope = Envelope(**{**inspections.publish(
        "InspectionFindingRecorded", finding(institution_id, "minor")).to_dict(),
        "payload": bad})
    inspections.log[-1] = envelope
    with pytest.raises(SchemaViolation):
        validate_envelope(envelope.to_dict())
    consumer.handle(envelope)
    [parked] = consumer.store.dead_letters()
    assert parked.notification_id == 1 and "severity" in parked.error
    consumer.handle(inspections.publish("InspectionFindingRecorded",
                                        finding(institution_id, "major", 2)))
    assert score(app, institution_id) == (95, "B")


def test_a_test_publisher_over_rabbitmq_reaches_the_consumer(app, registration, servers,
                                                             unique):
    institution_id = institution(registration)
    inspections = Upstream("inspection")
    consumer = inspection_consumer(app, servers.amqp_uri, exchange=f"inspection-{unique}.events",
                                   log_reader=inspections)
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop, ready), daemon=True)
    thread.start()
    try:
        assert ready.wait(20)
        exchange = Exchange(f"inspection-{unique}.events", "topic", durable=True)
        with Connection(servers.amqp_uri) as conn:
            producer = Producer(conn.default_channel, exchange=exchange)
            for n, severity in enumerate(("critical", "minor"), start=1):
                envelope = inspections.publish("InspectionFindingRecorded",
                                               finding(institution_id, severity, n))
                producer.publish(envelope.to_json(), routing_key=envelope.event_type,
                                 content_type="application/json", delivery_mode=2,
                                 declare=[exchange])
        wait_for(lambda: consumer.store.position("inspection") == 2, what="two applied")
    finally:
        stop.set()
        thread.join(timeout=20)
    assert score(app, institution_id) == (78, "C")


def test_rules_come_from_the_configuration_file(settings_factory, clock, tmp_path,
                                                monkeypatch, registration):
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({
        "scoring": {"initial_score": 90, "finding_deductions": {
            "minor": 1, "major": 3, "serious": 30, "critical": 60}},
        "listing": {"response_window_working_days": 5}}), encoding="utf-8")
    monkeypatch.setenv(ENV_VAR, str(path))
    configured = bootstrap.application(settings_factory("credit"), clock=clock)
    try:
        upstream, _ = registration
        consumer = registration_consumer(configured, log_reader=upstream)
        opened = upstream.publish("InstitutionRegistered", registered_payload(3))
        consumer.handle(opened)
        assert score(configured, opened.aggregate_id) == (90, "B")
        inspections = Upstream("inspection")
        inspection_consumer(configured, log_reader=inspections).handle(inspections.publish(
            "InspectionFindingRecorded", finding(opened.aggregate_id, "serious")))
        assert score(configured, opened.aggregate_id) == (60, "D")
        # Five working days from Monday 2025-03-03 is Monday 2025-03-10.
        configured.propose_listing(opened.aggregate_id, SD, proposal())
        assert configured.send_listing_notice(opened.aggregate_id, SD, {
            "officer": "officer-1"}) == {"respond_by": "2025-03-10"}
    finally:
        configured.close()
    path.write_text(json.dumps({"scoring": {"max_score": "lots", "bonus": 3},
                                "listing": {"response_window_days": 0}}))
    with pytest.raises(RulesFileInvalid) as e:
        load_rules()
    for field in ("scoring.max_score", "scoring.bonus", "listing.response_window_days"):
        assert field in str(e.value)
    assert load_rules(env={}) == CreditRules()


# ---- the listing procedure --------------------------------------------------------------------
def proposal(term_days: int = 365) -> dict[str, Any]:
    return {"legal_basis": BASIS, "evidence": ["处罚决定书 2025-001"], "officer": "officer-1",
            "proposed_term_days": term_days}


def decision(decision: str = "listed", **overrides) -> dict[str, Any]:
    data = {"decision": decision, "officer": "officer-2", "reason": "骗取补贴属实",
            "legal_basis": BASIS, "evidence": ["处罚决定书 2025-001"]}
    data.update(overrides)
    return data


def listed(app, institution_id: str, list_name: str = SD, term_days: int = 365) -> None:
    app.propose_listing(institution_id, list_name, proposal(term_days))
    app.send_listing_notice(institution_id, list_name, {"officer": "officer-1"})
    app.receive_listing_response(institution_id, list_name, {"statement": "已整改"})
    app.decide_listing(institution_id, list_name, decision())


def test_dishonesty_listing_waits_for_the_response_window(app, registration, clock):
    institution_id = institution(registration)
    assert app.propose_listing(institution_id, SD, proposal()) == {
        "listing_id": "serious_dishonesty-1"}
    clock.advance(1)  # notice on Tuesday 03-04: respond by 03-11 (7 calendar days)
    assert app.send_listing_notice(institution_id, SD, {"officer": "officer-1"}) == {
        "respond_by": "2025-03-11"}
    app.views_projector().catch_up()
    [due] = app.listings_due()
    assert (due["state"], due["respond_by"], due["decidable"]) == ("noticed", "2025-03-11",
                                                                   False)
    clock.advance(7)  # 03-11: the last day to respond, no decision yet
    with pytest.raises(DomainRuleViolated) as e:
        app.decide_listing(institution_id, SD, decision())
    assert e.value.state == "noticed" and "may respond until 2025-03-11" in str(e.value)
    clock.advance(1)  # 03-12: too late to respond, time to decide
    with pytest.raises(DomainRuleViolated) as e:
        app.receive_listing_response(institution_id, SD, {"statement": "迟到的申辩"})
    assert "closed on 2025-03-11" in str(e.value)
    app.views_projector().catch_up()
    assert app.listings_due()[0]["decidable"] is True
    assert app.decide_listing(institution_id, SD, decision(term_days=30)) == {
        "listing_id": "serious_dishonesty-1", "decision": "listed",
        "term_start": "2025-03-12", "term_end": "2025-04-11"}
    report = app.institution_credit_report(institution_id)
    assert report["lists"] == [SD]
    [listing] = report["listings"]
    assert (listing["state"], listing["legal_basis"], listing["decided_by"]) == (
        "listed", BASIS, "officer-2")
    steps = [h["event_type"] for h in report["history"]]
    assert steps[1:] == ["InstitutionCreditListingProposed", "InstitutionCreditListingNoticeSent",
                         "InstitutionCreditListingDecided"]
    assert "listed until 2025-04-11 by officer-2: 骗取补贴属实" in report["history"][-1]["reason"]
    decided = events_of(app, "InstitutionCreditListingDecided")[0].payload
    assert (decided["institution_id"], decided["list_name"], decided["decision"],
            decided["listing_id"]) == (institution_id, SD, "listed", "serious_dishonesty-1")
    app.views_projector().catch_up()
    assert [r["institution_id"] for r in app.credit_register(list_name=SD)] == [institution_id]


def test_a_response_within_the_window_allows_an_early_decision_to_drop(app, registration):
    institution_id = institution(registration)
    app.propose_listing(institution_id, SD, proposal())
    app.send_listing_notice(institution_id, SD, {"officer": "officer-1"})
    app.receive_listing_response(institution_id, SD, {"statement": "补贴已全部退回，系会计差错"})
    app.decide_listing(institution_id, SD, decision("dropped", reason="差错而非欺骗"))
    report = app.institution_credit_report(institution_id)
    assert report["lists"] == [] and report["listings"][0]["state"] == "dropped"
    # A new proposal may follow a dropped one; a listing needs a legal basis.
    app.propose_listing(institution_id, SD, proposal())
    app.send_listing_notice(institution_id, SD, {"officer": "officer-1"})
    app.receive_listing_response(institution_id, SD, {"statement": "无"})
    with pytest.raises(DomainRuleViolated) as e:
        app.decide_listing(institution_id, SD, decision(legal_basis=""))
    assert "legal basis" in str(e.value)


def test_trust_reward_listing_and_its_expiry_by_the_timer(app, registration, clock):
    institution_id = institution(registration)
    other = institution(registration, 2)
    app.propose_listing(institution_id, TR, proposal(term_days=30))
    app.send_listing_notice(institution_id, TR, {"officer": "officer-1"})
    clock.advance(8)  # 03-11: the window (until 03-10) has passed without a response
    app.decide_listing(institution_id, TR, decision(reason="连续三年无违规", legal_basis=""))
    listed(app, other, SD, term_days=60)
    assert app.institution_credit_report(institution_id)["lists"] == [TR]
    clock.advance(29)  # 04-09: the last day of the term
    assert app.expire_listings()["expired"] == []
    clock.advance(1)  # 04-10: the term [03-11, 04-10) is over
    result = app.expire_listings()
    assert result["expired"] == [{"institution_id": institution_id,
                                  "listing_id": "trust_reward-1"}]
    assert app.expire_listings()["expired"] == []  # a second run records nothing
    report = app.institution_credit_report(institution_id)
    assert report["lists"] == [] and report["listings"][0]["state"] == "expired"
    [expired] = events_of(app, "InstitutionCreditListingExpired")
    assert expired.payload == {"institution_id": institution_id, "listing_id": "trust_reward-1",
                               "list_name": TR, "on": "2025-04-10"}
    assert app.institution_credit_report(other)["lists"] == [SD]  # its term runs on
    app.views_projector().catch_up()
    assert {r["institution_id"]: r["lists"] for r in app.credit_register()} == {
        institution_id: [], other: [SD]}


def test_credit_repair_rejected_then_approved_removes_the_entry_early(app, registration,
                                                                      clock):
    institution_id = institution(registration)
    listed(app, institution_id)
    clock.advance(60)
    repair = {"application": "已退回全部补贴并完成整改", "evidence": ["退款凭证 88"]}
    review = {"officer": "officer-3", "legal_basis": "《失信行为纠正后的信用信息修复管理办法》",
              "evidence": ["审核意见 12"]}
    app.apply_for_repair(institution_id, SD, repair)
    assert app.review_repair(institution_id, SD, {**review, "approved": False,
                                                  "reason": "整改未完成"}) == {"state": "listed"}
    assert app.institution_credit_report(institution_id)["lists"] == [SD]
    clock.advance(30)
    app.apply_for_repair(institution_id, SD, repair)
    assert app.review_repair(institution_id, SD, {**review, "approved": True,
                                                  "reason": "整改完毕"}) == {"state": "removed"}
    report = app.institution_credit_report(institution_id)
    assert report["lists"] == []
    assert report["history"][-1]["reason"] == "removed from the serious_dishonesty list after " \
                                              "credit repair"
    [removed] = events_of(app, "InstitutionCreditListingRemovedEarly")
    assert (removed.payload["institution_id"], removed.payload["on"]) == (institution_id,
                                                                          "2025-06-01")
    clock.advance(400)
    assert app.expire_listings()["expired"] == []  # nothing left to expire
    # Repair is for dishonesty entries only.
    listed(app, institution_id, TR)
    with pytest.raises(DomainRuleViolated) as e:
        app.apply_for_repair(institution_id, TR, repair)
    assert "serious_dishonesty list only" in str(e.value)


def test_a_dishonesty_listing_takes_the_institution_off_the_trust_reward_list(
        app, registration, clock):
    institution_id = institution(registration)
    listed(app, institution_id, TR)
    clock.advance(30)
    app.propose_listing(institution_id, SD, proposal())
    with pytest.raises(DomainRuleViolated) as e:  # never on both lists, not even proposed
        app.propose_listing(institution_id, TR, proposal())
    assert e.value.state == "listed"  # the trust-reward entry itself is still in force
    app.send_listing_notice(institution_id, SD, {"officer": "officer-1"})
    app.receive_listing_response(institution_id, SD, {"statement": "无"})
    app.decide_listing(institution_id, SD, decision())
    report = app.institution_credit_report(institution_id)
    assert report["lists"] == [SD]
    assert {item["listing_id"]: item["state"] for item in report["listings"]} == {
        "trust_reward-1": "ended_by_dishonesty", "serious_dishonesty-1": "listed"}
    assert report["history"][-1]["event_type"] == "InstitutionCreditListingEndedByDishonesty"
    assert report["history"][-1]["reason"] == (
        "removed from the trust_reward list: listed as seriously dishonest "
        "(serious_dishonesty-1)")
    [ended] = events_of(app, "InstitutionCreditListingEndedByDishonesty")
    assert ended.payload == {"institution_id": institution_id, "listing_id": "trust_reward-1",
                             "list_name": TR, "on": "2025-04-02",
                             "dishonesty_listing_id": "serious_dishonesty-1"}
    validate_envelope(ended.to_dict())
    app.views_projector().catch_up()
    assert {r["institution_id"]: r["lists"] for r in app.credit_register()} == {
        institution_id: [SD]}
    assert [r["listing_id"] for r in app.listings_due()] == ["serious_dishonesty-1"]
    with pytest.raises(DomainRuleViolated) as e:
        app.propose_listing(institution_id, TR, proposal())
    assert e.value.state == "listed" and "serious_dishonesty" in str(e.value)


def test_steps_out_of_order_and_unknown_institutions(app, registration):
    institution_id = institution(registration)
    with pytest.raises(DomainRuleViolated) as e:
        app.send_listing_notice(institution_id, SD, {"officer": "officer-1"})
    assert e.value.state == "none"
    app.propose_listing(institution_id, SD, proposal())
    with pytest.raises(DomainRuleViolated) as e:
        app.propose_listing(institution_id, SD, proposal())
    assert e.value.state == "proposed"
    with pytest.raises(InstitutionNotFound):
        app.propose_listing(str(uuid.uuid4()), SD, proposal())
    with pytest.raises(InstitutionNotFound):
        app.institution_credit_report(str(uuid.uuid4()))
    assert fields(refused(app, "listing_step", institution_id, SD, "bribe", {})) == {"step"}


# ---- practitioners: bans and their terms, checks --------------------------------------------
def test_bans_bar_for_their_term_and_the_timer_lifts_them(app, clock):
    ref = app.register_practitioner({"name": NAME, "id_number": ID_1})["person_ref"]
    assert check(app, id_number=ID_1) == {"barred": False, "ban_reference": None}
    term_ban = ban(app, ref, term=2, ban_ref="(2025)沪0104刑初12号")
    assert term_ban == "(2025)沪0104刑初12号"
    assert check(app, id_number=ID_1) == {"barred": True, "ban_reference": term_ban}
    assert check(app, person_ref=ref) == {"barred": True, "ban_reference": term_ban}
    [imposed] = events_of(app, "PractitionerBanImposed")
    assert (imposed.payload["person_ref"], imposed.payload["ban_ref"],
            imposed.payload["starts_on"], imposed.payload["ends_on"]) == (
        ref, term_ban, "2025-03-03", "2027-03-03")
    with pytest.raises(DomainRuleViolated) as e:
        ban(app, ref, ban_ref=term_ban)
    assert e.value.state == "imposed"
    clock.now = datetime(2027, 3, 2, 2, tzinfo=UTC)
    assert app.lift_expired_bans()["lifted"] == []
    assert check(app, id_number=ID_1)["barred"] is True
    clock.advance(1)  # 2027-03-03: the two years are over, even before the timer runs
    assert check(app, id_number=ID_1) == {"barred": False, "ban_reference": None}
    assert app.lift_expired_bans()["lifted"] == [{"person_ref": ref, "ban_ref": term_ban}]
    assert app.lift_expired_bans()["lifted"] == []  # idempotent
    [lifted] = events_of(app, "PractitionerBanLifted")
    assert lifted.payload == {"person_ref": ref, "ban_ref": term_ban, "on": "2027-03-03",
                              "reason": "term ended"}
    # A lifetime ban from an abuse finding never lifts, and is the reference a check gives.
    life = ban(app, ref, term="lifetime", source="abuse_finding")
    one_year = ban(app, ref, term=1)
    assert check(app, id_number=ID_1) == {"barred": True, "ban_reference": life}
    clock.now = datetime(2090, 1, 1, tzinfo=UTC)
    assert [b["ban_ref"] for b in app.lift_expired_bans()["lifted"]] == [one_year]
    assert check(app, id_number=ID_1) == {"barred": True, "ban_reference": life}
    with pytest.raises(PractitionerNotFound):
        ban(app, "0" * 32)


def test_yearly_check_is_barred_at_once_by_a_ban_and_otherwise_asks_the_inquiry(
        app, registration, simulator):
    institution_id = institution(registration)
    ref = app.register_practitioner({"name": NAME, "id_number": ID_1})["person_ref"]
    first = app.request_check(ref, {"institution_id": institution_id})
    assert (first["state"], first["outcome"], first["reference"], first["flag"]) == (
        "pending", None, None, None)
    assert events_of(app, "PractitionerCheckCompleted") == []  # never cleared unasked
    assert simulator.inquiry_count == 0
    round_ = app.dispatch_inquiries()
    assert [a["check_id"] for a in round_["answered"]] == [first["check_id"]]
    assert simulator.inquiry_count == 1
    ban_ref = ban(app, ref)
    second = app.request_check(ref, {"check_id": "yearly-2025-1"})
    assert second == {"check_id": "yearly-2025-1", "state": "completed", "outcome": "barred",
                      "reference": ban_ref, "flag": None}
    assert simulator.inquiry_count == 1  # the ban list answered: no inquiry
    completed = [e.payload for e in events_of(app, "PractitionerCheckCompleted")]
    [answered] = events_of(app, "PractitionerInquiryAnswered")
    assert [(c["institution_id"], c["person_ref"], c["outcome"], c["answered_by"],
             c["reference"]) for c in completed] == [
        (institution_id, ref, "cleared", "public_security",
         answered.payload["inquiry_reference"]), (None, ref, "barred", "ban_list", ban_ref)]
    with pytest.raises(DomainRuleViolated):
        app.request_check(ref, {"check_id": "yearly-2025-1"})
    with pytest.raises(PractitionerNotFound):
        app.request_check("f" * 32, {})


def hire(app, registration, institution_id: str, id_number: str | None = None,
         **kw) -> Envelope:
    upstream, consumer = registration
    envelope = upstream.publish("InstitutionPractitionerHireRequested",
                                hire_payload(app, id_number, **kw),
                                aggregate_id=institution_id)
    consumer.handle(envelope)
    return envelope


def pending_checks(app) -> list[dict[str, Any]]:
    app.views_projector().catch_up()  # the worker's part, done here
    return app.pending_checks()


def completion(app, check_id: str) -> dict[str, Any] | None:
    found = [e.payload for e in events_of(app, "PractitionerCheckCompleted")
             if e.payload["check_id"] == check_id]
    return found[-1] if found else None


def test_a_hire_with_no_record_is_cleared_once_the_inquiry_answers(app, registration,
                                                                   simulator):
    institution_id = institution(registration)
    request = hire(app, registration, institution_id, ID_2)
    hire_id, ref = request.payload["hire_id"], request.payload["practitioner"]["ref"]
    [requested] = events_of(app, "PractitionerCheckRequested")
    assert (requested.payload["check_id"], requested.payload["reason"]) == (hire_id, "hire")
    assert completion(app, hire_id) is None  # pending: registration's hire waits
    head = app.log_head()
    hire_again = request  # redelivered: nothing
    registration[1].handle(hire_again)
    assert app.log_head() == head
    assert [c["check_id"] for c in pending_checks(app)] == [hire_id]
    result = app.dispatch_inquiries()
    assert result["answered"] == [{"person_ref": ref, "check_id": hire_id,
                                   "outcome": "cleared",
                                   "inquiry_reference": result["answered"][0][
                                       "inquiry_reference"]}]
    [answered] = events_of(app, "PractitionerInquiryAnswered")
    assert set(answered.payload) == {"check_id", "person_ref", "inquiry_reference",
                                     "answered_at"}  # no result, no categories published
    assert answered.payload["inquiry_reference"].startswith("GA-")
    done = completion(app, hire_id)
    assert (done["institution_id"], done["outcome"], done["reference"], done["answered_by"],
            done["officer"]) == (institution_id, "cleared",
                                 answered.payload["inquiry_reference"], "public_security",
                                 "credit-service")
    person = app._practitioner(ref)
    assert person.check(hire_id)["inquiry"]["result"] == "no_record"
    assert pending_checks(app) == []
    assert app.dispatch_inquiries() == {"answered": [], "pending": [], "unavailable": [],
                                        "flagged": [], "failed": []}
    assert simulator.inquiry_count == 1


def test_a_hire_with_a_record_is_barred_with_the_categories(app, registration):
    institution_id = institution(registration)
    request = hire(app, registration, institution_id, ID_RECORD)
    hire_id, ref = request.payload["hire_id"], request.payload["practitioner"]["ref"]
    [answer] = app.dispatch_inquiries()["answered"]
    assert answer["outcome"] == "barred"
    done = completion(app, hire_id)
    assert (done["outcome"], done["reference"], done["answered_by"]) == (
        "barred", answer["inquiry_reference"], "public_security")
    inquiry = app._practitioner(ref).check(hire_id)["inquiry"]
    assert (inquiry["result"], inquiry["categories"]) == ("record_found", ["abuse", "violence"])
    published = json.dumps([e.to_dict() for e in app.read_log(1, 10000)], ensure_ascii=False)
    assert "record_found" not in published and "violence" not in published


def test_a_ban_in_force_bars_the_hire_at_once_without_an_inquiry(app, registration,
                                                                 simulator):
    institution_id = institution(registration)
    ref = app.register_practitioner({"name": NAME, "id_number": ID_2})["person_ref"]
    ban_ref = ban(app, ref, term="lifetime")
    request = hire(app, registration, institution_id, ID_2)
    done = completion(app, request.payload["hire_id"])
    assert (done["outcome"], done["reference"], done["answered_by"]) == (
        "barred", ban_ref, "ban_list")
    assert app.dispatch_inquiries()["answered"] == []
    assert simulator.inquiry_count == 0
    # A ban imposed while a check waits for the inquiry bars it at once too.
    other = hire(app, registration, institution_id, ID_1)
    other_ref = other.payload["practitioner"]["ref"]
    second_ban = ban(app, other_ref, term=2)
    done = completion(app, other.payload["hire_id"])
    assert (done["outcome"], done["reference"], done["answered_by"]) == (
        "barred", second_ban, "ban_list")
    app.dispatch_inquiries()
    assert simulator.inquiry_count == 0


def test_while_the_system_is_down_the_hire_stays_pending_and_is_retried_with_backoff(
        app, registration, simulator, clock):
    institution_id = institution(registration)
    hire_id = hire(app, registration, institution_id, ID_2).payload["hire_id"]
    simulator.set_down(True)
    waits = []
    for _ in range(4):
        result = app.dispatch_inquiries()
        assert result["answered"] == [] and result["flagged"] == []
        [outage] = result["unavailable"]
        waits.append(datetime.fromisoformat(outage["retry_at"]) - clock.now)
        # not due again before its time: a round now does nothing
        assert app.dispatch_inquiries()["unavailable"] == []
        clock.now = datetime.fromisoformat(outage["retry_at"])
    assert waits == [timedelta(minutes=1), timedelta(minutes=2), timedelta(minutes=4),
                     timedelta(minutes=8)]
    assert completion(app, hire_id) is None  # never cleared while the system is down
    [row] = pending_checks(app)
    assert (row["state"], row["attempts"]) == ("awaiting_inquiry", 4)
    assert "503" in row["last_error"]
    simulator.stop()  # the port closed: refused connections are an outage too
    assert app.dispatch_inquiries()["unavailable"]
    assert completion(app, hire_id) is None
    simulator.start(port=int(app.inquiry.base_url.rsplit(":", 1)[1]))
    simulator.set_down(False)
    clock.advance(1)
    [answered] = app.dispatch_inquiries()["answered"]
    assert answered["outcome"] == "cleared" == completion(app, hire_id)["outcome"]


def test_an_outage_ends_the_round_and_the_others_wait_for_the_next(app, registration,
                                                                   simulator, clock):
    institution_id = institution(registration)
    hires = [hire(app, registration, institution_id, n).payload["hire_id"]
             for n in (ID_1, ID_2, ID_3)]
    simulator.set_down(True)
    first = app.dispatch_inquiries()
    assert len(first["unavailable"]) == 1 and first["answered"] == []
    simulator.set_down(False)
    second = app.dispatch_inquiries()  # the two not tried yet; the first waits its minute
    assert sorted(a["check_id"] for a in second["answered"]) == sorted(
        h for h in hires if h != first["unavailable"][0]["check_id"])
    clock.advance(1)
    assert [a["check_id"] for a in app.dispatch_inquiries()["answered"]] == [
        first["unavailable"][0]["check_id"]]


def test_a_deferred_answer_is_asked_for_on_a_later_round(app, registration, simulator, clock):
    institution_id = institution(registration)
    simulator.set_deferred(True, polls=2)
    hire_id = hire(app, registration, institution_id, ID_RECORD).payload["hire_id"]
    [pending] = app.dispatch_inquiries()["pending"]
    assert pending["polls"] == 1
    assert app.dispatch_inquiries()["pending"] == []  # not asked again before its time
    clock.now = datetime.fromisoformat(pending["poll_at"])
    [again] = app.dispatch_inquiries()["pending"]  # the first status: not yet
    assert datetime.fromisoformat(again["poll_at"]) - clock.now == timedelta(seconds=60)
    assert completion(app, hire_id) is None
    clock.now = datetime.fromisoformat(again["poll_at"])
    [answered] = app.dispatch_inquiries()["answered"]
    assert answered["outcome"] == "barred" == completion(app, hire_id)["outcome"]
    assert simulator.inquiry_count == 1  # asked by status, not sent again


def test_a_rejected_inquiry_is_flagged_for_an_officer_and_never_cleared(
        app, registration, simulator, clock):
    institution_id = institution(registration)
    request = hire(app, registration, institution_id, ID_2)
    hire_id, ref = request.payload["hire_id"], request.payload["practitioner"]["ref"]
    # The simulator refuses a request id reused for another person (409): send one first.
    from tuoyu_shared.public_security import InquiryRequest

    app.inquiry.inquire(InquiryRequest(request_id=hire_id, id_number=ID_3, name="王五",
                                       purpose="hire", requested_by="someone"))
    [flagged] = app.dispatch_inquiries()["flagged"]
    assert flagged["flag"] == "inquiry_rejected" and "HTTP 409" in flagged["reason"]
    assert ID_2 not in flagged["reason"] and ID_2[:6] not in flagged["reason"]
    [event] = events_of(app, "PractitionerCheckFlagged")
    assert (event.payload["check_id"], event.payload["flag"]) == (hire_id, "inquiry_rejected")
    assert completion(app, hire_id) is None
    clock.advance(3)
    assert app.dispatch_inquiries()["flagged"] == []  # flagged: not sent again by itself
    [row] = pending_checks(app)
    assert (row["check_id"], row["state"], row["flag"]) == (hire_id, "flagged",
                                                            "inquiry_rejected")
    assert "409" in row["flag_reason"]
    # The officer has it sent again once the cause is dealt with: still refused here.
    assert app.retry_check(ref, {"check_id": hire_id, "officer": "officer-2",
                                 "reason": "asked the system's operators"}) == {
        "check_id": hire_id, "state": "pending"}
    assert app.dispatch_inquiries()["flagged"]
    assert completion(app, hire_id) is None
    with pytest.raises(DomainRuleViolated):
        app.retry_check(ref, {"check_id": "no-such-check", "officer": "o", "reason": "r"})


def test_a_person_known_by_ref_alone_stays_pending_flagged_identity_unknown(
        app, registration, simulator):
    institution_id = institution(registration)
    old_ref = "a" * 32  # a ref of before credit issued them: credit holds no ID number
    hire_id = hire(app, registration, institution_id, ref=old_ref).payload["hire_id"]
    [registered] = events_of(app, "PractitionerRegistered")
    assert registered.payload == {"person_ref": old_ref, "registered_from": "hire"}
    [flagged] = events_of(app, "PractitionerCheckFlagged")
    assert (flagged.payload["check_id"], flagged.payload["flag"]) == (hire_id,
                                                                      "identity_unknown")
    assert app.dispatch_inquiries()["answered"] == [] and simulator.inquiry_count == 0
    assert completion(app, hire_id) is None
    # An officer identifies the person: the ID number goes under that ref, and the check is
    # sent.
    assert app.register_practitioner({"name": NAME, "id_number": ID_2,
                                      "person_ref": old_ref}) == {
        "person_ref": old_ref, "created": False}
    [sealed] = events_of(app, "PractitionerIdentitySealed")
    assert sealed.payload == {"person_ref": old_ref}
    assert app.vault.find("practitioner", ID_2) == old_ref
    [answered] = app.dispatch_inquiries()["answered"]
    assert answered["check_id"] == hire_id and completion(app, hire_id)["outcome"] == "cleared"
    # The same number for another record, or another number for this one: refused.
    other = "b" * 32
    hire(app, registration, institution_id, ref=other)
    for data in ({"name": NAME, "id_number": ID_2, "person_ref": other},
                 {"name": NAME, "id_number": ID_1, "person_ref": old_ref}):
        with pytest.raises(DomainRuleViolated):
            app.register_practitioner(data)
    assert app.vault.find("practitioner", ID_1) is None


def test_registration_finds_the_person_by_their_number_and_credit_issues_the_ref(app):
    first = app.register_practitioner({"name": NAME, "id_number": ID_1})
    assert first["created"] is True and len(first["person_ref"]) == 32
    assert app.register_practitioner({"name": NAME, "id_number": ID_1}) == {
        "person_ref": first["person_ref"], "created": False}
    assert app.vault.find("practitioner", ID_1) == first["person_ref"]
    assert app.vault.find("practitioner", ID_2) is None
    # A random pseudonym: not derived from the number (another service's index, another ref).
    second = app.register_practitioner({"name": NAME, "id_number": ID_2})["person_ref"]
    assert second != first["person_ref"]
    assert app.vault.display([first["person_ref"]]) == {first["person_ref"]: "张**"}
    [registered, _] = events_of(app, "PractitionerRegistered")
    assert registered.payload == {"person_ref": first["person_ref"],
                                  "registered_from": "officer"}


def test_a_person_erased_comes_back_as_a_new_person(app):
    ref = app.register_practitioner({"name": NAME, "id_number": ID_3})["person_ref"]
    app.vault.erase(ref)  # erased (crypto-shredded)
    assert app.vault.find("practitioner", ID_3) is None
    again = app.register_practitioner({"name": NAME, "id_number": ID_3})
    assert again["created"] is True and again["person_ref"] != ref
    assert app.check_practitioner({"person_ref": ref, "purpose": "audit"})["barred"] is False


# ---- people's rights over their data (tuoyu_shared.people) ---------------------------------
ERASURE = {"reason": "本人申请 2025-03-03，身份已核验", "legal_basis": "个人信息保护法 第47条"}


def test_erasure_is_refused_while_a_ban_is_in_force_and_allowed_after(app, clock):
    ref = app.register_practitioner({"name": NAME, "id_number": ID_1})["person_ref"]
    with command_context(actor="officer-5", department="health"):
        check(app, f"入职审查 {NAME}", id_number=ID_1)
    ban_ref = ban(app, ref, term=1, starts_on="2025-04-01")  # starts later: not ended either
    before = counts(app)
    for _ in range(2):
        assert app.erase_person({"id_number": ID_1, **ERASURE}) == {
            "erased": [], "retained": [{
                "kind": "practitioner", "person_ref": ref,
                "reason": "未成年人保护法 第62条 / the ban list must be kept while a ban is "
                          "in force"}]}
        assert counts(app) == before  # nothing erased, nothing recorded
        assert app.vault.display([ref]) == {ref: "张**"}
        clock.now = datetime(2025, 6, 1, 2, tzinfo=UTC)  # in force now
    assert app.vault.find("practitioner", ID_1) == ref
    clock.now = datetime(2026, 4, 1, 2, tzinfo=UTC)  # the term is over (lifted or not)
    exported = app.export_person({"id_number": ID_1, "purpose": "本人查阅"})
    assert exported["refs"] == {"practitioner": ref}
    assert {v for e in exported["events"] for v in e["values"].values()} == {NAME, ID_1}
    assert app.erase_person({"id_number": ID_1, **ERASURE}) == {
        "erased": [{"kind": "practitioner", "person_ref": ref}], "retained": []}
    [erased] = events_of(app, "PersonalDataErased")
    assert erased.payload["person_ref"] == ref and erased.payload["kind"] == "practitioner"
    assert app.vault.find("practitioner", ID_1) is None
    person = app._practitioner(ref)
    assert app.vault.open(person.id_number) is None and app.vault.open(person.name) is None
    assert app.vault.display([ref]) == {ref: "（已删除）"}
    assert app.check_practitioner({"id_number": ID_1, "purpose": "x"}) == {
        "barred": False, "ban_reference": None}  # not found any more
    assert app.check_practitioner({"person_ref": ref, "purpose": "x"})["ban_reference"] is None
    # The ban list stays (the ref, the ban, its end): the reads lose the purposes typed.
    assert person.bans[ban_ref]["ends_on"].isoformat() == "2026-04-01"
    reads = app.practitioner_reads(ref, {"purpose": "audit"})
    assert [r["purpose"] for r in reads] == ["（已删除）", "x", "audit"]
    assert (reads[0]["actor"], reads[0]["query"]) == ("officer-5", "check_by_id_number")
    texts = "\n".join(table_texts(app.settings.database_url).values())
    assert NAME not in texts and ID_1 not in texts and ID_1[-8:] not in texts
    assert app.erase_person({"id_number": ID_1, **ERASURE}) == {  # found no more
        "erased": [], "retained": []}


def test_a_pending_check_of_an_erased_person_is_flagged_never_cleared(app, registration,
                                                                      simulator):
    institution_id = institution(registration)
    request = hire(app, registration, institution_id, ID_2)
    app.erase_person({"id_number": ID_2, **ERASURE})
    [flagged] = app.dispatch_inquiries()["flagged"]
    assert flagged["flag"] == "identity_unknown" and "erased" in flagged["reason"]
    assert completion(app, request.payload["hire_id"]) is None
    assert simulator.inquiry_count == 0


# ---- personal data and the audit of reads -----------------------------------------------------
def table_texts(database_url: str) -> dict[str, str]:
    """Every row of every table, as text (bytea decoded, so event states are read too)."""
    texts = {}
    with psycopg.connect(database_url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()]
        for table in tables:
            rows = conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table)))
            parts = []
            for row in rows.fetchall():
                for value in row:
                    if isinstance(value, (bytes, memoryview)):
                        parts.append(bytes(value).decode("utf-8", "replace"))
                    else:
                        parts.append(str(value))
            texts[table] = "\n".join(parts)
    return texts


def test_the_database_holds_no_id_number_in_clear(app, registration, inspection, clock):
    upstream, consumer = registration
    institution_id = institution(registration)
    with command_context(actor="officer-1", department="credit"):
        ref = app.register_practitioner({"name": NAME, "id_number": ID_1})["person_ref"]
        ban(app, ref, term=1)
        check(app, id_number=ID_1)
        check(app, id_number=ID_3)  # someone never registered
        app.practitioner_reads(ref, {"purpose": "audit"})
        app.request_check(ref, {})
    old_ref = "c" * 32
    consumer.handle(upstream.publish("InstitutionPractitionerHireRequested",
                                     hire_payload(app, ref=old_ref), aggregate_id=institution_id))
    app.register_practitioner({"name": "李四", "id_number": ID_2, "person_ref": old_ref})
    consumer.handle(upstream.publish("InstitutionPractitionerHireRequested",
                                     hire_payload(app, ID_RECORD), aggregate_id=institution_id))
    app.dispatch_inquiries()  # the ID numbers and names went to the inquiry, and only there
    listed(app, institution_id)
    for _ in range(100):  # enough commands on one record to take a snapshot
        app.request_check(ref, {})
    clock.advance(400)
    app.lift_expired_bans()
    app.expire_listings()
    app.views_projector().catch_up()
    texts = table_texts(app.settings.database_url)
    assert {"credit_events", "credit_snapshots", "person_keys", "person_index",
            "practitioner_reads", "credit_register", "bans_due", "consumer_tracking",
            "checks_pending"} <= set(texts)
    assert "Practitioner.InquiryAnswered" in texts["credit_events"]  # the search reads them
    assert ref in texts["credit_snapshots"]
    everything = "\n".join(texts.values())
    for id_number in (ID_1, ID_2, ID_3, ID_RECORD):
        assert id_number not in everything
        assert id_number[:14] not in everything and id_number[6:] not in everything
        assert mask_resident_id(id_number) not in everything  # no mask either
    for name in (NAME, "李四"):
        assert name not in everything
    # The sealed values open with the person's key, inside this service only.
    person = app.repository.get(practitioner_id_for(ref))
    assert app.vault.open(person.id_number) == ID_1 and app.vault.open(person.name) == NAME
    # Published envelopes carry refs only: no value, no mask, no digit of an ID number.
    published = json.dumps([e.to_dict() for e in app.read_log(1, 10000)], ensure_ascii=False)
    assert "sealed" not in published and "masked" not in published and "*" not in published
    for id_number in (ID_1, ID_2, ID_3, ID_RECORD):  # no 8 characters of one in a row
        assert not [id_number[i:i + 8] for i in range(len(id_number) - 7)
                    if id_number[i:i + 8] in published]


def test_every_read_of_a_practitioner_is_recorded_before_it_is_answered(app, clock):
    ref = app.register_practitioner({"name": NAME, "id_number": ID_1})["person_ref"]
    ban_ref = ban(app, ref)
    with command_context(actor="officer-5", department="health", correlation_id="hire-99"):
        assert check(app, "hiring a carer at 小星星托育园", id_number=ID_1) == {
            "barred": True, "ban_reference": ban_ref}
    clock.advance(1)
    with command_context(actor="officer-6", department="education"):
        check(app, "annual roster review", person_ref=ref)
        reads = app.practitioner_reads(ref, {"purpose": "complaint 2025-17"})
    assert [(r["actor"], r["department"], r["purpose"], r["query"], r["record_found"],
             r["answered_barred"], r["answered_ban_reference"]) for r in reads] == [
        ("officer-5", "health", "hiring a carer at 小星星托育园", "check_by_id_number", True,
         True, ban_ref),
        ("officer-6", "education", "annual roster review", "check_by_person_ref", True, True,
         ban_ref),
        ("officer-6", "education", "complaint 2025-17", "read_audit", True, None, None)]
    assert reads[0]["correlation_id"] == "hire-99"
    assert datetime.fromisoformat(reads[0]["read_at"]) == MONDAY
    assert datetime.fromisoformat(reads[1]["read_at"]) == MONDAY + timedelta(days=1)
    # A number credit does not hold (through its blind index): the lookup is a read all the
    # same, recorded without a ref; nobody is enrolled by being looked up.
    assert check(app, "hire screening", id_number=ID_3) == {"barred": False,
                                                            "ban_reference": None}
    assert app.vault.find("practitioner", ID_3) is None
    with psycopg.connect(app.settings.database_url) as conn:
        assert conn.execute("SELECT query, record_found, purpose FROM practitioner_reads "
                            "WHERE person_ref IS NULL").fetchall() == [
            ("check_by_id_number", False, "hire screening")]
    unknown = app.practitioner_reads("d" * 32, {"purpose": "audit"})
    assert [(r["query"], r["record_found"]) for r in unknown] == [("read_audit", False)]
    # No purpose, no answer; and the audit cannot be rewritten.
    assert fields(refused(app, "check_practitioner", {"id_number": ID_1})) == {"purpose"}
    assert fields(refused(app, "check_practitioner", {
        "id_number": ID_1, "purpose": f"checking {ID_1}"})) == {"purpose"}
    assert fields(refused(app, "practitioner_reads", ref, {})) == {"purpose"}
    with psycopg.connect(app.settings.database_url) as conn:
        for statement in ("UPDATE practitioner_reads SET purpose = 'x'",
                          "DELETE FROM practitioner_reads", "TRUNCATE practitioner_reads"):
            with pytest.raises(psycopg.errors.RaiseException):
                conn.execute(statement)
            conn.rollback()


# ---- bad input ------------------------------------------------------------------------------
def test_bad_input_is_refused_naming_each_field_and_nothing_is_written(app, registration):
    institution_id = institution(registration)
    ref = app.register_practitioner({"name": NAME, "id_number": ID_1})["person_ref"]
    bad_id = ID_2[:-1] + ("0" if ID_2[-1] != "0" else "1")
    errors = refused(app, "register_practitioner", {"name": "", "id_number": bad_id})
    assert fields(errors) == {"name", "id_number"}
    assert ID_2[:6] not in json.dumps(errors)  # the reason never repeats the number
    assert fields(refused(app, "impose_ban", "not-a-ref", {
        "source": "rumour", "legal_basis": "", "evidence": [], "officer": "o",
        "term": 0})) == {"person_ref", "source", "legal_basis", "evidence", "term"}
    assert fields(refused(app, "impose_ban", ref, {
        "source": "court_ruling", "legal_basis": BAN_BASIS, "evidence": [f"判决 {ID_1}"],
        "officer": "o", "term": "forever", "starts_on": "2025-02-30"})) == {
        "evidence[0]", "term", "starts_on"}
    assert fields(refused(app, "check_practitioner", {
        "id_number": ID_1, "person_ref": ref, "purpose": "x"})) == {"id_number"}
    assert fields(refused(app, "check_practitioner", {"person_ref": "ABC",
                                                      "purpose": "x"})) == {"person_ref"}
    assert fields(refused(app, "request_check", ref, {
        "reason": "hire", "institution_id": "nope"})) == {"reason", "institution_id"}
    assert fields(refused(app, "propose_listing", institution_id, "blacklist", {
        "legal_basis": BASIS, "evidence": "file", "proposed_term_days": 0})) == {
        "list_name", "evidence", "officer", "proposed_term_days"}
    assert fields(refused(app, "propose_listing", "not-a-uuid", SD, proposal())) == {
        "institution_id"}
    app.propose_listing(institution_id, SD, proposal())
    app.send_listing_notice(institution_id, SD, {"officer": "officer-1"})
    assert fields(refused(app, "receive_listing_response", institution_id, SD, {})) == {
        "statement"}
    assert fields(refused(app, "decide_listing", institution_id, SD, {
        "decision": "maybe", "term_days": "30"})) == {
        "decision", "officer", "reason", "evidence", "term_days"}
    assert fields(refused(app, "review_repair", institution_id, SD, {"approved": "yes"})) == {
        "approved", "officer", "reason", "legal_basis", "evidence"}
    assert fields(refused(app, "record_scoring_cause", institution_id, {
        "cause_type": "finding_recorded", "cause_ref": "paper-1"})) == {"severity"}
    assert fields(refused(app, "credit_register", "E")) == {"grade"}


def codes(errors: list[dict]) -> list[tuple[str, str]]:
    return [(e["field"], e["code"]) for e in errors]


def test_a_payload_is_read_whole_every_bad_field_named_with_its_code(app, registration):
    institution_id = institution(registration)
    ref = app.register_practitioner({"name": NAME, "id_number": ID_1})["person_ref"]
    assert codes(refused(app, "impose_ban", "ABC", {
        "source": "rumour", "legal_basis": f"依据 {ID_2}", "evidence": ["", 7],
        "officer": "o" * 201, "starts_on": "2025-02-30", "term": 101})) == [
        ("person_ref", "invalid_format"), ("source", "invalid_choice"),
        ("legal_basis", "personal_data"), ("evidence[0]", "required"),
        ("evidence[1]", "invalid_type"), ("officer", "too_long"),
        ("starts_on", "not_a_date"), ("term", "invalid_choice")]
    assert codes(refused(app, "propose_listing", "not-a-uuid", "blacklist", {
        "legal_basis": " ", "evidence": [], "officer": 1, "proposed_term_days": 36501})) == [
        ("institution_id", "invalid_format"), ("list_name", "invalid_choice"),
        ("legal_basis", "required"), ("evidence", "invalid_format"),
        ("officer", "invalid_type"), ("proposed_term_days", "out_of_range")]
    assert codes(refused(app, "record_scoring_cause", institution_id, {
        "cause_type": "finding", "cause_ref": "", "note": "n" * 2001})) == [
        ("cause_type", "invalid_choice"), ("cause_ref", "required"), ("note", "too_long")]
    # A cross-field rule is checked once the fields themselves are valid.
    assert codes(refused(app, "record_scoring_cause", institution_id, {
        "cause_type": "finding_recorded", "cause_ref": "paper-1"})) == [
        ("severity", "required")]
    assert codes(refused(app, "check_practitioner", {
        "purpose": "hire screening", "id_number": ID_1, "person_ref": ref})) == [
        ("id_number", "required")]
    assert codes(refused(app, "credit_register", "E", "blacklist", 0, -1)) == [
        ("grade", "invalid_choice"), ("list_name", "invalid_choice"),
        ("limit", "out_of_range"), ("offset", "out_of_range")]


def test_an_unknown_field_is_refused_by_name_and_writes_nothing(app, registration):
    institution_id = institution(registration)
    ref = app.register_practitioner({"name": NAME, "id_number": ID_1})["person_ref"]
    errors = refused(app, "impose_ban", ref, {
        "source": "court_ruling", "legal_basis": BAN_BASIS, "evidence": ["判决"],
        "officer": "o", "term": 3, "terms": "lifetime"})  # a misspelt field
    assert codes(errors) == [("terms", "unknown_field")]
    assert "term" in errors[0]["reason"]  # the reason lists the command's fields
    assert codes(refused(app, "register_practitioner", {
        "name": "李四", "id_number": ID_2, "phone": "13812345678"})) == [
        ("phone", "unknown_field")]
    assert codes(refused(app, "propose_listing", institution_id, SD, {
        **proposal(), "institution_id": institution_id})) == [
        ("institution_id", "unknown_field")]  # a parameter of the path, not of the body
    assert codes(refused(app, "check_practitioner", {
        "purpose": "hire screening", "id_number": ID_1, "name": NAME})) == [
        ("name", "unknown_field")]
    assert codes(refused(app, "practitioner_reads", ref, {
        "purpose": "audit", "limit": 10})) == [("limit", "unknown_field")]
    # Nothing was recorded: the person has no ban, no check and no read of the record.
    person = app.repository.get(practitioner_id_for(ref))
    assert person.bans == {} and app.practitioner_reads(ref, {"purpose": "audit"})[0][
        "query"] == "read_audit"
    assert app.institution_credit_report(institution_id)["listings"] == []


def test_every_refused_command_writes_nothing(app, registration):
    institution_id = institution(registration)
    ref = app.register_practitioner({"name": NAME, "id_number": ID_1})["person_ref"]
    app.propose_listing(institution_id, SD, proposal())
    version = app.institution_credit_report(institution_id)["version"]
    # (refused() compares the events, the personal data keys and the recorded reads)
    for command, args in (
            ("register_practitioner", ({"name": NAME, "id_number": ID_2, "x": 1},)),
            ("impose_ban", (ref, {"source": "court_ruling"})),
            ("request_check", (ref, {"reason": "hire"})),
            ("check_practitioner", ({"id_number": ID_1, "purpose": ""},)),
            ("practitioner_reads", (ref, {"purpose": f"about {ID_1}"})),
            ("record_scoring_cause", (institution_id, {"cause_type": "inspection_refused"})),
            ("send_listing_notice", (institution_id, SD, {"officer": ""})),
            ("receive_listing_response", (institution_id, SD, {"statement": 1})),
            ("decide_listing", (institution_id, SD, {"decision": "listed"})),
            ("apply_for_repair", (institution_id, SD, {"application": "a"})),
            ("review_repair", (institution_id, SD, {"approved": 1})),
            ("listing_step", (institution_id, SD, "notice", {"officer": "o", "by": "x"}))):
        assert refused(app, command, *args), command
    assert app.institution_credit_report(institution_id)["version"] == version


def test_an_officer_may_record_a_scoring_cause_once(app, registration):
    institution_id = institution(registration)
    cause = {"cause_type": "finding_recorded", "cause_ref": "纸质检查 2025-3",
             "severity": "critical", "note": "联合检查（纸质记录）"}
    assert app.record_scoring_cause(institution_id, cause) == {
        "applied": True, "score": 80, "grade": "C"}
    assert app.record_scoring_cause(institution_id, cause) == {
        "applied": False, "score": 80, "grade": "C"}
    with pytest.raises(InstitutionNotFound):
        app.record_scoring_cause(str(uuid.uuid4()), cause)


# ---- published events, query tables and the timer part --------------------------------------
def test_published_envelopes_match_the_catalogue(app, registration, clock):
    upstream, consumer = registration
    institution_id = institution(registration)
    old_ref = "e" * 32
    consumer.handle(upstream.publish("InstitutionPractitionerHireRequested",
                                     hire_payload(app, ref=old_ref), aggregate_id=institution_id))
    ref = app.register_practitioner({"name": NAME, "id_number": ID_2,
                                     "person_ref": old_ref})["person_ref"]
    hire(app, registration, institution_id, ID_1)
    app.dispatch_inquiries()
    ban(app, ref, term=1)
    listed(app, institution_id)
    app.apply_for_repair(institution_id, SD, {"application": "a", "evidence": ["e"]})
    app.review_repair(institution_id, SD, {"approved": True, "officer": "o", "reason": "r",
                                           "legal_basis": "b", "evidence": ["e"]})
    clock.advance(400)
    app.lift_expired_bans()
    app.record_scoring_cause(institution_id, {"cause_type": "inspection_refused",
                                              "cause_ref": "r-1"})
    app.erase_person({"id_number": ID_2, **ERASURE})
    envelopes = app.read_log(1, 10000)
    for envelope in envelopes:
        validate_envelope(envelope.to_dict())
    assert {e.event_type for e in envelopes} >= {
        "InstitutionCreditOpened", "PractitionerRegistered", "PractitionerCheckRequested",
        "PractitionerCheckCompleted", "PractitionerIdentitySealed", "PractitionerBanImposed",
        "PractitionerBanLifted", "InstitutionCreditListingDecided",
        "InstitutionCreditListingRemovedEarly", "InstitutionCreditScoreChanged",
        "InstitutionCreditGradeChanged", "InstitutionCreditRepairReviewed",
        "PractitionerInquiryAnswered", "PractitionerCheckFlagged", "PersonalDataErased"}
    assert {e.schema_version for e in envelopes
            if e.event_type == "PractitionerCheckCompleted"} == {2}


def test_query_tables_rebuilt_from_the_log_equal_the_live_ones(app, registration, inspection):
    first = institution(registration)
    second = institution(registration, 2)
    inspections, consumer = inspection
    consumer.handle(inspections.publish("InspectionFindingRecorded",
                                        finding(second, "critical")))
    listed(app, first)
    app.propose_listing(second, TR, proposal())
    ref = app.register_practitioner({"name": NAME, "id_number": ID_1})["person_ref"]
    ban(app, ref)
    app.views_projector().catch_up()
    live = (app.credit_register(), app.listings_due())
    projections.rebuild(app.settings.database_url)
    assert app.credit_register() == []
    app.views_projector().catch_up()
    assert (app.credit_register(), app.listings_due()) == live
    assert len(live[0]) == 2 and len(live[1]) == 2


def test_the_timer_part_runs_at_start_and_at_its_interval(app, registration, clock):
    institution_id = institution(registration)
    listed(app, institution_id, TR, term_days=10)
    ref = app.register_practitioner({"name": NAME, "id_number": ID_1})["person_ref"]
    ban(app, ref, term=1)
    clock.advance(400)
    timers = Timers(app, interval=0.2, retry=0.2)
    stop = threading.Event()
    thread = threading.Thread(target=timers.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: timers.runs >= 2, what="two timer runs")
    finally:
        stop.set()
        thread.join(timeout=10)
    assert [e.payload["listing_id"] for e in events_of(app, "InstitutionCreditListingExpired")
            ] == ["trust_reward-1"]
    [lifted] = events_of(app, "PractitionerBanLifted")
    assert lifted.payload["person_ref"] == ref
    assert lifted.actor == "credit-timer"
    assert Timers.from_env(app, {"TUOYU_CREDIT_TIMER_INTERVAL": "3600"}).interval == 3600
    assert Timers.from_env(app, {}).interval is None  # daily, just after midnight in China
    assert Timers.from_env(app, {"TUOYU_CREDIT_TIMER_INTERVAL": ""}).interval is None
    with pytest.raises(ValueError):
        Timers(app, interval=0)


def test_the_daily_timer_runs_at_start_and_just_after_midnight_in_china(app, registration):
    """A term ending today is off the lists as the day starts, not up to a day later."""
    institution_id = institution(registration)
    listed(app, institution_id, TR, term_days=10)  # term [03-03, 03-13)
    # The wall clock stands 1 s before midnight in Shanghai (03-12 → 03-13) until the run at
    # start is over, then moves on.
    before_midnight = datetime(2025, 3, 12, 15, 59, 59, tzinfo=UTC)
    moving_since: list[float] = []
    app.clock = lambda: before_midnight + timedelta(
        seconds=time.monotonic() - moving_since[0] if moving_since else 0)
    timers = Timers(app, retry=0.2, margin=timedelta(seconds=0.2))
    assert timers.interval is None
    assert timers.next_run(before_midnight) == datetime(2025, 3, 12, 16, 0, 0, 200000,
                                                        tzinfo=UTC)
    stop = threading.Event()
    thread = threading.Thread(target=timers.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: timers.runs >= 1, what="the run at start")
        assert events_of(app, "InstitutionCreditListingExpired") == []  # 03-12: in force
        moving_since.append(time.monotonic())
        wait_for(lambda: timers.runs >= 2, timeout=10, what="the run after midnight")
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert timers.runs == 2  # the next run is a day away
    [expired] = events_of(app, "InstitutionCreditListingExpired")
    assert (expired.payload["listing_id"], expired.payload["on"]) == ("trust_reward-1",
                                                                      "2025-03-13")


def test_an_upstream_not_deployed_yet_reads_as_an_empty_log_but_never_skips_a_gap():
    from tuoyu_credit.reactions import NotYetDeployedLog
    from tuoyu_shared.rpc import UnknownService

    class NoService:
        def call(self, service, method, **kwargs):
            raise UnknownService(f"no service {service!r} listens for RPC calls")

    upstream = NotYetDeployedLog(NoService(), "inspection")
    assert upstream.head() == 0 and upstream.deployed is False
    with pytest.raises(UnknownService):
        upstream.read(1, 10, 3)


# ---- rosters and the yearly re-check ----------------------------------------------------------
def hired(app, registration, institution_id: str, id_number: str) -> dict[str, Any]:
    """Registration asks about a hire (credit checks it, the inquiry answers), then confirms
    it."""
    upstream, consumer = registration
    request = upstream.publish("InstitutionPractitionerHireRequested",
                               hire_payload(app, id_number), aggregate_id=institution_id)
    consumer.handle(request)
    app.dispatch_inquiries()  # the worker's part: the inquiry answers, the check completes
    p = request.payload
    confirmed = upstream.publish("InstitutionPractitionerHired", {
        "hire_id": p["hire_id"], "practitioner_ref": p["practitioner"]["ref"],
        "check_reference": p["hire_id"]}, aggregate_id=institution_id)
    consumer.handle(confirmed)
    return {"hire_id": p["hire_id"], "ref": p["practitioner"]["ref"], "envelope": confirmed}


def test_rosters_follow_hires_and_releases_and_the_timer_rechecks_them_yearly(
        app, registration, clock, simulator):
    upstream, consumer = registration
    first, second = institution(registration), institution(registration, 2)
    stays = hired(app, registration, first, ID_1)
    banned = hired(app, registration, second, sample_resident_id(304))
    released = hired(app, registration, first, ID_2)
    # Only asked about, never confirmed: not on a roster.
    consumer.handle(upstream.publish("InstitutionPractitionerHireRequested",
                                     hire_payload(app, ID_3), aggregate_id=first))
    head = app.log_head()
    consumer.handle(stays["envelope"])  # a replay records nothing
    assert app.log_head() == head
    clock.advance(100)
    leave = upstream.publish("InstitutionPractitionerReleased", {
        "hire_id": released["hire_id"], "practitioner_ref": released["ref"],
        "released_on": "2025-06-11", "reason": "contract ended"}, aggregate_id=first)
    consumer.handle(leave)
    consumer.handle(leave)
    [joined, *_] = events_of(app, "PractitionerJoinedRoster")
    assert joined.payload == {"person_ref": stays["ref"], "institution_id": first,
                              "hire_id": stays["hire_id"], "on": "2025-03-03"}
    [left] = events_of(app, "PractitionerLeftRoster")
    assert left.payload == {"person_ref": released["ref"], "institution_id": first,
                            "hire_id": released["hire_id"], "on": "2025-06-11"}
    assert len(events_of(app, "PractitionerJoinedRoster")) == 3
    app.views_projector().catch_up()
    assert sorted((m["person_ref"], m["institution_id"], m["last_checked_on"])
                  for m in app.roster_members()) == sorted([
        (stays["ref"], first, "2025-03-03"), (banned["ref"], second, "2025-03-03")])

    ban_ref = ban(app, banned["ref"], term="lifetime")
    clock.advance(264)  # 364 days after the hire checks: not yet due
    assert app.request_yearly_checks()["checked"] == []
    clock.advance(1)  # 365 days
    checks_before = len(events_of(app, "PractitionerCheckCompleted"))
    inquiries_before = simulator.inquiry_count
    result = app.request_yearly_checks()
    assert result["today"] == "2026-03-03" and result["failed"] == []
    assert sorted((c["person_ref"], c["state"], c["outcome"]) for c in result["checked"]) == \
        sorted([(stays["ref"], "pending", None), (banned["ref"], "completed", "barred")])
    # The one not barred by the ban list is asked about through the inquiry, as on hire.
    simulator.set_down(True)
    assert app.dispatch_inquiries()["unavailable"]
    assert app.request_yearly_checks()["checked"] == []  # pending: not asked for twice
    clock.advance(1)
    assert app.request_yearly_checks()["checked"] == []  # not the next day either
    simulator.set_down(False)
    stays_check = yearly_check_id(stays["ref"], date(2026, 3, 3))
    answers = app.dispatch_inquiries()["answered"]  # (and the hire only asked about)
    [answered] = [a for a in answers if a["check_id"] == stays_check]
    assert simulator.inquiry_count == inquiries_before + len(answers)
    yearly = [e for e in events_of(app, "PractitionerCheckCompleted")[checks_before:]
              if e.payload["check_id"].startswith("yearly-")]
    assert len(yearly) == 2
    by_person = {e.payload["person_ref"]: e.payload for e in yearly}
    assert {ref: (c["check_id"], c["institution_id"], c["outcome"], c["reference"],
                  c["answered_by"], c["completed_on"]) for ref, c in by_person.items()} == {
        stays["ref"]: (stays_check, None, "cleared", answered["inquiry_reference"],
                       "public_security", "2026-03-04"),
        banned["ref"]: (yearly_check_id(banned["ref"], date(2026, 3, 3)), None, "barred",
                        ban_ref, "ban_list", "2026-03-03")}
    assert stays_check != yearly_check_id(banned["ref"], date(2026, 3, 3))  # one per person
    requested = events_of(app, "PractitionerCheckRequested")[-2:]
    assert {e.payload["reason"] for e in requested} == {"yearly"}
    # Once a year: a second run the same day, or the next day, records nothing.
    head = app.log_head()
    assert app.request_yearly_checks()["checked"] == []
    clock.advance(1)
    assert app.request_yearly_checks()["checked"] == []
    assert app.log_head() == head
    app.views_projector().catch_up()
    live = app.roster_members()
    assert {m["last_checked_on"] for m in live} == {"2026-03-03", "2026-03-04"}
    projections.rebuild(app.settings.database_url)  # the table is rebuilt from the log alone
    app.views_projector().catch_up()
    assert app.roster_members() == live


def test_one_failing_person_does_not_stop_the_yearly_checks_of_the_others(
        app, registration, clock, monkeypatch):
    first = institution(registration)
    broken = hired(app, registration, first, ID_1)
    fine = hired(app, registration, first, ID_2)
    clock.advance(365)
    update = app._update_practitioner

    def failing(ref, command):
        if ref == broken["ref"]:
            raise RuntimeError("the record cannot be loaded")
        return update(ref, command)

    monkeypatch.setattr(app, "_update_practitioner", failing)
    result = app.request_yearly_checks()
    assert [c["person_ref"] for c in result["checked"]] == [fine["ref"]]
    assert [f["person_ref"] for f in result["failed"]] == [broken["ref"]]
    monkeypatch.undo()
    # The timer part runs the yearly checks too, and reports the one left over.
    run = Timers(app, interval=60).run_once()
    assert [c["person_ref"] for c in run["request_yearly_checks"]["checked"]] == [
        broken["ref"]]


def test_the_recheck_period_is_configurable(app, registration, clock):
    from tuoyu_credit.rules_config import RECHECK_DAYS_VAR, recheck_days_from_env

    assert recheck_days_from_env({}) == 365
    assert recheck_days_from_env({RECHECK_DAYS_VAR: "30"}) == 30
    for bad in ("0", "-3", "a year"):
        with pytest.raises(RulesFileInvalid):
            recheck_days_from_env({RECHECK_DAYS_VAR: bad})
    assert app.recheck_days == 365
    person = hired(app, registration, institution(registration), ID_1)
    monthly = CreditApplication(app.settings, clock=clock, recheck_days=30)
    try:
        clock.advance(30)
        assert [c["person_ref"] for c in monthly.request_yearly_checks()["checked"]] == [
            person["ref"]]
    finally:
        monthly.close()


# ---- a page of messages in one transaction ---------------------------------------------------
def _xmins(app) -> set[str]:
    with psycopg.connect(app.settings.database_url) as conn:
        return {row[0] for row in conn.execute("SELECT xmin::text FROM credit_events")}


def test_a_page_is_applied_in_one_transaction_each_message_its_own_cause(app, registration,
                                                                         inspection):
    upstream, consumer = registration
    institution_id = upstream.publish("InstitutionRegistered", registered_payload(1)).aggregate_id
    hires = [upstream.publish("InstitutionPractitionerHireRequested",
                              hire_payload(app, id_number), aggregate_id=institution_id)
             for id_number in (ID_1, ID_2, ID_1)]  # the same person twice: one record, two checks
    registered = _xmins(app)  # registration asked credit for the refs first
    consumer.handle(upstream.log[-1])  # the fast path lost the rest: a page from the log
    assert app.tracking_position("credit<-registration") == len(upstream.log)
    assert len(_xmins(app) - registered) == 1  # every reaction's events in one transaction
    checks = {e.causation_id: e for e in events_of(app, "PractitionerCheckRequested")}
    assert set(checks) == {h.event_id for h in hires}  # each caused by its own message
    person = app._practitioner(app.vault.find("practitioner", ID_1))
    assert {h.payload["hire_id"] for h in (hires[0], hires[2])} <= set(person.checks)
    [opened] = events_of(app, "InstitutionCreditOpened")
    assert opened.causation_id == upstream.log[0].event_id

    inspections, scoring = inspection
    for n in range(1, 4):
        inspections.publish("InspectionFindingRecorded", finding(institution_id, "minor", n))
    scoring.handle(inspections.log[-1])
    assert score(app, institution_id) == (94, "B")  # three on one record, none lost


def test_a_bad_message_in_a_page_is_parked_and_the_rest_of_the_page_applied(app, registration,
                                                                             inspection):
    institution_id = institution(registration)
    inspections, consumer = inspection
    inspections.publish("InspectionFindingRecorded", finding(institution_id, "minor", 1))
    bad = inspections.publish("InspectionFindingRecorded", finding(institution_id, "minor", 2))
    inspections.log[-1] = Envelope(**{**bad.to_dict(), "payload": {
        **bad.payload, "severity": "catastrophic"}})
    inspections.publish("InspectionFindingRecorded", finding(str(uuid.uuid4()), "major", 3))
    consumer.handle(inspections.log[-1])
    assert app.tracking_position("credit<-inspection") == 3
    assert score(app, institution_id)[0] == 98  # the first finding only
    [letter] = [d for d in consumer.store.dead_letters() if not d.held]
    assert letter.notification_id == 2


def test_messages_delivered_together_out_of_order_twice_and_after_a_gap_apply_once_in_order(
        app, inspection, registration):
    institution_id = institution(registration)
    inspections, consumer = inspection
    for n in range(1, 7):
        inspections.publish("InspectionFindingRecorded", finding(institution_id, "minor", n))
    log = inspections.log

    def delivered(*ids: int) -> list[tuple[Envelope, int]]:
        return [(log[i - 1], i - 1) for i in ids]  # (envelope, the relay's previous id)

    consumer.handle_many(delivered(3, 1, 2, 2, 1))
    assert app.tracking_position("credit<-inspection") == 3
    consumer.handle_many(delivered(6, 5))  # 4 lost on the way: read from the log first
    assert app.tracking_position("credit<-inspection") == 6
    causes = [h.get("cause_ref") for h in app.institution_credit_report(institution_id)[
        "history"] if h.get("cause_ref")]
    assert list(dict.fromkeys(causes)) == [e.event_id for e in log]  # (a grade change too)
    assert score(app, institution_id)[0] == 88
    consumer.handle_many(delivered(2, 6))  # redelivered: nothing
    assert score(app, institution_id)[0] == 88


def test_a_ban_and_an_erasure_at_once_never_leave_a_banned_person_unfindable(app):
    """The erasure decides under the person's lock, which a ban takes too: a ban imposed
    while the erasure holds it waits, then finds the person erased and is refused (with
    what to do instead); a ban on an erased ref alone would bar nobody hired again."""
    import threading

    ref = app.register_practitioner({"name": NAME, "id_number": ID_2})["person_ref"]
    other = CreditApplication(app.settings, clock=app.clock)  # another process, in effect
    entered, results = threading.Event(), {}
    retention_of = app.retention_of

    def slow_retention(person_ref, kind):
        entered.set()
        time.sleep(0.5)  # the ban arrives while the erasure is deciding
        return retention_of(person_ref, kind)

    app.retention_of = slow_retention

    def erase():
        results["erasure"] = app.erase_person({"id_number": ID_2, **ERASURE})

    eraser = threading.Thread(target=erase)
    eraser.start()
    assert entered.wait(5)
    try:
        with pytest.raises(PersonalDataErased, match="register the person again by ID number"):
            other.impose_ban(ref, {"source": "court_ruling", "legal_basis": "刑法 第三十七条之一",
                                   "evidence": ["(2025)沪0104刑初1号"], "officer": "officer-1",
                                   "term": "lifetime"})
    finally:
        eraser.join(10)
        other.close()
    assert results["erasure"]["erased"] == [{"kind": "practitioner", "person_ref": ref}]
    assert app._practitioner(ref).bans == {}  # no ban on a ref nobody can be found by
    # The way on: the person registered again (a new ref), the ban imposed on it.
    again = app.register_practitioner({"name": NAME, "id_number": ID_2})["person_ref"]
    ban(app, again)
    assert app.check_practitioner({"id_number": ID_2, "purpose": "入职审查"})["barred"]
