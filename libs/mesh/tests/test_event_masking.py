"""Session events leave a service with personal data masked: the caller's number, numbers
and cards read aloud in a transcript, e-mail addresses; ids and figures untouched."""

from __future__ import annotations

import re

import pytest
from google.protobuf.descriptor import FieldDescriptor

from voicemesh.mesh.events import JetStreamEvents, RecordingEvents
from voicemesh.mesh.masking import ADDRESS, EVENT_FIELDS, SAFE, TEXT, EventMasker, text_fields, treatment
from voicemesh.mesh.metrics import ServiceMetrics
from voicemesh.mesh.pii import Redactor
from voicemesh.mesh.settings import MeshSettings
from voicemesh.v1 import events_pb2, router_pb2

pytestmark = pytest.mark.unit

PLACEHOLDER = re.compile(r"\[[A-Z_]+\]")


def emitted(sink: RecordingEvents | None = None, **payload: object) -> events_pb2.SessionEvent:
    sink = sink if sink is not None else RecordingEvents(service="media-edge", instance_id="edge-0")
    sink.emit("call-1", **payload)  # type: ignore[arg-type]
    return sink.events[-1]


# -- caller, callee, transfer target: the whole value goes ---------------------------------


@pytest.mark.parametrize(
    ("value", "caller", "callee"),
    [
        ("+14155550100", "[PHONE]", "[PHONE]"),
        ("tel:+1 415 555 0100", "[PHONE]", "[PHONE]"),
        ("07700 900123", "[PHONE]", "[PHONE]"),
        ("ann@example.org", "[EMAIL]", "[EMAIL]"),
        ("sip:ann@example.org", "[CALLER]", "[CALLEE]"),
        ("sip:+14155550100@carrier.example;user=phone", "[CALLER]", "[CALLEE]"),
        ("+15550100", "[CALLER]", "[CALLEE]"),  # too short for a real number: masked all the same
        ("client:alice", "[CALLER]", "[CALLEE]"),
        ("", "", ""),  # the transport did not know it
    ],
)
def test_caller_and_callee_become_one_token(value: str, caller: str, callee: str) -> None:
    started = events_pb2.CallStarted(
        transport="twilio-stream", agent="restaurant", caller=value, callee=value, carrier_call_id="CA123"
    )
    event = emitted(call_started=started).call_started
    assert (event.caller, event.callee) == (caller, callee)
    assert (event.transport, event.agent, event.carrier_call_id) == ("twilio-stream", "restaurant", "CA123")


@pytest.mark.parametrize(
    ("target", "masked"),
    [("+14155550111", "[PHONE]"), ("sip:host@bellavista.example", "[TARGET]"), ("", "")],
)
def test_a_transfer_target_is_masked_and_the_method_kept(target: str, masked: str) -> None:
    event = emitted(call_transferred=events_pb2.CallTransferred(target=target, method="native"))
    assert (event.call_transferred.target, event.call_transferred.method) == (masked, "native")


# -- free text: what is personal goes, the rest stays readable --------------------------------

TRANSCRIPTS = [
    ("my number is 212, 555, 0187", "my number is [PHONE]", ["212", "555", "0187"]),
    ("it's two one two five five five oh one eight seven", "it's [PHONE]", ["two one two", "oh one eight"]),
    ("call me on (212) 555-0187 tomorrow", "call me on [PHONE] tomorrow", ["212", "0187"]),
    ("my card is 4111 1111 1111 1111", "my card is [CARD]", ["4111", "1111"]),
    ("five one zero five, one zero five one, zero five one zero, five one zero zero", "[CARD]", ["five one"]),
    ("email john dot smith at example dot com", "email [EMAIL]", ["john", "smith"]),
    ("it's sarah.jones@gmail.com", "it's [EMAIL]", ["sarah", "jones"]),
    ("my social is 536 90 4399", "my social is [SSN]", ["536", "4399"]),
    ("NI number AB 12 34 56 C", "NI number [NINO]", ["AB 12"]),
    ("a table for four at 7:30 please", "a table for four at 7:30 please", []),
]


@pytest.mark.parametrize(("text", "masked", "gone"), TRANSCRIPTS)
def test_transcript_text_is_masked(text: str, masked: str, gone: list[str]) -> None:
    transcript = events_pb2.TranscriptPublished(utterance_id="u-7", text=text, final=True, decode_ms=182)
    event = emitted(transcript=transcript).transcript
    assert event.text == masked
    assert not any(raw in event.text for raw in gone)
    assert (event.utterance_id, event.final, event.decode_ms) == ("u-7", True, 182)


@pytest.mark.parametrize(("text", "masked", "gone"), TRANSCRIPTS[:6])
def test_response_text_is_masked(text: str, masked: str, gone: list[str]) -> None:
    response = events_pb2.ResponsePublished(
        response_id="r-1", in_reply_to="t-1", text=f"So that's {text}.", first_token_ms=240, cancelled=True
    )
    event = emitted(response=response).response
    assert event.text == f"So that's {masked}."
    assert (event.response_id, event.in_reply_to, event.first_token_ms, event.cancelled) == (
        "r-1",
        "t-1",
        240,
        True,
    )


def test_an_error_message_quoting_a_number_is_masked() -> None:
    error = events_pb2.ServiceError(
        stage="reasoning", code="tool_failed", message="lookup failed for 212-555-0187: 404"
    )
    event = emitted(error=error).error
    assert (event.stage, event.code, event.message) == (
        "reasoning",
        "tool_failed",
        "lookup failed for [PHONE]: 404",
    )


def test_a_menu_key_stays_and_a_keyed_card_number_goes() -> None:
    sink = RecordingEvents()
    assert emitted(sink, dtmf_received=events_pb2.DtmfReceived(digits="4")).dtmf_received.digits == "4"
    keyed = emitted(sink, dtmf_received=events_pb2.DtmfReceived(digits="4111111111111111#"))
    assert keyed.dtmf_received.digits == "[CARD]#"


def test_ids_figures_and_assignments_are_untouched() -> None:
    sink = RecordingEvents(service="session-router", instance_id="router-0")
    latency = events_pb2.TurnLatency(turn_id="t-2125550187", endpoint_ms=500, voice_to_voice_ms=612)
    assert emitted(sink, turn_latency=latency).turn_latency == latency
    assignments = [
        router_pb2.Assignment(service="stt", instance_id="stt-0", address="10.0.0.7:50051", region="eu")
    ]
    event = emitted(sink, assigned=events_pb2.Assigned(assignments=assignments))
    assert list(event.assigned.assignments) == assignments
    ended = events_pb2.CallEnded(reason="error:stt", duration_ms=64_250, turns=3)
    event = emitted(sink, call_ended=ended)
    assert event.call_ended == ended
    assert (event.session_id, event.service, event.instance_id) == ("call-1", "session-router", "router-0")


def test_every_payload_with_a_number_in_every_personal_field_publishes_none() -> None:
    """Driven by the descriptors: each payload type, each non-safe string field holding a
    number read aloud and written; the serialized event holds neither, safe fields stay."""
    sink = RecordingEvents()
    spoken = "212 555 0187 or two one two five five five oh one eight seven"
    for field in events_pb2.SessionEvent.DESCRIPTOR.oneofs_by_name["payload"].fields:
        message = field.message_type._concrete_class()
        strings = [f for f in message.DESCRIPTOR.fields if f.type == FieldDescriptor.TYPE_STRING]
        for f in strings:
            safe = treatment(message.DESCRIPTOR.full_name, f.name) is SAFE
            setattr(message, f.name, "id-1" if safe else spoken)
        sink.emit("call-1", **{field.name: message})
        event = sink.events[-1]
        data = event.SerializeToString()
        assert b"0187" not in data and b"oh one eight" not in data, field.name
        published = getattr(event, field.name)
        for f in strings:
            value = getattr(published, f.name)
            if treatment(message.DESCRIPTOR.full_name, f.name) is SAFE:
                assert value == "id-1", f"{field.name}.{f.name}"
            else:
                assert PLACEHOLDER.search(value), f"{field.name}.{f.name} = {value!r}"


def test_emit_does_not_change_the_message_it_was_given() -> None:
    transcript = events_pb2.TranscriptPublished(utterance_id="u1", text="212 555 0187")
    assert emitted(transcript=transcript).transcript.text == "[PHONE]"
    assert transcript.text == "212 555 0187"


def test_configured_patterns_are_masked_too() -> None:
    sink = RecordingEvents()
    sink.masker = EventMasker(Redactor(extra={"booking_ref": r"\bBK-\d{6}\b"}))
    event = emitted(sink, transcript=events_pb2.TranscriptPublished(text="it's BK-123456, 212 555 0187"))
    assert event.transcript.text == "it's [BOOKING_REF], [PHONE]"


# -- the table covers the proto --------------------------------------------------------------


def test_every_string_field_of_events_proto_is_masked_or_declared_safe() -> None:
    """A new string field in events.proto must be added to `masking.EVENT_FIELDS` as SAFE,
    TEXT or ADDRESS: whoever adds it decides whether it is personal."""
    fields = text_fields()
    undecided = [
        f"{m}.{f.name}" for m, fs in fields.items() for f in fs if f.name not in EVENT_FIELDS.get(m, {})
    ]
    assert not undecided, f"decide in masking.EVENT_FIELDS how to mask: {undecided}"
    stale = [
        f"{m}.{n}"
        for m, names in EVENT_FIELDS.items()
        for n in names
        if n not in {f.name for f in fields.get(m, [])}
    ]
    assert not stale, f"masking.EVENT_FIELDS names fields events.proto no longer has: {stale}"
    bytes_masked = [
        f"{m}.{f.name}"
        for m, fs in fields.items()
        for f in fs
        if f.type == FieldDescriptor.TYPE_BYTES and EVENT_FIELDS[m][f.name] is not SAFE
    ]
    assert not bytes_masked, f"the masker cannot mask bytes fields: {bytes_masked}"


def test_events_proto_has_no_map_fields_the_masker_would_not_walk() -> None:
    maps = [
        f"{m}.{f.name}"
        for m, fs in text_fields().items()
        for f in fs
        if f.containing_type.GetOptions().map_entry
    ]
    assert not maps, f"teach EventMasker map fields before adding {maps}"


def test_the_personal_fields_the_proto_names_are_masked() -> None:
    assert EVENT_FIELDS["voicemesh.v1.CallStarted"]["caller"] is ADDRESS
    assert EVENT_FIELDS["voicemesh.v1.CallStarted"]["callee"] is ADDRESS
    assert EVENT_FIELDS["voicemesh.v1.CallTransferred"]["target"] is ADDRESS
    for message in ("TranscriptPublished", "ResponsePublished"):
        assert EVENT_FIELDS[f"voicemesh.v1.{message}"]["text"] is TEXT
    assert EVENT_FIELDS["voicemesh.v1.ServiceError"]["message"] is TEXT


def test_a_field_the_table_does_not_name_is_masked_as_text() -> None:
    assert treatment("voicemesh.v1.CallStarted", "a_field_added_later") is TEXT
    assert treatment("voicemesh.v1.AMessageAddedLater", "note") is TEXT


# -- failures never let a value through, never raise --------------------------------------------


class BrokenRedactor(Redactor):
    def mask(self, text: str) -> str:
        raise RuntimeError(f"cannot mask {text}")


def test_a_failing_mask_leaves_unmaskable_not_the_value() -> None:
    sink = RecordingEvents()
    sink.masker = EventMasker(BrokenRedactor())
    event = emitted(sink, transcript=events_pb2.TranscriptPublished(utterance_id="u1", text="212 555 0187"))
    assert (event.transcript.utterance_id, event.transcript.text) == ("u1", "[unmaskable]")
    event = emitted(sink, call_started=events_pb2.CallStarted(agent="demo", caller="+14155550100"))
    assert (event.call_started.agent, event.call_started.caller) == ("demo", "[CALLER]")


def test_a_failing_walk_empties_the_payload_and_keeps_the_event(caplog: pytest.LogCaptureFixture) -> None:
    sink = RecordingEvents()

    def boom(msg: object) -> None:
        raise TypeError("a shape the walk does not know")

    sink.masker._walk = boom  # type: ignore[union-attr, method-assign]
    event = emitted(sink, transcript=events_pb2.TranscriptPublished(utterance_id="u1", text="212 555 0187"))
    assert event.WhichOneof("payload") == "transcript"
    assert event.transcript == events_pb2.TranscriptPublished()
    assert event.session_id == "call-1"
    assert [r.getMessage() for r in caplog.records] == ["event masking failed: payload emptied"]
    assert "0187" not in caplog.text


# -- on by default; the setting turns it off -------------------------------------------------


def test_redaction_is_on_by_default_and_off_keeps_raw_values() -> None:
    assert MeshSettings().events_redact is True
    assert RecordingEvents().masker is not None
    raw = RecordingEvents(redact=False)
    event = emitted(raw, transcript=events_pb2.TranscriptPublished(text="my number is 212, 555, 0187"))
    assert event.transcript.text == "my number is 212, 555, 0187"
    event = emitted(raw, call_started=events_pb2.CallStarted(caller="+14155550100"))
    assert event.call_started.caller == "+14155550100"


def test_the_environment_turns_event_redaction_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEMESH_EVENTS_REDACT", "false")
    assert MeshSettings().events_redact is False
    monkeypatch.setenv("VOICEMESH_EVENTS_REDACT", "true")
    assert MeshSettings().events_redact is True


def test_the_jetstream_sink_masks_unless_told_not_to() -> None:
    metrics = ServiceMetrics.create("stt")
    assert JetStreamEvents("stt", "stt-0", metrics).masker is not None
    assert JetStreamEvents("stt", "stt-0", metrics, redact=False).masker is None
