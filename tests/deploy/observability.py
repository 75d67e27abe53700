"""The chart's Grafana dashboards and Prometheus rule file, read as data for the tests.

Pure: no servers, no clock. `test_dashboards.py` and `test_rules.py` check the files with it,
and the live check sends what it extracts to a real Prometheus.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "voicemesh"
DASHBOARDS_DIR = CHART / "files" / "dashboards"
RULES_FILE = CHART / "files" / "rules" / "voicemesh.rules.yaml"
DASHBOARD_NAMES = ("voicemesh-overview", "voicemesh-media", "voicemesh-capacity")

# `metric{...}` or a bare metric name, as PromQL writes a vector selector. Label names, function
# names and keywords are told apart by what follows them (see `metric_names`).
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "offset", "bool", "inf", "nan", "le",
}  # fmt: skip
_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)\}")


@dataclass(frozen=True)
class Target:
    """One query of one panel."""

    dashboard: str  # uid
    panel: str  # title
    ref_id: str
    expr: str

    @property
    def key(self) -> str:
        return f"{self.dashboard} / {self.panel} / {self.ref_id}"


@dataclass(frozen=True)
class Variable:
    """A `query` template variable: label_values(selector, label)."""

    name: str
    selector: str
    label: str


@dataclass(frozen=True)
class Rule:
    group: str
    name: str  # the alert or the recorded series
    kind: str  # "alert" | "record"
    expr: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]

    @property
    def key(self) -> str:
        severity = self.labels.get("severity")
        return f"{self.name} ({severity})" if severity else self.name


def load_dashboard(name: str) -> dict[str, Any]:
    return dict(json.loads((DASHBOARDS_DIR / f"{name}.json").read_text()))


def dashboards() -> dict[str, dict[str, Any]]:
    return {name: load_dashboard(name) for name in DASHBOARD_NAMES}


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that is not a row, including those inside collapsed rows."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def rows(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard.get("panels", []) if p.get("type") == "row"]


def targets(dashboard: Mapping[str, Any]) -> Iterator[Target]:
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield Target(dashboard["uid"], panel["title"], target["refId"], target["expr"])


def variables(dashboard: Mapping[str, Any]) -> list[Variable]:
    """The `query` variables, in the order Grafana resolves them."""
    out = []
    for var in dashboard["templating"]["list"]:
        if var["type"] != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        m = re.fullmatch(r"\s*label_values\((.+),\s*(\w+)\)\s*", query)
        if not m:
            raise ValueError(f"{dashboard['uid']}: variable {var['name']}: not label_values(...): {query}")
        out.append(Variable(var["name"], m.group(1).strip(), m.group(2)))
    return out


def variables_used(text: str) -> set[str]:
    return {a or b for a, b in _VARIABLE.findall(text)}


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """`expr` with Grafana's variables replaced: `values` maps a name (without `$`) to text."""

    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in values:
            raise KeyError(f"no value for ${name} in {expr}")
        return values[name]

    return _VARIABLE.sub(one, expr)


def range_selectors(expr: str) -> list[str]:
    """The `[...]` windows of an expression (range vectors and subqueries)."""
    return re.findall(r"\[([^\]]+)\]", expr)


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (a best effort over PromQL's grammar, good for
    the expressions in these files): identifiers not followed by `(` (functions), not label
    names inside `{...}` or `by (...)`/`on (...)` lists, not keywords."""
    names: set[str] = set()
    # drop string literals and label matchers, and the label lists of by/on/group_left...
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "{}", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\[[^\]]*\]", "[]", text)
    for m in _IDENT.finditer(text):
        word = m.group(0)
        rest = text[m.end() :].lstrip()
        if rest.startswith("(") or word.lower() in _PROMQL_WORDS:
            continue
        if re.fullmatch(r"[0-9.e+-]+", word):
            continue
        names.add(word)
    return names


def rules() -> list[Rule]:
    data = yaml.safe_load(RULES_FILE.read_text())
    out = []
    for group in data["groups"]:
        for rule in group["rules"]:
            kind = "alert" if "alert" in rule else "record"
            out.append(
                Rule(
                    group=group["name"],
                    name=rule[kind],
                    kind=kind,
                    expr=rule["expr"].strip(),
                    labels=rule.get("labels", {}),
                    annotations=rule.get("annotations", {}),
                )
            )
    return out


def recorded_names() -> set[str]:
    return {r.name for r in rules() if r.kind == "record"}


def service_sample_names() -> set[str]:
    """Every sample name a voicemesh service can expose (from the one place the metric
    families are defined, voicemesh.mesh.metrics), plus Prometheus's own `up`."""
    from voicemesh.mesh.metrics import ServiceMetrics

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    names = {"up"}
    for family in ServiceMetrics.create("probe").registry.collect():
        for suffix in suffixes[family.type]:
            names.add(family.name + suffix)
    return names
