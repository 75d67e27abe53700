"""The chart's Grafana dashboards: Grafana's own dashboard schema, the conventions an operator
relies on (a data-source picker, units, descriptions, $__rate_interval), and — the strong
check — every panel query and every rule expression run against a real Prometheus scraping
a local mesh after scripted calls.

Schema: generated at test time from @grafana/schema's TypeScript types (the version
scripts/tools.sh pins) with ts-json-schema-generator, into a temporary directory. That takes
about a second, and keeps no second copy of Grafana's types in the repository to drift. It
is generated *without* `--additional-properties`, so a misspelt key fails too.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from .observability import (
    DASHBOARD_NAMES,
    REPO,
    RULES_FILE,
    Target,
    dashboards,
    metric_names,
    panels,
    range_selectors,
    recorded_names,
    rows,
    rules,
    service_sample_names,
    substitute,
    targets,
    variables,
    variables_used,
)
from .promlive import PrometheusServer, ScrapeTarget, has_finite_value, prometheus_binary, prometheus_config

NODE_MODULES = REPO / ".tools" / "node" / "node_modules"
GRAFANA_TYPES = NODE_MODULES / "@grafana/schema/dist/types/raw/dashboard/x/types.gen.d.ts"
GENERATOR = NODE_MODULES / "ts-json-schema-generator/bin/ts-json-schema-generator.js"
UNITS = {"s", "percentunit", "short", "cpm", "cps"}
GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range", "__all"}
FIXTURES = REPO / "tests" / "e2e" / "fixtures"

# ---- the files as an operator sees them (unit) ------------------------------------------


@pytest.fixture(scope="module")
def dashboard_set() -> dict[str, dict[str, Any]]:
    return dashboards()


@pytest.mark.unit
def test_each_dashboard_has_a_stable_uid_a_recent_schema_and_a_data_source_picker(
    dashboard_set: dict[str, dict[str, Any]],
) -> None:
    assert sorted(p.stem for p in (REPO / "deploy/helm/voicemesh/files/dashboards").glob("*.json")) == sorted(
        DASHBOARD_NAMES
    )
    for name, dash in dashboard_set.items():
        assert dash["uid"] == name  # links and provisioning keep working across versions
        assert dash["schemaVersion"] >= 39
        assert dash.get("id") is None  # Grafana assigns it; a fixed id clashes on import
        assert "voicemesh" in dash["tags"]
        (ds,) = [v for v in dash["templating"]["list"] if v["type"] == "datasource"]
        assert (ds["name"], ds["query"]) == ("datasource", "prometheus")
        assert rows(dash), f"{name}: no rows"


@pytest.mark.unit
def test_every_panel_has_a_description_a_unit_and_the_picked_data_source(
    dashboard_set: dict[str, dict[str, Any]],
) -> None:
    for name, dash in dashboard_set.items():
        titles = [p["title"] for p in panels(dash)]
        assert len(titles) == len(set(titles)), f"{name}: panel titles repeat"
        for panel in panels(dash):
            where = f"{name} / {panel['title']}"
            assert len(panel.get("description", "")) > 30, f"{where}: no description"
            assert panel["fieldConfig"]["defaults"].get("unit") in UNITS, f"{where}: unit"
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
            assert panel["targets"], f"{where}: no query"
            for target in panel["targets"]:
                assert target["datasource"] == panel["datasource"], where


@pytest.mark.unit
def test_panels_tile_the_grid_without_overlapping(dashboard_set: dict[str, dict[str, Any]]) -> None:
    for name, dash in dashboard_set.items():
        ids = [p["id"] for p in dash["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: panel ids repeat"
        taken: dict[tuple[int, int], str] = {}
        for panel in dash["panels"]:
            g = panel["gridPos"]
            assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24, (name, panel["title"])
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    assert (x, y) not in taken, f"{name}: {panel['title']} overlaps {taken[(x, y)]}"
                    taken[(x, y)] = panel["title"]


@pytest.mark.unit
def test_queries_use_rate_interval_defined_variables_and_real_metrics(
    dashboard_set: dict[str, dict[str, Any]],
) -> None:
    known = service_sample_names() | recorded_names()
    for dash in dashboard_set.values():
        defined = {v["name"] for v in dash["templating"]["list"]} | GRAFANA_BUILTINS
        for var in variables(dash):
            assert variables_used(var.selector) <= defined, (dash["uid"], var.name)
        for target in targets(dash):
            assert variables_used(target.expr) <= defined, target.key
            for window in range_selectors(target.expr):
                assert window == "$__rate_interval", f"{target.key}: [{window}] (use $__rate_interval)"
            names = metric_names(target.expr)
            assert names, target.key
            assert names <= known, f"{target.key}: {sorted(names - known)} is exposed by no service"
            assert 'namespace=~"$namespace"' in target.expr, f"{target.key}: not filtered by namespace"


# ---- Grafana's dashboard schema (integration: generated with node) ----------------------


@pytest.fixture(scope="module")
def grafana_schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None or not GENERATOR.exists() or not GRAFANA_TYPES.exists():
        pytest.skip(
            "node or .tools/node (@grafana/schema, ts-json-schema-generator) missing: run scripts/tools.sh"
        )
    out = tmp_path_factory.mktemp("grafana-schema") / "dashboard.schema.json"
    proc = subprocess.run(
        [
            node,
            str(GENERATOR),
            "--path",
            str(GRAFANA_TYPES),
            "--type",
            "Dashboard",
            "--no-type-check",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(out.read_text()))


def _schema_errors(schema: dict[str, Any], doc: dict[str, Any]) -> list[str]:
    import jsonschema

    out = []
    for error in jsonschema.Draft7Validator(schema).iter_errors(doc):
        details = [error]
        if error.context:  # a panel is anyOf(Panel, RowPanel): the complaints of its own kind
            row = isinstance(error.instance, dict) and error.instance.get("type") == "row"
            details = [e for e in error.context if e.relative_schema_path[0] == (1 if row else 0)]
        for detail in details:
            out.append(f"{'/'.join(map(str, detail.absolute_path))}: {detail.message[:300]}")
    return out


@pytest.mark.integration
def test_dashboards_match_grafanas_dashboard_schema(
    grafana_schema: dict[str, Any], dashboard_set: dict[str, dict[str, Any]]
) -> None:
    assert grafana_schema["$ref"] == "#/definitions/Dashboard"
    for name, dash in dashboard_set.items():
        assert _schema_errors(grafana_schema, dash) == [], name


@pytest.mark.integration
def test_the_schema_check_catches_a_misspelt_key(
    grafana_schema: dict[str, Any], dashboard_set: dict[str, dict[str, Any]]
) -> None:
    broken = json.loads(json.dumps(dashboard_set["voicemesh-overview"]))
    broken["panels"][1]["titel"] = "typo"
    broken["panels"][2]["gridPos"]["w"] = "six"
    errors = _schema_errors(grafana_schema, broken)
    assert any("titel" in e for e in errors), errors
    assert any("panels/2/gridPos/w" in e for e in errors), errors


# ---- live: a real Prometheus scraping a local mesh (e2e) --------------------------------

NAMESPACE = "local"  # the target label the scrape config gives, as Kubernetes would
REGION = "local"  # VOICEMESH_REGION's default: where every local instance registers
SERVICES = ("media-edge", "stt", "reasoning", "tts", "session-router")
# $__rate_interval and friends: longer than the whole test, so a window covers every call.
WINDOWS = {"__rate_interval": "5m", "__interval": "15s", "__range": "5m"}

# Expressions that legitimately return no data after the scripted calls (a native call
# with one normal turn, a Twilio call whose caller barges in, a caller refused for a wrong
# token), each with why and what must return data instead: its underlying series. A
# "metadata:NAME" entry means the family has no sample yet (a counter no label set of which
# has been incremented) and its target must at least declare it. An expression listed here
# that does return data passes too (under load, say, a latency alert may be pending).
NO_DATA_AFTER_NORMAL_CALLS: dict[str, tuple[str, list[str]]] = {
    # --- alert conditions that are false on a healthy mesh ---
    "VoicemeshVoiceToVoiceLatencyHigh (warning)": (
        "voice-to-voice p95 is under 1 s on a healthy mesh",
        ["voicemesh:voice_to_voice_seconds:p95"],
    ),
    "VoicemeshVoiceToVoiceLatencyHigh (critical)": (
        "voice-to-voice p95 is under 2 s on a healthy mesh",
        ["voicemesh:voice_to_voice_seconds:p95"],
    ),
    "VoicemeshCallFailureRatioHigh (critical)": (
        "no call failed, and two calls are fewer than the 5 it needs to judge",
        ['sum by (namespace) (rate(voicemesh_sessions_total{service="media-edge"}[10m]))'],
    ),
    "VoicemeshErrorRateHigh (warning)": (
        "one refused caller is far from one error a minute",
        ["sum by (namespace, service, kind) (rate(voicemesh_errors_total[5m])) * 60"],
    ),
    "VoicemeshStageDown (critical)": (
        "every stage has a healthy instance (test_stopping_stt_raises_stage_down makes it fire)",
        [
            'count by (namespace, service) (up{service=~"media-edge|stt|reasoning|tts|session-router"} == 1'
            " unless on (namespace, instance) (voicemesh_draining == 1))",
        ],
    ),
    "VoicemeshNoServingInstancesInRegion (critical)": (
        "every role serves in the region",
        ['max by (namespace, region, role) (voicemesh_registry_instances{state="serving"}) > 0'],
    ),
    "VoicemeshRegionNearCapacity (warning)": ("two calls fill no region", ["voicemesh:load:ratio"]),
    "VoicemeshNoCapacity (critical)": (
        "no placement was refused; the refusal counters stand at 0, so the first refusal counts",
        ['voicemesh_router_decisions_total{result="no_capacity", role=~"stt|reasoning|tts"}'],
    ),
    "VoicemeshFrameProcessingSlow (warning)": (
        "the edge spends well under 10 ms on a frame",
        ["voicemesh:frame_processing_seconds:p99"],
    ),
    # --- panels over series a short normal call does not move ---
    # The edge measures RTT with its WebSocket keepalive ping, every 20 s
    # (edge/ingress.py PING_INTERVAL_S): a call shorter than that has no round trip yet.
    "voicemesh-media / Round-trip time by transport / A": (
        "no keepalive ping completed during the calls (one every 20 s)",
        ['voicemesh_media_rtt_seconds_count{transport=~"native|twilio"}'],
    ),
    "voicemesh-media / Round-trip time by transport / B": (
        "no keepalive ping completed during the calls (one every 20 s)",
        ['voicemesh_media_rtt_seconds_count{transport=~"native|twilio"}'],
    ),
    # Only SIP has a jitter buffer of the edge's own; its series exist at 0 from start.
    "voicemesh-media / Jitter buffer delay by transport / A": (
        "the scripted calls are native and Twilio: no SIP call fills the SIP jitter buffer",
        ['voicemesh_jitter_buffer_delay_seconds_count{transport="sip"}'],
    ),
    "voicemesh-media / Jitter buffer delay by transport / B": (
        "the scripted calls are native and Twilio: no SIP call fills the SIP jitter buffer",
        ['voicemesh_jitter_buffer_delay_seconds_count{transport="sip"}'],
    ),
    "voicemesh-media / Jitter buffer depth by transport / A": (
        "the scripted calls are native and Twilio: no SIP call fills the SIP jitter buffer",
        ['voicemesh_jitter_buffer_depth_seconds_count{transport="sip"}'],
    ),
    "voicemesh-media / Jitter buffer depth by transport / B": (
        "the scripted calls are native and Twilio: no SIP call fills the SIP jitter buffer",
        ['voicemesh_jitter_buffer_depth_seconds_count{transport="sip"}'],
    ),
    "voicemesh-media / Dropped frames and items per second / A": (
        "nothing was dropped: the bounded queues kept up",
        ["metadata:voicemesh_dropped_total"],
    ),
}


@dataclass
class LiveMesh:
    mesh: Any  # LocalMesh
    prom: PrometheusServer
    phases: dict[str, float] = field(default_factory=dict)
    values: dict[str, dict[str, str]] = field(default_factory=dict)  # per dashboard: $var -> text


def _scrape_targets(mesh: Any) -> list[ScrapeTarget]:
    """Every service's metrics port, with the labels the chart's ServiceMonitor gives:
    job, the service key, the namespace."""
    return [
        ScrapeTarget(
            job=f"voicemesh-{name}",
            address=f"127.0.0.1:{port}",
            labels={"service": name, "namespace": NAMESPACE},
        )
        for name, port in mesh.ports.metrics.items()
    ]


async def _scripted_calls(mesh: Any) -> tuple[Any, Any, str]:
    from voicemesh.cli.twilio_client import place_twilio_call
    from voicemesh.cli.wsclient import CallFailed, place_call

    async def refused() -> str:
        try:
            await place_call(mesh.edge_url, "not-the-token", [FIXTURES / "caller_yes.wav"])
        except CallFailed as exc:
            return str(exc)
        return "the call was placed"

    native = place_call(mesh.edge_url, mesh.token, [FIXTURES / "caller_party.wav"], turn_timeout_s=30)
    twilio = place_twilio_call(
        mesh.twilio_url,
        mesh.twilio_auth_token,
        [FIXTURES / "caller_party.wav", FIXTURES / "caller_when.wav"],
        barge_in={1: 300},  # talks over the reply to the first turn, 300 ms into it
    )
    return await asyncio.gather(native, twilio, refused())


def _rfc3339(text: str) -> float:
    """Prometheus's timestamps carry nanoseconds; Python parses microseconds."""
    head, _, frac = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00").timestamp()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveMesh]:
    if prometheus_binary() is None:
        pytest.skip("prometheus is not installed (scripts/tools.sh installs Debian's)")
    from voicemesh.cli.localmesh import LocalMesh, MeshPorts

    phases: dict[str, float] = {}
    began = time.monotonic()
    home = tmp_path_factory.mktemp("promlive")
    mesh = LocalMesh(home / "mesh", REPO / "agents", MeshPorts.free(), default_agent="restaurant")
    prom = PrometheusServer(home / "prometheus", prometheus_config(_scrape_targets(mesh), [RULES_FILE]))
    try:
        prom.start()  # first: it takes ~5 s to begin scraping new targets, the mesh as long to start
        phases["prometheus up"] = time.monotonic() - began
        mesh.start()
        phases["mesh up"] = time.monotonic() - began
        prom.wait_for(
            lambda: all(t["health"] == "up" for t in prom.targets()) and len(prom.targets()) == len(SERVICES),
            20,
            "every service's metrics scraped",
        )
        phases["prometheus scraping"] = time.monotonic() - began
        native, twilio, refused = asyncio.run(_scripted_calls(mesh))
        phases["calls done"] = time.monotonic() - began
        assert native.ok and native.turns and native.turns[0].reply_text, (native.errors, native.turns)
        assert twilio.ok and twilio.clears, (twilio.problems, twilio.turns)  # the barge-in happened
        assert "rejected the token (HTTP 401)" in refused, refused
        # Prometheus has scraped the edge after both calls ended (the refused one is no session)
        prom.wait_for(
            lambda: prom.query('sum(voicemesh_sessions_total{service="media-edge"}) >= 2'),
            20,
            "a scrape after the calls",
        )
        scraped_at = time.time()
        prom.wait_for(
            lambda: all(_rfc3339(g["lastEvaluation"]) > scraped_at for g in prom.rule_groups()),
            20,
            "every rule group evaluated after that scrape",
        )
        phases["scraped and evaluated"] = time.monotonic() - began
        yield LiveMesh(mesh, prom, phases)
    finally:
        prom.stop()
        mesh.stop()
        phases["stopped"] = time.monotonic() - began
        print("live check phases (s from start):", {k: round(v, 1) for k, v in phases.items()})
        for name, last_words in mesh.crashed():
            print(f"{name} exited: {last_words}")


def _resolve_variables(live: LiveMesh, dash: dict[str, Any]) -> dict[str, str]:
    """Each query variable's values as Grafana would offer them, substituted the way Grafana
    substitutes a multi-value selection into a regex matcher: (a|b)."""
    values = dict(WINDOWS)
    offered: dict[str, list[str]] = {}
    for var in variables(dash):
        selector = substitute(var.selector, values)
        found = live.prom.label_values(var.label, selector)
        assert found, f"{dash['uid']}: ${var.name} offers nothing (label_values({selector}, {var.label}))"
        offered[var.name] = found
        values[var.name] = "(" + "|".join(found) + ")"
    live.values[dash["uid"]] = values
    return values


def _check(live: LiveMesh, key: str, expr: str, failures: list[str], no_data: list[str]) -> None:
    result = live.prom.query(expr)  # PromError: the expression does not parse or evaluate
    if has_finite_value(result):
        return
    if key not in NO_DATA_AFTER_NORMAL_CALLS:
        failures.append(f"{key}: no data: {expr}")
        return
    reason, underlying = NO_DATA_AFTER_NORMAL_CALLS[key]
    no_data.append(f"{key}: {reason}")
    for selector in underlying:
        if selector.startswith("metadata:"):
            metric = selector.removeprefix("metadata:")
            # Prometheus scrapes OpenMetrics, whose counter families drop the _total suffix
            family = metric.removesuffix("_total")
            if not (live.prom.metadata(metric) or live.prom.metadata(family)):
                failures.append(f"{key}: no target declares {metric}")
        elif not has_finite_value(live.prom.query(selector)):
            failures.append(f"{key}: no data, nor in its underlying {selector}")


@pytest.mark.e2e
def test_every_template_variable_offers_the_meshs_values(live: LiveMesh) -> None:
    for dash in dashboards().values():
        _resolve_variables(live, dash)
    assert live.values["voicemesh-capacity"]["region"] == f"({REGION})"
    assert live.values["voicemesh-overview"]["namespace"] == f"({NAMESPACE})"
    services = live.values["voicemesh-capacity"]["service"].strip("()").split("|")
    assert sorted(services) == sorted(SERVICES)  # every service reports voicemesh_instance_info
    transports = live.values["voicemesh-media"]["transport"].strip("()").split("|")
    assert {"native", "twilio"} <= set(transports)


@pytest.mark.e2e
def test_every_panel_query_returns_data_after_the_calls(live: LiveMesh) -> None:
    failures: list[str] = []
    no_data: list[str] = []
    checked: list[Target] = []
    for dash in dashboards().values():
        values = _resolve_variables(live, dash)
        for target in targets(dash):
            _check(live, target.key, substitute(target.expr, values), failures, no_data)
            checked.append(target)
    print("panels with no data (expected):", *no_data, sep="\n  ")
    assert failures == [], "\n".join(failures)
    assert len(checked) >= 30


@pytest.mark.e2e
def test_every_rule_expression_returns_data_or_its_underlying_series_do(live: LiveMesh) -> None:
    failures: list[str] = []
    no_data: list[str] = []
    for rule in rules():
        _check(live, rule.key, rule.expr, failures, no_data)
    print("rules with no data (expected):", *no_data, sep="\n  ")
    assert failures == [], "\n".join(failures)


@pytest.mark.e2e
def test_the_live_checks_can_fail(live: LiveMesh) -> None:
    """A misspelt metric returns nothing, nor is it declared: the checks above would catch it."""
    assert live.prom.query('sum(rate(voicemesh_calls_startd_total{namespace=~"(local)"}[5m]))') == []
    assert live.prom.metadata("voicemesh_calls_startd_total") == []
    assert live.prom.metadata("voicemesh_dropped") or live.prom.metadata("voicemesh_dropped_total")


@pytest.mark.unit
def test_the_no_data_list_names_only_real_panels_and_rules() -> None:
    keys = {t.key for d in dashboards().values() for t in targets(d)} | {r.key for r in rules()}
    assert set(NO_DATA_AFTER_NORMAL_CALLS) - keys == set()


@pytest.mark.e2e
def test_prometheus_loads_and_evaluates_every_rule_without_error(live: LiveMesh) -> None:
    loaded = [rule for group in live.prom.rule_groups() for rule in group["rules"]]
    assert len(loaded) == len(rules())
    unhealthy = [(r["name"], r["health"], r.get("lastError")) for r in loaded if r["health"] != "ok"]
    assert unhealthy == []


@pytest.mark.e2e
def test_a_healthy_mesh_raises_no_availability_or_capacity_alert(live: LiveMesh) -> None:
    quiet = {
        "VoicemeshStageDown",
        "VoicemeshNoServingInstancesInRegion",
        "VoicemeshNoCapacity",
        "VoicemeshRegionNearCapacity",
        "VoicemeshCallFailureRatioHigh",
    }
    active = [(a["labels"]["alertname"], a["labels"], a["state"]) for a in live.prom.alerts()]
    assert [a for a in active if a[0] in quiet] == []


@pytest.mark.e2e
def test_stopping_stt_raises_stage_down_for_stt_alone(live: LiveMesh) -> None:
    """Runs last: it takes stt away from the module's mesh."""
    (stt,) = [s for s in live.mesh.services if s.name == "stt"]
    stt.proc.send_signal(signal.SIGTERM)  # drains (voicemesh_draining 1), then exits

    def stage_down() -> list[dict[str, Any]]:
        return [
            a
            for a in live.prom.alerts()
            if a["labels"]["alertname"] == "VoicemeshStageDown" and a["state"] in ("pending", "firing")
        ]

    alerts = live.prom.wait_for(stage_down, 20, "VoicemeshStageDown for stt")
    assert [(a["labels"].get("service"), a["labels"].get("namespace")) for a in alerts] == [
        ("stt", NAMESPACE)
    ]
