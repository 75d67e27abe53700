"""ServiceMetrics: the names and label sets the dashboards, alerts and autoscalers read, and
the gauges that must come back down however the work they count ends."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from voicemesh.mesh.metrics import RegistryState, RouterResult, ServiceMetrics

pytestmark = pytest.mark.unit

# The deploy contract (issue 9): family name -> (type, labels besides `service`).
CONTRACT = {
    "voicemesh_capacity": ("gauge", set()),
    "voicemesh_instance_info": ("gauge", {"region", "zone"}),
    "voicemesh_draining": ("gauge", set()),
    "voicemesh_queue_depth": ("gauge", {"queue"}),
    "voicemesh_requests_in_flight": ("gauge", set()),
    "voicemesh_calls_started": ("counter", {"transport"}),
    "voicemesh_barge_ins": ("counter", {"transport"}),
    "voicemesh_media_jitter_seconds": ("histogram", {"transport"}),
    "voicemesh_media_frames_lost": ("counter", {"transport"}),
    "voicemesh_media_frames_concealed": ("counter", {"transport"}),
    "voicemesh_media_rtt_seconds": ("histogram", {"transport"}),
    "voicemesh_router_decisions": ("counter", {"role", "result"}),
    "voicemesh_registry_instances": ("gauge", {"role", "region", "state"}),
}


def value(m: ServiceMetrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, {"service": m.service, **labels})


def exposed(m: ServiceMetrics) -> dict[str, tuple[str, set[str]]]:
    """What a scrape shows: family -> (type, label names of its samples besides service/le)."""
    out: dict[str, tuple[str, set[str]]] = {}
    for family in text_string_to_metric_families(generate_latest(m.registry).decode()):
        labels: set[str] = set()
        for sample in family.samples:
            labels |= set(sample.labels) - {"service", "le"}
        out[family.name] = (family.type, labels)
    return out


def test_every_new_family_has_the_contracts_name_type_and_labels_once_used() -> None:
    m = ServiceMetrics.create("media-edge")
    m.describe_instance("eu-west", "eu-west-1a", 40)
    m.watch_queue("decode", lambda: 0)
    with m.in_flight():
        pass
    m.prepare_transport("native")
    m.router_decision("stt", RouterResult.LOCAL)
    m.set_registry_instances({("stt", "eu-west", RegistryState.SERVING): 1})
    shown = exposed(m)
    for name, want in CONTRACT.items():
        assert shown.get(name) == want, name
    text = generate_latest(m.registry).decode()
    assert "voicemesh_calls_started_total{" in text and "voicemesh_router_decisions_total{" in text


def test_the_instance_says_where_it_runs_its_capacity_and_when_it_drains() -> None:
    m = ServiceMetrics.create("stt")
    m.describe_instance("eu-west", "eu-west-1b", 8)
    assert value(m, "voicemesh_instance_info", region="eu-west", zone="eu-west-1b") == 1
    assert value(m, "voicemesh_capacity") == 8
    assert value(m, "voicemesh_draining") == 0
    m.set_draining()
    assert value(m, "voicemesh_draining") == 1


async def test_a_request_in_flight_is_let_go_however_it_ends() -> None:
    m = ServiceMetrics.create("reasoning")
    with m.in_flight():
        assert value(m, "voicemesh_requests_in_flight") == 1
    with pytest.raises(RuntimeError), m.in_flight():
        raise RuntimeError("backend broke")

    entered = asyncio.Event()

    async def generating() -> None:
        with m.in_flight():
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(generating())
    await entered.wait()
    assert value(m, "voicemesh_requests_in_flight") == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert value(m, "voicemesh_requests_in_flight") == 0


def test_queue_depth_is_read_at_scrape_time_or_kept_by_deltas() -> None:
    m = ServiceMetrics.create("stt")
    pending = [3]
    m.watch_queue("decode", lambda: pending[0])
    assert value(m, "voicemesh_queue_depth", queue="decode") == 3
    pending[0] = 0
    assert value(m, "voicemesh_queue_depth", queue="decode") == 0
    m.queue_changed("synthesis", 2)
    m.queue_changed("synthesis", -1)
    assert value(m, "voicemesh_queue_depth", queue="synthesis") == 1


def test_a_transport_shows_zeros_before_its_first_call() -> None:
    m = ServiceMetrics.create("media-edge")
    assert value(m, "voicemesh_calls_started_total", transport="twilio") is None
    m.prepare_transport("twilio")
    for name in (
        "voicemesh_calls_started_total",
        "voicemesh_barge_ins_total",
        "voicemesh_media_frames_lost_total",
        "voicemesh_media_frames_concealed_total",
        "voicemesh_media_jitter_seconds_count",
        "voicemesh_media_rtt_seconds_count",
    ):
        assert value(m, name, transport="twilio") == 0, name
    m.call_started("twilio")
    m.frames_lost("twilio", 3)
    m.frames_lost("twilio", 0)
    m.frames_concealed("twilio", 2)
    m.observe_jitter("twilio", 0.004)
    m.observe_rtt("twilio", 0.120)
    assert value(m, "voicemesh_calls_started_total", transport="twilio") == 1
    assert value(m, "voicemesh_media_frames_lost_total", transport="twilio") == 3
    assert value(m, "voicemesh_media_frames_concealed_total", transport="twilio") == 2
    assert value(m, "voicemesh_media_jitter_seconds_bucket", transport="twilio", le="0.005") == 1
    assert value(m, "voicemesh_media_jitter_seconds_bucket", transport="twilio", le="0.002") == 0
    assert value(m, "voicemesh_media_rtt_seconds_bucket", transport="twilio", le="0.15") == 1
    assert value(m, "voicemesh_media_rtt_seconds_bucket", transport="twilio", le="0.1") == 0


def test_the_registry_census_drops_label_sets_of_instances_that_vanished() -> None:
    m = ServiceMetrics.create("session-router")
    m.set_registry_instances(
        {
            ("stt", "eu", RegistryState.SERVING): 2,
            ("stt", "eu", RegistryState.DEAD): 1,
            ("tts", "us", RegistryState.SERVING): 1,
        }
    )
    assert value(m, "voicemesh_registry_instances", role="stt", region="eu", state="dead") == 1
    m.set_registry_instances({("stt", "eu", RegistryState.SERVING): 3})
    assert value(m, "voicemesh_registry_instances", role="stt", region="eu", state="serving") == 3
    assert value(m, "voicemesh_registry_instances", role="stt", region="eu", state="dead") is None
    assert value(m, "voicemesh_registry_instances", role="tts", region="us", state="serving") is None


def test_router_decisions_count_by_role_and_result() -> None:
    m = ServiceMetrics.create("session-router")
    m.router_decision("stt", RouterResult.LOCAL)
    m.router_decision("stt", RouterResult.SPILLED)
    m.router_decision("stt", RouterResult.SPILLED)
    assert value(m, "voicemesh_router_decisions_total", role="stt", result="spilled") == 2
    assert value(m, "voicemesh_router_decisions_total", role="stt", result="local") == 1
