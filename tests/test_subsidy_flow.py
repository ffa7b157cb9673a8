"""Subsidies from what the other services publish, to credit: registration's real events (an
institution registered, filed and designated affordable) and credit's (its record opened)
reach the subsidy service's standing through its consumers; an opening grant is applied for,
approved against the budget, noticed, paid in a batch and clawed back for fraud; the clawback
travels over RabbitMQ (the subsidy relay, credit's consumer) and lowers the credit score."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tuoyu_credit.application import CreditApplication
from tuoyu_credit.reactions import registration_consumer as credit_registration_consumer
from tuoyu_credit.reactions import subsidy_consumer
from tuoyu_registration.samples import sample_filing_submission, sample_registration
from tuoyu_shared.consumer import ApplicationLog
from tuoyu_shared.context import command_context
from tuoyu_shared.relay import Relay
from tuoyu_shared.testing import FixedClock, wait_for
from tuoyu_subsidy import bootstrap
from tuoyu_subsidy.reactions import credit_consumer, registration_consumer


@pytest.fixture
def subsidy(settings_factory):
    app = bootstrap.application(settings_factory("subsidy"),
                                clock=FixedClock(datetime(2026, 7, 6, 2, 0, tzinfo=UTC)))
    yield app
    app.close()


@pytest.fixture
def credit(settings_factory):
    app = CreditApplication(settings_factory("credit"))
    yield app
    app.close()


def test_a_fraud_clawback_reaches_credit_over_rabbitmq(registration, subsidy, credit,
                                                      servers, unique, running):
    institution = str(registration.register_institution(sample_registration(41)))
    registration.submit_filing(institution, sample_filing_submission())
    registration.issue_filing_receipt(institution, {"receipt_number": "BA-41"})
    registration.designate_affordable(institution, {"guide_price_fen": 180000,
                                                    "document": "徐卫健〔2026〕3号"})
    credit_registration_consumer(credit, log_reader=ApplicationLog(registration)).catch_up()
    for consumer in (registration_consumer(subsidy, log_reader=ApplicationLog(registration)),
                     credit_consumer(subsidy, log_reader=ApplicationLog(credit))):
        consumer.catch_up()
    standing = subsidy.standing(institution)
    assert (standing["status"], standing["affordable"], standing["grade"]) == (
        "filed", True, "B")

    with command_context(actor="finance-1", department="finance"):
        subsidy.open_budget({"year": 2026, "fund": "district", "allocated_fen": 10_000_000,
                             "document": "2026年区级预算"})
    with command_context(actor="operator-41", department="institution"):
        drafted = subsidy.draft_application(institution, {"program": "opening-grant",
                                                          "year": 2026})
        aid = drafted["application_id"]
        assert subsidy.submit_application(institution, aid)["amount_fen"] == 3_000_000
    with command_context(actor="health-1", department="health"):
        subsidy.review_application(institution, aid, {"approved": True})
    subsidy.clock.now += timedelta(days=8)
    with command_context(actor="timer", department="system"):
        assert subsidy.close_notices()["closed"] == [aid]
    with command_context(actor="finance-1", department="finance"):
        batch = subsidy.create_batch({"cycle": "2026-07"})
        subsidy.import_results(batch["batch_id"], {"lines": [
            {"application_id": aid, "status": "paid", "reference": "BANK-41"}]})
        subsidy.claw_back(institution, aid, {"amount_fen": 3_000_000, "reason": "fraud",
                                             "details": "虚报在托人数骗取补助"})

    exchange = f"subsidy-{unique}.events"
    consumer = subsidy_consumer(credit, amqp_uri=servers.amqp_uri, exchange=exchange,
                                log_reader=ApplicationLog(subsidy))
    relay = Relay(subsidy, servers.amqp_uri, exchange=exchange)
    running.start(consumer.run)
    running.start(relay.run)

    def scored() -> dict | None:
        report = credit.institution_credit_report(institution)
        return report if report["score"] < 100 else None

    report = wait_for(scored, what="credit scoring the clawback", timeout=90)
    assert report["score"] == 70 and report["grade"] == "C"
    (cause,) = [h for h in report["history"] if h.get("cause_type") == "subsidy_clawback_fraud"
                or "subsidy" in str(h)]
    assert cause
    relay.close()
