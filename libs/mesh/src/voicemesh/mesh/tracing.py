"""OpenTelemetry: one trace per call, a span per stage.

The edge starts the call's root span; its context travels to stt, reasoning and tts in the
gRPC metadata (W3C `traceparent`), so every service's spans join the call's trace.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter


def make_tracer_provider(
    service: str, instance_id: str, exporter: str = "none", extra: Sequence[SpanProcessor] = ()
) -> TracerProvider:
    """A provider for one service. exporter: "none", "console", or "otlp" (needs the OTLP
    exporter package and OTEL_EXPORTER_OTLP_ENDPOINT)."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": f"voicemesh-{service}", "service.instance.id": instance_id})
    )
    if exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found]
                OTLPSpanExporter,
            )
        except ImportError as exc:
            raise ValueError(
                "VOICEMESH_OTEL_EXPORTER=otlp needs opentelemetry-exporter-otlp installed"
            ) from exc
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    elif exporter != "none":
        raise ValueError(f"unknown trace exporter {exporter!r} (none, console, otlp)")
    for processor in extra:
        provider.add_span_processor(processor)
    return provider


def outgoing_metadata(ctx: otel_context.Context | None = None) -> list[tuple[str, str]]:
    """gRPC metadata carrying the current (or given) span context to the next service."""
    carrier: dict[str, str] = {}
    inject(carrier, context=ctx)
    return list(carrier.items())


def incoming_context(metadata: Iterable[tuple[str, str | bytes]] | None) -> otel_context.Context:
    """The caller's span context from gRPC invocation metadata (empty context if none)."""
    carrier = {k: v for k, v in (metadata or ()) if isinstance(v, str)}
    return extract(carrier)


def trace_id_hex(span: trace.Span) -> str:
    ctx = span.get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""
