from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SessionStart(_message.Message):
    __slots__ = ("session_id", "agent", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    agent: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, session_id: _Optional[str] = ..., agent: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class UserTurn(_message.Message):
    __slots__ = ("turn_id", "text", "confidence")
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    turn_id: str
    text: str
    confidence: float
    def __init__(self, turn_id: _Optional[str] = ..., text: _Optional[str] = ..., confidence: _Optional[float] = ...) -> None: ...

class CancelResponse(_message.Message):
    __slots__ = ("response_id", "heard_text", "turn_id")
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    HEARD_TEXT_FIELD_NUMBER: _ClassVar[int]
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    response_id: str
    heard_text: str
    turn_id: str
    def __init__(self, response_id: _Optional[str] = ..., heard_text: _Optional[str] = ..., turn_id: _Optional[str] = ...) -> None: ...

class CallerDtmf(_message.Message):
    __slots__ = ("digits", "turn_id")
    DIGITS_FIELD_NUMBER: _ClassVar[int]
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    digits: str
    turn_id: str
    def __init__(self, digits: _Optional[str] = ..., turn_id: _Optional[str] = ...) -> None: ...

class ConverseRequest(_message.Message):
    __slots__ = ("start", "turn", "cancel", "dtmf")
    START_FIELD_NUMBER: _ClassVar[int]
    TURN_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    DTMF_FIELD_NUMBER: _ClassVar[int]
    start: SessionStart
    turn: UserTurn
    cancel: CancelResponse
    dtmf: CallerDtmf
    def __init__(self, start: _Optional[_Union[SessionStart, _Mapping]] = ..., turn: _Optional[_Union[UserTurn, _Mapping]] = ..., cancel: _Optional[_Union[CancelResponse, _Mapping]] = ..., dtmf: _Optional[_Union[CallerDtmf, _Mapping]] = ...) -> None: ...

class AgentProfile(_message.Message):
    __slots__ = ("name", "voice", "language", "endpoint_silence_ms", "allow_barge_in", "idle_timeout_ms", "barge_in_min_speech_ms", "barge_in_min_words", "backchannels", "echo_margin_db", "smart_turn", "filler")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VOICE_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_SILENCE_MS_FIELD_NUMBER: _ClassVar[int]
    ALLOW_BARGE_IN_FIELD_NUMBER: _ClassVar[int]
    IDLE_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    BARGE_IN_MIN_SPEECH_MS_FIELD_NUMBER: _ClassVar[int]
    BARGE_IN_MIN_WORDS_FIELD_NUMBER: _ClassVar[int]
    BACKCHANNELS_FIELD_NUMBER: _ClassVar[int]
    ECHO_MARGIN_DB_FIELD_NUMBER: _ClassVar[int]
    SMART_TURN_FIELD_NUMBER: _ClassVar[int]
    FILLER_FIELD_NUMBER: _ClassVar[int]
    name: str
    voice: str
    language: str
    endpoint_silence_ms: int
    allow_barge_in: bool
    idle_timeout_ms: int
    barge_in_min_speech_ms: int
    barge_in_min_words: int
    backchannels: Backchannels
    echo_margin_db: float
    smart_turn: SmartTurn
    filler: Filler
    def __init__(self, name: _Optional[str] = ..., voice: _Optional[str] = ..., language: _Optional[str] = ..., endpoint_silence_ms: _Optional[int] = ..., allow_barge_in: _Optional[bool] = ..., idle_timeout_ms: _Optional[int] = ..., barge_in_min_speech_ms: _Optional[int] = ..., barge_in_min_words: _Optional[int] = ..., backchannels: _Optional[_Union[Backchannels, _Mapping]] = ..., echo_margin_db: _Optional[float] = ..., smart_turn: _Optional[_Union[SmartTurn, _Mapping]] = ..., filler: _Optional[_Union[Filler, _Mapping]] = ...) -> None: ...

class Backchannels(_message.Message):
    __slots__ = ("words",)
    WORDS_FIELD_NUMBER: _ClassVar[int]
    words: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, words: _Optional[_Iterable[str]] = ...) -> None: ...

class SmartTurn(_message.Message):
    __slots__ = ("enabled", "min_probability", "check_after_ms")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    MIN_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    CHECK_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    min_probability: float
    check_after_ms: int
    def __init__(self, enabled: _Optional[bool] = ..., min_probability: _Optional[float] = ..., check_after_ms: _Optional[int] = ...) -> None: ...

class Filler(_message.Message):
    __slots__ = ("after_ms", "phrases")
    AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    PHRASES_FIELD_NUMBER: _ClassVar[int]
    after_ms: int
    phrases: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, after_ms: _Optional[int] = ..., phrases: _Optional[_Iterable[str]] = ...) -> None: ...

class SessionReady(_message.Message):
    __slots__ = ("agent",)
    AGENT_FIELD_NUMBER: _ClassVar[int]
    agent: AgentProfile
    def __init__(self, agent: _Optional[_Union[AgentProfile, _Mapping]] = ...) -> None: ...

class ResponseDelta(_message.Message):
    __slots__ = ("response_id", "in_reply_to", "text")
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    IN_REPLY_TO_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    response_id: str
    in_reply_to: str
    text: str
    def __init__(self, response_id: _Optional[str] = ..., in_reply_to: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class ResponseEnd(_message.Message):
    __slots__ = ("response_id", "text", "in_reply_to", "preempted")
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    IN_REPLY_TO_FIELD_NUMBER: _ClassVar[int]
    PREEMPTED_FIELD_NUMBER: _ClassVar[int]
    response_id: str
    text: str
    in_reply_to: str
    preempted: bool
    def __init__(self, response_id: _Optional[str] = ..., text: _Optional[str] = ..., in_reply_to: _Optional[str] = ..., preempted: _Optional[bool] = ...) -> None: ...

class Hangup(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class Transfer(_message.Message):
    __slots__ = ("target",)
    TARGET_FIELD_NUMBER: _ClassVar[int]
    target: str
    def __init__(self, target: _Optional[str] = ...) -> None: ...

class SendDtmf(_message.Message):
    __slots__ = ("digits",)
    DIGITS_FIELD_NUMBER: _ClassVar[int]
    digits: str
    def __init__(self, digits: _Optional[str] = ...) -> None: ...

class Action(_message.Message):
    __slots__ = ("response_id", "hangup", "transfer", "dtmf")
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    HANGUP_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_FIELD_NUMBER: _ClassVar[int]
    DTMF_FIELD_NUMBER: _ClassVar[int]
    response_id: str
    hangup: Hangup
    transfer: Transfer
    dtmf: SendDtmf
    def __init__(self, response_id: _Optional[str] = ..., hangup: _Optional[_Union[Hangup, _Mapping]] = ..., transfer: _Optional[_Union[Transfer, _Mapping]] = ..., dtmf: _Optional[_Union[SendDtmf, _Mapping]] = ...) -> None: ...

class ToolCallEvent(_message.Message):
    __slots__ = ("response_id", "tool", "arguments_json", "result_json", "duration_ms")
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_JSON_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    response_id: str
    tool: str
    arguments_json: str
    result_json: str
    duration_ms: int
    def __init__(self, response_id: _Optional[str] = ..., tool: _Optional[str] = ..., arguments_json: _Optional[str] = ..., result_json: _Optional[str] = ..., duration_ms: _Optional[int] = ...) -> None: ...

class ConverseResponse(_message.Message):
    __slots__ = ("ready", "delta", "end", "action", "tool_call")
    READY_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_FIELD_NUMBER: _ClassVar[int]
    ready: SessionReady
    delta: ResponseDelta
    end: ResponseEnd
    action: Action
    tool_call: ToolCallEvent
    def __init__(self, ready: _Optional[_Union[SessionReady, _Mapping]] = ..., delta: _Optional[_Union[ResponseDelta, _Mapping]] = ..., end: _Optional[_Union[ResponseEnd, _Mapping]] = ..., action: _Optional[_Union[Action, _Mapping]] = ..., tool_call: _Optional[_Union[ToolCallEvent, _Mapping]] = ...) -> None: ...
