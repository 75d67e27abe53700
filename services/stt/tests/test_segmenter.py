from __future__ import annotations

import pytest

from voicemesh.stt.segmenter import (
    Decision,
    DecodeKind,
    DecodeRequest,
    Finalize,
    FinalReason,
    Segmenter,
    SegmenterConfig,
    SpeechEnded,
    SpeechStarted,
)

pytestmark = pytest.mark.unit

SPEECH = 0.9
QUIET = 0.05


def frame(i: int) -> bytes:
    """A frame whose bytes say which frame it is, so decode audio can be checked exactly."""
    return (i % 65536).to_bytes(2, "little") * 320


def frame_index(audio: bytes, k: int) -> int:
    return int.from_bytes(audio[k * 640 : k * 640 + 2], "little")


class Feed:
    def __init__(self, config: SegmenterConfig) -> None:
        self.seg = Segmenter(config)
        self.n = 0
        self.log: list[tuple[int, Decision]] = []

    def run(self, ms: int, prob: float, idle: bool = True) -> list[Decision]:
        out: list[Decision] = []
        for _ in range(ms // 20):
            got = self.seg.push(frame(self.n), prob, decoder_idle=idle)
            self.log += [(self.n, d) for d in got]
            out += got
            self.n += 1
        return out

    def flush(self, flush_id: str = "f1") -> list[Decision]:
        return self.seg.flush(flush_id)


def of(decisions: list[Decision], kind: type) -> list:
    return [d for d in decisions if isinstance(d, kind)]


def external(**kw: object) -> SegmenterConfig:
    return SegmenterConfig(internal_endpointing=False, partials=False, **kw)  # type: ignore[arg-type]


def test_flush_without_speech_gives_one_empty_final() -> None:
    feed = Feed(external())
    assert feed.run(1000, QUIET) == []
    out = feed.flush("abc")
    assert len(out) == 1
    final = out[0]
    assert isinstance(final, Finalize)
    assert final.flush_id == "abc" and final.audio == b"" and final.reuse is None
    assert final.reason is FinalReason.FLUSH


def test_speech_start_keeps_300ms_preroll() -> None:
    feed = Feed(external())
    feed.run(1000, QUIET)
    started = of(feed.run(1000, SPEECH), SpeechStarted)
    assert started == [SpeechStarted(1000)]
    final = feed.flush()[-1]
    assert isinstance(final, Finalize)
    assert final.audio_start_ms == 700
    assert frame_index(final.audio, 0) == 35  # 700 ms / 20 ms


def test_pause_requests_a_speculative_decode_trimmed_to_the_voiced_audio() -> None:
    feed = Feed(external(speculative_silence_ms=160))
    feed.run(200, QUIET)
    feed.run(1000, SPEECH)
    out = feed.run(400, QUIET)
    spec = of(out, DecodeRequest)
    assert [r.kind for r in spec] == [DecodeKind.SPECULATIVE]
    when = next(n for n, d in feed.log if d is spec[0])
    assert when == 60 + 8 - 1  # the 8th quiet frame after voiced audio ending at frame 60
    assert spec[0].audio_end_ms == 1200 + 160
    assert len(spec[0].audio) == (1360 - spec[0].audio_start_ms) // 20 * 640


def test_final_after_pause_reuses_the_speculative_decode() -> None:
    feed = Feed(external())
    feed.run(200, QUIET)
    feed.run(1000, SPEECH)
    spec = of(feed.run(500, QUIET), DecodeRequest)[0]
    out = feed.flush("f9")
    assert isinstance(out[0], SpeechEnded) and out[0].audio_ms == 1200
    final = out[-1]
    assert isinstance(final, Finalize)
    assert final.reuse == spec.request_id
    assert final.audio == spec.audio  # trailing silence is not part of either
    assert final.flush_id == "f9"


def test_new_speech_after_a_speculative_decode_prevents_reuse() -> None:
    feed = Feed(external())
    feed.run(1000, SPEECH)
    first = of(feed.run(200, QUIET), DecodeRequest)
    assert [r.kind for r in first] == [DecodeKind.SPECULATIVE]
    feed.run(300, SPEECH)  # the caller goes on
    final = feed.flush()[-1]
    assert isinstance(final, Finalize)
    assert final.reuse is None
    assert len(final.audio) > len(first[0].audio)


def test_second_pause_takes_a_fresh_speculative_decode_that_the_final_reuses() -> None:
    feed = Feed(external())
    feed.run(1000, SPEECH)
    feed.run(200, QUIET)
    feed.run(300, SPEECH)
    second = of(feed.run(400, QUIET), DecodeRequest)
    assert [r.kind for r in second] == [DecodeKind.SPECULATIVE]
    final = feed.flush()[-1]
    assert isinstance(final, Finalize) and final.reuse == second[0].request_id


def test_flush_before_the_pause_threshold_decodes_fresh_audio() -> None:
    feed = Feed(external(speculative_silence_ms=160))
    feed.run(1000, SPEECH)
    assert of(feed.run(100, QUIET), DecodeRequest) == []
    final = feed.flush()[-1]
    assert isinstance(final, Finalize)
    assert final.reuse is None and final.audio_end_ms == 1100


def test_speculative_decodes_can_be_turned_off() -> None:
    feed = Feed(external(speculative=False))
    feed.run(1000, SPEECH)
    assert of(feed.run(800, QUIET), DecodeRequest) == []
    final = feed.flush()[-1]
    assert isinstance(final, Finalize) and final.reuse is None and final.audio


def test_internal_endpointing_finalizes_after_the_endpoint_silence() -> None:
    feed = Feed(SegmenterConfig(endpoint_silence_ms=600, partials=False))
    feed.run(1000, SPEECH)
    out = feed.run(1000, QUIET)
    finals = of(out, Finalize)
    assert len(finals) == 1 and finals[0].reason is FinalReason.ENDPOINT
    when = next(n for n, d in feed.log if d is finals[0])
    assert when == 50 + 30 - 1  # 600 ms after the last voiced frame
    spec = of(out, DecodeRequest)[0]
    assert finals[0].reuse == spec.request_id
    ended = of(out, SpeechEnded)
    assert ended == [SpeechEnded(1000)]
    assert out.index(ended[0]) < out.index(finals[0])
    assert feed.seg.utterance is None


def test_external_endpointing_waits_for_flush_but_reports_speech_end() -> None:
    feed = Feed(external(endpoint_silence_ms=600))
    feed.run(1000, SPEECH)
    out = feed.run(3000, QUIET)
    assert of(out, Finalize) == []
    assert of(out, SpeechEnded) == [SpeechEnded(1000)]
    out = feed.flush()
    assert [type(d) for d in out] == [Finalize]  # speech already reported ended


def test_speech_events_alternate_across_utterances() -> None:
    feed = Feed(SegmenterConfig(endpoint_silence_ms=400, partials=False))
    kinds = []
    for _ in range(3):
        out = feed.run(600, SPEECH) + feed.run(600, QUIET)
        kinds += [type(d).__name__ for d in out if not isinstance(d, DecodeRequest)]
    assert kinds == ["SpeechStarted", "SpeechEnded", "Finalize"] * 3
    finals = [d for _, d in feed.log if isinstance(d, Finalize)]
    assert len({f.utterance for f in finals}) == 3


def test_partials_follow_new_voiced_audio_when_the_decoder_is_idle() -> None:
    feed = Feed(SegmenterConfig(partials=True, partial_interval_ms=600, internal_endpointing=False))
    out = feed.run(2000, SPEECH)
    partials = [d for d in out if isinstance(d, DecodeRequest) and d.kind is DecodeKind.PARTIAL]
    assert [p.audio_end_ms for p in partials] == [600, 1200, 1800]


def test_no_partials_while_the_decoder_is_busy_or_when_disabled() -> None:
    busy = Feed(SegmenterConfig(partials=True, internal_endpointing=False))
    assert of(busy.run(2000, SPEECH, idle=False), DecodeRequest) == []
    # once idle again, the owed partial comes at once
    assert [r.kind for r in of(busy.run(20, SPEECH), DecodeRequest)] == [DecodeKind.PARTIAL]
    off = Feed(SegmenterConfig(partials=False, internal_endpointing=False))
    assert of(off.run(2000, SPEECH), DecodeRequest) == []


def test_max_length_forces_a_final_and_speech_continues_in_a_new_utterance() -> None:
    feed = Feed(external(max_utterance_ms=5000, preroll_ms=0))
    out = feed.run(7000, SPEECH)
    finals = of(out, Finalize)
    assert len(finals) == 1 and finals[0].reason is FinalReason.MAX_LENGTH
    assert finals[0].audio_end_ms - finals[0].audio_start_ms == 5000
    assert of(out, SpeechStarted) == [SpeechStarted(0)]  # one stretch of speech
    rest = feed.flush()[-1]
    assert isinstance(rest, Finalize)
    assert rest.utterance != finals[0].utterance
    assert (rest.audio_start_ms, rest.audio_end_ms) == (5000, 7000)


def test_max_length_then_silence_reports_speech_end() -> None:
    feed = Feed(SegmenterConfig(max_utterance_ms=2000, partials=False, endpoint_silence_ms=400))
    feed.run(2000, SPEECH)
    out = feed.run(1000, QUIET)
    assert of(out, SpeechEnded) == [SpeechEnded(2000)]
    final = of(out, Finalize)[0]
    assert final.audio == b""  # the continuation held no speech: nothing to decode


def test_a_blip_is_not_decoded() -> None:
    feed = Feed(external(min_voiced_ms=100))
    feed.run(500, QUIET)
    feed.run(40, SPEECH)
    out = feed.run(500, QUIET)
    assert of(out, DecodeRequest) == []
    final = feed.flush()[-1]
    assert isinstance(final, Finalize) and final.audio == b""


def test_end_of_input_finalizes_pending_speech_only() -> None:
    quiet = Feed(external())
    quiet.run(500, QUIET)
    assert quiet.seg.finish() == []
    talking = Feed(external())
    talking.run(800, SPEECH)
    out = talking.seg.finish()
    assert isinstance(out[0], SpeechEnded)
    assert isinstance(out[1], Finalize) and out[1].reason is FinalReason.END_OF_INPUT
    assert out[1].flush_id is None and out[1].audio


def test_hysteresis_keeps_a_quiet_word_tail_in_speech() -> None:
    feed = Feed(external())
    feed.run(500, SPEECH)
    assert of(feed.run(600, 0.4), DecodeRequest) == []  # above release: still speech
    assert of(feed.run(200, 0.3), DecodeRequest) != []


def test_wrong_frame_size_is_rejected() -> None:
    with pytest.raises(ValueError, match="640 bytes"):
        Segmenter(SegmenterConfig()).push(b"\0" * 320, 0.0)


def test_config_rejects_speculation_later_than_the_endpoint() -> None:
    with pytest.raises(ValueError, match="speculative_silence_ms"):
        SegmenterConfig(endpoint_silence_ms=200, speculative_silence_ms=300)
