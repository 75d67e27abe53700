"""`python -m voicemesh.mesh.probe`, run as the container runs it: a real process against a
real gRPC health service, and a real child process that drains on SIGTERM."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from voicemesh.mesh.grpcutil import check_health
from voicemesh.mesh.localservers import free_port
from voicemesh.mesh.mtls import MeshTls
from voicemesh.mesh.probe import main

PROBE = [sys.executable, "-m", "voicemesh.mesh.probe"]
ROLE = "voicemesh.v1.SpeechToText"


@dataclass
class Done:
    code: int
    stderr: str


async def probe(*args: str, env: dict[str, str] | None = None) -> Done:
    """The probe as a child process, awaited so this event loop keeps serving meanwhile."""
    proc = await asyncio.create_subprocess_exec(
        *PROBE, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    _, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode is not None
    return Done(proc.returncode, err.decode())


@pytest.fixture
async def health_server() -> AsyncIterator[tuple[str, HealthServicer]]:
    server = grpc.aio.server()
    servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        await server.stop(grace=None)


@pytest.mark.integration
async def test_health_exits_0_only_while_serving(health_server: tuple[str, HealthServicer]) -> None:
    address, servicer = health_server
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await servicer.set(ROLE, health_pb2.HealthCheckResponse.NOT_SERVING)

    ok = await probe("health", address)
    assert (ok.code, ok.stderr) == (0, "")

    role = await probe("health", address, "--service", ROLE)
    assert role.code == 1
    assert role.stderr.strip() == f"voicemesh-probe: service '{ROLE}' at {address} is NOT_SERVING"

    await servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)  # what a draining service does
    draining = await probe("health", address)
    assert draining.code == 1
    assert draining.stderr.strip() == f"voicemesh-probe: {address} is NOT_SERVING"


@pytest.mark.integration
async def test_health_of_an_unknown_service_name_fails(health_server: tuple[str, HealthServicer]) -> None:
    address, servicer = health_server
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    done = await probe("health", address, "--service", "voicemesh.v1.NoSuchRole")
    assert done.code == 1
    assert "is UNKNOWN_SERVICE" in done.stderr


@pytest.mark.integration
async def test_health_with_nothing_listening_fails_with_one_line() -> None:
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    done = await probe("health", address, "--timeout", "2")
    assert done.code == 1
    assert done.stderr.splitlines() == [
        f"voicemesh-probe: {address} did not answer a gRPC health check within 2 s"
    ]
    assert time.monotonic() - started < 20  # refused at once, not hung past its timeout


@pytest.mark.integration
async def test_health_of_an_mtls_port_without_credentials_says_it_may_want_them(
    mesh_tls_dirs: dict[str, Path],
) -> None:
    server = grpc.aio.server()
    servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    tls = MeshTls.load(mesh_tls_dirs["dummy"], dt.datetime.now(dt.UTC))
    port = server.add_secure_port("127.0.0.1:0", tls.server_credentials())
    await server.start()
    try:
        await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEMESH_MESH_TLS")}
        done = await probe("health", f"127.0.0.1:{port}", env=env)
        assert done.code == 1
        assert "an mTLS port? VOICEMESH_MESH_TLS_DIR names the credentials" in done.stderr
        as_itself = await probe(
            "health", f"127.0.0.1:{port}", env={**env, "VOICEMESH_MESH_TLS_DIR": str(mesh_tls_dirs["dummy"])}
        )
        assert (as_itself.code, as_itself.stderr) == (0, "")
    finally:
        await server.stop(None)


@pytest.mark.unit
@pytest.mark.parametrize(
    "argv",
    [
        ["health", "localhost"],
        ["health", "host:http"],
        ["health", "h:70000"],
        ["health", "h:1", "--timeout", "0"],
    ],
)
def test_bad_arguments_are_a_usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


# A service stand-in: says it is ready, and on SIGTERM "drains" for a moment, then exits 0.
# A real service process, run by the shared runner (`run_main`): its live session count is
# whatever number the file named by SESSIONS_FILE holds, so the test ends "calls" at will.
SERVICE_CHILD = textwrap.dedent(
    """
    import os
    from pathlib import Path

    import grpc

    from voicemesh.mesh.service import MeshContext, MeshService, run_main
    from voicemesh.mesh.settings import MeshSettings

    class FileSessions(MeshService):
        name = "dummy"

        def __init__(self, ctx: MeshContext) -> None:
            self.path = Path(os.environ["SESSIONS_FILE"])

        async def start(self) -> None:
            return None

        def add_to_server(self, server: grpc.aio.Server) -> None:
            return None

        def active_sessions(self) -> int:
            return int(self.path.read_text() or 0)

    run_main("dummy", MeshSettings, lambda settings: FileSessions)
    """
)


@dataclass
class ServiceChild:
    proc: subprocess.Popen[str]
    address: str
    sessions: Path
    env: dict[str, str]  # the service's environment, which its container's probes share
    tls: MeshTls  # the operator's credentials

    async def health(self, service: str = "") -> str:
        return await check_health(self.address, service, tls=self.tls, peer="dummy")


@pytest.fixture
async def service_child(
    redis_url: str, nats_url: str, tmp_path: Path, mesh_tls_dirs: dict[str, Path]
) -> AsyncIterator[ServiceChild]:
    sessions = tmp_path / "sessions"
    sessions.write_text("1")
    grpc_port, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        "SESSIONS_FILE": str(sessions),
        "VOICEMESH_INSTANCE_ID": "probe-drain-1",
        "VOICEMESH_GRPC_PORT": str(grpc_port),
        "VOICEMESH_METRICS_PORT": str(metrics_port),
        "VOICEMESH_REDIS_URL": redis_url,
        "VOICEMESH_NATS_URL": nats_url,
        "VOICEMESH_DRAIN_TIMEOUT_S": "30",
        "VOICEMESH_MESH_TLS_DIR": str(mesh_tls_dirs["dummy"]),
    }
    proc = await asyncio.to_thread(
        subprocess.Popen, [sys.executable, "-c", SERVICE_CHILD], env=env, stderr=subprocess.DEVNULL, text=True
    )
    cli = MeshTls.load(mesh_tls_dirs["cli"], dt.datetime.now(dt.UTC))
    child = ServiceChild(proc, f"127.0.0.1:{grpc_port}", sessions, env, cli)
    try:
        async with asyncio.timeout(30):
            while await child.health() != "SERVING":
                await asyncio.sleep(0.05)
        yield child
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.integration
async def test_drain_waits_for_live_sessions_and_leaves_the_process_running(
    service_child: ServiceChild,
) -> None:
    child = service_child
    hook = asyncio.create_task(
        probe(
            "drain",
            "--pid",
            str(child.proc.pid),
            "--timeout",
            "30",
            "--address",
            child.address,
            env=child.env,
        )
    )
    async with asyncio.timeout(10):
        while await child.health() != "NOT_SERVING":  # readiness: no new calls
            await asyncio.sleep(0.05)
    assert await child.health("voicemesh.liveness") == "SERVING"  # not restarted
    await asyncio.sleep(0.5)
    assert not hook.done()  # one call is still live: the hook holds SIGTERM back
    child.sessions.write_text("0")
    done = await asyncio.wait_for(hook, 10)
    assert (done.code, done.stderr) == (0, "")
    assert child.proc.poll() is None  # the hook never kills the service (nor itself with it)
    child.proc.terminate()  # what Kubernetes does next: nothing is left to wait for
    assert await asyncio.to_thread(child.proc.wait, 10) == 0


@pytest.mark.integration
async def test_drain_gives_up_after_its_timeout_and_says_so(service_child: ServiceChild) -> None:
    child = service_child
    started = time.monotonic()
    done = await probe(
        "drain", "--pid", str(child.proc.pid), "--timeout", "0.5", "--address", child.address, env=child.env
    )
    assert time.monotonic() - started >= 0.5
    assert done.code == 0  # the hook never fails the pod; SIGTERM and the grace period follow
    assert (
        done.stderr.strip()
        == f"voicemesh-probe: 0.5 s passed and pid {child.proc.pid} still has live sessions"
    )
    assert child.proc.poll() is None


@pytest.mark.integration
def test_drain_of_a_missing_pid_is_a_clear_error() -> None:
    missing = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1  # no process can have it
    done = subprocess.run(
        [*PROBE, "drain", "--pid", str(missing)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert done.stderr.strip() == f"voicemesh-probe: no process with pid {missing} to drain"
