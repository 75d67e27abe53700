"""Valkey and NATS with the mesh's users (`access`), on real servers: no credential gets
in, and each user can do what its service does and nothing it does not."""

from __future__ import annotations

import asyncio
import hashlib
import stat
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError

from voicemesh.mesh import access
from voicemesh.mesh.events import STREAM_NAME, JetStreamEvents, connect_failure, connect_nats, ensure_stream
from voicemesh.mesh.localservers import LocalServer, nats_server, nats_url, redis_url, valkey_server
from voicemesh.mesh.metrics import ServiceMetrics
from voicemesh.mesh.registry import InstanceInfo, InstanceRegistry, Keys, connect_redis
from voicemesh.mesh.urls import nats_inbox_prefix, redact_url, with_credentials
from voicemesh.v1 import events_pb2

pytestmark = pytest.mark.integration

STT = InstanceInfo("stt", "stt-1", "127.0.0.1:1", "local", 1)


@dataclass(frozen=True)
class Mesh:
    home: Path
    valkey: LocalServer
    nats: LocalServer
    passwords: dict[str, str]

    def redis(self, user: str, password: str | None = None) -> str:
        return with_credentials(redis_url(self.valkey), user, password or self.passwords[user])

    def nats_as(self, user: str, password: str | None = None) -> str:
        return with_credentials(nats_url(self.nats), user, password or self.passwords[user])


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    home = tmp_path_factory.mktemp("access")
    passwords = access.generate_passwords()
    valkey = valkey_server(
        acl=access.valkey_acl(passwords), config_path=home / "valkey.conf", log_path=home / "valkey.log"
    )
    bus = nats_server(
        home / "js",
        authorization=access.nats_authorization(passwords),
        config_path=home / "nats.conf",
        log_path=home / "nats.log",
    )
    with valkey, bus:
        made = Mesh(home, valkey, bus, passwords)
        asyncio.run(make_stream(made.nats_as(access.MESH_USER), 60))
        yield made


async def make_stream(url: str, max_age_s: float) -> None:
    nc = await connect_nats(url)
    try:
        await ensure_stream(nc.jetstream(), max_age_s)
    finally:
        await nc.close()


async def redis_as(mesh: Mesh, user: str) -> aioredis.Redis:
    return await connect_redis(mesh.redis(user))


class Nats:
    """A NATS connection that keeps the errors the server sent (permission violations)."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.nc: Any = None

    async def open(self, url: str) -> Nats:
        async def keep(exc: Exception) -> None:
            self.errors.append(str(exc))

        self.nc = await nats.connect(
            url, error_cb=keep, inbox_prefix=nats_inbox_prefix(url), allow_reconnect=False
        )
        return self

    async def refused(self, what: str, timeout_s: float = 3.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(
            "permissions violation" in e.lower() and what.lower() in e.lower() for e in self.errors
        ):
            assert time.monotonic() < deadline, f"no permissions violation for {what}: {self.errors}"
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        await self.nc.close()


@pytest.fixture
async def opened() -> AsyncIterator[Callable[[str], Awaitable[Nats]]]:
    conns: list[Nats] = []

    async def open_(url: str) -> Nats:
        conn = await Nats().open(url)
        conns.append(conn)
        return conn

    yield open_
    for conn in conns:
        await conn.close()


# -- nobody gets in without a credential ------------------------------------------------------


async def test_valkey_without_credentials_is_refused(mesh: Mesh) -> None:
    client = aioredis.Redis(host=mesh.valkey.host, port=mesh.valkey.port)
    try:
        with pytest.raises((AuthenticationError, ResponseError), match=r"(?i)noauth|authenticat"):
            await client.set("vm:services", "x")
        with pytest.raises((AuthenticationError, ResponseError), match=r"(?i)noauth|authenticat"):
            await client.ping()
    finally:
        await client.aclose()


async def test_valkey_with_a_wrong_password_is_refused_without_showing_it(mesh: Mesh) -> None:
    url = mesh.redis("stt", "not-the-password")
    with pytest.raises(ConnectionError) as err:
        await connect_redis(url)
    assert "not-the-password" not in str(err.value)
    assert "redis://stt:***@" in str(err.value)


async def test_nats_without_credentials_is_refused(mesh: Mesh) -> None:
    with pytest.raises(nats.errors.Error, match=r"(?i)authorization"):
        await nats.connect(nats_url(mesh.nats), allow_reconnect=False, connect_timeout=2)
    with pytest.raises(ConnectionError, match=r"(?i)authorization") as err:
        await connect_nats(mesh.nats_as("stt", "not-the-password"), timeout_s=2)
    assert "not-the-password" not in str(err.value)


def test_a_refusal_the_client_only_saw_as_a_reset_still_points_at_the_credentials() -> None:
    # nats-server sends -ERR 'Authorization Violation' and closes: a client may read the
    # reset first, and then only the reset is left to tell (it was "Connection reset by peer")
    reset = ConnectionResetError(104, "Connection reset by peer")
    said = connect_failure(reset, [reset], "nats://stt:pw@127.0.0.1:4222")
    assert "authorization" in said and "user and password" in said and "pw" not in said
    refused = nats.errors.Error("nats: 'Authorization Violation'")
    assert connect_failure(reset, [refused, reset], "nats://stt:pw@h:1") == str(refused)
    assert connect_failure(reset, [reset], "nats://127.0.0.1:4222") == str(reset)  # no credential


def test_the_config_files_are_their_owners_alone_and_valkeys_holds_no_password(mesh: Mesh) -> None:
    for name in ("valkey.conf", "nats.conf", "valkey.log", "nats.log"):
        assert stat.S_IMODE((mesh.home / name).stat().st_mode) == 0o600, name
    text = (mesh.home / "valkey.conf").read_text()
    assert "user default off" in text
    for user, password in mesh.passwords.items():
        assert password not in text
        if user != access.MESH_USER:
            assert hashlib.sha256(password.encode()).hexdigest() in text


def test_valkey_and_nats_have_no_password_on_their_command_line(mesh: Mesh) -> None:
    for server in (mesh.valkey, mesh.nats):
        cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes().decode()
        assert not [p for p in mesh.passwords.values() if p in cmdline]


# -- Valkey: each service its own registry entry ------------------------------------------


async def test_a_service_registers_and_leaves_with_its_own_user(mesh: Mesh) -> None:
    stt = await redis_as(mesh, "stt")
    reader = await redis_as(mesh, access.CLI_USER)
    try:
        registry = InstanceRegistry(stt, ttl_s=5)
        await registry.register(STT)
        assert await registry.heartbeat(STT)
        await registry.set_draining(STT, True)
        listed = await InstanceRegistry(reader).instances("stt")
        assert [(s.info.instance_id, s.alive, s.draining) for s in listed] == [("stt-1", True, True)]
        await registry.deregister(STT)
        assert await InstanceRegistry(reader).instances("stt") == []
    finally:
        await stt.aclose()
        await reader.aclose()


async def test_a_service_cannot_touch_another_services_keys_or_any_other(mesh: Mesh) -> None:
    stt = await redis_as(mesh, "stt")
    keys = Keys()
    try:
        for key in (keys.instance("tts", "tts-1"), keys.alive("tts", "tts-1"), keys.session("s1"), "other"):
            with pytest.raises(NoPermissionError):
                await stt.set(key, "1")
            with pytest.raises(NoPermissionError):
                await stt.get(key)
        with pytest.raises(NoPermissionError):  # a registrant does not list the others
            await stt.smembers(keys.members("tts"))
    finally:
        await stt.aclose()


@pytest.mark.parametrize("user", [*access.SERVICE_USERS, access.CLI_USER])
async def test_no_user_may_flush_configure_list_or_script_beyond_its_rights(mesh: Mesh, user: str) -> None:
    client = await redis_as(mesh, user)
    try:
        for command in (
            ("FLUSHALL",),
            ("FLUSHDB",),
            ("CONFIG", "GET", "*"),
            ("CONFIG", "SET", "appendonly", "yes"),
            ("KEYS", "*"),
            ("SCAN", "0"),
            ("ACL", "LIST"),
            ("SHUTDOWN",),
            ("MONITOR",),
            ("SCRIPT", "FLUSH"),
            ("EVAL", "return 1", "0"),
            ("PUBLISH", "x", "y"),
        ):
            with pytest.raises(NoPermissionError):
                await client.execute_command(*command)
        if user != access.ROUTER_USER:
            with pytest.raises(NoPermissionError):
                await client.script_load("return 1")
    finally:
        await client.aclose()


async def test_the_cli_reader_reads_the_registry_and_writes_nothing(mesh: Mesh) -> None:
    reader = await redis_as(mesh, access.CLI_USER)
    try:
        assert isinstance(await reader.smembers(Keys().services), set)
        for key in (Keys().services, Keys().instance("stt", "x"), "other"):
            with pytest.raises(NoPermissionError):
                await reader.sadd(key, "x")
        with pytest.raises(NoPermissionError):
            await reader.delete(Keys().services)
    finally:
        await reader.aclose()


# -- NATS: services publish, the cli reads, the mesh user makes the stream -----------------


async def wait_stored(url: str, count: int, timeout_s: float = 5.0) -> int:
    nc = await connect_nats(url)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            stored = int((await nc.jetstream().stream_info(STREAM_NAME)).state.messages)
            if stored >= count or time.monotonic() > deadline:
                return stored
            await asyncio.sleep(0.02)
    finally:
        await nc.close()


async def test_a_service_publishes_events_and_the_cli_reads_them(mesh: Mesh) -> None:
    before = await wait_stored(mesh.nats_as(access.CLI_USER), 0)
    sink = JetStreamEvents("stt", "stt-1", ServiceMetrics.create("stt"))
    await sink.connect(mesh.nats_as("stt"), create_stream=False)
    try:
        sink.emit("acl-1", transcript=events_pb2.TranscriptPublished(text="hello", final=True))
        assert await wait_stored(mesh.nats_as(access.CLI_USER), before + 1) == before + 1
    finally:
        await sink.close()


async def test_a_publisher_cannot_read_events_or_others_replies(
    mesh: Mesh, opened: Callable[[str], Awaitable[Nats]]
) -> None:
    stt = await opened(mesh.nats_as("stt"))
    for subject in ("voicemesh.session.>", "_INBOX.>", "_INBOX.cli.>", ">"):
        await stt.nc.subscribe(subject)
        await stt.refused(f'"{subject}"')
    await stt.nc.publish(f"$JS.API.STREAM.INFO.{STREAM_NAME}", b"")
    await stt.refused(f"$JS.API.STREAM.INFO.{STREAM_NAME}")
    await stt.nc.publish(f"$JS.API.CONSUMER.CREATE.{STREAM_NAME}", b"{}")
    await stt.refused(f"$JS.API.CONSUMER.CREATE.{STREAM_NAME}")
    await stt.nc.publish(f"$JS.API.STREAM.DELETE.{STREAM_NAME}", b"")
    await stt.refused(f"$JS.API.STREAM.DELETE.{STREAM_NAME}")
    with pytest.raises((nats.errors.Error, TimeoutError)):  # no answer to a request it may not make
        await asyncio.wait_for(stt.nc.jetstream().stream_info(STREAM_NAME), 1.0)


async def test_the_cli_reader_cannot_publish_or_change_the_stream(
    mesh: Mesh, opened: Callable[[str], Awaitable[Nats]]
) -> None:
    cli = await opened(mesh.nats_as(access.CLI_USER))
    for subject in (
        "voicemesh.session.x.transcript",
        f"$JS.API.STREAM.DELETE.{STREAM_NAME}",
        f"$JS.API.STREAM.PURGE.{STREAM_NAME}",
        f"$JS.API.STREAM.UPDATE.{STREAM_NAME}",
        f"$JS.API.STREAM.MSG.DELETE.{STREAM_NAME}",
    ):
        await cli.nc.publish(subject, b"{}")
        await cli.refused(subject)
    await cli.nc.subscribe("_INBOX.stt.>")
    await cli.refused('"_INBOX.stt.>"')


async def test_the_stream_keeps_events_only_as_long_as_configured(mesh: Mesh) -> None:
    admin = await connect_nats(mesh.nats_as(access.MESH_USER))
    sink = JetStreamEvents("tts", "tts-1", ServiceMetrics.create("tts"))
    try:
        await ensure_stream(admin.jetstream(), 1.0)
        info = await admin.jetstream().stream_info(STREAM_NAME)
        assert info.config.max_age == 1.0
        await sink.connect(mesh.nats_as("tts"), create_stream=False)
        sink.emit("acl-2", transcript=events_pb2.TranscriptPublished(text="my secret", final=True))
        await sink.close()
        deadline = time.monotonic() + 10
        while (await admin.jetstream().stream_info(STREAM_NAME)).state.messages:
            assert time.monotonic() < deadline, "an event outlived the stream's max age"
            await asyncio.sleep(0.1)
    finally:
        await ensure_stream(admin.jetstream(), 60)
        await admin.close()


def test_urls_are_shown_without_their_password() -> None:
    url = with_credentials("nats://127.0.0.1:4222", "stt", "s3cret/+")
    assert url == "nats://stt:s3cret%2F%2B@127.0.0.1:4222"
    assert redact_url(url) == "nats://stt:***@127.0.0.1:4222"
    assert redact_url("redis://h:1/0") == "redis://h:1/0"
    assert redact_url("redis://u:pw@[::1]:6379/0") == "redis://u:***@[::1]:6379/0"
    assert nats_inbox_prefix(url) == "_INBOX.stt"
    assert nats_inbox_prefix("nats://127.0.0.1:4222") == "_INBOX"


def test_every_service_has_a_user_and_unknown_users_are_an_error() -> None:
    assert set(access.SERVICE_USERS) == {"session-router", "stt", "reasoning", "tts", "media-edge"}
    with pytest.raises(ValueError, match="no such mesh user"):
        access.grant_for("intruder")
