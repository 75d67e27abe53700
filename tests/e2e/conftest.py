"""The whole mesh as local processes (real Valkey, NATS, models), shared by the e2e tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from voicemesh.cli.localmesh import LocalMesh, MeshPorts
from voicemesh.mesh.localservers import free_port

E2E = Path(__file__).resolve().parent
REPO = E2E.parents[1]
FIXTURES = E2E / "fixtures"
# Where test_llm_call.py serves the concierge agent's model and booking tool (chosen before
# the mesh loads the agent file that names them).
LLM_PORT = free_port()
TOOL_PORT = free_port()
BOOKING_TOKEN = "e2e-booking-token-7d1"
LEASE_S = 3.0  # the router's reservation lease in the e2e mesh


def write_templates(agents: Path) -> None:
    """Each `agents/<id>.yaml.in` (the LLM agents) as `<id>.yaml`, its URLs filled in."""
    for path in sorted((E2E / "agents").glob("*.yaml.in")):
        text = (
            path.read_text(encoding="utf-8")
            .replace("@LLM_URL@", f"http://127.0.0.1:{LLM_PORT}/main")
            .replace("@TOOL_URL@", f"http://127.0.0.1:{TOOL_PORT}")
            .replace("@KNOWLEDGE@", str(E2E / "agents" / "concierge-knowledge.md"))
        )
        (agents / path.name.removesuffix(".in")).write_text(text, encoding="utf-8")


@pytest.fixture(scope="session")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    home = tmp_path_factory.mktemp("mesh")
    agents = home / "agents"
    shutil.copytree(REPO / "agents", agents)
    for test_agent in (E2E / "agents").glob("*.yaml"):
        shutil.copy(test_agent, agents / test_agent.name)
    write_templates(agents)
    # spans go to each service's log (stdout), where test_trace reads them back
    local = LocalMesh(
        home,
        agents,
        MeshPorts.free(),
        default_agent="restaurant",
        extra_env={
            "VOICEMESH_OTEL_EXPORTER": "console",
            "VOICEMESH_E2E_BOOKING_TOKEN": BOOKING_TOKEN,
            # Short leases, renewed often: a call outliving its lease must keep its slots.
            "VOICEMESH_ROUTER_LEASE_S": str(LEASE_S),
            "VOICEMESH_ROUTER_RENEW_S": str(LEASE_S / 6),
        },
    )
    local.start()
    try:
        yield local
    finally:
        local.stop()
        for name, last_words in local.crashed():
            print(f"{name} exited: {last_words}")
