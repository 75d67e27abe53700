"""What a call leaves on the record beyond its decisions: the session events for turn
latency and media quality (NATS), and a trace span per caller turn. Plain functions of
what they publish; the call's shell calls them."""

from __future__ import annotations

import time

from opentelemetry import context as otel_context
from opentelemetry import trace

from voicemesh.mesh.events import EventSink
from voicemesh.mesh.metrics import ServiceMetrics
from voicemesh.v1 import events_pb2

from .port import MediaQuality, TurnTiming


def publish_quality(
    events: EventSink, metrics: ServiceMetrics, transport: str, session_id: str, q: MediaQuality, *, final: bool
) -> None:
    """A `media_quality` event; a fresh round trip also goes to `voicemesh_media_rtt_seconds`."""
    if q.rtt_ms is not None and not final:
        metrics.observe_rtt(transport, q.rtt_ms / 1000)
    events.emit(
        session_id,
        media_quality=events_pb2.MediaQuality(
            packets_received=q.packets_received,
            packets_lost=max(0, q.packets_lost),
            jitter_ms=q.jitter_ms,
            concealed_frames=q.concealed_frames,
            rtt_ms=q.rtt_ms or 0.0,
            remote_fraction_lost=q.remote_fraction_lost or 0.0,
            remote_jitter_ms=q.remote_jitter_ms or 0.0,
            final=final,
        ),
    )


def publish_latency(
    events: EventSink,
    tracer: trace.Tracer,
    session_id: str,
    call_ctx: otel_context.Context | None,
    timing: TurnTiming,
) -> None:
    """A `turn_latency` event, and a span per caller turn (last voiced frame -> first reply
    frame) made after the fact, with its stages as attributes, under the call's span."""
    events.emit(
        session_id,
        turn_latency=events_pb2.TurnLatency(
            turn_id=timing.turn_id,
            endpoint_ms=round(timing.endpoint_ms),
            stt_final_ms=round(timing.stt_final_ms),
            first_token_ms=round(timing.first_token_ms),
            tts_first_audio_ms=round(timing.tts_first_audio_ms),
            voice_to_voice_ms=round(timing.edge_voice_to_voice_ms),
        ),
    )
    end_ns = time.time_ns()
    span = tracer.start_span(
        "turn",
        context=call_ctx,
        start_time=end_ns - int(timing.edge_voice_to_voice_ms * 1e6),
        attributes={
            "voicemesh.turn_id": timing.turn_id,
            "voicemesh.endpoint_ms": timing.endpoint_ms,
            "voicemesh.stt_final_ms": timing.stt_final_ms,
            "voicemesh.first_token_ms": timing.first_token_ms,
            "voicemesh.tts_first_audio_ms": timing.tts_first_audio_ms,
            "voicemesh.voice_to_voice_ms": timing.edge_voice_to_voice_ms,
        },
    )
    span.end(end_time=end_ns)
