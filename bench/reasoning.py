"""The reasoning service's overhead on an LLM turn: first-token latency and token rate
through the mesh versus calling the backend directly, on the same llama.cpp server
(llama-cpp-python + SmolLM2-135M, one thread) with the same request; plus where the
overhead goes, measured in-process without the server, and retrieval latency.

- mesh: a gRPC client (as the media-edge is) -> `ReasoningServicer` on a real grpc.aio
  server on 127.0.0.1 (the production factory: `Backends.build`, the production tracer
  with no exporter, events masked then dropped) -> `LlmBackend` -> HTTP -> llama server.
  A fresh `Converse` session per sample (start, ready, greeting, then the timed turn), so
  every prompt is the same: the greeting is left out of the history the backend sends
  (`Prompt.build` starts at a caller message).
- direct: `ChatClient` -> llama server with exactly the request the backend sends for that
  turn, built as `LlmBackend._respond` builds it (`KnowledgeIndex.search`, then
  `Prompt.build` with the agent's redactor). The body the backend really sends is
  captured during the warm-up and compared byte for byte (a pass-through around its
  `ChatClient.stream`, in process: nothing is added on the wire). Same server, its own
  pooled connection, same max_tokens, temperature 0.

Samples alternate mesh/direct, the first of each pair alternating too (A/B, B/A); warm-up
pairs are dropped. llama.cpp reuses the cached prompt prefix and the prompt is the same
every time, so both paths get the same (cached) prompt evaluation and, at temperature 0,
the same reply. First token: from writing the turn (mesh) / asking for the stream
(direct) to the first text delta the client receives. Tokens/s: (deltas - 1) / (last
delta - first delta), a "token" being one delta as the server streams it (llama-cpp-python
sends one per generated token; the mesh forwards each as one ResponseDelta unless a `[`
is held back for a placeholder). Response: turn to `end` (mesh) / request to `Finished`
(direct). The server's own decode rate for each sample (its log's `eval time` line) shows
how much of a tokens/s difference is the server's speed varying.

The A/B difference of two ~35 ms first tokens carries the server's jitter (several ms on a
shared machine), so the same pass-through also stamps, inside every mesh sample, when the
request goes out and when the first delta reaches the backend: turn -> request out plus
backend delta -> client delta is the mesh's own time on that sample, free of the server's
jitter (the pass-through costs one coroutine frame per event).

Attribution, in this process, no server: retrieval, prompt build (with and without the
redactor), request encoding; `LlmBackend.respond` over a fake client that replays the
recorded reply instantly (to the first TextChunk, and per delta); the servicer and gRPC
with a backend that yields the recorded deltas instantly (to the first delta, per delta);
`until_stopped` per item. Retrieval over ~10,000 chunks is bench/retrieval.py's own
measurement (its `synthetic_chunks`, `bm25_search` and `latencies`).

The llama server (every thread) is pinned to one core and this process to the other
(`--no-pin` to not). The gRPC client and the servicer share this process's event loop: in
production they are two processes (edge, reasoning), here they take turns on one core,
which if anything adds to the mesh's figures. With 30 samples "p99" is the interpolated
top of the sample: read it as about the worst.

    .venv/bin/python bench/reasoning.py [--turns 30] [--warmup 3] [--max-tokens 40] [--json out.json]

Figures (2-core x86 VM, load average 0.3-0.7; two default runs after commit 7b26ff7, which
kept the LLM connection between turns and stopped redacting the system prompt; pinned; 30
pairs of 40 tokens; docs/performance.md has the runs before it too):

    first token, mesh / direct                   p50 39 / 34 ms
    first token, mesh - direct (paired)          p50 +1.8..+6.0 ms, p99 +15..+16 ms (server jitter)
    the mesh's own time (probe)                  p50 1.7-1.9 ms, p95 2.4-2.6 ms, p99 2.7-2.8 ms
      turn -> request out                        p50 1.1 ms (Prompt.build 18 µs)
      backend delta -> client delta              p50 0.7 ms
    tokens/s, mesh / direct (paired)             p50 0.99x
    retrieval, 20 / 10,000 chunks                p99 0.10 / 1.1 ms

Skips when .tools/llm is absent (scripts/llm_server.sh makes it). Prints figures; never
fails on time.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import textwrap  # noqa: E402
import time  # noqa: E402
from collections.abc import AsyncIterator, Callable, Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import UTC, date, datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402
from zoneinfo import ZoneInfo  # noqa: E402

import grpc  # noqa: E402

from voicemesh.agent import Agent  # noqa: E402
from voicemesh.mesh.events import NullEvents  # noqa: E402
from voicemesh.mesh.grpcutil import SERVER_OPTIONS, channel  # noqa: E402
from voicemesh.mesh.metrics import ServiceMetrics  # noqa: E402
from voicemesh.mesh.tracing import make_tracer_provider  # noqa: E402
from voicemesh.reasoning.backend import ConversationBackend, ResponseItem, SessionInfo, TextChunk  # noqa: E402
from voicemesh.reasoning.backends import Backends  # noqa: E402
from voicemesh.reasoning.catalog import AgentCatalog  # noqa: E402
from voicemesh.reasoning.history import History  # noqa: E402
from voicemesh.reasoning.knowledge import KnowledgeIndex  # noqa: E402
from voicemesh.reasoning.llm_backend import KNOWLEDGE_HITS, LlmAgent, LlmBackend, Target  # noqa: E402
from voicemesh.reasoning.llm_prompt import Prompt  # noqa: E402
from voicemesh.reasoning.openai_client import ChatClient, ChatEndpoint  # noqa: E402
from voicemesh.reasoning.openai_wire import (  # noqa: E402
    ChatRequest,
    Finished,
    FinishReason,
    TextDelta,
    encode_request,
)
from voicemesh.reasoning.placeholders import PlaceholderRestorer  # noqa: E402
from voicemesh.reasoning.servicer import ReasoningServicer  # noqa: E402
from voicemesh.reasoning.streams import until_stopped  # noqa: E402
from voicemesh.v1 import reasoning_pb2, reasoning_pb2_grpc  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
TESTS = REPO / "services" / "reasoning" / "tests"
KNOWLEDGE = TESTS / "knowledge"
for _folder in (TESTS, BENCH):  # the llama test server, and bench/retrieval.py
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

import llm_server  # noqa: E402
import retrieval  # noqa: E402

KEY = "vm-bench-reasoning-key"
AGENT_ID = "bella"
QUESTION = "Do you have any vegan dishes, and are they gluten free?"
WALL_CLOCK = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
FIRST_TOKEN_TIMEOUT_MS = 30_000
RESPONSE_TIMEOUT_MS = 60_000


# ---- the agent ---------------------------------------------------------------------------


def write_agent(folder: Path, base_url: str, max_tokens: int) -> AgentCatalog:
    backend = {
        "kind": "openai",
        "base_url": base_url,
        "model": llm_server.MODEL_ALIAS,
        "api_key_env": "LLM_KEY",
        "temperature": 0,
        "max_tokens": max_tokens,
        "offer_tools": False,  # llama-cpp-python cannot stream an `auto` tool choice
        "first_token_timeout_ms": FIRST_TOKEN_TIMEOUT_MS,
        "response_timeout_ms": RESPONSE_TIMEOUT_MS,
    }
    lines = "".join(f"\n  {k}: {json.dumps(v)}" for k, v in backend.items())
    text = textwrap.dedent(
        f"""\
        id: {AGENT_ID}
        name: Bella Vista
        prompt: You answer questions about Bella Vista, a restaurant, for callers on the phone.
        greeting: Hello, Bella Vista, how can I help?
        knowledge:
          - path: {KNOWLEDGE / "bella-vista-menu.md"}
          - path: {KNOWLEDGE / "bella-vista-policies.md"}
        backend:"""
    )
    (folder / f"{AGENT_ID}.yaml").write_text(text + lines + "\n", encoding="utf-8")
    return AgentCatalog(folder, AGENT_ID)


def today_of(agent: Agent) -> date:
    """The session's date, as `ReasoningServicer._today` makes it from the same clock."""
    now = WALL_CLOCK
    return (now.astimezone(ZoneInfo(agent.timezone)) if agent.timezone else now.astimezone()).date()


def direct_request(shared: LlmAgent, text: str) -> ChatRequest:
    """The request `LlmBackend._respond` sends for `text` as the first turn of a session."""
    config = shared.config
    history = History()
    history.add_assistant(shared.agent.greeting.strip(), "r1")  # the greeting, as heard
    history.add_user(text, "t1")
    hits = shared.knowledge.search(text, KNOWLEDGE_HITS) if shared.knowledge else []
    prompt = Prompt(shared.agent, shared.redactor, config.history_messages)
    built = prompt.build(history.messages, hits, today_of(shared.agent), {})
    return ChatRequest(
        model=shared.targets[0].model,
        messages=built.messages,
        temperature=config.temperature,
        max_tokens=config.max_tokens,
    )


# ---- one sample on each path -------------------------------------------------------------


@dataclass
class Run:
    first_token_s: float
    deltas: int
    generating_s: float  # first delta to last
    response_s: float  # turn / request to the end
    text: str
    # Mesh only, from the probe: turn written -> request out; request out -> first delta in
    # the backend; first delta in the backend -> first delta at the client.
    before_s: float = float("nan")
    http_s: float = float("nan")
    after_s: float = float("nan")
    # The server's own account of the generation (its log's `eval time` line).
    server_steps: int = 0
    server_decode_s: float = float("nan")

    @property
    def tokens_per_s(self) -> float:
        return (self.deltas - 1) / self.generating_s if self.generating_s > 0 else float("nan")


class _Clock:
    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.first = self.last = 0.0
        self.deltas = 0
        self.parts: list[str] = []

    def delta(self, text: str) -> None:
        self.last = time.perf_counter()
        self.first = self.first or self.last
        self.deltas += 1
        self.parts.append(text)

    def run(self) -> Run:
        end = time.perf_counter()
        return Run(
            self.first - self.start,
            self.deltas,
            self.last - self.first,
            end - self.start,
            "".join(self.parts),
        )


async def _read(call: grpc.aio.StreamStreamCall) -> reasoning_pb2.ConverseResponse:
    msg = await asyncio.wait_for(call.read(), timeout=RESPONSE_TIMEOUT_MS / 1000)
    if msg is grpc.aio.EOF:
        raise RuntimeError(f"the Converse stream ended early ({await call.code()}: {await call.details()})")
    return msg


async def _until_end(call: grpc.aio.StreamStreamCall, clock: _Clock | None = None) -> None:
    while True:
        msg = await _read(call)
        kind = msg.WhichOneof("kind")
        if kind == "delta":
            if clock is not None:
                clock.delta(msg.delta.text)
        elif kind == "end":
            return


async def mesh_turn(
    stub: reasoning_pb2_grpc.ReasoningStub, n: int, text: str, probe: Probe | None = None
) -> Run:
    """A fresh session: start, ready, greeting (untimed); then the timed turn."""
    call = stub.Converse()
    start = reasoning_pb2.SessionStart(
        session_id=f"bench-{n}", agent=AGENT_ID, metadata={"transport": "bench"}
    )
    await call.write(reasoning_pb2.ConverseRequest(start=start))
    ready = await _read(call)
    if ready.WhichOneof("kind") != "ready":
        raise RuntimeError(f"expected ready, got {ready.WhichOneof('kind')}")
    await _until_end(call)  # the greeting
    if probe is not None:
        probe.reset()
    clock = _Clock()
    await call.write(reasoning_pb2.ConverseRequest(turn=reasoning_pb2.UserTurn(turn_id="t1", text=text)))
    await _until_end(call, clock)
    run = clock.run()
    if probe is not None and probe.sent and probe.first:
        run.before_s = probe.sent - clock.start
        run.http_s = probe.first - probe.sent
        run.after_s = clock.first - probe.first
    await call.done_writing()
    while await call.read() is not grpc.aio.EOF:
        pass
    return run


async def direct_turn(client: ChatClient, request: ChatRequest) -> Run:
    clock = _Clock()
    stream = client.stream(
        request,
        first_token_timeout_s=FIRST_TOKEN_TIMEOUT_MS / 1000,
        total_timeout_s=RESPONSE_TIMEOUT_MS / 1000,
    )
    async with stream:
        async for event in stream:
            if isinstance(event, TextDelta):
                clock.delta(event.text)
            elif isinstance(event, Finished):
                break
    return clock.run()


async def logged(server: llm_server.LlamaServer, sample: Callable[[], Any]) -> Run:
    """One sample, with the server's decode steps and time for it from the server's log."""
    mark = server.log_mark()
    run: Run = await sample()
    generations = server.completed_generations(mark)
    if generations:
        run.server_steps, run.server_decode_s = generations[-1].steps, generations[-1].decode_s
    return run


# ---- serving -----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serving(
    catalog: AgentCatalog, factory: Callable[[Agent, SessionInfo], ConversationBackend]
) -> AsyncIterator[reasoning_pb2_grpc.ReasoningStub]:
    """The servicer as the reasoning process builds it, on a grpc.aio server on 127.0.0.1,
    and a stub over a channel with the mesh's options (as the edge has)."""
    metrics = ServiceMetrics.create("reasoning")
    tracer = make_tracer_provider("reasoning", "bench-0", "none").get_tracer("voicemesh.reasoning")
    servicer = ReasoningServicer(
        catalog, metrics, NullEvents("reasoning", "bench-0"), tracer,
        backend_factory=factory, wall_clock=lambda: WALL_CLOCK,
    )  # fmt: skip
    server = grpc.aio.server(options=SERVER_OPTIONS)
    reasoning_pb2_grpc.add_ReasoningServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    ch = channel(f"127.0.0.1:{port}")
    try:
        yield reasoning_pb2_grpc.ReasoningStub(ch)
    finally:
        await ch.close()
        await server.stop(None)


@dataclass
class Probe:
    """Timestamps inside the mesh path, from a pass-through around the backend's
    `ChatClient.stream` (no proxy on the wire): when the request goes out (the stream's
    first step, where the client POSTs) and when the first text delta reaches the backend.
    Also every body sent, while `bodies` is not None. Costs one coroutine frame per event."""

    sent: float = 0.0
    first: float = 0.0
    bodies: list[bytes] | None = None

    def reset(self) -> None:
        self.sent = self.first = 0.0


class _ProbedStream:
    def __init__(self, inner: Any, probe: Probe) -> None:
        self._inner, self._probe = inner, probe

    async def __aenter__(self) -> _ProbedStream:
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._inner.__aexit__(*exc)

    def __aiter__(self) -> _ProbedStream:
        return self

    async def __anext__(self) -> object:
        probe = self._probe
        if not probe.sent:
            probe.sent = time.perf_counter()
        event = await self._inner.__anext__()
        if not probe.first and isinstance(event, TextDelta):
            probe.first = time.perf_counter()
        return event

    async def aclose(self) -> None:
        await self._inner.aclose()


@contextlib.contextmanager
def probing(client: ChatClient, probe: Probe):
    original = client.stream

    def stream(request: ChatRequest, **kwargs: Any) -> _ProbedStream:
        if probe.bodies is not None:
            probe.bodies.append(encode_request(request))
        return _ProbedStream(original(request, **kwargs), probe)

    client.stream = stream  # type: ignore[method-assign]
    try:
        yield
    finally:
        del client.stream  # back to the class's method


# ---- in-process attribution --------------------------------------------------------------


def time_us(fn: Callable[[], object], count: int, warmup: int = 50) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(count):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1e6)
    return out


class _ReplayStream:
    """A ChatStream stand-in that yields recorded events at once."""

    def __init__(self, events: Sequence[object]) -> None:
        self._events = iter(events)

    def __aiter__(self) -> _ReplayStream:
        return self

    async def __anext__(self) -> object:
        try:
            return next(self._events)
        except StopIteration:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> _ReplayStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


@dataclass
class _ReplayClient:
    endpoint: ChatEndpoint
    deltas: Sequence[str]

    def stream(self, request: ChatRequest, **kwargs: Any) -> _ReplayStream:
        encode_request(request)  # the real client encodes the body here
        return _ReplayStream([*(TextDelta(d) for d in self.deltas), Finished(FinishReason.STOP)])


class InstantBackend(ConversationBackend):
    """Greets at once; answers every turn with the recorded deltas, without waiting."""

    deltas: Sequence[str] = ()

    async def _greet(self, response_id: str) -> AsyncIterator[ResponseItem]:
        yield TextChunk(self.agent.greeting)

    async def _respond(self, response_id: str, text: str) -> AsyncIterator[ResponseItem]:
        for d in self.deltas:
            yield TextChunk(d)


@dataclass
class Stream:
    first_us: list[float] = field(default_factory=list)
    per_delta_us: list[float] = field(default_factory=list)


async def backend_replay(shared: LlmAgent, deltas: Sequence[str], text: str, count: int) -> Stream:
    """`LlmBackend.respond` for a first turn, its client replaced by an instant replay:
    retrieval, prompt, redaction, request encoding and the generator layers, no HTTP."""
    replay = _ReplayClient(shared.targets[0].client.endpoint, deltas)
    fake = dataclasses.replace(shared, targets=(Target(replay, shared.targets[0].model),))  # type: ignore[arg-type]
    out = Stream()
    for n in range(count + 20):
        backend = LlmBackend(fake, SessionInfo(f"b{n}", today_of(shared.agent)))
        async for _ in backend.greet("r1"):
            pass
        start = time.perf_counter()
        first = 0.0
        items = 0
        async for item in backend.respond("r2", "t1", text):
            if isinstance(item, TextChunk):
                first = first or time.perf_counter()
                items += 1
        end = time.perf_counter()
        if n >= 20:
            out.first_us.append((first - start) * 1e6)
            out.per_delta_us.append((end - first) / max(1, items - 1) * 1e6)
    return out


async def servicer_replay(catalog: AgentCatalog, deltas: Sequence[str], text: str, count: int) -> Stream:
    """The servicer and gRPC with `InstantBackend`: the mesh's hop without the LLM."""
    InstantBackend.deltas = tuple(deltas)
    out = Stream()
    async with serving(catalog, InstantBackend) as stub:
        for n in range(count + 10):
            run = await mesh_turn(stub, n, text)
            if n >= 10:
                out.first_us.append(run.first_token_s * 1e6)
                out.per_delta_us.append(run.generating_s / max(1, run.deltas - 1) * 1e6)
    return out


async def until_stopped_cost(items: int, rounds: int) -> tuple[float, float]:
    """µs per item: an instant async generator read through `until_stopped`, and plainly."""

    async def source() -> AsyncIterator[int]:
        for i in range(items):
            yield i

    async def plain() -> None:
        async for _ in source():
            pass

    async def wrapped() -> None:
        async with contextlib.aclosing(until_stopped(source(), asyncio.Event())) as stream:
            async for _ in stream:
                pass

    results = []
    for job in (wrapped, plain):
        await job()
        start = time.perf_counter()
        for _ in range(rounds):
            await job()
        results.append((time.perf_counter() - start) / (rounds * items) * 1e6)
    return results[0], results[1]


# ---- figures -----------------------------------------------------------------------------


pct = retrieval.pct  # percent (0..100), numpy's interpolation


def summary(values: Sequence[float]) -> dict[str, float]:
    return {"p50": pct(values, 50), "p95": pct(values, 95), "p99": pct(values, 99)}


def row(name: str, values: Sequence[float], unit: str, fmt: str = "9.2f") -> str:
    s = summary(values)
    return f"  {name:<44}{s['p50']:{fmt}}{s['p95']:{fmt}}{s['p99']:{fmt}}  {unit}"


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of `pid` (sched_setaffinity on a pid sets one thread only)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task.name), cpus)


def retrieval_figures(sample: KnowledgeIndex, chunks: int, queries: int) -> dict[str, Any]:
    _, questions = retrieval.load_questions()
    asks = [q.ask for q in questions if q.kb == "bella-vista"] or [q.ask for q in questions]
    own = retrieval.latencies(retrieval.bm25_search(sample), asks, queries)
    start = time.perf_counter()
    big = KnowledgeIndex.build(retrieval.synthetic_chunks(chunks, 7))
    build_s = time.perf_counter() - start
    large = retrieval.latencies(retrieval.bm25_search(big), [q.ask for q in questions], queries)
    return {
        "sample_chunks": len(sample),
        "sample_ms": summary(own),
        "large_chunks": len(big),
        "large_build_s": build_s,
        "large_ms": summary(large),
    }


async def measure(args: argparse.Namespace, install: llm_server.LlamaInstall) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    cpus = sorted(os.sched_getaffinity(0))
    pinned = args.pin and len(cpus) >= 2
    llm_core, bench_core = (cpus[0], cpus[1]) if pinned else (None, None)
    if pinned:
        os.sched_setaffinity(0, {llm_core})  # the server's process inherits this at fork
    log = Path(tempfile.gettempdir()) / f"voicemesh-bench-reasoning-{os.getpid()}.log"
    server = llm_server.LlamaServer.start(install=install, api_key=KEY, log_path=log, n_threads=1)
    try:
        if pinned:
            pin(server.pid, {llm_core})
            pin(os.getpid(), {bench_core})
        fig = await measure_with(args, server, llm_core, bench_core)
        fig["machine"]["load_1min"] = [load_before, os.getloadavg()[0]]
        return fig
    finally:
        server.stop()
        with contextlib.suppress(OSError):
            log.unlink()


async def measure_with(
    args: argparse.Namespace, server: llm_server.LlamaServer, llm_core: int | None, bench_core: int | None
) -> dict[str, Any]:
    text = args.question
    with tempfile.TemporaryDirectory() as folder:
        catalog = write_agent(Path(folder), server.base_url, args.max_tokens)
        backends = Backends.build(catalog, {"LLM_KEY": KEY})
        shared = backends.llm_agents[AGENT_ID]
        request = direct_request(shared, text)
        body = encode_request(request)
        mesh_client = shared.targets[0].client
        mesh: list[Run] = []
        direct: list[Run] = []
        sent: list[bytes] = []
        probe = Probe(bodies=sent)
        async with (
            serving(catalog, backends) as stub,
            ChatClient(ChatEndpoint(server.base_url, KEY)) as client,
        ):
            with probing(mesh_client, probe):
                for w in range(args.warmup):
                    await mesh_turn(stub, -1 - w, text, probe)
                    await direct_turn(client, request)
                probe.bodies = None
                if not sent or any(b != body for b in sent):
                    print(
                        "WARNING: the backend sent another body than the direct request; using the backend's"
                    )
                    request = dataclasses.replace(request, messages=json.loads(sent[0])["messages"])
                    body = sent[0]
                print(f"  warm-up done ({args.warmup} pairs); timing {args.turns} pairs ...", flush=True)
                for i in range(args.turns):  # A/B, B/A, ...
                    pair = [
                        (mesh, lambda i=i: mesh_turn(stub, i, text, probe)),
                        (direct, lambda: direct_turn(client, request)),
                    ]
                    for runs, sample in pair if i % 2 == 0 else pair[::-1]:
                        runs.append(await logged(server, sample))
        await backends.aclose()

        # The recorded reply, replayed without the server.
        reply = await direct_turn_deltas(server, request)
        hits = shared.knowledge.search(text, KNOWLEDGE_HITS) if shared.knowledge else []
        history = History()
        history.add_assistant(shared.agent.greeting, "r1")
        history.add_user(text, "t1")
        today = today_of(shared.agent)
        prompt = Prompt(shared.agent, shared.redactor, shared.config.history_messages)
        bare = Prompt(shared.agent, None, shared.config.history_messages)
        system = bare.system(hits, today)
        n = args.inproc
        costs = {
            "retrieval (KnowledgeIndex.search, k=3)": time_us(
                lambda: shared.knowledge.search(text, KNOWLEDGE_HITS), n
            ),
            "Prompt.build with redaction": time_us(
                lambda: prompt.build(history.messages, hits, today, {}), n
            ),
            "Prompt.build without redactor": time_us(
                lambda: bare.build(history.messages, hits, today, {}), n
            ),
            "Redactor.redact(system prompt)": time_us(lambda: shared.redactor.redact(system), n)
            if shared.redactor
            else [],
            "encode_request (JSON body)": time_us(lambda: encode_request(request), n),
            "PlaceholderRestorer, whole reply": time_us(lambda: _restore_all(reply), n),
        }
        backend_stream = await backend_replay(shared, reply, text, args.inproc_turns)
        servicer_stream = await servicer_replay(catalog, reply, text, args.inproc_turns)
        wrapped_us, plain_us = await until_stopped_cost(len(reply) or 40, 200)
        retrieval_fig = retrieval_figures(shared.knowledge, args.chunks, args.queries)

    same_text = sum(m.text == d.text for m, d in zip(mesh, direct, strict=True))
    return {
        "machine": {
            "cores": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "llm_core": llm_core,
            "bench_core": bench_core,
        },
        "setup": {
            "turns": args.turns,
            "warmup": args.warmup,
            "max_tokens": args.max_tokens,
            "question": text,
            "prompt_chars": sum(len(m["content"] or "") for m in request.messages),
            "body_bytes": len(body),
            "bodies_identical": bool(sent) and all(b == body for b in sent),
            "knowledge_chunks": len(shared.knowledge) if shared.knowledge else 0,
            "redaction": shared.redactor is not None,
        },
        "runs": {
            "mesh": [dataclasses.asdict(r) for r in mesh],
            "direct": [dataclasses.asdict(r) for r in direct],
        },
        "same_reply": same_text,
        "reply_deltas": len(reply),
        "inproc_us": costs,
        "backend_replay_us": dataclasses.asdict(backend_stream),
        "servicer_replay_us": dataclasses.asdict(servicer_stream),
        "until_stopped_us_per_item": {"wrapped": wrapped_us, "plain": plain_us},
        "retrieval": retrieval_fig,
    }


async def direct_turn_deltas(server: llm_server.LlamaServer, request: ChatRequest) -> list[str]:
    async with ChatClient(ChatEndpoint(server.base_url, KEY)) as client:
        stream = client.stream(request, first_token_timeout_s=30, total_timeout_s=60)
        async with stream:
            return [e.text async for e in stream if isinstance(e, TextDelta)]


def _restore_all(deltas: Sequence[str]) -> None:
    restorer = PlaceholderRestorer({})
    for d in deltas:
        restorer.feed(d)
    restorer.flush()


def _col(runs: list[dict[str, Any]], key: str, scale: float = 1.0) -> list[float]:
    if key == "tokens_per_s":
        return [
            (r["deltas"] - 1) / r["generating_s"] if r["generating_s"] > 0 else float("nan") for r in runs
        ]
    if key == "server_rate":
        return [r["server_steps"] / r["server_decode_s"] for r in runs]
    return [r[key] * scale for r in runs]


def _minus(a: Sequence[float], b: Sequence[float]) -> list[float]:
    return [x - y for x, y in zip(a, b, strict=True)]


def _head(title: str) -> None:
    print(f"\n  {title:<50}{'p50':>9}{'p95':>9}{'p99':>9}")


def report(fig: dict[str, Any]) -> None:
    m, s = fig["machine"], fig["setup"]
    pinning = (
        f"llama server pinned to core {m['llm_core']}, this process (client + servicer) to core {m['bench_core']}"
        if m["llm_core"] is not None
        else "not pinned"
    )
    load = m["load_1min"]
    print(
        f"machine: {m['cores']} cores ({m['processor']}), Python {m['python']}; {pinning}; "
        f"load average (1 min) {load[0]:.2f} at start, {load[1]:.2f} at end"
    )
    print(
        f"llama-cpp-python server, SmolLM2-135M, n_threads 1; {s['turns']} pairs (+{s['warmup']} warm-up), "
        f"max_tokens {s['max_tokens']}, temperature 0; knowledge {s['knowledge_chunks']} chunks, "
        f"redaction {'on' if s['redaction'] else 'off'}"
    )
    print(
        f"request: {s['body_bytes']} bytes ({s['prompt_chars']} prompt chars); the backend's body "
        f"{'is byte-identical to' if s['bodies_identical'] else 'DIFFERS from'} the direct one; "
        f"same reply on both paths in {fig['same_reply']}/{s['turns']} pairs"
    )
    mesh, direct = fig["runs"]["mesh"], fig["runs"]["direct"]
    ft_m, ft_d = _col(mesh, "first_token_s", 1e3), _col(direct, "first_token_s", 1e3)
    tps_m, tps_d = _col(mesh, "tokens_per_s"), _col(direct, "tokens_per_s")
    rs_m, rs_d = _col(mesh, "response_s", 1e3), _col(direct, "response_s", 1e3)
    before, http, after = (_col(mesh, k, 1e3) for k in ("before_s", "http_s", "after_s"))
    own = [a + b for a, b in zip(before, after, strict=True)]
    gap = _minus(ft_m, ft_d)

    _head("through the mesh vs direct (A/B, paired)")
    print(row("first token, mesh", ft_m, "ms"))
    print(row("first token, direct", ft_d, "ms"))
    print(row("first token, mesh - direct", gap, "ms"))
    print(row("tokens/s, mesh", tps_m, "deltas/s", "9.1f"))
    print(row("tokens/s, direct", tps_d, "deltas/s", "9.1f"))
    print(row("tokens/s, mesh / direct", [a / b for a, b in zip(tps_m, tps_d, strict=True)], "x", "9.3f"))
    print(row("server's own decode rate, mesh requests", _col(mesh, "server_rate"), "steps/s", "9.1f"))
    print(row("server's own decode rate, direct requests", _col(direct, "server_rate"), "steps/s", "9.1f"))
    print(row("response (to end), mesh", rs_m, "ms", "9.1f"))
    print(row("response (to end), direct", rs_d, "ms", "9.1f"))
    print(row("response, mesh - direct", _minus(rs_m, rs_d), "ms"))
    print(
        f"  ratio of medians mesh/direct: first token {pct(ft_m, 50) / pct(ft_d, 50):.3f}x, "
        f"tokens/s {pct(tps_m, 50) / pct(tps_d, 50):.3f}x, response {pct(rs_m, 50) / pct(rs_d, 50):.3f}x; "
        f"deltas per reply: mesh {sorted({r['deltas'] for r in mesh})}, direct {sorted({r['deltas'] for r in direct})}"
    )

    _head("inside each mesh sample (probe), first token")
    print(row("turn written -> request out (servicer, backend)", before, "ms"))
    print(row("request out -> first delta in the backend (HTTP)", http, "ms"))
    print(row("first delta in the backend -> at the client", after, "ms"))
    print(row("the mesh's own time (first + third rows)", own, "ms"))
    print(row("HTTP leg in the mesh - direct first token", _minus(http, ft_d), "ms"))

    _head("in-process, no server")
    for name, values in fig["inproc_us"].items():
        if values:
            print(row(name, values, "µs", "9.1f"))
    b, v = fig["backend_replay_us"], fig["servicer_replay_us"]
    print(row("LlmBackend.respond, instant client: to first", b["first_us"], "µs", "9.1f"))
    print(row("LlmBackend.respond, instant client: per delta", b["per_delta_us"], "µs", "9.1f"))
    print(row("servicer + gRPC, instant backend: to first", v["first_us"], "µs", "9.1f"))
    print(row("servicer + gRPC, instant backend: per delta", v["per_delta_us"], "µs", "9.1f"))
    u = fig["until_stopped_us_per_item"]
    print(
        f"  until_stopped: {u['wrapped']:.1f} µs per item (a plain async for: {u['plain']:.2f} µs); "
        f"replayed reply: {fig['reply_deltas']} deltas"
    )

    r = fig["retrieval"]
    _head("retrieval, search k=3 (bench/retrieval.py)")
    for key, label in (
        ("sample_ms", f"{r['sample_chunks']} chunks (the agent's two files)"),
        ("large_ms", f"{r['large_chunks']:,} synthetic chunks (built in {r['large_build_s']:.1f} s)"),
    ):
        q = r[key]
        print(f"  {label:<50}{q['p50']:9.3f}{q['p95']:9.3f}{q['p99']:9.3f}  ms")

    def verdict(values: Sequence[float]) -> str:
        return "met" if pct(values, 99) <= 5.0 else "NOT met"

    print(
        f"\nmesh overhead on first token, target p99 <= 5 ms: the mesh's own time p50 {pct(own, 50):.2f}, "
        f"p99 {pct(own, 99):.2f} ms ({verdict(own)}); the A/B difference p50 {pct(gap, 50):+.2f}, "
        f"p99 {pct(gap, 99):+.2f} ms ({verdict(gap)}; it carries the server's jitter)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--turns", type=int, default=30, help="timed samples per path")
    parser.add_argument("--warmup", type=int, default=3, help="untimed pairs first")
    parser.add_argument("--max-tokens", type=int, default=40)
    parser.add_argument("--question", default=QUESTION)
    parser.add_argument("--inproc", type=int, default=2000, help="repetitions of each in-process step")
    parser.add_argument("--inproc-turns", type=int, default=200, help="replayed turns (backend, servicer)")
    parser.add_argument("--chunks", type=int, default=10_000, help="synthetic chunks for retrieval")
    parser.add_argument("--queries", type=int, default=1_000, help="timed searches per index")
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin to cores")
    parser.add_argument("--json", type=Path, help="also write every figure and sample here")
    args = parser.parse_args()
    try:
        install = llm_server.find_install()
    except llm_server.LlamaServerError as exc:
        sys.exit(f"reasoning bench: {exc}")
    if install is None:
        print(f"skipped: no LLM server in {llm_server.TOOLS} (run scripts/llm_server.sh)")
        return
    started = time.perf_counter()
    fig = asyncio.run(measure(args, install))
    report(fig)
    print(f"(bench took {time.perf_counter() - started:.0f} s)")
    if args.json is not None:
        args.json.write_text(json.dumps(fig, indent=2, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
