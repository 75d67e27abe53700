import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from voicemesh.v1 import router_pb2 as _router_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CallStarted(_message.Message):
    __slots__ = ("transport", "agent", "caller", "callee", "carrier_call_id")
    TRANSPORT_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    CALLER_FIELD_NUMBER: _ClassVar[int]
    CALLEE_FIELD_NUMBER: _ClassVar[int]
    CARRIER_CALL_ID_FIELD_NUMBER: _ClassVar[int]
    transport: str
    agent: str
    caller: str
    callee: str
    carrier_call_id: str
    def __init__(self, transport: _Optional[str] = ..., agent: _Optional[str] = ..., caller: _Optional[str] = ..., callee: _Optional[str] = ..., carrier_call_id: _Optional[str] = ...) -> None: ...

class CallEnded(_message.Message):
    __slots__ = ("reason", "duration_ms", "turns")
    REASON_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    TURNS_FIELD_NUMBER: _ClassVar[int]
    reason: str
    duration_ms: int
    turns: int
    def __init__(self, reason: _Optional[str] = ..., duration_ms: _Optional[int] = ..., turns: _Optional[int] = ...) -> None: ...

class CallTransferred(_message.Message):
    __slots__ = ("target", "method", "result")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    target: str
    method: str
    result: str
    def __init__(self, target: _Optional[str] = ..., method: _Optional[str] = ..., result: _Optional[str] = ...) -> None: ...

class MediaQuality(_message.Message):
    __slots__ = ("packets_received", "packets_lost", "jitter_ms", "concealed_frames", "rtt_ms", "remote_fraction_lost", "remote_jitter_ms", "final")
    PACKETS_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    PACKETS_LOST_FIELD_NUMBER: _ClassVar[int]
    JITTER_MS_FIELD_NUMBER: _ClassVar[int]
    CONCEALED_FRAMES_FIELD_NUMBER: _ClassVar[int]
    RTT_MS_FIELD_NUMBER: _ClassVar[int]
    REMOTE_FRACTION_LOST_FIELD_NUMBER: _ClassVar[int]
    REMOTE_JITTER_MS_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    packets_received: int
    packets_lost: int
    jitter_ms: float
    concealed_frames: int
    rtt_ms: float
    remote_fraction_lost: float
    remote_jitter_ms: float
    final: bool
    def __init__(self, packets_received: _Optional[int] = ..., packets_lost: _Optional[int] = ..., jitter_ms: _Optional[float] = ..., concealed_frames: _Optional[int] = ..., rtt_ms: _Optional[float] = ..., remote_fraction_lost: _Optional[float] = ..., remote_jitter_ms: _Optional[float] = ..., final: _Optional[bool] = ...) -> None: ...

class DtmfReceived(_message.Message):
    __slots__ = ("digits",)
    DIGITS_FIELD_NUMBER: _ClassVar[int]
    digits: str
    def __init__(self, digits: _Optional[str] = ...) -> None: ...

class Assigned(_message.Message):
    __slots__ = ("assignments",)
    ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    assignments: _containers.RepeatedCompositeFieldContainer[_router_pb2.Assignment]
    def __init__(self, assignments: _Optional[_Iterable[_Union[_router_pb2.Assignment, _Mapping]]] = ...) -> None: ...

class SpeechStarted(_message.Message):
    __slots__ = ("audio_ms",)
    AUDIO_MS_FIELD_NUMBER: _ClassVar[int]
    audio_ms: int
    def __init__(self, audio_ms: _Optional[int] = ...) -> None: ...

class TurnEnded(_message.Message):
    __slots__ = ("turn_id", "last_voiced_ms", "endpoint_ms")
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_VOICED_MS_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_MS_FIELD_NUMBER: _ClassVar[int]
    turn_id: str
    last_voiced_ms: int
    endpoint_ms: int
    def __init__(self, turn_id: _Optional[str] = ..., last_voiced_ms: _Optional[int] = ..., endpoint_ms: _Optional[int] = ...) -> None: ...

class TranscriptPublished(_message.Message):
    __slots__ = ("utterance_id", "text", "final", "decode_ms")
    UTTERANCE_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    utterance_id: str
    text: str
    final: bool
    decode_ms: int
    def __init__(self, utterance_id: _Optional[str] = ..., text: _Optional[str] = ..., final: _Optional[bool] = ..., decode_ms: _Optional[int] = ...) -> None: ...

class ResponsePublished(_message.Message):
    __slots__ = ("response_id", "in_reply_to", "text", "first_token_ms", "cancelled")
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    IN_REPLY_TO_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FIRST_TOKEN_MS_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    response_id: str
    in_reply_to: str
    text: str
    first_token_ms: int
    cancelled: bool
    def __init__(self, response_id: _Optional[str] = ..., in_reply_to: _Optional[str] = ..., text: _Optional[str] = ..., first_token_ms: _Optional[int] = ..., cancelled: _Optional[bool] = ...) -> None: ...

class SpeechSynthesized(_message.Message):
    __slots__ = ("response_id", "audio_ms", "first_audio_ms", "cancelled")
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    AUDIO_MS_FIELD_NUMBER: _ClassVar[int]
    FIRST_AUDIO_MS_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    response_id: str
    audio_ms: int
    first_audio_ms: int
    cancelled: bool
    def __init__(self, response_id: _Optional[str] = ..., audio_ms: _Optional[int] = ..., first_audio_ms: _Optional[int] = ..., cancelled: _Optional[bool] = ...) -> None: ...

class TurnLatency(_message.Message):
    __slots__ = ("turn_id", "endpoint_ms", "stt_final_ms", "first_token_ms", "tts_first_audio_ms", "voice_to_voice_ms")
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_MS_FIELD_NUMBER: _ClassVar[int]
    STT_FINAL_MS_FIELD_NUMBER: _ClassVar[int]
    FIRST_TOKEN_MS_FIELD_NUMBER: _ClassVar[int]
    TTS_FIRST_AUDIO_MS_FIELD_NUMBER: _ClassVar[int]
    VOICE_TO_VOICE_MS_FIELD_NUMBER: _ClassVar[int]
    turn_id: str
    endpoint_ms: int
    stt_final_ms: int
    first_token_ms: int
    tts_first_audio_ms: int
    voice_to_voice_ms: int
    def __init__(self, turn_id: _Optional[str] = ..., endpoint_ms: _Optional[int] = ..., stt_final_ms: _Optional[int] = ..., first_token_ms: _Optional[int] = ..., tts_first_audio_ms: _Optional[int] = ..., voice_to_voice_ms: _Optional[int] = ...) -> None: ...

class PlayoutFinished(_message.Message):
    __slots__ = ("response_id", "played_ms", "interrupted")
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    PLAYED_MS_FIELD_NUMBER: _ClassVar[int]
    INTERRUPTED_FIELD_NUMBER: _ClassVar[int]
    response_id: str
    played_ms: int
    interrupted: bool
    def __init__(self, response_id: _Optional[str] = ..., played_ms: _Optional[int] = ..., interrupted: _Optional[bool] = ...) -> None: ...

class ServiceError(_message.Message):
    __slots__ = ("stage", "code", "message")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    stage: str
    code: str
    message: str
    def __init__(self, stage: _Optional[str] = ..., code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class SessionEvent(_message.Message):
    __slots__ = ("session_id", "service", "instance_id", "time", "trace_id", "call_started", "call_ended", "assigned", "speech_started", "turn_ended", "transcript", "response", "speech_synthesized", "turn_latency", "playout_finished", "error", "call_transferred", "dtmf_received", "media_quality")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    CALL_STARTED_FIELD_NUMBER: _ClassVar[int]
    CALL_ENDED_FIELD_NUMBER: _ClassVar[int]
    ASSIGNED_FIELD_NUMBER: _ClassVar[int]
    SPEECH_STARTED_FIELD_NUMBER: _ClassVar[int]
    TURN_ENDED_FIELD_NUMBER: _ClassVar[int]
    TRANSCRIPT_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    SPEECH_SYNTHESIZED_FIELD_NUMBER: _ClassVar[int]
    TURN_LATENCY_FIELD_NUMBER: _ClassVar[int]
    PLAYOUT_FINISHED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CALL_TRANSFERRED_FIELD_NUMBER: _ClassVar[int]
    DTMF_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    MEDIA_QUALITY_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    service: str
    instance_id: str
    time: _timestamp_pb2.Timestamp
    trace_id: str
    call_started: CallStarted
    call_ended: CallEnded
    assigned: Assigned
    speech_started: SpeechStarted
    turn_ended: TurnEnded
    transcript: TranscriptPublished
    response: ResponsePublished
    speech_synthesized: SpeechSynthesized
    turn_latency: TurnLatency
    playout_finished: PlayoutFinished
    error: ServiceError
    call_transferred: CallTransferred
    dtmf_received: DtmfReceived
    media_quality: MediaQuality
    def __init__(self, session_id: _Optional[str] = ..., service: _Optional[str] = ..., instance_id: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., trace_id: _Optional[str] = ..., call_started: _Optional[_Union[CallStarted, _Mapping]] = ..., call_ended: _Optional[_Union[CallEnded, _Mapping]] = ..., assigned: _Optional[_Union[Assigned, _Mapping]] = ..., speech_started: _Optional[_Union[SpeechStarted, _Mapping]] = ..., turn_ended: _Optional[_Union[TurnEnded, _Mapping]] = ..., transcript: _Optional[_Union[TranscriptPublished, _Mapping]] = ..., response: _Optional[_Union[ResponsePublished, _Mapping]] = ..., speech_synthesized: _Optional[_Union[SpeechSynthesized, _Mapping]] = ..., turn_latency: _Optional[_Union[TurnLatency, _Mapping]] = ..., playout_finished: _Optional[_Union[PlayoutFinished, _Mapping]] = ..., error: _Optional[_Union[ServiceError, _Mapping]] = ..., call_transferred: _Optional[_Union[CallTransferred, _Mapping]] = ..., dtmf_received: _Optional[_Union[DtmfReceived, _Mapping]] = ..., media_quality: _Optional[_Union[MediaQuality, _Mapping]] = ...) -> None: ...
