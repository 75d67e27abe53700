"""PiperEngine with the bundled voice: loading, voices, audio, and the worker thread."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from voicemesh.audio.frames import rms_dbfs
from voicemesh.tts.engine import (
    DEFAULT_VOICE,
    PiperEngine,
    UnknownVoiceError,
    VoiceFiles,
)

pytestmark = pytest.mark.integration


def test_the_default_voice_speaks_at_22050_hz(piper_engine: PiperEngine) -> None:
    assert piper_engine.voice("").voice_id == DEFAULT_VOICE
    assert piper_engine.voice(DEFAULT_VOICE).sample_rate == 22050
    chunks = list(piper_engine.synthesize("Hello there. How are you?"))
    assert len(chunks) == 2  # piper gives one chunk per sentence
    pcm = b"".join(chunks)
    seconds = len(pcm) / 2 / 22050
    assert 0.8 < seconds < 4.0
    assert rms_dbfs(pcm) > -30.0
    peak = int(np.abs(np.frombuffer(pcm, dtype="<i2")).max())
    assert peak <= int(0.8 * 32767) + 1  # normalised to the engine's volume, no clipping


def test_an_unknown_voice_is_named_with_the_available_ones(piper_engine: PiperEngine) -> None:
    with pytest.raises(UnknownVoiceError, match=r"'en_GB-nobody-low'.*en_US-joe-medium"):
        piper_engine.voice("en_GB-nobody-low")


def test_a_default_voice_without_files_is_refused() -> None:
    with pytest.raises(UnknownVoiceError, match="default voice 'xx'"):
        PiperEngine(voices={"yy": VoiceFiles(Path("a.onnx"), Path("a.json"))}, default_voice="xx")


def test_nothing_is_speakable_before_load() -> None:
    engine = PiperEngine()
    assert not engine.loaded
    with pytest.raises(UnknownVoiceError, match="none loaded"):
        engine.voice("")
    engine.close()


async def test_stream_runs_piper_on_the_single_worker_thread(piper_engine: PiperEngine) -> None:
    seen: set[str] = set()
    original = piper_engine.synthesize

    def spy(text: str, voice_id: str = "") -> Any:
        for chunk in original(text, voice_id):
            seen.add(threading.current_thread().name)
            yield chunk

    piper_engine.synthesize = spy  # type: ignore[method-assign]
    try:
        chunks = [c async for c in piper_engine.stream("One. Two. Three.")]
    finally:
        del piper_engine.synthesize  # type: ignore[method-assign]
    assert len(chunks) == 3
    assert len(seen) == 1 and next(iter(seen)).startswith("tts-engine")


def test_first_audio_latency_and_real_time_factor(piper_engine: PiperEngine) -> None:
    """Prints the figures; asserts only that synthesis is faster than real time."""
    clause = "Sure, let me check that."
    latencies = []
    for _ in range(5):
        started = time.perf_counter()
        next(iter(piper_engine.synthesize(clause)))
        latencies.append(time.perf_counter() - started)
    text = (
        "Your appointment is booked for Tuesday at three thirty in the afternoon, "
        "and a reminder will be sent to you the day before."
    )
    started = time.perf_counter()
    pcm = b"".join(piper_engine.synthesize(text))
    rtf = (time.perf_counter() - started) / (len(pcm) / 2 / 22050)
    print(f"first audio of a short clause: {1000 * float(np.median(latencies)):.0f} ms, RTF {rtf:.3f}")
    assert rtf < 1.0
