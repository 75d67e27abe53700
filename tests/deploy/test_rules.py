"""The chart's Prometheus rule file: promtool's own checks and unit tests (every alert fires
on a series that should page and stays quiet on one that should not), and what a reviewer
would check by hand: labels, annotations, metric names the services really expose."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from .observability import REPO, RULES_FILE, metric_names, recorded_names, rules, service_sample_names

RULE_TESTS = sorted((Path(__file__).resolve().parent / "rules").glob("*.test.yaml"))
SEVERITIES = {"warning", "critical"}
ANNOTATIONS = {"summary", "description", "runbook"}


def promtool() -> str:
    found = shutil.which("promtool") or ("/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None)
    if found is None:
        pytest.skip("promtool is not installed (scripts/tools.sh installs Debian's prometheus package)")
    return found


@pytest.mark.integration
def test_promtool_accepts_the_rule_file() -> None:
    proc = subprocess.run(
        [promtool(), "check", "rules", str(RULES_FILE)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rules())} rules found" in proc.stdout + proc.stderr


@pytest.mark.integration
def test_promtool_unit_tests_pass() -> None:
    assert RULE_TESTS, "no tests/deploy/rules/*.test.yaml"
    proc = subprocess.run(
        [promtool(), "test", "rules", *map(str, RULE_TESTS)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert output.count("SUCCESS") == len(RULE_TESTS), output


def _alert_cases() -> tuple[set[str], set[str]]:
    """Alert names some promtool test expects to fire, and those some test expects quiet."""
    fires: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        doc = yaml.safe_load(path.read_text())
        assert doc["rule_files"] == ["../../../deploy/helm/voicemesh/files/rules/voicemesh.rules.yaml"], path
        for test in doc["tests"]:
            for case in test.get("alert_rule_test", []):
                (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
    return fires, quiet


@pytest.mark.unit
def test_every_alert_has_a_test_that_fires_it_and_one_that_keeps_it_quiet() -> None:
    fires, quiet = _alert_cases()
    alerts = {r.name for r in rules() if r.kind == "alert"}
    assert alerts - fires == set(), "alerts no test makes fire"
    assert alerts - quiet == set(), "alerts no test keeps quiet"
    assert (fires | quiet) - alerts == set(), "tests of alerts the rule file does not have"


@pytest.mark.unit
def test_every_severity_of_an_alert_is_tested_firing() -> None:
    """An alert with a warning and a critical rule: a test sees each severity fire."""
    seen: set[tuple[str, str]] = set()
    for path in RULE_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                for alert in case.get("exp_alerts") or []:
                    seen.add((case["alertname"], alert["exp_labels"]["severity"]))
    expected = {(r.name, r.labels["severity"]) for r in rules() if r.kind == "alert"}
    assert expected - seen == set()


@pytest.mark.unit
def test_alerts_carry_a_severity_and_the_annotations_an_on_call_engineer_reads() -> None:
    for rule in rules():
        if rule.kind != "alert":
            continue
        assert rule.labels.get("severity") in SEVERITIES, rule.key
        assert set(rule.annotations) == ANNOTATIONS, rule.key
        for name, text in rule.annotations.items():
            assert len(text.strip()) > 20, (rule.key, name)
        assert rule.name.startswith("Voicemesh"), rule.key


@pytest.mark.unit
def test_rules_read_only_metrics_the_services_expose() -> None:
    known = service_sample_names() | recorded_names()
    for rule in rules():
        unknown = metric_names(rule.expr) - known
        assert unknown == set(), f"{rule.key} reads {sorted(unknown)}, which no voicemesh service exposes"


@pytest.mark.unit
def test_recorded_series_follow_the_naming_convention_and_are_used() -> None:
    from .observability import dashboards, targets

    readers = [r.expr for r in rules()] + [t.expr for d in dashboards().values() for t in targets(d)]
    for name in recorded_names():
        assert name.startswith("voicemesh:") and name.count(":") == 2, name
        assert any(name in metric_names(expr) for expr in readers), f"{name} is recorded but nothing reads it"
