from __future__ import annotations

from pathlib import Path

import pytest

from voicemesh.audio import SileroModel, read_wav


@pytest.fixture(scope="session")
def jfk_pcm(jfk_wav: Path) -> bytes:
    """11 s of real speech as PCM16 LE mono 16 kHz."""
    pcm, _ = read_wav(jfk_wav)
    return pcm


@pytest.fixture(scope="session")
def jfk_ulaw(assets_dir: Path) -> bytes:
    """The same speech as a carrier sends it: raw 8 kHz μ-law."""
    return (assets_dir / "audio" / "jfk8k.ulaw").read_bytes()


@pytest.fixture(scope="session")
def silero_model() -> SileroModel:
    return SileroModel.load()
