"""Session events across a NATS outage, against a real nats-server with JetStream on a store
dir: stopped (SIGKILL) mid-stream and started again on the same port and store, every event
within the backlog bound is in the stream exactly once, in order; past the bound, dropped and
counted. The call path's `emit` never blocks or raises meanwhile."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from voicemesh.mesh.backlog import Pending
from voicemesh.mesh.events import (
    DUPLICATE_WINDOW_S,
    STREAM_NAME,
    JetStreamEvents,
    connect_nats,
    stream_config,
    subject_for,
)
from voicemesh.mesh.localservers import LocalServer, nats_server, nats_url
from voicemesh.mesh.metrics import ServiceMetrics
from voicemesh.v1 import events_pb2

pytestmark = pytest.mark.integration


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LocalServer]:
    """A nats-server on a store dir; `start()` again brings it back on the same port and store."""
    nats = nats_server(tmp_path / "jetstream")
    nats.start()
    try:
        yield nats
    finally:
        nats.stop()


def kill(server: LocalServer) -> None:
    assert server.proc is not None
    server.proc.kill()
    server.proc.wait()


@pytest.fixture
def metrics() -> ServiceMetrics:
    return ServiceMetrics.create("media-edge")


@pytest.fixture
def session() -> str:
    return f"out{uuid.uuid4().hex[:12]}"


def emit(sink: JetStreamEvents, session: str, n: int) -> None:
    sink.emit(session, transcript=events_pb2.TranscriptPublished(utterance_id=f"u{n}", text="hi", final=True))


async def stored(url: str, session: str, expect: int, timeout_s: float = 30.0) -> list[str]:
    """The utterance ids the stream holds for `session`, in stream order, once it holds
    `expect` of them (or the deadline passed); each message is read once by sequence."""
    nc = await connect_nats(url, timeout_s=5.0)
    try:
        js = nc.jetstream()
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                state = (await js.stream_info(STREAM_NAME)).state
                if state.messages >= expect or time.monotonic() > deadline:
                    break
            except Exception:  # JetStream still recovering its store after a restart
                assert time.monotonic() < deadline, "the stream never came back"
            await asyncio.sleep(0.05)
        subject = subject_for(session, "transcript")
        ids: list[str] = []
        for seq in range(state.first_seq, state.last_seq + 1):
            msg = await js.get_msg(STREAM_NAME, seq)
            if msg.subject == subject:
                ids.append(events_pb2.SessionEvent.FromString(msg.data or b"").transcript.utterance_id)
        return ids
    finally:
        await nc.close()


def sample(metrics: ServiceMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, {"service": "media-edge", **labels}) or 0.0


async def until(check: object, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_events_emitted_while_nats_is_down_are_delivered_once_in_order_when_it_is_back(
    server: LocalServer, metrics: ServiceMetrics, session: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="voicemesh.mesh.events")
    sink = JetStreamEvents("media-edge", "edge-0", metrics, queue_size=64)
    await sink.connect(nats_url(server))
    try:
        for n in range(5):
            emit(sink, session, n)
        assert await stored(nats_url(server), session, 5) == [f"u{n}" for n in range(5)]
        await until(lambda: sink.backlog() == 0, "the last ack")

        kill(server)
        for n in range(5, 30):
            emit(sink, session, n)
        await until(lambda: "event publishing failing" in caplog.text, "the failure to be logged")
        assert sink.backlog() == 25
        assert sample(metrics, "voicemesh_queue_depth", queue="events") == 25

        server.start()
        await until(lambda: sink.backlog() == 0, "the backlog to drain")
        assert await stored(nats_url(server), session, 30) == [f"u{n}" for n in range(30)]
    finally:
        await sink.close()
    assert sample(metrics, "voicemesh_dropped_total", what="event") == 0
    assert sample(metrics, "voicemesh_errors_total", kind="event_publish") >= 1
    # One line when it began failing, one when it recovered: not one per event or retry.
    failing = [r for r in caplog.records if r.getMessage().startswith("event publishing failing")]
    recovered = [r for r in caplog.records if r.getMessage() == "event publishing recovered"]
    assert (len(failing), len(recovered)) == (1, 1)
    assert recovered[0].waited == 25 and recovered[0].dropped == 0  # type: ignore[attr-defined]


async def test_past_the_bound_events_are_dropped_and_counted_and_the_rest_delivered(
    server: LocalServer, metrics: ServiceMetrics, session: str
) -> None:
    bound = 8
    sink = JetStreamEvents("media-edge", "edge-0", metrics, queue_size=bound)
    await sink.connect(nats_url(server))
    try:
        emit(sink, session, 0)
        assert await stored(nats_url(server), session, 1) == ["u0"]
        await until(lambda: sink.backlog() == 0, "the ack")
        kill(server)
        for n in range(1, 21):
            emit(sink, session, n)
        assert sink.backlog() == bound
        assert sample(metrics, "voicemesh_dropped_total", what="event") == 20 - bound
        server.start()
        await until(lambda: sink.backlog() == 0, "the backlog to drain")
        assert await stored(nats_url(server), session, 1 + bound) == [f"u{n}" for n in range(1 + bound)]
    finally:
        await sink.close()
    assert sample(metrics, "voicemesh_dropped_total", what="event") == 20 - bound


async def test_emit_on_the_call_path_neither_blocks_nor_raises_while_nats_is_down(
    server: LocalServer, metrics: ServiceMetrics, session: str
) -> None:
    sink = JetStreamEvents("media-edge", "edge-0", metrics, queue_size=100)
    await sink.connect(nats_url(server))
    try:
        kill(server)
        ticks = 0

        async def ticker() -> None:  # the event loop keeps running other work meanwhile
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        started = time.perf_counter()
        for n in range(5000):  # 50 times the bound: most are dropped, none raises
            emit(sink, session, n)
            if n % 100 == 0:
                await asyncio.sleep(0)
        took = time.perf_counter() - started
        print(f"5000 emits with NATS down: {took * 1000:.1f} ms")
        task.cancel()
        assert took < 3.0
        assert ticks >= 40
        assert sink.backlog() == 100
        assert sample(metrics, "voicemesh_dropped_total", what="event") == 4900
    finally:
        await sink.close(drain_timeout_s=0.1)
    # What close could not publish is counted as dropped too, not lost silently.
    assert sample(metrics, "voicemesh_dropped_total", what="event") == 5000


class AckLost(JetStreamEvents):
    """Its first publish reaches JetStream, but the ack is lost on the way back."""

    lost = 0

    async def _publish(self, js: object, item: Pending) -> None:
        await super()._publish(js, item)
        if not self.lost:
            self.lost += 1
            raise TimeoutError("ack lost")


async def test_a_publish_stored_but_not_acked_is_stored_once_when_retried(
    server: LocalServer, metrics: ServiceMetrics, session: str
) -> None:
    sink = AckLost("media-edge", "edge-0", metrics)
    await sink.connect(nats_url(server))
    try:
        for n in range(3):
            emit(sink, session, n)
        await until(lambda: sink.backlog() == 0, "the backlog to drain")
        assert sink.lost == 1
        assert await stored(nats_url(server), session, 3) == ["u0", "u1", "u2"]
    finally:
        await sink.close()


async def test_the_stream_remembers_message_ids_for_the_duplicate_window(server: LocalServer) -> None:
    nc = await connect_nats(nats_url(server))
    try:
        sink = JetStreamEvents("stt", "stt-0", ServiceMetrics.create("stt"))
        await sink.connect(nats_url(server))
        await sink.close()
        info = await nc.jetstream().stream_info(STREAM_NAME)
        assert info.config.duplicate_window == DUPLICATE_WINDOW_S
    finally:
        await nc.close()
    assert stream_config(1.0).duplicate_window == 1.0  # never longer than the max age
