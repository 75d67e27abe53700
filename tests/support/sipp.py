"""Real SIP callers, not a double: Debian's SIPp (`sip-tester`) running the scenarios in
tests/e2e/sip/, and tcpdump on the loopback to see the RTP that reached the caller's media
port. Used by the e2e and integration tests of the SIP edge."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from voicemesh.audio.g711 import ulaw_decode, ulaw_encode
from voicemesh.audio.resample import resample
from voicemesh.audio.wav import read_wav
from voicemesh.mesh.localservers import free_port

SCENARIOS = Path(__file__).resolve().parents[1] / "e2e" / "sip"
ULAW_SILENCE = b"\xff"  # μ-law of 0
SIPP_PCAPS = Path("/usr/share/sip-tester")


def need_sipp() -> None:
    if shutil.which("sipp") is None:
        pytest.fail("SIPp is missing: `make tools` installs Debian's sip-tester")


def need_capture() -> None:
    if shutil.which("tcpdump") is None:
        pytest.fail("tcpdump is missing: `make tools` installs it")
    if os.geteuid() != 0:
        pytest.skip("capturing the loopback needs root (tcpdump); CI runs as root")


def caller_ulaw(wav: Path, *, lead_s: float = 0.0, tail_s: float = 0.0) -> bytes:
    """8 kHz μ-law of a fixture, with silence before (to wait out the greeting) and after."""
    pcm, _ = read_wav(wav)  # 16 kHz
    pcm8k = resample(np.frombuffer(pcm, dtype=np.int16), 16000, 8000).tobytes()
    return ULAW_SILENCE * int(lead_s * 8000) + ulaw_encode(pcm8k) + ULAW_SILENCE * int(tail_s * 8000)


@dataclass(frozen=True)
class SippRun:
    returncode: int
    output: str
    errors: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


async def run_sipp(
    scenario: str,
    edge_port: int,
    workdir: Path,
    *,
    service: str = "restaurant",
    media_port: int | None = None,
    calls: int = 1,
    pause_ms: int = 1000,
    extra: tuple[str, ...] = (),
    timeout_s: float = 120.0,
    server: bool = False,
    sip_port: int | None = None,
) -> SippRun:
    """Run SIPp's `scenario` (a file in tests/e2e/sip/) as a caller against 127.0.0.1:edge_port,
    or with `server` as a phone that waits for a call on `sip_port`. Its own SIP port is a
    free one unless given, so it never collides with a mesh on 5060."""
    need_sipp()
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    errors = workdir / f"{scenario}.errors.log"
    args = [
        "sipp",
        "-sf",
        str(SCENARIOS / scenario),
        "-s",
        service,
        "-i",
        "127.0.0.1",
        "-p",
        str(sip_port or free_port()),
        "-mp",
        str(media_port or free_port()),
        "-m",
        str(calls),
        "-l",
        str(calls),
        "-r",
        str(calls),
        "-d",
        str(pause_ms),
        "-nostdin",
        "-trace_err",
        "-error_file",
        str(errors),
        *extra,
        *([] if server else [f"127.0.0.1:{edge_port}"]),
    ]
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=workdir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"sipp {scenario} did not finish in {timeout_s:.0f} s") from None
    text = errors.read_text(errors="replace") if errors.exists() else ""
    return SippRun(proc.returncode or 0, out.decode(errors="replace"), text)


@dataclass(frozen=True)
class Rtp:
    at: float  # capture time, seconds
    marker: bool
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes


def parse_rtp(data: bytes, at: float = 0.0) -> Rtp | None:
    if len(data) < 12 or data[0] >> 6 != 2:
        return None
    first, second, seq, ts, ssrc = struct.unpack("!BBHII", data[:12])
    offset = 12 + 4 * (first & 0x0F)
    if first & 0x10 and len(data) >= offset + 4:  # header extension
        offset += 4 + 4 * struct.unpack("!H", data[offset + 2 : offset + 4])[0]
    end = len(data) - (data[-1] if first & 0x20 else 0)
    return Rtp(at, bool(second & 0x80), second & 0x7F, seq, ts, ssrc, data[offset:end])


def read_pcap_udp(path: Path) -> list[tuple[float, bytes]]:
    """(time, UDP payload) of every IPv4 UDP datagram in a pcap of the loopback."""
    raw = path.read_bytes()
    if len(raw) < 24:
        return []
    magic = struct.unpack("<I", raw[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    nano = magic in (0xA1B23C4D, 0x4D3CB2A1)
    linktype = struct.unpack(endian + "I", raw[20:24])[0]
    link_bytes = {1: 14, 113: 16, 276: 20, 0: 4}.get(linktype)
    if link_bytes is None:
        raise ValueError(f"pcap link type {linktype} is not one this reader knows")
    out: list[tuple[float, bytes]] = []
    pos = 24
    while pos + 16 <= len(raw):
        sec, frac, caplen, _ = struct.unpack(endian + "IIII", raw[pos : pos + 16])
        frame = raw[pos + 16 : pos + 16 + caplen]
        pos += 16 + caplen
        ip = frame[link_bytes:]
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        udp = ip[(ip[0] & 0x0F) * 4 :]
        out.append((sec + frac / (1e9 if nano else 1e6), udp[8:]))
    return out


def capture_udp(dst_port: int, path: Path) -> contextlib.AbstractAsyncContextManager[Path]:
    """tcpdump on lo of the UDP datagrams sent to `dst_port`, written to `path`."""
    return _capture(f"udp dst port {dst_port}", path)


def capture_udp_range(ports: tuple[int, int], path: Path) -> contextlib.AbstractAsyncContextManager[Path]:
    """tcpdump on lo of the UDP datagrams sent from a port in `ports` (a caller's RTP)."""
    return _capture(f"udp src portrange {ports[0]}-{ports[1]}", path)


@contextlib.asynccontextmanager
async def _capture(expression: str, path: Path) -> AsyncIterator[Path]:
    need_capture()
    args = ["tcpdump", "-i", "lo", "-nn", "-U", "-s", "0", "-w", str(path), expression]
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    line = await asyncio.wait_for(proc.stderr.readline(), 10)  # "listening on lo, ..."
    assert b"listening" in line, line
    try:
        yield path
    finally:
        await asyncio.sleep(0.3)  # the last datagrams reach the file
        proc.send_signal(signal.SIGINT)
        await proc.wait()


def rtp_of(path: Path) -> list[Rtp]:
    return [p for at, data in read_pcap_udp(path) if (p := parse_rtp(data, at)) is not None]


def audio_of(packets: list[Rtp], payload_type: int = 0) -> bytes:
    """The 8 kHz PCM16 of the PCMU packets, in order, silence where timestamps skip."""
    audio = [p for p in packets if p.payload_type == payload_type]
    if not audio:
        return b""
    out = bytearray()
    base = audio[0].timestamp
    for p in audio:
        at = ((p.timestamp - base) & 0xFFFFFFFF) * 2
        if at > len(out):
            out += bytes(at - len(out))
        out[at : at + len(p.payload) * 2] = ulaw_decode(p.payload)
    return bytes(out)
