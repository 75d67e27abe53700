"""The local mesh's data stores as `voicemesh up` configures them (real Valkey and NATS, no
services): a user per service with its own password, the `cli` reader in state.json, the
session stream kept as long as configured, and a home only its owner can read."""

from __future__ import annotations

import argparse
import stat
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from voicemesh.cli.calls_cmd import fetch_call_events
from voicemesh.cli.events_cmd import EventsError, fetch_events
from voicemesh.cli.localmesh import SERVICE_NAMES, LocalMesh, MeshError, MeshPorts
from voicemesh.cli.meshcmds import cmd_status
from voicemesh.cli.state import ServiceEndpoint, read_state, write_state
from voicemesh.mesh.access import CLI_USER, MESH_USER, SERVICE_USERS
from voicemesh.mesh.events import STREAM_NAME, JetStreamEvents, connect_nats
from voicemesh.mesh.metrics import ServiceMetrics
from voicemesh.mesh.registry import InstanceInfo, InstanceRegistry, connect_redis
from voicemesh.mesh.urls import with_credentials
from voicemesh.router.store import NoCapacity, SessionStore
from voicemesh.v1 import events_pb2

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
MAX_AGE_S = 120.0


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    home = tmp_path_factory.mktemp("home") / ".voicemesh"
    local = LocalMesh(
        home, REPO / "agents", MeshPorts.free(), extra_env={"VOICEMESH_EVENTS_MAX_AGE_S": str(MAX_AGE_S)}
    )
    local.start_servers()
    try:
        yield local
    finally:
        local.stop()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_home_its_logs_state_and_config_files_are_their_owners_alone(mesh: LocalMesh) -> None:
    write_state(mesh.home, mesh.state())
    for folder in (mesh.home, mesh.home / "logs", mesh.home / "nats"):
        assert mode(folder) == 0o700, folder
    for name in ("state.json", "valkey.conf", "nats.conf", "logs/valkey.log", "logs/nats.log"):
        assert mode(mesh.home / name) == 0o600, name
    for path in (mesh.home / "nats").rglob("*"):  # the JetStream store, written with umask 077
        assert mode(path) & 0o077 == 0, path


def test_each_service_gets_its_own_user_and_publishes_only(mesh: LocalMesh) -> None:
    assert set(SERVICE_NAMES) == set(SERVICE_USERS)  # a new service needs its grant in access.py
    seen = set()
    for name in SERVICE_USERS:
        env = mesh._env(name, 1, 2, f"{name}-local")
        assert env["VOICEMESH_REDIS_URL"] == mesh.redis_url_for(name)
        assert env["VOICEMESH_REDIS_URL"].startswith(f"redis://{name}:")
        assert env["VOICEMESH_NATS_URL"].startswith(f"nats://{name}:")
        assert env["VOICEMESH_EVENTS_CREATE_STREAM"] == "false"
        seen.add(mesh.passwords[name])
    assert len(seen) == len(SERVICE_USERS)  # no two share a password
    state = mesh.state()
    assert state.redis_url == mesh.redis_url_for(CLI_USER) == mesh.redis_url
    assert state.nats_url == mesh.nats_url_for(CLI_USER) == mesh.nats_url
    assert mesh.passwords[MESH_USER] not in (mesh.home / "state.json").read_text()


async def test_the_stream_keeps_events_as_long_as_configured(mesh: LocalMesh) -> None:
    nc = await connect_nats(mesh.nats_url)
    try:
        info = await nc.jetstream().stream_info(STREAM_NAME)
    finally:
        await nc.close()
    assert info.config.max_age == MAX_AGE_S


async def test_services_publish_and_the_cli_readers_read(mesh: LocalMesh) -> None:
    edge = JetStreamEvents("media-edge", "media-edge-local", ServiceMetrics.create("media-edge"))
    stt = JetStreamEvents("stt", "stt-local", ServiceMetrics.create("stt"))
    await edge.connect(mesh.nats_url_for("media-edge"), create_stream=False)
    await stt.connect(mesh.nats_url_for("stt"), create_stream=False)
    try:
        edge.emit("acc-1", call_started=events_pb2.CallStarted(agent="restaurant", transport="native"))
        stt.emit("acc-1", transcript=events_pb2.TranscriptPublished(text="a table for two", final=True))
        edge.emit("acc-1", call_ended=events_pb2.CallEnded(reason="caller_hangup"))
    finally:
        await edge.close()
        await stt.close()
    deadline = time.monotonic() + 5
    while len(events := await fetch_events(mesh.nats_url, "acc-1", idle_s=0.5)) < 3:
        assert time.monotonic() < deadline, events
    # two publishers: the stream holds them in the order they arrived
    assert sorted(e.WhichOneof("payload") for e in events) == ["call_ended", "call_started", "transcript"]
    calls = [e for e in await fetch_call_events(mesh.nats_url, idle_s=1.0) if e.session_id == "acc-1"]
    assert [e.WhichOneof("payload") for e in calls] == ["call_started", "call_ended"]


async def test_a_reader_with_a_wrong_password_is_refused_and_the_password_not_shown(mesh: LocalMesh) -> None:
    url = with_credentials(mesh.nats_url, CLI_USER, "wrong-password-123")
    with pytest.raises(EventsError, match=r"(?i)authorization") as err:
        await fetch_events(url, "acc-1")
    assert "wrong-password-123" not in str(err.value)
    assert mesh.passwords[CLI_USER] not in str(err.value)


async def test_the_router_places_sessions_with_its_user_on_what_the_services_registered(
    mesh: LocalMesh,
) -> None:
    clients = {name: await connect_redis(mesh.redis_url_for(name)) for name in SERVICE_USERS}
    try:
        for role in ("stt", "reasoning", "tts"):
            info = InstanceInfo(role, f"{role}-acc", f"127.0.0.1:{1000 + len(role)}", "local", 1)
            await InstanceRegistry(clients[role], ttl_s=30).register(info)
        store = SessionStore(clients["session-router"])
        await store.load()
        placed = await store.assign("acc-s1", "local", ["stt", "reasoning", "tts"], time.time())
        assert [r.instance_id for r in placed.reservations] == ["stt-acc", "reasoning-acc", "tts-acc"]
        with pytest.raises(NoCapacity):  # each has one slot, now taken
            await store.assign("acc-s2", "local", ["stt"], time.time())
        assert await store.release("acc-s1") == 3
        reader = await connect_redis(mesh.redis_url)
        try:
            listed = await InstanceRegistry(reader).instances()
        finally:
            await reader.aclose()
        assert {s.info.instance_id for s in listed} >= {"stt-acc", "reasoning-acc", "tts-acc"}
        for role in ("stt", "reasoning", "tts"):
            await InstanceRegistry(clients[role]).deregister(
                InstanceInfo(role, f"{role}-acc", "127.0.0.1:1", "local", 1)
            )
    finally:
        for client in clients.values():
            await client.aclose()


def test_status_shows_the_stores_without_their_passwords(
    mesh: LocalMesh, capsys: pytest.CaptureFixture[str]
) -> None:
    nothing_there = ServiceEndpoint(
        "stt", f"127.0.0.1:{mesh.ports.grpc['stt']}", "http://127.0.0.1:1/metrics"
    )
    write_state(mesh.home, replace(mesh.state(), services=[nothing_there]))
    assert read_state(mesh.home).nats_url == mesh.nats_url
    cmd_status(argparse.Namespace(home=mesh.home))  # no service runs: health is not the point
    out = capsys.readouterr()
    text = out.out + out.err
    assert not [p for p in mesh.passwords.values() if p in text]
    assert f"redis://cli:***@127.0.0.1:{mesh.ports.valkey}/0" in text
    assert f"nats://cli:***@127.0.0.1:{mesh.ports.nats}" in text
    assert not [p for p in mesh.passwords.values() if p in (mesh.home / "logs" / "nats.log").read_text()]


def test_a_bad_max_age_is_one_clear_error(tmp_path: Path) -> None:
    local = LocalMesh(
        tmp_path, REPO / "agents", MeshPorts.free(), extra_env={"VOICEMESH_EVENTS_MAX_AGE_S": "soon"}
    )
    with pytest.raises(MeshError, match="VOICEMESH_EVENTS_MAX_AGE_S: 'soon' is not a number"):
        local.start_servers()
    assert local.servers == []
