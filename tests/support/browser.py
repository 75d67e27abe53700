"""The softphone page in a real browser: Debian's Chromium, driven by softphone.mjs
(playwright-core from .tools/node), with a WAV as its microphone."""

from __future__ import annotations

import json
import shutil
import subprocess
import wave
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "softphone.mjs"
PLAYWRIGHT = HERE.parents[1] / ".tools" / "node" / "node_modules" / "playwright-core"


def chromium_available() -> bool:
    return Path("/usr/bin/chromium").exists() and PLAYWRIGHT.is_dir() and shutil.which("node") is not None


def padded_wav(src: Path, dst: Path, lead_s: float, tail_s: float) -> Path:
    """`src` with `lead_s` of silence before and `tail_s` after (Chromium repeats the last
    10 ms of its fake microphone's file forever: a buzz, unless the file ends in silence)."""
    with wave.open(str(src), "rb") as w:
        rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    zeros = lambda s: np.zeros(int(s * rate) * channels, np.int16)  # noqa: E731
    with wave.open(str(dst), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(np.concatenate([zeros(lead_s), pcm, zeros(tail_s)]).tobytes())
    return dst


def run_softphone(
    url: str, wav: Path, seconds: float, screenshot: Path | None = None, timeout_s: float = 120, **extra: Any
) -> dict[str, Any]:
    """Open the page, click Call, stay `seconds`, hang up; what the page showed."""
    opts = {"url": url, "wav": str(wav), "seconds": seconds, "screenshot": str(screenshot or ""), **extra}
    done = subprocess.run(
        ["node", str(DRIVER), json.dumps(opts)], capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"the browser run failed: {done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
