"""`voicemesh cluster status | scale SERVICE N | drain POD`: the mesh on Kubernetes.

The thin shell: it fetches from the Kubernetes API (through `cluster_kube.ClusterApi`) and
from the instance registry in Valkey, hands both to the pure functions of `cluster`, prints
what they return (laid out by `cluster_view`) and acts on their decisions. Exit codes: 0 done,
1 the operation failed or was refused (the message says why), 2 a usage error (argparse's, or
a file that is not there).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from redis.exceptions import RedisError

from voicemesh.mesh.registry import InstanceRegistry, InstanceState, connect_redis, redact_url

from .cluster import (
    SERVICES,
    DrainOutcome,
    DrainWatch,
    RegistryReport,
    WaitFor,
    build_status,
    deployment_name,
    drain_target_error,
    hpa_for,
    hpa_forced_note,
    hpa_refusal,
    nodes_to_look_up,
    plan_drain,
    release_selector,
    unknown_service_error,
)
from .cluster_kube import ClusterApi, KubeError, connect
from .cluster_view import format_status, status_json

PROG = "voicemesh cluster"
DEFAULT_RELEASE = "voicemesh"
DEFAULT_DRAIN_TIMEOUT_S = 120.0
POLL_S = 0.5  # registry reads while a drain waits: one small pipeline each


class CommandError(Exception):
    """The command cannot go on; the message is one line naming what was wrong."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class Output:
    """Results on stdout; with --json, progress lines go to stderr so stdout stays JSON."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def say(self, line: str) -> None:
        print(line, file=sys.stderr if self.as_json else sys.stdout, flush=True)

    def result(self, text_lines: list[str], data: object) -> None:
        if self.as_json:
            print(json.dumps(data, indent=2), flush=True)
        else:
            print("\n".join(text_lines), flush=True)


# -- the registry -------------------------------------------------------------------------


async def read_instances(redis_url: str | None) -> tuple[list[InstanceState] | None, RegistryReport]:
    """Every registry instance, or None with the reason when the registry is not reached."""
    if not redis_url:
        return None, RegistryReport(url="", read=False)
    shown = redact_url(redis_url)
    try:
        redis = await connect_redis(redis_url)
    except ConnectionError as exc:
        return None, RegistryReport(url=shown, read=False, error=str(exc))
    try:
        instances = await InstanceRegistry(redis).instances()
    except RedisError as exc:
        return None, RegistryReport(url=shown, read=False, error=f"reading {shown} failed: {exc}")
    finally:
        await redis.aclose()
    return instances, RegistryReport(url=shown, read=True, instances=len(instances))


def _find(states: list[InstanceState], pod: str) -> InstanceState | None:
    return next((s for s in states if s.info.instance_id == pod), None)


@dataclass
class DrainReport:
    marked: bool = False
    waited_for: WaitFor | None = None
    outcome: DrainOutcome | None = None
    active_left: int | None = None
    waited_s: float = 0.0


async def mark_and_wait(
    redis_url: str,
    service: str,
    pod: str,
    *,
    wait: bool,
    timeout_s: float,
    out: Output,
    clock: Callable[[], float] = time.monotonic,
    poll_s: float = POLL_S,
) -> DrainReport:
    """Mark the pod's instance draining, then (when `wait`) poll the registry until what
    `plan_drain` chose is over or `timeout_s` passes. Raises ConnectionError (one line) when
    the registry cannot be reached."""
    redis = await connect_redis(redis_url)
    report = DrainReport()
    try:
        registry = InstanceRegistry(redis)
        state = _find(await registry.instances(service), pod)
        report.waited_for = plan_drain(service, state)
        if state is None:
            return report
        await registry.mark_draining(state.info.service, state.info.instance_id)
        report.marked = True
        out.say(
            f"{pod} is {'still ' if state.draining else ''}marked draining in the registry: "
            "the router gives it no new sessions"
        )
        if not wait:
            return report
        if report.waited_for is not WaitFor.SESSIONS:
            out.say(f"waiting for {report.waited_for.value}")
            return report
        started = clock()
        watch = DrainWatch(pod, started, timeout_s)
        while True:
            step = watch.observe(clock(), _find(await registry.instances(service), pod))
            if step.message:
                out.say(step.message)
            if step.outcome is not None:
                report.outcome = step.outcome
                report.active_left = watch.active
                report.waited_s = clock() - started
                return report
            await asyncio.sleep(min(poll_s, watch.remaining(clock())))
    finally:
        await redis.aclose()


# -- the commands -------------------------------------------------------------------------


def cluster_status(api: ClusterApi, namespace: str, release: str, redis_url: str | None, out: Output) -> int:
    selector = release_selector(release)
    pods = api.list_pods(namespace, selector)
    deployments = api.list_deployments(namespace, selector)
    hpas = api.list_hpas(namespace)
    instances, report = asyncio.run(read_instances(redis_url))
    zones = api.node_zones(nodes_to_look_up(pods, instances))
    status = build_status(
        namespace=namespace,
        release=release,
        pods=pods,
        deployments=deployments,
        hpas=hpas,
        node_zones=zones,
        instances=instances,
        registry=report,
    )
    out.result(format_status(status), status_json(status))
    # A registry that was asked for and not reached is a failure; none asked for is not.
    return 1 if report.url and not report.read else 0


def cluster_scale(
    api: ClusterApi, namespace: str, release: str, service: str, replicas: int, force: bool, out: Output
) -> int:
    error = unknown_service_error(service)
    if error:
        raise CommandError(error, 2)
    name = deployment_name(release, service)
    before = api.read_deployment(namespace, name)
    if before is None:
        raise CommandError(
            f"Deployment {name} not found in namespace {namespace} "
            f"(is release {release} installed there? see --namespace and --release)"
        )
    hpa = hpa_for(api.list_hpas(namespace), name)
    if hpa is not None and not force:
        raise CommandError(hpa_refusal(hpa, service, replicas))
    if before.desired == replicas:
        lines = [f"Deployment {name} already wants {replicas} replica(s) ({before.ready} ready)"]
    else:
        api.scale_deployment(namespace, name, replicas)
        lines = [f"scaled Deployment {name} from {before.desired} to {replicas} replica(s)"]
    after = api.read_deployment(namespace, name)
    desired = after.desired if after is not None else replicas
    if hpa is not None:
        lines.append(hpa_forced_note(hpa, replicas))
    out.result(
        lines,
        {
            "deployment": name,
            "service": service,
            "namespace": namespace,
            "from": before.desired,
            "to": desired,
            "hpa": hpa.name if hpa else None,
        },
    )
    return 0


def cluster_drain(
    api: ClusterApi,
    namespace: str,
    release: str,
    pod_name: str,
    redis_url: str | None,
    *,
    timeout_s: float,
    delete: bool,
    force: bool,
    out: Output,
    poll_s: float = POLL_S,
) -> int:
    pod = api.read_pod(namespace, pod_name)
    error = drain_target_error(pod, pod_name, namespace, release)
    if error or pod is None:
        raise CommandError(error or f"pod {pod_name} not found")
    service = pod.service
    report: DrainReport | None = None
    unreachable = "no --redis-url or VOICEMESH_REDIS_URL given" if not redis_url else ""
    if redis_url:
        try:
            report = asyncio.run(
                mark_and_wait(
                    redis_url, service, pod_name, wait=delete, timeout_s=timeout_s, out=out, poll_s=poll_s
                )
            )
        except ConnectionError as exc:
            unreachable = str(exc)
        except RedisError as exc:
            raise CommandError(f"the registry failed while draining {pod_name}: {exc}; not deleted") from None
        except KeyboardInterrupt:
            out.say(f"interrupted: {pod_name} was not deleted; a draining mark already made stays")
            return 130
    if report is None:
        if not delete:
            raise CommandError(f"cannot mark {pod_name} draining: registry not reached ({unreachable})")
        if not force:
            raise CommandError(
                f"cannot mark {pod_name} draining: registry not reached ({unreachable}); "
                "deleting it undrained can cut its live calls, pass --force to delete it anyway"
            )
        out.say(f"registry not reached ({unreachable}); deleting {pod_name} undrained (--force)")
    elif not report.marked:
        if not delete:
            raise CommandError(f"{pod_name} ({service}) has no registry record: nothing to mark draining")
        waited_for = report.waited_for or WaitFor.NOTHING_NO_RECORD
        out.say(f"{pod_name} ({service}) has no registry record; waiting for {waited_for.value}")

    lines: list[str] = []
    if delete:
        api.delete_pod(namespace, pod_name)
        grace = f"{pod.grace_s} s" if pod.grace_s is not None else "the pod's"
        lines.append(
            f"deleted pod {pod_name}: its Deployment starts a replacement; the pod's own drain "
            f"(on SIGTERM) handles any call left within {grace} grace period"
        )
    else:
        lines.append(f"{pod_name} marked draining; not deleted (--no-delete)")
    out.result(
        lines,
        {
            "pod": pod_name,
            "service": service,
            "namespace": namespace,
            "marked_draining": bool(report and report.marked),
            "waited_for": report.waited_for.name.lower() if report and report.waited_for else None,
            "outcome": report.outcome.value if report and report.outcome else None,
            "active_left": report.active_left if report else None,
            "waited_s": round(report.waited_s, 1) if report else 0.0,
            "deleted": delete,
        },
    )
    return 0


# -- argparse -----------------------------------------------------------------------------


def _replicas(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _service(text: str) -> str:
    error = unknown_service_error(text)
    if error:
        raise argparse.ArgumentTypeError(error)
    return text


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    cluster = sub.add_parser(
        "cluster",
        help="the mesh on Kubernetes: status, scale a service, drain a pod",
        description=(
            "Operate a voicemesh Helm release through the Kubernetes API, joined with the "
            "instance registry in Valkey (instance id = pod name)."
        ),
    )
    commands = cluster.add_subparsers(dest="cluster_command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-n",
        "--namespace",
        help="the release's namespace (default: the kubeconfig context's, else 'default')",
    )
    common.add_argument(
        "--release", default=DEFAULT_RELEASE, help=f"Helm release name (default {DEFAULT_RELEASE!r})"
    )
    common.add_argument(
        "--kubeconfig",
        help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config, else the in-cluster service account)",
    )
    common.add_argument("--json", action="store_true", help="print the result as JSON")
    registry = argparse.ArgumentParser(add_help=False)
    registry.add_argument(
        "--redis-url",
        default=os.environ.get("VOICEMESH_REDIS_URL"),
        help="the registry's Valkey/Redis URL (default $VOICEMESH_REDIS_URL)",
    )

    status = commands.add_parser(
        "status",
        parents=[common, registry],
        help="each service's Deployment and pods, with their registry state and load",
        description=(
            "Per service: its Deployment's desired/ready replicas and HPA, and each pod with its "
            "phase, node, zone and, from the registry, serving/draining/dead and sessions/capacity. "
            "Without a registry it shows pods only (exit 1 when a given registry is unreachable)."
        ),
    )
    status.set_defaults(func=run)
    scale = commands.add_parser(
        "scale",
        parents=[common],
        help="set a service's Deployment replicas",
        description=(
            "Patch the scale of the Deployment <fullname>-SERVICE. When an HPA manages it, the "
            "HPA would undo the change: refused unless --force."
        ),
    )
    scale.add_argument("service", metavar="SERVICE", type=_service, help=f"one of: {', '.join(SERVICES)}")
    scale.add_argument("replicas", metavar="N", type=_replicas, help="replicas wanted (0 or more)")
    scale.add_argument("--force", action="store_true", help="scale even though an HPA manages the Deployment")
    scale.set_defaults(func=run)
    drain = commands.add_parser(
        "drain",
        parents=[common, registry],
        help="mark a pod draining, wait for its sessions to end, delete it",
        description=(
            "Mark the pod's instance draining in the registry (the router gives it no new "
            "sessions), wait until its sessions end or --timeout passes, then delete the pod "
            "(its Deployment replaces it; the pod's own SIGTERM drain handles anything left)."
        ),
    )
    drain.add_argument("pod", metavar="POD", help="the pod's name (= its registry instance id)")
    drain.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_DRAIN_TIMEOUT_S,
        metavar="S",
        help=f"longest wait for sessions to end, in seconds (default {DEFAULT_DRAIN_TIMEOUT_S:.0f})",
    )
    drain.add_argument("--no-delete", action="store_true", help="only mark the pod draining")
    drain.add_argument(
        "--force", action="store_true", help="delete the pod even when the registry cannot be reached"
    )
    drain.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    command: str = args.cluster_command
    out = Output(args.json)
    try:
        if args.kubeconfig and not Path(args.kubeconfig).expanduser().is_file():
            raise CommandError(f"--kubeconfig {args.kubeconfig}: no such file", 2)
        target = connect(args.kubeconfig)
        namespace = args.namespace or target.namespace
        try:
            if command == "status":
                return cluster_status(target.api, namespace, args.release, args.redis_url, out)
            if command == "scale":
                return cluster_scale(
                    target.api, namespace, args.release, args.service, args.replicas, args.force, out
                )
            return cluster_drain(
                target.api,
                namespace,
                args.release,
                args.pod,
                args.redis_url,
                timeout_s=args.timeout,
                delete=not args.no_delete,
                force=args.force,
                out=out,
            )
        finally:
            target.api.close()
    except CommandError as exc:
        return _fail(command, str(exc), exc.code)
    except KubeError as exc:
        return _fail(command, str(exc), 1)


def _fail(command: str, message: str, code: int) -> int:
    print(f"{PROG} {command}: error: {message}", file=sys.stderr, flush=True)
    return code
