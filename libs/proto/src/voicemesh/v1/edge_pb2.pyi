from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ClientStart(_message.Message):
    __slots__ = ("agent", "sample_rate_hz", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    AGENT_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    agent: str
    sample_rate_hz: int
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, agent: _Optional[str] = ..., sample_rate_hz: _Optional[int] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ClientStop(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class ClientDtmf(_message.Message):
    __slots__ = ("digits",)
    DIGITS_FIELD_NUMBER: _ClassVar[int]
    digits: str
    def __init__(self, digits: _Optional[str] = ...) -> None: ...

class ClientMessage(_message.Message):
    __slots__ = ("start", "stop", "dtmf")
    START_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    DTMF_FIELD_NUMBER: _ClassVar[int]
    start: ClientStart
    stop: ClientStop
    dtmf: ClientDtmf
    def __init__(self, start: _Optional[_Union[ClientStart, _Mapping]] = ..., stop: _Optional[_Union[ClientStop, _Mapping]] = ..., dtmf: _Optional[_Union[ClientDtmf, _Mapping]] = ...) -> None: ...

class CallReady(_message.Message):
    __slots__ = ("session_id", "agent", "sample_rate_hz")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    agent: str
    sample_rate_hz: int
    def __init__(self, session_id: _Optional[str] = ..., agent: _Optional[str] = ..., sample_rate_hz: _Optional[int] = ...) -> None: ...

class StateChanged(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: str
    def __init__(self, state: _Optional[str] = ...) -> None: ...

class TranscriptUpdate(_message.Message):
    __slots__ = ("turn_id", "text", "final")
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    turn_id: str
    text: str
    final: bool
    def __init__(self, turn_id: _Optional[str] = ..., text: _Optional[str] = ..., final: _Optional[bool] = ...) -> None: ...

class ResponseText(_message.Message):
    __slots__ = ("response_id", "turn_id", "text", "final")
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    response_id: str
    turn_id: str
    text: str
    final: bool
    def __init__(self, response_id: _Optional[str] = ..., turn_id: _Optional[str] = ..., text: _Optional[str] = ..., final: _Optional[bool] = ...) -> None: ...

class TurnTiming(_message.Message):
    __slots__ = ("turn_id", "last_voiced_message", "endpoint_ms", "stt_final_ms", "first_token_ms", "tts_first_audio_ms", "edge_voice_to_voice_ms", "filler_ms")
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_VOICED_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_MS_FIELD_NUMBER: _ClassVar[int]
    STT_FINAL_MS_FIELD_NUMBER: _ClassVar[int]
    FIRST_TOKEN_MS_FIELD_NUMBER: _ClassVar[int]
    TTS_FIRST_AUDIO_MS_FIELD_NUMBER: _ClassVar[int]
    EDGE_VOICE_TO_VOICE_MS_FIELD_NUMBER: _ClassVar[int]
    FILLER_MS_FIELD_NUMBER: _ClassVar[int]
    turn_id: str
    last_voiced_message: int
    endpoint_ms: int
    stt_final_ms: int
    first_token_ms: int
    tts_first_audio_ms: int
    edge_voice_to_voice_ms: int
    filler_ms: int
    def __init__(self, turn_id: _Optional[str] = ..., last_voiced_message: _Optional[int] = ..., endpoint_ms: _Optional[int] = ..., stt_final_ms: _Optional[int] = ..., first_token_ms: _Optional[int] = ..., tts_first_audio_ms: _Optional[int] = ..., edge_voice_to_voice_ms: _Optional[int] = ..., filler_ms: _Optional[int] = ...) -> None: ...

class PlayoutMark(_message.Message):
    __slots__ = ("response_id", "name")
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    response_id: str
    name: str
    def __init__(self, response_id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class FillerPlayout(_message.Message):
    __slots__ = ("turn_id", "text", "name")
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    turn_id: str
    text: str
    name: str
    def __init__(self, turn_id: _Optional[str] = ..., text: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class CallError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class CallTransfer(_message.Message):
    __slots__ = ("target",)
    TARGET_FIELD_NUMBER: _ClassVar[int]
    target: str
    def __init__(self, target: _Optional[str] = ...) -> None: ...

class SendDigits(_message.Message):
    __slots__ = ("digits",)
    DIGITS_FIELD_NUMBER: _ClassVar[int]
    digits: str
    def __init__(self, digits: _Optional[str] = ...) -> None: ...

class CallEnd(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class ServerMessage(_message.Message):
    __slots__ = ("ready", "state", "transcript", "response", "timing", "mark", "error", "end", "transfer", "dtmf", "filler")
    READY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TRANSCRIPT_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    MARK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_FIELD_NUMBER: _ClassVar[int]
    DTMF_FIELD_NUMBER: _ClassVar[int]
    FILLER_FIELD_NUMBER: _ClassVar[int]
    ready: CallReady
    state: StateChanged
    transcript: TranscriptUpdate
    response: ResponseText
    timing: TurnTiming
    mark: PlayoutMark
    error: CallError
    end: CallEnd
    transfer: CallTransfer
    dtmf: SendDigits
    filler: FillerPlayout
    def __init__(self, ready: _Optional[_Union[CallReady, _Mapping]] = ..., state: _Optional[_Union[StateChanged, _Mapping]] = ..., transcript: _Optional[_Union[TranscriptUpdate, _Mapping]] = ..., response: _Optional[_Union[ResponseText, _Mapping]] = ..., timing: _Optional[_Union[TurnTiming, _Mapping]] = ..., mark: _Optional[_Union[PlayoutMark, _Mapping]] = ..., error: _Optional[_Union[CallError, _Mapping]] = ..., end: _Optional[_Union[CallEnd, _Mapping]] = ..., transfer: _Optional[_Union[CallTransfer, _Mapping]] = ..., dtmf: _Optional[_Union[SendDigits, _Mapping]] = ..., filler: _Optional[_Union[FillerPlayout, _Mapping]] = ...) -> None: ...

class DialRequest(_message.Message):
    __slots__ = ("target", "agent", "caller", "answer_timeout_s")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    CALLER_FIELD_NUMBER: _ClassVar[int]
    ANSWER_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    target: str
    agent: str
    caller: str
    answer_timeout_s: int
    def __init__(self, target: _Optional[str] = ..., agent: _Optional[str] = ..., caller: _Optional[str] = ..., answer_timeout_s: _Optional[int] = ...) -> None: ...

class DialResponse(_message.Message):
    __slots__ = ("call_id",)
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    def __init__(self, call_id: _Optional[str] = ...) -> None: ...
