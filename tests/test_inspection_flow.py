"""Joint supervision as deployed: every service's processes over real RabbitMQ and PostgreSQL,
through the gateway. An institution registered and filed reaches inspection's directory; three
departments' officers draw it, inspect it and sign; the finding they publish lowers its
credit grade (credit's consumer of inspection.events); the result is made public; and an
operator answers the order with evidence."""

from __future__ import annotations

import base64
import hashlib
import uuid
from urllib.parse import quote

import pytest

from tuoyu_registration.samples import sample_filing_submission, sample_registration
from tuoyu_shared.devrun import ProcessGroup
from tuoyu_shared.devrun import http_json as _http_json
from tuoyu_shared.testing import bearer, group_environment, wait_for

HEALTH = bearer("health_officer", subject="health-7")
OFFICERS = {"health": ("health_officer", "health-7"),
            "market_regulation": ("market_officer", "market-7"),
            "fire_rescue": ("fire_officer", "fire-7")}


def as_(department: str) -> dict[str, str]:
    role, subject = OFFICERS[department]
    return bearer(role, subject=subject)


@pytest.fixture(scope="module")
def system(servers, tmp_path_factory):
    with group_environment(servers, "insp", vhost="tuoyu-inspection") as env:
        group = ProcessGroup(env, tmp_path_factory.mktemp("logs"), port_offset=800)
        group.start()
        yield group
        group.stop()


def call(system, method: str, path: str, body: dict | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict]:
    return _http_json(method, f"{system.url('gateway')}{path}", body, headers or HEALTH)


def filed_institution(system, n: int, district: str) -> str:
    status, reply = call(system, "POST", "/api/institutions",
                         sample_registration(n, district=district))
    assert status == 201, reply
    institution = reply["institution_id"]
    base = f"/api/institutions/{institution}"
    assert call(system, "POST", f"{base}/submit_filing", sample_filing_submission())[0] == 200
    assert call(system, "POST", f"{base}/issue_filing_receipt",
                {"receipt_number": f"BA-{n}"})[0] == 200
    return institution


def test_a_joint_visit_lowers_the_credit_grade_and_is_made_public(system):
    district = f"联合区{uuid.uuid4().hex[:6]}"
    institution = filed_institution(system, 801, district)

    def known() -> dict | None:
        _, reply = call(system, "GET", f"/api/inspection/institutions?district={quote(district)}")
        rows = [r for r in reply.get("institutions", []) if r["status"] == "filed"]
        return rows[0] if rows else None

    row = wait_for(known, what="the institution in inspection's directory", timeout=90)
    assert row["institution_id"] == institution and row["grade"] == "B"

    for department in OFFICERS:
        status, reply = call(system, "POST", "/api/inspection/inspectors",
                             {"department": department, "inspector": OFFICERS[department][1]},
                             as_(department))
        assert status == 200, reply
    status, plan = call(system, "POST", "/api/inspection/plans", {
        "title": "联合双随机抽查", "period": "2026", "district": district, "target_count": 1,
        "departments": list(OFFICERS), "inspectors_per_department": 1})
    assert status == 201, plan
    status, seed = call(system, "POST", f"/api/inspection/plans/{plan['plan_id']}/seed", {})
    assert status == 200 and len(seed["seed"]) == 32
    status, drawn = call(system, "POST", f"/api/inspection/plans/{plan['plan_id']}/draw", {})
    assert status == 200, drawn
    (target,) = drawn["targets"]
    assert target["institution_id"] == institution
    visit = f"/api/institutions/{institution}/visits/{target['visit_id']}"

    status, detail = call(system, "GET", visit)
    assert status == 200 and detail["status"] == "scheduled"
    for department in OFFICERS:
        codes = [i["code"] for i in detail["items"] if i["department"] == department]
        status, reply = call(system, "POST", f"{visit}/results", {"results": [
            {"item": code, "result": "met"} for code in codes]}, as_(department))
        assert status == 200, reply
    fire_item = next(i["code"] for i in detail["items"] if i["department"] == "fire_rescue")
    status, reply = call(system, "POST", f"{visit}/findings", {
        "item": fire_item, "severity": "critical", "description": "安全出口上锁"},
        as_("health"))
    assert status == 409 and "fire_rescue" in reply["detail"]  # a fire item is fire's
    status, finding = call(system, "POST", f"{visit}/findings", {
        "item": fire_item, "severity": "critical", "description": "安全出口上锁"},
        as_("fire_rescue"))
    assert status == 201 and finding["finding_id"] == "F1"
    for department in OFFICERS:
        status, signed = call(system, "POST", f"{visit}/sign-off", {}, as_(department))
        assert status == 200, signed
    assert signed["concluded"] and signed["outcome"] == "failed" and signed["orders"] == 1

    # credit scores the published finding: 100 - 20 = 80, grade B → C
    def graded() -> dict | None:
        status, credit = call(system, "GET", f"/api/institutions/{institution}/credit")
        return credit if status == 200 and credit.get("grade") == "C" else None

    credit = wait_for(graded, what="credit's grade from the finding", timeout=90)
    assert credit["score"] == 80
    # and inspection hears of the new grade (the next draw weighs it)
    wait_for(lambda: (known() or {}).get("grade") == "C", what="the grade in inspection",
             timeout=90)

    status, reply = call(system, "POST", f"{visit}/publication", {})
    assert status == 200 and reply["published"]

    def public() -> list:
        _, reply = _http_json("GET", f"{system.url('gateway')}/api/public/inspection-results"
                                     f"?district={quote(district)}")
        return reply.get("results") or None

    (result,) = wait_for(public, what="the public result", timeout=90)
    assert result["outcome"] == "failed" and "安全出口上锁" not in repr(result)
    assert "fire-7" not in repr(result)

    # the operator answers the order with evidence, stored by its checked hash
    operator = bearer("operator", district=district, subject="op-801",
                      institution_id=institution)

    def order() -> dict | None:
        _, reply = call(system, "GET", f"/api/inspection/rectifications?district={quote(district)}")
        rows = reply.get("rectifications", [])
        return rows[0] if rows else None

    open_order = wait_for(order, what="the open order", timeout=90)
    proof = b"%PDF-1.4 exits unlocked, photo attached"
    body = {"filename": "整改报告.pdf", "content_type": "application/pdf",
            "content_base64": base64.b64encode(proof).decode(),
            "sha256": hashlib.sha256(b"something else").hexdigest(),
            "order_id": open_order["order_id"]}
    status, reply = call(system, "POST", f"{visit}/evidence", body, operator)
    assert status == 400 and reply["errors"][0]["field"] == "sha256"
    status, reply = call(system, "POST", f"{visit}/evidence",
                         {**body, "sha256": hashlib.sha256(proof).hexdigest()}, operator)
    assert status == 201, reply
    status, reply = call(system, "POST",
                         f"{visit}/rectifications/{open_order['order_id']}/submission",
                         {"statement": "已拆除门锁", "evidence": [reply["sha256"]]}, operator)
    assert status == 200, reply
    other = filed_institution(system, 802, district)
    status, _ = call(system, "GET", f"/api/institutions/{other}/visits/{target['visit_id']}",
                     headers=operator)
    assert status == 403  # another institution's: not the operator's
