"""The chart's Valkey and NATS users on real servers: valkey-server started as the chart
starts it (`--aclfile` with the file the chart's init container writes), nats-server with
the chart's nats.conf and each user's password in its environment, the session stream made
by the chart's `stream` container script as the `mesh` user. Then libs/mesh's own checks of
the local mesh's users (libs/mesh/tests/test_access.py) run against them unchanged: each
service can do what it needs and is refused what it must not."""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from voicemesh.mesh import access
from voicemesh.mesh.events import STREAM_NAME, connect_nats
from voicemesh.mesh.localservers import (
    LocalServer,
    free_port,
    nats_binary,
    nats_url,
    valkey_binary,
    write_private,
)

from .conftest import REPO_ROOT, TOKEN_SET, Renderer
from .meshusers import (
    KEEP_STREAM,
    chart_passwords,
    nats_config,
    nats_password_env,
    valkey_acl_file,
    valkey_pod,
)

pytestmark = pytest.mark.integration


def _load_access_checks() -> object:
    path = REPO_ROOT / "libs" / "mesh" / "tests" / "test_access.py"
    spec = importlib.util.spec_from_file_location("mesh_access_checks", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_checks = _load_access_checks()
Mesh = _checks.Mesh  # type: ignore[attr-defined]
opened = _checks.opened  # type: ignore[attr-defined]  (a fixture those checks use)
# Every check of test_access.py that runs against its `mesh` fixture, here against ours.
for _name, _check in vars(_checks).items():
    if _name.startswith("test_") and "mesh" in inspect.signature(_check).parameters:
        globals()[_name] = _check

MAX_AGE_S = 60.0


def keep_stream_once(url: str, max_age_s: float) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"VOICEMESH_NATS_URL": url, "VOICEMESH_EVENTS_MAX_AGE_S": str(max_age_s)}
    return subprocess.run(
        [sys.executable, str(KEEP_STREAM), "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def mesh(renderer: Renderer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    render = renderer.template(sets=(*TOKEN_SET, f"events.maxAgeSeconds={MAX_AGE_S:g}")).ok()
    passwords = chart_passwords(render)
    home = tmp_path_factory.mktemp("chart-stores")
    acl = valkey_acl_file(render, home / "acl-work")
    aclfile = write_private(home / "valkey.conf", "".join(f"{line}\n" for line in acl))
    port = free_port()
    valkey = LocalServer(
        "valkey",
        [
            str(valkey_binary()),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
            "--aclfile",
            str(aclfile),
        ],
        "127.0.0.1",
        port,
        home / "valkey.log",
    )
    nport, mport = free_port(), free_port()
    conf = (
        nats_config(render)
        .replace("port: 4222", f"port: {nport}")
        .replace("http_port: 8222", f"http_port: {mport}")
        .replace("store_dir: /data", f"store_dir: {home / 'js'}")
    )
    write_private(home / "nats.conf", conf)
    env = os.environ | {"POD_NAME": "nats-0"} | nats_password_env(render)
    bus = LocalServer(
        "nats",
        [str(nats_binary()), "-c", str(home / "nats.conf"), "-a", "127.0.0.1"],
        "127.0.0.1",
        nport,
        home / "nats.log",
        env=env,
    )
    with valkey, bus:
        made = Mesh(home, valkey, bus, passwords)
        done = keep_stream_once(made.nats_as(access.MESH_USER), MAX_AGE_S)
        assert done.returncode == 0, done.stderr
        yield made


def test_the_charts_stream_keeper_made_the_stream_with_the_charts_max_age(mesh: object) -> None:
    async def info() -> object:
        nc = await connect_nats(mesh.nats_as(access.CLI_USER))  # type: ignore[attr-defined]
        try:
            return await nc.jetstream().stream_info(STREAM_NAME)
        finally:
            await nc.close()

    assert asyncio.run(info()).config.max_age == MAX_AGE_S  # type: ignore[attr-defined]


@pytest.mark.parametrize("user", ["stt", "cli"])
def test_no_user_but_mesh_can_make_the_stream(mesh: object, user: str) -> None:
    done = keep_stream_once(mesh.nats_as(user), 30.0)  # type: ignore[attr-defined]
    assert done.returncode == 1
    assert mesh.passwords[user] not in done.stderr  # type: ignore[attr-defined]


def test_nats_monitoring_answers_the_probes_without_a_user(mesh: object) -> None:
    import urllib.request

    conf = (mesh.home / "nats.conf").read_text()  # type: ignore[attr-defined]
    port = int(next(x for x in conf.splitlines() if x.startswith("http_port:")).split(":")[1])
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz?js-enabled-only=true", timeout=5) as r:
        assert json.loads(r.read())["status"] == "ok"


def test_the_servers_got_the_charts_files(mesh: object) -> None:
    assert nats_url(mesh.nats).startswith("nats://127.0.0.1:")  # type: ignore[attr-defined]
    assert "authorization" in Path(mesh.home / "nats.conf").read_text()  # type: ignore[attr-defined]


def test_valkeys_readiness_probe_passes_with_the_cli_user(renderer: Renderer, mesh: object) -> None:
    """The probe's own command, run against the chart's Valkey with the container's env
    (valkey-cli, or redis-cli standing in: same flags, same REDISCLI_AUTH)."""
    cli = shutil.which("valkey-cli") or shutil.which("redis-cli")
    if cli is None:
        pytest.skip("no valkey-cli or redis-cli to run the probe with")
    render = renderer.template(sets=(*TOKEN_SET, f"events.maxAgeSeconds={MAX_AGE_S:g}")).ok()
    (valkey,) = valkey_pod(render)["containers"]
    sh, dash_c, script = valkey["readinessProbe"]["exec"]["command"]
    assert (sh, dash_c) == ("sh", "-c")
    script = script.replace("valkey-cli", cli).replace("-p 6379", f"-p {mesh.valkey.port}")  # type: ignore[attr-defined]
    password = mesh.passwords[access.CLI_USER]  # type: ignore[attr-defined]
    env = {k: v for k, v in os.environ.items() if not k.endswith("CLI_AUTH")}
    auth = {e["name"]: password for e in valkey["env"] if e["name"].endswith("CLI_AUTH")}
    assert subprocess.run([sh, dash_c, script], env=env | auth, timeout=10, check=False).returncode == 0
    wrong = dict.fromkeys(auth, "not-the-password")
    assert subprocess.run([sh, dash_c, script], env=env | wrong, timeout=10, check=False).returncode != 0


async def test_an_operator_drains_a_pod_with_its_services_user_not_the_reader(mesh: object) -> None:
    """`voicemesh cluster drain` writes the instance's entry: the docs send the operator to
    the service's own user, since the `cli` reader may not."""
    from redis.exceptions import NoPermissionError

    from voicemesh.mesh.registry import InstanceInfo, InstanceRegistry, connect_redis

    info = InstanceInfo("stt", "stt-drain", "127.0.0.1:1", "local", 1)
    stt = await connect_redis(mesh.redis("stt"))  # type: ignore[attr-defined]
    cli = await connect_redis(mesh.redis(access.CLI_USER))  # type: ignore[attr-defined]
    try:
        await InstanceRegistry(stt, ttl_s=30).register(info)
        with pytest.raises(NoPermissionError):
            await InstanceRegistry(cli).mark_draining("stt", "stt-drain")
        assert await InstanceRegistry(stt).mark_draining("stt", "stt-drain")
        (state,) = [
            s for s in await InstanceRegistry(cli).instances("stt") if s.info.instance_id == "stt-drain"
        ]
        assert state.draining
        await InstanceRegistry(stt).deregister(info)
    finally:
        await stt.aclose()
        await cli.aclose()
