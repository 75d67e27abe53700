"""The turn-taking state machine: who holds the floor, decided frame by frame.

Pure: it is fed one VAD decision per 20 ms frame (with the frame's media time) and the
pipeline's milestones, and returns decisions for the call session to act on. No clock, no
I/O. States:

    LISTENING ──speech──▶ USER_SPEAKING ──silence ≥ endpoint──▶ THINKING
        ▲                      ▲   ▲                               │ reply audio starts
        │                      │   └──speech before the reply────┘ (Resumed: drop the reply)
        │                      └──speech ≥ barge-in (BargeIn)──┐   ▼
        └────────────────playout finished─────────────── AGENT_SPEAKING

    LISTENING ──silence ≥ idle timeout (IdleTimeout: the agent gets an empty turn)──▶ THINKING

A filler standing in for a late reply takes the floor as a reply does (THINKING ▶
AGENT_SPEAKING, barge-in as over any reply); ended before the reply began, it gives the
floor back to THINKING (`on_filler_finished`).

Endpointing beyond silence (`TurnConfig.smart_turn`): `check_after_ms` into a pause while
the caller holds the floor, the machine asks once (per pause) whether the utterance reads
complete (`CheckTurnEnd`, naming the turn and the frame its speech ends at); the shell runs
the end-of-turn model and answers with `on_turn_complete_hint`. A confident "complete" for
the same pause ends the turn then (`EndOfTurn` decided by `EndpointBy.MODEL`); anything
else (unsure, stale, never answered) leaves the silence rule to end it at
`endpoint_silence_ms`, as without the model. The model can only shorten the wait.

Barge-in in two steps when the agent needs words to be interrupted (`barge_in_min_words`
> 0, the default): speech over the agent for `barge_in_min_speech_ms` is an `Overlap` (the
shell pauses the agent's audio at once, the state stays AGENT_SPEAKING); the call core then
judges the caller's words (a partial, or the final asked for by `OverlapEnded` once the
caller paused for `overlap_silence_ms`) and either confirms it (`confirm_barge_in`: a
`BargeIn`, the overlap becomes the caller's turn) or dismisses it (`dismiss_overlap`: the
agent resumes). With `barge_in_min_words` = 0 speech alone is a `BargeIn`, at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class TurnState(StrEnum):
    LISTENING = "listening"
    USER_SPEAKING = "user_speaking"
    THINKING = "thinking"
    AGENT_SPEAKING = "agent_speaking"


class EndpointBy(StrEnum):
    """What ended a caller's turn."""

    SILENCE = "silence"  # endpoint_silence_ms of non-speech
    MODEL = "model"  # the end-of-turn model read the utterance complete, earlier


@dataclass(frozen=True)
class SmartTurnConfig:
    """Ask the end-of-turn model once, this far into a pause; end the turn on its
    "complete" at or above `min_probability`."""

    check_after_ms: int = 200
    min_probability: float = 0.8


@dataclass(frozen=True)
class TurnConfig:
    endpoint_silence_ms: int = 500
    # Voiced audio needed before we believe the caller started speaking.
    min_speech_ms: int = 60
    # Voiced audio over the agent before the agent pauses for a possible barge-in.
    barge_in_min_speech_ms: int = 100
    # Words (not backchannels, not the agent's own echo) that make speech over the agent a
    # barge-in; 0: speech alone is one (no pause, no resume).
    barge_in_min_words: int = 1
    # Silence that ends speech over the agent: then its final decides.
    overlap_silence_ms: int = 240
    allow_barge_in: bool = True
    # Silence while listening after which the agent gets an empty turn ("are you there?").
    # 0 disables it.
    idle_timeout_ms: int = 0
    # The end-of-turn model's early endpoint; None: silence alone ends a turn.
    smart_turn: SmartTurnConfig | None = None
    frame_ms: int = 20


@dataclass(frozen=True)
class SpeechStarted:
    turn_id: str
    # Media time (ms since the call's first frame) of the first voiced frame.
    start_ms: int


@dataclass(frozen=True)
class EndOfTurn:
    turn_id: str
    last_voiced_ms: int
    # Index of the frame holding the last voiced audio (frames count from 0).
    last_voiced_frame: int
    by: EndpointBy = EndpointBy.SILENCE


@dataclass(frozen=True)
class CheckTurnEnd:
    """Ask the end-of-turn model whether `turn_id` reads complete: its audio from frame
    `start_frame` to `at_frame` (the pause so far included); its speech ends at
    `last_voiced_frame`. Answer with `on_turn_complete_hint(turn_id, last_voiced_frame, p)`."""

    turn_id: str
    start_frame: int
    last_voiced_frame: int
    at_frame: int


@dataclass(frozen=True)
class Resumed:
    """The caller spoke again before the reply to `turn_id` began: drop that reply."""

    turn_id: str
    new_turn_id: str


@dataclass(frozen=True)
class BargeIn:
    """The caller talks over the agent: stop playout and cancel the reply."""

    new_turn_id: str


@dataclass(frozen=True)
class Overlap:
    """The caller may be cutting in: pause the agent's audio and judge their words."""

    turn_id: str
    start_ms: int
    # Media time the decision was taken at (the agent's audio stops from here).
    at_ms: int


@dataclass(frozen=True)
class OverlapEnded:
    """The caller stopped speaking over the agent: ask stt for the final of `turn_id`."""

    turn_id: str
    last_voiced_ms: int
    last_voiced_frame: int


@dataclass(frozen=True)
class IdleTimeout:
    """The caller said nothing for `idle_timeout_ms`: the agent takes an empty turn."""

    turn_id: str


@dataclass(frozen=True)
class StateChange:
    state: TurnState


Decision = (
    SpeechStarted
    | EndOfTurn
    | CheckTurnEnd
    | Resumed
    | BargeIn
    | Overlap
    | OverlapEnded
    | IdleTimeout
    | StateChange
)


class TurnTaker:
    def __init__(self, config: TurnConfig) -> None:
        self.config = config
        self.state = TurnState.LISTENING
        self._turns = 0
        self._turn_id = ""
        self._voiced_run_ms = 0
        self._first_voiced_ms = 0
        self._last_voiced_ms = -1
        self._last_voiced_frame = -1
        self._silence_ms = 0
        self._idle_ms = 0
        # Speech over the agent awaiting a verdict: its turn id, and whether it has ended.
        self._overlap = ""
        self._overlap_ended = False
        # Where the utterance of the turn began (a resumed turn goes on the same one), and
        # whether the model was asked about the pause in progress.
        self._utterance_start = 0
        self._checked = False

    @property
    def turn_id(self) -> str:
        """The caller turn in progress or awaiting its reply ("" before the first)."""
        return self._turn_id

    @property
    def overlap_turn(self) -> str:
        """The turn of speech over the agent awaiting a verdict ("" when there is none)."""
        return self._overlap

    def configure(self, config: TurnConfig) -> None:
        self.config = config

    def _new_turn(self) -> str:
        self._turns += 1
        self._turn_id = f"t{self._turns}"
        return self._turn_id

    def _to(self, state: TurnState, out: list[Decision]) -> None:
        if state is not self.state:
            self.state = state
            self._idle_ms = 0
            out.append(StateChange(state))

    def on_frame(self, index: int, voiced: bool) -> list[Decision]:
        """Feed the VAD decision of frame `index` (20 ms each, counted from the call's start)."""
        cfg = self.config
        now_ms = index * cfg.frame_ms
        out: list[Decision] = []
        if voiced:
            if self._voiced_run_ms == 0:
                self._first_voiced_ms = now_ms
            self._voiced_run_ms += cfg.frame_ms
            self._silence_ms = 0
            self._checked = False
        else:
            self._voiced_run_ms = 0
            self._silence_ms += cfg.frame_ms

        if self.state is TurnState.LISTENING:
            self._idle_ms = 0 if voiced else self._idle_ms + cfg.frame_ms
            if self._voiced_run_ms >= cfg.min_speech_ms:
                turn = self._new_turn()
                self._utterance_start = self._first_voiced_ms // cfg.frame_ms
                out.append(SpeechStarted(turn, self._first_voiced_ms))
                self._to(TurnState.USER_SPEAKING, out)
            elif cfg.idle_timeout_ms and self._idle_ms >= cfg.idle_timeout_ms:
                self._idle_ms = 0
                out.append(IdleTimeout(self._new_turn()))
                self._to(TurnState.THINKING, out)
        elif self.state is TurnState.THINKING:
            if self._voiced_run_ms >= cfg.min_speech_ms:
                old = self._turn_id
                turn = self._new_turn()
                out.append(Resumed(old, turn))
                out.append(SpeechStarted(turn, self._first_voiced_ms))
                self._to(TurnState.USER_SPEAKING, out)
        elif self.state is TurnState.AGENT_SPEAKING:
            if self._overlap:
                if self._overlap_ended:
                    pass  # the verdict comes from the final; new speech waits for it
                elif voiced:
                    self._last_voiced_ms = now_ms
                    self._last_voiced_frame = index
                elif self._silence_ms >= cfg.overlap_silence_ms:
                    self._overlap_ended = True
                    out.append(OverlapEnded(self._overlap, self._last_voiced_ms, self._last_voiced_frame))
            elif cfg.allow_barge_in and self._voiced_run_ms >= cfg.barge_in_min_speech_ms:
                turn = self._new_turn()
                self._utterance_start = self._first_voiced_ms // cfg.frame_ms
                if cfg.barge_in_min_words > 0:
                    self._overlap, self._overlap_ended = turn, False
                    self._last_voiced_ms, self._last_voiced_frame = now_ms, index
                    out.append(SpeechStarted(turn, self._first_voiced_ms))
                    out.append(Overlap(turn, self._first_voiced_ms, now_ms))
                else:
                    out.append(BargeIn(turn))
                    out.append(SpeechStarted(turn, self._first_voiced_ms))
                    self._to(TurnState.USER_SPEAKING, out)

        if self.state is TurnState.USER_SPEAKING:
            if voiced:
                self._last_voiced_ms = now_ms
                self._last_voiced_frame = index
            elif self._silence_ms >= cfg.endpoint_silence_ms:
                out.append(EndOfTurn(self._turn_id, self._last_voiced_ms, self._last_voiced_frame))
                self._to(TurnState.THINKING, out)
            elif (
                cfg.smart_turn is not None
                and not self._checked
                and self._silence_ms >= cfg.smart_turn.check_after_ms
            ):
                self._checked = True
                out.append(CheckTurnEnd(self._turn_id, self._utterance_start, self._last_voiced_frame, index))
        return out

    def on_turn_complete_hint(
        self, turn_id: str, last_voiced_frame: int, probability: float
    ) -> list[Decision]:
        """The end-of-turn model's answer to `CheckTurnEnd`: P(the utterance is complete).
        It ends the turn now only if it is confident and still about the pause in progress
        (same turn, no speech since, the silence rule not yet there)."""
        out: list[Decision] = []
        cfg = self.config
        if (
            cfg.smart_turn is None
            or self.state is not TurnState.USER_SPEAKING
            or turn_id != self._turn_id
            or last_voiced_frame != self._last_voiced_frame
            or self._silence_ms == 0
            or probability < cfg.smart_turn.min_probability
        ):
            return out
        out.append(EndOfTurn(self._turn_id, self._last_voiced_ms, self._last_voiced_frame, EndpointBy.MODEL))
        self._to(TurnState.THINKING, out)
        return out

    def confirm_barge_in(self) -> list[Decision]:
        """The speech over the agent is a real interruption: it becomes the caller's turn
        (still speaking, or over if its final already came)."""
        out: list[Decision] = []
        if not self._overlap:
            return out
        turn, ended = self._overlap, self._overlap_ended
        self._overlap = ""
        out.append(BargeIn(turn))
        self._to(TurnState.THINKING if ended else TurnState.USER_SPEAKING, out)
        return out

    def dismiss_overlap(self) -> list[Decision]:
        """The speech over the agent was not an interruption: the agent goes on."""
        self._overlap = ""
        return []

    def on_nothing_to_say(self) -> list[Decision]:
        """The turn held no words (noise): back to listening without a reply."""
        out: list[Decision] = []
        if self.state is TurnState.THINKING:
            self._to(TurnState.LISTENING, out)
        return out

    def on_reply_started(self) -> list[Decision]:
        """The first frame of the agent's audio went out."""
        out: list[Decision] = []
        if self.state in (TurnState.LISTENING, TurnState.THINKING):
            self._to(TurnState.AGENT_SPEAKING, out)
        return out

    def on_filler_finished(self) -> list[Decision]:
        """A filler finished playing before the reply it stood in for began: the agent is
        thinking again (speech over it still awaiting a verdict keeps the floor with it)."""
        out: list[Decision] = []
        if self.state is TurnState.AGENT_SPEAKING and not self._overlap:
            self._to(TurnState.THINKING, out)
        return out

    def on_reply_finished(self) -> list[Decision]:
        """The agent's audio finished playing (or was stopped)."""
        out: list[Decision] = []
        if self.state is TurnState.AGENT_SPEAKING:
            if self._overlap:  # the agent is done: the speech over it is the caller's turn
                ended, self._overlap = self._overlap_ended, ""
                self._to(TurnState.THINKING if ended else TurnState.USER_SPEAKING, out)
            else:
                self._to(TurnState.LISTENING, out)
        return out
