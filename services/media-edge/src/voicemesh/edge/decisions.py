"""What the call core decides and what its shell carries out (typed, one class a decision).

The shell (`session.CallRunner`) maps each to I/O: a role client (stt, reasoning, tts), the
playout queue, the media port, the observer, session events or metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

from .fillers import FillerResult
from .interruptions import Verdict
from .port import EndReason, TurnTiming
from .turns import CheckTurnEnd, EndpointBy

# ---- to stt ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ForwardAudio:
    """Send this caller frame to stt: with its VAD result, or `muted` as non-speech (on
    hold, or no louder than the agent's own echo)."""

    muted: bool = False


FORWARD = ForwardAudio()
FORWARD_MUTED = ForwardAudio(muted=True)


@dataclass(frozen=True)
class SttFlush:
    """The caller's turn ended: ask stt for its final (answered with `flush_id` = turn_id)."""

    turn_id: str


# ---- to the end-of-turn model ------------------------------------------------------------
# `CheckTurnEnd` (from turns.py, passed on as it is): run the model on the caller audio of
# frames start_frame..at_frame and answer with `CallCore.on_turn_complete_hint`; no answer
# (skipped, failed) is fine: the silence rule ends the turn.


# ---- to reasoning ----------------------------------------------------------------------


@dataclass(frozen=True)
class SendTurn:
    turn_id: str
    text: str  # "" for an idle nudge: the agent decides what silence means
    confidence: float = 0.0


@dataclass(frozen=True)
class SendDtmf:
    turn_id: str
    digits: str


@dataclass(frozen=True)
class CancelResponse:
    """Stop a response everywhere: reasoning (with what was heard), tts, queued playout.
    With no `response_id` yet (no word of it has arrived), `turn_id` names the turn whose
    answer reasoning must drop."""

    response_id: str
    heard_text: str
    turn_id: str = ""


# ---- to tts and playout ----------------------------------------------------------------


@dataclass(frozen=True)
class Synthesize:
    response_id: str
    text: str


@dataclass(frozen=True)
class EndSynthesis:
    response_id: str


@dataclass(frozen=True)
class PlayFiller:
    """The reply to `turn_id` is late: queue the filler `text` (from the edge's cache) under
    `filler_id`, ahead of any reply audio still to come."""

    filler_id: str
    turn_id: str
    text: str


@dataclass(frozen=True)
class ClearPlayout:
    """Barge-in: drop queued agent audio here and at the far end."""


@dataclass(frozen=True)
class PausePlayout:
    """The caller may be cutting in: send no more agent audio (keep what is queued)."""


@dataclass(frozen=True)
class ResumePlayout:
    """It was not an interruption: go on sending the agent's audio where it paused."""


# ---- to the port -----------------------------------------------------------------------


@dataclass(frozen=True)
class HangupCall:
    reason: str = ""


@dataclass(frozen=True)
class TransferCall:
    target: str


@dataclass(frozen=True)
class SendDigits:
    digits: str


CallAction = HangupCall | TransferCall | SendDigits


@dataclass(frozen=True)
class CarryOut:
    """Carry out an agent action (after the response it followed has been heard)."""

    action: CallAction


@dataclass(frozen=True)
class EndCall:
    reason: EndReason


# ---- to the observer (a rich client) ---------------------------------------------------


@dataclass(frozen=True)
class ShowState:
    state: str


@dataclass(frozen=True)
class ShowTranscript:
    turn_id: str
    text: str
    final: bool


@dataclass(frozen=True)
class ShowResponse:
    response_id: str
    turn_id: str
    text: str
    final: bool


@dataclass(frozen=True)
class ShowPlayout:
    response_id: str
    name: str  # "start" | "end"


@dataclass(frozen=True)
class ShowFiller:
    turn_id: str
    text: str
    name: str  # "start" | "end"


@dataclass(frozen=True)
class ShowTiming:
    timing: TurnTiming


# ---- session events and metrics ---------------------------------------------------------


@dataclass(frozen=True)
class SpeechStartedEvent:
    audio_ms: int


@dataclass(frozen=True)
class TurnEndedEvent:
    turn_id: str
    last_voiced_ms: int
    endpoint_ms: float
    # What ended it: the silence, or the end-of-turn model earlier (counted apart).
    by: EndpointBy = EndpointBy.SILENCE


@dataclass(frozen=True)
class TurnLatencyEvent:
    timing: TurnTiming


@dataclass(frozen=True)
class PlayoutFinishedEvent:
    response_id: str
    played_ms: int
    interrupted: bool


@dataclass(frozen=True)
class InterruptionJudged:
    """Speech over the agent was judged (counted by verdict)."""

    verdict: Verdict


@dataclass(frozen=True)
class FillerCounted:
    """A filler played, or was due and skipped (counted by result)."""

    result: FillerResult


@dataclass(frozen=True)
class DtmfEvent:
    digits: str


@dataclass(frozen=True)
class Observe:
    """A stage latency for the metrics histogram."""

    stage: str
    seconds: float


Decision = (
    ForwardAudio
    | SttFlush
    | CheckTurnEnd
    | SendTurn
    | SendDtmf
    | CancelResponse
    | Synthesize
    | EndSynthesis
    | PlayFiller
    | ClearPlayout
    | PausePlayout
    | ResumePlayout
    | CarryOut
    | EndCall
    | ShowState
    | ShowTranscript
    | ShowResponse
    | ShowPlayout
    | ShowFiller
    | ShowTiming
    | SpeechStartedEvent
    | TurnEndedEvent
    | TurnLatencyEvent
    | PlayoutFinishedEvent
    | DtmfEvent
    | InterruptionJudged
    | FillerCounted
    | Observe
)
