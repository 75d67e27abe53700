"""The caller's script for a scripted call: a pure state machine, no sockets and no clock.

The shell (call.py) feeds it every server message with its arrival time and asks it, once
per 20 ms tick, for the next frame to send. The script:

1. waits for the agent's greeting to finish playing (its "end" mark), unless told not to or
   no greeting starts within `greeting_timeout_s`;
2. for each utterance (one WAV): streams it frame by frame, then sends silence until the
   turn that ended after the utterance's speech has its `timing` AND the reply to it has
   played out (the `end` mark of every response to that turn), or `turn_timeout_s` passes;
3. after the last utterance waits `hangup_wait_s` in silence (an agent that says goodbye
   hangs up itself: the call is then "ended by the agent"), then hangs up; it stops at
   once whenever the agent ends the call.

Like a phone it never stops sending: silence fills every tick that has no caller audio.
Message index i is the i-th binary message (frame) sent; the script remembers the send
time of each, so voice-to-voice = first reply audio arrival - send time of the turn's
`last_voiced_message`.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from voicemesh.edge.port import EndReason
from voicemesh.v1 import edge_pb2

# End reasons that mean the call failed rather than the agent ending it (the edge could not
# serve it: a stage failed, no capacity, an unknown agent, or the edge was draining).
FAILED_ENDS = frozenset(r.value for r in EndReason if r.failed)

FRAME_BYTES = 640  # 20 ms of PCM16 mono 16 kHz
FRAME_S = 0.020
SAMPLE_RATE = 16000
SILENCE = bytes(FRAME_BYTES)
# A turn counts as the answer to an utterance when its last voiced message is no earlier
# than this many frames before the utterance's last loud frame (VADs disagree on tails).
TAIL_SLACK_FRAMES = 50
# Edge states in which the caller is still mid-turn: never declare a turn answered then.
_BUSY_STATES = frozenset({"user_speaking", "thinking"})
LATENCY_FIELDS = (
    "endpoint",
    "stt_final",
    "first_token",
    "tts_first_audio",
    "voice_to_voice",
    "edge_voice_to_voice",
)


class Phase(StrEnum):
    GREETING = "greeting"
    SPEAKING = "speaking"
    AWAITING_REPLY = "awaiting_reply"
    LINGERING = "lingering"  # every utterance is done: a moment's silence before hanging up
    DONE = "done"


@dataclass(frozen=True)
class Utterance:
    """One caller turn to play: PCM16 LE mono 16 kHz, and a label (the WAV's name)."""

    label: str
    pcm: bytes

    def frames(self) -> int:
        return max(1, -(-len(self.pcm) // FRAME_BYTES))

    def frame(self, i: int) -> bytes:
        chunk = self.pcm[i * FRAME_BYTES : (i + 1) * FRAME_BYTES]
        return chunk + bytes(FRAME_BYTES - len(chunk))


def last_loud_frame(pcm: bytes, rel_threshold: float = 0.1) -> int:
    """Index of the last 20 ms frame whose RMS reaches `rel_threshold` of the loud level
    (95th percentile frame RMS); 0 for silence. Speech tails only make it earlier."""
    n = len(pcm) // FRAME_BYTES
    if n == 0:
        return 0
    samples = np.frombuffer(pcm[: n * FRAME_BYTES], dtype="<i2").astype(np.float64)
    rms = np.sqrt(np.mean(samples.reshape(n, -1) ** 2, axis=1))
    loud = float(np.percentile(rms, 95))
    if loud < 1.0:
        return 0
    above = np.nonzero(rms >= rel_threshold * loud)[0]
    return int(above[-1]) if above.size else 0


@dataclass
class LatencyMs:
    """Per-stage latency of one caller turn, in milliseconds (None where not measured)."""

    endpoint: float | None = None
    stt_final: float | None = None
    first_token: float | None = None
    tts_first_audio: float | None = None
    voice_to_voice: float | None = None  # on the caller's clock
    edge_voice_to_voice: float | None = None  # as the edge measured it

    def to_json(self) -> dict[str, float | None]:
        return {
            name: (None if (v := getattr(self, name)) is None else round(v, 1)) for name in LATENCY_FIELDS
        }

    @staticmethod
    def median(items: Sequence[LatencyMs]) -> LatencyMs:
        out = LatencyMs()
        for name in LATENCY_FIELDS:
            values = [v for it in items if (v := getattr(it, name)) is not None]
            setattr(out, name, statistics.median(values) if values else None)
        return out


@dataclass
class ResponseLog:
    """What arrived for one agent response."""

    response_id: str
    turn_id: str = ""
    text: str = ""
    final: bool = False
    first_seen_at: float = 0.0
    greeting_candidate: bool = False
    started_at: float | None = None
    first_audio_at: float | None = None
    ended: bool = False
    audio: bytearray = field(default_factory=bytearray)


@dataclass
class TurnResult:
    """One utterance (WAV) and what the agent did with it."""

    wav: str
    transcript: str = ""
    reply_text: str = ""
    reply_audio: bytes = b""
    latency: LatencyMs = field(default_factory=LatencyMs)
    turn_ids: list[str] = field(default_factory=list)
    error: str | None = None
    # What the edge said while the reply was late ("Let me check that."), in order.
    fillers: list[str] = field(default_factory=list)

    @property
    def reply_audio_seconds(self) -> float:
        return len(self.reply_audio) / (2 * SAMPLE_RATE)

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "wav": self.wav,
            "transcript": self.transcript,
            "reply_text": self.reply_text,
            "reply_audio_seconds": round(self.reply_audio_seconds, 3),
            "latency_ms": self.latency.to_json(),
            "turn_ids": list(self.turn_ids),
        }
        if self.fillers:
            out["fillers"] = list(self.fillers)
        if self.error:
            out["error"] = self.error
        return out


@dataclass
class _UtteranceState:
    utterance: Utterance
    tail_frame: int
    first_message: int | None = None
    last_message: int | None = None
    finished_at: float | None = None
    answered_turn: str | None = None
    error: str | None = None
    cut_off: bool = False  # the agent ended the call before this utterance became a turn


class CallScript:
    """Decides what the caller sends next from what the edge has said. Time is a parameter."""

    def __init__(
        self,
        utterances: Sequence[Utterance],
        *,
        now: float,
        wait_greeting: bool = True,
        greeting_timeout_s: float = 10.0,
        turn_timeout_s: float = 20.0,
        hangup_wait_s: float = 0.5,
    ) -> None:
        self._utts = [_UtteranceState(u, last_loud_frame(u.pcm)) for u in utterances]
        self._greeting_timeout_s = greeting_timeout_s
        self._turn_timeout_s = turn_timeout_s
        self._hangup_wait_s = hangup_wait_s
        self._phase_since = now
        self.phase = Phase.GREETING if wait_greeting else Phase.SPEAKING
        self._greeting_started = False
        self._current = 0  # index into _utts
        self._frame_in_utt = 0
        self.send_times: list[float] = []
        self.responses: dict[str, ResponseLog] = {}
        self._playing: str | None = None  # response id between its start and end marks
        self.timings: dict[str, tuple[edge_pb2.TurnTiming, float]] = {}
        self._transcripts: dict[str, tuple[str, bool]] = {}
        self._turn_order: list[str] = []
        self._turn_utt: dict[str, int] = {}  # turn id -> utterance index, when first seen
        self.edge_state = ""
        self.ended_by = ""
        self.end_reason = ""
        self.transferred_to = ""  # where the agent handed the call on, if it did
        self.digits_received = ""  # keys the agent sent
        self.errors: list[str] = []  # call-level problems (edge errors, a dropped connection)
        self.stray_audio_bytes = 0
        # Fillers heard per turn, and the audio of the one playing (not a reply's).
        self.fillers: dict[str, list[str]] = {}
        self.filler_audio_bytes = 0
        self._filler_playing = False
        if self.phase is Phase.SPEAKING:
            self._begin_next_utterance(now)

    # -- inputs -------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.phase is Phase.DONE

    def next_frame(self, now: float) -> bytes | None:
        """The frame to send as the next binary message (its send time is `now`), or None
        when the call is over and nothing more should be sent."""
        self._check_timeouts(now)
        if self.done:
            return None
        if self.phase is Phase.SPEAKING:
            st = self._utts[self._current]
            frame = st.utterance.frame(self._frame_in_utt)
            index = len(self.send_times)
            if st.first_message is None:
                st.first_message = index
            self._frame_in_utt += 1
            if self._frame_in_utt >= st.utterance.frames():
                st.last_message = index
                st.finished_at = now
                self._enter(Phase.AWAITING_REPLY, now)
        else:
            frame = SILENCE
        self.send_times.append(now)
        if self.phase is Phase.AWAITING_REPLY:
            self._check_answered(now)
        return frame

    def on_message(self, msg: edge_pb2.ServerMessage, now: float) -> None:
        """A text message from the edge, arrived at `now`."""
        kind = msg.WhichOneof("kind")
        if kind == "response":
            self._on_response(msg.response, now)
        elif kind == "mark":
            self._on_mark(msg.mark, now)
        elif kind == "filler":
            f = msg.filler
            self._filler_playing = f.name == "start"
            if f.name == "start":
                self.fillers.setdefault(f.turn_id, []).append(f.text)
        elif kind == "transcript":
            t = msg.transcript
            self._see_turn(t.turn_id)
            prev = self._transcripts.get(t.turn_id)
            if not (prev and prev[1] and not t.final):  # a final is never replaced by a partial
                self._transcripts[t.turn_id] = (t.text, t.final)
        elif kind == "timing":
            self._see_turn(msg.timing.turn_id)
            self.timings[msg.timing.turn_id] = (msg.timing, now)
            self._attribute_by_timing(msg.timing)
        elif kind == "state":
            self.edge_state = msg.state.state
        elif kind == "error":
            self.errors.append(f"edge error {msg.error.code}: {msg.error.message}")
        elif kind == "transfer":
            self.transferred_to = msg.transfer.target
        elif kind == "dtmf":
            self.digits_received += msg.dtmf.digits
        elif kind == "end":
            reason = msg.end.reason
            if reason in FAILED_ENDS:  # the call failed: the agent did not end it
                self.errors.append(f"the edge ended the call: {reason}")
                self._finish("edge", now, reason=reason)
            else:
                self._finish("agent", now, reason=reason)
            return
        if self.phase is Phase.AWAITING_REPLY:
            self._check_answered(now)

    def on_audio(self, data: bytes, now: float) -> None:
        """A binary message (reply audio) from the edge, arrived at `now`."""
        if self._playing is None:
            if self._filler_playing:
                self.filler_audio_bytes += len(data)
            else:
                self.stray_audio_bytes += len(data)
            return
        resp = self.responses[self._playing]
        if resp.first_audio_at is None:
            resp.first_audio_at = now
        resp.audio.extend(data)

    def on_closed(self, now: float, detail: str) -> None:
        """The connection closed. Without a prior `end` that is the edge dropping the call."""
        if self.done:
            return
        self.errors.append(f"the edge closed the connection ({detail})")
        self._finish("edge", now, reason=detail)

    # -- outputs ------------------------------------------------------------------------

    def greeting(self) -> tuple[str, bytes]:
        parts = [r for r in self.responses.values() if self._is_greeting(r)]
        return " ".join(r.text for r in parts if r.text), b"".join(bytes(r.audio) for r in parts)

    def turn_results(self) -> list[TurnResult]:
        """One result per utterance the edge took as (part of) a turn, or that failed."""
        out = []
        for i, st in enumerate(self._utts):
            if st.first_message is None or st.cut_off:
                continue
            turns = [t for t in self._turn_order if self._turn_utt.get(t) == i]
            result = TurnResult(wav=st.utterance.label, turn_ids=turns, error=st.error)
            result.transcript = " ".join(
                text for t in turns if (text := self._transcripts.get(t, ("", False))[0])
            )
            replies = [r for r in self.responses.values() if r.turn_id in turns]
            result.reply_text = " ".join(r.text for r in replies if r.text)
            result.reply_audio = b"".join(bytes(r.audio) for r in replies)
            result.fillers = [text for t in turns for text in self.fillers.get(t, [])]
            key = st.answered_turn or next((t for t in reversed(turns) if t in self.timings), None)
            if key is not None:
                result.latency = self._latency(key)
            out.append(result)
        return out

    def unanswered(self) -> list[str]:
        """Utterances left out because the agent ended the call first."""
        return [st.utterance.label for st in self._utts if st.first_message is None or st.cut_off]

    # -- internals ----------------------------------------------------------------------

    def _enter(self, phase: Phase, now: float) -> None:
        self.phase = phase
        self._phase_since = now

    def _begin_next_utterance(self, now: float) -> None:
        if self._current >= len(self._utts):
            if self._hangup_wait_s > 0 and self._utts:
                self._enter(Phase.LINGERING, now)  # an agent that says goodbye hangs up itself
            else:
                self._finish("caller", now)
            return
        self._frame_in_utt = 0
        self._enter(Phase.SPEAKING, now)

    def _finish(self, who: str, now: float, reason: str = "") -> None:
        if self.done:
            return
        self.ended_by = who
        self.end_reason = reason
        if self.phase in (Phase.SPEAKING, Phase.AWAITING_REPLY) and self._current < len(self._utts):
            st = self._utts[self._current]
            turns = self._turns_of(self._current)
            if who == "agent" and not turns:
                st.cut_off = True  # the agent hung up before it heard this one: not a failure
            elif who != "agent" and st.answered_turn is None and st.error is None:
                st.error = f"the call ended before the reply had played ({reason or who})"
        self._enter(Phase.DONE, now)

    def _check_timeouts(self, now: float) -> None:
        waited = now - self._phase_since
        if self.phase is Phase.GREETING:
            limit = self._turn_timeout_s if self._greeting_started else self._greeting_timeout_s
            if waited >= limit:
                self._begin_next_utterance(now)
        elif self.phase is Phase.LINGERING and waited >= self._hangup_wait_s:
            self._finish("caller", now)
        elif self.phase is Phase.AWAITING_REPLY and waited >= self._turn_timeout_s:
            st = self._utts[self._current]
            st.error = self._timeout_reason()
            self._current += 1
            self._begin_next_utterance(now)

    def _timeout_reason(self) -> str:
        limit = f"{self._turn_timeout_s:g} s"
        turn = self._candidate_turn(self._current)
        if turn is None:
            return f"no turn timing from the edge within {limit} after the audio ended"
        if not any(r.turn_id == turn for r in self.responses.values()):
            return f"no reply to turn {turn} within {limit} after the audio ended"
        return f"the reply to turn {turn} did not finish playing within {limit}"

    def _see_turn(self, turn_id: str) -> None:
        if not turn_id or turn_id in self._turn_utt:
            return
        self._turn_order.append(turn_id)
        if self.phase in (Phase.SPEAKING, Phase.AWAITING_REPLY):
            self._turn_utt[turn_id] = self._current
        elif self._current > 0:
            self._turn_utt[turn_id] = self._current - 1

    def _attribute_by_timing(self, timing: edge_pb2.TurnTiming) -> None:
        """A timing says which message ended the turn: that fixes the utterance it belongs to."""
        for i, st in enumerate(self._utts):
            if st.first_message is not None and timing.last_voiced_message >= st.first_message:
                self._turn_utt[timing.turn_id] = i

    def _turns_of(self, index: int) -> list[str]:
        return [t for t in self._turn_order if self._turn_utt.get(t) == index]

    def _candidate_turn(self, index: int) -> str | None:
        """The latest timed turn that ended after the utterance's speech (its last loud frame)."""
        st = self._utts[index]
        if st.first_message is None:
            return None
        threshold = st.first_message + max(0, st.tail_frame - TAIL_SLACK_FRAMES)
        best: tuple[int, str] | None = None
        for turn in self._turns_of(index):
            if turn not in self.timings:
                continue
            lvm = self.timings[turn][0].last_voiced_message
            if lvm >= threshold and (best is None or lvm >= best[0]):
                best = (lvm, turn)
        return None if best is None else best[1]

    def _check_answered(self, now: float) -> None:
        if self.edge_state in _BUSY_STATES:
            return
        turn = self._candidate_turn(self._current)
        if turn is None:
            return
        # Responses cancelled before they played (superseded) never get marks: skip them.
        played = [r for r in self.responses.values() if r.turn_id == turn and r.started_at is not None]
        if not played or not all(r.ended for r in played):
            return
        self._utts[self._current].answered_turn = turn
        self._current += 1
        self._begin_next_utterance(now)

    def _response(self, response_id: str, now: float) -> ResponseLog:
        resp = self.responses.get(response_id)
        if resp is None:
            resp = ResponseLog(
                response_id,
                first_seen_at=now,
                greeting_candidate=self._current == 0 and self.phase is not Phase.AWAITING_REPLY,
            )
            self.responses[response_id] = resp
        return resp

    def _on_response(self, msg: edge_pb2.ResponseText, now: float) -> None:
        resp = self._response(msg.response_id, now)
        if msg.turn_id:
            resp.turn_id = msg.turn_id
            self._see_turn(msg.turn_id)
        if msg.final:
            resp.text, resp.final = msg.text, True
        elif not resp.final:
            resp.text += msg.text

    def _on_mark(self, mark: edge_pb2.PlayoutMark, now: float) -> None:
        resp = self._response(mark.response_id, now)
        if mark.name == "start":
            resp.started_at = now
            self._playing = mark.response_id
            if self.phase is Phase.GREETING:
                self._greeting_started = True
                self._phase_since = now
        elif mark.name == "end":
            resp.ended = True
            if self._playing == mark.response_id:
                self._playing = None
            if self.phase is Phase.GREETING and self._is_greeting(resp):
                self._begin_next_utterance(now)

    def _is_greeting(self, resp: ResponseLog) -> bool:
        return resp.greeting_candidate and not resp.turn_id

    def _latency(self, turn: str) -> LatencyMs:
        timing, _ = self.timings[turn]
        out = LatencyMs(
            endpoint=float(timing.endpoint_ms),
            stt_final=float(timing.stt_final_ms),
            first_token=float(timing.first_token_ms),
            tts_first_audio=float(timing.tts_first_audio_ms),
            edge_voice_to_voice=float(timing.edge_voice_to_voice_ms),
        )
        replies = sorted(
            (r for r in self.responses.values() if r.turn_id == turn and r.first_audio_at),
            key=lambda r: r.first_audio_at or 0.0,
        )
        lvm = timing.last_voiced_message
        if replies and lvm < len(self.send_times):
            arrived = replies[0].first_audio_at or 0.0
            out.voice_to_voice = (arrived - self.send_times[lvm]) * 1000.0
        return out
