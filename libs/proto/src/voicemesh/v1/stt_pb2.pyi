from voicemesh.v1 import audio_pb2 as _audio_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Endpointing(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENDPOINTING_UNSPECIFIED: _ClassVar[Endpointing]
    ENDPOINTING_INTERNAL: _ClassVar[Endpointing]
    ENDPOINTING_EXTERNAL: _ClassVar[Endpointing]
ENDPOINTING_UNSPECIFIED: Endpointing
ENDPOINTING_INTERNAL: Endpointing
ENDPOINTING_EXTERNAL: Endpointing

class RecognitionConfig(_message.Message):
    __slots__ = ("session_id", "format", "language", "endpointing", "endpoint_silence_ms", "partials", "client_vad")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTING_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_SILENCE_MS_FIELD_NUMBER: _ClassVar[int]
    PARTIALS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_VAD_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    format: _audio_pb2.AudioFormat
    language: str
    endpointing: Endpointing
    endpoint_silence_ms: int
    partials: bool
    client_vad: bool
    def __init__(self, session_id: _Optional[str] = ..., format: _Optional[_Union[_audio_pb2.AudioFormat, _Mapping]] = ..., language: _Optional[str] = ..., endpointing: _Optional[_Union[Endpointing, str]] = ..., endpoint_silence_ms: _Optional[int] = ..., partials: _Optional[bool] = ..., client_vad: _Optional[bool] = ...) -> None: ...

class Flush(_message.Message):
    __slots__ = ("flush_id",)
    FLUSH_ID_FIELD_NUMBER: _ClassVar[int]
    flush_id: str
    def __init__(self, flush_id: _Optional[str] = ...) -> None: ...

class RecognizeRequest(_message.Message):
    __slots__ = ("config", "audio", "flush")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    FLUSH_FIELD_NUMBER: _ClassVar[int]
    config: RecognitionConfig
    audio: _audio_pb2.AudioFrame
    flush: Flush
    def __init__(self, config: _Optional[_Union[RecognitionConfig, _Mapping]] = ..., audio: _Optional[_Union[_audio_pb2.AudioFrame, _Mapping]] = ..., flush: _Optional[_Union[Flush, _Mapping]] = ...) -> None: ...

class Word(_message.Message):
    __slots__ = ("text", "start_ms", "end_ms", "probability")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    START_MS_FIELD_NUMBER: _ClassVar[int]
    END_MS_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    text: str
    start_ms: int
    end_ms: int
    probability: float
    def __init__(self, text: _Optional[str] = ..., start_ms: _Optional[int] = ..., end_ms: _Optional[int] = ..., probability: _Optional[float] = ...) -> None: ...

class Transcript(_message.Message):
    __slots__ = ("utterance_id", "text", "final", "stability", "confidence", "words", "audio_start_ms", "audio_end_ms", "decode_ms", "flush_id")
    UTTERANCE_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    STABILITY_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_START_MS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_END_MS_FIELD_NUMBER: _ClassVar[int]
    DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    FLUSH_ID_FIELD_NUMBER: _ClassVar[int]
    utterance_id: str
    text: str
    final: bool
    stability: float
    confidence: float
    words: _containers.RepeatedCompositeFieldContainer[Word]
    audio_start_ms: int
    audio_end_ms: int
    decode_ms: int
    flush_id: str
    def __init__(self, utterance_id: _Optional[str] = ..., text: _Optional[str] = ..., final: _Optional[bool] = ..., stability: _Optional[float] = ..., confidence: _Optional[float] = ..., words: _Optional[_Iterable[_Union[Word, _Mapping]]] = ..., audio_start_ms: _Optional[int] = ..., audio_end_ms: _Optional[int] = ..., decode_ms: _Optional[int] = ..., flush_id: _Optional[str] = ...) -> None: ...

class SpeechEvent(_message.Message):
    __slots__ = ("kind", "audio_ms")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[SpeechEvent.Kind]
        KIND_STARTED: _ClassVar[SpeechEvent.Kind]
        KIND_ENDED: _ClassVar[SpeechEvent.Kind]
    KIND_UNSPECIFIED: SpeechEvent.Kind
    KIND_STARTED: SpeechEvent.Kind
    KIND_ENDED: SpeechEvent.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    AUDIO_MS_FIELD_NUMBER: _ClassVar[int]
    kind: SpeechEvent.Kind
    audio_ms: int
    def __init__(self, kind: _Optional[_Union[SpeechEvent.Kind, str]] = ..., audio_ms: _Optional[int] = ...) -> None: ...

class RecognizeResponse(_message.Message):
    __slots__ = ("transcript", "speech")
    TRANSCRIPT_FIELD_NUMBER: _ClassVar[int]
    SPEECH_FIELD_NUMBER: _ClassVar[int]
    transcript: Transcript
    speech: SpeechEvent
    def __init__(self, transcript: _Optional[_Union[Transcript, _Mapping]] = ..., speech: _Optional[_Union[SpeechEvent, _Mapping]] = ...) -> None: ...
