"""WebRTC calls from a real browser: page load → connected, and each turn's latency as the
browser lives it.

Opens the softphone page in Debian's Chromium (headless, tests/support/softphone.mjs) with
a read sentence as its microphone ("Hi, I would like a table for four people, please."),
one call after another through a local mesh on free ports, and reports over the calls:

- page load → connected (ICE + DTLS up), from the page's own clock;
- edge voice-to-voice: the edge's `timing.edge_voice_to_voice_ms` (caller's last voiced
  frame at the edge → the reply's first frame sent);
- mouth to ear: measured in the page (the microphone's last moment above −40 dBFS → the
  first reply sound played), see docs/softphone.md;
- the browser's playout delay (jitter buffer) and the round trip;
- barge-in at the browser (`--barge-ins`, calls of their own: the caller talks over the
  greeting): the caller's speech onset at the microphone → the agent's audio going quiet in
  the page (the end of the last agent sound that began before the caller stopped talking),
  the figure issue 11 sets a target for, network and playout included. A call whose
  greeting had already gone quiet at the onset has no figure and is counted apart.

Prints figures; never fails on time.

    .venv/bin/python bench/webrtc.py --calls 6 --barge-ins 6
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from figures import cpu_model, load_average, percentile

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "support"))

from browser import chromium_available, padded_wav, run_softphone  # noqa: E402
from webrtc_caller import issue_token  # noqa: E402

from voicemesh.cli.localmesh import LocalMesh, MeshPorts  # noqa: E402

FIXTURES = REPO / "tests" / "e2e" / "fixtures"


async def token(mesh: LocalMesh) -> str:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        return await issue_token(http, f"http://127.0.0.1:{mesh.ports.ws}", mesh.token, "restaurant")


def line(name: str, values: list[float]) -> str:
    if not values:
        return f"{name:<28} no samples"
    return (
        f"{name:<28} p50 {percentile(values, 0.5):6.0f}  p95 {percentile(values, 0.95):6.0f}  "
        f"min {min(values):6.0f}  max {max(values):6.0f}  ms  (n={len(values)})"
    )


def barge_in_ms(page: dict[str, Any]) -> float | None:
    """The caller's first onset → the end of the agent's last sound that began while the
    caller was still speaking its first words (the greeting, cut off; the reply comes after
    the caller stops). None when that sound had ended by the onset: nothing was stopped."""
    callers, agents = page["sound"]["caller"], page["sound"]["agent"]
    if not callers:
        return None
    onset, stopped_talking = callers[0]
    cut = [end for start, end in agents if start < stopped_talking]
    if not cut or max(cut) <= onset:
        return None
    return float(max(cut) - onset)


def run_barge_ins(mesh: LocalMesh, calls: int, work: Path) -> tuple[list[float], int]:
    # the greeting takes about six seconds; the caller cuts in two and a half seconds into it
    wav = padded_wav(FIXTURES / "caller_when.wav", work / "barge.wav", lead_s=2.5, tail_s=20.0)
    figures, in_pause = [], 0
    for n in range(calls):
        page = run_softphone(page_url(mesh), wav, seconds=9)["page"]
        ms = barge_in_ms(page)
        if ms is None:
            in_pause += 1
        else:
            figures.append(ms)
        print(f"barge-in call {n + 1}: {ms if ms is not None else 'the greeting was already quiet'} ms", flush=True)
    return figures, in_pause


def page_url(mesh: LocalMesh) -> str:
    # the microphone as it is (no AGC/noise suppression): the caller says exactly its WAV
    return f"http://127.0.0.1:{mesh.ports.ws}/?token={asyncio.run(token(mesh))}&agent=restaurant&processing=off"


def run(mesh: LocalMesh, calls: int, barge_ins: int, work: Path) -> None:
    wav = padded_wav(FIXTURES / "caller_party.wav", work / "mic.wav", lead_s=5.0, tail_s=20.0)
    connected, edge, ear, playout, rtt = [], [], [], [], []
    for n in range(calls):
        page = run_softphone(page_url(mesh), wav, seconds=15)["page"]
        if page["connected_ms"] is None:
            print(f"call {n + 1}: never connected ({page['status']}: {page['error']})", flush=True)
            continue
        connected.append(float(page["connected_ms"]))
        for turn in page["turns"]:
            edge.append(float(turn["edge_voice_to_voice_ms"]))
            if turn["mouth_to_ear_ms"] is not None:
                ear.append(float(turn["mouth_to_ear_ms"]))
        if page["stats"]["playout_ms"] is not None:
            playout.append(float(page["stats"]["playout_ms"]))
        if page["stats"]["rtt_ms"] is not None:
            rtt.append(float(page["stats"]["rtt_ms"]))
        print(f"call {n + 1}: connected {page['connected_ms']} ms, turns {[(t['edge_voice_to_voice_ms'], t['mouth_to_ear_ms']) for t in page['turns']]}", flush=True)
    barge, in_pause = run_barge_ins(mesh, barge_ins, work) if barge_ins else ([], 0)
    print()
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, {platform.python_version()}; load {load_average()}")
    print(line("page load -> connected", connected))
    print(line("edge voice-to-voice", edge))
    print(line("mouth to ear (browser)", ear))
    print(line("browser playout delay", playout))
    print(line("round trip", rtt))
    if edge and ear:
        print(f"{'mouth to ear - edge (p50)':<28} {percentile(ear, 0.5) - percentile(edge, 0.5):6.0f} ms  (uplink, downlink, playout)")
    if barge_ins:
        print(line("barge-in at the browser", barge))
        print(f"{'barge-ins into quiet':<28} {in_pause} of {barge_ins}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=6)
    parser.add_argument("--barge-ins", type=int, default=6)
    args = parser.parse_args()
    if not chromium_available():
        print("needs Debian's chromium and playwright-core (make tools)", file=sys.stderr)
        return 1
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    home = Path(tempfile.mkdtemp(prefix="voicemesh-bench-"))
    print(f"starting a mesh on free ports (logs in {home / 'logs'}) ...", flush=True)
    agents = home / "agents"
    shutil.copytree(REPO / "agents", agents)
    mesh = LocalMesh(home, agents, MeshPorts.free())
    try:
        mesh.start()
        run(mesh, args.calls, args.barge_ins, home)
    finally:
        mesh.stop()
    shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
