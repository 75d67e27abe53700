"""The pure call core: every rule of a call, as events in and decisions out.

No sockets, no asyncio, no clock: the shell passes each event with `now` (monotonic
seconds, used only for latency figures) and carries out the decisions returned. Media time
comes from frame indices: ports deliver gapless 20 ms frames, so frame i is at i * 20 ms.

Rules (each tested on a virtual clock in tests/test_core.py):
- turn-taking by `TurnTaker` (endpoint, resumed turn, barge-in, idle nudge); with an
  end-of-turn model, a pause is checked once (`CheckTurnEnd`) and a confident "complete"
  ends the turn before the endpoint silence, never after it;
- barge-in that is not fooled: caller audio no louder than the agent's own echo is not
  speech (`EchoGate`, and stt hears it as non-speech); speech over the agent pauses its
  audio at once, and its words decide (`InterruptionRules`): a real interruption stops the
  reply, a backchannel, a cough or the agent's own words coming back let it resume;
- the end of a caller turn flushes stt; its final goes to reasoning, unless the caller has
  resumed meanwhile (the text is carried into the next turn) or it is empty (noise);
- a resumed turn cancels the reply that was coming, by the turn's id if no word of it has
  arrived yet; barge-in cancels what is playing, clears the far end's buffer and tells
  reasoning what the caller actually heard;
- every response ends with reasoning's `end`, also one with no words (an action-only
  reply): it is played as an empty response, so the agent is never stuck thinking;
- an agent action (hang up, transfer, send DTMF) is carried out once the response it follows
  has been played, or at once if that response is already over;
- a late reply gets a filler (`FillerRules`): when no reply audio is ready `after_ms` after
  a caller's turn ended (and the turn has gone to reasoning), one ready phrase plays
  (`PlayFiller`; none ready: skipped and counted, never waited for); the agent speaks while
  it plays, so speech over it is judged as over any reply, and a barge-in stops it and
  drops the reply it stood in for as a resumed turn does; the reply queues behind it;
  the filler is no part of the conversation (reasoning never hears of it) and the turn's
  timing stays the reply's (`filler_ms` beside it) (tests/test_fillers.py);
- DTMF goes to reasoning as an input of its own; hold pauses listening;
- a peer failure or the caller hanging up ends the call.
"""

from __future__ import annotations

from voicemesh.audio.frames import SILENCE_DBFS

from .decisions import (
    FORWARD,
    FORWARD_MUTED,
    CallAction,
    CancelResponse,
    CarryOut,
    CheckTurnEnd,
    ClearPlayout,
    Decision,
    DtmfEvent,
    EndCall,
    EndSynthesis,
    FillerCounted,
    HangupCall,
    InterruptionJudged,
    Observe,
    PausePlayout,
    PlayFiller,
    PlayoutFinishedEvent,
    ResumePlayout,
    SendDigits,
    SendDtmf,
    SendTurn,
    ShowFiller,
    ShowPlayout,
    ShowResponse,
    ShowState,
    ShowTiming,
    ShowTranscript,
    SpeechStartedEvent,
    SttFlush,
    Synthesize,
    TransferCall,
    TurnEndedEvent,
    TurnLatencyEvent,
)
from .echo import EchoConfig, EchoGate
from .fillers import Filler, FillerConfig, FillerResult, FillerRules
from .interruptions import InterruptionRules, Verdict
from .ledger import FRAME_MS, Response, Turn, turn_timing
from .port import EndReason
from .turns import (
    BargeIn,
    EndOfTurn,
    IdleTimeout,
    Overlap,
    OverlapEnded,
    Resumed,
    SpeechStarted,
    StateChange,
    TurnConfig,
    TurnState,
    TurnTaker,
)
from .turns import Decision as TurnDecision

_ROLE_FAILURE = {
    "stt": EndReason.ERROR_STT,
    "reasoning": EndReason.ERROR_REASONING,
    "tts": EndReason.ERROR_TTS,
}


class CallCore:
    def __init__(
        self,
        turn_config: TurnConfig | None = None,
        interruptions: InterruptionRules | None = None,
        echo: EchoConfig | None = None,
        filler: FillerConfig | None = None,
    ) -> None:
        self.turns = TurnTaker(turn_config or TurnConfig())
        self.interruptions = interruptions or InterruptionRules()
        self.echo = EchoGate(echo)
        self.fillers = FillerRules(filler)
        self.filler: Filler | None = None  # the latest filler decided
        self._fillers = 0
        self._frame = 0  # index of the latest caller frame
        self.turn_log: dict[str, Turn] = {}
        self.responses: dict[str, Response] = {}
        self.ended: EndReason | None = None
        self.held = False
        self._carry_text = ""
        self._last_voiced_at = 0.0
        self._dtmf_inputs = 0

    def configure(
        self,
        config: TurnConfig,
        interruptions: InterruptionRules | None = None,
        echo: EchoConfig | None = None,
        filler: FillerConfig | None = None,
    ) -> None:
        """The agent's settings; `filler` None: no fillers."""
        self.turns.configure(config)
        if interruptions is not None:
            self.interruptions = interruptions
        if echo is not None:
            self.echo = EchoGate(echo)
        self.fillers.configure(filler)

    @property
    def state(self) -> str:
        return self.turns.state.value

    @property
    def paused(self) -> bool:
        """The agent's audio waits for a verdict on the speech over it."""
        return bool(self.turns.overlap_turn)

    # ---- caller audio and call events ---------------------------------------------------

    def on_frame(self, index: int, voiced: bool, now: float, level_dbfs: float = 0.0) -> list[Decision]:
        """Caller frame `index` (gapless, from 0), its VAD decision and its level. On hold,
        the caller's audio (hold music) counts as silence; so does audio no louder than the
        agent's own echo."""
        if self.ended is not None:
            return []
        self._frame = index
        muted = self.held or (voiced and not self.echo.passes(index, level_dbfs))
        voiced = voiced and not muted
        if voiced:
            self._last_voiced_at = now
        out: list[Decision] = [FORWARD_MUTED if muted else FORWARD]
        for d in self.turns.on_frame(index, voiced):
            self._turn_decision(d, now, out)
        if self.fillers.due(index):
            self._filler_due(out)
        return out

    def on_dtmf(self, digits: str, now: float) -> list[Decision]:
        """Keys the caller pressed: an input to the agent of its own."""
        if self.ended is not None:
            return []
        self._dtmf_inputs += 1
        turn_id = f"d{self._dtmf_inputs}"
        self.turn_log[turn_id] = Turn(turn_id, endpoint_at=now, final_at=now, sent=True)
        return [DtmfEvent(digits), SendDtmf(turn_id, digits)]

    def on_hold(self, on: bool) -> list[Decision]:
        """While on hold the caller's audio is neither heard nor answered."""
        self.held = on
        return []

    def on_hangup(self) -> list[Decision]:
        return self._end(EndReason.CALLER)

    def on_media_timeout(self) -> list[Decision]:
        """No audio arrived from the caller's side for the media timeout: a dead session
        (a client that stopped sending, a carrier that lost the stream). A held call sends
        no media by design and is not ended."""
        if self.held:
            return []
        return self._end(EndReason.NO_MEDIA)

    def on_peer_failed(self, role: str) -> list[Decision]:
        return self._end(_ROLE_FAILURE.get(role, EndReason.ERROR_INTERNAL))

    def on_turn_complete_hint(
        self, turn_id: str, last_voiced_frame: int, probability: float, now: float
    ) -> list[Decision]:
        """The end-of-turn model's answer to a `CheckTurnEnd`: P(complete). A confident
        answer about the pause still in progress ends the turn now; any other is ignored."""
        if self.ended is not None:
            return []
        out: list[Decision] = []
        for x in self.turns.on_turn_complete_hint(turn_id, last_voiced_frame, probability):
            self._turn_decision(x, now, out)
        return out

    # ---- stt ----------------------------------------------------------------------------

    def on_partial(self, text: str, now: float = 0.0) -> list[Decision]:
        if self.ended is not None:
            return []
        out: list[Decision] = [ShowTranscript(self.turns.turn_id, text, False)]
        if self.paused and self._judge(text) is Verdict.REAL:
            out.append(InterruptionJudged(Verdict.REAL))
            for d in self.turns.confirm_barge_in():
                self._turn_decision(d, now, out)
        return out

    def _judge(self, caller_text: str) -> Verdict:
        """Speech over the agent against what the agent was saying (for its echo)."""
        playing = (r for r in reversed(self.responses.values()) if r.started_playout and not r.cancelled)
        agent = next(playing, None)
        said = agent.text if agent else ""
        if not said and self._filler_playing():
            said = self.filler.text if self.filler else ""
        return self.interruptions.judge(caller_text, said, self.turns.config.barge_in_min_words)

    def _overlap_final(self, turn: Turn, text: str, now: float) -> list[Decision]:
        """The final of speech over the agent: confirm it as the caller's turn, or let the
        agent go on (the words are then no part of the conversation)."""
        verdict = self._judge(text)
        out: list[Decision] = [InterruptionJudged(verdict)]
        if verdict is Verdict.REAL:
            for d in self.turns.confirm_barge_in():
                self._turn_decision(d, now, out)
            out.append(
                TurnEndedEvent(
                    turn.turn_id,
                    turn.last_voiced_frame * FRAME_MS,
                    (turn.endpoint_at - turn.last_voiced_at) * 1000,
                )
            )
            return out
        self.turns.dismiss_overlap()
        del self.turn_log[turn.turn_id]
        out.append(ResumePlayout())
        self._after_filler(now, out)
        return out

    def on_final(self, flush_id: str, text: str, confidence: float, now: float) -> list[Decision]:
        """The final answering the flush of turn `flush_id`."""
        turn = self.turn_log.get(flush_id)
        if turn is None or self.ended is not None:
            return []  # a final the service ended by itself: not ours to answer
        turn.final_at = now
        out: list[Decision] = []
        if flush_id == self.turns.overlap_turn:
            out += self._overlap_final(turn, text, now)
            if flush_id not in self.turn_log:
                return out  # not an interruption: the agent goes on
        joined = " ".join(t for t in (self._carry_text, text.strip()) if t)
        if turn.superseded:
            self._carry_text = joined  # the caller went on talking: it joins the next turn
            return []
        self._carry_text = ""
        out.append(Observe("stt_final", now - turn.endpoint_at))
        if not joined:
            for d in self.turns.on_nothing_to_say():
                self._turn_decision(d, now, out)
            return out
        turn.text = joined
        turn.sent = True
        out.append(ShowTranscript(turn.turn_id, joined, True))
        out.append(SendTurn(turn.turn_id, joined, confidence))
        return out

    # ---- reasoning ----------------------------------------------------------------------

    def on_delta(self, response_id: str, in_reply_to: str, text: str, now: float) -> list[Decision]:
        out: list[Decision] = []
        resp = self._response(response_id, in_reply_to, now, out)
        if resp.cancelled or self.ended is not None:
            return out
        resp.text += text
        out.append(Synthesize(response_id, text))
        out.append(ShowResponse(response_id, resp.turn_id, text, False))
        return out

    def on_response_end(self, response_id: str, in_reply_to: str, text: str, now: float) -> list[Decision]:
        """Reasoning's last word on a response. One without any delta (an action-only reply,
        nothing to say) is known from here on and plays as an empty response; one cut short
        by a newer turn (preempted) plays what it has."""
        out: list[Decision] = []
        resp = self._response(response_id, in_reply_to, now, out)
        if resp.cancelled or self.ended is not None:
            return out
        resp.text = text or resp.text
        out += [EndSynthesis(response_id), ShowResponse(response_id, resp.turn_id, resp.text, True)]
        return out

    def _response(self, response_id: str, in_reply_to: str, now: float, out: list[Decision]) -> Response:
        """The response, known from its first message on (linked to the turn it answers;
        cancelled at once if the caller has gone on meanwhile)."""
        resp = self.responses.get(response_id)
        if resp is None:
            resp = Response(response_id, in_reply_to, first_token_at=now)
            self.responses[response_id] = resp
            turn = self.turn_log.get(in_reply_to)
            if turn is not None:
                turn.response_id = response_id
                if turn.superseded:
                    self._cancel(resp, out, now)
                elif turn.final_at:
                    out.append(Observe("first_token", now - turn.final_at))
        return resp

    def on_action(self, response_id: str, action: CallAction) -> list[Decision]:
        """An agent action; carried out once the response it follows has been heard."""
        if self.ended is not None:
            return []
        resp = self.responses.get(response_id)
        if resp is not None and resp.cancelled:
            return []  # the caller cut the agent off: the next turn decides again
        if resp is None or resp.finished:
            return self._carry_out(action)
        resp.action = action
        return []

    # ---- tts and playout ----------------------------------------------------------------

    def accepts_audio(self, response_id: str) -> bool:
        f = self.filler
        if f is not None and f.filler_id == response_id:
            return not f.done and self.ended is None
        resp = self.responses.get(response_id)
        return resp is not None and not resp.cancelled and not resp.finished and self.ended is None

    def on_tts_audio(self, response_id: str, now: float) -> list[Decision]:
        """A frame of synthesized audio arrived (the shell queues it if `accepts_audio`)."""
        resp = self.responses.get(response_id)
        if resp is None or resp.first_audio_at:
            return []
        resp.first_audio_at = now
        return [Observe("tts_first_audio", now - resp.first_token_at)]

    def on_tts_clause(self, response_id: str, offset_ms: int, text: str) -> None:
        resp = self.responses.get(response_id)
        if resp is not None and not resp.cancelled:
            resp.clauses.append((offset_ms, text))

    def on_playout_started(self, response_id: str, now: float) -> list[Decision]:
        """The first frame of a response (or of a filler) went to the caller."""
        if self.filler is not None and self.filler.filler_id == response_id:
            return self._filler_started(now)
        resp = self.responses.get(response_id)
        if resp is None or resp.started_playout:
            return []
        resp.started_playout = True
        out: list[Decision] = [ShowPlayout(response_id, "start")]
        for d in self.turns.on_reply_started():
            self._turn_decision(d, now, out)
        turn = self.turn_log.get(resp.turn_id)
        if turn is not None and turn.endpoint_at and turn.last_voiced_frame >= 0:
            timing = turn_timing(turn, resp, now)
            out.append(Observe("voice_to_voice", timing.edge_voice_to_voice_ms / 1000))
            out.append(TurnLatencyEvent(timing))
            out.append(ShowTiming(timing))
        return out

    def clause_marks_due(self, response_id: str) -> list[int]:
        """Clauses starting at or before the next frame to play: mark each in the outgoing
        audio (once), so the far end tells when the caller began to hear it."""
        resp = self.responses.get(response_id)
        if resp is None or resp.cancelled:
            return []
        offset_ms = resp.played_frames * FRAME_MS
        due = []
        while resp.marked < len(resp.clauses) and resp.clauses[resp.marked][0] <= offset_ms:
            due.append(resp.marked)
            resp.marked += 1
        return due

    def on_clause_heard(self, response_id: str, index: int) -> None:
        """The far end played up to a clause's mark. A mark returned after the response was
        stopped (a carrier returns pending marks on `clear`) proves nothing: ignored."""
        resp = self.responses.get(response_id)
        if resp is not None and not resp.cancelled and 0 <= index < len(resp.clauses):
            resp.heard.add(index)

    def on_frame_played(self, response_id: str, level_dbfs: float = SILENCE_DBFS) -> None:
        resp = self.responses.get(response_id)
        if resp is not None:
            resp.played_frames += 1
        self.echo.played(self._frame, level_dbfs)

    def on_playout_done(self, response_id: str, now: float) -> list[Decision]:
        """Every frame of the response (or of a filler) has been played at the far end."""
        if self.filler is not None and self.filler.filler_id == response_id:
            return self._filler_finished(now)
        resp = self.responses.get(response_id)
        if resp is None or resp.cancelled or resp.finished:
            return []
        out: list[Decision] = []
        if not resp.started_playout:  # a response without audio
            out.extend(self.on_playout_started(response_id, now))
        resp.finished = True
        out.append(ShowPlayout(response_id, "end"))
        out.append(PlayoutFinishedEvent(response_id, resp.played_frames * FRAME_MS, False))
        was_paused = self.paused
        for d in self.turns.on_reply_finished():
            self._turn_decision(d, now, out)
        if was_paused:  # the speech over the agent became the caller's own turn
            out.append(ResumePlayout())
        if resp.action is not None:
            out.extend(self._carry_out(resp.action))
        return out

    # ---- fillers ------------------------------------------------------------------------

    def on_filler_ready(self, text: str) -> None:
        """The edge holds the audio of this filler phrase, in the call's voice."""
        self.fillers.ready(text)

    def _filler_due(self, out: list[Decision]) -> None:
        """The armed turn's wait is over: a filler, if the turn still waits for its reply."""
        turn = self.turn_log.get(self.fillers.due(self._frame))
        current = turn is not None and not turn.superseded and turn.turn_id == self.turns.turn_id
        thinking = self.turns.state is TurnState.THINKING
        if (
            turn is not None
            and current
            and (turn.turn_id == self.turns.overlap_turn or (thinking and not turn.sent))
        ):
            return  # not gone to reasoning yet (speech over the agent being judged, a late final)
        self.fillers.disarm()
        if turn is None or not current or not thinking or not turn.sent or self.held:
            return  # the caller went on, the turn held nothing, or the reply is playing
        resp = self.responses.get(turn.response_id) if turn.response_id else None
        if resp is not None and (resp.first_audio_at or resp.finished or resp.cancelled):
            return  # its audio is here: it plays at once
        text = self.fillers.pick()
        if text is None:
            out.append(FillerCounted(FillerResult.SKIPPED))
            return
        self._fillers += 1
        self.filler = Filler(f"filler-{self._fillers}", turn.turn_id, text)
        out.append(PlayFiller(self.filler.filler_id, turn.turn_id, text))

    def _filler_playing(self) -> bool:
        return self.filler is not None and self.filler.started and not self.filler.done

    def _reply_started(self, turn_id: str) -> bool:
        turn = self.turn_log.get(turn_id)
        resp = self.responses.get(turn.response_id) if turn is not None and turn.response_id else None
        return resp is not None and resp.started_playout

    def _filler_started(self, now: float) -> list[Decision]:
        f = self.filler
        if f is None or f.started or f.done:
            return []
        f.started = True
        turn = self.turn_log.get(f.turn_id)
        if turn is not None:
            turn.filler_at = now
        out: list[Decision] = [FillerCounted(FillerResult.PLAYED), ShowFiller(f.turn_id, f.text, "start")]
        for d in self.turns.on_reply_started():
            self._turn_decision(d, now, out)
        return out

    def _filler_finished(self, now: float) -> list[Decision]:
        f = self.filler
        if f is None or f.done:
            return []
        out: list[Decision] = []
        self._stop_filler(out)
        self._after_filler(now, out)
        return out

    def _stop_filler(self, out: list[Decision]) -> None:
        f = self.filler
        if f is None or f.done:
            return
        f.done = True
        if f.started:
            out.append(ShowFiller(f.turn_id, f.text, "end"))

    def _after_filler(self, now: float, out: list[Decision]) -> None:
        """The filler is over: with its reply not begun (and no speech over it awaiting a
        verdict), the agent is thinking again."""
        f = self.filler
        if f is None or not f.done or not f.started or self.paused or self._reply_started(f.turn_id):
            return
        for d in self.turns.on_filler_finished():
            self._turn_decision(d, now, out)

    # ---- internals ----------------------------------------------------------------------

    def _turn_decision(self, d: TurnDecision, now: float, out: list[Decision]) -> None:
        if isinstance(d, StateChange):
            out.append(ShowState(d.state.value))
        elif isinstance(d, SpeechStarted):
            self.turn_log[d.turn_id] = Turn(d.turn_id)
            out.append(SpeechStartedEvent(d.start_ms))
        elif isinstance(d, EndOfTurn):
            turn = self.turn_log.setdefault(d.turn_id, Turn(d.turn_id))
            turn.last_voiced_frame = d.last_voiced_frame
            turn.last_voiced_at = self._last_voiced_at
            turn.endpoint_at = now
            endpoint_s = now - turn.last_voiced_at
            self.fillers.arm(d.turn_id, self._frame)
            out.append(SttFlush(d.turn_id))
            out.append(Observe("endpoint", endpoint_s))
            out.append(TurnEndedEvent(d.turn_id, d.last_voiced_ms, endpoint_s * 1000, d.by))
        elif isinstance(d, CheckTurnEnd):
            out.append(d)
        elif isinstance(d, Overlap):
            out.append(PausePlayout())
            out.append(Observe("barge_in_pause", (d.at_ms - d.start_ms) / 1000))
        elif isinstance(d, OverlapEnded):
            turn = self.turn_log.setdefault(d.turn_id, Turn(d.turn_id))
            turn.last_voiced_frame = d.last_voiced_frame
            turn.last_voiced_at = self._last_voiced_at
            turn.endpoint_at = now
            self.fillers.arm(d.turn_id, self._frame)  # if the speech turns out a real turn
            out.append(SttFlush(d.turn_id))
        elif isinstance(d, IdleTimeout):
            self.turn_log[d.turn_id] = Turn(d.turn_id, sent=True)
            out.append(SendTurn(d.turn_id, ""))
        elif isinstance(d, Resumed):
            if self.filler is not None and self.filler.turn_id == d.turn_id:
                self._stop_filler(out)  # decided, not yet heard
            self._supersede(d.turn_id, out, now)
        elif isinstance(d, BargeIn):
            f = self.filler
            if f is not None and not f.done:
                # cut in on the filler: its reply is dropped as for a resumed turn
                self._stop_filler(out)
                if not self._reply_started(f.turn_id):
                    self._supersede(f.turn_id, out, now)
            for resp in list(self.responses.values()):
                if resp.started_playout and not resp.finished and not resp.cancelled:
                    self._cancel(resp, out, now)
            out.append(ClearPlayout())

    def _supersede(self, turn_id: str, out: list[Decision], now: float) -> None:
        """The caller went on before the reply to `turn_id` was heard: drop that reply; its
        words join the next turn."""
        old = self.turn_log.get(turn_id)
        if old is None:
            return
        old.superseded = True
        if old.text:
            self._carry_text = old.text
        resp = self.responses.get(old.response_id) if old.response_id else None
        if resp is not None:
            self._cancel(resp, out, now)
        elif old.sent:  # asked, no word back yet: reasoning drops it by the turn
            out.append(CancelResponse("", "", turn_id=old.turn_id))

    def _cancel(self, resp: Response, out: list[Decision], now: float) -> None:
        if resp.cancelled or resp.finished:
            return
        resp.cancelled = True
        out.append(CancelResponse(resp.response_id, resp.heard_text()))
        if resp.started_playout:
            resp.finished = True
            out.append(ShowPlayout(resp.response_id, "end"))
            out.append(PlayoutFinishedEvent(resp.response_id, resp.played_frames * FRAME_MS, True))
            for d in self.turns.on_reply_finished():
                self._turn_decision(d, now, out)

    def _carry_out(self, action: CallAction) -> list[Decision]:
        out: list[Decision] = [CarryOut(action)]
        if isinstance(action, HangupCall):
            out.extend(self._end(EndReason.AGENT))
        elif isinstance(action, TransferCall):
            out.extend(self._end(EndReason.TRANSFER))
        elif isinstance(action, SendDigits):
            pass  # the call goes on
        return out

    def _end(self, reason: EndReason) -> list[Decision]:
        if self.ended is not None:
            return []
        self.ended = reason
        return [EndCall(reason)]
