"""The Helm chart's monitoring objects: the ServiceMonitor, the PrometheusRule and the
Grafana dashboard ConfigMaps, with the repository's files and with a stand-in set."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from .conftest import FULLNAME, KUBE_VERSIONS, SERVICES, TOKEN_SET, Render, Renderer, component_of
from .netpolicy import matches

pytestmark = pytest.mark.integration


def test_service_monitor_scrapes_every_service(production: Render) -> None:
    (monitor,) = production.of_kind("ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    # The metrics' own `service` label (stt, tts, ...) must survive the scrape.
    assert endpoint["honorLabels"] is True
    # ... and the target's own series (`up`) carry the same key, not the Service name.
    assert endpoint["relabelings"][0] == {
        "sourceLabels": ["__meta_kubernetes_service_label_app_kubernetes_io_component"],
        "targetLabel": "service",
        "action": "replace",
    }
    selector = monitor["spec"]["selector"]
    selected = {
        component_of(s) for s in production.of_kind("Service") if matches(selector, s["metadata"]["labels"])
    }
    assert selected == set(SERVICES)


def test_prometheus_rule_embeds_the_rules_file(production: Render, chart_dir: Path) -> None:
    rules = yaml.safe_load((chart_dir / "files" / "rules" / "voicemesh.rules.yaml").read_text())
    (rule,) = production.of_kind("PrometheusRule")
    assert rule["spec"]["groups"] == (rules.get("groups") or [])


def test_dashboards_configmaps_carry_every_dashboard(
    production: Render, defaults: Render, chart_dir: Path
) -> None:
    files = sorted((chart_dir / "files" / "dashboards").glob("*.json"))
    for render in (production, defaults):
        maps = [
            c for c in render.of_kind("ConfigMap") if c["metadata"]["labels"].get("grafana_dashboard") == "1"
        ]
        embedded = {key: json.loads(value) for c in maps for key, value in c["data"].items()}
        assert embedded == {f.name: json.loads(f.read_text()) for f in files}


@pytest.fixture(scope="module")
def observability_chart(tmp_path_factory: pytest.TempPathFactory, chart_dir: Path) -> Path:
    """A copy of the chart with dashboards and rules in place, whatever the repository has."""
    copy = tmp_path_factory.mktemp("chart") / "voicemesh"
    shutil.copytree(chart_dir, copy)
    dashboards = copy / "files" / "dashboards"
    shutil.rmtree(dashboards, ignore_errors=True)
    dashboards.mkdir(parents=True)
    (dashboards / "calls_overview.json").write_text(
        json.dumps({"title": "Calls", "uid": "vm-calls", "panels": []})
    )
    (dashboards / "Media-Quality.json").write_text(
        json.dumps({"title": "Media", "uid": "vm-media", "panels": [{"id": 1}]})
    )
    rules = {
        "groups": [
            {
                "name": "voicemesh.recording",
                "rules": [
                    {
                        "record": "voicemesh:v2v:p95",
                        "expr": "histogram_quantile(0.95, sum by (le) (rate(x[5m])))",
                    }
                ],
            },
            {
                "name": "voicemesh.alerts",
                "rules": [
                    {
                        "alert": "VoicemeshStageDown",
                        "expr": "up == 0",
                        "for": "2m",
                        "labels": {"severity": "critical"},
                        "annotations": {"summary": "{{ $labels.service }} is down"},
                    }
                ],
            },
        ]
    }
    (copy / "files" / "rules" / "voicemesh.rules.yaml").write_text(yaml.safe_dump(rules))
    return copy


def test_chart_embeds_dashboards_and_rules_when_present(
    renderer: Renderer, observability_chart: Path
) -> None:
    render = renderer.template(
        sets=(
            *TOKEN_SET,
            "metrics.prometheusRule.enabled=true",
            "metrics.dashboards.label=grafana_dash",
            "metrics.dashboards.labelValue=yes",
        ),
        chart=observability_chart,
    ).ok()
    (rule,) = render.of_kind("PrometheusRule")
    source = yaml.safe_load((observability_chart / "files" / "rules" / "voicemesh.rules.yaml").read_text())
    assert rule["spec"]["groups"] == source["groups"]  # alert templates pass through untouched
    maps = {
        c["metadata"]["name"]: c
        for c in render.of_kind("ConfigMap")
        if "grafana_dash" in c["metadata"]["labels"]
    }
    assert set(maps) == {f"{FULLNAME}-dashboard-calls-overview", f"{FULLNAME}-dashboard-media-quality"}
    assert all(c["metadata"]["labels"]["grafana_dash"] == "yes" for c in maps.values())
    embedded = {k: json.loads(v) for c in maps.values() for k, v in c["data"].items()}
    for path in (observability_chart / "files" / "dashboards").glob("*.json"):
        assert embedded[path.name] == json.loads(path.read_text())
    for doc in render.of_kind("ConfigMap"):
        kubernetes_validate.validate(doc, KUBE_VERSIONS[-1], strict=True)
    off = renderer.template(
        sets=(*TOKEN_SET, "metrics.dashboards.enabled=false"), chart=observability_chart
    ).ok()
    assert not [c for c in off.of_kind("ConfigMap") if "dashboard" in c["metadata"]["name"]]
