"""`voicemesh up --replicas`: parsing, and where each instance runs (no processes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicemesh.cli.localmesh import LocalMesh, MeshPorts, parse_replicas

pytestmark = pytest.mark.unit


def test_replicas_parse_name_equals_count() -> None:
    assert parse_replicas("stt=2,reasoning=2, tts=3") == {"stt": 2, "reasoning": 2, "tts": 3}
    assert parse_replicas("stt=1") == {"stt": 1}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("whisper=2", "unknown service 'whisper'"),
        ("stt=0", "stt=0: a service needs at least 1 instance"),
        ("stt=two", "'two' is not a whole number"),
        ("stt", "'stt' is not NAME=N"),
        ("stt=2,stt=3", "stt is given twice"),
        ("media-edge=2", "media-edge runs as one instance: it owns the one WebSocket port"),
        ("session-router=2", "session-router runs as one instance"),
    ],
)
def test_bad_replicas_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_replicas(text)


def test_each_replica_has_its_own_id_ports_and_log(tmp_path: Path) -> None:
    mesh = LocalMesh(tmp_path, tmp_path, MeshPorts(), replicas={"stt": 2})
    stt = [i for i in mesh.instances() if i.service == "stt"]
    assert [(i.instance_id, i.grpc_port, i.metrics_port, i.log_name) for i in stt] == [
        ("stt-local-1", 50052, 9102, "stt-1.log"),
        ("stt-local-2", 50152, 9202, "stt-2.log"),
    ]
    (tts,) = [i for i in mesh.instances() if i.service == "tts"]
    assert (tts.instance_id, tts.log_name) == ("tts-local", "tts.log")  # one instance: as before
    free = MeshPorts.free({"stt": 3})
    ports = {free.instance("stt", n) for n in (1, 2, 3)}
    assert len(ports) == 3 and len({p for pair in ports for p in pair}) == 6
