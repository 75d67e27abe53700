from __future__ import annotations

import json
import logging

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from voicemesh.mesh.logs import JsonFormatter, TextFormatter
from voicemesh.mesh.tracing import incoming_context, make_tracer_provider, outgoing_metadata

pytestmark = pytest.mark.unit


def test_a_call_span_context_crosses_to_the_next_service_as_grpc_metadata() -> None:
    exporter = InMemorySpanExporter()
    edge = make_tracer_provider("media-edge", "e1", extra=[SimpleSpanProcessor(exporter)]).get_tracer("t")
    stt = make_tracer_provider("stt", "s1", extra=[SimpleSpanProcessor(exporter)]).get_tracer("t")
    with edge.start_as_current_span("call") as call:
        metadata = outgoing_metadata()
    assert any(k == "traceparent" for k, _ in metadata)
    with stt.start_as_current_span("stt.utterance", context=incoming_context(metadata)):
        pass
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert spans["stt.utterance"].context.trace_id == call.get_span_context().trace_id
    assert spans["stt.utterance"].parent.span_id == call.get_span_context().span_id


def test_unknown_exporter_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown trace exporter 'zipkin'"):
        make_tracer_provider("stt", "s1", exporter="zipkin")


def record(**extra: object) -> logging.LogRecord:
    rec = logging.makeLogRecord({"msg": "final transcript", "levelname": "INFO", "name": "stt"})
    rec.__dict__.update(extra)
    return rec


def test_personal_fields_are_redacted_in_both_log_formats() -> None:
    rec = record(session="abc", transcript="my card number is 4111", caller="+15551234567")
    doc = json.loads(JsonFormatter("stt").format(rec))
    assert doc["session"] == "abc"
    assert doc["transcript"] == "[redacted]" and doc["caller"] == "[redacted]"
    text = TextFormatter("stt").format(rec)
    assert "4111" not in text and "5551234567" not in text and "session=abc" in text
