"""The runner's instance gauges on a real /metrics endpoint, against real Valkey and NATS:
capacity, region and zone from the settings, and `voicemesh_draining` 1 from the moment
the instance is told to stop, while it still waits for its live sessions."""

from __future__ import annotations

import asyncio
import datetime as dt
import urllib.request
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from voicemesh.mesh.grpcutil import check_health
from voicemesh.mesh.localservers import free_port
from voicemesh.mesh.mtls import MeshTls
from voicemesh.mesh.service import MeshContext, MeshService, serve
from voicemesh.mesh.settings import MeshSettings

pytestmark = pytest.mark.integration


class OneCallService(MeshService):
    name = "dummy"

    def __init__(self, ctx: MeshContext) -> None:
        self.ctx = ctx
        self.live = 0

    async def start(self) -> None:
        return None

    def add_to_server(self, server: grpc.aio.Server) -> None:
        return None

    def active_sessions(self) -> int:
        return self.live


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_capacity_region_zone_and_draining_on_the_metrics_endpoint(
    redis_url: str, nats_url: str, mesh_tls_dirs: dict[str, Path]
) -> None:
    cfg = MeshSettings(
        instance_id="dummy-m1",
        region="eu-west",
        zone="eu-west-1c",
        capacity=12,
        grpc_port=free_port(),
        metrics_port=free_port(),
        redis_url=redis_url,
        nats_url=nats_url,
        drain_timeout_s=10.0,
        mesh_tls_dir=str(mesh_tls_dirs["dummy"]),
    )
    operator = MeshTls.load(mesh_tls_dirs["cli"], dt.datetime.now(dt.UTC))
    services: list[OneCallService] = []

    def factory(ctx: MeshContext) -> MeshService:
        services.append(OneCallService(ctx))
        return services[0]

    stop = asyncio.Event()
    runner = asyncio.create_task(serve("dummy", cfg, factory, stop))
    address = f"127.0.0.1:{cfg.grpc_port}"
    async with asyncio.timeout(10):
        while await check_health(address, tls=operator, peer="dummy") != "SERVING":
            await asyncio.sleep(0.02)

    svc = (("service", "dummy"),)
    samples = await asyncio.to_thread(scrape, cfg.metrics_port)
    assert samples[("voicemesh_capacity", svc)] == 12
    assert samples[("voicemesh_draining", svc)] == 0
    info = ("voicemesh_instance_info", (("region", "eu-west"), ("service", "dummy"), ("zone", "eu-west-1c")))
    assert samples[info] == 1

    services[0].live = 1  # a call is still going: the instance drains, and says so
    stop.set()
    async with asyncio.timeout(5):
        while (await asyncio.to_thread(scrape, cfg.metrics_port))[("voicemesh_draining", svc)] != 1:
            await asyncio.sleep(0.02)
    assert not runner.done()
    services[0].live = 0
    await asyncio.wait_for(runner, 10)
