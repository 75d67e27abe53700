"""`voicemesh up`'s supervisor with real servers: a bad agent setup stops start-up with the
failing service's own one-line reason, and nothing is left running."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from voicemesh.cli.localmesh import LocalMesh, MeshError, MeshPorts

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def test_an_unknown_default_agent_names_the_agent_and_leaves_no_process(tmp_path: Path) -> None:
    mesh = LocalMesh(tmp_path, REPO / "agents", MeshPorts.free(), default_agent="no-such-agent")
    with pytest.raises(MeshError) as info:
        mesh.start(timeout_s=60)
    message = str(info.value)
    assert message.startswith("reasoning did not start: voicemesh-reasoning: error:")
    assert "no-such-agent" in message
    assert mesh.services == [] and mesh.servers == []


def test_a_broken_agent_file_is_reported_with_its_line(tmp_path: Path) -> None:
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "restaurant.yaml").write_text((REPO / "agents" / "restaurant.yaml").read_text())
    (agents / "broken.yaml").write_text("id: broken\nname: Broken\nturn:\n  endpoint_silence_ms: soon\n")
    env = dict(os.environ, VOICEMESH_AGENTS_DIR=str(agents), VOICEMESH_REDIS_URL="redis://127.0.0.1:1/0")
    proc = subprocess.run(
        [sys.executable, "-m", "voicemesh.reasoning"], env=env, capture_output=True, text=True, timeout=60
    )
    # the agent files are checked before anything else, so a bad file is the first complaint
    assert proc.returncode != 0
    assert "broken.yaml:4" in proc.stderr and "endpoint_silence_ms" in proc.stderr
    assert "Traceback" not in proc.stderr
