"""mTLS on the internal plane, through the shared runner against real Valkey and NATS: only a
certified caller connects, only the identity a service lists may call it, a client refuses
a server with another service's certificate, and credentials that cannot work stop the
start-up with one line naming the file and the fault."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from voicemesh.mesh.access import GRPC_CALLERS
from voicemesh.mesh.certs import CA_FILE, CERT_FILE, KEY_FILE, server_name, write_mesh_tls
from voicemesh.mesh.grpcutil import CHANNEL_OPTIONS, channel, check_health
from voicemesh.mesh.localservers import free_port
from voicemesh.mesh.mtls import MeshTls, allowed
from voicemesh.mesh.service import MeshContext, MeshService, StartupError, serve
from voicemesh.mesh.settings import MeshSettings
from voicemesh.v1 import tts_pb2, tts_pb2_grpc

NOW = dt.datetime.now(dt.UTC)


class EchoTts(tts_pb2_grpc.TextToSpeechServicer):
    """Answers one mark per stream: enough to tell a served call from a refused one."""

    async def Synthesize(self, request_iterator, context):  # type: ignore[no-untyped-def]
        async for _ in request_iterator:
            yield tts_pb2.SynthesizeResponse(mark=tts_pb2.SynthesisMark(response_id="r1", name="heard"))
            return


class TtsLike(MeshService):
    name = "dummy"

    def __init__(self, ctx: MeshContext) -> None:
        self.ctx = ctx

    async def start(self) -> None:
        return None

    def add_to_server(self, server: grpc.aio.Server) -> None:
        tts_pb2_grpc.add_TextToSpeechServicer_to_server(EchoTts(), server)


@dataclass
class Running:
    address: str
    health_address: str
    ctx: MeshContext

    def denied(self) -> float:
        value = self.ctx.metrics.registry.get_sample_value(
            "voicemesh_errors_total", {"service": "dummy", "kind": "grpc_denied"}
        )
        return value or 0.0


def tls(dirs: dict[str, Path], identity: str) -> MeshTls:
    return MeshTls.load(dirs[identity], NOW)


async def synthesize(ch: grpc.aio.Channel) -> str:
    call = tts_pb2_grpc.TextToSpeechStub(ch).Synthesize(timeout=5)
    await call.write(tts_pb2.SynthesizeRequest(config=tts_pb2.SynthesisConfig(session_id="s1")))
    async for resp in call:
        return str(resp.mark.name)
    return ""


@pytest.fixture
async def running(redis_url: str, nats_url: str, mesh_tls_dirs: dict[str, Path]) -> AsyncIterator[Running]:
    cfg = MeshSettings(
        instance_id="dummy-tls",
        grpc_port=free_port(),
        health_port=free_port(),
        redis_url=redis_url,
        nats_url=nats_url,
        mesh_tls_dir=str(mesh_tls_dirs["dummy"]),
    )
    contexts: list[MeshContext] = []

    def factory(ctx: MeshContext) -> MeshService:
        contexts.append(ctx)
        return TtsLike(ctx)

    stop = asyncio.Event()
    runner = asyncio.create_task(serve("dummy", cfg, factory, stop))
    address, health_address = f"127.0.0.1:{cfg.grpc_port}", f"127.0.0.1:{cfg.health_port}"
    try:
        async with asyncio.timeout(15):
            while await check_health(address, tls=tls(mesh_tls_dirs, "cli"), peer="dummy") != "SERVING":
                assert not runner.done(), runner
                await asyncio.sleep(0.02)
        yield Running(address, health_address, contexts[0])
    finally:
        stop.set()
        await asyncio.wait_for(runner, 15)


@pytest.mark.integration
async def test_only_the_listed_identity_may_call_a_service_and_a_refusal_is_counted(
    running: Running, mesh_tls_dirs: dict[str, Path]
) -> None:
    async with channel(running.address, tls(mesh_tls_dirs, "media-edge"), "dummy") as ch:
        assert await synthesize(ch) == "heard"
    for intruder in ("cli", "stt", "session-router"):
        async with channel(running.address, tls(mesh_tls_dirs, intruder), "dummy") as ch:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await synthesize(ch)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert refused.value.details() == (
            f"identity {intruder!r} may not call /voicemesh.v1.TextToSpeech/Synthesize"
        )
    assert running.denied() == 3
    async with channel(running.address, tls(mesh_tls_dirs, "media-edge"), "dummy") as ch:
        assert await synthesize(ch) == "heard"  # and it goes on serving the edge


@pytest.mark.integration
async def test_a_caller_without_a_mesh_certificate_cannot_even_connect(
    running: Running, mesh_tls_dirs: dict[str, Path], tmp_path: Path
) -> None:
    edge = tls(mesh_tls_dirs, "media-edge")
    [other_ca] = write_mesh_tls(tmp_path, ["media-edge"], NOW).values()  # right name, wrong CA
    forged = MeshTls.load(other_ca, NOW)
    no_cert = grpc.ssl_channel_credentials(root_certificates=edge.ca)  # trusts the mesh, shows nothing
    options = [*CHANNEL_OPTIONS, ("grpc.ssl_target_name_override", server_name("dummy"))]
    attempts = {
        "plaintext": grpc.aio.insecure_channel(running.address),
        "no client certificate": grpc.aio.secure_channel(
            running.address,
            no_cert,
            options=options,
        ),
        "another CA's certificate": grpc.aio.secure_channel(
            running.address,
            grpc.ssl_channel_credentials(
                root_certificates=edge.ca, private_key=forged.key, certificate_chain=forged.cert
            ),
            options=options,
        ),
    }
    for what, ch in attempts.items():
        async with ch:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await synthesize(ch)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, what
    assert running.denied() == 0  # refused in the handshake, before any method
    async with channel(running.address, edge, "dummy") as ch:
        assert await synthesize(ch) == "heard"


@pytest.mark.integration
async def test_a_client_refuses_a_server_that_holds_another_services_certificate(
    running: Running, mesh_tls_dirs: dict[str, Path]
) -> None:
    """The edge means to reach stt; the address holds a certified mesh member that is not stt."""
    async with channel(running.address, tls(mesh_tls_dirs, "media-edge"), "stt") as ch:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await synthesize(ch)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.integration
async def test_the_health_port_answers_health_in_plaintext_and_nothing_else(running: Running) -> None:
    assert await check_health(running.health_address) == "SERVING"
    async with grpc.aio.insecure_channel(running.health_address) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await synthesize(ch)
    assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED


@pytest.mark.integration
async def test_start_up_refuses_credentials_that_are_not_this_services(
    redis_url: str, nats_url: str, mesh_tls_dirs: dict[str, Path]
) -> None:
    base = {"grpc_port": free_port(), "redis_url": redis_url, "nats_url": nats_url}
    with pytest.raises(StartupError, match=r"VOICEMESH_MESH_TLS_DIR is not set.*VOICEMESH_MESH_TLS=off"):
        await serve("dummy", MeshSettings(**base), TtsLike, asyncio.Event())  # type: ignore[arg-type]
    wrong = MeshSettings(**base, mesh_tls_dir=str(mesh_tls_dirs["tts"]))  # type: ignore[arg-type]
    with pytest.raises(StartupError, match=r"is 'tts''s, not 'dummy''s"):
        await serve("dummy", wrong, TtsLike, asyncio.Event())


# -- loading: each fault named ----------------------------------------------------------------


@pytest.fixture
def one(tmp_path: Path) -> Path:
    return write_mesh_tls(tmp_path / "one", ["stt", "tts"], NOW)["stt"]


@pytest.mark.unit
def test_a_good_set_loads_with_its_identity(one: Path) -> None:
    loaded = MeshTls.load(one, NOW)
    assert loaded.identity == "stt"
    assert loaded.not_after > NOW + dt.timedelta(days=29)
    assert {p.name: p.stat().st_mode & 0o777 for p in one.iterdir()} == {
        CA_FILE: 0o600,
        CERT_FILE: 0o600,
        KEY_FILE: 0o600,
    }
    assert one.stat().st_mode & 0o777 == 0o700


@pytest.mark.unit
def test_a_missing_or_garbled_file_is_named(one: Path) -> None:
    (one / KEY_FILE).unlink()
    with pytest.raises(ValueError, match=rf"mesh TLS: {one / KEY_FILE} is missing"):
        MeshTls.load(one, NOW)
    (one / KEY_FILE).write_text("not a key")
    with pytest.raises(ValueError, match=r"tls.key is not an unencrypted PEM private key"):
        MeshTls.load(one, NOW)
    (one / CERT_FILE).write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(ValueError, match=r"tls.crt is not a PEM certificate"):
        MeshTls.load(one, NOW)


@pytest.mark.unit
def test_a_certificate_from_another_ca_is_refused(one: Path, tmp_path: Path) -> None:
    other = write_mesh_tls(tmp_path / "other", ["stt"], NOW)["stt"]
    shutil.copy(other / CA_FILE, one / CA_FILE)
    with pytest.raises(ValueError, match=r"tls.crt was not issued by the CA in .*ca.crt"):
        MeshTls.load(one, NOW)


@pytest.mark.unit
def test_a_key_that_is_not_the_certificates_is_refused(one: Path) -> None:
    shutil.copy(one.parent / "tts" / KEY_FILE, one / KEY_FILE)  # same CA, another identity's key
    with pytest.raises(ValueError, match=r"tls.key is not the key of .*tls.crt"):
        MeshTls.load(one, NOW)


@pytest.mark.unit
def test_a_certificate_out_of_date_is_refused_with_its_dates(one: Path) -> None:
    with pytest.raises(ValueError, match=r"ca.crt expired at \d{4}-\d\d-\d\d"):
        MeshTls.load(one, NOW + dt.timedelta(days=31))
    with pytest.raises(ValueError, match=r"ca.crt is not valid before"):
        MeshTls.load(one, NOW - dt.timedelta(hours=1))


@pytest.mark.unit
def test_the_table_opens_each_service_to_its_callers_only() -> None:
    assert allowed(GRPC_CALLERS, "/voicemesh.v1.SpeechToText/Recognize", "media-edge")
    assert not allowed(GRPC_CALLERS, "/voicemesh.v1.SpeechToText/Recognize", "tts")
    assert not allowed(GRPC_CALLERS, "/voicemesh.v1.SessionRouter/Assign", "cli")
    assert allowed(GRPC_CALLERS, "/voicemesh.v1.MediaEdge/Dial", "cli")
    assert allowed(GRPC_CALLERS, "/grpc.health.v1.Health/Check", "anything-certified")
    assert not allowed(GRPC_CALLERS, "/grpc.health.v1.Health/Check", "")  # no certificate
    assert not allowed(GRPC_CALLERS, "/voicemesh.v1.Unlisted/Do", "media-edge")  # closed by default


@pytest.mark.unit
def test_a_ca_bundle_trusts_each_of_its_cas_for_a_rotation(one: Path, tmp_path: Path) -> None:
    """Old and new CA in one ca.crt: a certificate from either loads, and the servers'
    credentials trust both, so pods on the old and the new CA talk while the mesh rolls."""
    new = write_mesh_tls(tmp_path / "new", ["stt"], NOW)["stt"]
    bundle = (new / CA_FILE).read_bytes() + (one / CA_FILE).read_bytes()
    for d in (one, new):
        (d / CA_FILE).write_bytes(bundle)
        assert MeshTls.load(d, NOW).identity == "stt"
    stranger = write_mesh_tls(tmp_path / "stranger", ["stt"], NOW)["stt"]
    (stranger / CA_FILE).write_bytes(bundle)
    with pytest.raises(ValueError, match=r"tls.crt was not issued by the CA in"):
        MeshTls.load(stranger, NOW)


@pytest.mark.integration
async def test_during_a_rotation_an_old_ca_server_and_a_new_ca_client_talk(tmp_path: Path) -> None:
    old = write_mesh_tls(tmp_path / "old", ["dummy", "media-edge"], NOW)
    new = write_mesh_tls(tmp_path / "new", ["dummy", "media-edge"], NOW)
    bundle = (old["dummy"] / CA_FILE).read_bytes() + (new["dummy"] / CA_FILE).read_bytes()
    for d in (old["dummy"], new["media-edge"]):
        (d / CA_FILE).write_bytes(bundle)
    server_tls, client_tls = MeshTls.load(old["dummy"], NOW), MeshTls.load(new["media-edge"], NOW)
    server = grpc.aio.server()
    tts_pb2_grpc.add_TextToSpeechServicer_to_server(EchoTts(), server)
    port = server.add_secure_port("127.0.0.1:0", server_tls.server_credentials())
    await server.start()
    try:
        async with channel(f"127.0.0.1:{port}", client_tls, "dummy") as ch:
            assert await synthesize(ch) == "heard"
        only_new = MeshTls.load(new["dummy"], NOW)  # a client that trusts the new CA alone
        async with channel(f"127.0.0.1:{port}", only_new, "dummy") as ch:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await synthesize(ch)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop(None)
