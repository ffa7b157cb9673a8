"""The HTTP adapter's checks of a request (tuoyu_shared.nameko_support), on werkzeug requests
built in this process: body size, nesting, encoding, query and path parameters."""

from __future__ import annotations

import json
import warnings
from typing import Any

import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

with warnings.catch_warnings():  # nameko imports eventlet, which warns of its deprecation
    warnings.simplefilter("ignore")
    from tuoyu_shared.nameko_support import (
        MAX_BODY_BYTES,
        http_json,
        query_int,
        read_json,
        read_text,
    )

from tuoyu_shared.validation import ValidationFailed


def request(data: bytes | str | None = None, query: Any = None, path: str = "/x",
            headers: dict[str, str] | None = None, method: str = "POST") -> Request:
    return Request(EnvironBuilder(path=path, method=method, data=data, query_string=query,
                                  headers=headers,
                                  content_type="application/json").get_environ())


class Handlers:
    """Handlers as a service class has them: ``self``, the request, path parameters."""

    @http_json
    def echo(self, request: Any, institution_id: str = "") -> dict[str, Any]:
        return {"body": read_json(request), "institution_id": institution_id}

    @http_json
    def page(self, request: Any) -> dict[str, Any]:
        return {"offset": query_int(request.args, "offset", 0, min_value=0),
                "limit": query_int(request.args, "limit", 100, min_value=1, max_value=1000)}

    @http_json(max_body_bytes=10)
    def small(self, request: Any) -> dict[str, Any]:
        return {"text": read_text(request)}


def call(handler, req: Request, *args: str, **kwargs: str) -> tuple[int, Any]:
    response = handler(req, *args, **kwargs)
    return response.status_code, json.loads(response.get_data(as_text=True))


@pytest.fixture
def h() -> Handlers:
    return Handlers()


def fields(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["field"], e["code"]) for e in body["errors"]]


def test_a_plain_json_object_passes(h):
    status, body = call(h.echo, request(json.dumps({"name": "阳光", "n": 2**63 - 1})), "abc")
    assert status == 200 and body == {"body": {"name": "阳光", "n": 2**63 - 1},
                                      "institution_id": "abc"}
    assert call(h.echo, request(b""))[1]["body"] == {}


def test_a_body_over_the_limit_is_413_before_it_is_read(h):
    status, body = call(h.echo, request(b"{" + b" " * MAX_BODY_BYTES + b"}"))
    assert status == 413 and body["error"] == "payload_too_large"
    assert fields(body) == [("body", "too_large")]
    status, body = call(h.small, request(b"01234567890"))
    assert status == 413
    assert call(h.small, request(b"0123456789")) == (200, {"text": "0123456789"})


def test_a_deeply_nested_body_is_400_without_parsing_it(h):
    for depth in (65, 5000, 100_000):
        status, body = call(h.echo, request("[" * depth + "]" * depth))
        assert status == 400 and fields(body) == [("body", "too_deep")], depth
    status, body = call(h.echo, request('{"a":' * 70 + "1" + "}" * 70))
    assert status == 400 and fields(body) == [("body", "too_deep")]
    # brackets inside strings do not count
    status, body = call(h.echo, request(json.dumps({"a": "[" * 5000 + '\\"{' * 100})))
    assert status == 200
    nested: Any = 1
    for _ in range(63):
        nested = [nested]
    assert call(h.echo, request(json.dumps({"a": nested})))[0] == 200  # 64 levels


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b'{"a": "\xff"}', "invalid_encoding"),
        (b'{"a": "\xed\xa0\x80"}', "invalid_encoding"),  # a surrogate encoded as UTF-8
        (b"not json", "invalid_json"),
        (b'{"a": NaN}', "invalid_json"),
        (b'{"a": -Infinity}', "invalid_json"),
        (b'{"a": ' + b"9" * 5000 + b"}", "invalid_json"),
        (b"[1, 2]", "invalid_format"),
        (b'"text"', "invalid_format"),
        (b"   ", "invalid_json"),
    ],
)
def test_bodies_that_are_not_a_usable_json_object_are_400_naming_body(h, data, code):
    status, body = call(h.echo, request(data))
    assert status == 400 and fields(body) == [("body", code)]


@pytest.mark.parametrize(
    ("document", "field", "code"),
    [
        ('{"street": "中山\\u0000路"}', "street", "invalid_character"),
        ('{"a": {"b": ["\\ud800"]}}', "a.b[0]", "invalid_character"),
        ('{"n": 99999999999999999999}', "n", "out_of_range"),
        ('{"x": 1e400}', "x", "invalid_format"),
        ('{"k\\u0001": 1}', '["k\\u0001"]', "invalid_character"),
    ],
)
def test_json_values_the_store_cannot_hold_are_400_naming_the_field(h, document, field, code):
    status, body = call(h.echo, request(document))
    assert status == 400 and fields(body) == [(field, code)]


def test_a_reason_echoing_a_lone_surrogate_is_still_a_json_answer(h):
    @http_json
    def echoes(self: Any, request: Any) -> Any:
        raise ValidationFailed([__import__("tuoyu_shared.validation").validation.FieldError(
            "a", "got \ud800", "invalid_character")])

    status, body = call(lambda r: echoes(h, r), request(b"{}"))
    assert status == 400 and body["errors"][0]["reason"] == "got \ud800"


@pytest.mark.parametrize(
    ("query", "field", "code"),
    [
        ("offset=99999999999999999999", "offset", "out_of_range"),
        ("offset=-1", "offset", "out_of_range"),
        ("limit=0", "limit", "out_of_range"),
        ("limit=1001", "limit", "out_of_range"),
        ("limit=abc", "limit", "invalid_format"),
        ("limit=1.5", "limit", "invalid_format"),
        ("limit=%C2%B2", "limit", "invalid_format"),  # a superscript two: not a digit here
        ("offset=%D9%A1", "offset", "invalid_format"),  # an Arabic-Indic one
        ("limit=1%002", "limit", "invalid_character"),
        ("limit=%ff", "limit", "invalid_encoding"),
        ("li%00mit=1", '"li\\u0000mit"', "invalid_character"),
        ("district=" + "x" * 1001, "district", "too_long"),
        ("&".join(f"p{i}=1" for i in range(51)), "query", "too_long"),
    ],
)
def test_query_parameters_are_checked_and_named(h, query, field, code):
    status, body = call(h.page, request(query=query, method="GET"))
    assert status == 400 and fields(body) == [(field, code)]


def test_query_int_within_bounds_and_defaults(h):
    assert call(h.page, request(query="offset=+5&limit= 7 ", method="GET")) == (
        200, {"offset": 5, "limit": 7})
    assert call(h.page, request(query="offset=&limit=", method="GET")) == (
        200, {"offset": 0, "limit": 100})


def test_path_parameters_and_context_headers_are_checked(h):
    status, body = call(h.echo, request(b"{}"), institution_id="a\x00b")
    assert status == 400 and fields(body) == [("institution_id", "invalid_character")]
    status, body = call(h.echo, request(b"{}"), "x" * 201)
    assert status == 400 and fields(body) == [("institution_id", "too_long")]
    status, body = call(h.echo, request(b"{}", headers={"X-Actor": "officer\x01"}))
    assert status == 400 and fields(body) == [("X-Actor", "invalid_character")]
    status, body = call(h.echo, request(b"{}", headers={"X-Department": "d" * 201}))
    assert status == 400 and fields(body) == [("X-Department", "too_long")]


def test_a_query_parameter_without_a_name_is_reported_as_query(h):
    status, body = call(h.page, request(query="=%1F", method="GET"))
    assert status == 400 and fields(body) == [("query", "invalid_character")]


def test_raw_bytes_in_the_query_string_must_be_utf8(h):
    req = request(method="GET")
    req.environ["QUERY_STRING"] = "district=\xe4\xb8\xad"  # WSGI: bytes as latin-1; "中"
    assert call(h.page, req)[0] == 200
    req = request(method="GET")
    req.environ["QUERY_STRING"] = "district=\xff"
    status, body = call(h.page, req)
    assert status == 400 and fields(body) == [("district", "invalid_encoding")]
