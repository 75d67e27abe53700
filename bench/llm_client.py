"""First-token latency and token rate of `ChatClient` against a real llama.cpp server
(llama-cpp-python + SmolLM2-135M, one thread), next to a bare aiohttp reader of the same
stream: the difference is the client's overhead. Also the pure decoder's cost per chunk on
captured bytes. Prints p50/p95; never fails on time. Skips when .tools/llm is absent
(scripts/llm_server.sh makes it).

    .venv/bin/python bench/llm_client.py --requests 20

Figures (2-core x86 VM shared with other jobs; 20 requests each, 48 tokens):

    -- same prompt (cached prefix)
    ChatClient   first token p50  32.9 ms  p95  44.9 ms   tokens/s p50 52.2  p95(slow) 45.6
    raw aiohttp  first token p50  33.3 ms  p95  37.3 ms   tokens/s p50 53.5  p95(slow) 46.1
                 first token, client minus raw, paired median +0.60 ms
    -- new prompt each time
    ChatClient   first token p50 308.1 ms  p95 365.7 ms   tokens/s p50 51.4  p95(slow) 42.8
    raw aiohttp  first token p50 309.1 ms  p95 331.8 ms   tokens/s p50 52.6  p95(slow) 46.4
                 first token, client minus raw, paired median -4.02 ms
    decoder      6.0 µs per chunk (captured llama.cpp stream, 20 chunks, one feed)

The client adds no measurable latency: the model's prompt evaluation and decoding are all
of it.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import aiohttp
from figures import percentile as pct

from voicemesh.reasoning.openai_client import ChatClient, ChatEndpoint
from voicemesh.reasoning.openai_wire import (
    ChatMessage,
    ChatRequest,
    ChatStreamDecoder,
    TextDelta,
    request_body,
)

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "services" / "reasoning" / "tests"
SYSTEM = "You are the booking assistant of Bella Vista, a restaurant."


def prompt(n: int | None) -> ChatRequest:
    """The same short prompt each time (None: llama.cpp reuses the cached prefix and only
    evaluates what changed), or one that differs from its first token (`n`: the whole
    prompt, ~40 tokens, is evaluated)."""
    system = SYSTEM if n is None else f"Call {n}. {SYSTEM}"
    return ChatRequest(
        "smollm2",
        [ChatMessage("system", system), ChatMessage("user", "Tell me about the restaurant.")],
        temperature=0,
        max_tokens=48,
    )


def load_llm_server() -> ModuleType:  # the test helper, by path: bench/ is not a package of the tests
    spec = importlib.util.spec_from_file_location("llm_server", TESTS / "llm_server.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["llm_server"] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class Run:
    first_token_s: float
    tokens: int
    generating_s: float  # first token to last

    @property
    def tokens_per_s(self) -> float:
        return (self.tokens - 1) / self.generating_s if self.generating_s > 0 else float("nan")


async def via_client(client: ChatClient, request: ChatRequest) -> Run:
    start = time.perf_counter()
    first = last = 0.0
    tokens = 0
    async with client.stream(request, first_token_timeout_s=30, total_timeout_s=120) as stream:
        async for event in stream:
            if isinstance(event, TextDelta):
                last = time.perf_counter()
                first = first or last
                tokens += 1
    return Run(first - start, tokens, last - first)


async def via_raw(session: aiohttp.ClientSession, url: str, request: ChatRequest) -> Run:
    """The least a reader can do: split lines, parse each chunk, look at delta.content."""
    start = time.perf_counter()
    first = last = 0.0
    tokens = 0
    async with session.post(url, json=request_body(request)) as response:
        async for line in response.content:
            if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                continue
            content = json.loads(line[6:])["choices"][0]["delta"].get("content")
            if content:
                last = time.perf_counter()
                first = first or last
                tokens += 1
    return Run(first - start, tokens, last - first)



def line(name: str, runs: list[Run]) -> str:
    ft = [r.first_token_s * 1000 for r in runs]
    tps = [r.tokens_per_s for r in runs]
    return (
        f"{name:<12} first token p50 {pct(ft, 0.5):7.1f} ms  p95 {pct(ft, 0.95):7.1f} ms   "
        f"tokens/s p50 {pct(tps, 0.5):6.1f}  p95(slow) {pct(tps, 0.05):6.1f}   tokens {runs[0].tokens}"
    )


def decoder_cost() -> str:
    raw = (TESTS / "fixtures" / "openai" / "text_stop.sse").read_bytes()
    chunks = raw.count(b"data: ") - 1
    rounds = 300
    start = time.perf_counter()
    for _ in range(rounds):
        decoder = ChatStreamDecoder()
        decoder.feed(raw)
    per_chunk_us = (time.perf_counter() - start) / (rounds * chunks) * 1e6
    return (
        f"decoder      {per_chunk_us:.1f} µs per chunk (captured llama.cpp stream, {chunks} chunks, one feed)"
    )


async def main(requests: int) -> None:
    llm_server = load_llm_server()
    try:
        install = llm_server.find_install()
    except llm_server.LlamaServerError as exc:
        sys.exit(f"llm_client bench: {exc}")
    if install is None:
        print(f"skipped: no LLM server in {llm_server.TOOLS} (run scripts/llm_server.sh)")
        return
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; llama-cpp-python server, "
        f"SmolLM2-135M Q4_1, n_threads 1; {requests} requests each, interleaved"
    )
    with llm_server.LlamaServer.start(install=install) as server:
        url = f"{server.base_url}/chat/completions"
        async with ChatClient(ChatEndpoint(server.base_url)) as client, aiohttp.ClientSession() as session:
            for _ in range(2):  # warm up: model pages, connection pools
                await via_client(client, prompt(None))
                await via_raw(session, url, prompt(None))
            for title, fresh in (("same prompt (cached prefix)", False), ("new prompt each time", True)):
                mine: list[Run] = []
                raw: list[Run] = []
                for i in range(requests):  # interleaved, alternating who goes first
                    ours = via_client(client, prompt(2 * i if fresh else None))
                    theirs = via_raw(session, url, prompt(2 * i + 1 if fresh else None))
                    if i % 2 == 0:
                        mine.append(await ours)
                        raw.append(await theirs)
                    else:
                        raw.append(await theirs)
                        mine.append(await ours)
                overhead = [m.first_token_s - r.first_token_s for m, r in zip(mine, raw, strict=True)]
                print(f"-- {title}")
                print(line("ChatClient", mine))
                print(line("raw aiohttp", raw))
                print(
                    f"{'':<12} first token, client minus raw, paired median "
                    f"{statistics.median(overhead) * 1000:+.2f} ms"
                )
    print(decoder_cost())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20)
    asyncio.run(main(parser.parse_args().requests))
