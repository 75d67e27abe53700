"""`voicemesh call WAV [WAV ...]`: place a scripted call and print what happened.

Each WAV is one caller turn. The command prints the greeting, each turn's transcript, the
agent's reply and the latency of every stage (or one JSON object with `--json`), and can
write the reply audio to a WAV file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import TextIO

from voicemesh.audio.wav import AudioFormatError, write_wav

from .callscript import LatencyMs, Utterance
from .state import StateError, read_state
from .wsclient import CallClient, CallFailed, CallResult, load_utterances

PROG = "voicemesh call"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "call",
        help="place a scripted call: play WAV files as the caller, print the replies and latency",
        description=(
            "Place a call to media-edge. Each WAV (8, 16, 22.05, 44.1 or 48 kHz, mono or stereo "
            "PCM) is one caller turn: it is streamed in real time, then the caller stays silent "
            "until the agent's reply has played. Prints the transcript, the reply and the "
            "latency of each stage."
        ),
    )
    p.add_argument("wavs", nargs="+", type=Path, metavar="WAV", help="caller turns, in order")
    p.add_argument("--out", type=Path, help="write the reply audio (greeting excluded) as a WAV")
    p.add_argument("--greeting-out", type=Path, help="write the greeting audio as a WAV")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--agent", default="", help="agent id (default: the deployment's default)")
    p.add_argument("--url", help="edge WebSocket URL (default: $VOICEMESH_EDGE_URL, else the local mesh)")
    p.add_argument("--token", help="edge access token (default: $VOICEMESH_EDGE_TOKEN, else the local mesh)")
    p.add_argument(
        "--turn-timeout",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="give up on a turn when its reply has not played this long after the audio (20)",
    )
    p.add_argument(
        "--no-greeting-wait",
        action="store_true",
        help="start speaking at once instead of waiting for the greeting to finish",
    )
    p.set_defaults(func=run)


def resolve_edge(url: str | None, token: str | None) -> tuple[str, str]:
    """The edge URL and token: flags, then the environment, then the local mesh's state."""
    url = url or os.environ.get("VOICEMESH_EDGE_URL") or None
    token = token if token is not None else os.environ.get("VOICEMESH_EDGE_TOKEN")
    if url is not None and token is not None:
        return url, token
    try:
        state = read_state()
    except StateError:
        if url is not None:  # an explicit edge without a token: try without one
            return url, ""
        raise
    return url or state.edge_url, token if token is not None else state.edge_token


def run(args: argparse.Namespace) -> int:
    if args.turn_timeout <= 0:
        return _fail("--turn-timeout must be positive", 2)
    try:
        utterances = load_utterances(args.wavs)
    except AudioFormatError as exc:
        return _fail(str(exc), 2)
    try:
        url, token = resolve_edge(args.url, args.token)
    except StateError as exc:
        return _fail(str(exc), 1)
    try:
        result = asyncio.run(
            _place(url, token, utterances, args.agent, args.turn_timeout, not args.no_greeting_wait)
        )
    except CallFailed as exc:
        return _fail(str(exc), 1)
    except KeyboardInterrupt:
        return 130

    try:
        if args.out is not None:
            write_wav(args.out, result.reply_audio)
        if args.greeting_out is not None:
            write_wav(args.greeting_out, result.greeting_audio)
    except OSError as exc:
        return _fail(f"cannot write {exc.filename}: {exc.strerror}", 1)

    if args.json:
        print(json.dumps(result.to_json(), ensure_ascii=False))
    else:
        for line in format_human(result):
            print(line)
        if args.out is not None:
            print(f"reply audio: {result.reply_audio_seconds:.1f} s written to {args.out}")
    report_problems(result, sys.stderr)
    return 0 if result.ok else 1


async def _place(
    url: str,
    token: str,
    utterances: list[Utterance],
    agent: str,
    turn_timeout_s: float,
    wait_greeting: bool,
) -> CallResult:
    client = CallClient(url, token, agent=agent)
    return await client.run(utterances, turn_timeout_s=turn_timeout_s, wait_greeting=wait_greeting)


def format_latency(lat: LatencyMs) -> str:
    parts = [
        ("endpoint", lat.endpoint),
        ("stt final", lat.stt_final),
        ("first token", lat.first_token),
        ("tts first audio", lat.tts_first_audio),
        ("voice-to-voice", lat.voice_to_voice),
    ]
    return "latency: " + " · ".join(f"{name} {'–' if v is None else f'{v:.0f} ms'}" for name, v in parts)


def format_human(result: CallResult) -> list[str]:
    lines = [f"call {result.session_id} · agent {result.agent or '(default)'}"]
    if result.greeting:
        lines.append(f"agent: {result.greeting}")
    for turn in result.turns:
        lines.append(f"caller: {turn.transcript or '(no transcript)'}    [{Path(turn.wav).name}]")
        lines.append(f"agent: {turn.reply_text or '(no reply)'}")
        lines.append(format_latency(turn.latency))
    if len(result.turns) > 1:
        lines.append("median " + format_latency(result.latency_ms))
    ended = {"caller": "the caller", "agent": "the agent", "edge": "the edge dropping it"}
    lines.append(f"call ended by {ended.get(result.ended_by, result.ended_by)}")
    return lines


def report_problems(result: CallResult, err: TextIO) -> None:
    for i, turn in enumerate(result.turns, 1):
        if turn.error:
            print(f"{PROG}: error: turn {i} ({turn.wav}): {turn.error}", file=err)
    for problem in result.errors:
        print(f"{PROG}: {problem}", file=err)
    if result.unanswered:
        print(
            f"{PROG}: the agent ended the call before these were answered: " + ", ".join(result.unanswered),
            file=err,
        )


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code
