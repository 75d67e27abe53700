"""`voicemesh cluster`, the pure part and the command flows over a fake `ClusterApi`:
names, pods joined with registry records, the status table, what a drain waits for and
how it reports, when `scale` refuses. No HTTP, no Valkey, no clock."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from voicemesh.cli import main as cli_main
from voicemesh.cli.cluster import (
    LABEL_COMPONENT,
    LABEL_INSTANCE,
    LABEL_NAME,
    ROUTED_SERVICES,
    SERVICES,
    ZONE_LABEL,
    DeploymentInfo,
    DrainOutcome,
    DrainWatch,
    HpaInfo,
    PodInfo,
    RegistryReport,
    RegistryState,
    WaitFor,
    build_status,
    deployment_name,
    drain_target_error,
    fullname,
    hpa_for,
    nodes_to_look_up,
    plan_drain,
    release_selector,
)
from voicemesh.cli.cluster_cmd import CommandError, Output, cluster_drain, cluster_scale
from voicemesh.cli.cluster_view import format_status, registry_line, status_json
from voicemesh.mesh.registry import InstanceInfo, InstanceState

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[2]
NS = "voice"


def labels(service: str, release: str = "voicemesh", **extra: str) -> dict[str, str]:
    return {LABEL_NAME: "voicemesh", LABEL_INSTANCE: release, LABEL_COMPONENT: service, **extra}


def pod(
    name: str,
    service: str,
    *,
    node: str = "node-a",
    phase: str = "Running",
    ready: bool = True,
    release: str = "voicemesh",
    extra: Mapping[str, str] | None = None,
) -> PodInfo:
    return PodInfo(
        name=name,
        labels=labels(service, release, **(extra or {})),
        phase=phase,
        ready=ready,
        containers_ready=1 if ready else 0,
        containers=1,
        node=node,
        grace_s=40,
    )


def inst(
    name: str,
    service: str,
    *,
    active: int = 0,
    capacity: int = 4,
    draining: bool = False,
    alive: bool = True,
    region: str = "eu",
    zone: str = "",
) -> InstanceState:
    info = InstanceInfo(service, name, f"10.0.0.1:{50052}", region, capacity, zone)
    return InstanceState(info, active, draining, alive)


# -- names ----------------------------------------------------------------------------------


def test_fullname_follows_the_chart_rule() -> None:
    assert fullname("voicemesh") == "voicemesh"
    assert fullname("voicemesh-eu") == "voicemesh-eu"
    assert fullname("prod") == "prod-voicemesh"
    long = "a" * 62 + "-b"  # 64 characters: cut to 63 leaves a trailing "-"
    assert fullname(long) == "a" * 62
    assert deployment_name("prod", "stt") == "prod-voicemesh-stt"
    assert deployment_name("voicemesh", "media-edge") == "voicemesh-media-edge"
    assert deployment_name("v" * 50 + "-voicemesh", "session-router") == "v" * 50 + "-voicemesh-se"
    assert release_selector("prod") == "app.kubernetes.io/instance=prod,app.kubernetes.io/name=voicemesh"


def test_service_names_are_the_service_folders_and_routed_ones_are_what_the_edge_asks_for() -> None:
    from voicemesh.edge.roles import ASKED_ROLES as EDGE_ROLES

    folders = {p.name for p in (REPO_ROOT / "services").iterdir() if (p / "pyproject.toml").exists()}
    assert set(SERVICES) == folders
    assert ROUTED_SERVICES == EDGE_ROLES


# -- status ---------------------------------------------------------------------------------


def scenario() -> tuple[list[PodInfo], list[DeploymentInfo], list[HpaInfo], list[InstanceState]]:
    pods = [
        pod("voicemesh-stt-b", "stt", node="node-b"),
        pod("voicemesh-stt-a", "stt", node="node-a"),
        pod("voicemesh-stt-c", "stt", node="", phase="Pending", ready=False),
        pod("voicemesh-media-edge-x", "media-edge", node="node-a", extra={ZONE_LABEL: "pod-zone"}),
        pod("voicemesh-valkey-0", "valkey", node="node-b"),
        pod("other-voicemesh-stt-z", "stt", release="other"),
    ]
    deployments = [
        DeploymentInfo("voicemesh-stt", labels("stt"), desired=3, ready=2),
        DeploymentInfo("voicemesh-media-edge", labels("media-edge"), desired=1, ready=1),
        DeploymentInfo("other-voicemesh-stt", labels("stt", "other"), desired=9, ready=9),
    ]
    hpas = [
        HpaInfo("voicemesh-media-edge", "Deployment", "voicemesh-media-edge", 1, 6),
        HpaInfo("unrelated", "StatefulSet", "voicemesh-stt", 1, 2),
    ]
    instances = [
        inst("voicemesh-stt-a", "stt", active=1),
        inst("voicemesh-stt-b", "stt", active=3, draining=True, zone="zone-b"),
        inst("voicemesh-stt-old", "stt", alive=False, draining=True),
        inst("voicemesh-media-edge-x", "media-edge", capacity=100),
        inst("us-stt-1", "stt", region="us"),
        inst("us-stt-2", "stt", region="us"),
    ]
    return pods, deployments, hpas, instances


def status_of(instances: list[InstanceState] | None, report: RegistryReport | None = None):  # type: ignore[no-untyped-def]
    pods, deployments, hpas, _ = scenario()
    return build_status(
        namespace=NS,
        release="voicemesh",
        pods=pods,
        deployments=deployments,
        hpas=hpas,
        node_zones={"node-a": "zone-a", "node-b": "zone-b-node"},
        instances=instances,
        registry=report or RegistryReport("redis://valkey:6379/0", read=True, instances=6),
    )


def test_status_joins_pods_with_registry_records() -> None:
    status = status_of(scenario()[3])
    assert [s.service for s in status.sections] == ["stt", "media-edge", "valkey"]
    stt, edge, valkey = status.sections
    assert stt.deployment is not None and (stt.deployment.desired, stt.deployment.ready) == (3, 2)
    assert stt.hpa is None  # the StatefulSet's HPA is not the Deployment's
    assert edge.hpa is not None and edge.hpa.name == "voicemesh-media-edge"
    rows = {r.name: r for r in stt.rows}
    assert [r.name for r in stt.rows] == [
        "voicemesh-stt-a",
        "voicemesh-stt-b",
        "voicemesh-stt-c",
        "voicemesh-stt-old",
    ]  # pods by name, then the registry's leftovers; the other release's pod is not there
    assert (rows["voicemesh-stt-a"].state, rows["voicemesh-stt-a"].active) == (RegistryState.SERVING, 1)
    assert (rows["voicemesh-stt-b"].state, rows["voicemesh-stt-b"].active) == (RegistryState.DRAINING, 3)
    assert rows["voicemesh-stt-c"].state is RegistryState.NO_RECORD
    assert rows["voicemesh-stt-old"].pod is None and rows["voicemesh-stt-old"].state is RegistryState.DEAD
    # zone: the registry record's, else the pod label, else the node's
    assert rows["voicemesh-stt-b"].zone == "zone-b"
    assert rows["voicemesh-stt-a"].zone == "zone-a"
    assert rows["voicemesh-stt-c"].zone == ""
    assert edge.rows[0].zone == "pod-zone"
    assert edge.rows[0].active is None  # the registry does not count the edge's calls
    assert valkey.rows[0].state is RegistryState.NOT_A_SERVICE
    assert status.elsewhere == {"us": 2}


def test_status_table_reads_as_the_operator_expects() -> None:
    lines = format_status(status_of(scenario()[3]))
    assert lines[:2] == [
        "release voicemesh in namespace voice",
        "registry redis://valkey:6379/0: 6 instance(s)",
    ]
    assert "stt: Deployment voicemesh-stt, 2/3 ready" in lines
    assert (
        "media-edge: Deployment voicemesh-media-edge, 1/1 ready; HPA voicemesh-media-edge keeps 1-6 replicas"
        in lines
    )
    assert "valkey: no Deployment" in lines
    table = {line.split()[0]: line.split() for line in lines if line.startswith("  voicemesh-")}
    assert table["voicemesh-stt-a"] == [
        "voicemesh-stt-a",
        "Running",
        "1/1",
        "node-a",
        "zone-a",
        "serving",
        "1/4",
    ]
    assert table["voicemesh-stt-b"][5:] == ["draining", "3/4"]
    assert table["voicemesh-stt-c"] == ["voicemesh-stt-c", "Pending", "0/1", "-", "-", "no", "record", "-"]
    assert table["voicemesh-stt-old"] == [
        "voicemesh-stt-old",
        "(no",
        "pod)",
        "-",
        "-",
        "-",
        "dead,",
        "draining",
        "0/4",
    ]
    assert table["voicemesh-media-edge-x"][-2:] == ["serving", "-/100"]
    assert "registry instances of other regions, not shown: 2 in us" in lines
    assert any(line.startswith("note: media-edge and session-router hold no leases") for line in lines)
    headers = [line for line in lines if line.lstrip().startswith("POD ")]
    assert len({h.index("REGISTRY") for h in headers}) == 1  # aligned across the services


def test_status_without_registry_shows_pods_and_says_so_in_one_line() -> None:
    report = RegistryReport(
        "redis://valkey:6379/0", read=False, error="cannot reach Redis/Valkey at x: refused"
    )
    status = status_of(None, report)
    lines = format_status(status)
    assert lines[1] == "registry not reached: cannot reach Redis/Valkey at x: refused; showing pods only"
    stt = status.sections[0]
    assert [r.name for r in stt.rows] == ["voicemesh-stt-a", "voicemesh-stt-b", "voicemesh-stt-c"]
    assert {r.state for r in stt.rows} == {RegistryState.NOT_READ}
    assert registry_line(RegistryReport("", read=False)).startswith("registry not reached: no --redis-url")


def test_status_json_carries_every_field() -> None:
    data = status_json(status_of(scenario()[3]))
    stt = data["services"][0]  # type: ignore[index]
    assert stt["deployment"] == {"name": "voicemesh-stt", "desired": 3, "ready": 2}
    b = next(p for p in stt["pods"] if p["name"] == "voicemesh-stt-b")
    assert b["registry_state"] == "draining"
    assert b["registry"] == {
        "alive": True,
        "draining": True,
        "active": 3,
        "capacity": 4,
        "region": "eu",
        "zone": "zone-b",
        "address": "10.0.0.1:50052",
    }
    assert b["pod"] == {
        "phase": "Running",
        "ready": True,
        "containers_ready": 1,
        "containers": 1,
        "node": "node-b",
    }
    old = next(p for p in stt["pods"] if p["name"] == "voicemesh-stt-old")
    assert old["pod"] is None
    assert data["other_regions"] == {"us": 2}


def test_only_nodes_of_pods_without_a_known_zone_are_looked_up() -> None:
    pods, _, _, instances = scenario()
    # stt-b has its zone in the registry, the edge pod on its label, stt-c has no node
    assert nodes_to_look_up(pods, instances) == ["node-a", "node-b"]  # stt-a, valkey-0 / other
    assert nodes_to_look_up([pod("p", "stt", node="n", extra={ZONE_LABEL: "z"})], None) == []


def test_hpa_for_matches_the_deployment_target_only() -> None:
    hpas = [
        HpaInfo("b", "Deployment", "voicemesh-stt", 1, 3),
        HpaInfo("a", "Deployment", "voicemesh-stt", 2, 4),
        HpaInfo("c", "Deployment", "voicemesh-tts", 1, 3),
    ]
    found = hpa_for(hpas, "voicemesh-stt")
    assert found is not None and found.name == "a"
    assert hpa_for(hpas, "voicemesh-reasoning") is None


# -- drain decisions ------------------------------------------------------------------------


def test_drain_target_checks_name_what_is_wrong() -> None:
    assert (
        drain_target_error(None, "voicemesh-stt-q", NS, "voicemesh")
        == "pod voicemesh-stt-q not found in namespace voice"
    )
    other = drain_target_error(pod("x", "stt", release="other"), "x", NS, "voicemesh")
    assert other == (
        "pod x is not part of release voicemesh "
        "(its labels: app.kubernetes.io/instance=other, app.kubernetes.io/name=voicemesh)"
    )
    bare = PodInfo("y", {}, "Running", True, 1, 1)
    assert "its labels: no app.kubernetes.io/instance" in (
        drain_target_error(bare, "y", NS, "voicemesh") or ""
    )
    valkey = drain_target_error(pod("voicemesh-valkey-0", "valkey"), "voicemesh-valkey-0", NS, "voicemesh")
    assert valkey is not None and "the release's valkey, not a mesh service" in valkey
    assert drain_target_error(pod("voicemesh-tts-1", "tts"), "voicemesh-tts-1", NS, "voicemesh") is None


def test_drain_waits_only_for_sessions_the_router_placed_on_a_live_instance() -> None:
    assert plan_drain("stt", inst("a", "stt", active=2)) is WaitFor.SESSIONS
    assert plan_drain("tts", None) is WaitFor.NOTHING_NO_RECORD
    assert plan_drain("reasoning", inst("a", "reasoning", active=2, alive=False)) is WaitFor.NOTHING_DEAD
    assert plan_drain("media-edge", inst("a", "media-edge")) is WaitFor.NOTHING_NOT_ROUTED
    assert plan_drain("session-router", None) is WaitFor.NOTHING_NOT_ROUTED


def test_drain_watch_reports_changes_and_a_heartbeat_line_and_ends_at_zero() -> None:
    watch = DrainWatch("voicemesh-stt-a", started=100.0, timeout_s=120.0, report_every_s=10.0)
    s = lambda active: inst("voicemesh-stt-a", "stt", active=active, draining=True)  # noqa: E731
    first = watch.observe(100.0, s(2))
    assert first.outcome is None
    assert first.message == "waiting for voicemesh-stt-a: 2 session(s) active, 120 s left of 120 s"
    assert watch.observe(101.0, s(2)).message is None  # nothing new
    assert (
        watch.observe(110.5, s(2)).message
        == "waiting for voicemesh-stt-a: 2 session(s) active, 110 s left of 120 s"
    )
    assert (
        watch.observe(111.0, s(1)).message
        == "waiting for voicemesh-stt-a: 1 session(s) active, 109 s left of 120 s"
    )
    done = watch.observe(115.0, s(0))
    assert done.outcome is DrainOutcome.DRAINED
    assert done.message == "voicemesh-stt-a: no sessions left after 15 s"
    assert watch.remaining(115.0) == 105.0


def test_drain_watch_ends_at_the_deadline_or_when_the_instance_goes() -> None:
    s = lambda active, alive=True: inst("p", "stt", active=active, alive=alive)  # noqa: E731
    watch = DrainWatch("p", started=0.0, timeout_s=5.0)
    assert watch.observe(4.9, s(3)).outcome is None
    late = watch.observe(5.0, s(3))
    assert late.outcome is DrainOutcome.TIMED_OUT and late.message == "p: 3 session(s) still active after 5 s"
    assert watch.active == 3
    assert DrainWatch("p", 0.0, 5.0).observe(1.0, None).outcome is DrainOutcome.LEFT
    assert DrainWatch("p", 0.0, 5.0).observe(1.0, s(2, alive=False)).outcome is DrainOutcome.DIED


# -- the command flows over a fake API --------------------------------------------------------


class FakeApi:
    """A `ClusterApi` holding Deployments, pods and HPAs in dicts."""

    def __init__(self) -> None:
        self.deployments: dict[str, DeploymentInfo] = {}
        self.pods: dict[str, PodInfo] = {}
        self.hpas: list[HpaInfo] = []
        self.scaled: list[tuple[str, int]] = []
        self.deleted: list[str] = []

    def list_pods(self, namespace: str, selector: str) -> list[PodInfo]:
        return list(self.pods.values())

    def read_pod(self, namespace: str, name: str) -> PodInfo | None:
        return self.pods.get(name)

    def delete_pod(self, namespace: str, name: str) -> None:
        self.deleted.append(name)
        del self.pods[name]

    def list_deployments(self, namespace: str, selector: str) -> list[DeploymentInfo]:
        return list(self.deployments.values())

    def read_deployment(self, namespace: str, name: str) -> DeploymentInfo | None:
        return self.deployments.get(name)

    def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        self.scaled.append((name, replicas))
        d = self.deployments[name]
        self.deployments[name] = DeploymentInfo(d.name, d.labels, replicas, d.ready)

    def list_hpas(self, namespace: str) -> list[HpaInfo]:
        return list(self.hpas)

    def node_zones(self, names: list[str]) -> dict[str, str]:
        return {}


@pytest.fixture
def api() -> FakeApi:
    fake = FakeApi()
    fake.deployments["voicemesh-stt"] = DeploymentInfo("voicemesh-stt", labels("stt"), 2, 2)
    fake.pods["voicemesh-stt-a"] = pod("voicemesh-stt-a", "stt")
    return fake


def test_scale_patches_the_service_deployment(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    assert cluster_scale(api, NS, "voicemesh", "stt", 5, False, Output(False)) == 0
    assert api.scaled == [("voicemesh-stt", 5)]
    assert capsys.readouterr().out == "scaled Deployment voicemesh-stt from 2 to 5 replica(s)\n"


def test_scale_under_an_hpa_is_refused_without_force(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.hpas.append(HpaInfo("voicemesh-stt", "Deployment", "voicemesh-stt", 2, 8))
    with pytest.raises(CommandError) as refused:
        cluster_scale(api, NS, "voicemesh", "stt", 5, False, Output(False))
    assert refused.value.code == 1
    assert str(refused.value).startswith(
        "HPA voicemesh-stt manages voicemesh-stt (2-8 replicas) and would undo"
    )
    assert "or pass --force" in str(refused.value)
    assert api.scaled == []
    assert cluster_scale(api, NS, "voicemesh", "stt", 0, True, Output(False)) == 0
    assert api.scaled == [("voicemesh-stt", 0)]
    assert "with 0 replicas HPA voicemesh-stt stops scaling" in capsys.readouterr().out


def test_scale_of_a_missing_deployment_names_it(api: FakeApi) -> None:
    with pytest.raises(CommandError, match="Deployment prod-voicemesh-tts not found in namespace voice"):
        cluster_scale(api, NS, "prod", "tts", 1, False, Output(False))
    with pytest.raises(CommandError) as unknown:
        cluster_scale(api, NS, "voicemesh", "asr", 1, False, Output(False))
    assert unknown.value.code == 2 and "the services are: session-router, stt" in str(unknown.value)


def test_drain_without_registry_refuses_unless_forced(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    def drain(*, delete: bool, force: bool) -> int:
        return cluster_drain(
            api,
            NS,
            "voicemesh",
            "voicemesh-stt-a",
            None,
            timeout_s=1.0,
            delete=delete,
            force=force,
            out=Output(False),
        )

    with pytest.raises(CommandError, match=r"registry not reached .* pass --force to delete it anyway"):
        drain(delete=True, force=False)
    assert api.deleted == []
    with pytest.raises(CommandError, match="cannot mark voicemesh-stt-a draining: registry not reached"):
        drain(delete=False, force=True)
    assert drain(delete=True, force=True) == 0
    assert api.deleted == ["voicemesh-stt-a"]
    assert "deleting voicemesh-stt-a undrained (--force)" in capsys.readouterr().out
    with pytest.raises(CommandError, match="pod voicemesh-stt-a not found in namespace voice"):
        drain(delete=True, force=True)


# -- usage errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["cluster", "scale", "asr", "2"], "unknown service 'asr'; the services are: session-router, stt"),
        (["cluster", "scale", "stt", "-1"], "argument N: must be 0 or more, got -1"),
        (["cluster", "scale", "stt", "two"], "argument N: 'two' is not a whole number"),
        (["cluster", "drain", "p", "--timeout", "soon"], "'soon' is not a number of seconds"),
        (["cluster"], "required: COMMAND"),
    ],
)
def test_usage_errors_exit_2_and_name_the_problem(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli_main.build_parser().parse_args(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_a_missing_kubeconfig_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.yaml"
    args = cli_main.build_parser().parse_args(["cluster", "status", "--kubeconfig", str(missing)])
    assert args.func(args) == 2
    assert (
        capsys.readouterr().err == f"voicemesh cluster status: error: --kubeconfig {missing}: no such file\n"
    )
