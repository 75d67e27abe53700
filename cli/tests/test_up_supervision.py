"""`voicemesh up` as a supervisor, run as a user runs it: a real process with the whole mesh.

A killed service is named with its signal, restarted on its ports and the next call works;
a service that keeps crashing makes `up` give up with exit 1 and one line naming it;
`--replicas stt=2` runs two stt instances, both registered and both listed by `status`.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from voicemesh.cli.state import MeshState, ServiceEndpoint, StateError, read_state
from voicemesh.cli.wsclient import place_call
from voicemesh.mesh.grpcutil import check_health
from voicemesh.mesh.registry import InstanceRegistry

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
E2E = REPO / "tests" / "e2e"
CALLER = E2E / "fixtures" / "caller_party.wav"
VOICEMESH = [sys.executable, "-m", "voicemesh.cli.main"]
UP_TIMEOUT_S = 120.0
RESTART_TIMEOUT_S = 30.0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pid:
                found.append(int(entry.name))
    return found


def agents_dir(tmp_path: Path) -> Path:
    """The shipped agents plus the e2e ones (`listener` answers a turn quickly)."""
    agents = tmp_path / "agents"
    shutil.copytree(REPO / "agents", agents)
    for agent in (E2E / "agents").glob("*.yaml"):
        shutil.copy(agent, agents / agent.name)
    return agents


class Up:
    """A running `voicemesh up`: its stderr (in a file) and its state."""

    def __init__(self, proc: subprocess.Popen[bytes], home: Path, err_path: Path, out_path: Path) -> None:
        self.proc = proc
        self.home = home
        self.err_path = err_path
        self.out_path = out_path

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def output(self) -> str:
        return f"--- stdout\n{self.out_path.read_text(errors='replace')}\n--- stderr\n{self.stderr()}"

    def state(self) -> MeshState:
        return read_state(self.home)

    def wait_up(self) -> MeshState:
        deadline = time.monotonic() + UP_TIMEOUT_S
        while True:
            assert self.proc.poll() is None, self.output()
            try:
                return self.state()
            except StateError:
                pass
            assert time.monotonic() < deadline, f"the mesh did not come up in {UP_TIMEOUT_S:.0f} s"
            time.sleep(0.1)

    async def wait_stderr(self, text: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.stderr():
            assert time.monotonic() < deadline, f"no {text!r} within {timeout_s} s:\n{self.output()}"
            await asyncio.sleep(0.05)

    async def wait_restarted(self, victim: ServiceEndpoint) -> ServiceEndpoint:
        """The victim's instance under a new pid, SERVING on the same address."""
        deadline = time.monotonic() + RESTART_TIMEOUT_S
        while True:
            assert self.proc.poll() is None, self.output()
            state = self.state()
            now = next(s for s in state.services if s.instance_id == victim.instance_id)
            if (
                now.pid not in (0, victim.pid)
                and await check_health(now.grpc_address, timeout_s=0.5, tls=state.tls(), peer=now.name)
                == "SERVING"
            ):
                assert now.grpc_address == victim.grpc_address and now.metrics_url == victim.metrics_url
                return now
            assert time.monotonic() < deadline, f"{victim.instance_id} not back in {RESTART_TIMEOUT_S} s"
            await asyncio.sleep(0.1)

    def down(self) -> int:
        down = subprocess.run([*VOICEMESH, "down", "--home", str(self.home)], capture_output=True, timeout=60)
        assert down.returncode == 0, down.stderr
        return self.proc.wait(30)


@contextmanager
def voicemesh_up(tmp_path: Path, agents: Path, *args: str) -> Iterator[Up]:
    home = tmp_path / "home"
    home.mkdir()
    err_path, out_path = tmp_path / "up.err", tmp_path / "up.out"
    with open(err_path, "wb") as err, open(out_path, "wb") as out:
        proc = subprocess.Popen(
            [*VOICEMESH, "up", "--home", str(home), "--free-ports", "--agents-dir", str(agents), *args],
            stdout=out,
            stderr=err,
        )
    up = Up(proc, home, err_path, out_path)
    try:
        yield up
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def test_each_killed_service_is_named_restarted_and_the_next_call_works(tmp_path: Path) -> None:
    with voicemesh_up(tmp_path, agents_dir(tmp_path)) as up:
        first = up.wait_up()
        for name in ("stt", "reasoning", "tts", "session-router"):
            victim = up.state().service(name)
            others = {s.instance_id: s.pid for s in up.state().services if s.name != name}
            killed = time.monotonic()
            os.kill(victim.pid, signal.SIGKILL)
            await up.wait_stderr(f"{victim.instance_id} was killed by SIGKILL; restarting it in", 10)
            await up.wait_restarted(victim)
            back_s = time.monotonic() - killed
            # the rest kept running, untouched
            assert {s.instance_id: s.pid for s in up.state().services if s.name != name} == others
            result = await place_call(
                first.edge_url, first.edge_token, [CALLER], agent="listener", turn_timeout_s=30
            )
            assert result.errors == [] and result.ok, (name, result.errors, result.end_reason)
            # Whisper writes the party size as "four" or "4"
            assert re.search(r"\b(four|4)\b", result.reply_text.lower()), (name, result.reply_text)
            print(f"{name}: back and serving {back_s:.1f} s after SIGKILL")
        assert up.proc.poll() is None
        assert up.down() == 0, up.output()  # nothing gave up: an honest 0
    assert not [s.pid for s in first.services if alive(s.pid)]


async def test_a_service_that_keeps_crashing_makes_up_give_up_naming_it(tmp_path: Path) -> None:
    agents = agents_dir(tmp_path)
    with voicemesh_up(tmp_path, agents) as up:
        state = up.wait_up()
        # An operator breaks an agent file while the mesh runs: reasoning reads its agents at
        # start-up, so once it dies every restart fails at once with exit 2.
        (agents / "broken.yaml").write_text("id: broken\nname: Broken\nturn:\n  endpoint_silence_ms: soon\n")
        os.kill(state.service("reasoning").pid, signal.SIGKILL)
        code = await asyncio.to_thread(up.proc.wait, 90)
        err = up.stderr()
        assert code == 1, up.output()
        gave_up = [line for line in err.splitlines() if "giving up" in line]
        assert len(gave_up) == 1, err
        assert gave_up[0].startswith(
            "voicemesh up: error: reasoning-local exited with code 2; it crashed 5 times within 120 s, giving up"
        ), err
        assert "broken.yaml:4" in gave_up[0]  # its last words, from its log
        assert "reasoning-local was killed by SIGKILL" in err
        assert err.count("reasoning-local exited with code 2: voicemesh-reasoning: error:") == 3
    assert not [s.pid for s in state.services if alive(s.pid)]
    assert not (up.home / "state.json").exists()


async def test_replicas_run_register_and_are_listed(tmp_path: Path) -> None:
    with voicemesh_up(tmp_path, agents_dir(tmp_path), "--replicas", "stt=2") as up:
        state = up.wait_up()
        stts = state.instances("stt")
        assert [s.instance_id for s in stts] == ["stt-local-1", "stt-local-2"]
        assert len({s.grpc_address for s in stts}) == 2
        assert [s.instance_id for s in state.instances("tts")] == ["tts-local"]

        redis = aioredis.Redis.from_url(state.redis_url)
        try:
            registered = await InstanceRegistry(redis).instances("stt")
        finally:
            await redis.aclose()
        assert {(i.info.instance_id, i.info.address, i.alive) for i in registered} == {
            (s.instance_id, s.grpc_address, True) for s in stts
        }

        status = await asyncio.to_thread(
            subprocess.run, [*VOICEMESH, "status", "--home", str(up.home)], capture_output=True, text=True
        )
        assert status.returncode == 0, status.stdout + status.stderr
        for s in stts:
            assert any(
                line.startswith(s.instance_id) and s.grpc_address in line and "SERVING" in line
                for line in status.stdout.splitlines()
            ), status.stdout

        # a replica is restarted as itself, on its own port
        os.kill(stts[1].pid, signal.SIGKILL)
        await up.wait_stderr("stt-local-2 was killed by SIGKILL", 10)
        await up.wait_restarted(stts[1])
        latest = up.state()
        assert latest.instances("stt")[0].pid == stts[0].pid

        # Valkey dying is not a service crash: up stops the mesh and says so, exit 1
        valkey_port = state.redis_url.rsplit(":", 1)[1].split("/")[0]
        (valkey,) = [
            pid for pid in children(up.proc.pid) if "valkey" in cmdline(pid) and valkey_port in cmdline(pid)
        ]
        os.kill(valkey, signal.SIGKILL)
        assert await asyncio.to_thread(up.proc.wait, 60) == 1, up.output()
        assert "voicemesh up: error: valkey was killed by SIGKILL; stopping the mesh" in up.stderr()
    assert not [s.pid for s in latest.services if alive(s.pid)]
