"""`voicemesh call WAV [WAV ...]`: place a scripted call and print what happened.

Each WAV is one caller turn. The command prints the greeting, each turn's transcript, the
agent's reply and the latency of every stage (or one JSON object with `--json`), and can
write the reply audio to a WAV file.

With `--twilio` the call goes over the Twilio Media Streams endpoint instead, placed the way
Twilio places it (twilio_client.py): signed upgrade, `start` with `--param` custom
parameters, μ-law audio, marks echoed as the reply plays. That stream carries no transcripts:
the output names the callSid to find the session in `voicemesh events`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit, urlunsplit

from voicemesh.audio.wav import AudioFormatError, write_wav

from .callscript import FAILED_ENDS, LatencyMs, Utterance
from .carrier_types import QUIET_S, EndedBy, TurnOutcome, TwilioCallResult
from .state import StateError, read_state
from .twilio_client import place_twilio_call
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
    p.add_argument(
        "--url",
        help="edge WebSocket URL (default: $VOICEMESH_EDGE_URL, else the local mesh; "
        "with --twilio: the local mesh's Twilio stream URL)",
    )
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
    tw = p.add_argument_group(
        "Twilio",
        "place the call over the Twilio Media Streams endpoint, like a carrier would; the stream "
        "is signed with $VOICEMESH_TWILIO_AUTH_TOKEN, else the local mesh's auth token",
    )
    tw.add_argument("--twilio", action="store_true", help="call the Twilio stream instead of /v1/call")
    tw.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a <Parameter> of the <Stream> (start.customParameters; repeatable; --agent X is agent=X)",
    )
    tw.add_argument(
        "--dtmf",
        action="append",
        default=[],
        metavar="AFTER_TURN:DIGITS",
        help="press DIGITS (0-9 * #) right after caller turn AFTER_TURN (1: the first WAV; repeatable)",
    )
    tw.add_argument(
        "--action-url",
        help="the <Connect action> URL Twilio requests when the stream ends "
        "(default: the stream URL + /connect-action, over http(s))",
    )
    p.set_defaults(func=run)


def _write_audio(args: argparse.Namespace, reply: bytes, greeting: bytes) -> int | None:
    """Write --out / --greeting-out; the exit code when that fails."""
    try:
        if args.out is not None:
            write_wav(args.out, reply)
        if args.greeting_out is not None:
            write_wav(args.greeting_out, greeting)
    except OSError as exc:
        return _fail(f"cannot write {exc.filename}: {exc.strerror}", 1)
    return None


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
    if args.twilio:
        return run_twilio(args)
    for flag, value in (("--param", args.param), ("--dtmf", args.dtmf), ("--action-url", args.action_url)):
        if value:
            return _fail(f"{flag} goes with --twilio", 2)
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

    failed = _write_audio(args, result.reply_audio, result.greeting_audio)
    if failed is not None:
        return failed

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
        lines.extend(f"agent (filler, the reply was late): {text}" for text in turn.fillers)
        lines.append(f"agent: {turn.reply_text or '(no reply)'}")
        lines.append(format_latency(turn.latency))
    if len(result.turns) > 1:
        lines.append("median " + format_latency(result.latency_ms))
    if result.transferred_to:
        lines.append(f"the agent transferred the call to {result.transferred_to}")
    else:
        ended = {"caller": "the caller", "agent": "the agent", "edge": "the edge dropping it"}
        if result.ended_by == "edge" and result.end_reason in FAILED_ENDS:
            lines.append(f"call failed: the edge ended it ({result.end_reason})")
        else:
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


# -- --twilio ------------------------------------------------------------------------------


def resolve_twilio(url: str | None) -> tuple[str, str]:
    """The Twilio stream URL and auth token: --url and $VOICEMESH_TWILIO_AUTH_TOKEN, then the
    local mesh's state."""
    token = os.environ.get("VOICEMESH_TWILIO_AUTH_TOKEN")
    if url and token is not None:
        return url, token
    try:
        state = read_state()
    except StateError:
        if url:  # an explicit endpoint without a token: try unsigned
            return url, ""
        raise
    if not url and not state.twilio_url:
        raise StateError("the local mesh has no Twilio endpoint: pass --url ws://HOST:PORT/v1/twilio")
    return url or state.twilio_url, token if token is not None else state.twilio_auth_token


def default_action_url(stream_url: str) -> str:
    """Where the mesh's TwiML points `<Connect action>`: the stream path + /connect-action."""
    parts = urlsplit(stream_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/connect-action", "", ""))


def parse_params(items: list[str], agent: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--param {item!r}: use KEY=VALUE")
        params[key] = value
    if agent:
        if params.get("agent", agent) != agent:
            raise ValueError(f"--agent {agent} and --param agent={params['agent']} disagree")
        params["agent"] = agent
    return params


def parse_dtmf(items: list[str], turns: int) -> dict[int, str]:
    """`AFTER_TURN:DIGITS` (turns count from 1) -> {utterance index: digits}."""
    out: dict[int, str] = {}
    for item in items:
        turn, sep, digits = item.partition(":")
        if not sep or not turn.isdigit() or not digits or set(digits) - set("0123456789*#"):
            raise ValueError(f"--dtmf {item!r}: use AFTER_TURN:DIGITS, e.g. 1:42# (digits 0-9 * #)")
        if not 1 <= int(turn) <= turns:
            raise ValueError(f"--dtmf {item!r}: there is no caller turn {turn} (turns are 1-{turns})")
        out[int(turn) - 1] = out.get(int(turn) - 1, "") + digits
    return out


def run_twilio(args: argparse.Namespace) -> int:
    if args.token is not None:
        return _fail(
            "--token is the native stream's; the Twilio stream is signed with $VOICEMESH_TWILIO_AUTH_TOKEN", 2
        )
    try:
        params = parse_params(args.param, args.agent)
        dtmf = parse_dtmf(args.dtmf, len(args.wavs))
    except ValueError as exc:
        return _fail(str(exc), 2)
    try:
        url, token = resolve_twilio(args.url)
    except StateError as exc:
        return _fail(str(exc), 1)
    try:
        result = asyncio.run(
            place_twilio_call(
                url,
                token,
                args.wavs,
                custom_parameters=params,
                action_url=args.action_url or default_action_url(url),
                dtmf=dtmf,
                turn_timeout_s=args.turn_timeout,
                greeting_timeout_s=0.0 if args.no_greeting_wait else 15.0,
            )
        )
    except AudioFormatError as exc:  # raised before connecting
        return _fail(str(exc), 2)
    except CallFailed as exc:
        return _fail(str(exc), 1)
    except KeyboardInterrupt:
        return 130

    failed = _write_audio(args, result.reply_pcm, result.greeting_pcm)
    if failed is not None:
        return failed

    if args.json:
        print(json.dumps(result.to_json() | {"custom_parameters": params}, ensure_ascii=False))
    else:
        for line in format_twilio(result, args.agent):
            print(line)
        if args.out is not None:
            print(f"reply audio: {result.reply_audio_seconds:.1f} s written to {args.out}")
    report_twilio_problems(result, args.turn_timeout, sys.stderr)
    return 0 if result.ok else 1


_OUTCOME_TEXT = {
    TurnOutcome.BARGED_IN: "barged in",
    TurnOutcome.TIMED_OUT: "timed out",
    TurnOutcome.CUT_OFF: "cut off by the end of the call",
}


def format_twilio(result: TwilioCallResult, agent: str = "") -> list[str]:
    call_sid = result.sids.call_sid
    head = f"twilio call {call_sid} · stream {result.sids.stream_sid}"
    lines = [head + (f" · agent {agent}" if agent else "")]
    lines.append(f"transcripts: see `voicemesh events <session>` (the session of callSid {call_sid})")
    if result.greeting_pcm:
        lines.append(f"greeting: {len(result.greeting_pcm) / 32000:.1f} s of audio")
    for i, turn in enumerate(result.turns, 1):
        if turn.outcome is TurnOutcome.NOT_SPOKEN:
            continue
        v2v = turn.voice_to_voice_ms
        parts = [
            f"reply {turn.reply_audio_seconds:.1f} s",
            f"voice-to-voice {'–' if v2v is None else f'{v2v:.0f} ms'}",
            f"marks {turn.marks}",
            f"clears {turn.clears}",
        ]
        if turn.dtmf:
            parts.append(f"dtmf {turn.dtmf}")
        if turn.outcome in _OUTCOME_TEXT:
            parts.append(_OUTCOME_TEXT[turn.outcome])
        lines.append(f"turn {i} [{Path(turn.wav).name}]: " + " · ".join(parts))
    lines.append(
        f"media sent {result.media_sent} · received {result.media_received} · "
        f"marks echoed {len(result.marks)} · clears {len(result.clears)}"
    )
    if result.ended_by is EndedBy.CARRIER:
        lines.append("call ended by the caller (stop)")
    else:
        reason = f": {result.close_reason}" if result.close_reason else ""
        lines.append(f"call ended by the server (close {result.close_code}{reason})")
    if result.action is not None:
        twiml = " ".join(result.action.body.split())
        lines.append(f"connect action: HTTP {result.action.status} {twiml}".rstrip())
    return lines


def report_twilio_problems(result: TwilioCallResult, turn_timeout_s: float, err: TextIO) -> None:
    for i, turn in enumerate(result.turns, 1):
        if turn.outcome is TurnOutcome.TIMED_OUT:
            print(
                f"{PROG}: error: turn {i} ({turn.wav}): no reply played out within {turn_timeout_s:g} s "
                f"(reply audio, a mark back, then {QUIET_S:g} s without media)",
                file=err,
            )
    for problem, count in result.problems.items():
        print(f"{PROG}: {problem}" + (f" (x{count})" if count > 1 else ""), file=err)
    if result.ended_by is EndedBy.SERVER and not result.ok and result.close_code not in (1000, 1001):
        print(f"{PROG}: the server dropped the stream (close {result.close_code})", file=err)
    if result.action_error:
        print(f"{PROG}: {result.action_error}", file=err)
    if result.unanswered:
        print(f"{PROG}: the call ended before these were answered: " + ", ".join(result.unanswered), file=err)
