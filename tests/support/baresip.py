"""Real SIP user agents, not doubles: Debian's baresip (`baresip-core`) dialling the edge
with a WAV as its microphone (`aufile`) and recording what it hears (`sndfile`), over UDP
or TLS, with SDES-SRTP required; and a self-signed certificate for the edge's TLS."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from voicemesh.mesh.localservers import free_port


def need_baresip() -> None:
    if shutil.which("baresip") is None:
        pytest.fail("baresip is missing: `make tools` installs Debian's baresip-core")


def self_signed(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A certificate for `host` (and localhost) and its key, made with openssl."""
    cert, key = directory / "edge.crt", directory / "edge.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={host}",
            "-addext", f"subjectAltName=IP:{host},DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@dataclass(frozen=True)
class BaresipRun:
    output: str
    heard: list[Path]  # WAVs of what baresip decoded from the edge

    @property
    def established(self) -> bool:
        return "Call established" in self.output or "call established" in self.output


async def dial(uri: str, workdir: Path, microphone: Path, *, seconds: int, cafile: Path | None = None,
               srtp: str = "srtp-mand", rtp_ports: tuple[int, int] | None = None) -> BaresipRun:
    """Dial `uri`, play `microphone` (a WAV) into the call, hang up after `seconds`; media
    encryption `srtp` (baresip's mediaenc; "" for plain RTP)."""
    need_baresip()
    conf = workdir / "baresip"
    dump = conf / "dump"
    dump.mkdir(parents=True, exist_ok=True)
    low = rtp_ports[0] if rtp_ports else 30000 + free_port() % 20000 // 2 * 2
    high = rtp_ports[1] if rtp_ports else low + 20
    transport = ";transport=tls" if ";transport=tls" in uri else ""
    (conf / "accounts").write_text(
        f"<sip:caller@127.0.0.1{transport}>;regint=0;{f'mediaenc={srtp};' if srtp else ''}"
        "audio_codecs=PCMU/8000/1,PCMA/8000/1;answermode=manual\n"
    )
    (conf / "contacts").write_text("")
    lines = {
        "poll_method": "epoll",
        "net_interface": "127.0.0.1",  # else baresip advertises another interface in its SDP
        "sip_listen": f"127.0.0.1:{free_port()}",
        "audio_path": "/usr/share/baresip",
        "audio_source": f"aufile,{microphone}",
        "audio_player": "aubridge,sink",
        "audio_alert": "aubridge,sink",
        "ausrc_srate": "8000",
        "auplay_srate": "8000",
        "ausrc_channels": "1",
        "auplay_channels": "1",
        "rtp_ports": f"{low}-{high}",
        "rtcp_mux": "no",
        "rtp_stats": "yes",
        "snd_path": str(dump),
        "module_path": "/usr/lib/baresip/modules",
    }
    if cafile is not None:
        lines["sip_cafile"] = str(cafile)
    modules = ["g711.so", "aufile.so", "aubridge.so", "srtp.so", "sndfile.so"]
    apps = ["account.so", "contact.so", "menu.so"]
    text = "".join(f"{k}\t{v}\n" for k, v in lines.items())
    text += "".join(f"module\t{m}\n" for m in modules) + "".join(f"module_app\t{m}\n" for m in apps)
    (conf / "config").write_text(text)
    proc = await asyncio.create_subprocess_exec(
        "baresip", "-f", str(conf), "-e", f"/dial {uri}", "-t", str(seconds),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), seconds + 20)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"baresip did not quit after {seconds} s") from None
    text_out = out.decode(errors="replace").replace("\r", "\n")
    return BaresipRun(text_out, sorted(dump.glob("*-dec.wav")))
