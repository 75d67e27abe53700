"""The registry census: how many instances of each role serve, drain or are dead, per region,
as `voicemesh_registry_instances{role,region,state}`. The router refreshes it every few
seconds from the registry it places sessions from (`RegistryCensus.run`).

`count_instances` is the pure part. Every state of a (role, region) that has any instance is
reported, 0 included, so "no serving stt in eu" is a 0 an alert can see while the dead ones
are still listed; a (role, region) whose last record expired disappears from the metric.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from voicemesh.mesh.metrics import RegistryState, ServiceMetrics
from voicemesh.mesh.registry import InstanceRegistry, InstanceState

log = logging.getLogger(__name__)

DEFAULT_REFRESH_S = 5.0
Census = dict[tuple[str, str, RegistryState], int]


def state_of(instance: InstanceState) -> RegistryState:
    if not instance.alive:
        return RegistryState.DEAD
    return RegistryState.DRAINING if instance.draining else RegistryState.SERVING


def count_instances(instances: Iterable[InstanceState]) -> Census:
    """(role, region, state) -> instances, with a 0 for each state a listed (role, region) lacks."""
    counts: Census = {}
    for inst in instances:
        role, region = inst.info.service, inst.info.region
        if (role, region, RegistryState.SERVING) not in counts:
            for state in RegistryState:
                counts[(role, region, state)] = 0
        counts[(role, region, state_of(inst))] += 1
    return counts


class RegistryCensus:
    """Refreshes the census every `refresh_s` until cancelled. A registry that cannot be read
    is counted as an error (`registry_census`, each time) and leaves the last census in
    place; it is logged when the failures begin and when a refresh works again."""

    def __init__(self, registry: InstanceRegistry, metrics: ServiceMetrics, refresh_s: float) -> None:
        if refresh_s <= 0:
            raise ValueError(f"refresh_s must be > 0, got {refresh_s}")
        self._registry = registry
        self._metrics = metrics
        self._refresh_s = refresh_s

    async def refresh(self) -> None:
        """Read the registry once and replace the census."""
        self._metrics.set_registry_instances(count_instances(await self._registry.instances()))

    async def run(self) -> None:
        failing = False
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis/Valkey down or slow: try again next time
                self._metrics.error("registry_census")
                if not failing:
                    log.warning("registry census failed", extra={"error": str(exc) or type(exc).__name__})
                failing = True
            else:
                if failing:
                    log.info("registry census recovered")
                failing = False
            await asyncio.sleep(self._refresh_s)
