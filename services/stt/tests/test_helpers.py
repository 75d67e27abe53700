"""Small pure pieces: the intake queue, partial stability, the non-speech guard, responses."""

from __future__ import annotations

import asyncio

import pytest

from voicemesh.stt.engine import DecodeResult, WhisperSettings, Word, is_non_speech
from voicemesh.stt.intake import Intake
from voicemesh.stt.responses import stability, transcript

pytestmark = pytest.mark.unit


async def test_intake_drops_the_oldest_frames_but_never_a_control() -> None:
    intake: Intake[bytes, str] = Intake(max_frames=2)
    assert intake.put_frame(b"a") == 0
    await intake.put_control("flush")
    assert intake.put_frame(b"b") == 0
    assert intake.put_frame(b"c") == 1  # b"a" goes
    assert [await intake.get() for _ in range(3)] == ["flush", b"b", b"c"]


async def test_intake_makes_a_control_flood_wait() -> None:
    intake: Intake[bytes, str] = Intake(max_frames=4, max_controls=1)
    await intake.put_control("one")
    second = asyncio.create_task(intake.put_control("two"))
    await asyncio.sleep(0)
    assert not second.done()
    assert await intake.get() == "one"
    await asyncio.wait_for(second, 1)
    assert await intake.get() == "two"


def test_stability_is_the_share_of_words_the_last_hypothesis_agreed_on() -> None:
    assert stability("", "ask not") == 0.0
    assert stability("ask not what", "Ask not, what your") == 0.75
    assert stability("and so my", "and so am i") == 0.5
    assert stability("anything", "") == 0.0


@pytest.mark.parametrize(
    ("text", "no_speech", "logprob", "dropped"),
    [
        ("...", 0.0, -0.1, True),
        ("", 0.0, -0.1, True),
        ("Thank you.", 0.9, -1.5, True),  # the classic hallucination on silence
        ("Thank you.", 0.9, -0.3, False),  # confident: keep it
        ("ask not", 0.1, -1.5, False),
    ],
)
def test_non_speech_guard(text: str, no_speech: float, logprob: float, dropped: bool) -> None:
    assert is_non_speech(text, no_speech, logprob, WhisperSettings()) is dropped


def test_word_times_are_media_times_of_the_stream() -> None:
    result = DecodeResult(
        "ask not", 0.9, 0.01, 0.25, (Word("ask", 0.30, 0.62, 0.9), Word("not", 0.9, 1.2, 0.8))
    )
    msg = transcript(
        utterance_id="u-1",
        result=result,
        final=True,
        audio_start_ms=3000,
        audio_end_ms=4400,
        flush_id="f",
    ).transcript
    assert [(w.text, w.start_ms, w.end_ms) for w in msg.words] == [
        ("ask", 3300, 3620),
        ("not", 3900, 4200),
    ]
    assert (msg.decode_ms, msg.flush_id, msg.stability) == (250, "f", 1.0)


def test_nothing_heard_is_an_empty_final() -> None:
    msg = transcript(
        utterance_id="u-2", result=None, final=True, audio_start_ms=0, audio_end_ms=0, flush_id="f"
    ).transcript
    assert (msg.text, msg.final, msg.flush_id, msg.decode_ms) == ("", True, "f", 0)
