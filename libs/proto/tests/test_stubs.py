"""The generated stubs are the .proto files, and the contracts hold the documented shape."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from voicemesh.v1 import edge_pb2, events_pb2, stt_pb2

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[3]


def test_committed_stubs_match_the_proto_files() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_audio_and_control_share_one_oneof_in_every_stream() -> None:
    req = stt_pb2.RecognizeRequest(flush=stt_pb2.Flush(flush_id="t1"))
    assert req.WhichOneof("kind") == "flush"
    req.audio.pcm = b"\0" * 640
    assert req.WhichOneof("kind") == "audio"  # setting one member clears the other


def test_every_event_payload_has_a_subject_safe_name() -> None:
    names = [f.name for f in events_pb2.SessionEvent.DESCRIPTOR.oneofs_by_name["payload"].fields]
    assert "transcript" in names and "call_started" in names
    assert all(n.isidentifier() and n.islower() for n in names)


def test_native_protocol_messages_round_trip_as_json() -> None:
    from google.protobuf import json_format

    msg = edge_pb2.ServerMessage(timing=edge_pb2.TurnTiming(turn_id="t1", last_voiced_message=42))
    text = json_format.MessageToJson(msg, preserving_proto_field_name=True)
    back = json_format.Parse(text, edge_pb2.ServerMessage())
    assert back.timing.last_voiced_message == 42
