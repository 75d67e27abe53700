"""The process runner against real Valkey and NATS: start-up order, health, registry,
graceful drain, and one clear line when a dependency is missing."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
import textwrap
from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis

from voicemesh.mesh.grpcutil import check_health as health_of
from voicemesh.mesh.localservers import free_port
from voicemesh.mesh.mtls import MeshTls
from voicemesh.mesh.registry import InstanceRegistry
from voicemesh.mesh.service import MeshContext, MeshService, StartupError, serve
from voicemesh.mesh.settings import MeshSettings

pytestmark = pytest.mark.integration


class SlowStartService(MeshService):
    name = "dummy"

    def __init__(self, ctx: MeshContext) -> None:
        self.ctx = ctx
        self.loaded = asyncio.Event()
        self.release = asyncio.Event()
        self.live = 0

    async def start(self) -> None:
        await self.release.wait()  # models "load" until the test lets go
        self.loaded.set()

    def add_to_server(self, server: grpc.aio.Server) -> None:
        return None

    def active_sessions(self) -> int:
        return self.live


@pytest.fixture
def tls_dir(mesh_tls_dirs: dict[str, Path]) -> str:
    return str(mesh_tls_dirs["dummy"])


@pytest.fixture
def operator(mesh_tls_dirs: dict[str, Path]) -> MeshTls:
    return MeshTls.load(mesh_tls_dirs["cli"], dt.datetime.now(dt.UTC))


def settings(redis_url: str, nats_url: str, tls_dir: str, **kw: object) -> MeshSettings:
    return MeshSettings(
        instance_id="dummy-1",
        grpc_port=free_port(),
        redis_url=redis_url,
        nats_url=nats_url,
        drain_timeout_s=5.0,
        mesh_tls_dir=tls_dir,
        **kw,  # type: ignore[arg-type]
    )


async def test_serving_only_after_start_then_registered_then_drained(
    redis_url: str, nats_url: str, tls_dir: str, operator: MeshTls
) -> None:
    cfg = settings(redis_url, nats_url, tls_dir)
    stop = asyncio.Event()

    async def check_health(address: str) -> str:
        return await health_of(address, tls=operator, peer="dummy")

    services: list[SlowStartService] = []

    def factory(ctx: MeshContext) -> MeshService:
        services.append(SlowStartService(ctx))
        return services[0]

    runner = asyncio.create_task(serve("dummy", cfg, factory, stop))
    address = f"127.0.0.1:{cfg.grpc_port}"
    async with asyncio.timeout(10):
        while await check_health(address) != "NOT_SERVING":
            await asyncio.sleep(0.02)
        svc = services[0]
        svc.release.set()
        while await check_health(address) != "SERVING":
            await asyncio.sleep(0.02)
    assert svc.loaded.is_set()

    client = aioredis.from_url(redis_url)
    registry = InstanceRegistry(client)
    [state] = [s for s in await registry.instances("dummy") if s.info.instance_id == "dummy-1"]
    assert state.alive and not state.draining and state.info.address == address

    svc.live = 1  # a call is still going: stopping must wait for it
    stop.set()
    async with asyncio.timeout(5):
        while await check_health(address) == "SERVING":
            await asyncio.sleep(0.02)
    assert not runner.done()
    svc.live = 0
    await asyncio.wait_for(runner, 10)
    assert [s for s in await registry.instances("dummy") if s.info.instance_id == "dummy-1"] == []
    await client.aclose()


async def test_unreachable_redis_is_one_clear_startup_error(nats_url: str, tls_dir: str) -> None:
    cfg = settings(f"redis://127.0.0.1:{free_port()}/0", nats_url, tls_dir)
    with pytest.raises(StartupError, match=r"cannot reach Redis/Valkey at redis://127\.0\.0\.1"):
        await serve("dummy", cfg, SlowStartService, asyncio.Event())


async def test_unreachable_nats_is_one_clear_startup_error(redis_url: str, tls_dir: str) -> None:
    cfg = settings(redis_url, f"nats://127.0.0.1:{free_port()}", tls_dir)
    with pytest.raises(StartupError, match=r"cannot reach NATS at nats://127\.0\.0\.1"):
        await serve("dummy", cfg, SlowStartService, asyncio.Event())


def test_a_service_process_prints_one_line_and_no_traceback(nats_url: str, tls_dir: str) -> None:
    port = free_port()
    code = textwrap.dedent(
        """
        from voicemesh.mesh.service import run_main
        from voicemesh.mesh.settings import MeshSettings
        run_main("dummy", MeshSettings, lambda s: (lambda ctx: None))
        """
    )
    env = {
        "VOICEMESH_REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "VOICEMESH_NATS_URL": nats_url,
        "VOICEMESH_GRPC_PORT": str(free_port()),
        "VOICEMESH_MESH_TLS_DIR": tls_dir,
        "PATH": "/usr/bin:/bin",
    }
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(errors) == 1
    assert errors[0].startswith(
        f"voicemesh-dummy: error: cannot reach Redis/Valkey at redis://127.0.0.1:{port}/0"
    )
    assert "Traceback" not in proc.stderr


def test_a_bad_setting_names_the_variable() -> None:
    code = "from voicemesh.mesh.service import run_main\nfrom voicemesh.mesh.settings import MeshSettings\nrun_main('dummy', MeshSettings, lambda s: None)"
    env = {"VOICEMESH_GRPC_PORT": "eighty", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "VOICEMESH_GRPC_PORT" in proc.stderr and "Traceback" not in proc.stderr
