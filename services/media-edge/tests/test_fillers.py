"""Fillers for a late reply, on the call core's virtual clock (frame i is at i * 20 ms).

A small playout shell stands in for the session's: one FIFO of (id, frame) the core's
`PlayFiller` and the reply's audio are queued on, played a frame at a time, with the
"end" of each id reported once its last frame is out (as on the native port).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from voicemesh.edge import decisions as d
from voicemesh.edge.core import CallCore
from voicemesh.edge.fillers import FillerConfig, FillerResult, FillerRules
from voicemesh.edge.turns import TurnConfig

pytestmark = pytest.mark.unit
FRAME_S = 0.020
PHRASES = ("Let me check that.", "One moment.", "Just a second.")
FILLER_FRAMES = 40  # 800 ms of filler audio
END = "end"


def of(kind: type, out: Sequence[d.Decision]) -> list:  # type: ignore[type-arg]
    return [x for x in out if isinstance(x, kind)]


class Call:
    def __init__(
        self,
        after_ms: int = 600,
        phrases: Sequence[str] = PHRASES,
        ready: Sequence[str] | None = None,
        config: TurnConfig | None = None,
    ) -> None:
        filler = FillerConfig(after_ms, tuple(phrases)) if phrases else None
        self.core = CallCore(config or TurnConfig(endpoint_silence_ms=500, idle_timeout_ms=0), filler=filler)
        for text in phrases if ready is None else ready:
            self.core.on_filler_ready(text)
        self.index = 0
        self.log: list[d.Decision] = []
        self.queue: list[tuple[str, str]] = []  # (id, what): a frame, or END
        self.heard: list[str] = []  # the id of every frame played, in order

    @property
    def now(self) -> float:
        return self.index * FRAME_S

    def record(self, out: list[d.Decision]) -> list[d.Decision]:
        self.log += out
        for x in out:
            if isinstance(x, d.PlayFiller):
                self.queue += [(x.filler_id, "pcm")] * FILLER_FRAMES + [(x.filler_id, END)]
            elif isinstance(x, d.ClearPlayout):
                self.queue.clear()
        return out

    def frames(self, voiced: bool, n: int, play: bool = True) -> list[d.Decision]:
        """`n` caller frames; each 20 ms also plays the next queued agent frame."""
        out: list[d.Decision] = []
        for _ in range(n):
            out += self.record(self.core.on_frame(self.index, voiced, self.now))
            if play and not self.core.paused:
                out += self.play_one()
            self.index += 1
        return out

    def speak(self, ms: int) -> list[d.Decision]:
        return self.frames(True, ms // 20)

    def silence(self, ms: int) -> list[d.Decision]:
        return self.frames(False, ms // 20)

    def play_one(self) -> list[d.Decision]:
        while self.queue:
            rid, what = self.queue.pop(0)
            if not self.core.accepts_audio(rid):
                continue
            if what == END:
                return self.record(self.core.on_playout_done(rid, self.now))
            out = self.record(self.core.on_playout_started(rid, self.now))
            self.core.on_frame_played(rid)
            self.heard.append(rid)
            return out
        return []

    def turn(self, text: str = "What is on the menu today?") -> str:
        """The caller speaks; the turn ends and its final goes to reasoning at once."""
        self.speak(400)
        self.silence(500)
        turn_id = self.core.turns.turn_id
        self.record(self.core.on_final(turn_id, text, 0.9, self.now))
        return turn_id

    def reply(self, rid: str, turn: str, text: str, frames: int = 10) -> None:
        """Reasoning answers `turn`; its audio arrives and is queued behind what is there."""
        self.record(self.core.on_delta(rid, turn, text, self.now))
        self.record(self.core.on_response_end(rid, turn, text, self.now))
        self.record(self.core.on_tts_audio(rid, self.now))
        self.queue += [(rid, "pcm")] * frames + [(rid, END)]

    def fillers(self) -> list[d.PlayFiller]:
        return of(d.PlayFiller, self.log)


def test_a_filler_plays_after_the_wait_when_no_reply_audio_is_ready() -> None:
    call = Call(after_ms=600)
    call.speak(400)
    out = call.silence(500)
    assert of(d.SttFlush, out) == [d.SttFlush("t1")]  # the wait starts here, at the endpoint
    call.record(call.core.on_final("t1", "Do you have a table tonight?", 0.9, call.now))
    assert of(d.PlayFiller, call.silence(580)) == []
    out = call.silence(20)
    (filler,) = of(d.PlayFiller, out)
    assert (filler.turn_id, filler.text) == ("t1", "Let me check that.")
    # its first frame goes out in the same 20 ms
    assert of(d.ShowFiller, out) == [d.ShowFiller("t1", "Let me check that.", "start")]
    assert of(d.FillerCounted, out) == [d.FillerCounted(FillerResult.PLAYED)]
    assert d.ShowState("agent_speaking") in out
    # The filler is no part of the conversation: nothing of it went to reasoning or tts.
    assert of(d.Synthesize, call.log) == [] and len(of(d.SendTurn, call.log)) == 1


def test_no_filler_when_the_reply_audio_comes_first() -> None:
    call = Call(after_ms=600)
    turn = call.turn()
    call.silence(400)
    call.reply("r1", turn, "We have a table at eight.", frames=50)  # audio before 600 ms
    call.silence(2000)
    assert call.fillers() == [] and of(d.FillerCounted, call.log) == []
    assert set(call.heard) == {"r1"}


def test_an_agent_without_fillers_never_plays_one() -> None:
    call = Call(phrases=())
    call.turn()
    call.silence(5000)
    assert call.fillers() == [] and of(d.FillerCounted, call.log) == []


def test_the_reply_follows_the_filler_without_overlap_and_its_timing_stays_the_replys() -> None:
    call = Call(after_ms=600)
    turn = call.turn()
    call.silence(620)  # the filler is decided and starts
    call.silence(200)
    call.reply("r1", turn, "We have a table at eight.", frames=10)  # late, mid-filler
    assert call.core.accepts_audio("r1")
    call.silence(2000)
    (filler,) = call.fillers()
    # Every filler frame, then every reply frame: nothing cut, nothing interleaved.
    assert call.heard == [filler.filler_id] * FILLER_FRAMES + ["r1"] * 10
    shown = [x for x in call.log if isinstance(x, d.ShowFiller | d.ShowPlayout)]
    assert shown == [
        d.ShowFiller("t1", filler.text, "start"),
        d.ShowFiller("t1", filler.text, "end"),
        d.ShowPlayout("r1", "start"),
        d.ShowPlayout("r1", "end"),
    ]
    states = [x.state for x in of(d.ShowState, call.log)]
    assert states[-4:] == ["agent_speaking", "thinking", "agent_speaking", "listening"]
    (timing,) = of(d.ShowTiming, call.log)
    # The reply's first frame went out after the filler's 40: voice-to-voice is the reply's.
    assert timing.timing.edge_voice_to_voice_ms >= 500 + 600 + FILLER_FRAMES * 20
    assert timing.timing.filler_ms == pytest.approx(500 + 620, abs=40)
    assert of(d.CancelResponse, call.log) == []


def test_speech_over_the_filler_that_is_a_real_interruption_stops_it_and_drops_the_reply() -> None:
    call = Call(after_ms=600)  # barge-in needs words (the default)
    turn = call.turn("What's the weather in Paris?")
    call.silence(640)
    assert call.heard  # the filler is playing
    out = call.speak(100)
    assert d.PausePlayout() in out  # the agent's audio holds while the words are judged
    heard_before = len(call.heard)
    call.speak(100)
    assert len(call.heard) == heard_before
    out = call.record(call.core.on_partial("actually in London", call.now))
    (filler,) = call.fillers()
    assert of(d.ShowFiller, out) == [d.ShowFiller(turn, filler.text, "end")]
    assert d.ClearPlayout() in out and call.queue == []
    assert not call.core.accepts_audio(filler.filler_id)
    # Reasoning drops the late answer (by its turn: no word of it came) ...
    assert of(d.CancelResponse, out) == [d.CancelResponse("", "", turn_id=turn)]
    # ... and the caller's next turn carries what they had asked.
    call.silence(500)
    out = call.record(call.core.on_final(call.core.turns.turn_id, "actually in London", 0.9, call.now))
    assert of(d.SendTurn, out)[0].text == "What's the weather in Paris? actually in London"


def test_speech_alone_over_the_filler_stops_it_where_words_are_not_needed() -> None:
    call = Call(
        after_ms=600, config=TurnConfig(endpoint_silence_ms=500, idle_timeout_ms=0, barge_in_min_words=0)
    )
    turn = call.turn()
    call.silence(640)
    call.record(call.core.on_delta("r1", turn, "We have", call.now))  # its words, not yet audio
    out = call.speak(100)
    filler = call.fillers()[0]
    assert of(d.ShowFiller, out) == [d.ShowFiller(turn, filler.text, "end")]
    assert d.ClearPlayout() in out
    assert of(d.CancelResponse, out) == [d.CancelResponse("r1", "")]
    assert not call.core.accepts_audio("r1")


def test_a_backchannel_over_the_filler_lets_it_and_the_reply_play_on() -> None:
    call = Call(after_ms=600)
    turn = call.turn()
    call.silence(640)
    call.speak(200)
    call.silence(240)  # the overlap ends: its final decides
    overlap = call.core.turns.overlap_turn
    call.reply("r1", turn, "We have a table at eight.", frames=10)
    out = call.record(call.core.on_final(overlap, "okay", 0.9, call.now))
    assert d.ResumePlayout() in out and of(d.CancelResponse, out) == []
    call.silence(2000)
    filler = call.fillers()[0]
    assert call.heard == [filler.filler_id] * FILLER_FRAMES + ["r1"] * 10


def test_the_fillers_own_words_coming_back_as_echo_do_not_stop_it() -> None:
    call = Call(after_ms=600)
    call.turn()
    call.silence(640)
    filler = call.fillers()[0]
    call.speak(200)
    call.silence(240)
    out = call.record(call.core.on_final(call.core.turns.overlap_turn, filler.text.lower(), 0.9, call.now))
    assert of(d.InterruptionJudged, out)[0].verdict.value != "real"
    assert d.ResumePlayout() in out and of(d.ClearPlayout, out) == []


def test_a_filler_whose_audio_is_not_ready_is_skipped_and_counted_not_waited_for() -> None:
    call = Call(after_ms=600, ready=())
    call.turn()
    out = call.silence(620)
    assert of(d.PlayFiller, out) == []
    assert of(d.FillerCounted, out) == [d.FillerCounted(FillerResult.SKIPPED)]
    call.core.on_filler_ready(PHRASES[0])  # ready now, but that turn has had its chance
    call.silence(1000)
    assert call.fillers() == [] and len(of(d.FillerCounted, call.log)) == 1


def test_a_late_final_gets_its_filler_once_it_has_gone_to_reasoning() -> None:
    call = Call(after_ms=600)
    call.speak(400)
    call.silence(500)
    call.silence(800)  # stt is slow: nothing has gone to reasoning yet
    assert call.fillers() == []
    call.record(call.core.on_final("t1", "A table for two.", 0.9, call.now))
    assert len(of(d.PlayFiller, call.silence(20))) == 1


def test_no_filler_when_the_caller_goes_on_or_said_nothing() -> None:
    call = Call(after_ms=600)
    call.turn()
    call.silence(300)
    call.speak(400)  # the caller goes on before the wait is over
    call.silence(580)
    assert call.fillers() == []
    noise = Call(after_ms=600)
    noise.speak(200)
    noise.silence(500)
    noise.record(noise.core.on_final("t1", "", 0.0, noise.now))
    noise.silence(1000)
    assert noise.fillers() == []


def test_phrases_rotate_and_never_repeat_twice_in_a_row() -> None:
    call = Call(after_ms=600)
    said = []
    for i in range(4):
        turn = call.turn()
        call.silence(640)
        call.reply(f"r{i}", turn, "Here you are.", frames=5)
        call.silence(2000)
        said.append(call.fillers()[-1].text)
    assert said == [*PHRASES, PHRASES[0]]


def test_rotation_skips_a_phrase_not_ready_and_the_one_just_said() -> None:
    rules = FillerRules(FillerConfig(600, ("a", "b", "c")))
    rules.ready("a")
    assert [rules.pick(), rules.pick()] == ["a", None]  # never "a" twice in a row
    rules.ready("c")
    assert [rules.pick(), rules.pick(), rules.pick()] == ["c", "a", "c"]
    single = FillerRules(FillerConfig(600, ("only",)))
    single.ready("only")
    assert [single.pick(), single.pick()] == ["only", "only"]  # one phrase: said each time


def test_a_far_end_that_reports_the_filler_played_late_does_not_take_the_floor_from_the_reply() -> None:
    """Twilio echoes a mark once it has played what came before: the reply may be going out
    before the filler's "end" comes back."""
    call = Call(after_ms=600)
    turn = call.turn()
    call.silence(620)
    (filler,) = call.fillers()
    call.reply("r1", turn, "We have a table at eight.", frames=100)
    call.queue = [q for q in call.queue if q != (filler.filler_id, END)]  # its end comes later
    call.silence(FILLER_FRAMES * 20 + 100)
    assert call.heard[-1] == "r1" and call.core.state == "agent_speaking"
    out = call.record(call.core.on_playout_done(filler.filler_id, call.now))
    assert of(d.ShowFiller, out) == [d.ShowFiller(turn, filler.text, "end")]
    assert of(d.ShowState, out) == [] and call.core.state == "agent_speaking"
    call.speak(200)
    out = call.record(call.core.on_partial("no wait, tomorrow", call.now))
    assert of(d.CancelResponse, out) == [d.CancelResponse("r1", "")]  # the reply, as any barge-in
    assert not call.core.turn_log[turn].superseded  # its words were answered: not carried on
