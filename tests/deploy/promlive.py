"""A real Prometheus (Debian's /usr/bin/prometheus) on a free loopback port, for tests.

`PrometheusServer` writes its config, starts it with a temporary storage directory, waits
until it is ready, and answers PromQL over the HTTP API. Stopped by PID (it dies with the
test process as well).
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from voicemesh.mesh.localservers import LocalServer, free_port

T = TypeVar("T")


class PromError(RuntimeError):
    """Prometheus answered with an error (a bad expression, say); the message is its own."""


@dataclass(frozen=True)
class ScrapeTarget:
    """One service's metrics endpoint and the target labels it gets."""

    job: str
    address: str  # host:port
    labels: Mapping[str, str]


def prometheus_config(
    targets: list[ScrapeTarget], rule_files: list[Path], interval_s: float = 1.0
) -> dict[str, Any]:
    """A config scraping and evaluating every `interval_s`. honor_labels keeps the samples'
    own `service` label when the target's label of the same name is set too (as the chart's
    ServiceMonitor must), so samples do not grow an `exported_service`."""
    interval = f"{interval_s:g}s"
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [
            {
                "job_name": t.job,
                "honor_labels": True,
                "static_configs": [{"targets": [t.address], "labels": dict(t.labels)}],
            }
            for t in targets
        ],
    }


def prometheus_binary() -> str | None:
    return shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )


@dataclass
class PrometheusServer:
    workdir: Path
    config: dict[str, Any]
    port: int = field(default_factory=free_port)
    server: LocalServer | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 20.0) -> None:
        binary = prometheus_binary()
        if binary is None:
            raise FileNotFoundError("prometheus is not installed (scripts/tools.sh installs Debian's)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_path = self.workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        argv = [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1h",
            "--log.level=warn",
        ]
        self.server = LocalServer("prometheus", argv, "127.0.0.1", self.port, self.workdir / "prometheus.log")
        self.server.start(timeout_s)
        self.wait_for(lambda: self._ready(), timeout_s, "prometheus /-/ready")

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def log(self) -> str:
        path = self.workdir / "prometheus.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # ---- HTTP API ------------------------------------------------------------------------

    def _get(self, path: str, params: Mapping[str, str] | list[tuple[str, str]] | None = None) -> Any:
        query = "?" + urllib.parse.urlencode(params) if params else ""
        try:
            with urllib.request.urlopen(self.url + path + query, timeout=10) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as exc:  # 400/422: a bad expression, with its reason
            body = json.loads(exc.read() or b"{}")
        if body.get("status") != "success":
            raise PromError(f"{body.get('errorType', '?')}: {body.get('error', body)}")
        return body["data"]

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector `expr` evaluates to now (a scalar comes back as one sample)."""
        data = self._get("/api/v1/query", {"query": expr})
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        if data["resultType"] != "vector":
            raise PromError(f"{expr}: a {data['resultType']}, not an instant vector")
        return list(data["result"])

    def label_values(self, label: str, match: str) -> list[str]:
        return list(self._get(f"/api/v1/label/{label}/values", [("match[]", match)]))

    def targets(self) -> list[dict[str, Any]]:
        return list(self._get("/api/v1/targets", {"state": "active"})["activeTargets"])

    def metadata(self, metric: str) -> list[dict[str, Any]]:
        """What the targets say about a metric family (HELP/TYPE), with or without samples."""
        return list(self._get("/api/v1/targets/metadata", {"metric": metric}))

    def rule_groups(self) -> list[dict[str, Any]]:
        return list(self._get("/api/v1/rules")["groups"])

    def alerts(self) -> list[dict[str, Any]]:
        return list(self._get("/api/v1/alerts")["alerts"])

    # ---- waiting -------------------------------------------------------------------------

    @staticmethod
    def wait_for(check: Callable[[], T], timeout_s: float, what: str, every_s: float = 0.2) -> T:
        """Poll `check` until it returns something truthy; AssertionError naming `what` after
        `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
            time.sleep(every_s)


def has_finite_value(result: list[dict[str, Any]]) -> bool:
    """At least one sample that a panel would draw (NaN and ±Inf are gaps in Grafana)."""
    for sample in result:
        raw = sample["value"][1]
        if raw not in ("NaN", "+Inf", "-Inf"):
            return True
    return False
