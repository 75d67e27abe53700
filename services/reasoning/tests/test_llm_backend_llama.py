"""`LlmBackend` against the real llama.cpp server (llama-cpp-python + SmolLM2-135M): the
answer streams, a barge-in stops the generation on the server, a dead endpoint falls back
to the live one. What the model says is not judged (135M parameters), only the plumbing."""

from __future__ import annotations

import asyncio
import json
import textwrap
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from voicemesh.mesh.localservers import free_port
from voicemesh.reasoning.backend import ConversationBackend, SessionInfo, TextChunk
from voicemesh.reasoning.backends import Backends
from voicemesh.reasoning.catalog import AgentCatalog

from .llm_server import TEST_KEY, LlamaServer

pytestmark = pytest.mark.integration

KNOWLEDGE = Path(__file__).resolve().parent / "knowledge"
SESSION = SessionInfo("s1", date(2026, 12, 2))
KEY = TEST_KEY


def agent_file(tmp_path: Path, base_url: str, **backend: Any) -> AgentCatalog:
    fields = {
        "kind": "openai",
        "base_url": base_url,
        "model": "smollm2",
        "api_key_env": "LLM_KEY",
        "temperature": 0,
        "max_tokens": 40,
        "offer_tools": False,  # llama-cpp-python cannot stream an `auto` tool choice
        "first_token_timeout_ms": 30_000,
        "response_timeout_ms": 60_000,
        **backend,
    }
    lines = "".join(f"\n  {k}: {json.dumps(v)}" for k, v in fields.items())
    text = textwrap.dedent(
        f"""\
        id: bella
        name: Bella Vista
        prompt: You answer questions about Bella Vista, a restaurant.
        knowledge:
          - path: {KNOWLEDGE / "bella-vista-menu.md"}
        backend:"""
    )
    (tmp_path / "bella.yaml").write_text(text + lines + "\n", encoding="utf-8")
    return AgentCatalog(tmp_path, "bella")


def backend_for(catalog: AgentCatalog) -> tuple[Backends, ConversationBackend]:
    backends = Backends.build(catalog, {"LLM_KEY": KEY})
    return backends, backends(catalog.get("bella"), SESSION)


async def test_the_answer_streams_from_the_real_server(tmp_path: Path, llama: LlamaServer) -> None:
    backends, backend = backend_for(agent_file(tmp_path, llama.base_url))
    mark = llama.log_mark()
    chunks = [i async for i in backend.respond("r1", "t1", "What vegan dishes do you have?")]
    await backends.aclose()
    texts = [c.text for c in chunks if isinstance(c, TextChunk)]
    assert len(texts) > 3, texts  # token by token, not one block at the end
    assert backend.history.messages[-1].text == "".join(texts).strip()
    [generation] = llama.completed_generations(mark)
    assert generation.steps >= len(texts) - 1


async def test_a_barge_in_stops_the_generation_on_the_server(tmp_path: Path, llama: LlamaServer) -> None:
    """The server runs one generation at a time: had the first kept generating its 300
    tokens, the server log would count them before the second reply's."""
    catalog = agent_file(tmp_path, llama.base_url, max_tokens=300)
    backends, backend = backend_for(catalog)
    mark = llama.log_mark()
    stream = backend.respond("r1", "t1", "Write a long story about a dragon who learns to cook.")
    first = await anext(stream)
    assert isinstance(first, TextChunk)
    await stream.aclose()
    backend.cancel("r1", first.text)
    short = [i async for i in backend.respond("r2", "t2", "Say hello.")]
    await backends.aclose()
    assert short
    steps = [g.steps for g in llama.completed_generations(mark)]
    assert len(steps) == 1 and steps[0] < 300, steps
    deadline = asyncio.get_running_loop().time() + 5
    while "Disconnected from client" not in llama.log_since(mark):
        assert asyncio.get_running_loop().time() < deadline, "the server never saw the client leave"
        await asyncio.sleep(0.02)


async def test_a_dead_endpoint_falls_back_to_the_live_server(tmp_path: Path, llama: LlamaServer) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    fallback = [{"base_url": llama.base_url, "model": "smollm2", "api_key_env": "LLM_KEY"}]
    backends, backend = backend_for(agent_file(tmp_path, dead, fallback=fallback))
    chunks = [i async for i in backend.respond("r1", "t1", "Hello, are you open tonight?")]
    await backends.aclose()
    text = "".join(c.text for c in chunks if isinstance(c, TextChunk))
    assert text and text != catalog_unavailable(tmp_path)


def catalog_unavailable(tmp_path: Path) -> str:
    return AgentCatalog(tmp_path, "bella").get("bella").fallback.unavailable
