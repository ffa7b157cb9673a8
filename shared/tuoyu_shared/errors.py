"""One error vocabulary for every service: each error a command or a query may answer with
carries its machine code and its HTTP status.

Pure Python, no I/O. Each service names its errors in its own domain terms
(``InstitutionNotFound``, ``PractitionerNotFound``, …) as subclasses of these; the adapters map
by ``code`` and ``http_status``, never by class name:

- :class:`~tuoyu_shared.validation.ValidationFailed`: ``validation_failed``, 400: bad input,
  each field named (its subclass ``BodyTooLarge`` in :mod:`tuoyu_shared.nameko_support`:
  ``payload_too_large``, 413);
- :class:`NotFound`: ``not_found``, 404: no such record;
- :class:`DomainRuleViolated`: ``rule_violated``, 409: the state or a rule does not allow the
  command; ``state`` says which state it was refused in;
- :class:`Conflict`: ``conflict``, 409: other commands kept changing the record while this one
  tried to save it (try again);
- :class:`Erased`: ``erased``, 410: the data was erased for good
  (:class:`~tuoyu_shared.personal_data.PersonalDataErased`).

The body of an error (:meth:`TuoyuError.to_dict`, what HTTP answers) is
``{"error": <class name>, "code": <code>, "reason": <message>}``, with ``"state"`` when there is
one and ``"details"`` when given. ``ValidationFailed`` keeps its own body,
``{"error": "validation_failed", "errors": [{field, code, reason}, …]}``.

Over RPC, nameko sends an exception as its class name, ``str()`` and ``args``. A TuoyuError's
last argument is therefore ``{"tuoyu_error": {"code", "http_status", "body"}}`` (:data:`WIRE_KEY`),
which :class:`tuoyu_shared.rpc.RemoteError` reads back into ``code``, ``http_status`` and
``body`` (nameko turns every value that is not a string, a list or a dict into a string on
the way: the status, sent as ``"409"``, is read back as an int; other such values in the body
stay strings). ``str()`` and ``repr()`` show the message only, and errors survive pickling
(import worker processes send them back).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

__all__ = [
    "WIRE_KEY",
    "Conflict",
    "DomainRuleViolated",
    "Erased",
    "NotFound",
    "TuoyuError",
    "wire_error",
]

#: The key of the argument that carries a TuoyuError's code, status and body over RPC.
WIRE_KEY = "tuoyu_error"


class TuoyuError(Exception):
    """The base of every error an application answers with (not of bugs, nor of outages).

    ``code`` (a short machine string) and ``http_status`` are class attributes; ``message`` is
    an English sentence for a person; ``state`` optionally names the state a command was
    refused in, ``details`` optionally adds JSON-able facts to the body. A subclass that sets
    attributes its :meth:`to_dict` reads sets them before calling ``TuoyuError.__init__``
    (the body is built there, for the RPC argument).
    """

    code: ClassVar[str] = "error"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, *, state: str | None = None,
                 details: Mapping[str, Any] | None = None) -> None:
        self.message = message
        self.state = state
        self.details = dict(details or {})
        super().__init__(message, {WIRE_KEY: self.wire()})

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"

    def __reduce__(self) -> Any:
        # The constructors of subclasses differ; rebuild from the arguments and attributes.
        return _rebuild, (type(self), self.args, self.__dict__)

    def to_dict(self) -> dict[str, Any]:
        """The error's body: what HTTP answers, and what RPC callers get as ``body``."""
        body: dict[str, Any] = {"error": type(self).__name__, "code": self.code,
                                "reason": self.message}
        if self.state:
            body["state"] = self.state
        if self.details:
            body["details"] = self.details
        return body

    def wire(self) -> dict[str, Any]:
        """What the RPC argument carries: code, HTTP status and body."""
        return {"code": self.code, "http_status": self.http_status, "body": self.to_dict()}


def _rebuild(cls: type[TuoyuError], args: tuple[Any, ...],
             state: dict[str, Any]) -> TuoyuError:
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


def wire_error(exc_args: Any) -> dict[str, Any] | None:
    """The code, HTTP status (an int) and body of an error sent over RPC, from the arguments
    nameko sent (``exc_args``); None when the remote error was not a TuoyuError."""
    if not isinstance(exc_args, (list, tuple)) or not exc_args:
        return None
    last = exc_args[-1]
    wire = last.get(WIRE_KEY) if isinstance(last, dict) else None
    if not isinstance(wire, dict) or not isinstance(wire.get("code"), str):
        return None
    try:
        status = int(wire.get("http_status"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    body = wire.get("body")
    return {"code": wire["code"], "http_status": status,
            "body": body if isinstance(body, dict) else {}}


class NotFound(TuoyuError, LookupError):
    """No such record (404)."""

    code = "not_found"
    http_status = 404


class DomainRuleViolated(TuoyuError):
    """A command that the current state or a rule of the regulations does not allow (409).

    ``state`` names the state the command was refused in (e.g. the state of a listing), so a
    caller can tell an officer why, and what would be allowed instead.
    """

    code = "rule_violated"
    http_status = 409

    def __init__(self, message: str, state: str | None = None, *,
                 details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message, state=state, details=details)


class Conflict(TuoyuError):
    """The record was changed by other commands each time this one tried to save (409): the
    caller may try again."""

    code = "conflict"
    http_status = 409


class Unauthenticated(TuoyuError):
    """No valid token: missing, malformed, signed by an unknown key, expired or revoked
    (401)."""

    code = "unauthenticated"
    http_status = 401


class Forbidden(TuoyuError):
    """The caller's role, department, district or institution does not allow this (403)."""

    code = "forbidden"
    http_status = 403


class Unavailable(TuoyuError):
    """Something the request needs is away for now (503): try again later."""

    code = "unavailable"
    http_status = 503


class Erased(TuoyuError):
    """The data asked for, or to be written, was erased for good (410)."""

    code = "erased"
    http_status = 410


class RelayedError(TuoyuError):
    """An error another service answered a call of this one with, passed on as it was (its
    code, HTTP status and reason), so the caller's caller is told what went wrong there."""

    def __init__(self, code: str, http_status: int, message: str,
                 body: Mapping[str, Any] | None = None) -> None:
        self.code = code  # type: ignore[misc]
        self.http_status = http_status  # type: ignore[misc]
        body = dict(body or {})
        super().__init__(message, state=body.get("state"), details=body.get("details"))

