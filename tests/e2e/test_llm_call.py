"""A spoken call to an LLM agent through the whole mesh: the caller's voice is transcribed,
the turn retrieves knowledge and calls an HTTP tool, and the reply is synthesized and heard.

The model is scripted (tests/support/scripted_llm.py): a 135M model neither picks a tool on
its own nor says a fact back reliably, and llama-cpp-python's server cannot stream an
`auto` tool choice. The scripted model only reads what the mesh sent it (the retrieved
facts in the system prompt, the placeholders in the caller's words, the tool's answer), so
what it says back proves each of them arrived. Everything else is real: stt, tts, the edge,
reasoning, the router, the booking service, NATS.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from booking_tool import CONFIRMATION, BookingTool
from scripted_llm import Call, ScriptedLlm, Step, Text, last_user, tool_results

from voicemesh.cli.events_cmd import fetch_events
from voicemesh.cli.localmesh import LocalMesh
from voicemesh.cli.wsclient import place_call

from .conftest import BOOKING_TOKEN, FIXTURES, LLM_PORT, TOOL_PORT

pytestmark = pytest.mark.e2e

# The caller's number as Whisper may write it: 212-555-0187, 212 555 0187, 2125550187 ...
CALLERS_NUMBER = re.compile(r"212\D{0,3}555\D{0,3}0187")
FACT = re.compile(r"^- \((?P<heading>[^)]*)\) (?P<text>.+)$", re.MULTILINE)


def words(text: str) -> list[Step]:
    """A reply streamed a word at a time, as a model streams tokens."""
    return [Text(w) for w in re.findall(r"\S+\s*", text)]


def concierge(body: dict[str, Any], endpoint: str) -> list[Step]:
    system = body["messages"][0]["content"]
    said = last_user(body)
    results = tool_results(body)
    if results:
        answer = json.loads(results[-1])
        return words(f"You're booked, confirmation {answer['confirmation']}. I'll text {answer['phone']}.")
    if "park" in said.lower():
        facts = [m["text"] for m in FACT.finditer(system) if "park" in m["text"].lower()]
        return words(facts[0] if facts else "I don't know.")
    phone = re.search(r"\[PHONE_\d+\]", said)
    if "table" in said.lower() and phone:
        return [Text("Let me book that. "), Call("book_table", {"party_size": 2, "phone": phone.group(0)})]
    return words("Sorry, I can help with parking and bookings.")


async def test_a_spoken_call_gets_a_knowledge_answer_and_books_through_a_tool(mesh: LocalMesh) -> None:
    async with ScriptedLlm(concierge, port=LLM_PORT) as llm, BookingTool(BOOKING_TOKEN, port=TOOL_PORT) as booking:
        booking.delay_s = 0.8  # slower than the tool's filler_after_ms: the filler is said
        wavs = [FIXTURES / "caller_parking.wav", FIXTURES / "caller_book_number.wav"]
        result = await place_call(mesh.edge_url, mesh.token, wavs, agent="concierge", turn_timeout_s=30)
    assert result.ok, result.errors
    heard = [(t.transcript, t.reply_text) for t in result.turns]
    assert "Harbour Grill" in result.greeting
    parking, booked = (t.reply_text for t in result.turns)
    assert "Elm Street garage" in parking, heard
    # The tool got the number the caller said; the model only ever saw a placeholder.
    [(request, authorization)] = booking.requests
    assert re.sub(r"\D", "", request["phone"]) == "2125550187", heard
    assert request["party_size"] == 2 and authorization == f"Bearer {BOOKING_TOKEN}"
    for raw in llm.raw:
        assert b"555" not in raw and b"0187" not in raw
    assert booked.startswith("Let me book that. One moment, I'm booking that."), heard
    assert CONFIRMATION in booked and re.sub(r"\D", "", booked).endswith("2125550187"), heard
    assert result.reply_audio_seconds > 3.0  # the replies were spoken, not only sent as text

    # Neither the session events (NATS) nor any service's log holds the number either.
    events = await fetch_events(mesh.nats_url, result.session_id)
    replies = [e.response.text for e in events if e.WhichOneof("payload") == "response"]
    assert any(CONFIRMATION in text and "[PHONE]" in text for text in replies), replies
    for event in events:
        assert not CALLERS_NUMBER.search(str(event)), event
    for log in (mesh.home / "logs").glob("*.log"):  # (timings there are floats full of digits)
        assert not CALLERS_NUMBER.search(log.read_text(errors="replace")), log.name
