from __future__ import annotations

from pathlib import Path

import pytest

from voicemesh.audio import SileroModel, read_wav

ASSETS = Path("/work/shared/assets/audio")


@pytest.fixture(scope="session")
def jfk_pcm() -> bytes:
    """11 s of real speech as PCM16 LE mono 16 kHz."""
    pcm, _ = read_wav(ASSETS / "jfk16k.wav")
    return pcm


@pytest.fixture(scope="session")
def jfk_ulaw() -> bytes:
    """The same speech as a carrier sends it: raw 8 kHz μ-law."""
    return (ASSETS / "jfk8k.ulaw").read_bytes()


@pytest.fixture(scope="session")
def silero_model() -> SileroModel:
    return SileroModel.load()
