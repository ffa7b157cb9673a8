"""One error vocabulary (tuoyu_shared.errors): each error's code and HTTP status, its body, the
HTTP adapter mapping by them, and the RPC client reading them back from what nameko sends."""

from __future__ import annotations

import json
import pickle
import uuid
import warnings
from types import SimpleNamespace
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError
from nameko.exceptions import serialize
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from tuoyu_shared.application import ServiceApplication
from tuoyu_shared.errors import (
    Conflict,
    DomainRuleViolated,
    Erased,
    NotFound,
    TuoyuError,
    wire_error,
)
from tuoyu_shared.personal_data import PersonalDataErased
from tuoyu_shared.rpc import RemoteError
from tuoyu_shared.validation import FieldError, ValidationFailed

with warnings.catch_warnings():  # nameko imports eventlet, which warns of its deprecation
    warnings.simplefilter("ignore")
    from tuoyu_shared import nameko_support
    from tuoyu_shared.nameko_support import http_json, read_json


class ThingNotFound(NotFound):
    """A service's own name for a missing record."""


ERRORS = [
    (ValidationFailed([FieldError("name", "is required", "required")]),
     "validation_failed", 400),
    (ThingNotFound("no thing 7"), "not_found", 404),
    (DomainRuleViolated("filed already", state="filed"), "rule_violated", 409),
    (Conflict("changed meanwhile"), "conflict", 409),
    (PersonalDataErased("personal data of abc was erased"), "erased", 410),
]


@pytest.mark.parametrize(("error", "code", "status"), ERRORS,
                         ids=[type(e).__name__ for e, _, _ in ERRORS])
def test_each_error_carries_its_code_and_status(error, code, status):
    assert isinstance(error, TuoyuError)
    assert (error.code, error.http_status) == (code, status)


def test_the_body_names_the_error_its_code_reason_and_state():
    assert DomainRuleViolated("filed already", state="filed").to_dict() == {
        "error": "DomainRuleViolated", "code": "rule_violated", "reason": "filed already",
        "state": "filed"}
    assert DomainRuleViolated("positional state", "proposed").state == "proposed"
    assert ThingNotFound("no thing 7").to_dict() == {
        "error": "ThingNotFound", "code": "not_found", "reason": "no thing 7"}
    assert Conflict("x", details={"tries": 31}).to_dict()["details"] == {"tries": 31}


def test_str_and_repr_show_the_message_only():
    error = DomainRuleViolated("filed already", state="filed")
    assert str(error) == "filed already" and repr(error) == "DomainRuleViolated('filed already')"
    failed = ValidationFailed([FieldError("x", "bad", "invalid")])
    assert str(failed) == "validation failed (1 error(s)): x: bad"
    assert repr(failed) == "ValidationFailed([FieldError('x', 'bad', 'invalid')])"


def test_kinds_of_error_stay_what_callers_catch():
    assert isinstance(ThingNotFound("x"), LookupError)
    erased = PersonalDataErased("personal data of abc was erased")
    assert isinstance(erased, PermissionError) and isinstance(erased, Erased)
    assert str(erased) == "personal data of abc was erased"


@pytest.mark.parametrize("error", [e for e, _, _ in ERRORS], ids=[type(e).__name__
                                                                 for e, _, _ in ERRORS])
def test_errors_survive_pickling(error):
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert (str(copy), copy.to_dict(), copy.args) == (str(error), error.to_dict(), error.args)


# ---- over RPC ----------------------------------------------------------------------------

def remote(error: BaseException) -> RemoteError:
    """What the RPC client raises for ``error`` raised in a nameko worker: nameko's
    serialisation, through JSON, into the client's RemoteError."""
    sent = json.loads(json.dumps(serialize(error)))
    return RemoteError(sent["exc_type"], sent["value"], sent["exc_args"])


@pytest.mark.parametrize(("error", "code", "status"), ERRORS,
                         ids=[type(e).__name__ for e, _, _ in ERRORS])
def test_the_rpc_client_gives_the_code_status_and_body(error, code, status):
    answer = remote(error)
    assert (answer.exc_type, answer.value) == (type(error).__name__, str(error))
    assert (answer.code, answer.http_status) == (code, status)
    assert answer.body == json.loads(json.dumps(error.to_dict()))


def test_a_remote_error_that_is_no_tuoyu_error_has_no_code():
    for error in (ValueError("bad", {"tuoyu_error": "not ours"}), KeyError("x"),
                  PermissionError("a file")):
        answer = remote(error)
        assert (answer.code, answer.http_status, answer.body) == (None, None, {})
    assert wire_error(None) is None and wire_error([]) is None
    assert wire_error([{"tuoyu_error": {"code": "x", "http_status": "four"}}]) is None


# ---- over HTTP ---------------------------------------------------------------------------

class Raises:
    """A handler raising whatever the test hands it."""

    def __init__(self, error: BaseException):
        self.error = error

    @http_json
    def handle(self, request: Any) -> dict[str, Any]:
        read_json(request)
        raise self.error


def answer(error: BaseException) -> tuple[int, Any]:
    request = Request(EnvironBuilder(method="POST", data="{}",
                                     content_type="application/json").get_environ())
    response = Raises(error).handle(request)
    return response.status_code, json.loads(response.get_data(as_text=True))


@pytest.mark.parametrize(("error", "code", "status"), ERRORS,
                         ids=[type(e).__name__ for e, _, _ in ERRORS])
def test_http_answers_each_error_with_its_status_and_body(error, code, status):
    assert answer(error) == (status, error.to_dict())


def test_http_bodies_keep_their_shape():
    assert answer(DomainRuleViolated("filed already", state="filed")) == (409, {
        "error": "DomainRuleViolated", "code": "rule_violated", "reason": "filed already",
        "state": "filed"})
    assert answer(ValidationFailed([FieldError("name", "is required", "required")])) == (400, {
        "error": "validation_failed",
        "errors": [{"field": "name", "code": "required", "reason": "is required"}]})


def test_an_unknown_exception_is_a_500_without_details(monkeypatch):
    logged: list[str] = []
    monkeypatch.setattr(nameko_support.log, "exception",
                        lambda event, **kw: logged.append(event))
    assert answer(RuntimeError("secret detail")) == (500, {"error": "internal_error"})
    assert logged == ["http.unhandled_error"]


def test_a_permission_error_of_the_os_is_no_erasure(monkeypatch):
    # Mapped by class name, any PermissionError was a 410 "erased" with its reason (a path).
    monkeypatch.setattr(nameko_support.log, "exception", lambda event, **kw: None)
    assert answer(PermissionError("[Errno 13] /etc/tuoyu/key")) == (
        500, {"error": "internal_error"})


def test_the_status_map_by_class_name_is_gone():
    assert not hasattr(nameko_support, "HTTP_STATUS_BY_ERROR")


# ---- conflicts ---------------------------------------------------------------------------

def test_a_command_that_keeps_conflicting_is_a_conflict_not_a_500():
    """update() retries a version conflict; when the retries run out the library's
    IntegrityError escaped, which the adapter answered with a 500."""
    saved: list[Any] = []

    def save(*objs: Any) -> None:
        saved.append(objs)
        raise IntegrityError("duplicate key value violates unique constraint")

    app = SimpleNamespace(repository=SimpleNamespace(get=lambda aggregate_id: object()),
                          save=save)
    with pytest.raises(Conflict) as e:
        ServiceApplication.update(app, uuid.uuid4(), lambda aggregate: None, retries=2)
    assert len(saved) == 3 and isinstance(e.value.__cause__, IntegrityError)
    assert "duplicate key" not in str(e.value)  # no table or constraint names in an answer
    assert answer(e.value)[0] == 409
