"""The whole mesh as local processes (real Valkey, NATS, models), shared by the e2e tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from voicemesh.cli.localmesh import LocalMesh, MeshPorts

E2E = Path(__file__).resolve().parent
REPO = E2E.parents[1]
FIXTURES = E2E / "fixtures"


@pytest.fixture(scope="session")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    home = tmp_path_factory.mktemp("mesh")
    agents = home / "agents"
    shutil.copytree(REPO / "agents", agents)
    for test_agent in (E2E / "agents").glob("*.yaml"):
        shutil.copy(test_agent, agents / test_agent.name)
    # spans go to each service's log (stdout), where test_trace reads them back
    local = LocalMesh(
        home,
        agents,
        MeshPorts.free(),
        default_agent="restaurant",
        extra_env={"VOICEMESH_OTEL_EXPORTER": "console"},
    )
    local.start()
    try:
        yield local
    finally:
        local.stop()
        for name, last_words in local.crashed():
            print(f"{name} exited: {last_words}")
