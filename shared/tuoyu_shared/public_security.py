"""The practitioner background check (从业人员入职查询): an adapter to the public-security
records inquiry (公安机关违法犯罪记录查询).

未成年人保护法 第62条 asks every institution that looks after children to inquire, when it
hires and regularly after, whether a practitioner has a record of sexual offences (性侵害),
abuse (虐待), violence (暴力伤害) or trafficking (拐卖); a person with such a record may not be
hired. The inquiry is answered by the public-security system, outside Tuoyu: this module is
Tuoyu's side of it.

- :class:`PublicSecurityInquiry` is the port the services depend on: ``inquire(request)``
  sends an :class:`InquiryRequest` and returns the :class:`InquiryAnswer`, or ``None`` when the
  external system accepted the inquiry but has no answer yet (ask again later with
  ``status(request_id)``).
- :class:`HttpPublicSecurityInquiry` implements it over HTTP, with the standard library only
  (the runtime needs nothing new). The HTTP contract is documented in
  :mod:`tuoyu_shared.simulators.public_security`, whose simulator ``make run`` and the tests
  use in place of the real system.
- :func:`inquiry_from_env` builds the adapter from ``TUOYU_PUBLIC_SECURITY_*``.

Why the failures are shaped as they are: a hire waits for an answer (the hire stays pending)
and is **never** treated as cleared because the external system could not answer. Every
failure therefore raises, and none returns an answer:

- :class:`InquiryUnavailable` (503): no usable answer this time (connection refused, timeout,
  a 5xx, a redirect, an answer that is not the contract's JSON); ask again later with the
  same request (the inquiry is idempotent by ``request_id``). :class:`InquiryUnauthorized`,
  one of them, is Tuoyu's credential refused (401/403): the hire still waits, and the
  operators must fix the configuration; the officer cannot.
- :class:`InquiryRejected` (400): the request itself is wrong (e.g. an ID number that is not a
  valid resident ID, or a request id reused for another person): retrying the same request
  will not help, the data must be corrected. :class:`InquiryUnknown` (404), one of them, is
  a status asked for a request id the external system never accepted: send the inquiry again.

Personal data: the ID number (身份证号) and the name travel to the external system and
nowhere else. They are never logged (the lines carry the request id, the operation, the
outcome, the HTTP status, the reference and the duration), they are left out of the
request's ``repr``, and they are masked in any reason the external system sends back. The
result itself (record found or not) is not logged either: it belongs in the practitioner's
record, not in the logs.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, get_args, runtime_checkable

from tuoyu_shared.config import ConfigurationError
from tuoyu_shared.errors import TuoyuError, Unavailable
from tuoyu_shared.logs import get_logger
from tuoyu_shared.validation import mask_name, mask_resident_id

__all__ = [
    "CATEGORIES",
    "DEFAULT_SIMULATOR_URL",
    "HttpPublicSecurityInquiry",
    "InquiryAnswer",
    "InquiryRejected",
    "InquiryRequest",
    "InquiryUnauthorized",
    "InquiryUnavailable",
    "InquiryUnknown",
    "PublicSecurityInquiry",
    "inquiry_from_env",
]

log = get_logger("tuoyu.public_security")

Purpose = Literal["hire", "yearly"]
Result = Literal["no_record", "record_found"]
Category = Literal["sexual_offence", "abuse", "violence", "trafficking"]

#: Why an inquiry is made: on hiring (入职查询) or the regular inquiry after (定期查询).
PURPOSES: tuple[str, ...] = get_args(Purpose)
RESULTS: tuple[str, ...] = get_args(Result)
#: The offences 第62条 names: 性侵害, 虐待, 暴力伤害 (violence), 拐卖 (trafficking).
CATEGORIES: tuple[str, ...] = get_args(Category)

#: Where ``make run``'s simulator listens; the adapter's URL outside production when
#: ``TUOYU_PUBLIC_SECURITY_URL`` is unset (nothing listening there is an outage, never a clear).
DEFAULT_SIMULATOR_URL = "http://127.0.0.1:8090"

#: What a request id may be: it is a path segment of ``GET /inquiries/{request_id}``.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}")

#: An answer larger than this is not the contract's: refused unread.
MAX_ANSWER_BYTES = 64 * 1024

URL_VAR = "TUOYU_PUBLIC_SECURITY_URL"
CLIENT_ID_VAR = "TUOYU_PUBLIC_SECURITY_CLIENT_ID"
CLIENT_SECRET_VAR = "TUOYU_PUBLIC_SECURITY_CLIENT_SECRET"
TIMEOUT_VAR = "TUOYU_PUBLIC_SECURITY_TIMEOUT"


# ---------------------------------------------------------------------------
# What is asked and what is answered
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class InquiryRequest:
    """One inquiry about one person.

    ``request_id`` is Tuoyu's own id of the inquiry (e.g. the hire's check id): the external
    system keeps its answer by it, so sending the same request again (after a timeout, say)
    returns the same reference and result instead of a second inquiry. ``requested_by``
    names who asks (the institution or officer, as the external system knows them).
    ``id_number`` and ``name`` are left out of ``repr``: a request in a traceback or a log
    line shows neither.
    """

    request_id: str
    id_number: str = field(repr=False)
    name: str = field(repr=False)
    purpose: Purpose
    requested_by: str

    def __post_init__(self) -> None:
        # Programming errors, not input errors: the application validated its input before.
        if not isinstance(self.request_id, str) or not REQUEST_ID_PATTERN.fullmatch(
                self.request_id):
            raise ValueError("request_id must be 1-100 characters of letters, digits and "
                             "._:- (it is part of a URL), starting with a letter or digit")
        if self.purpose not in PURPOSES:
            raise ValueError(f"purpose must be one of {', '.join(PURPOSES)}, "
                             f"got {self.purpose!r}")
        for name in ("id_number", "name", "requested_by"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise ValueError(f"{name} is required")

    def to_json(self) -> dict[str, str]:
        """The body of ``POST /inquiries``."""
        return {"request_id": self.request_id, "id_number": self.id_number, "name": self.name,
                "purpose": self.purpose, "requested_by": self.requested_by}


@dataclass(frozen=True)
class InquiryAnswer:
    """The external system's answer to one inquiry.

    ``reference`` is the external system's number of the inquiry (查询编号, e.g.
    ``GA-2026-000123``): it is what the practitioner's record keeps as proof the inquiry was
    made. ``categories`` is empty for ``"no_record"`` and names the offences found for
    ``"record_found"`` (a subset of :data:`CATEGORIES`). ``answered_at`` is in UTC.
    """

    request_id: str
    reference: str
    result: Result
    categories: tuple[str, ...]
    answered_at: datetime

    @property
    def record_found(self) -> bool:
        return self.result == "record_found"


@runtime_checkable
class PublicSecurityInquiry(Protocol):
    """The port: what a service needs of the public-security records inquiry."""

    def inquire(self, request: InquiryRequest) -> InquiryAnswer | None:
        """Send the inquiry (again: idempotent by ``request.request_id``); its answer, or
        ``None`` when accepted but not answered yet (ask :meth:`status` later). Raises
        :class:`InquiryUnavailable` or :class:`InquiryRejected`, never a made-up answer."""
        ...

    def status(self, request_id: str) -> InquiryAnswer | None:
        """The answer to an inquiry sent before, or ``None`` while it is still pending."""
        ...


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


class InquiryUnavailable(Unavailable):
    """The external system gave no usable answer this time (503): the check stays pending;
    ask again later with the same request. The message says what went wrong."""

    code = "inquiry_unavailable"


class InquiryUnauthorized(InquiryUnavailable):
    """The external system refused Tuoyu's credential (401 or 403): a configuration problem
    for the operators (``TUOYU_PUBLIC_SECURITY_CLIENT_ID`` / ``_SECRET``), not something the
    officer or the practitioner can fix. An outage as far as the check is concerned: it
    stays pending, never cleared."""

    code = "inquiry_unauthorized"


class InquiryRejected(TuoyuError):
    """The external system refused the request itself (a 4xx, e.g. an invalid ID number, or a
    request id reused for another person): sending it again will not help; the data must be
    corrected. ``details`` carries the external HTTP status and, when it named them, the
    field and its code."""

    code = "inquiry_rejected"
    http_status = 400


class InquiryUnknown(InquiryRejected):
    """A status asked for a request id the external system does not know (404): the inquiry
    never arrived there; send it again with :meth:`PublicSecurityInquiry.inquire`."""

    code = "inquiry_unknown"
    http_status = 404


# ---------------------------------------------------------------------------
# The HTTP adapter
# ---------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are not followed: urllib would turn the POST into a GET without its body,
    and an inquiry's answer comes from the configured address or not at all."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> None:
        return None


class HttpPublicSecurityInquiry:
    """:class:`PublicSecurityInquiry` over the JSON HTTP API of
    :mod:`tuoyu_shared.simulators.public_security`.

    ``timeout`` (seconds) bounds the connection and each read. ``client_id`` and
    ``client_secret``, when given (both or neither), are sent as HTTP Basic credentials. One
    call is one HTTP request: retrying is the caller's (a pending check asked again later),
    which the external system's idempotency by request id makes safe.
    """

    def __init__(self, base_url: str, timeout: float = 5.0, client_id: str | None = None,
                 client_secret: str | None = None) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(
                f"the public-security inquiry URL must be an http(s) URL, got {base_url!r}")
        if parts.query or parts.fragment:
            raise ConfigurationError(
                "the public-security inquiry URL must have no query or fragment")
        if not timeout > 0:
            raise ConfigurationError(f"the inquiry timeout must be positive, got {timeout}")
        if bool(client_id) != bool(client_secret):
            raise ConfigurationError("the public-security client id and secret go together: "
                                     "give both or neither")
        if client_id and ":" in client_id:
            raise ConfigurationError("the public-security client id must not contain ':'")
        self.base_url = base_url.rstrip("/")
        self.timeout = float(timeout)
        self._authorization: str | None = None
        if client_id and client_secret:
            token = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode("ascii")
            self._authorization = f"Basic {token}"
        self._opener = urllib.request.build_opener(_NoRedirect)

    def __repr__(self) -> str:  # the secret stays out
        return f"HttpPublicSecurityInquiry({self.base_url!r}, timeout={self.timeout})"

    # The port

    def inquire(self, request: InquiryRequest) -> InquiryAnswer | None:
        return self._call("inquire", "POST", "/inquiries", request.request_id,
                          body=request.to_json(), request=request)

    def status(self, request_id: str) -> InquiryAnswer | None:
        if not isinstance(request_id, str) or not REQUEST_ID_PATTERN.fullmatch(request_id):
            raise ValueError("request_id must be 1-100 characters of letters, digits and ._:-")
        path = "/inquiries/" + urllib.parse.quote(request_id, safe="")
        return self._call("status", "GET", path, request_id)

    # One HTTP exchange

    def _call(self, operation: str, method: str, path: str, request_id: str, *,
              body: Mapping[str, Any] | None = None,
              request: InquiryRequest | None = None) -> InquiryAnswer | None:
        started = time.monotonic()
        facts: dict[str, Any] = {"request_id": request_id, "operation": operation}
        try:
            status, raw = self._exchange(method, path, body)
            facts["http_status"] = status
            answer = self._interpret(status, raw, request_id, request)
        except InquiryUnauthorized as e:
            log.error("public_security.inquiry", outcome="unauthorized",
                      duration_ms=_ms(started), reason=e.message, **facts)
            raise
        except InquiryUnavailable as e:
            log.warning("public_security.inquiry", outcome="unavailable",
                        duration_ms=_ms(started), reason=e.message, **facts)
            raise
        except InquiryRejected as e:
            # The external reason may quote what was sent: only its field and code are logged.
            log.warning("public_security.inquiry", outcome="rejected",
                        duration_ms=_ms(started), field=e.details.get("field"),
                        external_code=e.details.get("external_code"), **facts)
            raise
        if answer is None:
            log.info("public_security.inquiry", outcome="pending", duration_ms=_ms(started),
                     **facts)
        else:
            log.info("public_security.inquiry", outcome="answered", duration_ms=_ms(started),
                     reference=answer.reference, **facts)
        return answer

    def _exchange(self, method: str, path: str,
                  body: Mapping[str, Any] | None) -> tuple[int, bytes]:
        """(HTTP status, at most :data:`MAX_ANSWER_BYTES` + 1 bytes of body); raises
        :class:`InquiryUnavailable` when no answer came."""
        headers = {"Accept": "application/json", "User-Agent": "tuoyu-public-security/1"}
        data = None
        if body is not None:
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
            headers["Content-Type"] = "application/json; charset=utf-8"
        if self._authorization:
            headers["Authorization"] = self._authorization
        http_request = urllib.request.Request(self.base_url + path, data=data, method=method,
                                              headers=headers)
        where = f"the public-security inquiry system at {self.base_url}"
        try:
            with self._opener.open(http_request, timeout=self.timeout) as response:
                return response.status, response.read(MAX_ANSWER_BYTES + 1)
        except urllib.error.HTTPError as e:  # an answer, with a status that is not 2xx
            try:
                raw = e.read(MAX_ANSWER_BYTES + 1)
            except (OSError, http.client.HTTPException):
                raw = b""
            finally:
                e.close()
            return e.code, raw
        except urllib.error.URLError as e:
            reason = e.reason
            if isinstance(reason, TimeoutError):
                raise InquiryUnavailable(
                    f"{where} did not answer within {self.timeout:g} s") from None
            if isinstance(reason, ConnectionRefusedError):
                raise InquiryUnavailable(
                    f"{where} refused the connection (is it running?)") from None
            raise InquiryUnavailable(f"{where} could not be reached: {reason}") from None
        except TimeoutError:
            raise InquiryUnavailable(
                f"{where} did not answer within {self.timeout:g} s") from None
        except (http.client.HTTPException, OSError) as e:
            raise InquiryUnavailable(
                f"{where} broke the connection before answering ({type(e).__name__})"
            ) from None

    def _interpret(self, status: int, raw: bytes, request_id: str,
                   request: InquiryRequest | None) -> InquiryAnswer | None:
        what = f"the public-security inquiry system answered HTTP {status}"
        if 200 <= status < 300:
            return _answer_from(_json_object(raw, what), request_id, what)
        if 300 <= status < 400:
            raise InquiryUnavailable(f"{what}, a redirect, which is not followed: is "
                                     f"{URL_VAR} the system's address?")
        if status in (401, 403):
            raise InquiryUnauthorized(f"{what}: Tuoyu's credential was refused (check "
                                      f"{CLIENT_ID_VAR} and {CLIENT_SECRET_VAR})")
        if status in (408, 429) or status >= 500:
            raise InquiryUnavailable(f"{what}: try again later")
        # Any other 4xx: the request itself was refused.
        refusal = _refusal(raw)
        reason = _scrubbed(refusal.get("reason"), request)
        details = {"external_status": status,
                   **{k: refusal[k] for k in ("field", "external_code") if refusal.get(k)}}
        if status == 404 and request is None:
            raise InquiryUnknown(f"the public-security inquiry system does not know inquiry "
                                 f"{request_id!r}: send it again", details=details)
        raise InquiryRejected(f"{what}: the request was refused"
                              + (f": {reason}" if reason else ""), details=details)


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    if len(raw) > MAX_ANSWER_BYTES:
        raise InquiryUnavailable(f"{what} with more than {MAX_ANSWER_BYTES} bytes, which is "
                                 "not an inquiry's answer")
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise InquiryUnavailable(f"{what} with a body that is not JSON") from None
    if not isinstance(value, dict):
        raise InquiryUnavailable(f"{what} with JSON that is not an object")
    return value


def _answer_from(body: Mapping[str, Any], request_id: str, what: str) -> InquiryAnswer | None:
    """The answer a 2xx body holds, or None while pending; anything off the contract is
    :class:`InquiryUnavailable` (never read as "no record")."""
    def malformed(problem: str) -> InquiryUnavailable:
        return InquiryUnavailable(f"{what} with a malformed answer: {problem}")

    if body.get("request_id") != request_id:
        raise malformed("it is not the answer to this request id")
    state = body.get("status")
    if state == "pending":
        return None
    if state != "answered":
        raise malformed(f"status must be 'answered' or 'pending', got {_shown(state)}")
    reference = body.get("reference")
    if not isinstance(reference, str) or not reference.strip() or len(reference) > 100:
        raise malformed("the reference is missing")
    result = body.get("result")
    if result not in RESULTS:
        raise malformed(f"result must be 'no_record' or 'record_found', got {_shown(result)}")
    categories = body.get("categories")
    if categories is None and result == "no_record":
        categories = []
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        raise malformed("categories must be a list of strings")
    unknown = [c for c in categories if c not in CATEGORIES]
    if unknown:
        raise malformed(f"unknown categories {', '.join(map(_shown, unknown))}")
    if result == "no_record" and categories:
        raise malformed("no record, yet categories were given")
    if result == "record_found" and not categories:
        raise malformed("a record found, yet no category was given")
    answered_at = body.get("answered_at")
    try:
        when = datetime.fromisoformat(answered_at) if isinstance(answered_at, str) else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise malformed("answered_at must be an ISO 8601 time with its offset")
    return InquiryAnswer(request_id=request_id, reference=reference.strip(),
                         result=result,  # type: ignore[arg-type]  (checked above)
                         categories=tuple(sorted(set(categories), key=CATEGORIES.index)),
                         answered_at=when.astimezone(UTC))


def _refusal(raw: bytes) -> dict[str, str]:
    """The reason, field and code of a 4xx body, those that are strings; {} otherwise."""
    try:
        body = json.loads(raw[:MAX_ANSWER_BYTES].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return {}
    if not isinstance(body, dict):
        return {}
    found = {"reason": body.get("reason"), "field": body.get("field"),
             "external_code": body.get("code")}
    return {k: v[:300] for k, v in found.items() if isinstance(v, str) and v}


def _scrubbed(reason: str | None, request: InquiryRequest | None) -> str | None:
    """The external reason with the request's ID number and name masked, should it quote
    them (the reason reaches the caller, and whatever logs the caller's errors)."""
    if reason is None or request is None:
        return reason
    for value, mask in ((request.id_number, mask_resident_id), (request.name, mask_name)):
        value = value.strip()
        if value:
            reason = reason.replace(value, mask(value))
    return reason


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "…"


# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------


def inquiry_from_env(env: Mapping[str, str] | None = None) -> HttpPublicSecurityInquiry:
    """The adapter configured by the environment.

    - ``TUOYU_PUBLIC_SECURITY_URL``: the external system's base URL. Required with
      ``TUOYU_ENVIRONMENT=production``, where it must be ``https`` (ID numbers travel in it);
      elsewhere it defaults to :data:`DEFAULT_SIMULATOR_URL`, ``make run``'s simulator. There
      is no default that answers "no record": if nothing listens, the checks stay pending.
    - ``TUOYU_PUBLIC_SECURITY_CLIENT_ID`` and ``TUOYU_PUBLIC_SECURITY_CLIENT_SECRET``
      (optional, both or neither): the credential sent with every request.
    - ``TUOYU_PUBLIC_SECURITY_TIMEOUT``: seconds (default 5).
    """
    env = os.environ if env is None else env

    def value(name: str) -> str:
        return (env.get(name) or "").strip()

    production = value("TUOYU_ENVIRONMENT") == "production"
    url = value(URL_VAR)
    if not url:
        if production:
            raise ConfigurationError(
                f"{URL_VAR} must be set in production: it is the public-security records "
                "inquiry system the practitioner background checks (第62条) are sent to; "
                "without it no check could ever be answered")
        url = DEFAULT_SIMULATOR_URL
    if production and urllib.parse.urlsplit(url).scheme != "https":
        raise ConfigurationError(f"{URL_VAR} must be an https URL in production: resident ID "
                                 "numbers are sent to it")
    raw_timeout = value(TIMEOUT_VAR) or "5"
    try:
        timeout = float(raw_timeout)
    except ValueError:
        raise ConfigurationError(
            f"{TIMEOUT_VAR} must be a number of seconds, got {raw_timeout!r}") from None
    if not 0 < timeout <= 120:
        raise ConfigurationError(f"{TIMEOUT_VAR} must be more than 0 and at most 120 seconds, "
                                 f"got {raw_timeout!r}")
    return HttpPublicSecurityInquiry(url, timeout=timeout,
                                     client_id=value(CLIENT_ID_VAR) or None,
                                     client_secret=value(CLIENT_SECRET_VAR) or None)
