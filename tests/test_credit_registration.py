"""The round trip between registration and credit over real RabbitMQ and PostgreSQL: each
service's relay publishes to its own exchange, each reacts to the other through a tracked
consumer. A hire is checked and confirmed, a barred practitioner's hire refused, a later ban
opens a staff-removal case at the employer, and a serious-dishonesty listing shows in the
public disclosure (and leaves it after credit repair)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tuoyu_credit.application import CreditApplication, InstitutionNotFound
from tuoyu_credit.inquiries import InquirySchedule
from tuoyu_credit.reactions import registration_consumer
from tuoyu_credit.worker import InquiryDispatch
from tuoyu_registration.application import RegistrationApplication
from tuoyu_registration.practitioners import InProcessRegister
from tuoyu_registration.reactions import credit_consumer
from tuoyu_registration.samples import (
    sample_filing_submission,
    sample_registration,
    sample_resident_id,
)
from tuoyu_shared.consumer import ApplicationLog
from tuoyu_shared.public_security import HttpPublicSecurityInquiry
from tuoyu_shared.relay import Relay
from tuoyu_shared.simulators.public_security import start_simulator
from tuoyu_shared.testing import Running, wait_for

SD = "serious_dishonesty"
BASIS = "《社会信用体系建设条例》第二十条"


@dataclass
class System:
    registration: RegistrationApplication
    credit: CreditApplication


@pytest.fixture
def system(settings_factory, servers, unique):
    # The public-security records inquiry (simulated) answers credit's background checks,
    # which credit's worker part sends (InquiryDispatch, here a thread).
    simulator = start_simulator()
    credit = CreditApplication(settings_factory("credit"),
                               inquiry=HttpPublicSecurityInquiry(simulator.url, timeout=2),
                               schedule=InquirySchedule(interval=0.1, initial_retry=0.2,
                                                        max_retry=1, poll=0.1))
    # each service its own blind-index key: registration asks credit's register for the ref
    registration = RegistrationApplication(settings_factory("registration"),
                                           practitioners=InProcessRegister(credit))
    assert registration.settings.blind_index_key != credit.settings.blind_index_key
    registration_exchange = f"registration-{unique}.events"
    credit_exchange = f"credit-{unique}.events"
    relays = [Relay(registration, servers.amqp_uri, exchange=registration_exchange),
              Relay(credit, servers.amqp_uri, exchange=credit_exchange)]
    consumers = [
        registration_consumer(credit, servers.amqp_uri, exchange=registration_exchange,
                              log_reader=ApplicationLog(registration)),
        credit_consumer(registration, servers.amqp_uri, exchange=credit_exchange,
                        log_reader=ApplicationLog(credit)),
    ]
    running = Running()
    for part in (*consumers, *relays, InquiryDispatch(credit)):
        running.start(part.run)
    try:
        yield System(registration, credit)
    finally:
        running.close()
        for relay in relays:
            relay.close()
        registration.close()
        credit.close()
        simulator.stop()


def filed_institution(system: System, n: int = 1) -> str:
    """A filed institution, once the credit service has opened its credit record."""
    registration = system.registration
    institution_id = str(registration.register_institution(sample_registration(n)))
    registration.submit_filing(institution_id, sample_filing_submission())
    registration.issue_filing_receipt(institution_id, {"receipt_number": f"BA-{n}"})

    def credit_opened() -> bool:
        try:
            system.credit.institution_credit_report(institution_id)
            return True
        except InstitutionNotFound:
            return False

    wait_for(credit_opened, what="the credit record opened from InstitutionRegistered")
    return institution_id


def hire(system: System, institution_id: str, id_number: str) -> str:
    return system.registration.request_hire(institution_id, {
        "practitioner": {"name": "李四", "id_number": id_number}, "role": "carer",
        "certificates": ["育婴师 0001"]})


def roster_status(system: System, institution_id: str, hire_id: str) -> str:
    return system.registration.institution(institution_id)["roster"][hire_id]["status"]


def impose_ban(system: System, id_number: str) -> str:
    credit = system.credit
    person_ref = credit.register_practitioner({"name": "李四", "id_number": id_number})[
        "person_ref"]
    return credit.impose_ban(person_ref, {
        "source": "court_ruling", "legal_basis": "《中华人民共和国刑法》第三十七条之一",
        "evidence": ["(2025)沪0104刑初12号"], "officer": "officer-1", "term": "lifetime"})


def test_a_hire_is_checked_and_confirmed(system):
    institution_id = filed_institution(system)
    hire_id = hire(system, institution_id, sample_resident_id(501))
    wait_for(lambda: roster_status(system, institution_id, hire_id) == "employed",
             what="the hire confirmed by the credit service's check")
    record = system.registration.institution_record(institution_id)
    [hired] = [h for h in record["history"]
               if h["event_type"] == "InstitutionPractitionerHired"]
    # a cleared check answers the public-security inquiry's reference (查询编号)
    assert hired["data"]["check_reference"].startswith("GA-")
    # The credit service knows the person by ref and masks only (no sealed value was sent).
    check = system.credit.check_practitioner({"id_number": sample_resident_id(501),
                                              "purpose": "test"})
    assert check == {"barred": False, "ban_reference": None}


def test_a_barred_practitioners_hire_is_refused(system):
    institution_id = filed_institution(system)
    ban_ref = impose_ban(system, sample_resident_id(502))
    hire_id = hire(system, institution_id, sample_resident_id(502))
    wait_for(lambda: roster_status(system, institution_id, hire_id) == "refused",
             what="the hire refused")
    roster = system.registration.institution(institution_id)["roster"]
    assert roster[hire_id]["ban_reference"] == ban_ref


def test_a_later_ban_opens_a_staff_removal_case_at_the_employer(system):
    institution_id = filed_institution(system)
    other = filed_institution(system, 2)  # employs someone else: no case there
    hire_id = hire(system, institution_id, sample_resident_id(503))
    hire(system, other, sample_resident_id(504))
    wait_for(lambda: roster_status(system, institution_id, hire_id) == "employed",
             what="the hire confirmed")
    ban_ref = impose_ban(system, sample_resident_id(503))

    def cases() -> list[dict]:
        system.registration.views_projector().catch_up()
        return system.registration.open_staff_cases()

    wait_for(lambda: len(cases()) == 1, what="a staff-removal case opened")
    [case] = cases()
    assert (case["institution_id"], case["ban_reference"]) == (institution_id, ban_ref)
    assert case["practitioner"] == "李*" and case["overdue"] is False


def test_a_dishonesty_listing_shows_in_the_public_disclosure(system):
    institution_id = filed_institution(system)
    credit = system.credit
    credit.propose_listing(institution_id, SD, {
        "legal_basis": BASIS, "evidence": ["处罚决定书 2025-001"], "officer": "officer-1",
        "proposed_term_days": 365})
    credit.send_listing_notice(institution_id, SD, {"officer": "officer-1"})
    credit.receive_listing_response(institution_id, SD, {"statement": "无异议"})
    credit.decide_listing(institution_id, SD, {
        "decision": "listed", "officer": "officer-2", "reason": "骗取补贴属实",
        "legal_basis": BASIS, "evidence": ["处罚决定书 2025-001"]})

    def disclosed_lists() -> list[str] | None:
        system.registration.views_projector().catch_up()
        rows = [r for r in system.registration.public_disclosure()
                if r["institution_id"] == institution_id]
        return rows[0]["credit_lists"] if rows else None

    wait_for(lambda: disclosed_lists() == [SD], what="the listing in the public disclosure")
    credit.apply_for_repair(institution_id, SD, {"application": "已退回全部补贴",
                                                 "evidence": ["退款凭证 88"]})
    credit.review_repair(institution_id, SD, {
        "approved": True, "officer": "officer-3", "reason": "整改完毕",
        "legal_basis": "《失信行为纠正后的信用信息修复管理办法》", "evidence": ["审核意见 12"]})
    wait_for(lambda: disclosed_lists() == [], what="the entry removed after credit repair")
