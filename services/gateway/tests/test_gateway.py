"""The gateway on its own (the services replaced by a recording stand-in): who may do what,
in which district, with which token; limits; the problem shape; the OpenAPI document.

The matrix below is written out by hand from the roles' definitions (issue 10), not derived
from the route declarations, so a route declared with the wrong roles fails here."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tuoyu_gateway.app import GatewaySettings, create_app, openapi_document

from tuoyu_registration.samples import sample_registration, sample_resident_id
from tuoyu_shared.auth import KeyRing, generate_key_pem
from tuoyu_shared.rpc import RemoteError

XUHUI, HUANGPU, CITY = "徐汇区", "黄浦区", "*"
INSTITUTION = "4b7ac507-aa8f-5632-9c07-d19370207bec"  # in 徐汇区 (the stand-in says so)
OTHER_INSTITUTION = "9d0f6c1e-2a3b-4c5d-8e9f-0a1b2c3d4e5f"


class StandIn:
    """Records every call; answers as the services would, in shape."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, list, dict, dict]] = []

    def call(self, service: str, method: str, args: list, kwargs: dict,
             rpc_context: dict[str, str]) -> Any:
        self.calls.append((service, method, args, kwargs, rpc_context))
        if method == "institution_scope":
            if args[0] not in (INSTITUTION, OTHER_INSTITUTION):
                raise RemoteError("InstitutionNotFound", "no institution", [{"tuoyu_error": {
                    "code": "not_found", "http_status": 404,
                    "body": {"error": "InstitutionNotFound", "code": "not_found",
                             "reason": "no institution"}}}])
            return {"institution_id": args[0],
                    "district": XUHUI if args[0] == INSTITUTION else HUANGPU}
        if method == "register_practitioner":
            return {"person_ref": "p", "created": True}
        if method in ("public_disclosure", "filings_awaiting", "open_staff_cases",
                      "institutions", "notifications", "credit_register", "listings_due"):
            return [{"district": XUHUI, "institution_id": INSTITUTION},
                    {"district": HUANGPU, "institution_id": OTHER_INSTITUTION}]
        return {"ok": True}

    def writes(self) -> list[str]:
        return [m for _, m, *_ in self.calls if m not in ("institution_scope",)]


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    private, public = generate_key_pem()
    private2, public2 = generate_key_pem()
    return {"k1": (private, public), "k2": (private2, public2)}


def ring(keys: dict[str, Any], kid: str = "k1") -> KeyRing:
    return KeyRing.from_env({"TUOYU_AUTH_SIGNING_KEY": keys[kid][0],
                             "TUOYU_AUTH_SIGNING_KID": kid,
                             "TUOYU_AUTH_PUBLIC_KEYS": json.dumps(
                                 {k: v[1] for k, v in keys.items()})})


@pytest.fixture
def gateway(keys, tmp_path):
    stand_in = StandIn()
    verifying = KeyRing.from_env({"TUOYU_AUTH_PUBLIC_KEYS": json.dumps(
        {k: v[1] for k, v in keys.items()})})
    settings = GatewaySettings(keys=verifying, revoked_file=tmp_path / "revoked",
                               rate=1000, burst=1000, max_body_bytes=64 * 1024)
    client = TestClient(create_app(settings, rpc=stand_in))
    client.stand_in = stand_in  # type: ignore[attr-defined]
    client.revoked = tmp_path / "revoked"  # type: ignore[attr-defined]
    return client


def auth(keys, role: str, district: str = CITY, institution: str | None = None,
         subject: str | None = None, **kw: Any) -> dict[str, str]:
    token = ring(keys).issue(subject or f"{role}-1", role, district,
                             institution_id=institution, **kw)
    return {"Authorization": f"Bearer {token}"}


def filing() -> dict[str, Any]:
    from tuoyu_registration.samples import sample_filing_submission

    return sample_filing_submission()


# (method, path, body) of the sensitive endpoints, and who may: (role, district, operator's
# institution) → allowed. Anything not listed for an endpoint is refused (401 without a token,
# 403 with one).
REGISTER = ("POST", "/api/institutions", sample_registration(1, district=XUHUI))
DEREGISTER = ("POST", f"/api/institutions/{INSTITUTION}/deregister",
              {"reason": "停办", "placement_of_children": "转入天平路托育园"})
SUBMIT = ("POST", f"/api/institutions/{INSTITUTION}/submit_filing", None)
READ = ("GET", f"/api/institutions/{INSTITUTION}", None)
CHECK = ("POST", "/api/practitioner-checks",
         {"id_number": sample_resident_id(7), "purpose": "入职审查"})
TIMER = ("POST", "/api/timers/lift-expired-bans", None)
EVENTS = ("GET", "/api/events/registration", None)
DASHBOARD = ("GET", "/api/dashboard/institutions", None)
ERASURE = ("POST", "/api/people/erasures",
           {"id_number": sample_resident_id(8), "reason": "本人书面申请，身份已核验",
            "legal_basis": "个人信息保护法 第四十七条"})
AUDIT = ("GET", "/api/audit/registration/calls", None)
EXPORT = ("POST", "/api/people/exports",
          {"id_number": sample_resident_id(8), "purpose": "本人查阅申请"})
VISIT = f"/api/institutions/{INSTITUTION}/visits/5e0c8f0a-7d1b-4c2a-9e3f-6a7b8c9d0e1f"
PLAN = ("POST", "/api/inspection/plans",
        {"title": "2026年一季度联合抽查", "period": "2026-Q1", "departments": ["health"],
         "district": XUHUI, "target_count": 3})
FINDING = ("POST", f"{VISIT}/findings",
           {"item": "safety.fire_drills", "severity": "major", "description": "未开展演练"})
EVIDENCE = ("POST", f"{VISIT}/evidence",
            {"filename": "a.jpg", "content_type": "image/jpeg", "content_base64": "AAAA",
             "sha256": "a" * 64, "order_id": "5e0c8f0a-7d1b-4c2a-9e3f-6a7b8c9d0e1f"})
RECTIFICATIONS = ("GET", "/api/inspection/rectifications", None)
INSPECTING = ("health_officer", "market_officer", "fire_officer")
APPLICATION = f"/api/institutions/{INSTITUTION}/subsidy-applications"
SUBSIDY_DRAFT = ("POST", APPLICATION, {"program": "opening-grant", "year": 2026})
SUBSIDY_REVIEW = ("POST", f"{APPLICATION}/5e0c8f0a-7d1b-4c2a-9e3f-6a7b8c9d0e1f/review",
                  {"approved": True})
SUBSIDY_BATCH = ("POST", "/api/subsidy/batches", {"cycle": "2026-07"})

MATRIX: list[tuple[tuple, set[tuple[str, str, str | None]]]] = [
    (REGISTER, {("health_officer", XUHUI, None), ("health_officer", CITY, None),
                ("market_officer", XUHUI, None), ("market_officer", CITY, None)}),
    (DEREGISTER, {("health_officer", XUHUI, None), ("health_officer", CITY, None)}),
    (SUBMIT, {("health_officer", XUHUI, None), ("health_officer", CITY, None),
              ("operator", XUHUI, INSTITUTION)}),
    (READ, {("health_officer", XUHUI, None), ("health_officer", CITY, None),
            ("fire_officer", XUHUI, None), ("fire_officer", CITY, None),
            ("market_officer", XUHUI, None), ("market_officer", CITY, None),
            ("credit_officer", XUHUI, None), ("credit_officer", CITY, None),
            ("auditor", XUHUI, None), ("auditor", CITY, None),
            ("operator", XUHUI, INSTITUTION)}),
    # a practitioner is not a district's: any credit or health officer may ask
    (CHECK, {(role, district, None) for role in ("credit_officer", "health_officer")
             for district in (XUHUI, HUANGPU, CITY)}),
    (TIMER, {("credit_officer", CITY, None)}),
    (EVENTS, {("subscriber", CITY, None), ("auditor", CITY, None)}),
    # a person's rights span every district and service: city-wide health or credit officers
    (ERASURE, {("health_officer", CITY, None), ("credit_officer", CITY, None)}),
    (EXPORT, {("health_officer", CITY, None), ("credit_officer", CITY, None)}),
    (AUDIT, {("auditor", CITY, None)}),
    # inspection: a plan of a district by its own (or city-wide) inspecting officers
    (PLAN, {(role, district, None) for role in INSPECTING for district in (XUHUI, CITY)}),
    (FINDING, {(role, district, None) for role in INSPECTING for district in (XUHUI, CITY)}),
    # an institution answers its own rectification orders with evidence
    (EVIDENCE, {(role, district, None) for role in INSPECTING for district in (XUHUI, CITY)}
     | {("operator", XUHUI, INSTITUTION)}),
    # subsidy: operators apply for their own institution, health reviews, finance pays
    (SUBSIDY_DRAFT, {("health_officer", XUHUI, None), ("health_officer", CITY, None),
                     ("operator", XUHUI, INSTITUTION)}),
    (SUBSIDY_REVIEW, {("health_officer", XUHUI, None), ("health_officer", CITY, None)}),
    (SUBSIDY_BATCH, set()),  # finance only (below): no caller of this matrix
    (RECTIFICATIONS, {(role, district, None) for role in (
        "district_leader", "health_officer", "fire_officer", "market_officer",
        "credit_officer", "auditor") for district in (XUHUI, HUANGPU, CITY)}),
    # each district's officers and leaders see their own district's rows
    (DASHBOARD, {(role, district, None) for role in (
        "district_leader", "health_officer", "fire_officer", "market_officer",
        "credit_officer") for district in (XUHUI, HUANGPU, CITY)} | {("auditor", XUHUI, None),
                                                                   ("auditor", HUANGPU, None),
                                                                   ("auditor", CITY, None)}),
]
CALLERS = [(role, district, None) for role in (
    "health_officer", "market_officer", "fire_officer", "credit_officer", "district_leader",
    "auditor", "subscriber") for district in (XUHUI, HUANGPU, CITY)] + [
    ("operator", XUHUI, INSTITUTION), ("operator", HUANGPU, OTHER_INSTITUTION)]


def _send(gateway, keys, endpoint: tuple, caller: tuple | None):
    method, path, body = endpoint
    if endpoint is SUBMIT:
        body = filing()
    headers = auth(keys, caller[0], caller[1], caller[2]) if caller else {}
    return gateway.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize(("endpoint", "allowed"), MATRIX,
                         ids=[f"{e[0]} {e[1]}" for e, _ in MATRIX])
def test_roles_by_district_are_allowed_or_refused_as_specified(gateway, keys, endpoint,
                                                               allowed):
    answer = _send(gateway, keys, endpoint, None)
    assert answer.status_code == 401, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    for caller in CALLERS:
        gateway.stand_in.calls.clear()
        answer = _send(gateway, keys, endpoint, caller)
        if caller in allowed:
            assert answer.status_code < 300, (caller, answer.text)
            assert endpoint[0] == "GET" or gateway.stand_in.writes(), caller
        else:
            assert answer.status_code == 403, (caller, answer.status_code, answer.text)
            problem = answer.json()
            assert problem["status"] == 403 and problem["code"] and problem["detail"]
            assert gateway.stand_in.writes() == [], (caller, "a refused request reached RPC")


def test_finance_alone_pays_and_city_wide(gateway, keys):
    method, path, body = SUBSIDY_BATCH
    assert gateway.request(method, path, json=body, headers=auth(
        keys, "finance_officer", CITY)).status_code == 201
    assert gateway.request(method, path, json=body, headers=auth(
        keys, "finance_officer", XUHUI)).status_code == 403


def test_a_district_officer_sees_only_their_district_in_lists(gateway, keys):
    rows = gateway.get("/api/officer/filings-awaiting",
                       headers=auth(keys, "health_officer", XUHUI)).json()["filings"]
    assert [r["district"] for r in rows] == [XUHUI]
    rows = gateway.get("/api/officer/filings-awaiting",
                       headers=auth(keys, "health_officer", CITY)).json()["filings"]
    assert {r["district"] for r in rows} == {XUHUI, HUANGPU}
    gateway.stand_in.calls.clear()
    gateway.get("/api/dashboard/institutions", headers=auth(keys, "district_leader", XUHUI))
    [(_, method, _, kwargs, _)] = gateway.stand_in.calls
    assert method == "institutions" and kwargs["district"] == XUHUI
    answer = gateway.get(f"/api/dashboard/institutions?district={HUANGPU}",
                         headers=auth(keys, "district_leader", XUHUI))
    assert answer.status_code == 403 and answer.json()["code"] == "other_district"


def test_the_service_gets_the_verified_token_never_the_callers_headers(gateway, keys):
    headers = {**auth(keys, "health_officer", XUHUI, subject="officer-zhang"),
               "X-Actor": "mallory", "X-Department": "finance"}
    answer = gateway.post(REGISTER[1], json=REGISTER[2], headers=headers)
    assert answer.status_code == 201, answer.text
    [(_, method, _, _, context)] = gateway.stand_in.calls
    assert method == "register_institution"
    assert set(context) == {"authorization"}
    assert ring(keys).verify(context["authorization"]).subject == "officer-zhang"


def test_tokens_expired_unknown_tampered_or_revoked_are_refused_with_the_reason(
        gateway, keys, tmp_path):
    path = "/api/officer/staff-cases"
    expired = auth(keys, "health_officer", now=time.time() - 10 * 3600)
    assert gateway.get(path, headers=expired).json()["code"] == "token_expired"
    private, _ = generate_key_pem()
    stranger = KeyRing.from_env({"TUOYU_AUTH_SIGNING_KEY": private,
                                 "TUOYU_AUTH_SIGNING_KID": "k9"})
    answer = gateway.get(path, headers={"Authorization": "Bearer " + stranger.issue(
        "x", "health_officer", CITY)})
    assert answer.status_code == 401 and answer.json()["code"] == "token_unknown_key"
    forged = KeyRing.from_env({"TUOYU_AUTH_SIGNING_KEY": private,
                               "TUOYU_AUTH_SIGNING_KID": "k1"})  # a known kid, another key
    answer = gateway.get(path, headers={"Authorization": "Bearer " + forged.issue(
        "x", "health_officer", CITY)})
    assert answer.status_code == 401 and answer.json()["code"] == "token_invalid"
    assert gateway.get(path, headers={"Authorization": "Basic abc"}).json()["code"] == \
        "token_malformed"
    # rotation: a token of the second key verifies too
    second = ring(keys, "k2").issue("officer-2", "health_officer", CITY)
    assert gateway.get(path, headers={"Authorization": f"Bearer {second}"}).status_code == 200
    # revocation, by the token's id, effective within a second or so
    token = ring(keys).issue("officer-3", "health_officer", CITY)
    headers = {"Authorization": f"Bearer {token}"}
    assert gateway.get(path, headers=headers).status_code == 200
    gateway.revoked.write_text(ring(keys).verify(token).token_id + "  # lost laptop\n")
    time.sleep(1.1)
    answer = gateway.get(path, headers=headers)
    assert answer.status_code == 401 and answer.json()["code"] == "token_revoked"


def test_bodies_are_validated_here_and_limited_in_size(gateway, keys):
    headers = auth(keys, "health_officer")
    answer = gateway.post("/api/institutions", json={**REGISTER[2], "nature": "x", "extra": 1},
                          headers=headers)
    assert answer.status_code == 400
    problem = answer.json()
    assert {(e["field"], e["code"]) for e in problem["errors"]} == {
        ("nature", "invalid_choice"), ("extra", "unknown_field")}
    assert problem["type"] == "urn:tuoyu:problem:validation_failed"
    assert gateway.stand_in.calls == []
    answer = gateway.post("/api/institutions", content=b"{not json", headers=headers)
    assert answer.status_code == 400 and answer.json()["errors"][0]["field"] == "body"
    answer = gateway.post("/api/institutions", content=b"x" * (65 * 1024),
                          headers={**headers, "Content-Type": "application/json"})
    assert answer.status_code == 413 and answer.json()["code"] == "payload_too_large"
    answer = gateway.get("/api/public/institutions?limit=0")
    assert answer.status_code == 400 and answer.json()["errors"][0]["field"] == "limit"
    assert gateway.stand_in.calls == []


def test_too_many_requests_from_one_client_get_429(keys, tmp_path):
    verifying = KeyRing.from_env({"TUOYU_AUTH_PUBLIC_KEYS": json.dumps(
        {k: v[1] for k, v in keys.items()})})
    client = TestClient(create_app(GatewaySettings(keys=verifying, rate=1, burst=3),
                                   rpc=StandIn()))
    statuses = [client.get("/api/public/institutions").status_code for _ in range(5)]
    assert statuses[:3] == [200, 200, 200] and statuses[3:] == [429, 429]
    answer = client.get("/api/public/institutions")
    assert int(answer.headers["Retry-After"]) >= 1 and answer.json()["code"] == "rate_limited"
    # another client (another token's subject) has a bucket of its own
    assert client.get("/api/officer/staff-cases",
                      headers=auth(keys, "health_officer")).status_code == 200


def test_the_openapi_document_covers_every_route_and_the_docs_need_nothing_outside(gateway):
    document = gateway.get("/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    assert "/api/institutions/{institution_id}/deregister" in document["paths"]
    register = document["paths"]["/api/institutions"]["post"]
    ref = register["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert "credit_code" in schema["properties"]
    assert document["paths"]["/api/public/institutions"]["get"]["security"] == []
    assert json.dumps(document).count('"$ref"') == json.dumps(document).count(
        '"#/components/schemas/')
    page = gateway.get("/docs").text
    assert "/openapi.json" in page and "http://" not in page and "https://" not in page
    assert openapi_document([])["paths"] == {}


def test_unknown_routes_and_methods_are_problems(gateway):
    answer = gateway.get("/api/nothing-here")
    assert answer.status_code == 404 and answer.json()["code"] == "no_such_route"
    answer = gateway.delete("/api/institutions")
    assert answer.status_code == 405 and answer.json()["status"] == 405


def test_answers_leave_at_once_nagle_is_off_on_accepted_connections():
    """Found in the benchmark: every answer took 40 ms more (a delayed ACK waiting on Nagle's
    algorithm), because asyncio sets TCP_NODELAY only on sockets that say they are TCP."""
    import asyncio
    import socket

    from tuoyu_gateway.__main__ import listening_socket

    sock = listening_socket("127.0.0.1", 0)
    seen: list[int] = []

    async def main() -> None:
        def accepted(reader, writer) -> None:
            seen.append(writer.get_extra_info("socket").getsockopt(
                socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(accepted, sock=sock)
        _, writer = await asyncio.open_connection(*sock.getsockname())
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
        writer.close()
        server.close()

    asyncio.run(main())
    assert seen == [1]


def test_a_persons_erasure_reaches_every_service_that_holds_personal_data(gateway, keys):
    method, path, body = ERASURE
    answer = gateway.request(method, path, json=body, headers=auth(keys, "health_officer"))
    assert answer.status_code == 200, answer.text
    assert set(answer.json()["services"]) == {"registration", "credit", "subsidy"}
    called = [(service, m) for service, m, *_ in gateway.stand_in.calls]
    assert called == [("registration", "erase_person"), ("credit", "erase_person"),
                      ("subsidy", "erase_person")]


def test_a_service_away_during_an_erasure_is_named_with_those_that_did_it(keys, tmp_path):
    from tuoyu_shared.rpc import UnknownService

    class CreditAway(StandIn):
        def call(self, service, method, args, kwargs, rpc_context):
            if service == "credit":
                raise UnknownService("no service 'credit' listens for RPC calls")
            return super().call(service, method, args, kwargs, rpc_context)

    verifying = KeyRing.from_env({"TUOYU_AUTH_PUBLIC_KEYS": json.dumps(
        {k: v[1] for k, v in keys.items()})})
    client = TestClient(create_app(GatewaySettings(keys=verifying, rate=1000, burst=1000),
                                   rpc=CreditAway()))
    method, path, body = ERASURE
    answer = client.request(method, path, json=body, headers=auth(keys, "credit_officer"))
    assert answer.status_code == 503  # call again: the erasure is idempotent
    problem = answer.json()
    assert problem["code"] == "not_every_service"
    assert problem["done"] == ["registration", "subsidy"]
    assert problem["failed"]["credit"]["code"] == "service_unavailable"
    assert "credit" in problem["detail"]


def test_a_broker_that_refuses_the_connection_is_a_503_problem_not_a_500(keys, tmp_path):
    """Seen: RabbitMQ answered Connection.open with 541 INTERNAL_ERROR (a virtual host down),
    an AMQP error and not an OSError; the gateway answered a bare 500."""
    from amqp.exceptions import InternalError

    class BrokerDown(StandIn):
        def call(self, service, method, args, kwargs, rpc_context):
            raise InternalError("Connection.open: (541) INTERNAL_ERROR - vhost 'x' is down")

    verifying = KeyRing.from_env({"TUOYU_AUTH_PUBLIC_KEYS": json.dumps(
        {k: v[1] for k, v in keys.items()})})
    client = TestClient(create_app(GatewaySettings(keys=verifying, rate=1000, burst=1000),
                                   rpc=BrokerDown()), raise_server_exceptions=False)
    answer = client.get("/api/dashboard/indicators", headers=auth(keys, "health_officer"))
    assert answer.status_code == 503, answer.text
    assert answer.json()["code"] == "broker_unavailable"


def test_each_answer_says_the_gateways_own_share_apart_from_the_services(gateway, keys):
    """Server-Timing: the gateway's own time (authentication, validation, encoding) and the
    time the service took, which the benchmark reads for the gateway's added latency."""
    import re
    import time

    answer = gateway.stand_in.call

    def slow(*args):
        time.sleep(0.05)
        return answer(*args)

    gateway.stand_in.call = slow
    body = {"name": "赵敏", "id_number": "110101199003070011"}
    response = gateway.post("/api/practitioners", json=body,
                            headers=auth(keys, "credit_officer"))
    assert response.status_code == 201, response.text
    timing = response.headers["server-timing"]
    found = dict(re.findall(r"(\w+);dur=([0-9.]+)", timing))
    assert float(found["rpc"]) >= 50, timing
    assert 0 < float(found["gateway"]) < 50, timing
    metrics = gateway.get("/metrics").text
    assert 'tuoyu_gateway_own_seconds_count{route="POST /api/practitioners"} 1.0' in metrics
    # a refusal is the gateway's alone, and says so too
    refused = gateway.post("/api/practitioners", json=body)
    assert refused.status_code == 401, refused.text
    found = dict(re.findall(r"(\w+);dur=([0-9.]+)", refused.headers["server-timing"]))
    assert float(found["rpc"]) == 0 and float(found["gateway"]) > 0, found
    # pages and the contract are not API routes: no timing
    assert "server-timing" not in gateway.get("/openapi.json").headers
