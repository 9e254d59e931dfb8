"""Tracing and metrics for the CLI and the worker: OpenTelemetry spans, the Prometheus endpoint.

Tracing: the Temporal SDK's `TracingInterceptor` on every client (and so on the worker built
from it) carries the trace through workflow headers, so `sluice start`, the workflow, each
activity and each signal are one trace. Spans are exported over OTLP/HTTP only when the
standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set;
the other standard `OTEL_*` variables (headers, service name, resource attributes) apply.

Metrics: `SLUICE_METRICS_ADDRESS` (`host:port`) makes the worker's Temporal runtime serve
Prometheus metrics on `http://host:port/metrics`: the runtime's own (`temporal_*`) and
Sluice's (`sluice_*`, recorded by the workflow, see `workflows.observe`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from sluice.contracts.names import METRIC_ROLLBACK_SECONDS, ROLLBACK_BUCKETS

METRICS_ADDRESS_ENV = "SLUICE_METRICS_ADDRESS"
TRACER_NAME = "sluice"
MEMO_TRACE = "traceparent"
"""Memo key holding the rollout's W3C trace context, so later CLI commands join its trace."""

_provider: TracerProvider | None = None


def otlp_configured() -> bool:
    """True when the standard OTLP endpoint variables ask for export."""
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def configure_tracing(service_name: str, *processors: SpanProcessor) -> TracerProvider:
    """Install the process' tracer provider once: OTLP export if configured, plus `processors`.

    Without an endpoint, spans still get trace ids (printed by `sluice start`) and go nowhere.
    """
    global _provider
    if _provider is None:
        resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or service_name})
        _provider = TracerProvider(resource=resource)
        if otlp_configured():
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(_provider)
    for processor in processors:
        _provider.add_span_processor(processor)
    return _provider


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


def interceptors() -> list[TracingInterceptor]:
    """The client interceptors that carry traces through Temporal (workers inherit them)."""
    return [TracingInterceptor(tracer())]


def shutdown() -> None:
    """Flush spans still buffered (the CLI ends with `os._exit`, which skips atexit)."""
    if _provider is not None:
        _provider.shutdown()


@contextmanager
def cli_span(
    name: str, attributes: Mapping[str, str], parent: Mapping[str, str] | None = None
) -> Iterator[trace.Span]:
    """A root span for one CLI command, or a child of `parent` (a carrier from the rollout's memo)."""
    ctx = extract(parent) if parent else None
    token = otel_context.attach(ctx) if ctx is not None else None
    try:
        with tracer().start_as_current_span(name, attributes=attributes) as span:
            yield span
    finally:
        if token is not None:
            otel_context.detach(token)


def current_carrier() -> dict[str, str]:
    """The current span as a W3C `traceparent` carrier, for the rollout's memo."""
    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier


def trace_id_of(span: trace.Span) -> str:
    """The 32-hex-digit trace id, as tracing backends search for it."""
    return format(span.get_span_context().trace_id, "032x")


# --- metrics ----------------------------------------------------------------------------------


def metrics_address(value: str | None = None) -> str | None:
    """`value` (else `$SLUICE_METRICS_ADDRESS`) as `host:port`; None when unset or `off`; bad values raise."""
    value = (value if value is not None else os.environ.get(METRICS_ADDRESS_ENV) or "").strip()
    if not value or value.lower() == "off":
        return None
    if not re.match(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):\d{1,5}$", value):
        raise ValueError(f"{METRICS_ADDRESS_ENV}={value!r} is not host:port, e.g. 0.0.0.0:9464")
    return value


def worker_runtime(bind_address: str | None) -> Runtime | None:
    """A Temporal runtime serving Prometheus metrics on `bind_address`; None keeps the default."""
    if bind_address is None:
        return None
    return Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=bind_address,
                counters_total_suffix=True,
                durations_as_seconds=True,
                histogram_bucket_overrides={METRIC_ROLLBACK_SECONDS: list(ROLLBACK_BUCKETS)},
            )
        )
    )


_UNSAMPLED = trace.NonRecordingSpan(
    trace.SpanContext(
        trace_id=1, span_id=1, is_remote=False, trace_flags=trace.TraceFlags(trace.TraceFlags.DEFAULT)
    )
)


@contextmanager
def untraced() -> Iterator[None]:
    """Calls inside get an unsampled parent, so the SDK's default (parent-based) sampler drops
    their spans here and on the worker: status polls every second would otherwise each
    start a trace of their own."""
    with trace.use_span(_UNSAMPLED, end_on_exit=False):
        yield
