"""The edge's filler cache: once per (voice, text) for the process, never twice at once, and
what the agent profile asks for."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest
from prometheus_client import generate_latest

from voicemesh.edge.filler_cache import Audio, FillerCache, FillerMetrics
from voicemesh.edge.fillers import FillerConfig, FillerResult
from voicemesh.edge.profile import call_settings
from voicemesh.mesh.metrics import ServiceMetrics
from voicemesh.v1 import reasoning_pb2

pytestmark = pytest.mark.unit
FRAME = bytes(640)


class FakeTts:
    """Synthesizes each phrase as soon as `release` lets it; remembers what it was asked."""

    def __init__(self, fail: bool = False) -> None:
        self.asked: list[tuple[str, str]] = []
        self.release = asyncio.Event()
        self.fail = fail

    async def __call__(self, voice: str, phrases: Sequence[str]) -> AsyncIterator[tuple[str, Audio]]:
        self.asked += [(voice, p) for p in phrases]
        await self.release.wait()
        if self.fail:
            raise RuntimeError("tts went away")
        for text in phrases:
            yield text, (FRAME,) * 3


def cache() -> FillerCache:
    metrics = ServiceMetrics.create("media-edge")
    return FillerCache(FillerMetrics.create(metrics), metrics)


async def ready(c: FillerCache, voice: str, phrases: Sequence[str], tts: FakeTts) -> list[str]:
    return [text async for text in c.prepare(voice, phrases, tts)]


async def test_a_phrase_is_synthesized_once_per_voice_and_then_ready_at_once() -> None:
    c, tts = cache(), FakeTts()
    tts.release.set()
    assert await ready(c, "joe", ["Let me check.", "One moment."], tts) == ["Let me check.", "One moment."]
    assert c.get("joe", "Let me check.") == (FRAME,) * 3
    again = FakeTts()
    assert await ready(c, "joe", ["One moment.", "Let me check."], again) == ["One moment.", "Let me check."]
    assert again.asked == []  # the second call found both in the cache
    other = FakeTts()
    other.release.set()
    assert await ready(c, "amy", ["One moment."], other) == ["One moment."]
    assert other.asked == [("amy", "One moment.")]  # another voice is another phrase


async def test_two_calls_asking_at_once_synthesize_a_phrase_once() -> None:
    c, first, second = cache(), FakeTts(), FakeTts()
    one = asyncio.create_task(ready(c, "joe", ["Let me check."], first))
    await asyncio.sleep(0)  # the first call has started its synthesis
    two = asyncio.create_task(ready(c, "joe", ["Let me check."], second))
    await asyncio.sleep(0)
    assert not two.done()
    first.release.set()
    assert await asyncio.wait_for(asyncio.gather(one, two), 5) == [["Let me check."], ["Let me check."]]
    assert second.asked == []


async def test_a_failed_synthesis_leaves_the_phrase_for_a_later_call() -> None:
    c, broken = cache(), FakeTts(fail=True)
    broken.release.set()
    with pytest.raises(RuntimeError):
        await ready(c, "joe", ["Let me check."], broken)
    assert c.get("joe", "Let me check.") is None
    fine = FakeTts()
    fine.release.set()
    assert await ready(c, "joe", ["Let me check."], fine) == ["Let me check."]


async def test_a_full_cache_takes_no_more_phrases_and_counts_them() -> None:
    metrics = ServiceMetrics.create("media-edge")
    c = FillerCache(FillerMetrics.create(metrics), metrics, max_phrases=1)
    tts = FakeTts()
    tts.release.set()
    assert await ready(c, "joe", ["Let me check.", "One moment."], tts) == ["Let me check."]
    assert (
        'voicemesh_errors_total{kind="filler_cache_full",service="media-edge"} 1.0'
        in generate_latest(metrics.registry).decode()
    )


def test_fillers_are_counted_by_result() -> None:
    metrics = ServiceMetrics.create("media-edge")
    fillers = FillerMetrics.create(metrics)
    fillers.count(FillerResult.SKIPPED)
    text = generate_latest(metrics.registry).decode()
    assert 'voicemesh_fillers_total{result="skipped",service="media-edge"} 1.0' in text
    assert 'voicemesh_fillers_total{result="played",service="media-edge"} 0.0' in text


def test_the_agent_profile_turns_fillers_on_only_with_phrases() -> None:
    assert call_settings(reasoning_pb2.AgentProfile()).filler is None
    empty = reasoning_pb2.AgentProfile(filler=reasoning_pb2.Filler(after_ms=500))
    assert call_settings(empty).filler is None
    on = reasoning_pb2.AgentProfile(filler=reasoning_pb2.Filler(after_ms=500, phrases=["Hm.", "One moment."]))
    assert call_settings(on).filler == FillerConfig(500, ("Hm.", "One moment."))
    default_wait = reasoning_pb2.AgentProfile(filler=reasoning_pb2.Filler(phrases=["Hm."]))
    assert call_settings(default_wait).filler == FillerConfig(1000, ("Hm.",))
