"""Fixtures shared by the reasoning tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .llm_server import TEST_KEY, LlamaServer, require_llama


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """One real llama.cpp server per test module (the model loads once), with the API key
    TEST_KEY, so every request proves its header. Skips without .tools/llm unless
    VOICEMESH_REQUIRE_LLM is set."""
    require_llama()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with LlamaServer.start(api_key=TEST_KEY, log_path=log) as server:
        yield server
