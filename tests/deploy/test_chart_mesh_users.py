"""The built-in Valkey and NATS let in only the mesh's users, with the rights access.py
gives them: the chart's copy of the rules is generated from access.py (and checked for
drift), what the servers are given equals `access.valkey_acl` / `access.nats_authorization`
for the same passwords, each service carries only its own user, passwords are kept across
upgrades, the operator's Secrets are used, and no password sits in a ConfigMap or on a
command line."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from voicemesh.mesh import access

from .conftest import (
    CI,
    FULLNAME,
    REPO_ROOT,
    SERVICES,
    TOKEN_SET,
    Render,
    Renderer,
    container_of,
    env_of,
)
from .meshusers import (
    chart_passwords,
    nats_authorization,
    nats_config,
    nats_pod,
    secret_password,
    valkey_acl_file,
    valkey_pod,
)
from .test_chart_mesh_tls import cluster_chart, upgrade  # noqa: F401  (cluster_chart: a fixture)

SERVICE_ORDER = list(access.SERVICE_USERS)


def ordered(passwords: dict[str, str], users: list[str]) -> dict[str, str]:
    """`passwords` of `users`, in access.py's order (the order the chart writes them)."""
    return {u: passwords[u] for u in access.ALL_USERS if u in users}


# --- one source of truth ------------------------------------------------------------------


def test_the_charts_rules_are_generated_from_access_py() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "gen_chart_access.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_valkey_gets_exactly_access_pys_acl(defaults: Render, tmp_path: Path) -> None:
    passwords = chart_passwords(defaults)
    assert set(passwords) == set(access.ALL_USERS)
    acl = valkey_acl_file(defaults, tmp_path)
    want = access.valkey_acl(passwords)
    assert acl[0] == want[0] == "user default off resetkeys -@all"
    assert sorted(acl) == sorted(want)
    text = "\n".join(acl)
    assert not [p for p in passwords.values() if p in text]  # digests only


def test_nats_gets_exactly_access_pys_authorization(defaults: Render) -> None:
    passwords = chart_passwords(defaults)
    assert nats_authorization(defaults) == access.nats_authorization(
        ordered(passwords, list(access.ALL_USERS))
    )


def test_a_disabled_service_has_no_user(renderer: Renderer, tmp_path: Path) -> None:
    render = renderer.template(sets=(*TOKEN_SET, "services.tts.enabled=false")).ok()
    passwords = chart_passwords(render)
    assert "tts" not in passwords
    assert sorted(valkey_acl_file(render, tmp_path)) == sorted(access.valkey_acl(passwords))
    assert nats_authorization(render) == access.nats_authorization(ordered(passwords, list(passwords)))


# --- each service its own user --------------------------------------------------------------


def test_each_service_carries_only_its_own_user(defaults: Render) -> None:
    passwords = chart_passwords(defaults)
    for key in SERVICES:
        deployment = defaults.get("Deployment", f"{FULLNAME}-{key}")
        container = container_of(deployment)
        env = env_of(container)
        refs = [
            e["valueFrom"]["secretKeyRef"]["name"]
            for e in container["env"]
            if "secretKeyRef" in e.get("valueFrom", {})
        ]
        users = [r for r in refs if r.startswith(f"{FULLNAME}-mesh-user-")]
        assert users == [f"{FULLNAME}-mesh-user-{key}"], key
        names = [e["name"] for e in container["env"]]
        # $(MESH_PASSWORD) expands only when the variable is defined earlier.
        assert (
            names.index("MESH_PASSWORD")
            < names.index("VOICEMESH_REDIS_URL")
            < names.index("VOICEMESH_NATS_URL")
        )
        assert (
            env["VOICEMESH_REDIS_URL"]["value"] == f"redis://{key}:$(MESH_PASSWORD)@{FULLNAME}-valkey:6379/0"
        )
        assert env["VOICEMESH_NATS_URL"]["value"] == f"nats://{key}:$(MESH_PASSWORD)@{FULLNAME}-nats:4222"
        # the NATS pod's `stream` container makes the stream; the service only publishes
        assert env["VOICEMESH_EVENTS_CREATE_STREAM"]["value"] == "false"
        assert env["VOICEMESH_EVENTS_MAX_AGE_S"]["value"] == "3600"
        assert deployment["spec"]["template"]["metadata"]["annotations"]["checksum/mesh-user"]
        assert len(passwords[key]) == 32 and passwords[key].isalnum()  # URL-safe
    assert len(set(passwords.values())) == len(passwords)


def test_the_stream_is_made_beside_nats_as_the_mesh_user(renderer: Renderer) -> None:
    render = renderer.template(sets=(*TOKEN_SET, "events.maxAgeSeconds=600")).ok()
    containers = {c["name"]: c for c in nats_pod(render)["containers"]}
    assert set(containers) == {"nats", "stream"}
    stream = env_of(containers["stream"])
    assert stream["MESH_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": f"{FULLNAME}-mesh-user-mesh",
        "key": "password",
    }
    assert stream["VOICEMESH_NATS_URL"]["value"] == "nats://mesh:$(MESH_PASSWORD)@127.0.0.1:4222"
    assert stream["VOICEMESH_EVENTS_MAX_AGE_S"]["value"] == "600"
    assert containers["stream"]["command"] == ["python", "/etc/nats/keep-stream.py"]
    assert containers["stream"]["image"].startswith("voicemesh/session-router:")
    # only `mesh` may make it: no other user of the stream container, no service has the right
    mesh = next(u for u in nats_authorization(render)["users"] if u["user"] == "mesh")
    assert "$JS.API.STREAM.CREATE.VOICEMESH_SESSIONS" in mesh["permissions"]["publish"]["allow"]
    for key in SERVICES:
        env = env_of(container_of(render.get("Deployment", f"{FULLNAME}-{key}")))
        assert env["VOICEMESH_EVENTS_MAX_AGE_S"]["value"] == "600"


def test_valkeys_probe_logs_in_as_the_reader(defaults: Render) -> None:
    pod = valkey_pod(defaults)
    (valkey,) = pod["containers"]
    assert "--user cli" in " ".join(valkey["readinessProbe"]["exec"]["command"])
    for name in ("VALKEYCLI_AUTH", "REDISCLI_AUTH"):
        assert env_of(valkey)[name]["valueFrom"]["secretKeyRef"] == {
            "name": f"{FULLNAME}-mesh-user-cli",
            "key": "password",
        }
    assert valkey["args"][valkey["args"].index("--aclfile") + 1] == "/run/valkey/users.acl"
    (init,) = pod["initContainers"]
    mounts = {m["name"] for m in init["volumeMounts"]}
    assert "passwords" in mounts and "passwords" not in {m["name"] for m in valkey["volumeMounts"]}
    nats = {c["name"]: c for c in nats_pod(defaults)["containers"]}["nats"]
    assert nats["readinessProbe"]["httpGet"]["port"] == "monitoring"  # needs no user


def test_no_password_in_a_configmap_or_on_a_command_line(
    ci_renders: dict[tuple[str, str, str], Render],
) -> None:
    for (helm, values, _), render in ci_renders.items():
        if helm != "helm4":
            continue
        passwords = list(chart_passwords(render.ok()).values())
        for d in render.of_kind("ConfigMap"):
            text = str(d.get("data", {}))
            assert not [p for p in passwords if p in text], (values, d["metadata"]["name"])
        for d in render.docs:
            spec = d.get("spec", {}).get("template", {}).get("spec") or (
                d["spec"] if d["kind"] == "Pod" else {}
            )
            for c in [*spec.get("containers", []), *spec.get("initContainers", [])]:
                argv = " ".join([*c.get("command", []), *c.get("args", [])])
                assert not [p for p in passwords if p in argv], (values, c["name"])
                assert "PASSWORD" not in argv and "requirepass" not in argv, (values, c["name"])
                for e in c.get("env", []):  # passwords come from Secrets, never as values
                    assert not [p for p in passwords if p in str(e.get("value", ""))], (values, e["name"])


# --- kept across upgrades, or the operator's -------------------------------------------------


def test_passwords_are_kept_across_upgrades(renderer: Renderer, cluster_chart: Path, tmp_path: Path) -> None:  # noqa: F811
    first = upgrade(renderer, cluster_chart, {}, tmp_path)
    cluster = {d["metadata"]["name"]: d for d in first.of_kind("Secret")}
    again = upgrade(renderer, cluster_chart, cluster, tmp_path)
    assert chart_passwords(again) == chart_passwords(first)

    def checksums(render: Render) -> dict[str, Any]:
        pods = [*render.of_kind("Deployment"), *render.of_kind("StatefulSet")]
        return {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["annotations"] for d in pods}

    assert checksums(again) == checksums(first)
    # one lost Secret: that user alone gets a new password, and only its pods roll
    del cluster[f"{FULLNAME}-mesh-user-stt"]
    third = upgrade(renderer, cluster_chart, cluster, tmp_path)
    new, old = chart_passwords(third), chart_passwords(first)
    assert [u for u in new if new[u] != old[u]] == ["stt"]
    changed = {
        n
        for n, a in checksums(third).items()
        if a.get("checksum/mesh-user") != checksums(first)[n].get("checksum/mesh-user")
        or a.get("checksum/mesh-users") != checksums(first)[n].get("checksum/mesh-users")
    }
    assert changed == {f"{FULLNAME}-stt", f"{FULLNAME}-valkey", f"{FULLNAME}-nats"}


def test_existing_secrets_are_used(renderer: Renderer, tmp_path: Path) -> None:
    render = renderer.template(
        sets=(
            *TOKEN_SET,
            "meshUsers.existingSecrets.stt=my-stt",
            "meshUsers.existingSecrets.cli=my-cli",
            "meshUsers.existingSecretKey=pw",
        )
    ).ok()
    made = chart_passwords(render)
    assert "stt" not in made and "cli" not in made and "tts" in made
    stt = render.get("Deployment", f"{FULLNAME}-stt")
    assert env_of(container_of(stt))["MESH_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "my-stt",
        "key": "pw",
    }
    assert "checksum/mesh-user" not in stt["spec"]["template"]["metadata"].get("annotations", {})
    theirs = {
        name: {"data": {"pw": base64.b64encode(pw.encode()).decode()}}
        for name, pw in (
            ("my-stt", "stt-password-of-the-operator"),
            ("my-cli", "cli-password-of-the-operator"),
        )
    }
    passwords = {**made, "stt": "stt-password-of-the-operator", "cli": "cli-password-of-the-operator"}
    assert sorted(valkey_acl_file(render, tmp_path, theirs)) == sorted(access.valkey_acl(passwords))
    assert nats_authorization(render, theirs) == access.nats_authorization(
        ordered(passwords, list(passwords))
    )
    valkey = valkey_pod(render)["containers"][0]
    assert env_of(valkey)["REDISCLI_AUTH"]["valueFrom"]["secretKeyRef"] == {"name": "my-cli", "key": "pw"}


# --- external stores -------------------------------------------------------------------------


def test_external_stores_take_one_url_secret_per_service(production: Render) -> None:
    assert chart_passwords(production) == {}
    for key in SERVICES:
        env = env_of(container_of(production.get("Deployment", f"{FULLNAME}-{key}")))
        assert env["VOICEMESH_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {
            "name": f"voicemesh-redis-{key}",
            "key": "url",
        }
        assert env["VOICEMESH_EVENTS_CREATE_STREAM"]["value"] == "false"
        assert "MESH_PASSWORD" not in env


def test_an_external_nats_lets_the_services_make_the_stream_by_default(renderer: Renderer) -> None:
    render = renderer.template(
        sets=(
            *TOKEN_SET,
            "nats.enabled=false",
            "externalNats.existingSecrets.stt=stt-nats",
            "externalNats.url=nats://bus:4222",
        )
    ).ok()
    assert {u for u in chart_passwords(render)} == {*SERVICE_ORDER, "cli"}  # Valkey's still
    env = env_of(container_of(render.get("Deployment", f"{FULLNAME}-stt")))
    assert env["VOICEMESH_NATS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "stt-nats", "key": "nats-url"}
    assert env["VOICEMESH_EVENTS_CREATE_STREAM"]["value"] == "true"
    tts = env_of(container_of(render.get("Deployment", f"{FULLNAME}-tts")))
    assert tts["VOICEMESH_NATS_URL"]["value"] == "nats://bus:4222"
    assert f"{FULLNAME}-nats" not in render.names("StatefulSet")


def test_a_shared_external_url_secret_serves_the_services_without_their_own(renderer: Renderer) -> None:
    render = renderer.template(
        sets=(
            *TOKEN_SET,
            "valkey.enabled=false",
            "externalRedis.existingSecret=shared-redis",
            "externalRedis.existingSecrets.session-router=router-redis",
        )
    ).ok()
    for key in SERVICES:
        env = env_of(container_of(render.get("Deployment", f"{FULLNAME}-{key}")))
        name = "router-redis" if key == "session-router" else "shared-redis"
        assert env["VOICEMESH_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": name, "key": "redis-url"}
        # the built-in NATS still gives each its own user
        assert env["VOICEMESH_NATS_URL"]["value"].startswith(f"nats://{key}:$(MESH_PASSWORD)@")
    assert f"{FULLNAME}-valkey-acl" not in render.names("ConfigMap")
    assert set(chart_passwords(render)) == {*SERVICE_ORDER, "cli", "mesh"}


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("meshUsers.existingSecrets.nobody=x",), "meshUsers/existingSecrets"),
        (
            ("externalRedis.existingSecrets.stt=x",),
            "externalRedis.existingSecrets is set but valkey.enabled=true",
        ),
        (
            ("valkey.enabled=false", "externalRedis.existingSecrets.stt=x"),
            "externalRedis.existingSecrets names no Secret for media-edge, reasoning, session-router, tts",
        ),
        (
            ("nats.enabled=false", "externalNats.existingSecrets.stt=x"),
            "externalNats.existingSecrets names no Secret for",
        ),
        (("valkey.auth.existingSecret=old",), "auth"),
        (
            ("services.stt.extraEnv[0].name=VOICEMESH_EVENTS_MAX_AGE_S", "services.stt.extraEnv[0].value=60"),
            "services.stt.extraEnv sets VOICEMESH_EVENTS_MAX_AGE_S, which the chart sets: use events.maxAgeSeconds",
        ),
    ],
)
def test_bad_user_values_fail_naming_the_value(
    renderer: Renderer, sets: tuple[str, ...], message: str
) -> None:
    assert message in renderer.template(sets=(*TOKEN_SET, *sets)).failed()


def test_dev_values_keep_users_on(renderer: Renderer) -> None:
    dev = renderer.template(values=[CI["dev-values.yaml"]], sets=()).ok()
    assert set(chart_passwords(dev)) == set(access.ALL_USERS)
    assert "authorization: " in nats_config(dev)
    assert all(
        secret_password(d)
        for d in dev.of_kind("Secret")
        if "voicemesh.io/mesh-user" in d["metadata"]["labels"]
    )
