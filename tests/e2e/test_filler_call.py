"""A late reply gets a filler: a model far slower than the agent's `turn.filler.after_ms`
makes the caller hear "Let me check that." and then the whole answer, one after the other.

Everything is real but the model (tests/support/scripted_llm.py, which waits before its first
token): stt, tts (which synthesized the fillers into the edge's cache), the edge, reasoning.
The test looks only at what the caller received, in order, never at how long anything took.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from scripted_llm import Pause, ScriptedLlm, Step, Text

from voicemesh.cli.callscript import CallScript
from voicemesh.cli.localmesh import LocalMesh
from voicemesh.cli.wsclient import CallClient, load_utterances

from .conftest import FIXTURES, LLM_PORT

pytestmark = pytest.mark.e2e

PHRASES = ("Let me check that.", "One moment, please.")  # tests/e2e/agents/late-reply.yaml.in
ANSWERS = ["The garage on Elm Street is open until midnight.", "We open at noon every day."]
THINK_S = 2.5  # before the model's first token: far past the filler's 400 ms


def slow_desk(body: dict[str, Any], endpoint: str) -> list[Step]:
    answered = sum(1 for m in body["messages"] if m["role"] == "user") - 1
    return [Pause(THINK_S), *(Text(w + " ") for w in ANSWERS[answered % len(ANSWERS)].split())]


class _Tap:
    """The call's WebSocket, remembering every message it delivers, in order."""

    def __init__(self, ws: Any, received: list[str | bytes]) -> None:
        self._ws = ws
        self._received = received

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ws, name)

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[str | bytes]:
        async for message in self._ws:
            self._received.append(message)
            yield message


class RecordingClient(CallClient):
    """A scripted call that also keeps what the caller received, as it arrived."""

    received: list[str | bytes]

    async def _receive_loop(self, ws: Any, script: CallScript) -> None:
        self.received = []
        await super()._receive_loop(_Tap(ws, self.received), script)


def heard(received: list[str | bytes]) -> list[tuple[str, ...]]:
    """What the caller got, in order: ("audio", frames) for a run of audio messages,
    ("filler", turn, text, name), ("mark", response, name), ("reply", response, turn) for a
    reply's final text, ("timing", turn, filler_ms)."""
    out: list[tuple[str, ...]] = []
    for message in received:
        if isinstance(message, bytes):
            if out and out[-1][0] == "audio":
                out[-1] = ("audio", str(int(out[-1][1]) + 1))
            else:
                out.append(("audio", "1"))
            continue
        msg = json.loads(message)
        if "filler" in msg:
            f = msg["filler"]
            out.append(("filler", f["turn_id"], f["text"], f["name"]))
        elif "mark" in msg:
            out.append(("mark", msg["mark"]["response_id"], msg["mark"]["name"]))
        elif "response" in msg and msg["response"].get("final") and msg["response"].get("turn_id"):
            out.append(("reply", msg["response"]["response_id"], msg["response"]["turn_id"]))
        elif "timing" in msg:
            out.append(("timing", msg["timing"]["turn_id"], str(msg["timing"].get("filler_ms", 0))))
    return out


def position(events: list[tuple[str, ...]], *want: str) -> int:
    """Where the first event starting with `want` is (fails naming what the caller got)."""
    found = [i for i, e in enumerate(events) if e[: len(want)] == want]
    assert found, f"the caller never got {want}; it got {events}"
    return found[0]


def frames(events: list[tuple[str, ...]]) -> int:
    return sum(int(e[1]) for e in events if e[0] == "audio")


async def test_a_slow_model_gets_a_filler_then_the_whole_answer(mesh: LocalMesh) -> None:
    wavs = [FIXTURES / "caller_parking.wav", FIXTURES / "caller_when.wav"]
    client = RecordingClient(mesh.edge_url, mesh.token, agent="late-reply")
    async with ScriptedLlm(slow_desk, port=LLM_PORT) as llm:
        result = await client.run(load_utterances(wavs), turn_timeout_s=40)
    assert result.ok, result.errors
    assert [t.reply_text.strip() for t in result.turns] == ANSWERS
    events = heard(client.received)
    replies = [(e[1], e[2]) for e in events if e[0] == "reply"]
    assert len(replies) == 2, events
    fillers = []
    for response, turn in replies:
        # In order: the filler starts, its audio, it ends; then the reply starts, its audio.
        start = position(events, "filler", turn)
        end = position(events, "filler", turn, events[start][2], "end")
        reply_start = position(events, "mark", response, "start")
        reply_end = position(events, "mark", response, "end")
        assert events[start][3] == "start" and start < end < reply_start < reply_end, events
        assert frames(events[start + 1 : end]) > 20, f"the filler was heard: {events}"
        assert frames(events[end + 1 : reply_start]) == 0, f"nothing played between: {events}"
        assert frames(events[reply_start + 1 : reply_end]) > 50, f"then the whole answer: {events}"
        fillers.append(events[start][2])
        timing = events[position(events, "timing", turn)]
        assert int(timing[2]) > 0, timing  # the turn's timing says a filler played before the reply
    # One filler per late turn, in the agent's order: never the same one twice in a row.
    assert fillers == list(PHRASES)
    # The fillers are no part of the conversation: reasoning never heard the agent say them.
    second = json.dumps(llm.bodies[-1]["messages"])
    assert ANSWERS[0] in second and not any(p in second for p in PHRASES)
    # What the script took for each reply is the reply's own audio, not the filler's.
    for turn in result.turns:
        assert turn.reply_audio_seconds > 1.0
