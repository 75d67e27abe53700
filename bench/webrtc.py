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
- the browser's playout delay (jitter buffer) and the round trip.

Prints figures; never fails on time.

    .venv/bin/python bench/webrtc.py --calls 6
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


def run(mesh: LocalMesh, calls: int, work: Path) -> None:
    wav = padded_wav(FIXTURES / "caller_party.wav", work / "mic.wav", lead_s=5.0, tail_s=20.0)
    connected, edge, ear, playout, rtt = [], [], [], [], []
    for n in range(calls):
        url = f"http://127.0.0.1:{mesh.ports.ws}/?token={asyncio.run(token(mesh))}&agent=restaurant"
        page = run_softphone(url, wav, seconds=15)["page"]
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
    print()
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, {platform.python_version()}; load {load_average()}")
    print(line("page load -> connected", connected))
    print(line("edge voice-to-voice", edge))
    print(line("mouth to ear (browser)", ear))
    print(line("browser playout delay", playout))
    print(line("round trip", rtt))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=6)
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
        run(mesh, args.calls, home)
    finally:
        mesh.stop()
    shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
