"""The caller's script, driven by hand on a virtual clock: what it sends, when it moves on."""

from __future__ import annotations

import numpy as np
import pytest

from voicemesh.cli.callscript import (
    FRAME_BYTES,
    SILENCE,
    CallScript,
    Phase,
    Utterance,
    last_loud_frame,
)
from voicemesh.v1 import edge_pb2

pytestmark = pytest.mark.unit

TICK = 0.02


def tone(frames: int, lead_silence: int = 0, tail_silence: int = 0) -> bytes:
    n = frames * 320
    samples = (8000 * np.sin(2 * np.pi * 440 * np.arange(n) / 16000)).astype("<i2")
    return bytes(lead_silence * FRAME_BYTES) + samples.tobytes() + bytes(tail_silence * FRAME_BYTES)


def response(rid: str, turn: str, text: str, final: bool = False) -> edge_pb2.ServerMessage:
    return edge_pb2.ServerMessage(
        response=edge_pb2.ResponseText(response_id=rid, turn_id=turn, text=text, final=final)
    )


def mark(rid: str, name: str) -> edge_pb2.ServerMessage:
    return edge_pb2.ServerMessage(mark=edge_pb2.PlayoutMark(response_id=rid, name=name))


def timing(turn: str, last_voiced: int, **ms: int) -> edge_pb2.ServerMessage:
    return edge_pb2.ServerMessage(
        timing=edge_pb2.TurnTiming(turn_id=turn, last_voiced_message=last_voiced, **ms)
    )


def transcript(turn: str, text: str, final: bool = True) -> edge_pb2.ServerMessage:
    return edge_pb2.ServerMessage(transcript=edge_pb2.TranscriptUpdate(turn_id=turn, text=text, final=final))


class Driver:
    """Runs the script on a virtual clock: one frame per 20 ms tick."""

    def __init__(self, script: CallScript, t0: float = 100.0) -> None:
        self.script = script
        self.now = t0
        self.sent: list[bytes] = []

    def tick(self, n: int = 1) -> None:
        for _ in range(n):
            frame = self.script.next_frame(self.now)
            if frame is not None:
                assert len(frame) == FRAME_BYTES
                self.sent.append(frame)
            self.now += TICK

    def tick_until(self, cond: object, limit: int = 10_000) -> None:
        for _ in range(limit):
            if cond():  # type: ignore[operator]
                return
            self.tick()
        raise AssertionError("condition never held")

    def recv(self, msg: edge_pb2.ServerMessage) -> None:
        self.script.on_message(msg, self.now)

    def audio(self, frames: int, value: int) -> None:
        for _ in range(frames):
            self.script.on_audio(np.full(320, value, "<i2").tobytes(), self.now)

    def reply(self, rid: str, turn: str, text: str, frames: int = 5, value: int = 1000) -> None:
        self.recv(response(rid, turn, text[: len(text) // 2]))
        self.recv(response(rid, turn, text[len(text) // 2 :]))
        self.recv(response(rid, turn, text, final=True))
        self.recv(mark(rid, "start"))
        self.audio(frames, value)
        self.recv(mark(rid, "end"))


def voiced(frame: bytes) -> bool:
    return frame != SILENCE


def make(utts: list[Utterance], **kw: object) -> Driver:
    kw.setdefault("hangup_wait_s", 0.0)  # hang up at once after the last turn, unless a test says
    return Driver(CallScript(utts, now=100.0, **kw))  # type: ignore[arg-type]


def test_last_loud_frame_ignores_trailing_silence() -> None:
    assert last_loud_frame(tone(10, lead_silence=5, tail_silence=20)) == 14
    assert last_loud_frame(bytes(FRAME_BYTES * 10)) == 0


def test_caller_stays_silent_until_the_greeting_has_played() -> None:
    d = make([Utterance("a.wav", tone(10))], greeting_timeout_s=0.2)
    d.tick(5)
    d.recv(response("g", "", "Hello, how can I help?", final=True))
    d.recv(mark("g", "start"))
    d.tick(30)  # a greeting that has started is waited for past the greeting timeout
    assert not any(voiced(f) for f in d.sent)
    d.recv(mark("g", "end"))
    d.tick()
    assert voiced(d.sent[-1])
    assert d.script.greeting()[0] == "Hello, how can I help?"


def test_no_greeting_within_the_timeout_starts_the_caller() -> None:
    d = make([Utterance("a.wav", tone(10))], greeting_timeout_s=1.0)
    d.tick(49)  # 0.98 s of silence
    assert not any(voiced(f) for f in d.sent)
    d.tick(3)
    assert voiced(d.sent[-1])


def test_without_greeting_wait_the_caller_speaks_at_once() -> None:
    d = make([Utterance("a.wav", tone(3))], wait_greeting=False)
    d.tick(3)
    assert all(voiced(f) for f in d.sent)
    d.tick(2)
    assert d.sent[-2:] == [SILENCE, SILENCE]  # then silence, like a phone


def test_utterance_is_streamed_exactly_then_silence() -> None:
    pcm = tone(7)[:-100]  # not a whole number of frames: the last one is zero-padded
    d = make([Utterance("a.wav", pcm)], wait_greeting=False)
    d.tick(10)
    sent = b"".join(d.sent[:7])
    assert sent[: len(pcm)] == pcm and sent[len(pcm) :] == bytes(100)
    assert d.sent[7:] == [SILENCE] * 3
    assert d.script.phase is Phase.AWAITING_REPLY


def test_turn_completes_only_with_its_timing_and_the_end_of_its_reply() -> None:
    d = make(
        [Utterance("a.wav", tone(10, tail_silence=5)), Utterance("b.wav", tone(10))],
        wait_greeting=False,
    )
    d.tick(20)
    d.recv(transcript("t1", "first question"))
    d.recv(response("r1", "t1", "first answer", final=True))
    d.recv(mark("r1", "start"))
    d.audio(5, 1000)
    d.tick(3)
    assert not voiced(d.sent[-1])  # reply still playing
    d.recv(mark("r1", "end"))
    d.tick(3)
    assert not voiced(d.sent[-1])  # no timing yet: still waiting
    d.recv(timing("t1", 9, endpoint_ms=200))
    d.tick()
    assert voiced(d.sent[-1])  # b.wav begins
    first = d.script.turn_results()[0]
    assert (first.transcript, first.reply_text, first.error) == ("first question", "first answer", None)
    assert first.reply_audio == np.full(320 * 5, 1000, "<i2").tobytes()


def test_a_turn_that_ended_mid_utterance_does_not_complete_it() -> None:
    # Speech, a long pause (the edge endpoints there), more speech: only the last turn counts.
    pcm = tone(10) + bytes(60 * FRAME_BYTES) + tone(10)
    d = make([Utterance("a.wav", pcm), Utterance("b.wav", tone(5))], wait_greeting=False)
    d.tick(40)
    d.recv(timing("t1", 9))
    d.reply("r1", "t1", "early reply")
    d.tick_until(lambda: d.script.phase is Phase.AWAITING_REPLY)
    d.tick(5)
    assert d.script.phase is Phase.AWAITING_REPLY
    d.recv(timing("t2", 79))
    d.reply("r2", "t2", "real reply")
    d.tick()
    assert d.script.phase is Phase.SPEAKING
    turn = d.script.turn_results()[0]
    assert turn.turn_ids == ["t1", "t2"]
    assert turn.reply_text == "early reply real reply"


def test_no_completion_while_the_edge_says_the_caller_is_speaking() -> None:
    d = make([Utterance("a.wav", tone(5))], wait_greeting=False)
    d.tick(6)
    d.recv(edge_pb2.ServerMessage(state=edge_pb2.StateChanged(state="user_speaking")))
    d.recv(timing("t1", 4))
    d.reply("r1", "t1", "answer")
    d.tick()
    assert not d.script.done
    d.recv(edge_pb2.ServerMessage(state=edge_pb2.StateChanged(state="listening")))
    assert d.script.done and d.script.ended_by == "caller"


def test_voice_to_voice_is_first_reply_audio_minus_send_time_of_last_voiced_message() -> None:
    d = make([Utterance("a.wav", tone(10))], wait_greeting=False)
    d.tick(25)  # message 9 (last voiced) left at 100.18
    d.recv(response("r1", "t1", "answer", final=True))
    d.recv(mark("r1", "start"))
    d.now = 100.18 + 0.6123
    d.audio(1, 5)
    d.recv(timing("t1", 9, endpoint_ms=200, stt_final_ms=12, first_token_ms=3))
    d.now += 0.1
    d.recv(mark("r1", "end"))
    assert d.script.done
    [turn] = d.script.turn_results()
    assert turn.latency.voice_to_voice == pytest.approx(612.3)
    assert (turn.latency.endpoint, turn.latency.stt_final, turn.latency.first_token) == (
        200,
        12,
        3,
    )


def test_turn_timeout_reports_an_error_and_moves_on() -> None:
    d = make(
        [Utterance("a.wav", tone(5)), Utterance("b.wav", tone(5))],
        wait_greeting=False,
        turn_timeout_s=1.0,
    )
    d.tick(5 + 49)
    assert d.script.phase is Phase.AWAITING_REPLY
    d.tick(2)
    assert d.script.phase is Phase.SPEAKING and voiced(d.sent[-1])
    d.tick_until(lambda: d.script.done)
    errors = [t.error for t in d.script.turn_results()]
    assert errors == [
        "no turn timing from the edge within 1 s after the audio ended",
        "no turn timing from the edge within 1 s after the audio ended",
    ]


def test_timeout_names_a_reply_that_never_finished() -> None:
    d = make([Utterance("a.wav", tone(5))], wait_greeting=False, turn_timeout_s=1.0)
    d.tick(6)
    d.recv(timing("t1", 4))
    d.recv(response("r1", "t1", "answ"))
    d.recv(mark("r1", "start"))
    d.tick_until(lambda: d.script.done)
    [turn] = d.script.turn_results()
    assert turn.error == "the reply to turn t1 did not finish playing within 1 s"


def test_agent_hangup_stops_the_call() -> None:
    d = make([Utterance("a.wav", tone(5)), Utterance("b.wav", tone(5))], wait_greeting=False)
    d.tick(6)
    d.recv(timing("t1", 4))
    d.recv(response("r1", "t1", "Goodbye!", final=True))
    d.recv(mark("r1", "start"))
    d.audio(3, 1)
    d.recv(edge_pb2.ServerMessage(end=edge_pb2.CallEnd(reason="agent hung up")))
    assert d.script.done and d.script.ended_by == "agent"
    assert d.script.next_frame(d.now) is None  # nothing more is sent
    [turn] = d.script.turn_results()
    assert turn.reply_text == "Goodbye!" and turn.error is None
    assert d.script.unanswered() == ["b.wav"]


def test_hangup_just_after_the_next_utterance_began_is_not_a_failed_turn() -> None:
    d = make([Utterance("a.wav", tone(5)), Utterance("b.wav", tone(5))], wait_greeting=False)
    d.tick(6)
    d.recv(timing("t1", 4))
    d.reply("r1", "t1", "Goodbye!")
    d.tick(2)  # b.wav has begun
    d.recv(edge_pb2.ServerMessage(end=edge_pb2.CallEnd(reason="agent hung up")))
    assert [t.wav for t in d.script.turn_results()] == ["a.wav"]
    assert d.script.unanswered() == ["b.wav"]


def test_dropped_connection_fails_the_pending_turn() -> None:
    d = make([Utterance("a.wav", tone(5))], wait_greeting=False)
    d.tick(6)
    d.script.on_closed(d.now, "code 1011: internal error")
    assert d.script.done and d.script.ended_by == "edge"
    [turn] = d.script.turn_results()
    assert turn.error == "the call ended before the reply had played (code 1011: internal error)"


def test_greeting_is_kept_apart_from_replies() -> None:
    d = make([Utterance("a.wav", tone(5))])
    d.reply("g", "", "Welcome.", value=7)
    d.tick(7)
    d.recv(transcript("t1", "hi"))
    d.recv(timing("t1", 4))
    d.reply("r1", "t1", "Hello there.", frames=2, value=9)
    text, audio = d.script.greeting()
    assert text == "Welcome." and audio == np.full(320 * 5, 7, "<i2").tobytes()
    [turn] = d.script.turn_results()
    assert turn.reply_text == "Hello there."
    assert turn.reply_audio == np.full(320 * 2, 9, "<i2").tobytes()


def test_media_edge_order_and_an_unplayed_response_do_not_block_the_turn() -> None:
    # media-edge sends: text deltas, mark start, timing, audio..., mark end. A response
    # cancelled before it played has text but no marks: it must not hold the caller up.
    d = make([Utterance("a.wav", tone(5))], wait_greeting=False)
    d.tick(8)  # message 4 (last voiced) left at 100.08
    d.recv(response("r0", "t1", "superseded"))
    d.recv(response("r1", "t1", "Sure."))
    d.recv(mark("r1", "start"))
    d.recv(timing("t1", 4, endpoint_ms=300))
    d.now = 100.08 + 0.45
    d.audio(3, 5)
    d.recv(mark("r1", "end"))
    assert d.script.done and d.script.ended_by == "caller"
    [turn] = d.script.turn_results()
    assert turn.latency.voice_to_voice == pytest.approx(450.0)
    assert turn.error is None


def test_after_the_last_turn_an_agent_goodbye_hangup_counts_as_the_agents() -> None:
    d = make([Utterance("a.wav", tone(5))], wait_greeting=False, hangup_wait_s=0.5)
    d.tick(6)
    d.recv(timing("t1", 4))
    d.reply("r1", "t1", "Goodbye!")
    assert d.script.phase is Phase.LINGERING
    d.tick(3)
    assert d.sent[-3:] == [SILENCE] * 3
    d.recv(edge_pb2.ServerMessage(end=edge_pb2.CallEnd(reason="agent")))
    assert d.script.done and d.script.ended_by == "agent"
    assert [t.error for t in d.script.turn_results()] == [None]


def test_the_caller_hangs_up_when_the_agent_does_not() -> None:
    d = make([Utterance("a.wav", tone(5))], wait_greeting=False, hangup_wait_s=0.5)
    d.tick(6)
    d.recv(timing("t1", 4))
    d.reply("r1", "t1", "Anything else?")
    d.tick(24)  # 0.48 s
    assert not d.script.done
    d.tick(3)
    assert d.script.done and d.script.ended_by == "caller"


@pytest.mark.parametrize("reason", ["error:stt", "error:tts", "no_capacity", "unavailable"])
def test_a_call_the_edge_ends_in_failure_is_not_ended_by_the_agent(reason: str) -> None:
    d = make([Utterance("a.wav", tone(5)), Utterance("b.wav", tone(5))], wait_greeting=False)
    d.tick(6)
    d.recv(timing("t1", 4))
    d.recv(edge_pb2.ServerMessage(end=edge_pb2.CallEnd(reason=reason)))
    assert d.script.done and d.script.ended_by == "edge" and d.script.end_reason == reason
    assert d.script.errors == [f"the edge ended the call: {reason}"]
    [turn] = d.script.turn_results()
    assert turn.error == f"the call ended before the reply had played ({reason})"


def test_a_call_level_error_makes_the_call_not_ok() -> None:
    from voicemesh.cli.wsclient import CallResult

    clean = CallResult("s", "a", "", b"", turns=[], ended_by="agent", end_reason="agent")
    assert clean.ok
    assert not CallResult("s", "a", "", b"", [], "agent", errors=["edge error bad_frame: …"]).ok
    assert not CallResult("s", "a", "", b"", [], "edge", end_reason="error:stt").ok


def test_a_filler_is_reported_with_its_turn_and_its_audio_is_not_the_replys() -> None:
    d = make([Utterance("a.wav", tone(10))], wait_greeting=False)
    d.tick(12)
    d.recv(transcript("t1", "book a table"))
    d.recv(
        edge_pb2.ServerMessage(filler=edge_pb2.FillerPlayout(turn_id="t1", text="One moment.", name="start"))
    )
    d.audio(4, 500)
    d.recv(
        edge_pb2.ServerMessage(filler=edge_pb2.FillerPlayout(turn_id="t1", text="One moment.", name="end"))
    )
    d.recv(timing("t1", 9, filler_ms=1000))
    d.reply("r1", "t1", "Booked for four.", frames=5, value=1000)
    d.tick_until(lambda: d.script.done)
    [turn] = d.script.turn_results()
    assert turn.fillers == ["One moment."] and turn.reply_text == "Booked for four."
    assert turn.reply_audio == np.full(320 * 5, 1000, "<i2").tobytes()  # the filler's is not in it
    assert (d.script.filler_audio_bytes, d.script.stray_audio_bytes) == (4 * 640, 0)
    assert turn.to_json()["fillers"] == ["One moment."]
