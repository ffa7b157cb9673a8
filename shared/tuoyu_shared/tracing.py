"""OpenTelemetry traces across gateway → service → relay → consumer, joined by the correlation
id. Off by default.

``TUOYU_OTEL_EXPORTER`` chooses where spans go:

- ``none`` (default): no spans are made; the API's no-op tracer costs next to nothing;
- ``console``: one JSON object per span on standard error;
- ``file``: one JSON line per span in ``TUOYU_OTEL_DIR/<service>-<pid>.jsonl`` (what the tests
  read);
- ``otlp``: OTLP over HTTP to ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the standard variables); needs
  ``opentelemetry-exporter-otlp-proto-http`` installed.

**How the spans join.** A command's events are published by the relay and applied by consumers
long after the request, in other processes. Storing a trace context in every event would change
the stored records, which the audit tree hashes. Instead, every span of one correlation id
belongs to one trace whose id is derived from the correlation id (:func:`trace_id_of`, the first
16 bytes of its SHA-256). Each process makes its spans children of that trace's root,
``correlation_parent``. So the gateway's request, the service's command, the relay's publication
and each consumer's application of the events show as one trace, whatever the process. Within
one call, the gateway passes a W3C ``traceparent`` to the service over RPC, so the service's span
is the gateway span's child. Every span carries ``tuoyu.correlation_id`` and, where it applies,
``tuoyu.aggregate_id`` and ``tuoyu.event_type``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

EXPORTER_VAR = "TUOYU_OTEL_EXPORTER"
DIR_VAR = "TUOYU_OTEL_DIR"
EXPORTERS = ("none", "console", "file", "otlp")

_lock = threading.Lock()
_configured: str | None = None


def exporter_kind(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    kind = (env.get(EXPORTER_VAR) or "none").strip().lower()
    if kind not in EXPORTERS:
        from tuoyu_shared.config import ConfigurationError

        raise ConfigurationError(f"{EXPORTER_VAR} must be one of {', '.join(EXPORTERS)}, "
                                 f"got {kind!r}")
    return kind


def configure(service: str, env: Mapping[str, str] | None = None) -> bool:
    """Set up the process's tracer provider once; False when tracing is off."""
    global _configured
    env = os.environ if env is None else env
    kind = exporter_kind(env)
    with _lock:
        if _configured is not None:
            return _configured != "none"
        _configured = kind
        if kind == "none":
            return False
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SimpleSpanProcessor,
        )

        provider = TracerProvider(resource=Resource.create({"service.name": f"tuoyu-{service}"}))
        line = lambda span: span.to_json(indent=None) + "\n"  # noqa: E731
        if kind == "console":
            provider.add_span_processor(SimpleSpanProcessor(
                ConsoleSpanExporter(out=sys.stderr, formatter=line)))
        elif kind == "file":
            folder = Path(env.get(DIR_VAR) or ".")
            folder.mkdir(parents=True, exist_ok=True)
            out = open(folder / f"{service}-{os.getpid()}.jsonl", "a", buffering=1,  # noqa: SIM115
                       encoding="utf-8")
            provider.add_span_processor(SimpleSpanProcessor(
                ConsoleSpanExporter(out=out, formatter=line)))
        else:
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                    OTLPSpanExporter,
                )
            except ImportError as e:
                from tuoyu_shared.config import ConfigurationError

                raise ConfigurationError(
                    f"{EXPORTER_VAR}=otlp needs opentelemetry-exporter-otlp-proto-http") from e
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
        return True


def enabled() -> bool:
    return _configured not in (None, "none")


def tracer() -> trace.Tracer:
    return trace.get_tracer("tuoyu")


def trace_id_of(correlation_id: str) -> int:
    return int.from_bytes(hashlib.sha256(str(correlation_id).encode()).digest()[:16], "big") or 1


def correlation_parent(correlation_id: str) -> Any:
    """A context whose (remote) parent is the correlation id's trace root."""
    digest = hashlib.sha256(b"root:" + str(correlation_id).encode()).digest()
    root = SpanContext(trace_id=trace_id_of(correlation_id),
                       span_id=int.from_bytes(digest[:8], "big") or 1, is_remote=True,
                       trace_flags=TraceFlags(TraceFlags.SAMPLED))
    return trace.set_span_in_context(NonRecordingSpan(root))


@contextmanager
def span(name: str, correlation_id: str | None, kind: SpanKind = SpanKind.INTERNAL,
         traceparent: str | None = None, **attributes: Any) -> Iterator[Any]:
    """A span of the correlation id's trace (a child of ``traceparent`` when it belongs to
    that trace); nothing at all when tracing is off."""
    if not enabled() or not correlation_id:
        yield None
        return
    context = correlation_parent(correlation_id)
    if traceparent:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        given = TraceContextTextMapPropagator().extract({"traceparent": traceparent})
        parent = trace.get_current_span(given).get_span_context()
        if parent.is_valid and parent.trace_id == trace_id_of(correlation_id):
            context = given
    attrs = {"tuoyu.correlation_id": str(correlation_id),
             **{f"tuoyu.{k}": str(v) for k, v in attributes.items() if v is not None}}
    with tracer().start_as_current_span(name, context=context, kind=kind,
                                        attributes=attrs) as current:
        yield current


def traceparent_of(current: Any) -> str | None:
    """The W3C traceparent of a span (to pass it on over RPC)."""
    if current is None:
        return None
    ctx = current.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def read_spans(folder: Path) -> list[dict[str, Any]]:
    """Every span the processes wrote to ``folder`` (``TUOYU_OTEL_EXPORTER=file``)."""
    spans = []
    for path in sorted(Path(folder).glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                spans.append(json.loads(line))
    return spans
