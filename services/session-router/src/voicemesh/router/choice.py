"""The routing rule, as plain code. assign.lua applies the same rule inside Valkey/Redis and is
what production runs; this copy documents it and lets tests check the script against it.

For one service, among its instances that are alive, not draining and have room
(active < capacity):
  1. prefer the caller's region (an empty region means no preference);
  2. otherwise any other region — "nearest" is kept simple: the mesh has no distance map, so
     every other region counts as equally near;
  3. within that tier, the lowest load active / capacity;
  4. ties go to the smallest instance id (so the choice is deterministic).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Candidate:
    instance_id: str
    region: str
    capacity: int
    active: int
    alive: bool = True
    draining: bool = False

    @property
    def has_room(self) -> bool:
        return self.alive and not self.draining and self.active < self.capacity


def _better(a: Candidate, b: Candidate, region: str) -> bool:
    """Whether `a` ranks before `b`. Loads compare by cross-multiplying (exact integers)."""
    tier_a = 0 if not region or a.region == region else 1
    tier_b = 0 if not region or b.region == region else 1
    if tier_a != tier_b:
        return tier_a < tier_b
    left, right = a.active * b.capacity, b.active * a.capacity
    if left != right:
        return left < right
    return a.instance_id < b.instance_id


def choose(candidates: Iterable[Candidate], region: str) -> Candidate | None:
    """The instance a new session of this service goes to, or None when none has room."""
    best: Candidate | None = None
    for cand in candidates:
        if cand.has_room and (best is None or _better(cand, best, region)):
            best = cand
    return best
