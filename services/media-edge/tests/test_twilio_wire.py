from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from voicemesh.edge.twilio_wire import (
    MAX_MESSAGE_BYTES,
    Connected,
    Dtmf,
    Mark,
    Media,
    MediaFormat,
    SequenceTracker,
    Start,
    Stop,
    TwilioProtocolError,
    encode_clear,
    encode_mark,
    encode_media,
    parse_message,
)

pytestmark = pytest.mark.unit

SID = "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
# Fixtures whose payload the docs shortened ("no+JhoaJjpzS..."): not valid base64.
SHORTENED_PAYLOAD = {"from_twilio_media_inbound.json", "from_twilio_media_outbound_track.json"}


@pytest.fixture(scope="module")
def twilio_dir(assets_dir: Path) -> Path:
    return assets_dir / "twilio"


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def media_msg(**media: Any) -> dict[str, Any]:
    body = {"track": "inbound", "chunk": "1", "timestamp": "0", "payload": "AAEC"}
    body.update(media)
    return {"event": "media", "sequenceNumber": "2", "streamSid": SID, "media": body}


def start_msg(**start: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "accountSid": "AC1",
        "streamSid": SID,
        "callSid": "CA1",
        "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        "customParameters": {"agent": "restaurant"},
    }
    body.update(start)
    return {"event": "start", "sequenceNumber": "1", "streamSid": SID, "start": body}


def refused(msg: Any) -> str:
    text = msg if isinstance(msg, str | bytes) else json.dumps(msg)
    with pytest.raises(TwilioProtocolError) as info:
        parse_message(text)
    return str(info.value)


# --- the reference fixtures ----------------------------------------------------------------


def test_every_from_twilio_fixture_parses_except_the_shortened_payloads(twilio_dir: Path) -> None:
    paths = sorted(twilio_dir.glob("**/from_twilio_*.json"))
    assert len(paths) == 11
    for path in paths:
        text = path.read_text()
        if path.name in SHORTENED_PAYLOAD and path.parent == twilio_dir:
            with pytest.raises(TwilioProtocolError, match=r"^media\.payload is not valid base64$"):
                parse_message(text)
        else:
            msg = parse_message(text)
            assert type(msg).__name__.lower() == load(path)["event"], path


def test_the_docs_start_message(twilio_dir: Path) -> None:
    msg = parse_message((twilio_dir / "from_twilio_start.json").read_text())
    assert msg == Start(
        stream_sid=SID,
        sequence_number=1,
        account_sid="ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
        call_sid="CAXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
        tracks=("inbound",),
        custom_parameters={"FirstName": "Jane", "LastName": "Doe", "RemoteParty": "Bob"},
        media_format=MediaFormat("audio/x-mulaw", 8000, 1),
    )


def test_the_docs_connected_dtmf_mark_and_stop(twilio_dir: Path) -> None:
    def parse(name: str) -> object:
        return parse_message((twilio_dir / name).read_text())

    assert parse("from_twilio_connected.json") == Connected(protocol="Call", version="1.0.0")
    assert parse("from_twilio_dtmf.json") == Dtmf(SID, 5, "inbound_track", "1")
    assert parse("from_twilio_mark.json") == Mark(SID, 4, "my label")
    assert parse("from_twilio_stop.json") == Stop(
        SID, 5, "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", "CAXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
    )


def test_the_docs_media_parses_once_its_payload_is_real_base64(twilio_dir: Path) -> None:
    doc = load(twilio_dir / "from_twilio_media_inbound.json")
    doc["media"]["payload"] = base64.b64encode(b"\xff" * 160).decode()
    assert parse_message(json.dumps(doc)) == Media(SID, 4, "inbound", 2, 5, b"\xff" * 160)


def test_the_real_2020_call(twilio_dir: Path) -> None:
    real = twilio_dir / "real_call_2020"
    sid = "9e7ee906-377b-408f-a852-eebfb834422a"  # a UUID: streamSid is not validated strictly
    start = parse_message((real / "from_twilio_start.json").read_text())
    assert isinstance(start, Start)
    assert start.stream_sid == sid
    assert start.custom_parameters == {"aCutomParameter": "aCustomValue that was set in TwiML"}
    media = parse_message((real / "from_twilio_media.json").read_bytes())
    assert isinstance(media, Media)
    assert (media.stream_sid, media.sequence_number, media.track) == (sid, 2, "inbound")
    assert (media.chunk, media.timestamp_ms, len(media.payload)) == (1, 52, 160)
    assert parse_message((real / "from_twilio_mark.json").read_text()) == Mark(sid, 103, "Repeat message 0")


# --- encoding ------------------------------------------------------------------------------


def shape(value: Any) -> Any:
    """The structure of a JSON value: keys kept, leaf values replaced by their type."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    return type(value).__name__


def test_encoded_messages_have_the_shape_of_the_reference(twilio_dir: Path) -> None:
    encoded = {
        "to_twilio_media.json": encode_media(SID, b"\x7f" * 160),
        "to_twilio_mark.json": encode_mark(SID, "my label"),
        "to_twilio_clear.json": encode_clear(SID),
    }
    for name, text in encoded.items():
        ref = load(twilio_dir / name)
        assert shape(json.loads(text)) == shape(ref), name
    assert json.loads(encoded["to_twilio_mark.json"]) == load(twilio_dir / "to_twilio_mark.json")
    assert json.loads(encoded["to_twilio_clear.json"]) == load(twilio_dir / "to_twilio_clear.json")
    real = twilio_dir / "real_call_2020"
    sid = "9e7ee906-377b-408f-a852-eebfb834422a"
    assert json.loads(encode_mark(sid, "Repeat message 0")) == load(real / "to_twilio_mark.json")
    assert shape(json.loads(encode_media(sid, bytes(8000)))) == shape(load(real / "to_twilio_media.json"))


@pytest.mark.parametrize("size", [0, 1, 159, 160, 161, 8000])
def test_media_payload_round_trips_at_any_size(size: int) -> None:
    ulaw = bytes(i % 256 for i in range(size))
    out = json.loads(encode_media(SID, ulaw))
    assert base64.b64decode(out["media"]["payload"], validate=True) == ulaw
    msg = media_msg(payload=out["media"]["payload"])
    parsed = parse_message(json.dumps(msg))
    assert isinstance(parsed, Media)
    assert parsed.payload == ulaw


def test_encoders_refuse_an_empty_stream_sid() -> None:
    for encode in (lambda: encode_media("", b""), lambda: encode_mark("", "x"), lambda: encode_clear("")):
        with pytest.raises(TwilioProtocolError, match="stream_sid"):
            encode()


# --- numbers on the wire are strings -------------------------------------------------------


def test_numbers_sent_as_strings_or_integers_parse_to_int() -> None:
    as_strings = parse_message(json.dumps(media_msg(chunk="7", timestamp="140")))
    as_ints = parse_message(json.dumps({**media_msg(chunk=7, timestamp=140), "sequenceNumber": 2}))
    assert as_strings == as_ints
    assert isinstance(as_strings, Media)
    assert (as_strings.sequence_number, as_strings.chunk, as_strings.timestamp_ms) == (2, 7, 140)


@pytest.mark.parametrize("bad", ["", "1.5", "-1", "+1", " 1", "1e3", "abc", "٣", 1.0, -1, True, None, [1]])
def test_a_non_integer_or_negative_number_is_refused_naming_the_field(bad: Any) -> None:
    assert refused(media_msg(chunk=bad)).startswith("media.chunk ")
    assert refused(media_msg(timestamp=bad)).startswith("media.timestamp ")
    msg = {"event": "mark", "sequenceNumber": bad, "streamSid": SID, "mark": {"name": "x"}}
    assert refused(msg).startswith("sequenceNumber of the 'mark' message ")


def test_an_absurdly_large_number_is_refused() -> None:
    assert "too large" in refused(media_msg(chunk="9" * 30))
    assert "too large" in refused(media_msg(chunk=2**64))


# --- errors name what is wrong -------------------------------------------------------------


def test_refused_payloads() -> None:
    assert refused(media_msg(payload="no+JhoaJjpzS...")) == "media.payload is not valid base64"
    assert refused(media_msg(payload="AAE")) == "media.payload is not valid base64"  # bad padding
    assert refused(media_msg(payload="AA\nEC")) == "media.payload is not valid base64"
    assert refused(media_msg(payload="ÄÄÄÄ")) == "media.payload is not valid base64"
    assert refused(media_msg(payload=5)) == "media.payload must be a string, got 5"


@pytest.mark.parametrize(
    ("msg", "expected"),
    [
        ({"event": "mark", "sequenceNumber": "4", "streamSid": SID}, "mark is missing"),
        ({"event": "mark", "sequenceNumber": "4", "streamSid": SID, "mark": {}}, "mark.name is missing"),
        ({"event": "mark", "sequenceNumber": "4", "streamSid": SID, "mark": {"name": 3}}, "mark.name must be"),
        ({"event": "mark", "sequenceNumber": "4", "mark": {"name": "x"}}, "streamSid of the 'mark' message is missing"),
        ({"event": "mark", "sequenceNumber": "4", "streamSid": "", "mark": {"name": "x"}}, "streamSid of the 'mark' message is empty"),
        ({"event": "mark", "streamSid": SID, "mark": {"name": "x"}}, "sequenceNumber of the 'mark' message is missing"),
        ({"event": "media", "sequenceNumber": "2", "streamSid": SID, "media": []}, "media must be an object"),
        ({"event": "stop", "sequenceNumber": "5", "streamSid": SID, "stop": {"callSid": "CA1"}}, "stop.accountSid is missing"),
        ({"event": "connected", "protocol": "Call"}, "version of the 'connected' message is missing"),
        ({"event": "hello"}, "unknown event 'hello'"),
        ({"event": "clear", "streamSid": SID}, "event 'clear' is sent by the server, never by Twilio"),
        ({"event": 1}, "event must be a string"),
        ({"streamSid": SID}, "event is missing"),
    ],
)
def test_each_error_names_the_field(msg: dict[str, Any], expected: str) -> None:
    assert refused(msg).startswith(expected)


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        ({"customParameters": {"agent": 5}}, "start.customParameters['agent'] must be a string, got 5"),
        ({"customParameters": {"x": None}}, "start.customParameters['x'] must be a string, got null"),
        ({"customParameters": ["agent"]}, "start.customParameters must be an object"),
        ({"mediaFormat": {"encoding": "audio/x-mulaw", "channels": 1}}, "start.mediaFormat.sampleRate is missing"),
        ({"mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 0, "channels": 1}}, "start.mediaFormat.sampleRate must be positive"),
        ({"mediaFormat": "mulaw"}, "start.mediaFormat must be an object"),
        ({"tracks": "inbound"}, "start.tracks must be an array"),
        ({"tracks": ["inbound", 2]}, "start.tracks[1] must be a string"),
        ({"callSid": ""}, "start.callSid is empty"),
        ({"streamSid": "MZother"}, "start.streamSid differs"),
    ],
)
def test_start_errors_name_the_field(start: dict[str, Any], expected: str) -> None:
    assert refused(start_msg(**start)).startswith(expected)


def test_custom_parameters_default_to_empty() -> None:
    msg = start_msg()
    del msg["start"]["customParameters"]
    parsed = parse_message(json.dumps(msg))
    assert isinstance(parsed, Start)
    assert parsed.custom_parameters == {}


def test_another_media_format_is_parsed_not_refused() -> None:
    fmt = {"encoding": "audio/l16", "sampleRate": "16000", "channels": 2}
    parsed = parse_message(json.dumps(start_msg(mediaFormat=fmt)))
    assert isinstance(parsed, Start)
    assert parsed.media_format == MediaFormat("audio/l16", 16000, 2)  # the transport decides


def test_start_stream_sid_may_come_only_from_inside_start() -> None:
    msg = start_msg()
    del msg["streamSid"]
    parsed = parse_message(json.dumps(msg))
    assert isinstance(parsed, Start)
    assert parsed.stream_sid == SID


def test_custom_parameters_stay_out_of_repr() -> None:
    parsed = parse_message(json.dumps(start_msg(customParameters={"from": "+15551234567"})))
    assert "+15551234567" not in repr(parsed)
    hash(parsed)  # frozen and hashable despite the dict


@pytest.mark.parametrize("digit", list("0123456789*#ABCD"))
def test_every_dtmf_digit(digit: str) -> None:
    msg = {"event": "dtmf", "streamSid": SID, "sequenceNumber": "5", "dtmf": {"track": "inbound_track", "digit": digit}}
    assert parse_message(json.dumps(msg)) == Dtmf(SID, 5, "inbound_track", digit)


@pytest.mark.parametrize("digit", ["", "a", "E", "12", "١", " 1"])
def test_a_bad_dtmf_digit_is_refused(digit: str) -> None:
    msg = {"event": "dtmf", "streamSid": SID, "sequenceNumber": "5", "dtmf": {"track": "inbound_track", "digit": digit}}
    assert refused(msg).startswith("dtmf.digit must be one of 0-9, *, #, A-D")


def test_key_order_and_unknown_keys_do_not_matter() -> None:
    a = '{"event":"mark","sequenceNumber":"4","streamSid":"S","mark":{"name":"n"}}'
    b = '{"mark":{"extra":1,"name":"n"},"streamSid":"S","future":true,"sequenceNumber":"4","event":"mark"}'
    assert parse_message(a) == parse_message(b) == Mark("S", 4, "n")


# --- malformed frames ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "message is not valid JSON"),
        ("{", "message is not valid JSON"),
        ("[]", "message must be a JSON object, got an array"),
        ('"mark"', "message must be a JSON object, got 'mark'"),
        ("null", "message must be a JSON object, got null"),
        ('{"event": NaN}', "message is not valid JSON"),
        (b"\xff\xfe{}", "message is not valid UTF-8"),
        (b'{"event":"connected","protocol":"Call","version":"1"}', ""),
    ],
)
def test_malformed_frames(text: str | bytes, expected: str) -> None:
    if not expected:
        assert parse_message(text) == Connected("Call", "1")
    else:
        assert refused(text).startswith(expected)


def test_a_frame_over_the_limit_is_refused_before_parsing() -> None:
    big = json.dumps(media_msg(payload=base64.b64encode(bytes(MAX_MESSAGE_BYTES)).decode()))
    assert "more than the limit" in refused(big)
    assert "more than the limit" in refused(big.encode())
    assert "more than the limit" in refused("é" * (MAX_MESSAGE_BYTES // 2 + 1))  # counted in UTF-8 bytes


def test_deep_nesting_is_refused_not_crashed() -> None:
    assert refused("[" * (MAX_MESSAGE_BYTES - 1)).startswith("message is not valid JSON")
    assert refused('{"event":' * 5_000 + '"x"' + "}" * 5_000).startswith("message is not valid JSON")


def test_a_non_text_argument_is_refused() -> None:
    with pytest.raises(TwilioProtocolError, match="message must be text or bytes, got int"):
        parse_message(5)  # type: ignore[arg-type]


# --- sequence numbers ----------------------------------------------------------------------


def test_sequence_tracker_counts_gaps_and_out_of_order() -> None:
    tracker = SequenceTracker()
    assert [tracker.observe(n) for n in (1, 2, 3, 6, 7)] == [0, 0, 0, 2, 0]
    assert tracker.observe(7) == -1  # repeated
    assert tracker.observe(4) == -1  # backward
    assert tracker.observe(8) == 0  # carries on from the highest seen
    assert (tracker.last, tracker.skipped, tracker.out_of_order) == (8, 2, 2)


def test_sequence_tracker_expects_start_to_be_one() -> None:
    assert SequenceTracker().observe(3) == 2
