"""The nameko adapter's methods, called in this process (no nameko runner, no broker), behind
the gateway's routes (``tuoyu_gateway.testing``): the HTTP status of each outcome and the shape
of the RPC answers."""

from __future__ import annotations

import json
import uuid
import warnings
from typing import Any

import pytest
from tuoyu_gateway.testing import gateway_client
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from tuoyu_credit.application import CreditApplication
from tuoyu_registration.samples import sample_resident_id
from tuoyu_shared.testing import bearer

with warnings.catch_warnings():  # nameko imports eventlet, which warns of its deprecation
    warnings.simplefilter("ignore")
    from tuoyu_credit.service import CreditService

ID_NUMBER = sample_resident_id(601)
BAN = {"source": "court_ruling", "legal_basis": "《刑法》第三十七条之一",
       "evidence": ["(2025)沪0104刑初12号"], "officer": "officer-1", "term": 5}
PROPOSAL = {"legal_basis": "《社会信用体系建设条例》第二十条", "evidence": ["处罚决定书 1"],
            "officer": "officer-1", "proposed_term_days": 365}


@pytest.fixture
def app(settings_factory):
    application = CreditApplication(settings_factory("credit"))
    yield application
    application.close()


@pytest.fixture
def service(app):
    instance = CreditService.__new__(CreditService)  # the dependency nameko would inject
    instance.app = app
    instance.gateway = gateway_client(credit=instance)
    return instance


#: The HTTP routes (served by the gateway) of what were the service's own HTTP handlers.
ROUTES = {
    "http_register_practitioner": "/api/practitioners",
    "http_impose_ban": "/api/practitioners/{0}/bans",
    "http_check_practitioner": "/api/practitioner-checks",
    "http_request_check": "/api/practitioners/{0}/checks",
    "http_practitioner_reads": "/api/practitioners/{0}/reads",
    "http_credit_report": "/api/institutions/{0}/credit",
    "http_listing_step": "/api/institutions/{0}/listings/{1}/{2}",
    "http_scoring_cause": "/api/institutions/{0}/credit/causes",
    "http_credit_register": "/api/credit-register",
    "http_listings_due": "/api/officer/listings-due",
    "http_expire_listings": "/api/timers/expire-listings",
    "http_lift_expired_bans": "/api/timers/lift-expired-bans",
    "http_pending_checks": "/api/officer/pending-checks",
    "http_retry_check": "/api/practitioners/{0}/checks/retry",
}
OFFICER = bearer("credit_officer", subject="officer-1")


def call(service, route: str, method: str = "POST", body: Any = None,
         query: dict | None = None, *args: str) -> tuple[int, Any]:
    """Through the gateway, as a city-wide credit officer."""
    answer = service.gateway.request(method, ROUTES[route].format(*args), params=query,
                                     json=body, headers=OFFICER)
    return answer.status_code, answer.json()


def call_handler(handler, method: str = "GET") -> tuple[int, Any]:
    """One of the HTTP handlers the service still has itself (/health)."""
    request = Request(EnvironBuilder(method=method).get_environ())
    response = handler(request)
    return response.status_code, json.loads(response.get_data(as_text=True))


def test_practitioner_endpoints_and_their_statuses(service):
    status, body = call(service, "http_register_practitioner", "POST",
                        {"name": "李四", "id_number": ID_NUMBER})
    assert status == 201 and body["created"] is True
    ref = body["person_ref"]
    assert call(service, "http_register_practitioner", "POST",
                {"name": "李四", "id_number": ID_NUMBER})[0] == 200
    status, body = call(service, "http_register_practitioner", "POST", {"name": "李四"})
    assert status == 400 and body["errors"][0]["field"] == "id_number"
    status, body = call(service, "http_impose_ban", "POST", BAN, None, ref)
    assert status == 201 and body["ban_ref"].startswith("ban-")
    status, body = call(service, "http_impose_ban", "POST", {**BAN, "ban_ref": body["ban_ref"]},
                        None, ref)
    assert (status, body["state"]) == (409, "imposed")
    status, body = call(service, "http_impose_ban", "POST", BAN, None, "0" * 32)
    assert (status, body["error"]) == (404, "PractitionerNotFound")
    status, body = call(service, "http_check_practitioner", "POST",
                        {"id_number": ID_NUMBER, "purpose": "hire screening"})
    assert status == 200 and set(body) == {"barred", "ban_reference"} and body["barred"]
    status, body = call(service, "http_check_practitioner", "POST", {"id_number": ID_NUMBER})
    assert status == 400 and body["errors"][0]["field"] == "purpose"
    status, body = call(service, "http_request_check", "POST", {}, None, ref)
    assert status == 200 and body["outcome"] == "barred"
    status, body = call(service, "http_practitioner_reads", "POST", {"purpose": "audit"}, None,
                        ref)
    assert status == 200 and [r["query"] for r in body["reads"]] == [
        "check_by_id_number", "read_audit"]
    status, body = call(service, "http_register_practitioner", "POST", None)
    assert status == 400  # an empty body is an empty object: refused
    answer = service.gateway.post("/api/practitioner-checks", content=b"[1, 2]",
                                  headers=OFFICER)
    assert answer.status_code == 400 and answer.json()["errors"][0]["field"] == "body"


def test_institution_endpoints_and_their_statuses(service, app):
    institution_id = str(uuid.uuid4())
    app.save(*app.open_credit(institution_id))
    status, body = call(service, "http_credit_report", "GET", None, None, institution_id)
    assert status == 200 and (body["score"], body["grade"], body["lists"]) == (100, "B", [])
    assert call(service, "http_credit_report", "GET", None, None, str(uuid.uuid4()))[0] == 404
    assert call(service, "http_credit_report", "GET", None, None, "nope")[0] == 400
    status, body = call(service, "http_listing_step", "POST", PROPOSAL, None, institution_id,
                        "serious_dishonesty", "propose")
    assert status == 201 and body["result"] == {"listing_id": "serious_dishonesty-1"}
    status, body = call(service, "http_listing_step", "POST", {"officer": "o"}, None,
                        institution_id, "serious_dishonesty", "decide-now")
    assert status == 404 and body["code"] == "no_such_route"
    status, body = call(service, "http_listing_step", "POST", {"statement": "s"}, None,
                        institution_id, "serious_dishonesty", "respond")
    assert (status, body["state"]) == (409, "proposed")
    status, body = call(service, "http_listing_step", "POST", PROPOSAL, None, institution_id,
                        "blacklist", "propose")
    assert status == 400 and body["errors"][0]["field"] == "list_name"
    status, body = call(service, "http_scoring_cause", "POST", {
        "cause_type": "inspection_refused", "cause_ref": "r-1"}, None, institution_id)
    assert status == 200 and body == {"applied": True, "score": 80, "grade": "C"}
    assert call(service, "http_credit_register", "GET", None, {"grade": "E"})[0] == 400
    app.views_projector().catch_up()  # the worker's part, done here
    status, body = call(service, "http_credit_register", "GET", None, {"grade": "C"})
    assert status == 200 and [r["institution_id"] for r in body["institutions"]] == [
        institution_id]
    assert call(service, "http_listings_due", "GET")[0] == 200
    assert call(service, "http_expire_listings", "POST")[1]["expired"] == []
    assert call(service, "http_lift_expired_bans", "POST")[1]["lifted"] == []
    assert call_handler(service.health, "GET")[1]["status"] == "ok"


def test_rpc_methods_answer_plain_json(service, app):
    institution_id = str(uuid.uuid4())
    app.save(*app.open_credit(institution_id))
    report = service.institution_credit_report(institution_id)
    json.dumps(report)  # dates and ids as strings
    assert service.log_head() == 1
    [envelope] = service.notifications(1, 10)
    assert envelope["event_type"] == "InstitutionCreditOpened"
    assert service.propose_listing(institution_id, "trust_reward", PROPOSAL) == {
        "listing_id": "trust_reward-1"}
    app.views_projector().catch_up()
    assert [r["grade"] for r in service.credit_register()] == ["B"]


def test_credit_errors_reach_http_with_their_status_code_and_body(service, app):
    """Each error answers with the shared vocabulary's status and body (tuoyu_shared.errors),
    whatever its class is called; the gateway adds the problem's fields (RFC 9457)."""

    def problem(answer: tuple[int, Any]) -> tuple[int, Any]:
        status, body = answer
        assert body.pop("type") == f"urn:tuoyu:problem:{body['code']}"
        assert body.pop("status") == status and body.pop("title")
        assert body.pop("detail") == body["reason"]
        return status, body

    status, body = problem(call(service, "http_impose_ban", "POST", BAN, None, "0" * 32))
    assert (status, body) == (404, {"error": "PractitionerNotFound", "code": "not_found",
                                    "reason": f"no practitioner {'0' * 32}"})
    missing = str(uuid.uuid4())
    status, body = problem(call(service, "http_credit_report", "GET", None, None, missing))
    assert (status, body) == (404, {"error": "InstitutionNotFound", "code": "not_found",
                                    "reason": f"no credit record of institution {missing}"})
    institution_id = str(uuid.uuid4())
    app.save(*app.open_credit(institution_id))
    status, body = call(service, "http_listing_step", "POST", {"statement": "s"}, None,
                        institution_id, "serious_dishonesty", "respond")
    assert status == 409
    assert (body["error"], body["code"], body["state"]) == (
        "DomainRuleViolated", "rule_violated", "none")
    ref = app.register_practitioner({"name": "李四", "id_number": ID_NUMBER})["person_ref"]
    app.vault.erase(ref)
    with pytest.raises(PermissionError):  # nothing more is sealed for an erased ref
        app.vault.seal(ref, "x")
    from tuoyu_shared.personal_data import PersonalDataErased

    error = PersonalDataErased(f"personal data of {ref} was erased")
    assert (error.http_status, error.code) == (410, "erased")
    # The person comes back a new person, with a new ref.
    status, body = call(service, "http_register_practitioner", "POST",
                        {"name": "李四", "id_number": ID_NUMBER})
    assert status == 201 and body["person_ref"] != ref
    assert ID_NUMBER not in json.dumps(body)


def test_people_and_check_rpcs_delegate_to_the_application(service, app):
    ref = service.register_practitioner({"name": "李四", "id_number": ID_NUMBER})["person_ref"]
    exported = service.export_person({"id_number": ID_NUMBER, "purpose": "本人查阅"})
    assert exported["refs"] == {"practitioner": ref}
    json.dumps(exported)  # plain JSON
    check = service.request_check(ref, {})
    assert check["state"] == "pending"
    app.views_projector().catch_up()  # the worker's part, done here
    [pending] = service.pending_checks()
    assert (pending["person_ref"], pending["check_id"]) == (ref, check["check_id"])
    status, body = call(service, "http_pending_checks", "GET")
    assert status == 200 and [c["check_id"] for c in body["checks"]] == [check["check_id"]]
    status, body = call(service, "http_retry_check", "POST",
                        {"check_id": check["check_id"], "officer": "o", "reason": "r"}, None,
                        ref)
    assert (status, body["state"]) == (409, "requested")  # not flagged: sent already
    assert service.erase_person({"id_number": ID_NUMBER, "reason": "本人申请",
                                 "legal_basis": "个人信息保护法 第47条"})["erased"] == [
        {"kind": "practitioner", "person_ref": ref}]
