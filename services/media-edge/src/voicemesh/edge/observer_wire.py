"""The observer's messages as the native protocol's JSON (`edge_pb2.ServerMessage`), for any
transport whose client is shown its call in that form: the native WebSocket, and the
WebRTC data channel named `voicemesh`. One home for the message shapes (docs/protocol.md)."""

from __future__ import annotations

from abc import abstractmethod

from google.protobuf import json_format
from google.protobuf.message import Message

from voicemesh.v1 import edge_pb2

from .port import CallObserver, TurnTiming


def encode(msg: Message) -> str:
    return json_format.MessageToJson(msg, preserving_proto_field_name=True, indent=None)


class JsonObserver(CallObserver):
    """A CallObserver that sends each message as one JSON text; subclasses carry it."""

    sample_rate_hz: int = 16000

    @abstractmethod
    async def send_text(self, text: str) -> None:
        """Send one message; best effort (a gone client is not an error)."""

    def message_index(self, frame_index: int) -> int:
        """The client's own index of the message that held this caller frame."""
        return frame_index

    async def send_message(self, **kind: Message) -> None:
        await self.send_text(encode(edge_pb2.ServerMessage(**kind)))

    async def ready(self, session_id: str, agent: str) -> None:
        await self.send_message(
            ready=edge_pb2.CallReady(session_id=session_id, agent=agent, sample_rate_hz=self.sample_rate_hz)
        )

    async def state(self, state: str) -> None:
        await self.send_message(state=edge_pb2.StateChanged(state=state))

    async def transcript(self, turn_id: str, text: str, final: bool) -> None:
        await self.send_message(transcript=edge_pb2.TranscriptUpdate(turn_id=turn_id, text=text, final=final))

    async def response(self, response_id: str, turn_id: str, text: str, final: bool) -> None:
        await self.send_message(
            response=edge_pb2.ResponseText(response_id=response_id, turn_id=turn_id, text=text, final=final)
        )

    async def playout(self, response_id: str, name: str) -> None:
        await self.send_message(mark=edge_pb2.PlayoutMark(response_id=response_id, name=name))

    async def filler(self, turn_id: str, text: str, name: str) -> None:
        await self.send_message(filler=edge_pb2.FillerPlayout(turn_id=turn_id, text=text, name=name))

    async def timing(self, timing: TurnTiming) -> None:
        await self.send_message(
            timing=edge_pb2.TurnTiming(
                turn_id=timing.turn_id,
                last_voiced_message=self.message_index(timing.last_voiced_frame),
                endpoint_ms=round(timing.endpoint_ms),
                stt_final_ms=round(timing.stt_final_ms),
                first_token_ms=round(timing.first_token_ms),
                tts_first_audio_ms=round(timing.tts_first_audio_ms),
                edge_voice_to_voice_ms=round(timing.edge_voice_to_voice_ms),
                filler_ms=round(timing.filler_ms),
            )
        )

    async def error(self, code: str, message: str) -> None:
        await self.send_message(error=edge_pb2.CallError(code=code, message=message))
