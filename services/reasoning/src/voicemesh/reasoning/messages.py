"""Backend items -> ConverseResponse messages."""

from __future__ import annotations

from voicemesh.agent import Agent
from voicemesh.v1 import reasoning_pb2

from .backend import AgentAction, ToolCall


def ready(agent: Agent) -> reasoning_pb2.SessionReady:
    turn = agent.turn
    return reasoning_pb2.SessionReady(
        agent=reasoning_pb2.AgentProfile(
            name=agent.name,
            voice=agent.voice,
            language=agent.language,
            endpoint_silence_ms=turn.endpoint_silence_ms,
            allow_barge_in=turn.allow_barge_in,
            idle_timeout_ms=turn.idle_timeout_ms,
            barge_in_min_speech_ms=turn.barge_in_min_speech_ms,
            barge_in_min_words=turn.barge_in_min_words,
            backchannels=(
                None if turn.backchannels is None else reasoning_pb2.Backchannels(words=turn.backchannels)
            ),
            echo_margin_db=turn.echo_margin_db,
            smart_turn=reasoning_pb2.SmartTurn(
                enabled=turn.smart_turn.enabled,
                min_probability=turn.smart_turn.min_probability,
                check_after_ms=turn.smart_turn.check_after_ms,
            ),
            filler=(
                None
                if turn.filler is None
                else reasoning_pb2.Filler(after_ms=turn.filler.after_ms, phrases=turn.filler.phrases)
            ),
        )
    )


def delta(rid: str, in_reply_to: str, text: str) -> reasoning_pb2.ConverseResponse:
    return reasoning_pb2.ConverseResponse(
        delta=reasoning_pb2.ResponseDelta(response_id=rid, in_reply_to=in_reply_to, text=text)
    )


def tool_call(rid: str, call: ToolCall) -> reasoning_pb2.ConverseResponse:
    return reasoning_pb2.ConverseResponse(
        tool_call=reasoning_pb2.ToolCallEvent(
            response_id=rid,
            tool=call.tool,
            arguments_json=call.arguments_json,
            result_json=call.result_json,
            duration_ms=call.duration_ms,
        )
    )


def action(rid: str, action: AgentAction) -> reasoning_pb2.ConverseResponse:
    if action.kind == "hangup":
        msg = reasoning_pb2.Action(response_id=rid, hangup=reasoning_pb2.Hangup(reason=action.value))
    elif action.kind == "transfer":
        msg = reasoning_pb2.Action(response_id=rid, transfer=reasoning_pb2.Transfer(target=action.value))
    else:
        msg = reasoning_pb2.Action(response_id=rid, dtmf=reasoning_pb2.SendDtmf(digits=action.value))
    return reasoning_pb2.ConverseResponse(action=msg)
