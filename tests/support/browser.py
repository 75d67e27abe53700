"""The softphone page in a real browser: Debian's Chromium, driven by softphone.mjs
(playwright-core from .tools/node), with a WAV as its microphone."""

from __future__ import annotations

import json
import shutil
import subprocess
import wave
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "softphone.mjs"
PLAYWRIGHT = HERE.parents[1] / ".tools" / "node" / "node_modules" / "playwright-core"


def chromium_available() -> bool:
    return Path("/usr/bin/chromium").exists() and PLAYWRIGHT.is_dir() and shutil.which("node") is not None


def padded_wav(src: Path, dst: Path, lead_s: float, tail_s: float) -> Path:
    """`src` (16-bit PCM) with `lead_s` of silence before and `tail_s` after (Chromium repeats
    the last 10 ms of its fake microphone's file forever: a buzz, unless the file ends in silence)."""
    try:
        with wave.open(str(src), "rb") as w:
            rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
            pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16) if width == 2 else None
    except wave.Error as exc:  # what the wave module cannot read is not PCM
        raise ValueError(f"{src}: a fake microphone needs a 16-bit PCM WAV ({exc})") from None
    if pcm is None:
        raise ValueError(f"{src}: a fake microphone needs a 16-bit PCM WAV, this one is {8 * width}-bit")
    zeros = lambda s: np.zeros(int(s * rate) * channels, np.int16)  # noqa: E731
    with wave.open(str(dst), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(np.concatenate([zeros(lead_s), pcm, zeros(tail_s)]).tobytes())
    return dst


def without_query(url: str) -> str:
    """The page's address as it may be shown: no query (the call token rides in it)."""
    return urlsplit(url)._replace(query="", fragment="").geturl()


def run_softphone(
    url: str, wav: Path, seconds: float, screenshot: Path | None = None, timeout_s: float = 120, **extra: Any
) -> dict[str, Any]:
    """Open the page, click Call, stay `seconds`, hang up; what the page showed (see
    softphone.mjs for `extra`)."""
    opts = {"url": url, "wav": str(wav), "seconds": seconds, "screenshot": str(screenshot or ""), **extra}
    return run_driver(DRIVER, "browser", opts, timeout_s)


def run_driver(
    driver: Path, browser: str, opts: dict[str, Any], timeout_s: float, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run a page driver (softphone.mjs, firefox_softphone.mjs) on `opts` and return the JSON
    it prints last. The options go on stdin, and errors name the page without its query:
    both hold the call token."""
    url = str(opts["url"])
    try:
        done = subprocess.run(
            ["node", str(driver)],
            input=json.dumps(opts),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            env=env,
        )
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        tail = f": {stderr.strip()[-2000:]}" if stderr.strip() else ""
        # `from None`: the expired command's own text holds the options, and so the token
        raise RuntimeError(f"the {browser} run of {without_query(url)} took longer than {timeout_s:g} s{tail}") from None
    if done.returncode != 0:
        raise RuntimeError(f"the {browser} run of {without_query(url)} failed: {done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
