"""The background checks' dispatch as the worker runs it (a part of its own, every few
seconds, once per service), its schedule from the environment, its metrics, and the
composition root's inquiry adapter from ``TUOYU_PUBLIC_SECURITY_URL``."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tuoyu_credit import bootstrap
from tuoyu_credit.application import CreditApplication
from tuoyu_credit.inquiries import (
    POLL_VAR,
    RETRY_MAX_VAR,
    RETRY_VAR,
    InquirySchedule,
    rejection_reason,
)
from tuoyu_credit.worker import WORKER, InquiryDispatch
from tuoyu_registration.samples import sample_resident_id
from tuoyu_shared.config import ConfigurationError
from tuoyu_shared.metrics import render
from tuoyu_shared.public_security import (
    URL_VAR,
    HttpPublicSecurityInquiry,
    InquiryRejected,
)
from tuoyu_shared.simulators.public_security import start_simulator
from tuoyu_shared.testing import metric_samples, wait_for

RECORD = sample_resident_id(701)
CLEAR = sample_resident_id(702)
INSTITUTION = str(uuid.UUID(int=7))


def test_the_schedule_comes_from_the_environment_and_backs_off():
    assert InquirySchedule.from_env({}) == InquirySchedule(5, 30, 1800, 30)
    schedule = InquirySchedule.from_env({RETRY_VAR: "10", RETRY_MAX_VAR: "35", POLL_VAR: "2",
                                         "TUOYU_CREDIT_INQUIRY_INTERVAL": "0.5"})
    assert (schedule.interval, schedule.initial_retry, schedule.max_retry, schedule.poll) == (
        0.5, 10, 35, 2)
    now = datetime(2025, 3, 3, tzinfo=UTC)
    assert [(schedule.retry_at(now, n) - now).total_seconds() for n in range(1, 5)] == [
        10, 20, 35, 35]
    assert [(schedule.poll_at(now, n) - now).total_seconds() for n in range(1, 6)] == [
        2, 4, 8, 16, 32]
    for bad in ({RETRY_VAR: "soon"}, {RETRY_VAR: "0"}, {RETRY_VAR: "60", RETRY_MAX_VAR: "30"}):
        with pytest.raises(ConfigurationError):
            InquirySchedule.from_env(bad)


def test_a_rejection_is_recorded_by_status_field_and_code_never_by_what_was_sent():
    error = InquiryRejected(f"refused: id_number {CLEAR} is not valid", details={
        "external_status": 400, "field": "id_number", "external_code": f"bad_{CLEAR}"})
    reason = rejection_reason(error)
    assert "HTTP 400" in reason and "field id_number" in reason
    assert CLEAR not in reason and CLEAR[:6] not in reason and CLEAR[-4:] not in reason


@pytest.fixture
def simulator():
    with start_simulator(records={RECORD: ["sexual_offence"]}) as sim:
        yield sim


@pytest.fixture
def app(settings_factory, simulator):
    application = CreditApplication(
        settings_factory("credit"), inquiry=HttpPublicSecurityInquiry(simulator.url, timeout=2),
        schedule=InquirySchedule(interval=0.1, initial_retry=0.2, max_retry=0.4, poll=0.1))
    yield application
    application.close()


def completed(app, check_id: str) -> dict | None:
    found = [e.payload for e in app.read_log(1, 10000)
             if e.event_type == "PractitionerCheckCompleted"
             and e.payload["check_id"] == check_id]
    return found[-1] if found else None


def test_the_worker_part_sends_the_checks_and_counts_them(app, simulator):
    assert "inquiries" in WORKER.timers(app)
    refs = {n: app.register_practitioner({"name": "王五", "id_number": n})["person_ref"]
            for n in (RECORD, CLEAR)}
    before = metric_samples(render()[0].decode())
    simulator.set_down(True)
    hires = {}
    for number, ref in refs.items():
        hires[number] = f"hire-{uuid.uuid4()}"
        app.save(*app.check_hire(hires[number], INSTITUTION, ref))
    dispatch = InquiryDispatch(app)
    assert dispatch.interval == 0.1
    stop = threading.Event()
    thread = threading.Thread(target=dispatch.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: dispatch.runs >= 5, what="rounds while the system is down")
        assert completed(app, hires[CLEAR]) is None and completed(app, hires[RECORD]) is None
        simulator.set_down(False)
        wait_for(lambda: completed(app, hires[CLEAR]) and completed(app, hires[RECORD]),
                 timeout=20, what="both checks answered once the system is back")
    finally:
        stop.set()
        thread.join(timeout=10)
    assert completed(app, hires[CLEAR])["outcome"] == "cleared"
    assert completed(app, hires[RECORD])["outcome"] == "barred"
    [event] = [e for e in app.read_log(1, 10000) if e.event_type == "PractitionerCheckCompleted"
               and e.payload["check_id"] == hires[CLEAR]]
    assert event.actor == "credit-inquiry"
    after = metric_samples(render()[0].decode())

    def total(samples, family: str, **labels) -> float:
        return sum(s.value for s in samples.get(family, ()) if s.name.endswith("_total")
                   and all(s.labels.get(k) == v for k, v in labels.items()))

    family = "tuoyu_background_check_inquiries"
    assert total(after, family, outcome="unavailable") > total(before, family,
                                                               outcome="unavailable")
    assert total(after, family, outcome="answered") - total(before, family,
                                                            outcome="answered") == 2
    done = "tuoyu_background_checks_completed"
    for outcome in ("cleared", "barred"):
        assert total(after, done, outcome=outcome, answered_by="public_security") - total(
            before, done, outcome=outcome, answered_by="public_security") == 1
    pending = {s.labels["state"]: s.value for s in after["tuoyu_background_checks_pending"]
               if s.labels.get("service") == "credit"}
    assert pending == {"due": 0, "waiting": 0, "flagged": 0}
    assert "tuoyu_background_check_inquiry_duration_seconds" in after


def test_the_composition_root_builds_the_inquiry_from_the_environment(settings_factory,
                                                                       monkeypatch):
    monkeypatch.setenv(URL_VAR, "http://127.0.0.1:9/")
    monkeypatch.setenv(RETRY_VAR, "7")
    app = bootstrap.application(settings_factory("credit"))
    try:
        assert isinstance(app.inquiry, HttpPublicSecurityInquiry)
        assert app.inquiry.base_url == "http://127.0.0.1:9"
        assert app.schedule.initial_retry == 7
        ref = app.register_practitioner({"name": "王五", "id_number": CLEAR})["person_ref"]
        app.save(*app.check_hire("hire-1", INSTITUTION, ref))
        result = app.dispatch_inquiries()  # nothing listens there: an outage, never a clear
        assert result["unavailable"] and completed(app, "hire-1") is None
    finally:
        app.close()
    monkeypatch.setenv(URL_VAR, "ftp://nowhere")
    with pytest.raises(ConfigurationError):
        bootstrap.application(settings_factory("credit"))
    monkeypatch.setenv("TUOYU_ENVIRONMENT", "production")
    monkeypatch.delenv(URL_VAR)
    with pytest.raises(ConfigurationError):
        bootstrap.build(settings_factory("credit"))


def test_an_interval_of_rounds_never_completes_a_check_without_an_answer(app, simulator):
    """Many rounds against a system that accepts and never answers: pending all along."""
    simulator.set_deferred(True, polls=1000)
    ref = app.register_practitioner({"name": "王五", "id_number": CLEAR})["person_ref"]
    app.save(*app.check_hire("hire-2", INSTITUTION, ref))
    start = datetime.now(UTC)
    for n in range(1, 11):
        app.clock = lambda n=n: start + timedelta(hours=n)  # every poll due at its round
        app.dispatch_inquiries()
    assert completed(app, "hire-2") is None
    app.views_projector().catch_up()
    [row] = app.pending_checks()
    assert (row["phase"], row["attempts"]) == ("poll", 10)
