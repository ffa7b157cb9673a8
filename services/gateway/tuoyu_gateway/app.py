"""The gateway: Tuoyu's one public HTTP entry (FastAPI, served by uvicorn).

Every route every service declares (:mod:`tuoyu_shared.routes`) is served here and reaches the
service over nameko RPC. For each request, in order:

1. limits: the body's size (413) and the client's request rate (429);
2. the token (``Authorization: Bearer …``, :mod:`tuoyu_shared.auth`): verified, unexpired,
   not revoked (401), unless the route is public;
3. the role, and the district or institution the role covers (403);
4. the body and the query, validated with the route's command model (400, every bad field
   named);
5. the RPC call, with the verified token: the service takes the actor and department of its
   events from it, never from a header sent here.

Every refusal is an RFC 9457 problem (``application/problem+json``: ``type``, ``title``,
``status``, ``detail``, ``code``, and ``errors`` naming each bad field), logged, and counted in
``/metrics``. ``/openapi.json`` (OpenAPI 3.1, built from the routes and the command models)
and ``/docs`` (a page with no asset from outside) describe it all.
"""

from __future__ import annotations

import importlib
import importlib.resources
import json
import os
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amqp.exceptions import AMQPError
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from opentelemetry.trace import SpanKind
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from tuoyu_shared import tracing
from tuoyu_shared.aiorpc import AsyncRpcClient
from tuoyu_shared.auth import KeyRing, Principal, TokenInvalid
from tuoyu_shared.commands import parse
from tuoyu_shared.config import DEFAULT_AMQP
from tuoyu_shared.context import command_context, current_context
from tuoyu_shared.envelope import to_json_value
from tuoyu_shared.logs import get_logger
from tuoyu_shared.routes import (
    PUBLIC,
    SCOPE_BODY_DISTRICT,
    SCOPE_CITY,
    SCOPE_FILTER_DISTRICT,
    SCOPE_INSTITUTION,
    Route,
    StaticPages,
    correlation_routes,
    people_routes,
)
from tuoyu_shared.rpc import RemoteError, RpcTimeout, UnknownService
from tuoyu_shared.validation import FieldError, ValidationFailed

log = get_logger("tuoyu.gateway")

DEFAULT_ROUTES = ("tuoyu_registration.routes", "tuoyu_credit.routes", "tuoyu_dashboard.routes",
                  "tuoyu_inspection.routes", "tuoyu_subsidy.routes")
PROBLEM = "application/problem+json"


@dataclass
class GatewaySettings:
    amqp_uri: str = DEFAULT_AMQP
    routes: tuple[str, ...] = DEFAULT_ROUTES
    keys: KeyRing = field(default_factory=KeyRing)
    #: a file of revoked token ids (one per line), re-read when it changes
    revoked_file: Path | None = None
    max_body_bytes: int = 1 << 20
    #: requests per second per client (its token's subject, else its address), and burst
    rate: float = 50.0
    burst: int = 100
    rpc_timeout: float = 30.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> GatewaySettings:
        env = os.environ if env is None else env
        routes = tuple(m.strip() for m in env.get("TUOYU_GATEWAY_ROUTES", "").split(",")
                       if m.strip()) or DEFAULT_ROUTES
        revoked = env.get("TUOYU_AUTH_REVOKED_FILE")
        # its own broker user (TUOYU_GATEWAY_AMQP_URI), like every service
        amqp_uri = env.get("TUOYU_GATEWAY_AMQP_URI") or env.get("TUOYU_AMQP_URI") or DEFAULT_AMQP
        return cls(amqp_uri=amqp_uri, routes=routes,
                   keys=KeyRing.from_env(env), revoked_file=Path(revoked) if revoked else None,
                   max_body_bytes=int(env.get("TUOYU_GATEWAY_MAX_BODY_BYTES") or 1 << 20),
                   rate=float(env.get("TUOYU_GATEWAY_RATE") or 50),
                   burst=int(env.get("TUOYU_GATEWAY_BURST") or 100),
                   rpc_timeout=float(env.get("TUOYU_GATEWAY_RPC_TIMEOUT") or 30))


class Problem(Exception):
    """An answer other than success, as an RFC 9457 problem."""

    def __init__(self, status: int, code: str, detail: str, *,
                 errors: list[dict[str, Any]] | None = None,
                 extra: dict[str, Any] | None = None, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail
        self.errors, self.extra, self.headers = errors, extra or {}, headers or {}

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {**self.extra, "type": f"urn:tuoyu:problem:{self.code}",
                                "title": TITLES.get(self.status, "Error"),
                                "status": self.status, "detail": self.detail,
                                "code": self.code}
        body.setdefault("reason", self.detail)
        if self.errors is not None:
            body["errors"] = self.errors
        return JSONResponse(body, status_code=self.status, media_type=PROBLEM,
                            headers=self.headers)


TITLES = {400: "Bad request", 401: "Unauthenticated", 403: "Forbidden", 404: "Not found",
          405: "Method not allowed", 409: "Conflict", 410: "Gone", 413: "Payload too large",
          415: "Unsupported media type", 429: "Too many requests", 502: "Bad gateway",
          503: "Service unavailable", 504: "Gateway timeout"}


class RevocationList:
    """Revoked token ids from a file (one per line, ``#`` comments), re-read when its
    modification time changes (checked at most once a second)."""

    def __init__(self, path: Path | None):
        self.path = path
        self._ids: frozenset[str] = frozenset()
        self._mtime: float | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    def current(self) -> frozenset[str]:
        if self.path is None:
            return self._ids
        now = time.monotonic()
        if now - self._checked < 1.0:
            return self._ids
        with self._lock:
            self._checked = now
            try:
                mtime = self.path.stat().st_mtime
            except FileNotFoundError:
                self._ids, self._mtime = frozenset(), None
                return self._ids
            if mtime != self._mtime:
                lines = self.path.read_text(encoding="utf-8").splitlines()
                self._ids = frozenset(line.split("#", 1)[0].strip() for line in lines
                                      if line.split("#", 1)[0].strip())
                self._mtime = mtime
        return self._ids


class RateLimiter:
    """A token bucket per client, in this process."""

    def __init__(self, rate: float, burst: int):
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, client: str) -> float | None:
        """None if allowed now, else the seconds until it would be."""
        now = time.monotonic()
        with self._lock:
            tokens, at = self._buckets.get(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            if tokens >= 1:
                self._buckets[client] = (tokens - 1, now)
                if len(self._buckets) > 100_000:  # forget idle clients
                    self._buckets = {k: v for k, v in self._buckets.items()
                                     if now - v[1] < 60}
                return None
            self._buckets[client] = (tokens, now)
            return (1 - tokens) / self.rate


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("tuoyu_gateway_requests_total", "Requests by route and status",
                                ["route", "status"], registry=self.registry)
        self.refusals = Counter("tuoyu_gateway_refusals_total",
                                "Requests refused before reaching a service, by reason",
                                ["status", "code"], registry=self.registry)
        self.latency = Histogram("tuoyu_gateway_request_seconds", "Request latency by route",
                                 ["route"], registry=self.registry,
                                 buckets=(.001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 5))
        self.rpc_latency = Histogram("tuoyu_gateway_rpc_seconds",
                                     "Time spent waiting on the service's RPC reply",
                                     ["service"], registry=self.registry,
                                     buckets=(.001, .002, .005, .01, .025, .05, .1, .25, 1, 5))
        self.own_latency = Histogram(
            "tuoyu_gateway_own_seconds", "The gateway's own share of each request to an API "
            "route (all but its calls' time outside the gateway; also in each response's "
            "Server-Timing header)",
            ["route"], registry=self.registry,
            buckets=(.0002, .0005, .001, .002, .005, .01, .025, .05, .1))
        # the process's own memory, CPU and file descriptors, as every other process has
        ProcessCollector(registry=self.registry)


class OwnShare:
    """Times each request to an API route through the whole application (routing,
    authentication, validation, the calls, encoding), less the time its RPC calls spent
    outside the gateway (from each publish to its reply's arrival), and says it in the
    answer's W3C ``Server-Timing`` header (``gateway;dur=…, rpc;dur=…``, in ms) and in the
    ``tuoyu_gateway_own_seconds`` histogram. Waiting for the gateway's own event loop, busy
    with other requests, counts as the gateway's share: it is time the gateway added."""

    def __init__(self, app: Any, away: ContextVar[list[float] | None],
                 labels: dict[tuple[str, str], str], histogram: Histogram) -> None:
        self.app, self.away, self.labels, self.histogram = app, away, labels, histogram

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        spent: list[float] = []
        token = self.away.set(spent)

        async def timed(message: dict) -> None:
            if message["type"] == "http.response.start":
                route = scope.get("route")
                label = self.labels.get((scope["method"], getattr(route, "path", "")))
                if label is not None:
                    waited = sum(spent)
                    own = time.perf_counter() - started - waited
                    self.histogram.labels(label).observe(own)
                    message = {**message, "headers": [
                        *message.get("headers", ()),
                        (b"server-timing", f"gateway;dur={own * 1000:.3f}, "
                                           f"rpc;dur={waited * 1000:.3f}".encode())]}
            await send(message)

        try:
            await self.app(scope, receive, timed)
        finally:
            self.away.reset(token)


def load_routes(modules: tuple[str, ...]) -> list[Route]:
    """The routes of every module, and a person's rights over the services whose module
    says ``PERSONAL_DATA = True``."""
    routes: list[Route] = []
    people: list[str] = []
    for module in modules:
        loaded = importlib.import_module(module)
        routes.extend(loaded.ROUTES)
        if getattr(loaded, "PERSONAL_DATA", False):
            people.append(loaded.SERVICE)
    if people:
        routes.extend(people_routes(tuple(people)))
    logs = tuple(dict.fromkeys(r.service for r in routes if r.rpc == "log_head"))
    if logs:
        routes.extend(correlation_routes(logs))
    return routes


def load_pages(modules: tuple[str, ...]) -> list[StaticPages]:
    """The pages (static files) the services' routes modules ship (``PAGES``)."""
    pages: list[StaticPages] = []
    for module in modules:
        pages.extend(getattr(importlib.import_module(module), "PAGES", ()))
    return pages


def _redirect_to(location: str) -> Callable[[], Response]:
    """An endpoint that sends the browser to ``location`` (a fixed path: nothing of the
    request goes into it)."""
    from starlette.responses import RedirectResponse

    def redirect() -> Response:
        return RedirectResponse(location, status_code=307)
    return redirect


def _file_response(result: Any) -> Response:
    """A file answer (``Route.file_media_type``): the bytes, as an attachment."""
    import base64
    from urllib.parse import quote

    content = base64.b64decode(result["content_base64"])
    name = str(result.get("filename") or "download")
    return Response(content, media_type=str(result["media_type"]), headers={
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}",
        "Cache-Control": "no-store"})


# ---- request pieces ----------------------------------------------------------------------------
def _client_key(request: Request, principal: Principal | None) -> str:
    if principal is not None:
        return f"sub:{principal.subject}"
    return f"ip:{request.client.host if request.client else '?'}"


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "token_malformed", "the Authorization header must be "
                      "'Bearer <token>'", headers={"WWW-Authenticate": "Bearer"})
    return token.strip()


def _query(route: Route, request: Request) -> dict[str, Any]:
    """The route's query parameters, typed and checked; every bad one named at once."""
    values: dict[str, Any] = {}
    errors: list[FieldError] = []
    for param in route.query:
        raw = request.query_params.get(param.name)
        if raw is None or raw == "":
            continue
        if param.kind == "integer":
            try:
                number = int(raw)
            except ValueError:
                errors.append(FieldError(param.name, f"must be an integer, got {raw[:20]!r}",
                                         "invalid_type"))
                continue
            if param.minimum is not None and number < param.minimum:
                errors.append(FieldError(param.name, f"must be at least {param.minimum}",
                                         "out_of_range"))
            elif param.maximum is not None and number > param.maximum:
                errors.append(FieldError(param.name, f"must be at most {param.maximum}",
                                         "out_of_range"))
            else:
                values[param.name] = number
        elif param.kind == "boolean":
            if raw not in ("true", "false"):
                errors.append(FieldError(param.name, "must be true or false", "invalid_choice"))
            else:
                values[param.name] = raw == "true"
        else:
            if param.max_length is not None and len(raw) > param.max_length:
                errors.append(FieldError(param.name, f"must be at most {param.max_length} "
                                         f"characters, got {len(raw)}", "too_long"))
            elif param.enum is not None and raw not in param.enum:
                errors.append(FieldError(param.name, f"must be one of {', '.join(param.enum)}",
                                         "invalid_choice"))
            elif "\x00" in raw:
                errors.append(FieldError(param.name, "must not contain NUL", "invalid_text"))
            else:
                values[param.name] = raw
    if errors:
        raise ValidationFailed(errors)
    return values


async def _body(route: Route, request: Request, limit: int) -> Any:
    if route.body is None:
        return None
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise Problem(413, "payload_too_large", f"the body may be at most {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Problem(413, "payload_too_large", f"the body may be at most {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if route.body == "text":
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            line = raw[:e.start].count(b"\n") + 1
            raise ValidationFailed([FieldError("body", f"not UTF-8 text (line {line})",
                                               "invalid_encoding")]) from None
    if not raw.strip():
        raise ValidationFailed([FieldError("body", "a JSON object is required", "required")])
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise ValidationFailed([FieldError("body", f"not JSON: {e}"[:200], "invalid_json")]
                               ) from None
    if not isinstance(data, dict):
        raise ValidationFailed([FieldError("body", "must be a JSON object", "invalid_type")])
    parse(route.body, data)  # the command's own checks: every bad field named (400)
    return data


def _problem_of_remote(error: RemoteError) -> Problem:
    if error.http_status is None:
        log.error("gateway.service_error", exc_type=error.exc_type)
        return Problem(502, "service_error", "the service failed to answer this request")
    body = dict(error.body)
    code = error.code or "error"
    detail = str(body.get("reason") or body.get("error") or code)
    errors = body.pop("errors", None)
    if code == "validation_failed" or body.get("error") == "validation_failed":
        detail = "; ".join(f"{e.get('field')}: {e.get('reason')}" for e in errors or []) \
            or "invalid input"
    return Problem(error.http_status, code, detail, errors=errors, extra=body)


# ---- the application ------------------------------------------------------------------------
def create_app(settings: GatewaySettings | None = None, rpc: Any = None) -> FastAPI:
    """The gateway; ``rpc`` is an :class:`AsyncRpcClient` (``acall`` on the event loop) or, in
    tests, anything with a blocking ``call(service, method, args, kwargs, context)``."""
    settings = settings or GatewaySettings.from_env()
    routes = load_routes(settings.routes)
    rpc = rpc or AsyncRpcClient(settings.amqp_uri, settings.rpc_timeout)

    #: per request, the seconds its RPC calls spent outside the gateway (publish to reply)
    away: ContextVar[list[float] | None] = ContextVar("away", default=None)

    async def call(service: str, method: str, args: list, kwargs: dict,
                   context: dict[str, str]) -> Any:
        if hasattr(rpc, "acall"):
            return await rpc.acall(service, method, args, kwargs, context, away=away.get())
        began = time.perf_counter()
        try:
            return await run_in_threadpool(rpc.call, service, method, args, kwargs, context)
        finally:
            spent = away.get()
            if spent is not None:
                spent.append(time.perf_counter() - began)
    revoked = RevocationList(settings.revoked_file)
    limiter = RateLimiter(settings.rate, settings.burst)
    metrics = Metrics()
    app = FastAPI(title="Tuoyu", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.routes = routes
    app.state.metrics = metrics

    def refuse(problem: Problem, route: str) -> JSONResponse:
        metrics.refusals.labels(str(problem.status), problem.code).inc()
        metrics.requests.labels(route, str(problem.status)).inc()
        if problem.status in (401, 403, 413, 429):
            log.warning("gateway.refused", route=route, status=problem.status,
                        code=problem.code, detail=problem.detail)
        return problem.response()

    def authenticate(request: Request) -> Principal | None:
        token = _bearer(request)
        if token is None:
            return None
        try:
            return settings.keys.verify(token, revoked.current())
        except TokenInvalid as e:
            raise Problem(401, e.code, e.reason, headers={"WWW-Authenticate": "Bearer"}
                          ) from None

    async def scope_district(principal: Principal, institution_id: str) -> None:
        if principal.role == "operator":
            if principal.institution_id != institution_id:
                raise Problem(403, "not_your_institution",
                              "an operator acts only on their own institution")
            return
        if principal.city_wide:
            return
        try:
            scope = await call("registration", "institution_scope", [institution_id], {}, {})
        except RemoteError as e:
            raise _problem_of_remote(e) from None
        if not principal.may_see_district(scope.get("district")):
            raise Problem(403, "other_district",
                          f"a {principal.district} officer may not act on an institution of "
                          f"{scope.get('district')}")

    async def fan_out(route: Route, args: list, kwargs: dict,
                      context: dict) -> dict[str, Any]:
        """``route.rpc`` on each of ``route.services``; all must answer."""
        results: dict[str, Any] = {}
        failed: dict[str, dict[str, Any]] = {}
        first: Problem | None = None
        for service in route.services:
            try:
                results[service] = await call(service, route.rpc, args, kwargs, context)
            except RemoteError as e:
                problem = _problem_of_remote(e)
                failed[service] = {"status": problem.status, "code": problem.code,
                                   "detail": problem.detail}
                first = first or problem
            except (RpcTimeout, UnknownService, OSError, ConnectionError, AMQPError) as e:
                failed[service] = {"status": 503, "code": "service_unavailable",
                                   "detail": f"{service} did not answer ({type(e).__name__})"}
                first = first or Problem(503, "service_unavailable", "")
        if failed:
            status = first.status if first is not None else 503
            raise Problem(status, "not_every_service",
                          f"{len(failed)} of {len(route.services)} services did not do it: "
                          + ", ".join(f"{s} ({f['code']}: {f['detail']})"
                                      for s, f in failed.items()),
                          extra={"done": sorted(results), "failed": failed})
        return results

    def endpoint(route: Route) -> Callable[..., Any]:
        label = f"{route.method} {route.path}"
        limit = route.max_body_bytes or settings.max_body_bytes

        async def handle(request: Request) -> Response:
            started = time.perf_counter()
            try:
                principal = authenticate(request)
                wait = limiter.allow(_client_key(request, principal))
                if wait is not None:
                    raise Problem(429, "rate_limited", "too many requests: slow down",
                                  headers={"Retry-After": str(max(1, round(wait)))})
                if PUBLIC not in route.allow:
                    if principal is None:
                        raise Problem(401, "unauthenticated", "this needs a token",
                                      headers={"WWW-Authenticate": "Bearer"})
                    if principal.role not in route.allow:
                        raise Problem(403, "role_not_allowed",
                                      f"the role {principal.role} may not: {route.summary}")
                    if route.scope == SCOPE_CITY and not principal.city_wide:
                        raise Problem(403, "city_only", "only a city-wide officer may do this")
                path = dict(request.path_params)
                query = _query(route, request)
                body = await _body(route, request, limit)
                if principal is not None and PUBLIC not in route.allow:
                    if route.scope == SCOPE_INSTITUTION:
                        await scope_district(principal, path["institution_id"])
                    elif route.scope == SCOPE_BODY_DISTRICT and not principal.may_see_district(
                            body.get("district")):
                        raise Problem(403, "other_district",
                                      f"a {principal.district} officer may not act for "
                                      f"{body.get('district')}: {route.summary}")
                    elif route.scope == SCOPE_FILTER_DISTRICT and not principal.city_wide:
                        if query.get("district") not in (None, principal.district):
                            raise Problem(403, "other_district",
                                          f"a {principal.district} officer sees only "
                                          f"{principal.district}")
                        if any(p.name == "district" for p in route.query):
                            query["district"] = principal.district
                args, kwargs = route.call(path, query, body)
                context = {"authorization": request.headers["authorization"].partition(" ")[2]
                           .strip()} if principal is not None else {}
                correlation = request.headers.get("x-correlation-id")
                rpc_started = time.perf_counter()
                with command_context(correlation_id=correlation[:100] if correlation else None
                                     ), tracing.span(f"{request.method} {label}",
                                                     current_context().correlation_id,
                                                     SpanKind.SERVER, route=label) as span:
                    if span is not None:
                        context = {**context, "traceparent": tracing.traceparent_of(span)}
                    if route.services:
                        result = await fan_out(route, args, kwargs, context)
                    else:
                        result = await call(route.service, route.rpc, args, kwargs, context)
                metrics.rpc_latency.labels(route.service).observe(
                    time.perf_counter() - rpc_started)
                if (route.scope == SCOPE_FILTER_DISTRICT and principal is not None
                        and not principal.city_wide and isinstance(result, list)):
                    # also where the service was asked for the district: never another's row
                    result = [r for r in result if isinstance(r, dict)
                              and r.get("district") == principal.district]
                if principal is not None and principal.role == "auditor":
                    log.info("read.audited" if not route.writes else "audited.call",
                             actor=principal.subject, route=label, path=path)
                status = route.status_of(result)
                metrics.requests.labels(label, str(status)).inc()
                if route.file_media_type is not None:
                    response = _file_response(result)
                else:
                    # the public encoding: kombu's JSON gives datetimes back as datetimes
                    response = JSONResponse(to_json_value(route.respond(result, path)),
                                            status_code=status)
                return response  # OwnShare adds the Server-Timing
            except Problem as problem:
                return refuse(problem, label)
            except ValidationFailed as e:
                problem = Problem(400, "validation_failed",
                                  "; ".join(f"{x.field}: {x.reason}" for x in e.errors),
                                  errors=[x.to_dict() for x in e.errors],
                                  extra={"error": "validation_failed"})
                return refuse(problem, label)
            except RemoteError as e:
                problem = _problem_of_remote(e)
                metrics.requests.labels(label, str(problem.status)).inc()
                return problem.response()
            except RpcTimeout:
                # a service answers each request at most once (AtMostOnceRpc): one that
                # died while running a command leaves its outcome unknown, never doubled
                return refuse(Problem(504, "service_timeout",
                                      f"{route.service} did not answer in time; a command "
                                      "may have been recorded: read it back before "
                                      "sending it again"), label)
            except UnknownService:
                return refuse(Problem(503, "service_unavailable",
                                      f"{route.service} is not running"), label)
            except (OSError, ConnectionError, AMQPError):
                # the broker unreachable, or refusing the connection (an AMQP error: a
                # virtual host down, a resource alarm): the request may be tried again
                log.exception("gateway.broker_unavailable")
                return refuse(Problem(503, "broker_unavailable",
                                      "the message broker cannot be reached"), label)
            finally:
                metrics.latency.labels(label).observe(time.perf_counter() - started)

        handle.__name__ = route.operation_id
        return handle

    for route in routes:
        app.add_api_route(route.path, endpoint(route), methods=[route.method],
                          include_in_schema=False)
    app.add_middleware(OwnShare, away=away, histogram=metrics.own_latency,
                       labels={(r.method, r.path): f"{r.method} {r.path}" for r in routes})

    document = openapi_document(routes)

    from starlette.staticfiles import StaticFiles

    for page in load_pages(settings.routes):
        directory = importlib.resources.files(page.package).joinpath(page.directory)

        app.add_api_route(page.prefix, _redirect_to(f"{page.prefix}/"), methods=["GET"],
                          include_in_schema=False)
        app.mount(page.prefix, StaticFiles(directory=str(directory), html=True),
                  name=page.prefix.strip("/"))

    @app.get("/openapi.json", include_in_schema=False)
    def openapi() -> JSONResponse:
        return JSONResponse(document)

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse((Path(__file__).with_name("docs.html")).read_text(encoding="utf-8"))

    add_catalogue(app, refuse)

    from tuoyu_shared.readiness import Readiness

    readiness = Readiness.for_service("gateway", None, settings.amqp_uri)

    @app.get("/health", include_in_schema=False)
    @app.get("/health/live", include_in_schema=False)
    def health() -> dict[str, str]:
        return {"service": "gateway", "status": "ok"}

    @app.get("/health/ready", include_in_schema=False)
    def ready() -> JSONResponse:
        """Ready when its broker answers (every route is an RPC over it); it keeps no
        database and so has no schema."""
        status, body = readiness.check()
        return JSONResponse(body, status_code=status)

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(404)
    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        return refuse(Problem(404, "no_such_route", f"no route {request.url.path}"), "unrouted")

    @app.exception_handler(405)
    async def not_allowed(request: Request, exc: Exception) -> JSONResponse:
        return refuse(Problem(405, "method_not_allowed",
                              f"{request.method} is not allowed on {request.url.path}"),
                      "unrouted")

    return app


# ---- The event catalogue (public: the contract subscribers build on) -------------------------
def add_catalogue(app: Any, refuse: Callable[..., Any]) -> None:
    """``/catalogue/`` (the readable page), ``/catalogue/index.json``, each source's AsyncAPI
    3.0 document and each schema file, looked up in the catalogue (no path reaches a file
    that is not one of its schemas)."""
    from tuoyu_shared import asyncapi
    from tuoyu_shared.catalogue import catalogue_index, envelope_schema, payload_schema

    known = {(e["source"], f"{e['event_type']}.v{e['schema_version']}"): e
             for e in catalogue_index()}

    @app.get("/catalogue", include_in_schema=False)
    @app.get("/catalogue/", include_in_schema=False)
    def catalogue_page() -> HTMLResponse:
        return HTMLResponse(asyncapi.page())

    @app.get("/catalogue/index.json", include_in_schema=False)
    def catalogue_list() -> JSONResponse:
        return JSONResponse({"sources": asyncapi.sources(), "schemas": catalogue_index()})

    @app.get("/catalogue/envelope.v1.json", include_in_schema=False)
    def envelope() -> JSONResponse:
        return JSONResponse(envelope_schema(), media_type="application/schema+json")

    @app.get("/catalogue/{source}/asyncapi.json", include_in_schema=False)
    def asyncapi_document(source: str) -> Response:
        if source not in asyncapi.sources():
            return refuse(Problem(404, "not_found", f"no source {source!r} in the catalogue"),
                          "unrouted")
        return JSONResponse(asyncapi.document(source))

    @app.get("/catalogue/{source}/{name}.json", include_in_schema=False)
    def schema(source: str, name: str) -> Response:
        entry = known.get((source, name))
        if entry is None:
            return refuse(Problem(404, "not_found", f"no schema {source}/{name} in the "
                                  "catalogue"), "unrouted")
        return JSONResponse(payload_schema(source, entry["event_type"],
                                           entry["schema_version"]),
                            media_type="application/schema+json")


# ---- OpenAPI ----------------------------------------------------------------------------------
def _lift(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """A model's JSON Schema with its ``$defs`` moved into the document's components."""
    schema = json.loads(json.dumps(schema).replace('"#/$defs/', '"#/components/schemas/'))
    for name, definition in schema.pop("$defs", {}).items():
        components[name] = definition
    return schema


def openapi_document(routes: list[Route]) -> dict[str, Any]:
    components: dict[str, Any] = {}
    problem = {"description": "A problem (RFC 9457)", "content": {PROBLEM: {"schema": {
        "$ref": "#/components/schemas/Problem"}}}}
    paths: dict[str, Any] = {}
    for route in routes:
        parameters = [{"name": name, "in": "path", "required": True,
                       "schema": {"type": "string", "maxLength": 100}}
                      for name in _path_names(route.path)]
        for param in route.query:
            schema: dict[str, Any] = {"type": param.kind}
            if param.minimum is not None:
                schema["minimum"] = param.minimum
            if param.maximum is not None:
                schema["maximum"] = param.maximum
            if param.max_length is not None:
                schema["maxLength"] = param.max_length
            if param.enum is not None:
                schema["enum"] = list(param.enum)
            parameters.append({"name": param.name, "in": "query", "required": False,
                               "schema": schema, "description": param.description})
        operation: dict[str, Any] = {
            "operationId": route.operation_id, "summary": route.summary,
            "description": route.description or (
                "Roles: " + ", ".join(route.allow) + f". District scope: {route.scope}."),
            "tags": list(route.tags), "parameters": parameters,
            "responses": {str(route.status if isinstance(route.status, int) else 200): {
                "description": "Done", "content": {route.file_media_type or "application/json": {
                    "schema": {"type": "string", "format": "binary"}
                    if route.file_media_type else {}}}},
                "400": problem, "401": problem, "403": problem, "404": problem,
                "409": problem, "413": problem, "429": problem},
        }
        if PUBLIC in route.allow:
            operation["security"] = []
        if route.body == "text":
            operation["requestBody"] = {"required": True, "content": {
                "text/csv": {"schema": {"type": "string"}}}}
        elif route.body is not None:
            name = route.body.__name__
            components[name] = _lift(route.body.json_schema(), components)
            operation["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{name}"}}}}
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    components["Problem"] = {
        "type": "object", "required": ["type", "title", "status", "detail", "code"],
        "properties": {"type": {"type": "string"}, "title": {"type": "string"},
                       "status": {"type": "integer"}, "detail": {"type": "string"},
                       "code": {"type": "string"},
                       "errors": {"type": "array", "items": {"type": "object", "properties": {
                           "field": {"type": "string"}, "code": {"type": "string"},
                           "reason": {"type": "string"}}}}}}
    return {"openapi": "3.1.0",
            "info": {"title": "Tuoyu 托育服务监管", "version": "1",
                     "description": "Every command and query of Tuoyu's services. Tokens: "
                                    "`python -m tuoyu_gateway token issue`."},
            "paths": paths,
            "components": {"schemas": components, "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
            "security": [{"bearer": []}]}


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]

