"""The call core on a virtual clock: scripted event sequences in, decisions out."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from voicemesh.edge import decisions as d
from voicemesh.edge.core import CallCore
from voicemesh.edge.port import EndReason
from voicemesh.edge.turns import TurnConfig

pytestmark = pytest.mark.unit
FRAME_S = 0.020
# Speech alone interrupts the agent (after 200 ms), as an agent with barge_in_min_words: 0.
VAD_BARGE_IN = TurnConfig(endpoint_silence_ms=500, idle_timeout_ms=0, barge_in_min_speech_ms=200, barge_in_min_words=0)


class Call:
    """Drives a CallCore frame by frame; `now` is the virtual clock (frame index * 20 ms)."""

    def __init__(self, config: TurnConfig | None = None) -> None:
        self.core = CallCore(config or TurnConfig(endpoint_silence_ms=500, idle_timeout_ms=0))
        self.index = 0
        self.log: list[d.Decision] = []

    @property
    def now(self) -> float:
        return self.index * FRAME_S

    def frames(self, voiced: bool, n: int) -> list[d.Decision]:
        out: list[d.Decision] = []
        for _ in range(n):
            out += self.core.on_frame(self.index, voiced, self.now)
            self.index += 1
        self.log += out
        return out

    def speak(self, ms: int) -> list[d.Decision]:
        return self.frames(True, ms // 20)

    def silence(self, ms: int) -> list[d.Decision]:
        return self.frames(False, ms // 20)

    def record(self, out: list[d.Decision]) -> list[d.Decision]:
        self.log += out
        return out

    def reply(self, rid: str, turn: str, text: str, clauses: Sequence[tuple[int, str]] = ()) -> None:
        """Reasoning answers `turn` and tts delivers the response's first audio."""
        self.record(self.core.on_delta(rid, turn, text, self.now))
        self.record(self.core.on_response_end(rid, turn, text, self.now))
        self.record(self.core.on_tts_audio(rid, self.now))
        for offset, clause in clauses:
            self.core.on_tts_clause(rid, offset, clause)

    def play(self, rid: str, frames: int, far_end_lag: int = 0) -> list[d.Decision]:
        """Play `frames` frames; clause marks come back played `far_end_lag` frames later
        (0: at once, as on a port without a far-end buffer)."""
        out = self.record(self.core.on_playout_started(rid, self.now))
        pending: list[tuple[int, int]] = []
        for frame in range(frames):
            pending += [(frame + far_end_lag, i) for i in self.core.clause_marks_due(rid)]
            for back in [p for p in pending if p[0] <= frame]:
                self.core.on_clause_heard(rid, back[1])
                pending.remove(back)
            self.core.on_frame_played(rid)
        return out


def of(kind: type, out: Sequence[d.Decision]) -> list:  # type: ignore[type-arg]
    return [x for x in out if isinstance(x, kind)]


def test_every_frame_goes_to_stt_and_a_turn_ends_with_a_flush_after_the_endpoint() -> None:
    call = Call()
    out = call.speak(600)
    assert len(of(d.ForwardAudio, out)) == 30
    assert of(d.SpeechStartedEvent, out) == [d.SpeechStartedEvent(0)]
    assert of(d.SttFlush, call.silence(480)) == []
    out = call.silence(40)
    assert of(d.SttFlush, out) == [d.SttFlush("t1")]
    (ended,) = of(d.TurnEndedEvent, out)
    assert ended.last_voiced_ms == 580
    assert ended.endpoint_ms == pytest.approx(500, abs=20)
    assert of(d.ShowState, call.log)[-1] == d.ShowState("thinking")


def test_the_final_goes_to_reasoning_and_an_empty_final_means_back_to_listening() -> None:
    call = Call()
    call.speak(400)
    call.silence(520)
    out = call.core.on_final("t1", " a table for four ", 0.9, call.now)
    assert of(d.SendTurn, out) == [d.SendTurn("t1", "a table for four", 0.9)]
    assert of(d.ShowTranscript, out) == [d.ShowTranscript("t1", "a table for four", True)]



def test_a_turn_with_no_words_goes_back_to_listening_without_a_reply() -> None:
    call = Call()
    call.speak(200)  # a cough
    call.silence(520)
    out = call.core.on_final("t1", "", 0.0, call.now)
    assert of(d.SendTurn, out) == []
    assert d.ShowState("listening") in out


def test_a_final_nobody_asked_for_is_ignored() -> None:
    call = Call()
    assert call.core.on_final("t9", "hello", 1.0, 0.0) == []


def test_a_resumed_turn_cancels_the_coming_reply_and_carries_its_words_into_the_next() -> None:
    call = Call()
    call.speak(400)
    call.silence(520)
    call.record(call.core.on_final("t1", "Tomorrow", 0.9, call.now))
    call.record(call.core.on_delta("r1", "t1", "What time?", call.now))
    out = call.speak(100)  # the caller goes on before the reply is heard
    assert of(d.CancelResponse, out) == [d.CancelResponse("r1", "")]
    assert not call.core.accepts_audio("r1")
    call.speak(300)
    call.silence(520)
    out = call.core.on_final("t2", "at seven", 0.8, call.now)
    assert of(d.SendTurn, out) == [d.SendTurn("t2", "Tomorrow at seven", 0.8)]


def test_a_reply_to_a_turn_already_superseded_is_cancelled_on_its_first_delta() -> None:
    call = Call()
    call.speak(400)
    call.silence(520)
    call.record(call.core.on_final("t1", "Tomorrow", 0.9, call.now))
    call.speak(100)  # resumed before reasoning answered
    out = call.core.on_delta("r1", "t1", "What time?", call.now)
    assert of(d.CancelResponse, out) == [d.CancelResponse("r1", "")]
    assert of(d.Synthesize, out) == []


def test_barge_in_stops_playout_clears_the_far_end_and_reports_what_was_heard() -> None:
    call = Call(VAD_BARGE_IN)
    call.speak(400)
    call.silence(520)
    call.core.on_final("t1", "four", 0.9, call.now)
    call.reply("r1", "t1", "Great. What day would you like?", [(0, "Great."), (800, "What day would you like?")])
    call.play("r1", frames=30)  # 600 ms heard: the first clause only
    assert call.core.state == "agent_speaking"
    assert of(d.CancelResponse, call.speak(180)) == []  # shorter than the barge-in threshold
    call.silence(20)
    out = call.speak(200)
    assert of(d.CancelResponse, out) == [d.CancelResponse("r1", "Great.")]
    assert of(d.ClearPlayout, out) == [d.ClearPlayout()]
    assert d.PlayoutFinishedEvent("r1", 600, True) in out
    assert d.ShowPlayout("r1", "end") in out
    assert call.core.state == "user_speaking"
    assert not call.core.accepts_audio("r1")


def test_a_clause_still_in_the_far_ends_buffer_was_not_heard() -> None:
    """On a carrier that buffers (Twilio), a clause counts as heard only once its mark has
    come back; marks the carrier returns after a clear prove nothing."""
    call = Call(VAD_BARGE_IN)
    call.speak(400)
    call.silence(520)
    call.core.on_final("t1", "four", 0.9, call.now)
    call.reply("r1", "t1", "Great. What day?", [(0, "Great."), (580, "What day?")])
    call.play("r1", frames=30, far_end_lag=5)  # 600 ms sent; "What day?" marked at 580 ms, not back
    out = call.speak(200)
    assert of(d.CancelResponse, out) == [d.CancelResponse("r1", "Great.")]
    call.core.on_clause_heard("r1", 1)  # returned by the clear
    assert call.core.responses["r1"].heard_text() == "Great."


def test_no_barge_in_when_the_agent_forbids_it() -> None:
    call = Call(TurnConfig(allow_barge_in=False))
    call.speak(400)
    call.silence(520)
    call.core.on_final("t1", "four", 0.9, call.now)
    call.reply("r1", "t1", "Great.")
    call.play("r1", frames=10)
    assert of(d.CancelResponse, call.speak(1000)) == []
    assert call.core.accepts_audio("r1")


def test_the_idle_nudge_gives_the_agent_an_empty_turn() -> None:
    call = Call(TurnConfig(idle_timeout_ms=2000))
    assert of(d.SendTurn, call.silence(1980)) == []
    out = call.silence(20)
    assert of(d.SendTurn, out) == [d.SendTurn("t1", "")]
    assert call.core.state == "thinking"


def test_latency_of_a_turn_is_reported_when_its_reply_starts_playing() -> None:
    call = Call()
    call.speak(400)
    call.silence(520)  # endpoint at 0.92 s, last voiced frame at 0.38 s
    call.core.on_final("t1", "four", 0.9, call.now + 0.002)
    call.index += 3  # 60 ms of reasoning and tts
    call.reply("r1", "t1", "Great.")
    out = call.play("r1", frames=1)
    (latency,) = of(d.TurnLatencyEvent, out)
    assert latency.timing.turn_id == "t1"
    assert latency.timing.last_voiced_frame == 19
    assert latency.timing.edge_voice_to_voice_ms == pytest.approx(600, abs=1)
    assert of(d.ShowTiming, out)[0].timing == latency.timing
    assert call.core.on_playout_started("r1", call.now) == []  # once per response


def test_a_hangup_waits_until_the_goodbye_has_been_heard() -> None:
    call = Call()
    call.reply("r1", "", "Goodbye!")
    assert call.core.on_action("r1", d.HangupCall("done")) == []
    call.play("r1", frames=40)
    out = call.core.on_playout_done("r1", call.now)
    assert out[-2:] == [d.CarryOut(d.HangupCall("done")), d.EndCall(EndReason.AGENT)]
    assert d.PlayoutFinishedEvent("r1", 800, False) in out
    assert call.core.ended is EndReason.AGENT


def test_a_transfer_is_carried_out_after_playout_and_ends_the_call() -> None:
    call = Call()
    call.reply("r1", "", "Please hold while I put you through.")
    call.core.on_action("r1", d.TransferCall("sip:host@bellavista.example"))
    call.play("r1", frames=50)
    out = call.core.on_playout_done("r1", call.now)
    assert d.CarryOut(d.TransferCall("sip:host@bellavista.example")) in out
    assert out[-1] == d.EndCall(EndReason.TRANSFER)
    assert call.core.on_frame(call.index, True, call.now) == []  # nothing after the end


def test_an_action_for_a_response_already_played_is_carried_out_at_once() -> None:
    call = Call()
    call.reply("r1", "", "Bye.")
    call.play("r1", frames=5)
    call.core.on_playout_done("r1", call.now)
    assert call.core.on_action("r1", d.HangupCall()) == [d.CarryOut(d.HangupCall()), d.EndCall(EndReason.AGENT)]


def test_an_action_of_a_response_the_caller_cut_off_is_not_carried_out() -> None:
    call = Call(VAD_BARGE_IN)
    call.speak(400)
    call.silence(520)
    call.core.on_final("t1", "a person please", 0.9, call.now)
    call.reply("r1", "t1", "Please hold while I put you through.")
    call.core.on_action("r1", d.TransferCall("+15550100"))
    call.play("r1", frames=20)
    call.speak(200)  # barge-in
    assert call.core.on_playout_done("r1", call.now) == []
    assert of(d.CarryOut, call.log) == []
    assert call.core.ended is None


def test_send_dtmf_does_not_end_the_call() -> None:
    call = Call()
    call.reply("r1", "", "Connecting you.")
    call.core.on_action("r1", d.SendDigits("1#"))
    out = call.core.on_playout_done("r1", call.now)
    assert d.CarryOut(d.SendDigits("1#")) in out
    assert call.core.ended is None


def test_dtmf_goes_to_reasoning_as_an_input_and_its_reply_is_timed_like_a_turn() -> None:
    call = Call()
    out = call.core.on_dtmf("4", call.now)
    assert out == [d.DtmfEvent("4"), d.SendDtmf("d1", "4")]
    out = call.core.on_delta("r1", "d1", "What day?", call.now)
    assert of(d.Synthesize, out) == [d.Synthesize("r1", "What day?")]
    assert of(d.SendDtmf, call.core.on_dtmf("12#", call.now)) == [d.SendDtmf("d2", "12#")]


def test_on_hold_the_callers_audio_is_not_heard_as_speech() -> None:
    call = Call()
    call.core.on_hold(True)
    out = call.speak(2000)
    assert len(of(d.ForwardAudio, out)) == 100  # stt still gets media time
    assert of(d.SpeechStartedEvent, out) == []
    call.core.on_hold(False)
    assert of(d.SpeechStartedEvent, call.speak(100)) != []


def test_a_peer_failure_ends_the_call_once_naming_the_role() -> None:
    call = Call()
    assert call.core.on_peer_failed("tts") == [d.EndCall(EndReason.ERROR_TTS)]
    assert call.core.on_peer_failed("stt") == []
    assert call.core.on_hangup() == []
    assert call.core.ended is EndReason.ERROR_TTS and call.core.ended.failed


def test_no_media_ends_a_live_call_but_not_a_held_one() -> None:
    call = Call()
    call.speak(200)
    call.core.on_hold(True)
    assert call.core.on_media_timeout() == []  # on hold a caller's side may send nothing
    call.core.on_hold(False)
    assert call.core.on_media_timeout() == [d.EndCall(EndReason.NO_MEDIA)]
    assert call.core.ended is EndReason.NO_MEDIA and call.core.ended.failed
    assert call.core.on_media_timeout() == []  # ended once


def test_the_caller_hanging_up_ends_the_call() -> None:
    call = Call()
    assert call.core.on_hangup() == [d.EndCall(EndReason.CALLER)]
    assert not EndReason.CALLER.failed


def test_a_superseded_turn_with_no_word_back_yet_is_cancelled_by_its_id() -> None:
    """The caller goes on while reasoning is still thinking about t1: reasoning is told to
    drop its answer to t1 at once, not after its first word (an LLM's first token can take
    a second, and the carried-over turn would wait behind it)."""
    call = Call()
    call.speak(400)
    call.silence(520)
    out = call.record(call.core.on_final("t1", "Tomorrow", 0.9, call.now))
    assert of(d.SendTurn, out) == [d.SendTurn("t1", "Tomorrow", 0.9)]
    out = call.speak(100)
    assert of(d.CancelResponse, out) == [d.CancelResponse("", "", turn_id="t1")]


def test_a_turn_never_sent_is_not_cancelled() -> None:
    """A resumed turn whose final has not come back was never asked of reasoning."""
    call = Call()
    call.speak(400)
    call.silence(520)
    out = call.speak(100)  # resumed before stt's final
    assert of(d.CancelResponse, out) == []


def test_an_action_only_reply_is_played_as_an_empty_response_and_carried_out() -> None:
    """Reasoning answers with no words, only a hang-up: the response is known from its end,
    tts is told it is over, and once its (empty) playout is done the call hangs up."""
    call = Call()
    call.speak(400)
    call.silence(520)
    call.record(call.core.on_final("t1", "that's all, bye", 0.9, call.now))
    assert call.core.state == "thinking"
    out = call.record(call.core.on_response_end("r1", "t1", "", call.now))
    assert of(d.EndSynthesis, out) == [d.EndSynthesis("r1")]
    assert call.core.accepts_audio("r1")
    assert call.core.on_action("r1", d.HangupCall("done")) == []  # after the response is played
    out = call.record(call.core.on_playout_done("r1", call.now))
    assert out[-2:] == [d.CarryOut(d.HangupCall("done")), d.EndCall(EndReason.AGENT)]


def test_a_reply_with_nothing_to_say_lets_the_caller_speak_again() -> None:
    """An empty response without an action (a model that said nothing) ends the agent's
    turn: the core is listening again instead of thinking for ever."""
    call = Call()
    call.speak(400)
    call.silence(520)
    call.record(call.core.on_final("t1", "hmm", 0.9, call.now))
    call.record(call.core.on_response_end("r1", "t1", "", call.now))
    call.record(call.core.on_playout_done("r1", call.now))
    assert call.core.state == "listening"
    out = call.speak(400) + call.silence(520)
    assert of(d.SttFlush, out) == [d.SttFlush("t2")]


def test_the_end_of_a_reply_to_a_superseded_turn_cancels_it() -> None:
    call = Call()
    call.speak(400)
    call.silence(520)
    call.record(call.core.on_final("t1", "Tomorrow", 0.9, call.now))
    call.speak(100)
    out = call.core.on_response_end("r1", "t1", "", call.now)
    assert of(d.CancelResponse, out) == [d.CancelResponse("r1", "")]
    assert of(d.EndSynthesis, out) == []


# ---- barge-in judged by the caller's words (the default: barge_in_min_words = 1) ---------


def agent_talking(call: Call, text: str = "Great. What day would you like?") -> None:
    call.speak(400)
    call.silence(520)
    call.core.on_final("t1", "four", 0.9, call.now)
    call.reply("r1", "t1", text, [(0, "Great."), (800, "What day would you like?")])
    call.play("r1", frames=30)  # 600 ms of it heard: "Great."
    assert call.core.state == "agent_speaking"


def test_speech_over_the_agent_pauses_it_at_once_without_cancelling_anything() -> None:
    call = Call()
    agent_talking(call)
    assert of(d.PausePlayout, call.speak(80)) == []
    out = call.speak(20)  # 100 ms of speech
    assert of(d.PausePlayout, out) == [d.PausePlayout()]
    assert of(d.Observe, out) == [d.Observe("barge_in_pause", pytest.approx(0.08))]
    assert of(d.CancelResponse, out) == [] and of(d.ClearPlayout, out) == []
    assert call.core.state == "agent_speaking" and call.core.accepts_audio("r1")


def test_a_backchannel_over_the_agent_lets_it_resume_and_never_reaches_the_conversation() -> None:
    call = Call()
    agent_talking(call)
    call.speak(300)  # "uh-huh"
    out = call.silence(240)
    assert of(d.SttFlush, out) == [d.SttFlush("t2")]
    out = call.core.on_final("t2", "Uh-huh.", 0.9, call.now)
    assert of(d.InterruptionJudged, out) == [d.InterruptionJudged("backchannel")]
    assert of(d.ResumePlayout, out) == [d.ResumePlayout()]
    assert of(d.SendTurn, out) == [] and of(d.CancelResponse, out) == []
    assert call.core.state == "agent_speaking" and call.core.accepts_audio("r1")
    assert "t2" not in call.core.turn_log
    # the agent finishes, and the caller's next turn is answered as usual
    call.core.on_playout_done("r1", call.now)
    call.speak(400)
    call.silence(520)
    assert of(d.SendTurn, call.core.on_final("t3", "Friday", 0.9, call.now)) == [d.SendTurn("t3", "Friday", 0.9)]


@pytest.mark.parametrize("heard", ["", "Okay, yeah.", "All right."])
def test_a_cough_or_an_acknowledgement_does_not_stop_the_agent(heard: str) -> None:
    call = Call()
    agent_talking(call)
    call.speak(200)
    call.silence(240)
    out = call.core.on_final("t2", heard, 0.5, call.now)
    assert of(d.ResumePlayout, out) == [d.ResumePlayout()]
    assert of(d.CancelResponse, call.log + out) == []


def test_words_in_a_partial_confirm_the_barge_in_while_the_caller_still_talks() -> None:
    call = Call()
    agent_talking(call)
    call.speak(600)
    out = call.core.on_partial("No wait, I meant", call.now)
    assert of(d.InterruptionJudged, out) == [d.InterruptionJudged("real")]
    assert of(d.CancelResponse, out) == [d.CancelResponse("r1", "Great.")]
    assert of(d.ClearPlayout, out) == [d.ClearPlayout()]
    assert d.PlayoutFinishedEvent("r1", 600, True) in out
    assert call.core.state == "user_speaking" and not call.core.paused
    call.speak(400)
    call.silence(520)
    out = call.core.on_final("t2", "No wait, I meant Friday", 0.9, call.now)
    assert of(d.SendTurn, out) == [d.SendTurn("t2", "No wait, I meant Friday", 0.9)]


def test_a_short_real_interruption_is_confirmed_by_its_final_and_answered() -> None:
    call = Call()
    agent_talking(call)
    call.speak(300)  # "Stop."
    call.silence(240)
    out = call.core.on_final("t2", "Stop.", 0.9, call.now)
    assert of(d.InterruptionJudged, out) == [d.InterruptionJudged("real")]
    assert of(d.CancelResponse, out) == [d.CancelResponse("r1", "Great.")]
    assert of(d.SendTurn, out) == [d.SendTurn("t2", "Stop.", 0.9)]
    assert of(d.TurnEndedEvent, out)[0].turn_id == "t2"
    assert call.core.state == "thinking"


def test_the_agents_own_words_coming_back_are_echo_not_a_barge_in() -> None:
    call = Call()
    agent_talking(call)
    call.speak(500)
    assert of(d.CancelResponse, call.core.on_partial("what day would you", call.now)) == []
    call.silence(240)
    out = call.core.on_final("t2", "What day would you like?", 0.8, call.now)
    assert of(d.InterruptionJudged, out) == [d.InterruptionJudged("echo")]
    assert of(d.ResumePlayout, out) == [d.ResumePlayout()]


def test_an_agent_needing_two_words_is_not_stopped_by_one() -> None:
    call = Call(TurnConfig(endpoint_silence_ms=500, idle_timeout_ms=0, barge_in_min_words=2))
    agent_talking(call)
    call.speak(300)
    call.silence(240)
    out = call.core.on_final("t2", "Friday.", 0.9, call.now)
    assert of(d.InterruptionJudged, out) == [d.InterruptionJudged("too_few_words")]


def test_speech_over_the_agent_becomes_the_callers_turn_when_the_agent_finishes_first() -> None:
    call = Call()
    agent_talking(call)
    call.speak(200)
    out = call.core.on_playout_done("r1", call.now)  # its last frames were already out
    assert of(d.ResumePlayout, out) == [d.ResumePlayout()] and not call.core.paused
    assert call.core.state == "user_speaking"
    call.speak(200)
    call.silence(520)
    out = call.core.on_final("t2", "uh-huh", 0.9, call.now)
    assert of(d.SendTurn, out) == [d.SendTurn("t2", "uh-huh", 0.9)]  # nothing left to interrupt


def test_caller_audio_no_louder_than_the_agents_echo_is_not_speech() -> None:
    call = Call()
    agent_talking(call)
    for _ in range(10):  # the agent's audio at -12 dBFS
        call.core.on_frame_played("r1", -12.0)
    quiet = []
    for _ in range(20):  # voiced by the VAD, but 28 dB below what the agent sent
        quiet += call.core.on_frame(call.index, True, call.now, -40.0)
        call.index += 1
    assert of(d.PausePlayout, quiet) == []
    assert set(of(d.ForwardAudio, quiet)) == {d.FORWARD_MUTED}  # stt hears silence too
    loud = []
    for _ in range(5):  # the caller, louder than any echo could be
        loud += call.core.on_frame(call.index, True, call.now, -20.0)
        call.index += 1
    assert of(d.PausePlayout, loud) == [d.PausePlayout()]
    assert set(of(d.ForwardAudio, loud)) == {d.FORWARD}


def test_the_echo_gate_lets_everything_through_once_the_agents_echo_has_died_away() -> None:
    call = Call()
    agent_talking(call)
    call.core.on_frame_played("r1", -12.0)
    call.core.on_playout_done("r1", call.now)

    def caller(n: int, level: float) -> list[d.Decision]:
        out: list[d.Decision] = []
        for _ in range(n):
            out += call.core.on_frame(call.index, True, call.now, level)
            call.index += 1
        return out

    assert set(of(d.ForwardAudio, caller(5, -40.0))) == {d.FORWARD_MUTED}  # its echo may still come
    call.silence(600)  # past the echo tail
    assert set(of(d.ForwardAudio, caller(5, -40.0))) == {d.FORWARD}
    assert call.core.state == "user_speaking"
