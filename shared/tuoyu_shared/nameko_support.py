"""Thin-adapter helpers for nameko services: the application as a dependency, the command
context from RPC headers or HTTP headers, and errors mapped to HTTP statuses.

Import this only in nameko processes (``python -m tuoyu_shared.serve``), after eventlet's
monkey patching.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import sys
from collections.abc import Callable
from contextlib import ExitStack
from functools import partial, wraps
from typing import Any
from urllib.parse import unquote, unquote_to_bytes

from nameko.amqp.publish import Publisher
from nameko.constants import (
    AMQP_SSL_CONFIG_KEY,
    AMQP_URI_CONFIG_KEY,
    DEFAULT_SERIALIZER,
    LOGIN_METHOD_CONFIG_KEY,
    SERIALIZER_CONFIG_KEY,
)
from nameko.exceptions import ContainerBeingKilled, MalformedRequest
from nameko.extensions import DependencyProvider
from nameko.rpc import Responder, Rpc, RpcConsumer, get_rpc_exchange
from nameko.web.handlers import http
from opentelemetry.trace import SpanKind
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Response

from tuoyu_shared import tracing
from tuoyu_shared.context import command_context, current_context
from tuoyu_shared.envelope import to_json_value
from tuoyu_shared.errors import TuoyuError
from tuoyu_shared.logs import get_logger
from tuoyu_shared.metrics import EventLogCollector, render
from tuoyu_shared.nameko_metrics import RequestMetrics
from tuoyu_shared.validation import (
    BIGINT_MAX,
    BIGINT_MIN,
    MAX_DEPTH,
    FieldError,
    ValidationFailed,
    Validator,
    check_json_value,
    check_text_characters,
)

log = get_logger("tuoyu.http")


class _ReplyPublisher(Publisher):
    """Publishes an RPC reply without waiting for the broker's confirm. A reply is only
    ever a message to a caller that is waiting for it (on a queue of its own, which the
    broker keeps in memory): a confirm would tell that the broker took it, not that the
    caller got it, and a reply lost either way is the caller's timeout (503, outcome
    unknown: the request ran at most once). The wait for the confirm was a round trip to
    the broker in every command."""

    use_confirms = False


class _Responder(Responder):
    publisher_cls = _ReplyPublisher


class _AckedAtStartConsumer(RpcConsumer):
    """nameko's RPC consumer, which acks a request once its worker has started
    (:class:`AtMostOnceRpc`) rather than after its reply, and sends the reply without a
    publisher confirm (:class:`_ReplyPublisher`)."""

    def handle_result(self, message: Any, result: Any, exc_info: Any) -> Any:
        config = self.container.config
        responder = _Responder(config[AMQP_URI_CONFIG_KEY], get_rpc_exchange(config),
                              config.get(SERIALIZER_CONFIG_KEY, DEFAULT_SERIALIZER), message,
                              ssl=config.get(AMQP_SSL_CONFIG_KEY),
                              login_method=config.get(LOGIN_METHOD_CONFIG_KEY))
        result, exc_info = responder.send_response(result, exc_info)
        if not message.acknowledged:  # refused before its worker started
            self.queue_consumer.ack_message(message)
        return result, exc_info


class AtMostOnceRpc(Rpc):
    """An RPC entrypoint that runs each request at most once.

    nameko acks a request after its reply: a process killed after a command committed and
    before the ack gets the request again from the broker once it is back, and runs the
    command a second time (two hires for one request; or a refusal, "already registered",
    answered for a command that succeeded). Here the request is acked as soon as its worker
    has started. A process that dies while running it leaves the caller without a reply (a
    timeout: 503, outcome unknown, as any lost answer over a network), never with the
    command run twice. Requests not yet started when a process dies (prefetched, waiting for
    a worker) are not acked, and go to another process."""

    rpc_consumer = _AckedAtStartConsumer()

    def handle_message(self, body: Any, message: Any) -> None:
        try:
            args = body["args"]
            kwargs = body["kwargs"]
        except KeyError:
            raise MalformedRequest("Message missing `args` or `kwargs`") from None
        self.check_signature(args, kwargs)
        context_data = self.unpack_message_headers(message)
        handle_result = partial(self.handle_result, message)
        try:
            self.container.spawn_worker(self, args, kwargs, context_data=context_data,
                                        handle_result=handle_result)
        except ContainerBeingKilled:
            self.rpc_consumer.requeue_message(message)
            return
        self.rpc_consumer.queue_consumer.ack_message(message)

    def handle_result(self, message: Any, worker_ctx: Any, result: Any, exc_info: Any) -> Any:
        """A request that failed because something it needs is away (the service's database
        restarting, another service not answering) is answered as
        :class:`~tuoyu_shared.errors.Unavailable` (503: try again), not as a failure of the
        service (502)."""
        if exc_info is not None and _is_outage(exc_info[1]):
            from tuoyu_shared.errors import Unavailable

            log.warning("rpc.unavailable", method=worker_ctx.entrypoint.method_name,
                        error=repr(exc_info[1])[:300])
            try:
                raise Unavailable(f"{worker_ctx.service_name} cannot serve this request "
                                  "now (a store or service it needs is away): try again"
                                  ) from exc_info[1]
            except Unavailable:
                exc_info = sys.exc_info()
        return super().handle_result(message, worker_ctx, result, exc_info)


def _is_outage(error: BaseException) -> bool:
    from tuoyu_shared.consumer import OUTAGE, failure_kind
    from tuoyu_shared.errors import TuoyuError

    return not isinstance(error, TuoyuError) and failure_kind(error) == OUTAGE


#: The services' RPC entrypoint decorator (at most once: :class:`AtMostOnceRpc`).
rpc = AtMostOnceRpc.decorator


class ApplicationProvider(DependencyProvider):
    """One application instance per service process, built at container start."""

    def __init__(self, factory: Callable[[], Any]):
        self.factory = factory
        self.app: Any = None

    def setup(self) -> None:
        self.app = self.factory()

    def get_dependency(self, worker_ctx: Any) -> Any:
        return self.app


class CommandContextProvider(DependencyProvider):
    """Opens a command context for each worker from the RPC call's ``nameko.*`` headers.

    Who acts is proven, not claimed: when the call carries a token (``authorization``, put
    there by the gateway for the person it authenticated), it is verified here against the
    configured keys (:class:`~tuoyu_shared.auth.KeyRing`), and the actor and department
    that the command's events record are the token's, whatever other header says. A call
    with a token that does not verify is refused. Calls without one come from inside the
    system (another service, a consumer filling a gap, a timer, ops tools): their context
    headers are taken as sent. HTTP requests to a service carry no identity: the services'
    own ports serve only ``/health`` and ``/metrics``.
    """

    def __init__(self) -> None:
        self._stacks: dict[Any, ExitStack] = {}
        self._principals: dict[Any, Any] = {}
        self._audit_url: str | None = None
        self.keys: Any = None

    def setup(self) -> None:
        from tuoyu_shared.auth import KeyRing

        self.keys = KeyRing.from_env()

    def worker_setup(self, worker_ctx: Any) -> None:
        from tuoyu_shared.auth import TokenInvalid

        data = dict(worker_ctx.context_data)
        token = data.get("authorization")
        principal = None
        if token:
            try:
                principal = self.keys.verify(str(token))
            except TokenInvalid as e:
                log.warning("rpc.token_refused", reason=e.reason, code=e.code,
                            method=worker_ctx.entrypoint.method_name)
                self._refuse(worker_ctx, e.reason)
        if principal is not None and principal.role == "auditor":
            try:
                self._record_audited_call(worker_ctx, principal,
                                          data.get("correlation_id") or "")
            except Exception as e:  # an auditor's read that cannot be recorded is not served
                log.error("call.audit_failed", error=repr(e),
                          method=worker_ctx.entrypoint.method_name)
                self._refuse(worker_ctx, "", unavailable="the read could not be recorded")
        stack = ExitStack()
        stack.enter_context(command_context(
            actor=principal.subject if principal else data.get("actor"),
            department=principal.department if principal else data.get("department"),
            correlation_id=data.get("correlation_id"), causation_id=data.get("causation_id")))
        if principal is not None:
            from tuoyu_shared.context import acting_as

            stack.enter_context(acting_as(principal))
        if tracing.enabled():
            stack.enter_context(tracing.span(
                f"rpc {worker_ctx.service_name}.{worker_ctx.entrypoint.method_name}",
                current_context().correlation_id, SpanKind.SERVER,
                traceparent=data.get("traceparent"), service=worker_ctx.service_name,
                method=worker_ctx.entrypoint.method_name))
        self._stacks[worker_ctx] = stack
        self._principals[worker_ctx] = principal

    def _record_audited_call(self, worker_ctx: Any, principal: Any, correlation_id: str) -> None:
        """An auditor's call, recorded before it runs (a read that fails is recorded too):
        the method and the ids it names (short strings), never a body."""
        import psycopg
        from psycopg.types.json import Jsonb

        from tuoyu_shared.config import settings_for

        # jsonb refuses NUL: an id that holds one is recorded with it escaped, never refused
        ids = [a.replace("\x00", "\\u0000") for a in worker_ctx.args
               if isinstance(a, str) and len(a) <= 100]
        if self._audit_url is None:
            self._audit_url = settings_for(worker_ctx.service_name).database_url
        with psycopg.connect(self._audit_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO audited_calls (subject, role, department, district, method, "
                "arguments, correlation_id) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (principal.subject, principal.role, principal.department, principal.district,
                 worker_ctx.entrypoint.method_name, Jsonb(ids), str(correlation_id)[:100]))
        log.info("call.audited", actor=principal.subject,
                 method=worker_ctx.entrypoint.method_name)

    @staticmethod
    def _refuse(worker_ctx: Any, reason: str, unavailable: str | None = None) -> None:
        """The call runs nothing: its method is replaced, for this worker only, by one that
        answers 401 (or 503 when ``unavailable`` says why; nameko looks the method up after
        the workers' set-up)."""
        from tuoyu_shared.errors import Unauthenticated, Unavailable

        def refused(*args: Any, **kwargs: Any) -> Any:
            if unavailable:
                raise Unavailable(unavailable)
            raise Unauthenticated(f"the call's token was refused: {reason}")

        setattr(worker_ctx.service, worker_ctx.entrypoint.method_name, refused)

    def worker_teardown(self, worker_ctx: Any) -> None:
        stack = self._stacks.pop(worker_ctx, None)
        self._principals.pop(worker_ctx, None)
        if stack is not None:
            stack.close()

    def get_dependency(self, worker_ctx: Any) -> Any:
        return self


_READINESS: dict[str, Any] = {}


def readiness_of(service: str) -> Any:
    """The service process's :class:`~tuoyu_shared.readiness.Readiness` (one per process)."""
    if service not in _READINESS:
        from tuoyu_shared.config import settings_for
        from tuoyu_shared.readiness import Readiness

        settings = settings_for(service)
        _READINESS[service] = Readiness.for_service(service, settings.database_url,
                                                    settings.amqp_uri)
    return _READINESS[service]


class HealthEntrypoints:
    """``/health/live`` (the process answers) and ``/health/ready`` (its database and broker
    answer and its schema is current: :mod:`tuoyu_shared.readiness`) on the service's port."""

    name: str

    @http("GET", "/health/live")
    def health_live(self, request: Any) -> Response:
        return json_response({"service": self.name, "status": "live"})

    @http("GET", "/health/ready")
    def health_ready(self, request: Any) -> Response:
        status, body = readiness_of(self.name).check()
        return json_response(body, status)


class EventLogEntrypoints(HealthEntrypoints):
    """What every event-sourced service exposes beside its own API: its notification log as
    envelopes (consumers pull missing ranges from it), its head, a health check and its
    metrics; every entrypoint call of the service is counted and timed (:class:`RequestMetrics`).

    Mix into a nameko service class that has an ``app`` (a ServiceApplication) dependency.
    """

    app: Any
    name: str
    request_metrics = RequestMetrics()

    @rpc
    def notifications(self, start: int, limit: int = 500, stop: int | None = None) -> list:
        """The notification log as envelopes, ``start`` to ``stop`` (at most 1000)."""
        v = Validator({"start": start, "limit": limit, "stop": stop})
        start = v.integer("start", min_value=1)
        limit = v.integer("limit", min_value=1, max_value=1000)
        stop = v.integer("stop", min_value=1, required=False)
        v.check()
        return [e.to_dict() for e in self.app.read_log(start, limit, stop)]

    @rpc
    def log_head(self) -> int:
        return self.app.log_head()

    @rpc
    def audited_calls(self, subject: str | None = None, after: int = 0,
                      limit: int = 100) -> list[dict[str, Any]]:
        """The auditors' calls recorded here, oldest first (after id ``after``; of one
        subject when given): who, when, which method and ids, the correlation id."""
        v = Validator({"subject": subject, "after": after, "limit": limit})
        subject = v.text("subject", max_length=200, required=False)
        after = v.integer("after", min_value=0)
        limit = v.integer("limit", min_value=1, max_value=1000)
        v.check()
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(self.app.settings.database_url) as conn, \
                conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                "SELECT id, at, subject, role, department, district, method, arguments, "
                "correlation_id FROM audited_calls WHERE id > %s AND (%s::text IS NULL OR "
                "subject = %s) ORDER BY id LIMIT %s", (after, subject, subject, limit))
            return cur.fetchall()

    # The audit trail (tuoyu_shared.audit): checkpoints, proofs, verification, cases, exports.
    def _audit(self) -> Any:
        return self.app.audit_trail

    @rpc
    def audit_keys(self) -> dict[str, Any]:
        from tuoyu_shared.audit import public_keys

        return public_keys(self.app.settings)

    @rpc
    def audit_checkpoints(self, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        v = Validator({"after": after, "limit": limit})
        after = v.integer("after", min_value=0)
        limit = v.integer("limit", min_value=1, max_value=1000)
        v.check()
        return self._audit().checkpoints(after, limit)

    @rpc
    def audit_latest_checkpoint(self) -> dict[str, Any] | None:
        return self._audit().latest_checkpoint()

    @rpc
    def audit_inclusion(self, notification_id: int, tree_size: int | None = None) -> dict:
        v = Validator({"notification_id": notification_id, "tree_size": tree_size})
        notification_id = v.integer("notification_id", min_value=1)
        tree_size = v.integer("tree_size", min_value=1, required=False)
        v.check()
        return self._audit().inclusion(notification_id, tree_size)

    @rpc
    def audit_consistency(self, first: int, second: int | None = None) -> dict[str, Any]:
        v = Validator({"first": first, "second": second})
        first = v.integer("first", min_value=1)
        second = v.integer("second", min_value=1, required=False)
        v.check()
        return self._audit().consistency(first, second)

    @rpc
    def audit_records(self, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        v = Validator({"after": after, "limit": limit})
        after = v.integer("after", min_value=0)
        limit = v.integer("limit", min_value=1, max_value=5000)
        v.check()
        return self._audit().records(after, limit)

    @rpc
    def audit_verify(self) -> dict[str, Any]:
        return self._audit().verify()

    @rpc
    def audit_history(self, aggregate_id: str) -> dict[str, Any]:
        return self._audit().history(aggregate_id)

    @rpc
    def audit_state(self, aggregate_id: str, at: str | None = None,
                    version: int | None = None) -> dict[str, Any]:
        return self._audit().state(aggregate_id, at=at, version=version)

    @rpc
    def audit_diff(self, aggregate_id: str, from_version: int | None = None,
                   to_version: int | None = None, from_at: str | None = None,
                   to_at: str | None = None) -> dict[str, Any]:
        return self._audit().diff(aggregate_id, from_version=from_version,
                                  to_version=to_version, from_at=from_at, to_at=to_at)

    @rpc
    def audit_correlated(self, correlation_id: str) -> dict[str, Any]:
        return self._audit().correlated(correlation_id)

    @rpc
    def audit_export(self, since: str | None = None, until: str | None = None,
                     aggregate_id: str | None = None) -> dict[str, Any]:
        return self._audit().export(since=since, until=until, aggregate_id=aggregate_id)

    @http("GET", "/health")
    def health(self, request: Any) -> Response:
        return json_response({"service": self.name, "status": "ok",
                              "log_head": self.app.log_head()})

    @http("GET", "/metrics")
    def metrics(self, request: Any) -> Response:
        """Prometheus text: the log head, the relay's position and lag, each consumer's
        position per upstream, parked and held messages, and the process's own metrics
        (requests, memory, file descriptors; see :mod:`tuoyu_shared.metrics`)."""
        body, content_type = render(EventLogCollector(self.name, self.app),
                                    accept=request.headers.get("Accept"))
        return Response(body, content_type=content_type)


def json_response(body: Any, status: int = 200) -> Response:
    """``body`` in the one public JSON encoding (:func:`~tuoyu_shared.envelope.to_json_value`:
    sealed personal data never leaves but as its mask and ref)."""
    body = to_json_value(body)
    text = json.dumps(body, ensure_ascii=False)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate echoed in a reason: escaped, never a 500
        data = json.dumps(body, ensure_ascii=True).encode("ascii")
    return Response(data, status=status, mimetype="application/json")


# ---- input at the edge --------------------------------------------------------------------


def _int_env(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.isascii() and value.isdigit() else default


#: Largest request body a JSON endpoint reads (``TUOYU_HTTP_MAX_BODY_BYTES``, default 1 MiB);
#: a larger one is a 413. An endpoint may allow more (``http_json(max_body_bytes=...)``).
MAX_BODY_BYTES = _int_env("TUOYU_HTTP_MAX_BODY_BYTES", 1 << 20)
#: Lists and objects nested deeper in a JSON body are a 400 (checked before parsing).
MAX_JSON_DEPTH = MAX_DEPTH
MAX_QUERY_PARAMETERS = 50
MAX_QUERY_VALUE_LENGTH = 1000
MAX_PATH_VALUE_LENGTH = 200
#: Headers that become the command context (and so event metadata).
CONTEXT_HEADERS = ("X-Correlation-Id", "X-Actor", "X-Department")
MAX_HEADER_LENGTH = 200

_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)  # unrolled: fast
_JSON_BRACKET = re.compile(r"[\[\]{}]")
_QUERY_INT = re.compile(r"[+-]?[0-9]{1,40}")


class BodyTooLarge(ValidationFailed):
    """The request body is larger than the endpoint reads (HTTP 413)."""

    code = "payload_too_large"
    http_status = 413

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "error": self.code}


def _refuse(field: str, reason: str, code: str) -> ValidationFailed:
    return ValidationFailed([FieldError(field, reason, code)])


def _too_large(limit: int, got: int | None = None) -> BodyTooLarge:
    size = f", got {got}" if got is not None else ""
    return BodyTooLarge([FieldError("body", f"must be at most {limit} bytes{size}",
                                    "too_large")])


def _wsgi_text(value: str) -> str:
    """A WSGI string (bytes as latin-1, PEP 3333) as the UTF-8 text it carries; raises
    ``UnicodeError`` if it is not UTF-8."""
    return value.encode("latin-1").decode("utf-8")


def _name(key: str) -> str:
    """A parameter's name as it may appear in an error report."""
    try:
        check_text_characters(key, "name")
    except FieldError:
        return json.dumps(key)[:60]
    return key if len(key) <= 60 else key[:60] + "…"


def _text_errors(field: str, value: str, max_length: int) -> list[FieldError]:
    try:
        check_text_characters(value, field)
    except FieldError as e:
        return [e]
    if len(value) > max_length:
        return [FieldError(field, f"must be at most {max_length} characters, got {len(value)}",
                           "too_long")]
    return []


def check_request(request: Any, path_values: dict[str, Any] | None = None,
                  max_body_bytes: int | None = None) -> None:
    """The checks every HTTP request passes before its handler runs: the declared body size
    (:class:`BodyTooLarge`), then every query parameter, path parameter and context header:
    valid UTF-8, no control characters, not too long, not too many
    (:class:`ValidationFailed` naming each)."""
    limit = MAX_BODY_BYTES if max_body_bytes is None else max_body_bytes
    request.max_content_length = limit  # enforced by werkzeug on a chunked body too
    length = request.content_length
    if length is not None and length > limit:
        raise _too_large(limit, length)
    errors: list[FieldError] = []
    environ = getattr(request, "environ", {})
    raw_query = environ.get("QUERY_STRING", "")
    if raw_query:
        for part in raw_query.split("&"):
            key, _, value = part.partition("=")
            try:  # WSGI strings carry the raw bytes as latin-1
                for raw in (key, value):
                    unquote_to_bytes(raw.encode("latin-1", "replace")).decode("utf-8")
            except UnicodeError:
                field = _name(unquote(key.replace("+", " "), errors="replace"))
                errors.append(FieldError(field or "query", "is not valid UTF-8",
                                         "invalid_encoding"))
    if not errors:
        pairs = list(request.args.items(multi=True))
        if len(pairs) > MAX_QUERY_PARAMETERS:
            errors.append(FieldError("query", f"must have at most {MAX_QUERY_PARAMETERS} "
                                     f"parameters, got {len(pairs)}", "too_long"))
            pairs = []
        for key, value in pairs:
            field = _name(key) or "query"  # a parameter without a name: "=x"
            key_errors = _text_errors(field, key, 100)
            errors += key_errors or _text_errors(field, value, MAX_QUERY_VALUE_LENGTH)
    try:
        _wsgi_text(environ.get("PATH_INFO", ""))
    except UnicodeError:
        errors.append(FieldError("path", "is not valid UTF-8", "invalid_encoding"))
    else:
        for name, value in (path_values or {}).items():
            if isinstance(value, str):
                errors += _text_errors(name, value, MAX_PATH_VALUE_LENGTH)
    headers = getattr(request, "headers", None)
    for header in CONTEXT_HEADERS if headers is not None else ():
        value = headers.get(header)
        if value is None:
            continue
        try:
            value = _wsgi_text(value)
        except UnicodeError:
            errors.append(FieldError(header, "is not valid UTF-8", "invalid_encoding"))
            continue
        errors += _text_errors(header, value, MAX_HEADER_LENGTH)
    if errors:
        raise ValidationFailed(errors)


def query_int(args: Any, name: str, default: int | None = None, *,
              min_value: int = BIGINT_MIN, max_value: int = BIGINT_MAX) -> int | None:
    """An integer query parameter (ASCII digits, an optional sign) within bounds, or
    ``default`` when absent or blank; otherwise :class:`ValidationFailed` naming it."""
    raw = args.get(name)
    if raw is None or not raw.strip():
        return default
    text = raw.strip()
    if not _QUERY_INT.fullmatch(text):
        shown = json.dumps(text[:40] + ("…" if len(text) > 40 else ""))
        raise _refuse(name, f"must be a whole number, got {shown}", "invalid_format")
    value = int(text)
    if not min_value <= value <= max_value:
        raise _refuse(name, f"must be from {min_value} to {max_value}, got {value}",
                      "out_of_range")
    return value


def query_paging(args: Any, errors: list[FieldError]) -> dict[str, int]:
    """``limit`` (1 to 1000, default 100) and ``offset`` (0 to bigint, default 0) of a list
    query; what is wrong is added to ``errors`` (field by field), the rest returned."""
    paging: dict[str, int] = {}
    for key, default, low, high in (("limit", 100, 1, 1000), ("offset", 0, 0, BIGINT_MAX)):
        try:
            paging[key] = query_int(args, key, default, min_value=low, max_value=high)
        except ValidationFailed as e:
            errors += e.errors
    return paging


def http_json(func: Callable[..., Any] | None = None, *,
              max_body_bytes: int | None = None) -> Any:
    """Run an HTTP handler returning JSON-able data; answer a
    :class:`~tuoyu_shared.errors.TuoyuError` with its status and body, anything else with a
    logged 500 and no details.

    Every request is checked first (:func:`check_request`; the path parameters are the
    handler's arguments after ``request``). Use as ``@http_json`` or, for an endpoint that
    reads a larger body, ``@http_json(max_body_bytes=...)``.
    """
    if func is None:
        return lambda f: http_json(f, max_body_bytes=max_body_bytes)
    names = list(inspect.signature(func).parameters)[2:]  # after self and request

    @wraps(func)
    def wrapper(self: Any, request: Any, *args: Any, **kwargs: Any) -> Response:
        try:
            check_request(request, {**dict(zip(names, args, strict=False)), **kwargs},
                          max_body_bytes)
            result = func(self, request, *args, **kwargs)
        except TuoyuError as e:
            return json_response(e.to_dict(), e.http_status)
        except RequestEntityTooLarge:  # a chunked body found too large while read
            limit = MAX_BODY_BYTES if max_body_bytes is None else max_body_bytes
            error: TuoyuError = _too_large(limit)
            return json_response(error.to_dict(), error.http_status)
        except json.JSONDecodeError as e:
            error = _refuse("body", f"is not valid JSON: {e}", "invalid_json")
            return json_response(error.to_dict(), error.http_status)
        except Exception:
            log.exception("http.unhandled_error")
            return json_response({"error": "internal_error"}, 500)
        if isinstance(result, Response):
            return result
        if isinstance(result, tuple):
            status, body = result
            return json_response(body, status)
        return json_response(result)

    return wrapper


def read_body(request: Any) -> bytes:
    """The raw request body, at most the endpoint's limit (set by :func:`http_json`)."""
    limit = request.max_content_length
    data = request.get_data(cache=True)
    if limit is not None and len(data) > limit:
        raise _too_large(limit, len(data))
    return data


def read_text(request: Any) -> str:
    """The request body as UTF-8 text; 400 naming the line of the first invalid byte."""
    data = read_body(request)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise _refuse("body", f"is not valid UTF-8 (byte 0x{data[e.start]:02x} at offset "
                      f"{e.start}, line {line})", "invalid_encoding") from None


def _too_deep(text: str, limit: int) -> bool:
    """Whether JSON ``text`` nests lists and objects deeper than ``limit``: brackets outside
    strings counted, without parsing (so the parser never recurses that deep)."""
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for match in _JSON_BRACKET.finditer(_JSON_STRING.sub("", text)):
        if match.group() in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def read_json(request: Any) -> dict[str, Any]:
    """The request body as a JSON object: valid UTF-8, nested at most
    :data:`MAX_JSON_DEPTH` deep, no NaN or Infinity, every string and key free of control
    characters and lone surrogates, every integer within bigint (:func:`check_json_value`).
    An empty body is ``{}``. Anything else is a :class:`ValidationFailed` naming ``body`` or
    the field."""
    text = read_text(request)
    if not text:
        return {}
    if _too_deep(text, MAX_JSON_DEPTH):
        raise _refuse("body", f"is nested more than {MAX_JSON_DEPTH} levels deep", "too_deep")
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise _refuse("body", f"is not valid JSON: {e}", "invalid_json") from None
    except (ValueError, RecursionError) as e:  # e.g. an integer of more than 4300 digits
        raise _refuse("body", f"is not valid JSON: {str(e).split(';')[0]}",
                      "invalid_json") from None
    if not isinstance(data, dict):
        raise ValidationFailed(
            [FieldError("body", "the request body must be a JSON object", "invalid_format")])
    errors = check_json_value(data)
    if errors:
        raise ValidationFailed(errors)
    return data


class PeopleEntrypoints:
    """A person's rights (:mod:`tuoyu_shared.people`) over RPC, for a service whose
    application mixes in :class:`~tuoyu_shared.people.PeopleCommands`; the gateway's
    ``/api/people/…`` routes call them on every such service."""

    app: Any

    @rpc
    def erase_person(self, data: dict[str, Any]) -> dict[str, Any]:
        return self.app.erase_person(data)

    @rpc
    def export_person(self, data: dict[str, Any]) -> dict[str, Any]:
        return self.app.export_person(data)


def passing_rpc(application_class: type, names: Any) -> dict[str, Any]:
    """RPC methods that hand their arguments, as they are, to the application's methods of
    those names (a thin adapter declared as a list): ``locals().update(passing_rpc(App,
    NAMES))`` in the nameko service class. Each keeps the application method's docstring."""

    def passing(name: str) -> Any:
        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            return getattr(self.app, name)(*args, **kwargs)

        method.__name__ = name
        method.__doc__ = getattr(application_class, name).__doc__
        return rpc(method)

    return {name: passing(name) for name in names}
