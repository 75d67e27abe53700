"""`voicemesh up`, `status` and `down` as a user runs them: separate processes, real servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from voicemesh.cli.state import MeshState, ServiceEndpoint, read_state, write_state
from voicemesh.mesh.localservers import free_port

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
VOICEMESH = [sys.executable, "-m", "voicemesh.cli.main"]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline and alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def test_up_status_down_leaves_no_process(tmp_path: Path) -> None:
    home = tmp_path / "home"
    up = subprocess.Popen(
        [*VOICEMESH, "up", "--home", str(home), "--free-ports", "--agents-dir", str(REPO / "agents")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (home / "state.json").exists():
            assert up.poll() is None, up.stdout.read() if up.stdout else ""
            assert time.monotonic() < deadline, "the mesh did not come up in 120 s"
            time.sleep(0.2)
        state = read_state(home)
        for private in (home, home / "logs", home / "nats"):  # token, logs, transcripts
            assert private.stat().st_mode & 0o077 == 0, (private, oct(private.stat().st_mode))
        files = [home / "state.json", home / "valkey.conf", home / "nats.conf", *(home / "logs").iterdir()]
        assert {oct(f.stat().st_mode & 0o777) for f in files} == {"0o600"}, [f.name for f in files]
        status = subprocess.run([*VOICEMESH, "status", "--home", str(home)], capture_output=True, text=True)
        assert status.returncode == 0, status.stdout + status.stderr
        # every user's password (nats.conf holds them all) stays out of what is shown or logged
        users = json.loads((home / "nats.conf").read_text())["authorization"]["users"]
        passwords = [u["password"] for u in users]
        assert len(passwords) == 7 and state.redis_url.startswith("redis://cli:")
        shown = status.stdout + status.stderr + "".join(f.read_text() for f in (home / "logs").iterdir())
        assert not [p for p in passwords if p in shown]
        for name in ("session-router", "stt", "reasoning", "tts", "media-edge"):
            assert any(line.startswith(name) and "SERVING" in line for line in status.stdout.splitlines())
        pids = [s.pid for s in state.services]
        assert all(alive(p) for p in pids)
        assert processes_mentioning(str(home / "nats"))  # the JetStream store of this mesh

        down = subprocess.run(
            [*VOICEMESH, "down", "--home", str(home)], capture_output=True, text=True, timeout=60
        )
        assert down.returncode == 0, down.stderr
        up.wait(30)
        assert up.returncode == 0
        output = up.stdout.read() if up.stdout else ""
        assert "voicemesh is up" in output and "stopped" in output
        assert not [p for p in passwords if p in output]
    finally:
        if up.poll() is None:
            up.kill()
    assert not [p for p in pids if alive(p)]
    assert processes_mentioning(str(home / "nats")) == []
    assert not (home / "state.json").exists()


def test_status_exits_non_zero_while_a_service_is_not_serving(tmp_path: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"
    write_state(
        tmp_path,
        MeshState(
            supervisor_pid=os.getpid(),
            edge_url="ws://127.0.0.1:1/v1/call",
            edge_token="x" * 20,
            redis_url="redis://127.0.0.1:1/0",
            nats_url="nats://127.0.0.1:1",
            services=[ServiceEndpoint("stt", dead, "http://127.0.0.1:1/metrics")],
        ),
    )
    status = subprocess.run([*VOICEMESH, "status", "--home", str(tmp_path)], capture_output=True, text=True)
    assert status.returncode == 1
    assert "UNREACHABLE" in status.stdout and dead in status.stdout


def test_status_without_a_mesh_says_how_to_start_one(tmp_path: Path) -> None:
    status = subprocess.run([*VOICEMESH, "status", "--home", str(tmp_path)], capture_output=True, text=True)
    assert status.returncode == 1
    assert "voicemesh up" in status.stderr and "Traceback" not in status.stderr
