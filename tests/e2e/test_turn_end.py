"""The end-of-turn model at the edge, on a real recording: a finished sentence ends its turn
well before the agent's 1 s endpoint silence with the model on, and at it with the model off."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicemesh.audio.frames import SAMPLE_RATE
from voicemesh.audio.wav import read_wav
from voicemesh.cli.localmesh import LocalMesh
from voicemesh.cli.wsclient import place_call

pytestmark = pytest.mark.e2e

ENDPOINT_MS = 1000  # tests/e2e/agents/statement.yaml


def last_sentence(jfk_wav: Path) -> bytes:
    """"...ask what you can do for your country." from 7.8 s (after the 0.6 s pause that
    follows "can do for you,") to the recording's end: real speech, a finished sentence,
    no pause inside; Smart Turn gives it 0.98 after 0.2 s of silence."""
    pcm, _ = read_wav(jfk_wav)
    return pcm[int(7.8 * SAMPLE_RATE) * 2 :]


async def endpoint_ms(mesh: LocalMesh, agent: str, pcm: bytes) -> float:
    result = await place_call(mesh.edge_url, mesh.token, [pcm], agent=agent, turn_timeout_s=30)
    assert result.ok, result.errors
    assert "your country" in result.transcript.lower(), result.transcript
    (turn,) = result.turns
    assert len(turn.turn_ids) == 1, turn.turn_ids  # one turn: nothing was cut off
    assert turn.latency.endpoint is not None
    return turn.latency.endpoint


async def test_a_finished_sentence_ends_its_turn_early_with_the_model_and_on_silence_without(
    mesh: LocalMesh, jfk_wav: Path
) -> None:
    pcm = last_sentence(jfk_wav)
    without = await endpoint_ms(mesh, "statement-silence", pcm)
    with_model = await endpoint_ms(mesh, "statement", pcm)
    assert without >= ENDPOINT_MS - 30, without
    # asked 200 ms into the pause; the model answers in ~60 ms (~170 ms p95 on a busy machine)
    assert with_model <= ENDPOINT_MS - 300, (with_model, without)
