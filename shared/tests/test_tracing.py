"""Tracing is off unless configured, and one correlation id is one trace."""

from __future__ import annotations

import pytest

from tuoyu_shared import tracing
from tuoyu_shared.config import ConfigurationError


def test_off_by_default_and_spans_cost_nothing():
    assert tracing.exporter_kind({}) == "none"
    with tracing.span("rpc x.y", "corr-1") as span:
        assert span is None
    assert tracing.traceparent_of(None) is None


def test_an_unknown_exporter_is_refused_by_name():
    with pytest.raises(ConfigurationError, match="TUOYU_OTEL_EXPORTER"):
        tracing.exporter_kind({"TUOYU_OTEL_EXPORTER": "jaeger-thrift"})


def test_one_correlation_id_is_one_trace_in_every_process():
    a, b = tracing.trace_id_of("corr-1"), tracing.trace_id_of("corr-2")
    assert a == tracing.trace_id_of("corr-1") and a != b and 0 < a < 2 ** 128
    parent = tracing.correlation_parent("corr-1")
    from opentelemetry import trace

    context = trace.get_current_span(parent).get_span_context()
    assert context.trace_id == a and context.is_remote
