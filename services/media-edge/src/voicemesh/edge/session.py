"""One call through the mesh: caller audio -> VAD and turn-taking -> stt -> reasoning -> tts
-> paced playout back to the caller. Transport-agnostic (it only sees a CallChannel)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace

from voicemesh.audio.frames import FRAME_SAMPLES
from voicemesh.audio.vad import SileroModel, SileroVad, VoiceActivity
from voicemesh.mesh.aio import cancel_and_wait
from voicemesh.mesh.events import EventSink
from voicemesh.mesh.metrics import ServiceMetrics
from voicemesh.mesh.tracing import outgoing_metadata
from voicemesh.v1 import (
    audio_pb2,
    events_pb2,
    reasoning_pb2,
    router_pb2,
    stt_pb2,
    tts_pb2,
)

from .channels import ChannelPool
from .ledger import Response, Turn, turn_timing
from .peers import CallFailed, Peers, assign, open_peers
from .playout import PlayoutClock
from .transport import CallChannel, CallRequest, Hangup, TurnTiming
from .turns import (
    BargeIn,
    Decision,
    EndOfTurn,
    IdleTimeout,
    Resumed,
    SpeechStarted,
    StateChange,
    TurnConfig,
    TurnTaker,
)

log = logging.getLogger(__name__)
PLAYOUT_QUEUE_FRAMES = 1500  # 30 s of agent audio


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


_END = object()


class CallSession:
    def __init__(self, channel: CallChannel, request: CallRequest, deps: EdgeDeps) -> None:
        self.channel = channel
        self.request = request
        self.deps = deps
        self.session_id = uuid.uuid4().hex
        self.turns = TurnTaker(TurnConfig())
        self._vad = SileroVad(deps.vad_model)
        self._activity = VoiceActivity()
        self._turn_log: dict[str, Turn] = {}
        self._responses: dict[str, Response] = {}
        self._carry_text = ""
        self._last_voiced_at = 0.0
        self._playout: asyncio.Queue[tuple[str, object]] = asyncio.Queue(PLAYOUT_QUEUE_FRAMES)
        self._over = asyncio.Event()
        self._end_reason = "caller"
        self._agent = ""
        self._peers: Peers | None = None
        self._call_ctx: otel_context.Context | None = None

    # ---- lifecycle -------------------------------------------------------------------

    async def run(self) -> None:
        deps = self.deps
        started = deps.clock()
        deps.metrics.session_started()
        outcome = "ok"
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
            self._peers = await open_peers(
                deps.channels, deps.metrics, addresses, metadata, self.session_id, self.request
            )
            profile = self._peers.profile
            self._agent = profile.name
            self.turns.configure(
                TurnConfig(
                    endpoint_silence_ms=profile.endpoint_silence_ms or 500,
                    allow_barge_in=profile.allow_barge_in,
                    idle_timeout_ms=profile.idle_timeout_ms,
                )
            )
            deps.events.emit(
                self.session_id,
                call_started=events_pb2.CallStarted(transport=self.request.transport, agent=self._agent),
            )
            await self.channel.send_ready(self.session_id, self._agent)
            await self.channel.send_state(self.turns.state.value)
            for name, coro in (
                ("inbound", self._inbound_loop()),
                ("stt", self._stt_loop()),
                ("reasoning", self._reasoning_loop()),
                ("tts", self._tts_loop()),
                ("playout", self._playout_loop()),
            ):
                tasks.append(asyncio.create_task(self._guard(name, coro), name=f"call-{name}"))
            await self._over.wait()
        except CallFailed as exc:
            outcome = "failed"
            self._end_reason = exc.code
            deps.metrics.error(exc.code)
            log.warning(
                "call failed", extra={"session": self.session_id, "code": exc.code, "error": str(exc)}
            )
            await self.channel.send_error(exc.code, str(exc))
        finally:
            await cancel_and_wait(*tasks)
            if self._peers is not None:
                await self._peers.aclose()
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
            deps.events.emit(
                self.session_id,
                call_ended=events_pb2.CallEnded(
                    reason=self._end_reason, duration_ms=duration_ms, turns=len(self._turn_log)
                ),
            )
            if self._over.is_set() and outcome == "ok" and self._end_reason.startswith("error"):
                outcome = "failed"
            deps.metrics.session_ended(outcome)
            await self.channel.close(self._end_reason)
            span.end()
            otel_context.detach(token)

    @property
    def _p(self) -> Peers:
        assert self._peers is not None, "peers are opened before any loop starts"
        return self._peers

    def end(self, reason: str) -> None:
        if not self._over.is_set():
            self._end_reason = reason
            self._over.set()

    async def _guard(self, name: str, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
            if name != "inbound" and not self._over.is_set():
                # the peer ended its stream while the call goes on (draining, restarted)
                self.deps.metrics.error(f"{name}_ended")
                await self.channel.send_error(f"{name}_failed", f"{name} ended the stream mid-call")
                self.end(f"error:{name}")
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as exc:
            self.deps.metrics.error(f"{name}_stream")
            log.warning(
                "stream failed", extra={"session": self.session_id, "stream": name, "code": exc.code().name}
            )
            await self.channel.send_error(f"{name}_failed", f"{name}: {exc.code().name}: {exc.details()}")
            self.end(f"error:{name}")
        except Exception:
            self.deps.metrics.error(f"{name}_bug")
            log.exception("call task crashed", extra={"session": self.session_id, "task": name})
            await self.channel.send_error("internal", f"{name} failed")
            self.end(f"error:{name}")

    # ---- caller audio -----------------------------------------------------------------

    async def _inbound_loop(self) -> None:
        while True:
            item = await self.channel.receive()
            if isinstance(item, Hangup):
                self.end("caller")
                return
            now = self.deps.clock()
            voiced = self._activity.update(self._vad.process(item.pcm))
            if voiced:
                self._last_voiced_at = now
            self._p.stt.send_live(
                stt_pb2.RecognizeRequest(
                    audio=audio_pb2.AudioFrame(
                        sequence=item.index, timestamp=item.index * FRAME_SAMPLES, pcm=item.pcm
                    )
                )
            )
            for decision in self.turns.on_frame(item.index, voiced):
                await self._act(decision, now)

    async def _act(self, decision: Decision, now: float) -> None:
        sid = self.session_id
        if isinstance(decision, StateChange):
            await self.channel.send_state(decision.state.value)
        elif isinstance(decision, SpeechStarted):
            self._turn_log[decision.turn_id] = Turn(decision.turn_id)
            self.deps.events.emit(sid, speech_started=events_pb2.SpeechStarted(audio_ms=decision.start_ms))
        elif isinstance(decision, EndOfTurn):
            turn = self._turn_log.setdefault(decision.turn_id, Turn(decision.turn_id))
            turn.last_voiced_frame = decision.last_voiced_frame
            turn.last_voiced_at = self._last_voiced_at
            turn.endpoint_at = now
            self._p.stt.send_live(stt_pb2.RecognizeRequest(flush=stt_pb2.Flush(flush_id=decision.turn_id)))
            endpoint_ms = (now - turn.last_voiced_at) * 1000
            self.deps.metrics.observe_stage("endpoint", endpoint_ms / 1000)
            self.deps.events.emit(
                sid,
                turn_ended=events_pb2.TurnEnded(
                    turn_id=decision.turn_id,
                    last_voiced_ms=decision.last_voiced_ms,
                    endpoint_ms=round(endpoint_ms),
                ),
            )
        elif isinstance(decision, IdleTimeout):
            # an empty turn: the agent decides what silence means (re-ask, then give up)
            self._turn_log[decision.turn_id] = Turn(decision.turn_id)
            await self._p.reasoning.send(
                reasoning_pb2.ConverseRequest(turn=reasoning_pb2.UserTurn(turn_id=decision.turn_id, text=""))
            )
        elif isinstance(decision, Resumed):
            old = self._turn_log.get(decision.turn_id)
            if old is not None:
                old.superseded = True
                if old.text:
                    self._carry_text = old.text
                if old.response_id:
                    await self._cancel_response(old.response_id)
        elif isinstance(decision, BargeIn):
            for resp in self._responses.values():
                if resp.started_playout and not resp.finished and not resp.cancelled:
                    await self._cancel_response(resp.response_id)
            await self.channel.clear()

    async def _cancel_response(self, response_id: str) -> None:
        resp = self._responses.get(response_id)
        if resp is None or resp.cancelled or resp.finished:
            return
        resp.cancelled = True
        self._p.tts.send_control(
            tts_pb2.SynthesizeRequest(cancel=tts_pb2.CancelSynthesis(response_id=response_id))
        )
        self._p.reasoning.send_control(
            reasoning_pb2.ConverseRequest(
                cancel=reasoning_pb2.CancelResponse(response_id=response_id, heard_text=resp.heard_text())
            )
        )
        if resp.started_playout:
            resp.finished = True
            await self.channel.send_mark(response_id, "end")
            self.deps.events.emit(
                self.session_id,
                playout_finished=events_pb2.PlayoutFinished(
                    response_id=response_id, played_ms=resp.played_frames * 20, interrupted=True
                ),
            )
            for decision in self.turns.on_reply_finished():
                await self._act(decision, self.deps.clock())

    # ---- stt -> reasoning ---------------------------------------------------------------

    async def _stt_loop(self) -> None:
        async for resp in self._p.stt.responses():
            if resp.WhichOneof("kind") != "transcript":
                continue
            tr = resp.transcript
            if not tr.final:
                await self.channel.send_transcript(self.turns.turn_id, tr.text, False)
                continue
            now = self.deps.clock()
            turn = self._turn_log.get(tr.flush_id)
            if turn is None:  # a final the service ended by itself: not ours to answer
                continue
            turn.final_at = now
            text = " ".join(t for t in (self._carry_text, tr.text.strip()) if t)
            if turn.superseded:
                self._carry_text = text
                continue
            self._carry_text = ""
            self.deps.metrics.observe_stage("stt_final", now - turn.endpoint_at)
            if not text:
                for decision in self.turns.on_nothing_to_say():
                    await self._act(decision, now)
                continue
            turn.text = text
            await self.channel.send_transcript(turn.turn_id, text, True)
            await self._p.reasoning.send(
                reasoning_pb2.ConverseRequest(
                    turn=reasoning_pb2.UserTurn(turn_id=turn.turn_id, text=text, confidence=tr.confidence)
                )
            )

    # ---- reasoning -> tts ---------------------------------------------------------------

    async def _reasoning_loop(self) -> None:
        async for msg in self._p.reasoning.responses():
            kind = msg.WhichOneof("kind")
            now = self.deps.clock()
            if kind == "delta":
                d = msg.delta
                resp = self._responses.get(d.response_id)
                if resp is None:
                    resp = Response(d.response_id, d.in_reply_to, first_token_at=now)
                    self._responses[d.response_id] = resp
                    turn = self._turn_log.get(d.in_reply_to)
                    if turn is not None:
                        turn.response_id = d.response_id
                        if turn.superseded:
                            await self._cancel_response(d.response_id)
                        elif turn.final_at:
                            self.deps.metrics.observe_stage("first_token", now - turn.final_at)
                if resp.cancelled:
                    continue
                resp.text += d.text
                await self._p.tts.send(
                    tts_pb2.SynthesizeRequest(text=tts_pb2.TextDelta(response_id=d.response_id, text=d.text))
                )
                await self.channel.send_response(d.response_id, resp.turn_id, d.text, False)
            elif kind == "end":
                resp = self._responses.get(msg.end.response_id)
                if resp is None or resp.cancelled:
                    continue
                resp.text = msg.end.text or resp.text
                await self._p.tts.send(
                    tts_pb2.SynthesizeRequest(end=tts_pb2.EndOfText(response_id=resp.response_id))
                )
                await self.channel.send_response(resp.response_id, resp.turn_id, resp.text, True)
            elif kind == "action":
                resp = self._responses.get(msg.action.response_id)
                if resp is None or resp.finished:
                    self._do_action(msg.action)
                else:
                    resp.action = msg.action

    def _do_action(self, action: reasoning_pb2.Action) -> None:
        if action.WhichOneof("kind") == "hangup":
            self.end("agent")

    # ---- tts -> playout -----------------------------------------------------------------

    async def _tts_loop(self) -> None:
        async for msg in self._p.tts.responses():
            kind = msg.WhichOneof("kind")
            if kind == "audio":
                resp = self._responses.get(msg.audio.response_id)
                if resp is None or resp.cancelled:
                    continue
                if not resp.first_audio_at:
                    resp.first_audio_at = self.deps.clock()
                    self.deps.metrics.observe_stage(
                        "tts_first_audio", resp.first_audio_at - resp.first_token_at
                    )
                await self._playout.put((resp.response_id, msg.audio.frame.pcm))
            elif kind == "mark":
                mark = msg.mark
                resp = self._responses.get(mark.response_id)
                if resp is None or resp.cancelled:
                    continue
                if mark.name == "clause":
                    resp.clauses.append((mark.audio_offset_ms, mark.text))
                elif mark.name == "end":
                    await self._playout.put((resp.response_id, _END))

    async def _playout_loop(self) -> None:
        clock = PlayoutClock()
        now_fn = self.deps.clock
        while True:
            response_id, item = await self._playout.get()
            resp = self._responses.get(response_id)
            if resp is None or resp.cancelled or resp.finished:
                continue
            if item is _END:
                await self._finish_playout(resp)
                continue
            due = clock.due(now_fn())
            delay = due - now_fn()
            if delay > 0:
                await asyncio.sleep(delay)
            if resp.cancelled:
                continue
            if not resp.started_playout:
                await self._start_playout(resp)
            await self.channel.send_audio(item)  # type: ignore[arg-type]
            clock.sent()
            resp.played_frames += 1

    async def _start_playout(self, resp: Response) -> None:
        resp.started_playout = True
        now = self.deps.clock()
        await self.channel.send_mark(resp.response_id, "start")
        for decision in self.turns.on_reply_started():
            await self._act(decision, now)
        turn = self._turn_log.get(resp.turn_id)
        if turn is None or not turn.endpoint_at:
            return
        timing = turn_timing(turn, resp, now)
        self._trace_turn(timing)
        self.deps.metrics.observe_stage("voice_to_voice", timing.edge_voice_to_voice_ms / 1000)
        self.deps.events.emit(
            self.session_id,
            turn_latency=events_pb2.TurnLatency(
                turn_id=turn.turn_id,
                endpoint_ms=round(timing.endpoint_ms),
                stt_final_ms=round(timing.stt_final_ms),
                first_token_ms=round(timing.first_token_ms),
                tts_first_audio_ms=round(timing.tts_first_audio_ms),
                voice_to_voice_ms=round(timing.edge_voice_to_voice_ms),
            ),
        )
        await self.channel.send_timing(timing)

    def _trace_turn(self, timing: TurnTiming) -> None:
        """A span per caller turn (last voiced frame -> first reply frame), after the fact:
        its stages as attributes, under the call's span."""
        end_ns = time.time_ns()
        span = self.deps.tracer.start_span(
            "turn",
            context=self._call_ctx,
            start_time=end_ns - int(timing.edge_voice_to_voice_ms * 1e6),
            attributes={
                "voicemesh.turn_id": timing.turn_id,
                "voicemesh.endpoint_ms": timing.endpoint_ms,
                "voicemesh.stt_final_ms": timing.stt_final_ms,
                "voicemesh.first_token_ms": timing.first_token_ms,
                "voicemesh.tts_first_audio_ms": timing.tts_first_audio_ms,
                "voicemesh.voice_to_voice_ms": timing.edge_voice_to_voice_ms,
            },
        )
        span.end(end_time=end_ns)

    async def _finish_playout(self, resp: Response) -> None:
        if not resp.started_playout:
            await self._start_playout(resp)
        resp.finished = True
        await self.channel.send_mark(resp.response_id, "end")
        self.deps.events.emit(
            self.session_id,
            playout_finished=events_pb2.PlayoutFinished(
                response_id=resp.response_id, played_ms=resp.played_frames * 20, interrupted=False
            ),
        )
        for decision in self.turns.on_reply_finished():
            await self._act(decision, self.deps.clock())
        if resp.action is not None:
            self._do_action(resp.action)
