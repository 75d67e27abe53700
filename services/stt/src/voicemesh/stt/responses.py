"""Building `RecognizeResponse` messages from decode results (pure)."""

from __future__ import annotations

from voicemesh.v1 import stt_pb2

from .engine import DecodeResult


def stability(previous: str, current: str) -> float:
    """How much of `current` the previous hypothesis already agreed on: the share of its
    words in the common word prefix (0..1). A cheap proxy for "will survive unchanged"."""
    cur = current.lower().split()
    if not cur:
        return 0.0
    prev = previous.lower().split()
    same = 0
    for a, b in zip(prev, cur, strict=False):
        if a.strip(",.?!") != b.strip(",.?!"):
            break
        same += 1
    return same / len(cur)


def speech_event(kind: stt_pb2.SpeechEvent.Kind.ValueType, audio_ms: int) -> stt_pb2.RecognizeResponse:
    return stt_pb2.RecognizeResponse(speech=stt_pb2.SpeechEvent(kind=kind, audio_ms=audio_ms))


def transcript(
    *,
    utterance_id: str,
    result: DecodeResult | None,
    final: bool,
    audio_start_ms: int,
    audio_end_ms: int,
    stability: float = 1.0,
    flush_id: str | None = None,
) -> stt_pb2.RecognizeResponse:
    """A transcript; `result` None means nothing was heard (empty text)."""
    msg = stt_pb2.Transcript(
        utterance_id=utterance_id,
        final=final,
        audio_start_ms=audio_start_ms,
        audio_end_ms=audio_end_ms,
        stability=1.0 if final else stability,
        flush_id=flush_id or "",
    )
    if result is not None:
        msg.text = result.text
        msg.confidence = result.confidence
        msg.decode_ms = round(result.decode_s * 1000)
        for w in result.words:
            msg.words.append(
                stt_pb2.Word(
                    text=w.text,
                    start_ms=audio_start_ms + round(w.start_s * 1000),
                    end_ms=audio_start_ms + round(w.end_s * 1000),
                    probability=w.probability,
                )
            )
    return stt_pb2.RecognizeResponse(transcript=msg)
