"""The softphone page in a real Firefox: Debian's firefox-esr, driven by firefox_softphone.mjs
(puppeteer-core from .tools/node, over WebDriver BiDi), with a WAV as its microphone and a
private PulseAudio server's null sink as its speaker.

Firefox runs Web Audio only on an audio output device: on a machine with none (CI, a
container) every AudioContext stays "suspended", so the page could neither send the WAV nor
measure what it hears. The null sink is such a device, and plays to nowhere."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from browser import run_driver

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "firefox_softphone.mjs"
FIREFOX = Path("/usr/bin/firefox-esr")
PUPPETEER = HERE.parents[1] / ".tools" / "node" / "node_modules" / "puppeteer-core"


def firefox_available() -> bool:
    return (
        FIREFOX.exists()
        and PUPPETEER.is_dir()
        and shutil.which("node") is not None
        and shutil.which("pulseaudio") is not None
    )


def _listening(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


@contextmanager
def null_sink(timeout_s: float = 10.0) -> Iterator[str]:
    """A PulseAudio server of its own (no config, cookie or socket of the user's) whose one
    device is a null sink; yields its address for PULSE_SERVER, and stops it after."""
    with tempfile.TemporaryDirectory(prefix="vm-pulse-") as home:
        sock = Path(home) / "native"
        env = {**os.environ, "HOME": home, "XDG_RUNTIME_DIR": home, "XDG_CONFIG_HOME": home}
        server = subprocess.Popen(
            [
                "pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no",
                "--disable-shm=yes", "--log-target=stderr",
                "-L", "module-null-sink sink_name=voicemesh_null rate=48000",
                "-L", f"module-native-protocol-unix socket={sock} auth-anonymous=1",
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + timeout_s
            while not _listening(sock):
                if server.poll() is not None or time.monotonic() > deadline:
                    server.kill()
                    _, stderr = server.communicate()
                    raise RuntimeError(f"pulseaudio did not start its null sink: {stderr.strip()[-1000:]}")
                time.sleep(0.05)
            yield f"unix:{sock}"
        finally:
            if server.poll() is None:
                server.terminate()
                try:
                    server.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
            if server.stderr is not None:
                server.stderr.close()


def run_firefox_softphone(
    url: str, wav: Path, seconds: float, screenshot: Path | None = None, timeout_s: float = 120, **extra: Any
) -> dict[str, Any]:
    """Open the page in Firefox, click Call, stay `seconds`, hang up; what the page showed,
    with Firefox's version and the call's getStats() (see firefox_softphone.mjs for `extra`)."""
    opts = {"url": url, "wav": str(wav), "seconds": seconds, "screenshot": str(screenshot or ""), **extra}
    with null_sink() as pulse:
        return run_driver(DRIVER, "Firefox", opts, timeout_s, env={**os.environ, "PULSE_SERVER": pulse})
