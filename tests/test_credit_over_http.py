"""The credit service over HTTP, through the gateway and its nameko process (as a credit
officer uses it):
a registered institution's credit record, a practitioner registered, checked, barred and
checked again, the dishonesty-listing procedure step by step, the register and what is due,
and the refusals (400 naming the field, 404, 409 naming the state)."""

from __future__ import annotations

import urllib.request

import pytest

from tuoyu_registration.samples import sample_registration, sample_resident_id
from tuoyu_shared.devrun import ProcessGroup, http_json
from tuoyu_shared.testing import bearer, group_environment, metric_samples, wait_for

PORT_OFFSET = 500  # 8501-8503 (end-to-end 100, hostile 200, supervision 300, observability 400)
OFFICER = bearer("credit_officer", subject="credit-officer-1")
HEALTH = bearer("health_officer", subject="health-officer-1")
BASIS = "《社会信用体系建设条例》第二十条"
#: Someone the group's simulated public-security records have a record for.
RECORD = sample_resident_id(509)


@pytest.fixture(scope="module")
def group(servers, tmp_path_factory):
    with group_environment(servers, "credithttp", vhost="tuoyu-credit-http") as env:
        g = ProcessGroup(env, tmp_path_factory.mktemp("credit-http-logs"),
                         port_offset=PORT_OFFSET,
                         public_security_records={RECORD: ["sexual_offence"]})
        try:
            g.start()
            yield g
        finally:
            g.stop()


def credit(group, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    return http_json(method, f"{group.url('gateway')}{path}", body, OFFICER)


def test_an_officer_checks_bars_and_lists_over_http(group):
    status, reply = http_json("POST", f"{group.url('gateway')}/api/institutions",
                              sample_registration(501), HEALTH)
    assert status == 201, reply
    institution = reply["institution_id"]
    wait_for(lambda: credit(group, "GET", f"/api/institutions/{institution}/credit")[0] == 200,
             what="the credit record opened from registration's event")
    status, report = credit(group, "GET", f"/api/institutions/{institution}/credit")
    assert report["grade"] in ("A", "B", "C", "D") and isinstance(report["score"], int)
    assert report["lists"] == [] and report["history"]

    # A practitioner: registered, checked clear, barred, checked again.
    person = {"name": "张三丰", "id_number": sample_resident_id(501)}
    status, reply = credit(group, "POST", "/api/practitioners", person)
    assert status == 201, reply
    ref = reply["person_ref"]
    check = {"id_number": person["id_number"], "purpose": "入职审查"}
    assert credit(group, "POST", "/api/practitioner-checks", check) == (
        200, {"barred": False, "ban_reference": None})
    status, reply = credit(group, "POST", f"/api/practitioners/{ref}/bans", {
        "source": "court_ruling", "legal_basis": "《中华人民共和国刑法》第三十七条之一",
        "evidence": ["(2025)沪0104刑初12号"], "officer": "officer-1", "term": "lifetime"})
    assert status == 201, reply
    status, answer = credit(group, "POST", "/api/practitioner-checks", check)
    assert status == 200 and answer == {"barred": True, "ban_reference": reply["ban_ref"]}

    # The serious-dishonesty listing, step by step.
    base = f"/api/institutions/{institution}/listings/serious_dishonesty"
    status, reply = credit(group, "POST", f"{base}/propose", {
        "legal_basis": BASIS, "evidence": ["处罚决定书 2025-001"], "officer": "officer-1",
        "proposed_term_days": 365})
    assert status == 201 and reply["result"] == {"listing_id": "serious_dishonesty-1"}, reply
    status, reply = credit(group, "POST", f"{base}/decide", {
        "decision": "listed", "officer": "officer-2", "reason": "r", "legal_basis": BASIS,
        "evidence": ["处罚决定书 2025-001"]})
    assert status == 409 and reply["code"] == "rule_violated", reply  # no notice sent yet
    assert reply.get("state")
    assert credit(group, "POST", f"{base}/notice", {"officer": "officer-1"})[0] == 200
    assert credit(group, "POST", f"{base}/respond", {"statement": "已整改"})[0] == 200
    status, reply = credit(group, "POST", f"{base}/decide", {
        "decision": "listed", "officer": "officer-2", "reason": "骗取补贴属实",
        "legal_basis": BASIS, "evidence": ["处罚决定书 2025-001"]})
    assert status == 200, reply
    status, report = credit(group, "GET", f"/api/institutions/{institution}/credit")
    assert "serious_dishonesty" in report["lists"]
    assert report["history"][-1]["actor"] == "credit-officer-1"

    def listed() -> bool:
        _, register = credit(group, "GET", "/api/credit-register?list=serious_dishonesty")
        return any(row["institution_id"] == institution
                   for row in register.get("institutions", register.get("register", [])))

    wait_for(listed, what="the register shows the listing")
    assert credit(group, "GET", "/api/officer/listings-due")[0] == 200


def test_refusals_name_the_field_or_the_state_and_change_nothing(group):
    status, reply = credit(group, "POST", "/api/practitioners",
                           {"name": "李四", "id_number": "110101199003071230"})
    assert status == 400 and reply["errors"][0]["field"] == "id_number", reply
    status, reply = credit(group, "GET",
                           "/api/institutions/7d0c8a4e-1b2f-4c3d-9e8f-0a1b2c3d4e5f/credit")
    assert status == 404 and reply["code"] == "not_found", reply
    status, reply = credit(group, "POST", "/api/practitioner-checks", {"purpose": "入职审查"})
    assert status == 400, reply
    status, reply = credit(group, "POST", "/api/institutions/x/listings/no_such_list/propose",
                           {})
    assert status in (400, 404), reply


def check_completed(group, check_id: str) -> dict | None:
    """The check's completion as subscribers read it (credit's published log)."""
    _, log = http_json("GET", f"{group.url('gateway')}/api/events/credit?limit=1000", None,
                       bearer("subscriber"))
    found = [e["payload"] for e in log.get("events", [])
             if e["event_type"] == "PractitionerCheckCompleted"
             and e["payload"]["check_id"] == check_id]
    return found[-1] if found else None


def test_yearly_checks_wait_for_the_public_security_inquiry_down_or_up(group):
    """The worker sends the pending checks to the group's simulator: while it is down they
    stay pending round after round (never cleared), and complete once it is back; a record
    found bars."""
    refs = {}
    for number in (sample_resident_id(508), RECORD):
        status, reply = credit(group, "POST", "/api/practitioners",
                               {"name": "王五", "id_number": number})
        assert status in (200, 201), reply
        refs[number] = reply["person_ref"]
    simulator = group.public_security
    simulator.set_down(True)
    try:
        status, clear = credit(group, "POST",
                               f"/api/practitioners/{refs[sample_resident_id(508)]}/checks", {})
        assert status == 200 and (clear["state"], clear["outcome"]) == ("pending", None), clear

        def retried() -> dict | None:
            _, pending = credit(group, "GET", "/api/officer/pending-checks")
            rows = [c for c in pending.get("checks", []) if c["check_id"] == clear["check_id"]]
            return rows[0] if rows and rows[0]["attempts"] >= 3 else None

        row = wait_for(retried, timeout=60, what="several rounds against the system down")
        assert row["state"] == "awaiting_inquiry" and "503" in row["last_error"]
        assert check_completed(group, clear["check_id"]) is None  # never cleared while down
    finally:
        simulator.set_down(False)
    done = wait_for(lambda: check_completed(group, clear["check_id"]), timeout=60,
                    what="the check answered once the system is back")
    assert (done["outcome"], done["answered_by"]) == ("cleared", "public_security")
    assert done["reference"].startswith("GA-")
    status, barred = credit(group, "POST", f"/api/practitioners/{refs[RECORD]}/checks", {})
    assert status == 200 and barred["state"] == "pending"
    done = wait_for(lambda: check_completed(group, barred["check_id"]), timeout=60,
                    what="the record found")
    assert (done["outcome"], done["answered_by"]) == ("barred", "public_security")
    # The worker counted it all on its /metrics.
    with urllib.request.urlopen(f"{group.worker_url('credit')}/metrics", timeout=10) as resp:
        metrics = metric_samples(resp.read().decode())
    outcomes = {s.labels["outcome"] for s in metrics["tuoyu_background_check_inquiries"]
                if s.name.endswith("_total")}
    assert {"unavailable", "answered"} <= outcomes
