"""One call: the thin async shell around the pure `CallCore`.

It opens the call's role clients (stt, reasoning, tts) on the instances the router assigns,
then runs five loops under one task set: caller events from the media port (VAD on each
frame), stt, reasoning, tts, and paced playout. Each loop feeds events to the core and
carries out the decisions it returns; no rule of the call lives here. The end-of-turn
model's checks run as a task of their own (at most one per call), off the event loop; so
does the synthesis of the agent's fillers into the edge's cache (`filler_cache.py`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace

from voicemesh.audio.frames import rms_dbfs
from voicemesh.audio.vad import SileroModel, SileroVad, VoiceActivity
from voicemesh.mesh.aio import cancel_and_wait
from voicemesh.mesh.events import EventSink
from voicemesh.mesh.metrics import ServiceMetrics
from voicemesh.mesh.tracing import outgoing_metadata
from voicemesh.v1 import events_pb2, reasoning_pb2, router_pb2, stt_pb2, tts_pb2

from . import decisions as d
from .channels import ChannelPool
from .core import CallCore
from .endpointing import CallerAudio, CheckResult, EndpointMetrics, TurnEndModel
from .filler_cache import FillerCache, fill, over_tts
from .playout import PlayoutClock
from .port import (
    CallObserver,
    Dtmf,
    EndReason,
    Frame,
    Hangup,
    Hold,
    MarkPlayed,
    MediaPort,
    QualityReport,
)
from .profile import call_settings
from .publish import publish_latency, publish_quality
from .roles import PCM16, ReasoningClient, RoleFailed, SttClient, TtsClient, assign, to_action

log = logging.getLogger(__name__)
PLAYOUT_QUEUE_FRAMES = 1500  # 30 s of agent audio
_END_MARK = "end:"
_CLAUSE_MARK = "clause:"  # clause:<response id>:<index>
_FAILURES = {
    "no_capacity": EndReason.NO_CAPACITY,
    "unavailable": EndReason.UNAVAILABLE,  # the router could not place the call (roles.router_failure)
    "unknown_agent": EndReason.UNKNOWN_AGENT,
}


@dataclass
class EdgeDeps:
    """What every call of this edge instance shares."""

    metrics: ServiceMetrics
    events: EventSink
    tracer: trace.Tracer
    router: Any  # SessionRouterStub
    channels: ChannelPool
    vad_model: SileroModel
    region: str = "local"
    clock: Callable[[], float] = time.monotonic
    # No audio from the caller's side for this long ends the call (EndReason.NO_MEDIA).
    media_timeout_s: float = 10.0
    # How often a live call renews its reservations with the router (below its lease).
    lease_renew_s: float = 30.0
    # The end-of-turn model (None: not loaded, turns end on silence alone) and the counts of
    # endpoints by what decided them.
    turn_model: TurnEndModel | None = None
    endpoints: EndpointMetrics | None = None
    # The process's filler audio (None: no fillers at this edge, whatever the agent says).
    fillers: FillerCache | None = None


@dataclass(frozen=True)
class _Roles:
    stt: SttClient
    reasoning: ReasoningClient
    tts: TtsClient

    async def aclose(self) -> None:
        for role in (self.stt, self.reasoning, self.tts):
            await role.aclose()


_END = object()


class CallSession:
    def __init__(self, port: MediaPort, deps: EdgeDeps) -> None:
        self.port = port
        self.deps = deps
        self.session_id = uuid.uuid4().hex
        self.core = CallCore()
        self._observer: CallObserver | None = port.observer()
        self._vad = SileroVad(deps.vad_model)
        self._activity = VoiceActivity()
        self._frames = 0
        self._events_in = 0  # anything the port delivered: frames, marks, DTMF, hold
        self._playout: asyncio.Queue[tuple[str, object]] = asyncio.Queue(PLAYOUT_QUEUE_FRAMES)
        self._playing = asyncio.Event()  # cleared while the agent is paused for a barge-in
        self._playing.set()
        self._over = asyncio.Event()
        self._end_reason = EndReason.CALLER
        self._end_message = ""
        self._agent = ""
        self._roles: _Roles | None = None
        self._call_ctx: otel_context.Context | None = None
        self._addresses: dict[str, str] = {}
        # The caller's last 8 s, for the end-of-turn model (kept only when it is on).
        self._audio: CallerAudio | None = None
        self._check: asyncio.Task[None] | None = None
        self._voice = ""
        self._prepare: asyncio.Task[None] | None = None  # the agent's fillers into the cache

    # ---- lifecycle -------------------------------------------------------------------

    async def run(self) -> None:
        deps = self.deps
        started = deps.clock()
        deps.metrics.call_started(self.port.transport_label)
        deps.metrics.session_started()
        assigned = False
        span = deps.tracer.start_span("call", attributes={"voicemesh.session_id": self.session_id})
        ctx = trace.set_span_in_context(span)
        self._call_ctx = ctx
        token = otel_context.attach(ctx)
        tasks: list[asyncio.Task[None]] = []
        try:
            metadata = outgoing_metadata(ctx)
            addresses = await assign(deps.router, self.session_id, deps.region, metadata)
            assigned = True
            self._addresses = addresses
            self._roles = await self._open_roles(addresses, metadata)
            info = self.port.info
            deps.events.emit(
                self.session_id,
                call_started=events_pb2.CallStarted(
                    transport=info.transport,
                    agent=self._agent,
                    caller=info.caller,
                    callee=info.callee,
                    carrier_call_id=info.carrier_call_id,
                ),
            )
            if self._observer is not None:
                await self._observer.ready(self.session_id, self._agent)
                await self._observer.state(self.core.state)
            for name, coro in (
                ("inbound", self._inbound_loop()),
                ("media", self._media_watchdog()),
                ("stt", self._stt_loop()),
                ("reasoning", self._reasoning_loop()),
                ("tts", self._tts_loop()),
                ("playout", self._playout_loop()),
                ("lease", self._lease_loop(metadata)),
            ):
                tasks.append(asyncio.create_task(self._guard(name, coro), name=f"call-{name}"))
            await self._over.wait()
        except RoleFailed as exc:
            self._end_reason = _FAILURES.get(exc.code, EndReason.ERROR_REASONING)
            self._end_message = str(exc)
            deps.metrics.error(exc.code)
            log.warning("call failed", extra={"session": self.session_id, "code": exc.code, "error": str(exc)})
            await self._show_error(exc.code, str(exc))
        finally:
            await cancel_and_wait(*tasks, *(t for t in (self._check, self._prepare) if t is not None))
            if self._roles is not None:
                await self._roles.aclose()
            if assigned:
                try:
                    await deps.router.Release(
                        router_pb2.ReleaseRequest(session_id=self.session_id),
                        timeout=2.0,
                        metadata=outgoing_metadata(ctx),
                    )
                except grpc.aio.AioRpcError:
                    deps.metrics.error("router_release")
            duration_ms = round((deps.clock() - started) * 1000)
            quality = self.port.quality()
            if quality is not None:
                label = self.port.transport_label
                publish_quality(deps.events, deps.metrics, label, self.session_id, quality, final=True)
            deps.events.emit(
                self.session_id,
                call_ended=events_pb2.CallEnded(
                    reason=self._end_reason.value, duration_ms=duration_ms, turns=len(self.core.turn_log)
                ),
            )
            deps.metrics.session_ended("failed" if self._end_reason.failed else "ok")
            await self.port.close(self._end_reason, self._end_message)
            span.end()
            otel_context.detach(token)

    async def _open_roles(self, addresses: dict[str, str], metadata: list[tuple[str, str]]) -> _Roles:
        """Start the reasoning session (it names the agent's voice, language and turn
        settings), then open stt and tts configured for it."""
        deps = self.deps
        info = self.port.info
        reasoning = ReasoningClient.open(
            deps.channels,
            deps.metrics,
            addresses["reasoning"],
            metadata,
            reasoning_pb2.SessionStart(
                session_id=self.session_id,
                agent=info.agent,
                metadata={
                    "transport": info.transport,
                    **info.metadata,
                    # The number called picks the agent when the call names none.
                    **({"to": info.callee} if info.callee else {}),
                },
            ),
        )
        try:
            profile = await reasoning.ready()
        except RoleFailed:
            await reasoning.aclose()
            raise
        self._agent = profile.name
        settings = call_settings(profile)
        turns = settings.turns
        if turns.smart_turn is not None and deps.turn_model is None:
            turns = dataclasses.replace(turns, smart_turn=None)  # no model here: silence alone
        if turns.smart_turn is not None:
            self._audio = CallerAudio()
        filler = settings.filler if deps.fillers is not None else None
        self.core.configure(turns, settings.interruptions, settings.echo, filler)
        self._voice = profile.voice
        stt = SttClient.open(
            deps.channels,
            deps.metrics,
            addresses["stt"],
            metadata,
            stt_pb2.RecognitionConfig(
                session_id=self.session_id,
                format=PCM16,
                language=profile.language or "en",
                endpointing=stt_pb2.ENDPOINTING_EXTERNAL,
                # the edge ends turns; stt times its pause decodes to be ready by then
                endpoint_silence_ms=profile.endpoint_silence_ms,
                partials=True,
                client_vad=True,  # frames carry the edge's VAD result: one decision per frame
            ),
        )
        tts = TtsClient.open(
            deps.channels,
            deps.metrics,
            addresses["tts"],
            metadata,
            tts_pb2.SynthesisConfig(session_id=self.session_id, voice=profile.voice, format=PCM16),
        )
        if filler is not None and deps.fillers is not None:

            def open_tts(voice: str) -> TtsClient:  # a stream of its own: replies never wait on it
                config = tts_pb2.SynthesisConfig(session_id=self.session_id, voice=voice, format=PCM16)
                return TtsClient.open(deps.channels, deps.metrics, addresses["tts"], metadata, config)

            self._prepare = asyncio.create_task(
                fill(deps.fillers, profile.voice, filler.phrases, over_tts(open_tts), self.core.on_filler_ready),
                name="call-fillers",
            )
        return _Roles(stt, reasoning, tts)

    def _play_filler(self, x: d.PlayFiller) -> list[d.Decision]:
        """Queue the filler's audio ahead of the reply still to come (the core decides one
        only while no reply audio is here). Without its audio (it cannot be: the cache never
        lets go of a phrase) or room in the queue, it ends unplayed."""
        cache = self.deps.fillers
        audio = cache.get(self._voice, x.text) if cache is not None else None
        if audio is None or PLAYOUT_QUEUE_FRAMES - self._playout.qsize() <= len(audio):
            self.deps.metrics.error("filler_unplayable")
            return self.core.on_playout_done(x.filler_id, self.deps.clock())
        for pcm in audio:
            self._playout.put_nowait((x.filler_id, pcm))
        self._playout.put_nowait((x.filler_id, _END))
        return []

    @property
    def _r(self) -> _Roles:
        assert self._roles is not None, "roles are opened before any loop starts"
        return self._roles

    def end(self, reason: EndReason, message: str = "") -> None:
        if not self._over.is_set():
            self._end_reason = reason
            self._end_message = message
            self._over.set()

    async def _lease_loop(self, metadata: list[tuple[str, str]]) -> None:
        """Renew the call's reservations while it lives: an Assign naming the same session
        only pushes its leases on, so a crashed edge's calls free their slots within one
        lease instead of holding them for hours. A failed renewal is counted and tried
        again; it never ends the call."""
        deps = self.deps
        while not self._over.is_set():
            await asyncio.sleep(deps.lease_renew_s)
            try:
                addresses = await assign(deps.router, self.session_id, deps.region, metadata)
            except RoleFailed as exc:
                deps.metrics.error("router_renew")
                log.warning("lease renewal failed", extra={"session": self.session_id, "error": str(exc)})
                continue
            moved = sorted(s for s, a in addresses.items() if self._addresses.get(s) not in (None, a))
            if moved:  # an instance died: the router reserved another (takeover is issue 12's)
                log.warning("reservation moved", extra={"session": self.session_id, "services": moved})
                self._addresses = addresses
        await asyncio.Event().wait()  # the call is over: wait to be cancelled with the others

    async def _guard(self, name: str, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
            if name != "inbound" and not self._over.is_set():
                # the peer ended its stream while the call goes on (draining, restarted)
                self.deps.metrics.error(f"{name}_ended")
                await self._fail(name, f"{name}_failed", f"{name} ended the stream mid-call")
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as exc:
            self.deps.metrics.error(f"{name}_stream")
            log.warning(
                "stream failed", extra={"session": self.session_id, "stream": name, "code": exc.code().name}
            )
            await self._fail(name, f"{name}_failed", f"{name}: {exc.code().name}: {exc.details()}")
        except Exception:
            self.deps.metrics.error(f"{name}_bug")
            log.exception("call task crashed", extra={"session": self.session_id, "task": name})
            await self._show_error("internal", f"{name} failed")
            self.end(EndReason.ERROR_INTERNAL, f"{name} failed")

    async def _fail(self, role: str, code: str, message: str) -> None:
        await self._show_error(code, message)
        for decision in self.core.on_peer_failed(role):
            if isinstance(decision, d.EndCall):
                self.end(decision.reason, message)

    async def _show_error(self, code: str, message: str) -> None:
        if self._observer is not None:
            await self._observer.error(code, message)

    # ---- carrying out decisions ------------------------------------------------------

    async def _act(self, decisions: list[d.Decision]) -> None:
        for decision in decisions:
            await self._do(decision)

    async def _do(self, x: d.Decision) -> None:
        sid = self.session_id
        events = self.deps.events
        obs = self._observer
        if isinstance(x, d.Observe):
            self.deps.metrics.observe_stage(x.stage, x.seconds)
        elif isinstance(x, d.SttFlush):
            self._r.stt.flush(x.turn_id)
        elif isinstance(x, d.CheckTurnEnd):
            self._check_turn_end(x)
        elif isinstance(x, d.SendTurn):
            self._r.reasoning.turn(x.turn_id, x.text, x.confidence)
        elif isinstance(x, d.SendDtmf):
            self._r.reasoning.dtmf(x.turn_id, x.digits)
        elif isinstance(x, d.CancelResponse):
            if x.response_id:
                self._r.tts.cancel(x.response_id)
            self._r.reasoning.cancel(x.response_id, x.heard_text, x.turn_id)
        elif isinstance(x, d.Synthesize):
            self._r.tts.text(x.response_id, x.text)
        elif isinstance(x, d.EndSynthesis):
            self._r.tts.end(x.response_id)
        elif isinstance(x, d.PlayFiller):
            await self._act(self._play_filler(x))
        elif isinstance(x, d.FillerCounted):
            if self.deps.fillers is not None:
                self.deps.fillers.metrics.count(x.result)
        elif isinstance(x, d.ClearPlayout):  # the core decides it only for a barge-in
            self.deps.metrics.barge_in(self.port.transport_label)
            while not self._playout.empty():
                self._playout.get_nowait()
            self._playing.set()
            await self.port.clear()
        elif isinstance(x, d.PausePlayout):
            self._playing.clear()
        elif isinstance(x, d.ResumePlayout):
            self._playing.set()
        elif isinstance(x, d.InterruptionJudged):
            self.deps.metrics.interruption(x.verdict.value)
        elif isinstance(x, d.CarryOut):
            await self._carry_out(x.action)
        elif isinstance(x, d.EndCall):
            self.end(x.reason)
        elif isinstance(x, d.SpeechStartedEvent):
            events.emit(sid, speech_started=events_pb2.SpeechStarted(audio_ms=x.audio_ms))
        elif isinstance(x, d.TurnEndedEvent):
            if self.deps.endpoints is not None:
                self.deps.endpoints.endpoint(x.by)
            events.emit(
                sid,
                turn_ended=events_pb2.TurnEnded(
                    turn_id=x.turn_id, last_voiced_ms=x.last_voiced_ms, endpoint_ms=round(x.endpoint_ms)
                ),
            )
        elif isinstance(x, d.TurnLatencyEvent):
            publish_latency(events, self.deps.tracer, sid, self._call_ctx, x.timing)
        elif isinstance(x, d.PlayoutFinishedEvent):
            events.emit(
                sid,
                playout_finished=events_pb2.PlayoutFinished(
                    response_id=x.response_id, played_ms=x.played_ms, interrupted=x.interrupted
                ),
            )
        elif isinstance(x, d.DtmfEvent):
            events.emit(sid, dtmf_received=events_pb2.DtmfReceived(digits=x.digits))
        elif obs is None:
            return
        elif isinstance(x, d.ShowState):
            await obs.state(x.state)
        elif isinstance(x, d.ShowTranscript):
            await obs.transcript(x.turn_id, x.text, x.final)
        elif isinstance(x, d.ShowResponse):
            await obs.response(x.response_id, x.turn_id, x.text, x.final)
        elif isinstance(x, d.ShowPlayout):
            await obs.playout(x.response_id, x.name)
        elif isinstance(x, d.ShowFiller):
            await obs.filler(x.turn_id, x.text, x.name)
        elif isinstance(x, d.ShowTiming):
            await obs.timing(x.timing)

    async def _carry_out(self, action: d.CallAction) -> None:
        if isinstance(action, d.TransferCall):
            done = await self.port.transfer(action.target)
            self.deps.events.emit(
                self.session_id,
                call_transferred=events_pb2.CallTransferred(
                    target=action.target, method=done.method, result=done.result
                ),
            )
        elif isinstance(action, d.SendDigits):
            await self.port.send_dtmf(action.digits)
        # a hangup is the EndCall that follows it: the port hangs up when the call closes

    def _check_turn_end(self, x: d.CheckTurnEnd) -> None:
        """Ask the end-of-turn model about the pause in progress, unless a check of this
        call is still running (then the silence decides: counted as skipped)."""
        model, audio = self.deps.turn_model, self._audio
        if model is None or audio is None:
            return
        if self._check is not None and not self._check.done():
            model.endpoints.check(CheckResult.SKIPPED)
            return
        pcm = audio.window(x.start_frame, x.at_frame)
        self._check = asyncio.create_task(self._run_check(model, x, pcm), name="call-turn-check")

    async def _run_check(self, model: TurnEndModel, x: d.CheckTurnEnd, pcm: bytes) -> None:
        probability = await model.check(pcm)
        if probability is None:
            return
        try:
            now = self.deps.clock()
            await self._act(self.core.on_turn_complete_hint(x.turn_id, x.last_voiced_frame, probability, now))
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must not go unseen, nor end the call silently
            self.deps.metrics.error("turn_check_bug")
            log.exception("call task crashed", extra={"session": self.session_id, "task": "turn_check"})

    # ---- the loops ---------------------------------------------------------------------

    async def _inbound_loop(self) -> None:
        clock = self.deps.clock
        transport = self.port.transport_label
        while True:
            event = await self.port.receive()
            self._events_in += 1  # what the media watchdog looks at (no timer per frame)
            if isinstance(event, Frame):
                began = time.perf_counter()
                prob = self._vad.process(event.pcm)
                voiced = self._activity.update(prob)
                index = self._frames
                self._frames += 1
                if self._audio is not None:
                    self._audio.push(event.pcm)
                decisions = self.core.on_frame(index, voiced, clock(), rms_dbfs(event.pcm))
                if decisions and isinstance(decisions[0], d.ForwardAudio):
                    self._r.stt.send_frame(event.pcm, 0.0 if decisions[0].muted else prob)
                    decisions = decisions[1:]
                await self._act(decisions)
                self.deps.metrics.observe_frame(transport, time.perf_counter() - began)
            elif isinstance(event, MarkPlayed):
                if event.name.startswith(_END_MARK):
                    await self._act(self.core.on_playout_done(event.name[len(_END_MARK) :], clock()))
                elif event.name.startswith(_CLAUSE_MARK):
                    rid, _, index = event.name[len(_CLAUSE_MARK) :].rpartition(":")
                    if index.isdigit():
                        self.core.on_clause_heard(rid, int(index))
            elif isinstance(event, Dtmf):
                await self._act(self.core.on_dtmf(event.digits, clock()))
            elif isinstance(event, Hold):
                await self._act(self.core.on_hold(event.on))
            elif isinstance(event, QualityReport):
                publish_quality(
                    self.deps.events, self.deps.metrics, transport, self.session_id, event.quality, final=False
                )
            elif isinstance(event, Hangup):
                await self._act(self.core.on_hangup())
                return

    async def _media_watchdog(self) -> None:
        """End the call when nothing came from the caller's side for the media timeout,
        checked a few times per timeout rather than by a timer around every frame."""
        clock, timeout_s = self.deps.clock, self.deps.media_timeout_s
        seen, since = self._events_in, clock()
        while True:
            await asyncio.sleep(timeout_s / 4)
            now = clock()
            if self._events_in != seen:
                seen, since = self._events_in, now
            elif now - since >= timeout_s:
                await self._act(self.core.on_media_timeout())  # nothing while held
                since = now

    async def _stt_loop(self) -> None:
        clock = self.deps.clock
        async for resp in self._r.stt.responses():
            if resp.WhichOneof("kind") != "transcript":
                continue
            tr = resp.transcript
            if not tr.final:
                await self._act(self.core.on_partial(tr.text, clock()))
            else:
                await self._act(self.core.on_final(tr.flush_id, tr.text, tr.confidence, clock()))

    async def _reasoning_loop(self) -> None:
        clock = self.deps.clock
        async for msg in self._r.reasoning.responses():
            kind = msg.WhichOneof("kind")
            if kind == "delta":
                dl = msg.delta
                await self._act(self.core.on_delta(dl.response_id, dl.in_reply_to, dl.text, clock()))
            elif kind == "end":
                end = msg.end
                await self._act(self.core.on_response_end(end.response_id, end.in_reply_to, end.text, clock()))
            elif kind == "action":
                action = to_action(msg.action)
                if action is None:
                    self.deps.metrics.error("unknown_action")
                    continue
                await self._act(self.core.on_action(msg.action.response_id, action))

    async def _tts_loop(self) -> None:
        clock = self.deps.clock
        async for msg in self._r.tts.responses():
            kind = msg.WhichOneof("kind")
            if kind == "audio":
                rid = msg.audio.response_id
                if not self.core.accepts_audio(rid):
                    continue
                await self._act(self.core.on_tts_audio(rid, clock()))
                await self._playout.put((rid, msg.audio.frame.pcm))
            elif kind == "mark":
                mark = msg.mark
                if not self.core.accepts_audio(mark.response_id):
                    continue
                if mark.name == "clause":
                    self.core.on_tts_clause(mark.response_id, mark.audio_offset_ms, mark.text)
                elif mark.name == "end":
                    await self._playout.put((mark.response_id, _END))

    async def _playout_loop(self) -> None:
        pacing = PlayoutClock()
        now_fn = self.deps.clock
        core = self.core
        while True:
            response_id, item = await self._playout.get()
            if not core.accepts_audio(response_id):
                continue
            if item is _END:
                if await self.port.mark(_END_MARK + response_id):
                    await self._act(core.on_playout_done(response_id, now_fn()))
                continue
            while True:  # paced; held while speech over the agent is judged
                await self._playing.wait()
                delay = pacing.due(now_fn()) - now_fn()
                if delay > 0:
                    await asyncio.sleep(delay)
                if self._playing.is_set():
                    break
            if not core.accepts_audio(response_id):
                continue
            await self._act(core.on_playout_started(response_id, now_fn()))
            for clause in core.clause_marks_due(response_id):
                if await self.port.mark(f"{_CLAUSE_MARK}{response_id}:{clause}"):
                    core.on_clause_heard(response_id, clause)
            await self.port.play(item)  # type: ignore[arg-type]
            pacing.sent()
            core.on_frame_played(response_id, rms_dbfs(item))  # type: ignore[arg-type]
