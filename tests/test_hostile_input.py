"""No request can reach a 500 or write anything when it is refused (issue 7).

The services run as processes (their nameko adapters, no workers), each on databases of its own
and, where the private local broker can make one, a RabbitMQ vhost of its own. Every HTTP
endpoint of every service is found by looking at the service classes' nameko ``http``
entrypoints, so a new endpoint is driven too, with generated hostile requests: control
characters and lone surrogates, integers beyond bigint, floats, NaN, deep nesting, huge
strings, wrong types, non-JSON, invalid UTF-8, oversized bodies, in bodies, query strings,
path parameters and context headers. Each answer must be below 500; each refusal (4xx) must
leave every event log's head where it was, and a 400 or 413 must name the field.

``TUOYU_HOSTILE_EXAMPLES`` sets the examples per endpoint (default 12; derandomized, so a run
is repeatable); ``TUOYU_HOSTILE_RANDOM=1`` draws afresh each run, to explore.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import urllib.parse
import warnings
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuoyu_registration.samples import (
    sample_csv,
    sample_enrolment,
    sample_filing_submission,
    sample_registration,
    sample_resident_id,
)
from tuoyu_shared.devrun import SERVICES, ProcessGroup
from tuoyu_shared.testing import group_environment

with warnings.catch_warnings():  # nameko imports eventlet, which warns of its deprecation
    warnings.simplefilter("ignore")
    from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR
    from nameko.web.handlers import HttpRequestHandler

    from tuoyu_credit.application import LISTING_STEPS
    from tuoyu_credit.service import CreditService
    from tuoyu_dashboard.service import DashboardService
    from tuoyu_registration.service import INSTITUTION_COMMANDS, RegistrationService

PORT_OFFSET = 200  # 8201-8203: test_end_to_end uses 8101-8103, test_supervision 8301-8303
VHOST = "tuoyu-hostile"
EXAMPLES = int(os.environ.get("TUOYU_HOSTILE_EXAMPLES", "12"))
DERANDOMIZE = not os.environ.get("TUOYU_HOSTILE_RANDOM")
EVENT_SOURCED = ("registration", "credit")  # the services with an event log
MAX_BODY = 1 << 20
MAX_REQUEST_LINE = 8192  # eventlet.wsgi's: a longer request line is a 414 before any handler
CLASSES = {"registration": RegistrationService, "credit": CreditService,
           "dashboard": DashboardService}


# ---- the endpoints, from the service classes -----------------------------------------------------
@dataclass(frozen=True)
class Endpoint:
    service: str
    handler: str
    method: str
    rule: str  # werkzeug rule, e.g. /api/institutions/<string:institution_id>

    @property
    def params(self) -> list[str]:
        return re.findall(r"<(?:[^:<>]+:)?([^<>]+)>", self.rule)

    def path(self, values: dict[str, str]) -> str:
        def fill(match: re.Match) -> str:
            value = values[match.group(1)]
            return urllib.parse.quote(value.encode("utf-8", "surrogatepass"), safe="")

        return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", fill, self.rule)

    def __str__(self) -> str:
        return f"{self.service} {self.method} {self.rule}"


def http_endpoints() -> list[Endpoint]:
    found = []
    for service, cls in CLASSES.items():
        for name in dir(cls):
            entrypoints = getattr(getattr(cls, name, None), ENTRYPOINT_EXTENSIONS_ATTR, ())
            for entrypoint in entrypoints:
                if isinstance(entrypoint, HttpRequestHandler):
                    for method in entrypoint.method.split(","):
                        found.append(Endpoint(service, name, method.strip(), entrypoint.url))
    return sorted(found, key=str)


ENDPOINTS = http_endpoints()


def test_the_endpoints_are_found_on_the_service_classes():
    rules = {(e.service, e.method, e.rule) for e in ENDPOINTS}
    assert ("registration", "POST", "/api/institutions") in rules
    assert ("registration", "POST", "/api/imports/filings") in rules
    assert ("credit", "GET", "/api/credit-register") in rules
    assert ("dashboard", "GET", "/api/institutions") in rules
    assert ("credit", "GET", "/metrics") in rules  # from the EventLogEntrypoints mixin
    assert len(ENDPOINTS) >= 25


# ---- the system ----------------------------------------------------------------------------------
@dataclass
class Answer:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class System:
    def __init__(self, group: ProcessGroup):
        self.group = group
        self.known: dict[str, list[str]] = {}

    def port(self, service: str) -> int:
        return next(self.group.port(s) for s in SERVICES if s.name == service)

    def send(self, service: str, method: str, path: str, body: bytes | None = None,
             headers: dict[str, bytes] | None = None) -> Answer:
        conn = http.client.HTTPConnection("127.0.0.1", self.port(service), timeout=60)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            for key, value in (headers or {}).items():
                conn.putheader(key, value)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            return Answer(response.status, response.read())
        finally:
            conn.close()

    def json(self, service: str, method: str, path: str, body: Any = None) -> Answer:
        data = None if body is None else json.dumps(body).encode()
        return self.send(service, method, path, data,
                         {"Content-Type": b"application/json"})

    def heads(self) -> dict[str, int]:
        return {service: self.send(service, "GET", "/health").json()["log_head"]
                for service in EVENT_SOURCED}


@pytest.fixture(scope="module")
def system(servers, tmp_path_factory):
    with group_environment(servers, "hostile", vhost=VHOST,
                           TUOYU_HTTP_MAX_BODY_BYTES=str(MAX_BODY),
                           TUOYU_LOG_LEVEL="warning") as env:
        yield from _system(env, tmp_path_factory)


def _system(env, tmp_path_factory):
    group = ProcessGroup(env, tmp_path_factory.mktemp("hostile-logs"), port_offset=PORT_OFFSET)
    group.start(workers=False)
    try:
        s = System(group)
        reply = s.json("registration", "POST", "/api/institutions", sample_registration(900))
        assert reply.status == 201, reply.body
        s.known["institution_id"] = [reply.json()["institution_id"]]
        reply = s.json("credit", "POST", "/api/practitioners",
                       {"name": "李四", "id_number": sample_resident_id(900)})
        assert reply.status == 201, reply.body
        s.known["person_ref"] = [reply.json()["person_ref"]]
        s.known["command"] = list(INSTITUTION_COMMANDS)
        s.known["list_name"] = ["serious_dishonesty", "trust_reward"]
        s.known["step"] = list(LISTING_STEPS)
        yield s
    finally:
        group.stop()


def refused_and_named(answer: Answer) -> list[tuple[str, str]]:
    """(field, code) of a 400/413 answer; fails unless every error names its field."""
    body = answer.json()
    errors = body["errors"]
    assert errors and all(isinstance(e["field"], str) and e["field"] for e in errors), body
    return [(e["field"], e["code"]) for e in errors]


# ---- the three requests seen in issue 7 ----------------------------------------------------------
def test_nul_in_street_is_refused_naming_street(system):
    before = system.heads()
    answer = system.json("registration", "POST", "/api/institutions",
                         sample_registration(901, street="中山\x00路街道"))
    assert answer.status == 400
    assert refused_and_named(answer) == [("street", "invalid_character")]
    assert "U+0000" in answer.json()["errors"][0]["reason"]
    assert system.heads() == before


@pytest.mark.parametrize(("service", "path", "field"), [
    ("registration", "/api/public/institutions?offset=99999999999999999999", "offset"),
    ("registration", "/api/public/institutions?limit=99999999999999999999", "limit"),
    ("credit", "/api/credit-register?offset=99999999999999999999", "offset"),
    ("dashboard", "/api/institutions?limit=99999999999999999999", "limit"),
])
def test_an_integer_beyond_bigint_in_the_query_is_refused(system, service, path, field):
    answer = system.send(service, "GET", path)
    assert answer.status == 400
    assert refused_and_named(answer) == [(field, "out_of_range")]


@pytest.mark.parametrize("document", ["[" * 5000 + "]" * 5000,
                                      '{"a":' * 5000 + "1" + "}" * 5000])
def test_json_nested_5000_deep_is_refused(system, document):
    before = system.heads()
    answer = system.send("registration", "POST", "/api/institutions", document.encode(),
                         {"Content-Type": b"application/json"})
    assert answer.status == 400
    assert refused_and_named(answer) == [("body", "too_deep")]
    assert system.heads() == before


# ---- more refusals, by hand ----------------------------------------------------------------------
def test_nul_in_a_query_parameter_and_a_path_parameter_is_refused(system):
    answer = system.send("registration", "GET", "/api/public/institutions?district=a%00b")
    assert answer.status == 400 and refused_and_named(answer) == [
        ("district", "invalid_character")]
    answer = system.send("registration", "GET", "/api/institutions/a%00b")
    assert answer.status == 400 and refused_and_named(answer) == [
        ("institution_id", "invalid_character")]
    answer = system.send("registration", "GET", "/api/institutions/%ff")
    assert answer.status == 400 and refused_and_named(answer) == [("path", "invalid_encoding")]


@pytest.mark.parametrize(("service", "path"), [
    ("registration", "/api/institutions/not-a-uuid"),
    ("registration", "/api/institutions/not-a-uuid/record"),
    ("credit", "/api/institutions/not-a-uuid/credit"),
])
def test_a_path_id_that_is_not_a_uuid_is_400(system, service, path):
    answer = system.send(service, "GET", path)
    assert answer.status == 400 and refused_and_named(answer) == [
        ("institution_id", "invalid_format")]


def test_an_oversized_body_is_413_and_writes_nothing(system):
    before = system.heads()
    body = json.dumps(sample_registration(902, address="x" * MAX_BODY)).encode()
    answer = system.send("registration", "POST", "/api/institutions", body,
                         {"Content-Type": b"application/json"})
    assert answer.status == 413
    assert refused_and_named(answer) == [("body", "too_large")]
    assert system.heads() == before


def test_invalid_utf8_and_non_json_bodies_are_400(system):
    for body, code in ((b'{"name": "\xff"}', "invalid_encoding"), (b"name=x", "invalid_json"),
                       (b'{"name": NaN}', "invalid_json")):
        answer = system.send("credit", "POST", "/api/practitioners", body)
        assert answer.status == 400 and refused_and_named(answer) == [("body", code)]


def test_raw_list_fields_are_checked_item_by_item(system):
    [institution_id] = system.known["institution_id"]
    base = f"/api/institutions/{institution_id}"
    before = system.heads()
    answer = system.json("registration", "POST", f"{base}/submit_filing",
                         sample_filing_submission(service_types=[{"a": 1}, "full_day"]))
    assert answer.status == 400 and refused_and_named(answer) == [
        ("service_types[0]", "invalid_type")]
    answer = system.json("registration", "POST", f"{base}/request_hire", {
        "practitioner": {"name": "张三", "id_number": sample_resident_id(903)},
        "role": "carer", "certificates": ["ok", "bad\x00"]})
    assert answer.status == 400 and refused_and_named(answer) == [
        ("certificates[1]", "invalid_character")]
    answer = system.json("registration", "POST", f"{base}/request_hire", {
        "practitioner": {"name": "张三", "id_number": sample_resident_id(903)},
        "role": "carer", "certificates": ["c"] * 101})
    assert answer.status == 400 and refused_and_named(answer) == [
        ("certificates", "out_of_range")]
    answer = system.json("registration", "POST", f"{base}/verify_filing", {
        "outcome": "non_compliant", "findings": ["f" * 2001], "disclosure": "d"})
    assert answer.status == 400 and refused_and_named(answer) == [
        ("findings[0]", "too_long")]
    assert system.heads() == before


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
    answer = system.send("registration", "POST", "/api/imports/filings", text.encode(),
                         {"Content-Type": b"text/csv"})
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
        answer = system.send("registration", "POST", "/api/imports/filings", data)
        assert answer.status == 400, answer.body
        assert refused_and_named(answer) == [("body", code)]
    answer = system.send("registration", "POST", "/api/imports/filings?source=a%01b",
                         sample_csv(1, start=950).encode())
    assert answer.status == 400 and refused_and_named(answer) == [
        ("source", "invalid_character")]
    answer = system.send("registration", "POST", "/api/imports/filings?source=" + "s" * 101,
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
QUERY_KEYS = ["limit", "offset", "version", "district", "street", "kind", "name", "affordable",
              "grade", "list", "source"]


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
    path = endpoint.path(values) + (f"?{query}" if query else "")
    before = system.heads()
    try:
        answer = system.send(endpoint.service, endpoint.method, path, body, sent_headers)
    except (ConnectionResetError, BrokenPipeError):
        # eventlet answers a request line of 8 KiB or more with 414 and closes the
        # connection unread, before any of our code: a client still sending sees a reset
        assert len(f"{endpoint.method} {path} HTTP/1.1\r\n") >= MAX_REQUEST_LINE, path
        answer = Answer(414, b"")
    assert answer.status < 500, (endpoint, path, answer.body[:2000])
    if 400 <= answer.status < 500:
        assert system.heads() == before, (endpoint, path, answer.status, answer.body[:500])
    if answer.status in (400, 413):
        refused_and_named(answer)
    if answer.status == 414:
        assert len(f"{endpoint.method} {path} HTTP/1.1\r\n") >= MAX_REQUEST_LINE, path
