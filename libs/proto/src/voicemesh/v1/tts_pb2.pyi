from voicemesh.v1 import audio_pb2 as _audio_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SynthesisConfig(_message.Message):
    __slots__ = ("session_id", "voice", "format")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    VOICE_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    voice: str
    format: _audio_pb2.AudioFormat
    def __init__(self, session_id: _Optional[str] = ..., voice: _Optional[str] = ..., format: _Optional[_Union[_audio_pb2.AudioFormat, _Mapping]] = ...) -> None: ...

class TextDelta(_message.Message):
    __slots__ = ("response_id", "text")
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    response_id: str
    text: str
    def __init__(self, response_id: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class EndOfText(_message.Message):
    __slots__ = ("response_id",)
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    response_id: str
    def __init__(self, response_id: _Optional[str] = ...) -> None: ...

class CancelSynthesis(_message.Message):
    __slots__ = ("response_id",)
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    response_id: str
    def __init__(self, response_id: _Optional[str] = ...) -> None: ...

class SynthesizeRequest(_message.Message):
    __slots__ = ("config", "text", "end", "cancel")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    config: SynthesisConfig
    text: TextDelta
    end: EndOfText
    cancel: CancelSynthesis
    def __init__(self, config: _Optional[_Union[SynthesisConfig, _Mapping]] = ..., text: _Optional[_Union[TextDelta, _Mapping]] = ..., end: _Optional[_Union[EndOfText, _Mapping]] = ..., cancel: _Optional[_Union[CancelSynthesis, _Mapping]] = ...) -> None: ...

class SynthesizedAudio(_message.Message):
    __slots__ = ("response_id", "frame")
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    response_id: str
    frame: _audio_pb2.AudioFrame
    def __init__(self, response_id: _Optional[str] = ..., frame: _Optional[_Union[_audio_pb2.AudioFrame, _Mapping]] = ...) -> None: ...

class SynthesisMark(_message.Message):
    __slots__ = ("response_id", "name", "audio_offset_ms", "text")
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    AUDIO_OFFSET_MS_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    response_id: str
    name: str
    audio_offset_ms: int
    text: str
    def __init__(self, response_id: _Optional[str] = ..., name: _Optional[str] = ..., audio_offset_ms: _Optional[int] = ..., text: _Optional[str] = ...) -> None: ...

class SynthesizeResponse(_message.Message):
    __slots__ = ("audio", "mark")
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    MARK_FIELD_NUMBER: _ClassVar[int]
    audio: SynthesizedAudio
    mark: SynthesisMark
    def __init__(self, audio: _Optional[_Union[SynthesizedAudio, _Mapping]] = ..., mark: _Optional[_Union[SynthesisMark, _Mapping]] = ...) -> None: ...
