"""Barge-in at the caller's ear: how fast the agent stops, and whether a backchannel stops it.

Places Twilio Media Streams calls through the local mesh with the simulated carrier
(cli/carrier.py plays the agent's audio on its own clock, 8 bytes of μ-law a millisecond):
the caller asks for a table, then talks over the reply 300 ms into it, either with real
words ("Tomorrow at seven thirty in the evening.") or with a backchannel ("Right.",
"Okay, yeah."). From what the carrier played:

- barge-in latency: the caller's first loud frame sent (−40 dBFS, the audio's own onset) →
  the end of the last loud agent audio before a silence of 300 ms or more (the agent
  stopped at the caller's ear);
- for backchannels: the share of calls where the agent was cut off (a `clear`), and how
  long it paused before going on (the same silence, measured to the next loud audio).

Starts its own mesh on free ports. Prints figures; never fails on time.

    .venv/bin/python bench/turn_taking.py --calls 5
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

from figures import cpu_model, load_average, percentile

from voicemesh.audio.frames import rms_dbfs
from voicemesh.audio.g711 import ulaw_decode
from voicemesh.audio.wav import read_wav
from voicemesh.cli.carrier_types import TwilioCallResult
from voicemesh.cli.localmesh import LocalMesh, MeshPorts
from voicemesh.cli.twilio_client import place_twilio_call

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "e2e" / "fixtures"
ASK = FIXTURES / "caller_party.wav"
REAL = FIXTURES / "caller_when.wav"
BACKCHANNELS = [FIXTURES / "caller_right.wav", FIXTURES / "caller_okay.wav"]
MIN_SPEECH_MS = 100  # the agent's default, unless --min-speech-ms
OVER_MS = 300  # the caller cuts in this long after the reply began to play
LOUD_DBFS = -40.0
STOP_GAP_S = 0.3


def first_loud_s(wav: Path) -> float:
    pcm, _ = read_wav(wav)
    for i in range(0, len(pcm) - 639, 640):
        if rms_dbfs(pcm[i : i + 640]) > LOUD_DBFS:
            return i / 640 * 0.020
    raise ValueError(f"{wav} holds no speech")


def loud_spans(result: TwilioCallResult) -> list[tuple[float, float]]:
    """(start, end) of every loud piece of agent audio the caller heard, in order. The
    carrier plays what a tick has buffered, so pieces are often shorter than 20 ms."""
    spans = []
    for chunk in result.played:
        if len(chunk.ulaw) >= 40 and rms_dbfs(ulaw_decode(chunk.ulaw)) > LOUD_DBFS:
            spans.append((chunk.at, chunk.end))
    return sorted(spans)


def stop_and_resume(result: TwilioCallResult, onset: float) -> tuple[float | None, float | None]:
    """(when the agent's audio stopped after `onset`, when it came back) on the carrier clock."""
    loud = [span for span in loud_spans(result) if span[1] >= onset]
    for (_, end), (start, _) in itertools.pairwise(loud):
        if start - end >= STOP_GAP_S:
            return end, start
    return (loud[-1][1] if loud else None), None


async def one_call(mesh: LocalMesh, over: Path) -> tuple[TwilioCallResult, float]:
    result = await place_twilio_call(
        mesh.twilio_url, mesh.twilio_auth_token, [ASK, over], barge_in={1: OVER_MS}, turn_timeout_s=20
    )
    started = result.turns[1].started_at
    assert started is not None, "the caller never talked over the agent"
    return result, started + first_loud_s(over)


def row(name: str, values: list[float]) -> str:
    if not values:
        return f"{name:<42}{0:>4}"
    return (
        f"{name:<42}{len(values):>4}{percentile(values, 0.5):>9.0f}{percentile(values, 0.95):>9.0f}"
        f"{max(values):>9.0f}"
    )


async def run(mesh: LocalMesh, calls: int) -> None:
    stops: list[float] = []
    confirmed: list[float] = []
    for i in range(calls):
        result, onset = await one_call(mesh, REAL)
        stop, _ = stop_and_resume(result, onset)
        if stop is not None:
            stops.append((stop - onset) * 1000)
        if result.clears:
            confirmed.append((result.clears[0] - onset) * 1000)
        print(
            f"  real interruption {i + 1}/{calls}: stopped {((stop or onset) - onset) * 1000:.0f} ms after the onset, "
            f"{len(result.clears)} clear(s)",
            flush=True,
        )
    cut, pauses, n = 0, [], 0
    for i in range(calls):
        for wav in BACKCHANNELS:
            result, onset = await one_call(mesh, wav)
            n += 1
            stop, back = stop_and_resume(result, onset)
            cut += bool(result.clears)
            if stop is not None and back is not None and not result.clears:
                pauses.append((back - stop) * 1000)
            print(
                f"  backchannel {wav.stem} {i + 1}/{calls}: {'CUT OFF' if result.clears else 'went on'}",
                flush=True,
            )
    print()
    print(
        f"machine: {os.cpu_count()} cores ({cpu_model()}), Python {platform.python_version()}, load {load_average()}"
    )
    print(f"agent: restaurant (Bella Vista), barge_in_min_speech_ms {MIN_SPEECH_MS}, barge_in_min_words 1")
    print()
    print(f"{'figure (ms)':<42}{'n':>4}{'p50':>9}{'p95':>9}{'max':>9}")
    print(row("barge-in: onset -> agent silent at the ear", stops))
    print(row("barge-in: onset -> clear (words confirmed)", confirmed))
    print(row("backchannel: pause before the agent went on", pauses))
    print(f"\nfalse interruptions: {cut} of {n} backchannels cut the agent off ({cut / n:.0%})" if n else "")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=5, help="calls of each kind")
    parser.add_argument("--min-speech-ms", type=int, help="the agent's barge_in_min_speech_ms instead of its own")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    home = Path(tempfile.mkdtemp(prefix="voicemesh-bench-"))
    print(f"starting a mesh on free ports (logs in {home / 'logs'}) ...", flush=True)
    agents = home / "agents"
    shutil.copytree(REPO / "agents", agents)
    global MIN_SPEECH_MS
    if args.min_speech_ms:
        demo = agents / "restaurant.yaml"
        text = demo.read_text().replace("turn:\n", f"turn:\n  barge_in_min_speech_ms: {args.min_speech_ms}\n", 1)
        demo.write_text(text)
        MIN_SPEECH_MS = args.min_speech_ms
    mesh = LocalMesh(home, agents, MeshPorts.free())
    try:
        mesh.start()
        asyncio.run(run(mesh, args.calls))
    finally:
        mesh.stop()
    shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
