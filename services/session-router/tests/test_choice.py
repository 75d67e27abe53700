"""The routing rule as plain code (the Lua script is checked against it in test_store.py)."""

from __future__ import annotations

import pytest

from voicemesh.router.choice import Candidate, choose

pytestmark = pytest.mark.unit


def test_least_loaded_by_ratio_not_by_count() -> None:
    small = Candidate("a", "eu", capacity=2, active=1)  # 50 %
    big = Candidate("b", "eu", capacity=10, active=3)  # 30 %
    assert choose([small, big], "eu") == big


def test_own_region_first_even_when_busier() -> None:
    home = Candidate("a", "eu", capacity=10, active=9)
    away = Candidate("b", "us", capacity=10, active=0)
    assert choose([away, home], "eu") == home


def test_falls_back_to_another_region_when_home_is_full() -> None:
    home = Candidate("a", "eu", capacity=1, active=1)
    away_busy = Candidate("b", "us", capacity=4, active=2)
    away_idle = Candidate("c", "ap", capacity=4, active=1)
    assert choose([home, away_busy, away_idle], "eu") == away_idle


def test_dead_draining_and_full_instances_are_never_chosen() -> None:
    cands = [
        Candidate("a", "eu", capacity=5, active=0, alive=False),
        Candidate("b", "eu", capacity=5, active=0, draining=True),
        Candidate("c", "eu", capacity=5, active=5),
        Candidate("d", "eu", capacity=0, active=0),
    ]
    assert choose(cands, "eu") is None


def test_ties_go_to_the_smallest_id_and_empty_region_means_any() -> None:
    cands = [Candidate("b", "us", 4, 1), Candidate("a", "eu", 8, 2), Candidate("c", "eu", 4, 2)]
    assert choose(cands, "").instance_id == "a"  # type: ignore[union-attr]
