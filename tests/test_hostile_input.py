"""No request through the gateway can reach a 500 or write anything when it is refused
(issue 7).

The system runs as processes (every service's nameko adapter, no workers, and the gateway,
the one HTTP way in), on databases of its own and, where the private local broker can make
one, a RabbitMQ vhost of its own. Every endpoint is found in the routes the services declare
(``tuoyu_<service>.routes.ROUTES``), so a new route is driven too, with generated hostile
requests: control characters and lone surrogates, integers beyond bigint, floats, NaN, deep
nesting, huge strings, wrong types, non-JSON, invalid UTF-8, oversized bodies, in bodies,
query strings, path parameters and headers. Each request carries a valid city-wide token of a
role the route allows (none for a public route), so it gets past the gateway's checks of who
calls; other tests send no token, a garbage one, an expired one, one of an unknown key and
one of a role the route does not allow (401 and 403). Each answer must be below 500; each
refusal (4xx) must be a problem (RFC 9457) and leave every event log's head where it was (the
head is read at each event-sourced service's own ``GET /health``), and a 400 must name the
field.

``TUOYU_HOSTILE_EXAMPLES`` sets the examples per endpoint (default 12; derandomized, so a run
is repeatable); ``TUOYU_HOSTILE_RANDOM=1`` draws afresh each run, to explore.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuoyu_credit.routes import ROUTES as CREDIT_ROUTES
from tuoyu_dashboard.routes import ROUTES as DASHBOARD_ROUTES
from tuoyu_registration.routes import ROUTES as REGISTRATION_ROUTES
from tuoyu_registration.samples import (
    sample_csv,
    sample_enrolment,
    sample_filing_submission,
    sample_registration,
    sample_resident_id,
)
from tuoyu_shared.auth import ROLES, KeyRing, generate_key_pem
from tuoyu_shared.devrun import SERVICES, ProcessGroup
from tuoyu_shared.routes import PUBLIC, Route
from tuoyu_shared.testing import bearer, group_environment, token

PORT_OFFSET = 200  # 8200-8203: end-to-end 100, supervision 300, observability 400, credit 500
VHOST = "tuoyu-hostile"
EXAMPLES = int(os.environ.get("TUOYU_HOSTILE_EXAMPLES", "12"))
DERANDOMIZE = not os.environ.get("TUOYU_HOSTILE_RANDOM")
EVENT_SOURCED = ("registration", "credit")  # the services with an event log
MAX_BODY = 1 << 20  # the gateway's default limit of a JSON body
#: uvicorn's HTTP/1.1 parser (h11) may refuse a request head longer than this before any of
#: the gateway's code runs: a plain-text 400, or a reset of a client still sending
MAX_REQUEST_HEAD = 16 * 1024
PROBLEM = "application/problem+json"
PROBLEM_KEYS = {"type", "title", "status", "detail", "code"}
LIST_NAMES = ["serious_dishonesty", "trust_reward"]


# ---- the endpoints, from the routes the services declare -----------------------------------------
@dataclass(frozen=True)
class Endpoint:
    route: Route

    @property
    def service(self) -> str:
        return self.route.service

    @property
    def method(self) -> str:
        return self.route.method

    @property
    def params(self) -> list[str]:
        return re.findall(r"{([^{}]+)}", self.route.path)

    @property
    def public(self) -> bool:
        return PUBLIC in self.route.allow

    @property
    def role(self) -> str | None:
        """The role of the token sent: the first the route allows that is no operator's
        (an operator is bound to one institution); None for a public route."""
        if self.public:
            return None
        return next(role for role in self.route.allow if role != "operator")

    @property
    def forbidden_role(self) -> str:
        """A role the route does not allow (and no operator's)."""
        return next(role for role in ROLES if role not in self.route.allow and
                    role != "operator")

    def matches(self, method: str, path: str) -> bool:
        pattern = re.sub(r"\\{[^{}]+\\}", "[^/]+", re.escape(self.route.path))
        return method == self.method and re.fullmatch(pattern, path.split("?")[0]) is not None

    def path(self, values: dict[str, str]) -> str:
        def fill(match: re.Match) -> str:
            value = values[match.group(1)]
            return urllib.parse.quote(value.encode("utf-8", "surrogatepass"), safe="")

        return re.sub(r"{([^{}]+)}", fill, self.route.path)

    def __str__(self) -> str:
        return f"{self.service} {self.method} {self.route.path}"


ENDPOINTS = sorted((Endpoint(r) for r in (*REGISTRATION_ROUTES, *CREDIT_ROUTES,
                                          *DASHBOARD_ROUTES)), key=str)


def test_the_endpoints_are_found_in_the_routes():
    found = {(e.method, e.route.path) for e in ENDPOINTS}
    assert ("POST", "/api/institutions") in found
    assert ("POST", "/api/imports/filings") in found
    assert ("GET", "/api/credit-register") in found
    assert ("GET", "/api/dashboard/institutions") in found
    assert ("POST", "/api/institutions/{institution_id}/submit_filing") in found
    assert ("GET", "/api/events/credit") in found  # from tuoyu_shared.routes.event_log_routes
    assert len(ENDPOINTS) >= 40
    assert len(found) == len(ENDPOINTS)  # no two routes on one method and path
    for endpoint in ENDPOINTS:  # a token that the route lets in is sent with each request
        assert endpoint.public or endpoint.role in ROLES, endpoint


def endpoint_of(method: str, path: str) -> Endpoint:
    return next(e for e in ENDPOINTS if e.matches(method, path))


# ---- the system ----------------------------------------------------------------------------------
@dataclass
class Answer:
    status: int
    body: bytes
    content_type: str = ""

    def json(self) -> Any:
        return json.loads(self.body)


AUTO = object()  # the token of the route's role


class System:
    def __init__(self, group: ProcessGroup):
        self.group = group
        self.known: dict[str, list[str]] = {}

    def port(self, service: str) -> int:
        return next(self.group.port(s) for s in SERVICES if s.name == service)

    def raw(self, service: str, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str | bytes] | None = None) -> Answer:
        conn = http.client.HTTPConnection("127.0.0.1", self.port(service), timeout=60)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            for key, value in (headers or {}).items():
                conn.putheader(key, value)
            if body is not None and "content-length" not in {k.lower() for k in headers or {}}:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            return Answer(response.status, response.read(),
                          response.getheader("Content-Type") or "")
        finally:
            conn.close()

    def send(self, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str | bytes] | None = None, auth: Any = AUTO) -> Answer:
        """A request to the gateway, with (by default) a token of a role its route allows."""
        headers = dict(headers or {})
        if auth is AUTO:
            role = endpoint_of(method, path).role
            auth = bearer(role)["Authorization"] if role else None
        if auth is not None:
            headers["Authorization"] = auth
        return self.raw("gateway", method, path, body, headers)

    def json(self, method: str, path: str, body: Any = None, auth: Any = AUTO) -> Answer:
        data = None if body is None else json.dumps(body).encode()
        return self.send(method, path, data, {"Content-Type": "application/json"}, auth)

    def heads(self) -> dict[str, int]:
        """Each event log's head, at the service's own port (its ``/health``)."""
        return {service: self.raw(service, "GET", "/health").json()["log_head"]
                for service in EVENT_SOURCED}


@pytest.fixture(scope="module")
def system(servers, tmp_path_factory):
    with group_environment(servers, "hostile", vhost=VHOST, TUOYU_LOG_LEVEL="warning",
                           TUOYU_GATEWAY_MAX_BODY_BYTES=str(MAX_BODY),
                           TUOYU_GATEWAY_RATE="100000", TUOYU_GATEWAY_BURST="100000") as env:
        group = ProcessGroup(env, tmp_path_factory.mktemp("hostile-logs"),
                             port_offset=PORT_OFFSET)
        group.start(workers=False)
        try:
            s = System(group)
            reply = s.json("POST", "/api/institutions", sample_registration(900))
            assert reply.status == 201, reply.body
            s.known["institution_id"] = [reply.json()["institution_id"]]
            reply = s.json("POST", "/api/practitioners",
                           {"name": "李四", "id_number": sample_resident_id(900)})
            assert reply.status == 201, reply.body
            s.known["person_ref"] = [reply.json()["person_ref"]]
            s.known["list_name"] = LIST_NAMES
            s.known["code"] = ["filing_rate"]  # a dashboard indicator
            s.known["aggregate_id"] = s.known["institution_id"]  # a case of the audit trail
            s.known["correlation_id"] = ["case-1"]
            yield s
        finally:
            group.stop()


def problem(answer: Answer) -> dict[str, Any]:
    """The answer's RFC 9457 problem; fails unless it is one, of the answer's status."""
    assert answer.content_type.startswith(PROBLEM), (answer.status, answer.content_type,
                                                     answer.body[:500])
    body = answer.json()
    assert PROBLEM_KEYS <= set(body) and body["status"] == answer.status, body
    return body


def refused_and_named(answer: Answer) -> list[tuple[str, str]]:
    """(field, code) of a 400 answer; fails unless every error names its field."""
    body = problem(answer)
    errors = body["errors"]
    assert errors and all(isinstance(e["field"], str) and e["field"] for e in errors), body
    assert all(isinstance(e["code"], str) and e["reason"] for e in errors), body
    return [(e["field"], e["code"]) for e in errors]


# ---- the three requests seen in issue 7 ----------------------------------------------------------
def test_nul_in_street_is_refused_naming_street(system):
    before = system.heads()
    answer = system.json("POST", "/api/institutions",
                         sample_registration(901, street="中山\x00路街道"))
    assert answer.status == 400
    assert refused_and_named(answer) == [("street", "invalid_character")]
    assert "U+0000" in answer.json()["errors"][0]["reason"]
    assert system.heads() == before


@pytest.mark.parametrize(("path", "field"), [
    ("/api/public/institutions?offset=99999999999999999999", "offset"),
    ("/api/public/institutions?limit=99999999999999999999", "limit"),
    ("/api/credit-register?offset=99999999999999999999", "offset"),
    ("/api/credit-register?limit=-99999999999999999999", "limit"),
    ("/api/dashboard/institutions?limit=99999999999999999999", "limit"),
    ("/api/events/registration?start=99999999999999999999", "start"),
])
def test_an_integer_beyond_bigint_in_the_query_is_refused(system, path, field):
    answer = system.send("GET", path)
    assert answer.status == 400
    assert refused_and_named(answer) == [(field, "out_of_range")]


@pytest.mark.parametrize("document", ["[" * 5000 + "]" * 5000,
                                      '{"a":' * 5000 + "1" + "}" * 5000,
                                      '{"a":' * 100 + "1" + "}" * 100])
def test_json_nested_deep_is_refused(system, document):
    before = system.heads()
    answer = system.send("POST", "/api/institutions", document.encode(),
                         {"Content-Type": "application/json"})
    assert answer.status == 400
    [(field, code)] = refused_and_named(answer)
    # 100 levels: the command's check (tuoyu_shared.validation.MAX_DEPTH, 64) names the path;
    # 5000: the gateway's JSON parser gives up first (RecursionError), and names the body
    assert (field, code) in {("body", "invalid_json"), ("body", "too_deep")} or (
        code == "too_deep" and field.startswith("a.a.a")), (field, code)
    assert system.heads() == before


# ---- more refusals, by hand ----------------------------------------------------------------------
def test_nul_in_a_query_parameter_and_a_path_parameter_is_refused(system):
    answer = system.send("GET", "/api/public/institutions?district=a%00b")
    assert answer.status == 400
    [(field, code)] = refused_and_named(answer)
    # the gateway's own query check says invalid_text; the services' checks invalid_character
    assert field == "district" and code in {"invalid_text", "invalid_character"}
    answer = system.send("GET", "/api/dashboard/institutions?district=a%00b")
    assert answer.status == 400 and [e[0] for e in refused_and_named(answer)] == ["district"]
    answer = system.send("GET", "/api/institutions/a%00b")
    assert answer.status == 400 and refused_and_named(answer) == [
        ("institution_id", "invalid_format")]
    answer = system.send("GET", "/api/institutions/%ff")
    assert answer.status == 400 and refused_and_named(answer) == [
        ("institution_id", "invalid_format")]


@pytest.mark.parametrize("path", [
    "/api/institutions/not-a-uuid",
    "/api/institutions/not-a-uuid/record",
    "/api/institutions/not-a-uuid/credit",
])
def test_a_path_id_that_is_not_a_uuid_is_400(system, path):
    answer = system.send("GET", path)
    assert answer.status == 400 and refused_and_named(answer) == [
        ("institution_id", "invalid_format")]


def test_an_oversized_body_is_413_and_writes_nothing(system):
    before = system.heads()
    body = json.dumps(sample_registration(902, address="x" * MAX_BODY)).encode()
    answer = system.send("POST", "/api/institutions", body,
                         {"Content-Type": "application/json"})
    assert answer.status == 413
    assert problem(answer)["code"] == "payload_too_large"
    # a body announced larger than the limit is refused before it is read
    answer = system.send("POST", "/api/practitioners", b"{}",
                         {"Content-Type": "application/json", "Content-Length": "5000000"})
    assert answer.status == 413 and problem(answer)["code"] == "payload_too_large"
    assert system.heads() == before


def test_invalid_utf8_and_non_json_bodies_are_400(system):
    before = system.heads()
    for body, field, codes in ((b'{"name": "\xff"}', "body", {"invalid_encoding", "invalid_json"}),
                               (b"name=x", "body", {"invalid_json"}),
                               (b"", "body", {"required"}),
                               (b"[]", "body", {"invalid_type"}),
                               (b'{"name": NaN}', "name", {"invalid_format"})):
        answer = system.send("POST", "/api/practitioners", body)
        assert answer.status == 400, answer.body
        [(named, code)] = refused_and_named(answer)
        assert named == field and code in codes, (body, named, code)
    assert system.heads() == before


def test_wrong_types_huge_numbers_and_lone_surrogates_in_a_body_are_400(system):
    good = {"name": "李四", "id_number": sample_resident_id(904)}
    before = system.heads()
    for change, expected in (({"name": 12}, ("name", "invalid_type")),
                             ({"name": ["李四"]}, ("name", "invalid_type")),
                             ({"id_number": 2**80}, ("id_number", "out_of_range")),
                             ({"name": "李\ud800四"}, ("name", "invalid_character")),
                             ({"name": "x" * 150_000}, ("name", "too_long"))):
        data = json.dumps({**good, **change}).encode("utf-8", "surrogatepass")
        answer = system.send("POST", "/api/practitioners", data)
        assert answer.status == 400, answer.body
        assert refused_and_named(answer) == [expected]
    assert system.heads() == before


def test_raw_list_fields_are_checked_item_by_item(system):
    [institution_id] = system.known["institution_id"]
    base = f"/api/institutions/{institution_id}"
    before = system.heads()
    answer = system.json("POST", f"{base}/submit_filing",
                         sample_filing_submission(service_types=[{"a": 1}, "full_day"]))
    assert answer.status == 400 and refused_and_named(answer) == [
        ("service_types[0]", "invalid_type")]
    answer = system.json("POST", f"{base}/request_hire", {
        "practitioner": {"name": "张三", "id_number": sample_resident_id(903)},
        "role": "carer", "certificates": ["ok", "bad\x00"]})
    assert answer.status == 400 and refused_and_named(answer) == [
        ("certificates[1]", "invalid_character")]
    answer = system.json("POST", f"{base}/request_hire", {
        "practitioner": {"name": "张三", "id_number": sample_resident_id(903)},
        "role": "carer", "certificates": ["c"] * 101})
    assert answer.status == 400 and refused_and_named(answer) == [
        ("certificates", "out_of_range")]
    answer = system.json("POST", f"{base}/verify_filing", {
        "outcome": "non_compliant", "findings": ["f" * 2001], "disclosure": "d"})
    assert answer.status == 400 and refused_and_named(answer) == [
        ("findings[0]", "too_long")]
    assert system.heads() == before


# ---- who calls: no token, a bad one, a role the route does not allow -----------------------------
def _expired() -> str:
    return "Bearer " + token("health_officer", ttl_seconds=-60)


def _unknown_key() -> str:
    private, _ = generate_key_pem()
    ring = KeyRing.from_env({"TUOYU_AUTH_SIGNING_KEY": private,
                             "TUOYU_AUTH_SIGNING_KID": "test-1"})  # a known kid, another key
    return "Bearer " + ring.issue("intruder", "health_officer", "*")


BAD_TOKENS = {"none": None, "garbage": "Bearer garbage", "not_bearer": "Basic dXNlcjpwdw==",
              "expired": _expired(), "unknown_key": _unknown_key()}
GUARDED = [e for e in ENDPOINTS if not e.public]


def sample_body(endpoint: Endpoint, n: int) -> bytes | None:
    """A body the route would take from a caller it lets in (for most routes: {})."""
    if endpoint.route.body is None:
        return None
    if endpoint.route.body == "text":
        return sample_csv(1, start=n).encode()
    if endpoint.route.path == "/api/institutions":
        return json.dumps(sample_registration(n)).encode()
    if endpoint.route.path == "/api/practitioners":
        return json.dumps({"name": "王五", "id_number": sample_resident_id(n)}).encode()
    return b"{}"


@pytest.mark.parametrize("endpoint", GUARDED, ids=str)
def test_a_caller_without_a_good_token_or_role_is_refused_and_writes_nothing(system,
                                                                             endpoint):
    values = {name: system.known[name][0] for name in endpoint.params}
    path = endpoint.path(values)
    body = sample_body(endpoint, 960)
    headers = {"Content-Type": "application/json"}
    before = system.heads()
    for name, auth in BAD_TOKENS.items():
        answer = system.send(endpoint.method, path, body, headers, auth=auth)
        assert answer.status == 401, (name, answer.body)
        assert problem(answer)["code"], answer.body
    answer = system.send(endpoint.method, path, body, headers,
                         auth=bearer(endpoint.forbidden_role)["Authorization"])
    assert answer.status == 403, answer.body
    assert problem(answer)["code"] == "role_not_allowed"
    assert system.heads() == before


@settings(max_examples=max(EXAMPLES, 20), deadline=None, derandomize=DERANDOMIZE,
          database=None, suppress_health_check=[HealthCheck.too_slow])
@given(auth=st.one_of(
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=300),
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=300).map(
        lambda t: "Bearer " + t),
    st.sampled_from(["Bearer", "Bearer ", "bearer x.y.z", "Bearer a.b.c.d",
                     "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
                     "Bearer " + "x" * 8000])))
def test_a_hostile_authorization_header_is_401_and_writes_nothing(system, auth):
    before = system.heads()
    answer = system.send("POST", "/api/institutions",
                         json.dumps(sample_registration(961)).encode(),
                         {"Authorization": auth.encode("latin-1"),
                          "Content-Type": "application/json"}, auth=None)
    assert answer.status == 401, (auth, answer.body)
    problem(answer)
    assert system.heads() == before


# ---- CSV imports ---------------------------------------------------------------------------------
def csv_with(rows: dict[int, dict[str, str]], count: int = 3, start: int = 910) -> str:
    """sample_csv with some cells changed (rows numbered as in the report: 2 is the first)."""
    from tuoyu_registration.importer import COLUMNS

    lines = sample_csv(count, start=start).splitlines()
    keys = list(COLUMNS)
    for row, changes in rows.items():
        cells = lines[row - 1].split(",")
        for key, value in changes.items():
            cells[keys.index(key)] = value
        lines[row - 1] = ",".join(cells)
    return "\n".join(lines) + "\n"


def test_control_characters_and_huge_numbers_in_csv_cells_are_rejected_rows(system):
    text = csv_with({3: {"name": "托育\x00园"}, 4: {"street": "街道\x1b"},
                     5: {"indoor_m2": "9" * 30}, 6: {"staff_cook": "²"},
                     7: {"classes": "toddler:²:3"}, 8: {"address": "路\x85号"},
                     9: {"outdoor_m2": "99999999999999999999"}}, count=9)
    before = system.heads()
    answer = system.send("POST", "/api/imports/filings", text.encode(),
                         {"Content-Type": "text/csv"})
    assert answer.status == 200, answer.body
    report = answer.json()
    assert report["imported"] == 2
    rejected = {r["row"]: [(e["field"], e["code"]) for e in r["errors"]]
                for r in report["rejected"]}
    assert rejected == {3: [("name", "invalid_character")],
                        4: [("street", "invalid_character")],
                        5: [("indoor_m2", "out_of_range")],
                        6: [("staff_cook", "invalid_format")],
                        7: [("classes[0]", "invalid_format")],
                        8: [("address", "invalid_character")],
                        9: [("outdoor_m2", "out_of_range")]}
    assert system.heads()["registration"] == before["registration"] + 2


def test_a_csv_import_that_cannot_be_read_is_refused_whole(system):
    before = system.heads()
    for text, code in ((csv_with({3: {"name": "x" * 200_000}}, start=930), "too_long"),
                       (None, "invalid_encoding")):
        data = text.encode() if text else sample_csv(2, start=940).encode() + b"\xff\n"
        answer = system.send("POST", "/api/imports/filings", data)
        assert answer.status == 400, answer.body
        assert refused_and_named(answer) == [("body", code)]
    answer = system.send("POST", "/api/imports/filings?source=a%01b",
                         sample_csv(1, start=950).encode())
    assert answer.status == 400 and refused_and_named(answer) == [
        ("source", "invalid_character")]
    answer = system.send("POST", "/api/imports/filings?source=" + "s" * 101,
                         sample_csv(1, start=950).encode())
    assert answer.status == 400 and refused_and_named(answer) == [("source", "too_long")]
    assert system.heads() == before


# ---- generated hostile requests, every endpoint --------------------------------------------------
CONTROL = [chr(c) for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))]
SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff"]
SPECIAL = ["", " ", "\x00", "99999999999999999999", "-9223372036854775809",
           "9223372036854775808", "-1", "0", "1.5", "1e309", "NaN", "Infinity", "²", "١٢",
           "%00", "../../etc", "\u202e", "\ufeff", "null", "true", "[]", "{}",
           "x" * 5000, "中" * 2000]

hostile_text = st.one_of(
    st.text(max_size=12),
    st.builds(lambda a, c, b: a + c + b, st.text(max_size=6),
              st.sampled_from(CONTROL + SURROGATES), st.text(max_size=6)),
    st.sampled_from(SPECIAL),
    st.integers().map(str),
)
hostile_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(),
    st.integers(min_value=2**63 - 2, max_value=2**80),
    st.integers(min_value=-(2**80), max_value=-(2**63) + 1),
    st.floats(), hostile_text,
    st.just("x" * 150_000),
)
hostile_json = st.recursive(
    hostile_scalar,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(hostile_text, children, max_size=4)),
    max_leaves=8)

SAMPLE_BODIES = [
    sample_registration(920), sample_filing_submission(), sample_enrolment("2025-01"),
    {"receipt_number": "BA-1"},
    {"outcome": "non_compliant", "findings": ["f"], "disclosure": "d", "notes": "n"},
    {"outcome": "compliant", "finding_decisions": [
        {"field": "staff.health", "decision": "dismissed", "reason": "r"}]},
    {"changes": {"name": "n", "street": "s"}}, {"guide_price_fen": 100, "document": "d"},
    {"practitioner": {"name": "张三", "id_number": sample_resident_id(921)},
     "role": "carer", "certificates": ["c-1"]},
    {"name": "李四", "id_number": sample_resident_id(922)},
    {"source": "court_ruling", "legal_basis": "b", "evidence": ["e"], "officer": "o",
     "term": 5},
    {"purpose": "audit", "id_number": sample_resident_id(922)},
    {"cause_type": "finding_recorded", "cause_ref": "doc-1", "severity": "minor"},
    {"legal_basis": "b", "evidence": ["e"], "officer": "o", "proposed_term_days": 365},
    {"decision": "listed", "officer": "o", "reason": "r", "evidence": ["e"]},
]


def leaf_paths(value: Any, path: tuple = ()) -> list[tuple]:
    if isinstance(value, dict) and value:
        return [p for k, v in value.items() for p in leaf_paths(v, (*path, k))]
    if isinstance(value, list) and value:
        return [p for i, v in enumerate(value) for p in leaf_paths(v, (*path, i))]
    return [path]


def replaced(value: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = replaced(value[path[0]], path[1:], new)
    return copy


@st.composite
def mutated_sample(draw) -> bytes:
    sample = draw(st.sampled_from(SAMPLE_BODIES))
    for _ in range(draw(st.integers(1, 2))):
        sample = replaced(sample, draw(st.sampled_from(leaf_paths(sample))),
                          draw(hostile_json))
    return json.dumps(sample).encode()


@st.composite
def nested(draw) -> bytes:
    depth = draw(st.sampled_from([65, 100, 1000, 5000, 50_000]))
    opening, closing = draw(st.sampled_from([("[", "]"), ('{"a":', "}"), ('[{"a":', "}]")]))
    return (opening * depth + "1" + closing * depth).encode()


@st.composite
def invalid_utf8(draw) -> bytes:
    good = json.dumps(draw(st.sampled_from(SAMPLE_BODIES))).encode()
    bad = draw(st.sampled_from([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
                                b"\xe4\xb8"]))
    at = draw(st.integers(0, len(good)))
    return good[:at] + bad + good[at:]


@st.composite
def hostile_csv(draw) -> bytes:
    from tuoyu_registration.importer import COLUMNS

    lines = sample_csv(2, start=draw(st.integers(2000, 2100))).splitlines()
    cells = lines[1].split(",")
    cells[draw(st.integers(0, len(COLUMNS) - 1))] = draw(hostile_text).replace(",", ";")
    lines[1] = ",".join(cells)
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")


bodies = st.one_of(
    st.none(),
    mutated_sample(),
    hostile_json.map(lambda v: json.dumps(v).encode("utf-8", "surrogatepass")),
    hostile_json.map(lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8",
                                                                        "surrogatepass")),
    nested(),
    invalid_utf8(),
    st.binary(max_size=64),
    st.just(b'{"a": "' + b"x" * (MAX_BODY + 1) + b'"}'),
    hostile_csv(),
)
#: every query parameter a route declares
QUERY_KEYS = sorted({param.name for e in ENDPOINTS for param in e.route.query})


def encoded(text: str) -> str:
    return urllib.parse.quote(text.encode("utf-8", "surrogatepass"), safe="")


query_pair = st.tuples(st.one_of(st.sampled_from(QUERY_KEYS), hostile_text),
                       st.one_of(hostile_text, st.integers().map(str)))
query_strings = st.one_of(
    st.just(""),
    st.lists(query_pair, max_size=4).map(
        lambda pairs: "&".join(f"{encoded(k)}={encoded(v)}" for k, v in pairs)),
    st.binary(max_size=20).map(lambda b: "q=" + urllib.parse.quote_from_bytes(b, safe="")),
    st.just("&".join(f"p{i}=1" for i in range(60))),
)
headers = st.fixed_dictionaries({}, optional={
    "Content-Type": st.sampled_from([b"application/json", b"text/csv", b"text/plain",
                                     b"application/x-www-form-urlencoded", b"\xff"]),
    "X-Actor": hostile_text.map(lambda t: t.encode("utf-8", "surrogatepass")),
    "X-Department": st.sampled_from([b"health", b"d" * 300, b"\x00", b"\xe4\xb8"]),
    "X-Correlation-Id": st.sampled_from([b"case-1", b"\x01", b"c" * 1000]),
})


def path_values(endpoint: Endpoint, known: dict[str, list[str]]) -> st.SearchStrategy:
    return st.fixed_dictionaries({
        name: st.one_of(st.sampled_from(known[name]), hostile_text.filter(bool))
        if name in known else hostile_text.filter(bool)
        for name in endpoint.params})


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
@settings(max_examples=EXAMPLES, deadline=None, derandomize=DERANDOMIZE, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.filter_too_much])
@given(data=st.data())
def test_no_request_reaches_a_500_and_a_refusal_writes_nothing(system, endpoint, data):
    values = data.draw(path_values(endpoint, system.known), label="path values")
    query = data.draw(query_strings, label="query")
    body = data.draw(bodies, label="body") if endpoint.method != "GET" or data.draw(
        st.booleans()) else None
    sent_headers = {k: v for k, v in data.draw(headers, label="headers").items()
                    if b"\r" not in v and b"\n" not in v}
    if endpoint.role is not None:
        sent_headers["Authorization"] = bearer(endpoint.role)["Authorization"].encode()
    path = endpoint.path(values) + (f"?{query}" if query else "")
    head = len(f"{endpoint.method} {path} HTTP/1.1\r\n") + sum(
        len(k) + len(v) + 4 for k, v in sent_headers.items())
    # what uvicorn's HTTP parser (h11) refuses itself, before any of our code: a request
    # head too long, a header value with a control character (RFC 9110 field-value)
    unparsable = head >= MAX_REQUEST_HEAD or any(
        re.search(rb"[\x00-\x08\x0a-\x1f\x7f]", v) for v in sent_headers.values())
    before = system.heads()
    try:
        answer = system.send(endpoint.method, path, body, sent_headers, auth=None)
    except (ConnectionResetError, BrokenPipeError):
        # uvicorn closes the connection on a request head it refuses: a client still sending
        # sees a reset
        assert unparsable, path
        answer = Answer(400, b"", "reset")
    assert answer.status < 500, (endpoint, path, answer.body[:2000])
    if 400 <= answer.status < 500:
        assert system.heads() == before, (endpoint, path, answer.status, answer.body[:500])
        if not answer.content_type.startswith(PROBLEM):  # refused by uvicorn, not by us
            assert answer.status == 400 and unparsable, (
                endpoint, path, answer.status, answer.content_type, answer.body[:500])
        elif answer.status == 400:
            refused_and_named(answer)
        else:
            problem(answer)
