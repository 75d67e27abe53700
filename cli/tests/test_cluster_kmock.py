"""`voicemesh cluster` end to end: the real `kubernetes` client against kmock's stateful
Kubernetes API over HTTP on loopback, and a real Valkey holding registry records written
with `InstanceRegistry` and sessions placed with the router's `SessionStore`.

kmock serves on the test's event loop, so the (synchronous) command runs in a worker
thread. kmock ignores label selectors: the command's own release filter is what keeps the
other release's pod out of the table.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from voicemesh.cli import main as cli_main
from voicemesh.cli.cluster import LABEL_COMPONENT, LABEL_INSTANCE, LABEL_NAME, ZONE_LABEL
from voicemesh.mesh.localservers import free_port
from voicemesh.mesh.registry import InstanceInfo, InstanceRegistry, InstanceState
from voicemesh.router.store import SessionStore

pytestmark = pytest.mark.integration

NS = "voice"
REGISTRY_DB = 9  # a database of the shared test Valkey that no other test uses
DEADLINE_S = 10.0


def cli(argv: list[str]) -> int:
    args = cli_main.build_parser().parse_args(argv)
    return int(args.func(args))


async def run_cli(*argv: str) -> int:
    return await asyncio.to_thread(cli, ["cluster", *argv])


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


# -- Kubernetes objects -------------------------------------------------------------------


def _labels(service: str, release: str) -> dict[str, str]:
    return {LABEL_NAME: "voicemesh", LABEL_INSTANCE: release, LABEL_COMPONENT: service}


def deployment(
    name: str, service: str, desired: int, ready: int, release: str = "voicemesh"
) -> dict[str, Any]:
    labels = _labels(service, release)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {
            "replicas": desired,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": service}]}},
        },
        "status": {"replicas": desired, "readyReplicas": ready},
    }


def pod(
    name: str,
    service: str,
    *,
    node: str | None = "node-a",
    phase: str = "Running",
    ready: bool = True,
    release: str = "voicemesh",
    zone: str = "",
) -> dict[str, Any]:
    labels = _labels(service, release) | ({ZONE_LABEL: zone} if zone else {})
    image = f"voicemesh/{service}:0.1.0"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 40,
            "containers": [{"name": service, "image": image}],
        },
        "status": {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [
                {"name": service, "ready": ready, "restartCount": 0, "image": image, "imageID": ""}
            ],
        },
    }


def node(name: str, zone: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {ZONE_LABEL: zone}}}


def hpa(name: str, target: str, low: int, high: int) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "minReplicas": low,
            "maxReplicas": high,
        },
    }


PODS = "v1/pods"
DEPLOYMENTS = "apps/v1/deployments"


@pytest.fixture
def kubeconfig(kmock: Any, tmp_path: Path) -> Path:
    """The release in kmock (the `kmock` fixture of kmock's pytest plugin) and a kubeconfig
    whose context points at it, namespace `voice`."""
    o = kmock.objects
    o[DEPLOYMENTS, NS, "voicemesh-stt"] = deployment("voicemesh-stt", "stt", 3, 2)
    o[DEPLOYMENTS, NS, "voicemesh-media-edge"] = deployment("voicemesh-media-edge", "media-edge", 1, 1)
    o[PODS, NS, "voicemesh-stt-aaa"] = pod("voicemesh-stt-aaa", "stt", node="node-a")
    o[PODS, NS, "voicemesh-stt-bbb"] = pod("voicemesh-stt-bbb", "stt", node="node-b")
    o[PODS, NS, "voicemesh-stt-ccc"] = pod(
        "voicemesh-stt-ccc", "stt", node=None, phase="Pending", ready=False
    )
    o[PODS, NS, "voicemesh-media-edge-xyz"] = pod("voicemesh-media-edge-xyz", "media-edge", node="node-b")
    o[PODS, NS, "other-voicemesh-stt-zzz"] = pod("other-voicemesh-stt-zzz", "stt", release="other")
    o["v1/nodes", None, "node-a"] = node("node-a", "zone-a")
    o["v1/nodes", None, "node-b"] = node("node-b", "zone-b")
    o["autoscaling/v2/horizontalpodautoscalers", NS, "voicemesh-media-edge"] = hpa(
        "voicemesh-media-edge", "voicemesh-media-edge", 1, 4
    )
    server = str(kmock.url).rstrip("/")
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": server}}],
        "users": [{"name": "operator", "user": {"token": "not-checked"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "operator", "namespace": NS}}],
        "current-context": "kmock",
    }
    path = tmp_path / "kubeconfig.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


@pytest.fixture
async def registry_url(redis_url: str) -> AsyncIterator[str]:
    url = f"{redis_url.rsplit('/', 1)[0]}/{REGISTRY_DB}"
    client = aioredis.from_url(url, decode_responses=True)
    await client.flushdb()
    await client.aclose()
    yield url


@pytest.fixture
async def redis(registry_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(registry_url, decode_responses=True)
    yield client
    await client.aclose()


def info(name: str, service: str, *, zone: str = "", region: str = "eu", capacity: int = 4) -> InstanceInfo:
    return InstanceInfo(service, name, f"10.1.0.{len(name)}:50052", region, capacity, zone)


STT_A = info("voicemesh-stt-aaa", "stt")  # no zone in its record: the node's label shows
STT_B = info("voicemesh-stt-bbb", "stt", zone="zone-b")
EDGE = info("voicemesh-media-edge-xyz", "media-edge", zone="zone-b", capacity=50)


async def seed_registry(redis: aioredis.Redis) -> str:
    """stt-aaa serving with one session, stt-bbb draining, a dead leftover without a pod,
    the edge, and one stt instance of another region. Returns the session id."""
    registry = InstanceRegistry(redis)
    for i in (STT_A, STT_B, EDGE, info("us-stt-1", "stt", region="us")):
        await registry.register(i)
    await registry.set_draining(STT_B)
    leftover = InstanceRegistry(redis, ttl_s=0.05, retain_s=60.0)
    await leftover.register(info("voicemesh-stt-old", "stt"))
    assignment = await SessionStore(redis).assign("call-1", "eu", ["stt"], time.time())
    assert [r.instance_id for r in assignment.reservations] == ["voicemesh-stt-aaa"]

    async def leftover_dead() -> bool:
        states = await registry.instances("stt")
        return any(s.info.instance_id == "voicemesh-stt-old" and not s.alive for s in states)

    await until(leftover_dead, "the leftover instance to miss its heartbeat")
    return "call-1"


async def state_of(redis: aioredis.Redis, i: InstanceInfo) -> InstanceState | None:
    return next(
        (
            s
            for s in await InstanceRegistry(redis).instances(i.service)
            if s.info.instance_id == i.instance_id
        ),
        None,
    )


async def pod_exists(kmock: Any, name: str) -> bool:
    async with kmock.get(f"/api/v1/namespaces/{NS}/pods/{name}") as resp:
        return bool(resp.status == 200)


async def replicas_of(kmock: Any, name: str) -> int:
    async with kmock.get(f"/apis/apps/v1/namespaces/{NS}/deployments/{name}") as resp:
        assert resp.status == 200
        return int((await resp.json())["spec"]["replicas"])


def columns(out: str, name: str) -> list[str]:
    return next(line.split() for line in out.splitlines() if line.startswith(f"  {name} "))


# -- status -------------------------------------------------------------------------------


async def test_status_shows_pods_with_their_registry_state(
    kubeconfig: Path, registry_url: str, redis: aioredis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    await seed_registry(redis)
    assert await run_cli("status", "--kubeconfig", str(kubeconfig), "--redis-url", registry_url) == 0
    out = capsys.readouterr().out
    print(out)  # shown with -s
    lines = out.splitlines()
    assert lines[0] == "release voicemesh in namespace voice"  # the namespace from the kubeconfig context
    assert lines[1] == f"registry {registry_url}: 5 instance(s)"
    assert "stt: Deployment voicemesh-stt, 2/3 ready" in lines
    assert (
        "media-edge: Deployment voicemesh-media-edge, 1/1 ready; HPA voicemesh-media-edge keeps 1-4 replicas"
        in lines
    )
    assert columns(out, "voicemesh-stt-aaa") == [
        "voicemesh-stt-aaa",
        "Running",
        "1/1",
        "node-a",
        "zone-a",
        "serving",
        "1/4",
    ]
    assert columns(out, "voicemesh-stt-bbb")[3:] == ["node-b", "zone-b", "draining", "0/4"]
    assert columns(out, "voicemesh-stt-ccc") == [
        "voicemesh-stt-ccc",
        "Pending",
        "0/1",
        "-",
        "-",
        "no",
        "record",
        "-",
    ]
    assert columns(out, "voicemesh-stt-old") == [
        "voicemesh-stt-old",
        "(no",
        "pod)",
        "-",
        "-",
        "-",
        "dead",
        "0/4",
    ]
    assert columns(out, "voicemesh-media-edge-xyz")[-2:] == ["serving", "-/50"]
    assert "registry instances of other regions, not shown: 1 in us" in lines
    assert "other-voicemesh-stt-zzz" not in out


async def test_status_json(
    kubeconfig: Path, registry_url: str, redis: aioredis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    await seed_registry(redis)
    assert (
        await run_cli("status", "--json", "--kubeconfig", str(kubeconfig), "--redis-url", registry_url) == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["registry"] == {"url": registry_url, "read": True, "error": None, "instances": 5}
    stt = next(s for s in data["services"] if s["service"] == "stt")
    aaa = next(p for p in stt["pods"] if p["name"] == "voicemesh-stt-aaa")
    assert aaa["zone"] == "zone-a"
    assert aaa["registry"]["active"] == 1 and aaa["registry"]["alive"] is True
    assert [p["name"] for p in stt["pods"]] == [
        "voicemesh-stt-aaa",
        "voicemesh-stt-bbb",
        "voicemesh-stt-ccc",
        "voicemesh-stt-old",
    ]


async def test_status_without_registry_shows_pods_only(
    kubeconfig: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("VOICEMESH_REDIS_URL", raising=False)
    assert await run_cli("status", "--kubeconfig", str(kubeconfig)) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1] == (
        "registry not reached: no --redis-url or VOICEMESH_REDIS_URL given; showing pods only"
    )
    assert columns(out, "voicemesh-stt-aaa")[-3:] == ["not", "read", "-"]

    dead = f"redis://127.0.0.1:{free_port()}/0"
    assert await run_cli("status", "--kubeconfig", str(kubeconfig), "--redis-url", dead) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[1].startswith(f"registry not reached: cannot reach Redis/Valkey at {dead}: ")
    assert "voicemesh-stt-aaa" in out


async def test_status_of_an_unreachable_api_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(config))
    assert await run_cli("status", "--kubeconfig", str(path)) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        f"voicemesh cluster status: error: cannot reach the Kubernetes API at http://127.0.0.1:{port}: "
    )
    assert len(err.splitlines()) == 1


# -- scale --------------------------------------------------------------------------------


async def test_scale_changes_the_deployment_replicas(
    kubeconfig: Path, kmock: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run_cli("scale", "stt", "5", "--kubeconfig", str(kubeconfig)) == 0
    assert await replicas_of(kmock, "voicemesh-stt") == 5
    assert capsys.readouterr().out == "scaled Deployment voicemesh-stt from 3 to 5 replica(s)\n"

    assert await run_cli("scale", "stt", "2", "-n", "elsewhere", "--kubeconfig", str(kubeconfig)) == 1
    assert "Deployment voicemesh-stt not found in namespace elsewhere" in capsys.readouterr().err
    assert await replicas_of(kmock, "voicemesh-stt") == 5


async def test_scale_under_an_hpa_needs_force(
    kubeconfig: Path, kmock: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run_cli("scale", "media-edge", "3", "--kubeconfig", str(kubeconfig)) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        "voicemesh cluster scale: error: HPA voicemesh-media-edge manages voicemesh-media-edge (1-4 replicas)"
    )
    assert await replicas_of(kmock, "voicemesh-media-edge") == 1

    assert (
        await run_cli("scale", "media-edge", "3", "--force", "--json", "--kubeconfig", str(kubeconfig)) == 0
    )
    assert json.loads(capsys.readouterr().out) == {
        "deployment": "voicemesh-media-edge",
        "service": "media-edge",
        "namespace": NS,
        "from": 1,
        "to": 3,
        "hpa": "voicemesh-media-edge",
    }
    assert await replicas_of(kmock, "voicemesh-media-edge") == 3


# -- drain --------------------------------------------------------------------------------


async def test_drain_waits_for_the_last_session_then_deletes_the_pod(
    kubeconfig: Path, kmock: Any, registry_url: str, redis: aioredis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    session = await seed_registry(redis)
    drain = asyncio.create_task(
        run_cli("drain", "voicemesh-stt-aaa", "--kubeconfig", str(kubeconfig), "--redis-url", registry_url)
    )

    async def marked() -> bool:
        state = await state_of(redis, STT_A)
        return state is not None and state.draining

    await until(marked, "stt-aaa to be marked draining")
    assert not drain.done()
    assert await pod_exists(kmock, "voicemesh-stt-aaa")  # one session still on it: not deleted
    assert await SessionStore(redis).release(session) == 1
    assert await asyncio.wait_for(drain, DEADLINE_S) == 0
    assert not await pod_exists(kmock, "voicemesh-stt-aaa")
    assert await pod_exists(kmock, "voicemesh-stt-bbb")
    out = capsys.readouterr().out.splitlines()
    assert (
        out[0] == "voicemesh-stt-aaa is marked draining in the registry: the router gives it no new sessions"
    )
    assert out[1] == "waiting for voicemesh-stt-aaa: 1 session(s) active, 120 s left of 120 s"
    assert out[-2].startswith("voicemesh-stt-aaa: no sessions left after ")
    assert out[-1].startswith("deleted pod voicemesh-stt-aaa: its Deployment starts a replacement")


async def test_drain_deletes_after_the_timeout_with_sessions_left(
    kubeconfig: Path, kmock: Any, registry_url: str, redis: aioredis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    await seed_registry(redis)
    argv = ("drain", "voicemesh-stt-aaa", "--timeout", "1", "--json", "--kubeconfig", str(kubeconfig))
    assert await run_cli(*argv, "--redis-url", registry_url) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["outcome"] == "timed out" and result["active_left"] == 1 and result["deleted"] is True
    assert result["waited_s"] >= 1.0
    assert "voicemesh-stt-aaa: 1 session(s) still active after 1 s" in captured.err
    assert not await pod_exists(kmock, "voicemesh-stt-aaa")


async def test_drain_no_delete_only_marks(
    kubeconfig: Path, kmock: Any, registry_url: str, redis: aioredis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    await seed_registry(redis)
    argv = (
        "drain",
        "voicemesh-stt-aaa",
        "--no-delete",
        "--kubeconfig",
        str(kubeconfig),
        "--redis-url",
        registry_url,
    )
    assert await run_cli(*argv) == 0
    state = await state_of(redis, STT_A)
    assert state is not None and state.draining and state.active == 1
    assert await pod_exists(kmock, "voicemesh-stt-aaa")
    assert (
        capsys.readouterr().out.splitlines()[-1]
        == "voicemesh-stt-aaa marked draining; not deleted (--no-delete)"
    )


async def test_drain_of_the_edge_does_not_wait_on_the_registry(
    kubeconfig: Path, kmock: Any, registry_url: str, redis: aioredis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    await seed_registry(redis)
    argv = ("drain", "voicemesh-media-edge-xyz", "--kubeconfig", str(kubeconfig), "--redis-url", registry_url)
    assert await run_cli(*argv) == 0
    state = await state_of(redis, EDGE)
    assert state is not None and state.draining
    assert not await pod_exists(kmock, "voicemesh-media-edge-xyz")
    assert "waiting for nothing: the router places no sessions on this service" in capsys.readouterr().out


async def test_drain_refusals_name_what_is_wrong(
    kubeconfig: Path, kmock: Any, registry_url: str, redis: aioredis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    await seed_registry(redis)
    kc = ("--kubeconfig", str(kubeconfig))
    assert await run_cli("drain", "voicemesh-stt-nope", *kc, "--redis-url", registry_url) == 1
    assert capsys.readouterr().err == (
        "voicemesh cluster drain: error: pod voicemesh-stt-nope not found in namespace voice\n"
    )
    assert await run_cli("drain", "other-voicemesh-stt-zzz", *kc, "--redis-url", registry_url) == 1
    assert "pod other-voicemesh-stt-zzz is not part of release voicemesh" in capsys.readouterr().err
    assert await pod_exists(kmock, "other-voicemesh-stt-zzz")

    dead = f"redis://127.0.0.1:{free_port()}/0"
    assert await run_cli("drain", "voicemesh-stt-aaa", *kc, "--redis-url", dead) == 1
    err = capsys.readouterr().err
    assert "cannot mark voicemesh-stt-aaa draining: registry not reached (cannot reach Redis/Valkey" in err
    assert "pass --force to delete it anyway" in err
    assert await pod_exists(kmock, "voicemesh-stt-aaa")
    assert await run_cli("drain", "voicemesh-stt-aaa", *kc, "--redis-url", dead, "--force") == 0
    assert not await pod_exists(kmock, "voicemesh-stt-aaa")
