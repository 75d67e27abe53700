"""What the edge remembers about a call's turns and responses, and the per-turn timing
derived from it (edge clock, monotonic seconds)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .decisions import CallAction
from .port import TurnTiming

FRAME_MS = 20


@dataclass
class Turn:
    turn_id: str
    last_voiced_frame: int = -1
    last_voiced_at: float = 0.0
    endpoint_at: float = 0.0
    final_at: float = 0.0
    superseded: bool = False
    text: str = ""
    response_id: str = ""
    # Sent to reasoning (a final with words, a DTMF input, an idle nudge).
    sent: bool = False
    # When a filler's first frame went out for this turn's late reply (0: none played).
    filler_at: float = 0.0


@dataclass
class Response:
    response_id: str
    turn_id: str
    first_token_at: float = 0.0
    first_audio_at: float = 0.0
    started_playout: bool = False
    cancelled: bool = False
    finished: bool = False
    text: str = ""
    action: CallAction | None = None
    # (offset_ms, clause text) from tts marks: what the caller heard if playout stops.
    clauses: list[tuple[int, str]] = field(default_factory=list)
    played_frames: int = 0
    # Clauses marked in the outgoing audio so far, and those the far end has played into.
    marked: int = 0
    heard: set[int] = field(default_factory=set)

    def heard_text(self) -> str:
        """The clauses the caller has begun to hear (their mark came back played)."""
        return " ".join(t for i, (_, t) in enumerate(self.clauses) if i in self.heard).strip()


def turn_timing(turn: Turn, resp: Response, first_frame_sent_at: float) -> TurnTiming:
    """Every stage of one turn, in ms, once its reply's first frame has been sent: the
    stages laid end to end from the last voiced audio (a stage that was done before the one
    ahead of it ended, as a final transcript ready before the endpoint, lasts 0 ms, never
    less), and the whole to the first frame sent (the reply's: a filler played before it is
    timed on its own, `filler_ms`)."""
    ends, at = [], turn.last_voiced_at
    for moment in (turn.endpoint_at, turn.final_at, resp.first_token_at, resp.first_audio_at):
        ends.append(max(at, moment))
        at = ends[-1]
    starts = [turn.last_voiced_at, *ends[:-1]]
    endpoint, stt, token, tts = ((end - start) * 1000 for start, end in zip(starts, ends, strict=True))
    return TurnTiming(
        turn_id=turn.turn_id,
        last_voiced_frame=turn.last_voiced_frame,
        endpoint_ms=endpoint,
        stt_final_ms=stt,
        first_token_ms=token,
        tts_first_audio_ms=tts,
        edge_voice_to_voice_ms=max(0.0, first_frame_sent_at - turn.last_voiced_at) * 1000,
        filler_ms=max(0.0, turn.filler_at - turn.last_voiced_at) * 1000 if turn.filler_at else 0.0,
    )
