"""mTLS on the internal plane as the Helm chart delivers it (meshTls): one certificate Secret
per service, mounted by that service alone; certificates the chart makes that the services'
own start-up check accepts and that really carry an mTLS call from one service to another
(a grpc.aio server and channel with the rendered credentials); certificates kept across
upgrades; the operator's own Secrets instead; plaintext only when asked, with a warning; and
the failures that name the value to fix."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from voicemesh.mesh.access import GRPC_CALLERS
from voicemesh.mesh.certs import server_name
from voicemesh.mesh.grpcutil import channel
from voicemesh.mesh.localservers import free_port
from voicemesh.mesh.mtls import Authorizer, MeshTls
from voicemesh.mesh.service import load_mesh_tls
from voicemesh.mesh.settings import MeshSettings
from voicemesh.v1 import tts_pb2, tts_pb2_grpc

from .conftest import (
    CI,
    FULLNAME,
    SERVICES,
    TOKEN_SET,
    Render,
    Renderer,
    container_of,
    env_of,
    install_notes,
)

pytestmark = pytest.mark.integration

MOUNT = "/etc/voicemesh/mesh-tls"
CA_SECRET = f"{FULLNAME}-mesh-ca"
NOW = dt.datetime.now(dt.UTC)


def secret_name(key: str, fullname: str = FULLNAME) -> str:
    return f"{fullname}-mesh-tls-{key}"


def mesh_secrets(render: Render) -> dict[str, dict[str, Any]]:
    """The mesh certificate Secrets the chart made, by name."""
    return {
        d["metadata"]["name"]: d
        for d in render.of_kind("Secret")
        if "voicemesh.io/mesh-tls" in d["metadata"].get("labels", {})
    }


def write_secret(secret: dict[str, Any], directory: Path) -> Path:
    """A Secret's files as its volume mounts them."""
    directory.mkdir(parents=True)
    for name, value in secret["data"].items():
        (directory / name).write_bytes(base64.b64decode(value))
    return directory


def credentials(render: Render, tmp_path: Path, fullname: str = FULLNAME) -> dict[str, MeshTls]:
    """Each service's credentials, loaded the way the service loads them at start from the
    environment its Deployment sets (with the Secret's files where the pod mounts them)."""
    made = mesh_secrets(render)
    loaded = {}
    for key in SERVICES:
        deployment = render.get("Deployment", f"{fullname}-{key}")
        env = {name: e.get("value") for name, e in env_of(container_of(deployment)).items()}
        assert env["VOICEMESH_MESH_TLS_DIR"] == MOUNT
        (volume,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "mesh-tls"]
        directory = write_secret(made[volume["secret"]["secretName"]], tmp_path / key)
        settings = MeshSettings(mesh_tls=env["VOICEMESH_MESH_TLS"], mesh_tls_dir=str(directory))
        tls = load_mesh_tls(key, settings)  # refuses a certificate that is not this service's
        assert tls is not None
        loaded[key] = tls
    return loaded


# --- the Secrets and what each pod mounts -------------------------------------------------


def test_each_service_mounts_its_own_certificate_read_only(defaults: Render) -> None:
    made = mesh_secrets(defaults)
    assert set(made) == {CA_SECRET, *(secret_name(key) for key in SERVICES)}
    ca = made[CA_SECRET]
    assert ca["type"] == "kubernetes.io/tls" and set(ca["data"]) == {"tls.crt", "tls.key"}
    for key in SERVICES:
        secret = made[secret_name(key)]
        assert secret["type"] == "kubernetes.io/tls"
        assert set(secret["data"]) == {"ca.crt", "tls.crt", "tls.key"}
        assert secret["metadata"]["labels"]["app.kubernetes.io/component"] == key
        assert secret["data"]["ca.crt"] == ca["data"]["tls.crt"]
        deployment = defaults.get("Deployment", f"{FULLNAME}-{key}")
        pod = deployment["spec"]["template"]
        container = container_of(deployment)
        env = env_of(container)
        assert env["VOICEMESH_MESH_TLS"]["value"] == "on"
        assert env["VOICEMESH_MESH_TLS_DIR"]["value"] == MOUNT
        (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == MOUNT]
        assert mount["readOnly"] is True
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        assert volumes[mount["name"]]["secret"] == {"secretName": secret_name(key), "defaultMode": 0o440}
        # no pod mounts another service's certificate, or the CA's key
        mounted = {v["secret"]["secretName"] for v in pod["spec"]["volumes"] if "secret" in v}
        assert mounted == {secret_name(key)}
        # the checksum of exactly what this pod reads: a re-issued certificate rolls it
        data = json.dumps(secret["data"], sort_keys=True, separators=(",", ":"))
        assert (
            pod["metadata"]["annotations"]["checksum/mesh-tls"] == hashlib.sha256(data.encode()).hexdigest()
        )


def test_a_disabled_service_gets_no_certificate(renderer: Renderer) -> None:
    render = renderer.template(sets=(*TOKEN_SET, "services.tts.enabled=false")).ok()
    assert set(mesh_secrets(render)) == {CA_SECRET, *(secret_name(k) for k in SERVICES if k != "tts")}


# --- the certificates the chart makes -----------------------------------------------------


def test_the_chart_made_certificates_are_each_services_identity(defaults: Render, tmp_path: Path) -> None:
    loaded = credentials(defaults, tmp_path)
    ca_pem = base64.b64decode(mesh_secrets(defaults)[CA_SECRET]["data"]["tls.crt"])
    ca = x509.load_pem_x509_certificate(ca_pem)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert (ca.not_valid_after_utc - ca.not_valid_before_utc).days == 3650
    for key, tls in loaded.items():
        assert tls.identity == key
        assert tls.ca == ca_pem  # one CA for the whole mesh
        cert = x509.load_pem_x509_certificate(tls.cert)
        cert.verify_directly_issued_by(ca)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == [server_name(key)]
        # genSignedCert always writes both usages, which each end of an mTLS call needs
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
        key_pem = serialization.load_pem_private_key(tls.key, password=None)
        assert key_pem.key_size == 256  # ECDSA P-256, like the local mesh's
        assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 365
        assert tls.not_after == cert.not_valid_after_utc


def test_validity_is_configurable(renderer: Renderer, tmp_path: Path) -> None:
    render = renderer.template(
        sets=(*TOKEN_SET, "meshTls.generate.caValidityDays=730", "meshTls.generate.certValidityDays=90")
    ).ok()
    tls = credentials(render, tmp_path)["stt"]
    ca, cert = x509.load_pem_x509_certificate(tls.ca), x509.load_pem_x509_certificate(tls.cert)
    assert (ca.not_valid_after_utc - ca.not_valid_before_utc).days == 730
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 90


class EchoTts(tts_pb2_grpc.TextToSpeechServicer):
    """Answers one mark per stream: enough to tell a served call from a refused one."""

    async def Synthesize(self, request_iterator, context):  # type: ignore[no-untyped-def]
        async for _ in request_iterator:
            yield tts_pb2.SynthesizeResponse(mark=tts_pb2.SynthesisMark(response_id="r1", name="heard"))
            return


async def synthesize(ch: grpc.aio.Channel) -> str:
    call = tts_pb2_grpc.TextToSpeechStub(ch).Synthesize(timeout=5)
    await call.write(tts_pb2.SynthesizeRequest(config=tts_pb2.SynthesisConfig(session_id="s1")))
    async for resp in call:
        return str(resp.mark.name)
    return ""


@pytest.fixture
async def tts_server(defaults: Render, tmp_path: Path) -> AsyncIterator[tuple[str, dict[str, MeshTls]]]:
    """A gRPC server on tts's chart-made credentials, asking every caller for a certificate and
    letting through only the identities access.GRPC_CALLERS lists."""
    loaded = credentials(defaults, tmp_path)
    server = grpc.aio.server(interceptors=[Authorizer(lambda identity, method: None, GRPC_CALLERS)])
    tts_pb2_grpc.add_TextToSpeechServicer_to_server(EchoTts(), server)
    address = f"127.0.0.1:{free_port()}"
    server.add_secure_port(address, loaded["tts"].server_credentials())
    await server.start()
    try:
        yield address, loaded
    finally:
        await server.stop(grace=None)


async def test_the_edge_calls_tts_over_mtls_with_the_chart_made_certificates(
    tts_server: tuple[str, dict[str, MeshTls]],
) -> None:
    address, loaded = tts_server
    async with channel(address, loaded["media-edge"], "tts") as ch:
        assert await synthesize(ch) == "heard"
    # stt holds a good certificate from the same CA, but may not call tts
    async with channel(address, loaded["stt"], "tts") as ch:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await synthesize(ch)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # the edge dialling this address for stt finds tts's certificate there and hangs up
    async with channel(address, loaded["media-edge"], "stt") as ch:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await synthesize(ch)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_another_releases_certificates_are_strangers(
    tts_server: tuple[str, dict[str, MeshTls]], renderer: Renderer, tmp_path: Path
) -> None:
    """Each install makes its own CA: an edge of another release cannot call this one."""
    address, _ = tts_server
    other = renderer.template(release="voicemesh").ok()
    stranger = credentials(other, tmp_path / "other", fullname="voicemesh")["media-edge"]
    async with channel(address, stranger, "tts") as ch:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await synthesize(ch)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


# --- kept across upgrades -----------------------------------------------------------------

LOOKUP = 'lookup "v1" "Secret" $root.Release.Namespace (index . 1)'


@pytest.fixture(scope="module")
def cluster_chart(chart_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the chart whose one Secret lookup reads a stand-in cluster from the values
    (`fakeCluster: {name: secret}`): `helm template` cannot reach a cluster, and this is
    what `helm upgrade` sees in one."""
    copy = tmp_path_factory.mktemp("chart") / "voicemesh"
    shutil.copytree(chart_dir, copy)
    helpers = copy / "templates" / "_mesh-tls.tpl"
    text = helpers.read_text()
    assert text.count(LOOKUP) == 1
    helpers.write_text(text.replace(LOOKUP, "index ($root.Values.fakeCluster | default dict) (index . 1)"))
    schema_path = copy / "values.schema.json"
    schema = json.loads(schema_path.read_text())
    schema["properties"]["fakeCluster"] = {"type": "object", "additionalProperties": {"type": "object"}}
    schema_path.write_text(json.dumps(schema))
    return copy


def upgrade(renderer: Renderer, chart: Path, cluster: dict[str, Any], tmp_path: Path, *sets: str) -> Render:
    """`helm upgrade` against a cluster holding `cluster`'s Secrets (by name)."""
    text = yaml.safe_dump({"fakeCluster": cluster})
    values = tmp_path / f"cluster-{hashlib.sha256(text.encode()).hexdigest()[:12]}.yaml"
    values.write_text(text)
    return renderer.template(values=[values], sets=(*TOKEN_SET, *sets), chart=chart).ok()


def checksums(render: Render) -> dict[str, str]:
    return {
        key: render.get("Deployment", f"{FULLNAME}-{key}")["spec"]["template"]["metadata"]["annotations"][
            "checksum/mesh-tls"
        ]
        for key in SERVICES
        if f"{FULLNAME}-{key}" in render.names("Deployment")
    }


def test_an_upgrade_keeps_the_certificates_and_the_pods(
    renderer: Renderer, cluster_chart: Path, tmp_path: Path
) -> None:
    install = upgrade(renderer, cluster_chart, {}, tmp_path, "services.tts.enabled=false")
    installed = mesh_secrets(install)
    # Everything in the cluster: the upgrade re-renders the same Secrets, and no pod rolls.
    again = upgrade(renderer, cluster_chart, installed, tmp_path, "services.tts.enabled=false")
    assert {n: s["data"] for n, s in mesh_secrets(again).items()} == {
        n: s["data"] for n, s in installed.items()
    }
    assert checksums(again) == checksums(install)
    # tts enabled later, and stt's Secret deleted to renew it: both get a certificate from the
    # same CA; nothing else changes, so only their pods roll.
    without_stt = {n: s for n, s in installed.items() if n != secret_name("stt")}
    later = upgrade(renderer, cluster_chart, without_stt, tmp_path)
    made = mesh_secrets(later)
    ca = installed[CA_SECRET]["data"]
    assert made[CA_SECRET]["data"] == ca
    assert made[secret_name("stt")]["data"]["tls.crt"] != installed[secret_name("stt")]["data"]["tls.crt"]
    for key in ("stt", "tts"):
        assert made[secret_name(key)]["data"]["ca.crt"] == ca["tls.crt"]
    before, after = checksums(install), checksums(later)
    assert {k for k in after if after[k] != before.get(k)} == {"stt", "tts"}
    loaded = credentials(later, tmp_path / "later")
    assert {tls.identity for tls in loaded.values()} == set(SERVICES)
    # Without the CA nothing can sign for the others: a whole new set, and every pod rolls.
    no_ca = {n: s for n, s in mesh_secrets(later).items() if n != CA_SECRET}
    fresh = upgrade(renderer, cluster_chart, no_ca, tmp_path)
    assert mesh_secrets(fresh)[CA_SECRET]["data"]["tls.crt"] != ca["tls.crt"]
    assert all(checksums(fresh)[k] != after[k] for k in SERVICES)


# --- the operator's certificates, or none -------------------------------------------------


def test_existing_secrets_replace_the_generated_ones(production: Render) -> None:
    names = yaml.safe_load(CI["production-values.yaml"].read_text())["meshTls"]["existingSecrets"]
    assert set(names) == set(SERVICES)
    assert production.of_kind("Secret") == []
    for key in SERVICES:
        pod = production.get("Deployment", f"{FULLNAME}-{key}")["spec"]["template"]
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        assert volumes["mesh-tls"]["secret"]["secretName"] == names[key]
        assert env_of(container_of({"spec": {"template": pod}}))["VOICEMESH_MESH_TLS"]["value"] == "on"
        # renewed outside the chart: no checksum to follow (their names are in the pod spec)
        assert "checksum/mesh-tls" not in pod["metadata"].get("annotations", {})


def test_mesh_tls_off_is_plaintext_with_no_certificates(renderer: Renderer) -> None:
    render = renderer.template(sets=(*TOKEN_SET, "meshTls.enabled=false")).ok()
    assert mesh_secrets(render) == {}
    for key in SERVICES:
        deployment = render.get("Deployment", f"{FULLNAME}-{key}")
        container = container_of(deployment)
        env = env_of(container)
        assert env["VOICEMESH_MESH_TLS"]["value"] == "off"
        assert "VOICEMESH_MESH_TLS_DIR" not in env
        assert MOUNT not in {m["mountPath"] for m in container["volumeMounts"]}
        assert "mesh-tls" not in {v["name"] for v in deployment["spec"]["template"]["spec"]["volumes"]}
        # the probes keep to the health port
        assert container["readinessProbe"]["grpc"]["port"] == int(env["VOICEMESH_HEALTH_PORT"]["value"])


def test_notes_say_where_the_certificates_are_and_warn_when_off(
    helm_binaries: dict[str, Path], chart_dir: Path, tmp_path: Path
) -> None:
    helm = helm_binaries["helm4"]
    made = install_notes(helm, chart_dir, tmp_path, sets=TOKEN_SET)
    assert f"CA {CA_SECRET} (keep it)" in made and "voicemesh.io/mesh-tls=service" in made
    assert "python -m voicemesh.mesh.probe health --plaintext 127.0.0.1:50099" in made
    assert "WARNING" not in made
    off = install_notes(helm, chart_dir, tmp_path, sets=(*TOKEN_SET, "meshTls.enabled=false"))
    assert "WARNING: meshTls.enabled=false: the services talk gRPC in the clear" in off
    theirs = install_notes(
        helm,
        chart_dir,
        tmp_path,
        sets=(*TOKEN_SET, *(f"meshTls.existingSecrets.{k}={k}-tls" for k in SERVICES)),
    )
    assert "mTLS with your certificates (media-edge: media-edge-tls; reasoning: reasoning-tls;" in theirs
    assert "rollout restart" in theirs


# --- refused, naming the value ------------------------------------------------------------


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (
            ("meshTls.existingSecrets.sst=my-stt-tls",),
            "meshTls.existingSecrets.sst: no such service; the keys are the services' "
            "(media-edge, reasoning, session-router, stt, tts)",
        ),
        (
            ("meshTls.existingSecrets.stt=a", "meshTls.existingSecrets.tts=b"),
            "meshTls.existingSecrets names no Secret for media-edge, reasoning, session-router",
        ),
        (
            ("meshTls.enabled=false", "meshTls.existingSecrets.stt=a"),
            "meshTls.existingSecrets is set but meshTls.enabled=false",
        ),
        (
            ("meshTls.generate.certValidityDays=4000",),
            "meshTls.generate: certValidityDays (4000) is beyond caValidityDays (3650)",
        ),
        (
            ("services.stt.healthPort=50052",),
            "services.stt.healthPort (50052) is also services.stt.grpcPort",
        ),
        (("services.tts.healthPort=9464",), "services.tts.healthPort (9464) is also metrics.port"),
        (
            ("services.media-edge.healthPort=8080",),
            "services.media-edge.healthPort (8080) is also mediaEdge.http.port",
        ),
    ],
)
def test_bad_combinations_fail_with_a_clear_message(
    renderer: Renderer, sets: tuple[str, ...], message: str
) -> None:
    assert message in renderer.template(sets=(*TOKEN_SET, *sets)).failed()


@pytest.mark.parametrize("named", [SERVICES, tuple(k for k in SERVICES if k != "tts")])
def test_a_disabled_service_needs_no_secret_and_may_keep_one(
    renderer: Renderer, named: tuple[str, ...]
) -> None:
    sets = [f"meshTls.existingSecrets.{key}={key}-tls" for key in named]
    render = renderer.template(sets=(*TOKEN_SET, "services.tts.enabled=false", *sets)).ok()
    assert [
        d for d in render.of_kind("Secret") if "voicemesh.io/mesh-user" not in d["metadata"]["labels"]
    ] == []
    assert f"{FULLNAME}-tts" not in render.names("Deployment")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("services.stt.healthPort=0", "healthPort"),
        ("meshTls.existingSecrets.stt=Not_A_Name", "existingSecrets"),
        ("meshTls.generate.days=1", "days"),
        ("meshTls.generate.certValidityDays=0", "certValidityDays"),
    ],
)
def test_schema_rejects_bad_mesh_tls_values(renderer: Renderer, value: str, message: str) -> None:
    assert message in renderer.template(sets=(*TOKEN_SET, value)).failed()
