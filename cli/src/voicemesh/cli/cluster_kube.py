"""The Kubernetes calls `voicemesh cluster` makes, behind one small Protocol.

`ClusterApi` is the seam: the commands take any object with these methods and get back the
plain records of `cluster` (a fake in the unit tests, `KubeClusterApi` over the official
`kubernetes` client otherwise). Failures come out as `KubeError` with one line naming what
failed; a missing object is None, not an error.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .cluster import ZONE_LABEL, DeploymentInfo, HpaInfo, PodInfo

if TYPE_CHECKING:
    from kubernetes import client as k8s

REQUEST_TIMEOUT_S = 15.0
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class KubeError(RuntimeError):
    """A Kubernetes API call failed: unreachable, refused (401/403) or rejected."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class KubeConfigError(KubeError):
    """No usable kubeconfig or in-cluster configuration."""


class ClusterApi(Protocol):
    """The few calls the cluster commands need; names and namespaces are exact."""

    def list_pods(self, namespace: str, selector: str) -> list[PodInfo]: ...

    def read_pod(self, namespace: str, name: str) -> PodInfo | None: ...

    def delete_pod(self, namespace: str, name: str) -> None: ...

    def list_deployments(self, namespace: str, selector: str) -> list[DeploymentInfo]: ...

    def read_deployment(self, namespace: str, name: str) -> DeploymentInfo | None: ...

    def scale_deployment(self, namespace: str, name: str, replicas: int) -> None: ...

    def list_hpas(self, namespace: str) -> list[HpaInfo]:
        """The namespace's HPAs; [] where the caller may not list them or the API lacks
        autoscaling/v2 (the commands then carry on without HPA information)."""
        ...

    def node_zones(self, names: list[str]) -> dict[str, str]:
        """`topology.kubernetes.io/zone` of each node that can be read (nodes are
        cluster-scoped: an operator may not be allowed to read them)."""
        ...


# -- configuration ------------------------------------------------------------------------


@dataclass(frozen=True)
class KubeTarget:
    """Where the API is and the namespace it defaults to."""

    api: KubeClusterApi
    namespace: str
    source: str  # "kubeconfig PATH" or "in-cluster"


def _default_kubeconfig() -> str | None:
    """$KUBECONFIG (a list joined with ":") or ~/.kube/config, when one of them exists."""
    env = os.environ.get("KUBECONFIG", "")
    if env:
        paths = [p for p in env.split(os.pathsep) if p]
        return env if any(Path(p).expanduser().exists() for p in paths) else None
    home = Path.home() / ".kube" / "config"
    return str(home) if home.exists() else None


def connect(kubeconfig: str | None) -> KubeTarget:
    """An API client from `kubeconfig`, else the standard loading ($KUBECONFIG or
    ~/.kube/config), else the in-cluster service account. Raises KubeConfigError."""
    from kubernetes import client, config

    configuration = client.Configuration()
    path = kubeconfig or _default_kubeconfig()
    if path is not None:
        try:
            config.load_kube_config(
                config_file=path, client_configuration=configuration, persist_config=False
            )
            _, context = config.list_kube_config_contexts(config_file=path)
        except (config.ConfigException, OSError, ValueError, TypeError) as exc:
            raise KubeConfigError(f"cannot use kubeconfig {path}: {exc}") from None
        namespace = (context or {}).get("context", {}).get("namespace") or "default"
        source = f"kubeconfig {path}"
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException as exc:
            raise KubeConfigError(f"cannot use the in-cluster configuration: {exc}") from None
        try:
            namespace = SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
        except OSError:
            namespace = "default"
        source = "in-cluster"
    else:
        raise KubeConfigError(
            "no Kubernetes configuration: no --kubeconfig, no $KUBECONFIG, no ~/.kube/config, "
            "and not running in a cluster"
        )
    return KubeTarget(KubeClusterApi(client.ApiClient(configuration)), namespace, source)


# -- the official client ------------------------------------------------------------------


def _api_message(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    try:
        message = json.loads(body)["message"] if body else ""
    except (ValueError, KeyError, TypeError):
        message = ""
    reason = getattr(exc, "reason", "") or type(exc).__name__
    return str(message or reason)


class KubeClusterApi:
    """`ClusterApi` over the official client (synchronous HTTP)."""

    def __init__(self, api_client: k8s.ApiClient) -> None:
        from kubernetes import client

        self._client = api_client
        self._core = client.CoreV1Api(api_client)
        self._apps = client.AppsV1Api(api_client)
        self._autoscaling = client.AutoscalingV2Api(api_client)
        self.host = str(api_client.configuration.host)

    def close(self) -> None:
        self._client.close()

    def _call(self, what: str, fn: Any, *args: Any, missing_ok: bool = False, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, _request_timeout=REQUEST_TIMEOUT_S, **kwargs)
        except ApiException as exc:
            if missing_ok and exc.status == 404:
                return None
            raise KubeError(f"{what}: {exc.status} {_api_message(exc)}", exc.status) from None
        except HTTPError as exc:
            reason = getattr(exc, "reason", None) or exc
            raise KubeError(f"cannot reach the Kubernetes API at {self.host}: {reason}") from None

    def list_pods(self, namespace: str, selector: str) -> list[PodInfo]:
        result = self._call(
            f"list pods in {namespace}", self._core.list_namespaced_pod, namespace, label_selector=selector
        )
        return [_pod(p) for p in result.items]

    def read_pod(self, namespace: str, name: str) -> PodInfo | None:
        pod = self._call(
            f"read pod {namespace}/{name}", self._core.read_namespaced_pod, name, namespace, missing_ok=True
        )
        return None if pod is None else _pod(pod)

    def delete_pod(self, namespace: str, name: str) -> None:
        _discard(
            self._call(
                f"delete pod {namespace}/{name}",
                self._core.delete_namespaced_pod,
                name,
                namespace,
                _preload_content=False,
            )
        )

    def list_deployments(self, namespace: str, selector: str) -> list[DeploymentInfo]:
        result = self._call(
            f"list deployments in {namespace}",
            self._apps.list_namespaced_deployment,
            namespace,
            label_selector=selector,
        )
        return [_deployment(d) for d in result.items]

    def read_deployment(self, namespace: str, name: str) -> DeploymentInfo | None:
        dep = self._call(
            f"read deployment {namespace}/{name}",
            self._apps.read_namespaced_deployment,
            name,
            namespace,
            missing_ok=True,
        )
        return None if dep is None else _deployment(dep)

    def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        _discard(
            self._call(
                f"scale deployment {namespace}/{name}",
                self._apps.patch_namespaced_deployment_scale,
                name,
                namespace,
                {"spec": {"replicas": replicas}},
                _preload_content=False,
            )
        )

    def list_hpas(self, namespace: str) -> list[HpaInfo]:
        try:
            result = self._call(
                f"list HPAs in {namespace}",
                self._autoscaling.list_namespaced_horizontal_pod_autoscaler,
                namespace,
            )
        except KubeError as exc:
            if exc.status in (403, 404):
                return []
            raise
        return [_hpa(h) for h in result.items]

    def node_zones(self, names: list[str]) -> dict[str, str]:
        zones: dict[str, str] = {}
        for name in names:
            try:
                node = self._call(f"read node {name}", self._core.read_node, name, missing_ok=True)
            except KubeError as exc:
                if exc.status == 403:
                    return zones  # not allowed to read nodes: none will be readable
                raise
            if node is not None:
                zones[name] = (node.metadata.labels or {}).get(ZONE_LABEL, "")
        return zones


def _discard(response: Any) -> None:
    """Read and release a raw response (its body is not needed) so the connection is reused."""
    response.read()
    response.release_conn()


def _pod(pod: k8s.V1Pod) -> PodInfo:
    meta, spec, status = pod.metadata, pod.spec, pod.status
    statuses = (status.container_statuses or []) if status else []
    conditions = (status.conditions or []) if status else []
    ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
    return PodInfo(
        name=meta.name,
        labels=dict(meta.labels or {}),
        phase=(status.phase if status else "") or "",
        ready=ready,
        containers_ready=sum(1 for s in statuses if s.ready),
        containers=len(spec.containers) if spec and spec.containers else len(statuses),
        node=(spec.node_name if spec else "") or "",
        deleting=meta.deletion_timestamp is not None,
        grace_s=spec.termination_grace_period_seconds if spec else None,
    )


def _deployment(dep: k8s.V1Deployment) -> DeploymentInfo:
    spec, status = dep.spec, dep.status
    return DeploymentInfo(
        name=dep.metadata.name,
        labels=dict(dep.metadata.labels or {}),
        desired=(spec.replicas if spec and spec.replicas is not None else 1),
        ready=(status.ready_replicas if status else 0) or 0,
    )


def _hpa(hpa: k8s.V2HorizontalPodAutoscaler) -> HpaInfo:
    spec = hpa.spec
    ref = spec.scale_target_ref
    return HpaInfo(
        name=hpa.metadata.name,
        target_kind=ref.kind,
        target_name=ref.name,
        min_replicas=spec.min_replicas if spec.min_replicas is not None else 1,
        max_replicas=spec.max_replicas,
    )
