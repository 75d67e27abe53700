"""The simulated Twilio carrier, driven by hand on a virtual clock: what it sends, what plays."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from voicemesh.audio.g711 import ulaw_encode
from voicemesh.cli.callscript import Utterance
from voicemesh.cli.carrier import TwilioCarrier
from voicemesh.cli.carrier_types import (
    FRAME_ULAW,
    QUIET_S,
    EndedBy,
    Phase,
    ServerClear,
    ServerMark,
    ServerMedia,
    StreamSids,
    TurnOutcome,
    parse_server_message,
)

pytestmark = pytest.mark.unit

TICK = 0.02
SIDS = StreamSids("MZ" + "a" * 32, "CA" + "b" * 32, "AC" + "c" * 32)
FIXTURES = Path("shared/assets/twilio")  # set from the assets_dir fixture below


@pytest.fixture(autouse=True, scope="module")
def _reference_messages(assets_dir: Path) -> None:
    """The Twilio reference messages, wherever the shared assets sit (see conftest.py)."""
    global FIXTURES
    FIXTURES = assets_dir / "twilio"
SILENCE = b"\xff" * FRAME_ULAW


def tone(seconds: float, lead_s: float = 0.0, tail_s: float = 0.0) -> bytes:
    """PCM16 16 kHz: a 300 Hz tone between silences."""
    t = np.arange(int(seconds * 16000)) / 16000
    body = (8000 * np.sin(2 * np.pi * 300 * t)).astype("<i2")
    pad = [np.zeros(int(s * 16000), "<i2") for s in (lead_s, tail_s)]
    return np.concatenate([pad[0], body, pad[1]]).tobytes()


def reply_audio(seconds: float, value: int = 3000) -> bytes:
    """μ-law 8 kHz, every sample `value` (so a test can tell replies apart)."""
    return ulaw_encode(np.full(int(seconds * 8000), value, "<i2").tobytes())


class Driver:
    """Runs the carrier on a virtual clock and collects everything it sends."""

    def __init__(self, carrier: TwilioCarrier, t0: float = 100.0) -> None:
        self.carrier = carrier
        self.t0 = t0
        self.ticks = 0
        self.sent: list[tuple[float, dict[str, Any]]] = []

    @property
    def now(self) -> float:
        return self.t0 + self.ticks * TICK

    def tick(self, n: int = 1) -> None:
        for _ in range(n):
            for msg in self.carrier.tick(self.now):
                self.sent.append((self.now, json.loads(json.dumps(msg))))  # as on the wire
            self.ticks += 1

    def tick_until(self, cond: Any, limit: int = 5000) -> None:
        for _ in range(limit):
            if cond():
                return
            self.tick()
        raise AssertionError("condition never held")

    def recv(self, msg: ServerMedia | ServerMark | ServerClear, at: float | None = None) -> None:
        now = self.now - TICK / 2 if at is None else at  # between two ticks
        for out in self.carrier.on_message(msg, now):
            self.sent.append((now, json.loads(json.dumps(out))))

    def media(self, ulaw: bytes, size: int = 160) -> None:
        for i in range(0, len(ulaw), size):
            self.recv(ServerMedia(SIDS.stream_sid, ulaw[i : i + size]))

    def mark(self, name: str) -> None:
        self.recv(ServerMark(SIDS.stream_sid, name))

    def events(self, event: str) -> list[tuple[float, dict[str, Any]]]:
        return [(t, m) for t, m in self.sent if m["event"] == event]

    def voiced_media(self) -> list[int]:
        """Indexes (0-based, by chunk) of media messages that carried caller audio."""
        return [
            int(m["media"]["chunk"]) - 1
            for _, m in self.events("media")
            if base64.b64decode(m["media"]["payload"]) != SILENCE
        ]


def make(utts: list[bytes], **kw: Any) -> Driver:
    kw.setdefault("hangup_wait_s", 0.0)
    kw.setdefault("greeting_timeout_s", 0.0)
    carrier = TwilioCarrier([Utterance(f"u{i}.wav", p) for i, p in enumerate(utts)], sids=SIDS, **kw)
    return Driver(carrier)


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def test_the_stream_opens_like_twilios_and_numbers_every_message() -> None:
    d = make([tone(0.2)], custom_parameters={"agent": "demo", "caller": "x"}, dtmf={0: "12"})
    d.tick(20)
    d.mark("m1")  # nothing buffered: comes back at once, between media messages
    d.tick(5)
    msgs = [m for _, m in d.sent]
    assert msgs[0] == fixture("from_twilio_connected.json")  # no sequenceNumber
    start = msgs[1]
    ref = fixture("from_twilio_start.json")
    assert set(start) == set(ref) and set(start["start"]) == set(ref["start"])
    assert start["sequenceNumber"] == "1" and start["streamSid"] == SIDS.stream_sid
    assert start["start"] | {"customParameters": None} == {
        "accountSid": SIDS.account_sid,
        "streamSid": SIDS.stream_sid,
        "callSid": SIDS.call_sid,
        "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        "customParameters": None,
    }
    assert start["start"]["customParameters"] == {"agent": "demo", "caller": "x"}
    # Every message after `connected` takes the next number, whatever its event; all strings.
    seqs = [m["sequenceNumber"] for m in msgs[1:]]
    assert all(isinstance(s, str) for s in seqs)
    assert [int(s) for s in seqs] == list(range(1, len(msgs)))
    assert {m["event"] for m in msgs[2:]} == {"media", "dtmf", "mark"}
    media = [m for m in msgs if m["event"] == "media"]
    assert [m["media"]["chunk"] for m in media] == [str(i) for i in range(1, 26)]
    assert [m["media"]["timestamp"] for m in media] == [str(20 * i) for i in range(25)]
    assert all(set(m) == set(fixture("from_twilio_media_inbound.json")) for m in media)
    assert all(m["media"]["track"] == "inbound" for m in media)
    dtmf = [m for m in msgs if m["event"] == "dtmf"]
    assert [m["dtmf"] for m in dtmf] == [{"track": "inbound_track", "digit": d} for d in "12"]
    assert set(dtmf[0]) == set(fixture("from_twilio_dtmf.json"))
    mark = next(m for m in msgs if m["event"] == "mark")
    assert mark == {
        "event": "mark",
        "sequenceNumber": mark["sequenceNumber"],
        "streamSid": SIDS.stream_sid,
        "mark": {"name": "m1"},
    }


def test_one_160_byte_media_per_tick_caller_audio_then_silence() -> None:
    pcm = tone(0.5)  # 25 frames
    d = make([pcm], turn_timeout_s=1.0)
    d.tick(40)
    media = d.events("media")
    assert len(media) == 40  # one a tick, never a burst
    assert [t for t, _ in media] == pytest.approx([100.0 + TICK * i for i in range(40)])
    payloads = [base64.b64decode(m["media"]["payload"]) for _, m in media]
    assert all(len(p) == FRAME_ULAW for p in payloads)
    assert d.voiced_media() == list(range(25))  # the utterance, then μ-law silence
    assert payloads[25:] == [SILENCE] * 15
    assert d.carrier.phase is Phase.AWAITING_REPLY


def test_silence_while_the_greeting_plays_then_the_caller_speaks() -> None:
    d = make([tone(0.2)], greeting_timeout_s=2.0)
    d.tick(10)
    d.media(reply_audio(0.4))
    d.mark("greeting")
    d.tick(19)  # the greeting plays for 0.4 s: the mark is not back yet
    assert d.events("mark") == [] and d.voiced_media() == []
    d.tick(2)
    ((t_mark, _),) = d.events("mark")
    assert t_mark == pytest.approx(100.0 + 30 * TICK)  # 20 ticks of play after the tick at 0.2 s
    d.tick_until(lambda: d.voiced_media())
    first = d.voiced_media()[0]
    # The caller waits until no media has come for QUIET_S after the greeting's last audio.
    last_media_at = 100.0 + 9.5 * TICK
    assert d.events("media")[first][0] >= last_media_at + QUIET_S - 1e-6
    result = d.carrier.result()
    assert len(result.greeting_pcm) == pytest.approx(0.4 * 32000, abs=64)


def test_no_greeting_within_the_timeout_starts_the_caller() -> None:
    d = make([tone(0.2)], greeting_timeout_s=1.0)
    d.tick(50)
    assert d.voiced_media() == []
    d.tick(2)
    assert d.voiced_media() == [50, 51]


def test_a_mark_queued_behind_one_second_comes_back_after_one_second_of_ticks() -> None:
    d = make([tone(0.2)], turn_timeout_s=30.0)
    d.tick(15)  # the utterance (10 frames) is out
    d.media(reply_audio(1.0), size=8000)  # one message, like the real call's
    d.mark("end:r1")
    arrival = d.now - TICK / 2
    d.tick(50)  # plays [arrival's next tick, +1 s): 50 ticks
    assert d.events("mark") == []
    d.tick()
    ((t, m),) = d.events("mark")
    assert m["mark"] == {"name": "end:r1"}
    first_play = arrival + TICK / 2
    assert t - first_play == pytest.approx(1.0)
    played = [c for c in d.carrier.played if c.reply == 1]
    assert sum(len(c.ulaw) for c in played) == 8000
    assert played[0].at == pytest.approx(first_play)
    assert [c.at for c in played] == pytest.approx([first_play + i * TICK for i in range(50)])


def test_a_mark_with_nothing_buffered_comes_back_at_once() -> None:
    d = make([tone(0.2)])
    d.tick(3)
    d.mark("first")
    ((t, m),) = d.events("mark")
    assert t == pytest.approx(d.now - TICK / 2)  # on arrival, not at the next tick
    assert m["mark"]["name"] == "first"
    assert d.carrier.marks[0].cleared is False


def test_marks_come_back_in_order_each_after_its_audio() -> None:
    d = make([tone(0.2)])
    d.tick(12)
    d.media(reply_audio(0.1))
    d.mark("a")
    d.media(reply_audio(0.2))
    d.mark("b")
    d.tick(20)
    times = {m["mark"]["name"]: t for t, m in d.events("mark")}
    assert list(times) == ["a", "b"]
    start = 100.0 + 12 * TICK
    assert times["a"] == pytest.approx(start + 0.1)
    assert times["b"] == pytest.approx(start + 0.3)


def test_clear_drops_the_buffer_stops_playback_and_returns_pending_marks_at_once() -> None:
    d = make([tone(0.2)])
    d.tick(12)
    d.media(reply_audio(2.0))
    d.mark("end:r1")
    d.media(reply_audio(1.0, value=-3000))
    d.mark("end:r2")
    d.tick(25)  # 0.5 s of r1 has played
    clear_at = d.now - TICK / 2
    d.recv(ServerClear(SIDS.stream_sid), at=clear_at)
    marks = d.events("mark")
    assert [m["mark"]["name"] for _, m in marks] == ["end:r1", "end:r2"]
    assert all(t == clear_at for t, _ in marks)
    assert [e.cleared for e in d.carrier.marks] == [True, True]
    assert d.carrier.clears == [clear_at]
    assert d.carrier.buffered_bytes == 0
    d.tick(100)
    played = [c for c in d.carrier.played if c.reply == 1]
    assert max(c.end for c in played) == pytest.approx(clear_at)  # cut mid-chunk, nothing after
    heard = sum(len(c.ulaw) for c in played)
    assert heard == round((clear_at - (100.0 + 12 * TICK)) * 8000)
    result = d.carrier.result()
    assert result.turns[0].clears == 1 and result.turns[0].marks == 2


def test_barge_in_starts_the_next_utterance_into_the_reply() -> None:
    d = make([tone(0.2), tone(0.2)], barge_in={1: 300})
    d.tick(15)
    reply_start = d.now  # the first reply byte plays at this tick
    d.media(reply_audio(2.0))
    d.mark("end:r1")
    d.tick_until(lambda: len(d.voiced_media()) > 10)
    second = d.voiced_media()[10]
    t_second = d.events("media")[second][0]
    assert t_second == pytest.approx(reply_start + 0.3)  # 300 ms after the reply began to play
    d.recv(ServerClear(SIDS.stream_sid))  # the server hears the barge-in
    assert [m["mark"]["name"] for _, m in d.events("mark")] == ["end:r1"]
    d.tick(15)
    d.media(reply_audio(0.2, value=-3000))
    d.mark("end:r2")
    d.tick_until(lambda: d.carrier.done)
    result = d.carrier.result()
    assert [t.outcome for t in result.turns] == [TurnOutcome.BARGED_IN, TurnOutcome.ANSWERED]
    assert result.turns[0].reply_audio_seconds == pytest.approx(0.3, abs=0.025)  # cut by the clear
    assert result.turns[1].reply_audio_seconds == pytest.approx(0.2, abs=0.01)
    assert result.ended_by is EndedBy.CARRIER


def test_voice_to_voice_is_from_the_last_loud_frame_to_the_reply_starting_to_play() -> None:
    d = make([tone(0.3, tail_s=0.2)])
    d.tick(40)
    d.media(reply_audio(0.5))
    d.mark("end")
    d.tick_until(lambda: d.carrier.done)
    turn = d.carrier.result().turns[0]
    assert turn.outcome is TurnOutcome.ANSWERED
    assert turn.last_loud_sent_at == pytest.approx(100.0 + 14 * TICK, abs=TICK)
    assert turn.reply_started_at == pytest.approx(100.0 + 40 * TICK)
    assert turn.voice_to_voice_ms == pytest.approx((26 * TICK) * 1000, abs=25)
    assert turn.reply_audio_seconds == pytest.approx(0.5, abs=0.01)
    assert turn.marks == 1 and turn.clears == 0


def test_a_reply_without_a_mark_back_times_out() -> None:
    d = make([tone(0.2)], turn_timeout_s=1.0)
    d.tick(12)
    d.media(reply_audio(0.2))
    d.tick(60)
    assert d.carrier.done
    result = d.carrier.result()
    assert result.turns[0].outcome is TurnOutcome.TIMED_OUT and not result.ok
    assert d.events("stop")


def test_the_caller_lingers_then_hangs_up_with_stop() -> None:
    d = make([tone(0.2)], hangup_wait_s=1.0)
    d.tick(12)
    d.media(reply_audio(0.1))
    d.mark("end")
    d.tick_until(lambda: d.carrier.done)
    ((t_stop, stop),) = d.events("stop")
    assert stop["stop"] == {"accountSid": SIDS.account_sid, "callSid": SIDS.call_sid}
    assert set(stop) == set(fixture("from_twilio_stop.json"))
    assert int(stop["sequenceNumber"]) == int(d.sent[-2][1]["sequenceNumber"]) + 1
    heard_out_at = 100.0 + 12 * TICK + max(0.1, QUIET_S)
    assert t_stop - heard_out_at == pytest.approx(1.0, abs=2 * TICK)
    assert d.carrier.tick(d.now) == []  # nothing after stop
    assert d.carrier.result().ended_by is EndedBy.CARRIER and d.carrier.result().ok


def test_the_server_closing_ends_the_call_after_the_buffer_plays_out() -> None:
    d = make([tone(0.2), tone(0.2)])
    d.tick(12)
    d.media(reply_audio(0.6))  # "goodbye", then the agent hangs up
    close_at = d.now - TICK / 2
    d.carrier.on_closed(close_at, 1000, "agent hung up")
    assert d.carrier.phase is Phase.DRAINING
    sent = len(d.sent)
    d.tick(29)
    assert not d.carrier.done and len(d.sent) == sent  # still playing, sending nothing
    d.tick(2)
    assert d.carrier.done
    result = d.carrier.result()
    assert result.ended_by is EndedBy.SERVER
    assert (result.close_code, result.close_reason) == (1000, "agent hung up")
    assert [t.outcome for t in result.turns] == [TurnOutcome.ANSWERED, TurnOutcome.NOT_SPOKEN]
    assert result.turns[0].reply_audio_seconds == pytest.approx(0.6, abs=0.01)
    assert result.unanswered == ["u1.wav"] and result.ok
    assert not d.events("stop")


def test_the_action_request_carries_twilios_parameters_sorted() -> None:
    d = make([tone(0.2)])
    url = d.carrier.action_request_url("http://127.0.0.1:8080/v1/twilio/connect-action")
    assert url == (
        "http://127.0.0.1:8080/v1/twilio/connect-action?AccountSid="
        + SIDS.account_sid
        + "&CallSid="
        + SIDS.call_sid
        + "&CallStatus=in-progress&Direction=inbound"
        + "&From=%2B12025550101&To=%2B12025550102"
    )


def test_sids_have_twilios_shape() -> None:
    sids = StreamSids.new()
    for sid, prefix in ((sids.stream_sid, "MZ"), (sids.call_sid, "CA"), (sids.account_sid, "AC")):
        assert sid.startswith(prefix) and len(sid) == 34
        int(sid[2:], 16)


def test_server_messages_parse_from_the_reference_fixtures() -> None:
    media = parse_server_message(
        (FIXTURES / "real_call_2020" / "to_twilio_media.json")
        .read_text()
        .replace("an omitted base64 encoded string with length of 10668 characters", "//8=")
    )
    assert media == ServerMedia("9e7ee906-377b-408f-a852-eebfb834422a", b"\xff\xff")
    assert parse_server_message((FIXTURES / "to_twilio_mark.json").read_text()) == ServerMark(
        "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", "my label"
    )
    assert parse_server_message((FIXTURES / "to_twilio_clear.json").read_text()) == ServerClear(
        "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
    )
    for bad, why in (
        (b"\x00", "binary"),
        ("{", "not JSON"),
        (json.dumps({"event": "connected"}), "not one a server sends"),
        (json.dumps({"event": "media", "streamSid": "MZ1", "media": {"payload": "a3242sa..."}}), "base64"),
        (json.dumps({"event": "mark", "mark": {"name": "x"}}), "without streamSid"),
    ):
        with pytest.raises(ValueError, match=why):
            parse_server_message(bad)


def test_messages_for_another_stream_are_ignored_and_counted() -> None:
    d = make([tone(0.2)])
    d.tick(3)
    d.recv(ServerMark("MZother", "x"))
    assert d.events("mark") == []
    assert d.carrier.problems == {"message for another streamSid (ignored)": 1}
    assert not d.carrier.result().ok


def test_bad_scripts_are_refused() -> None:
    with pytest.raises(ValueError, match="utterance 3 does not exist"):
        make([tone(0.1)], dtmf={3: "1"})
    with pytest.raises(ValueError, match="not digits"):
        make([tone(0.1)], dtmf={0: "12x"})
    with pytest.raises(ValueError, match="customParameters are strings"):
        make([tone(0.1)], custom_parameters={"n": 3})
