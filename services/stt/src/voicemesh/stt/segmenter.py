"""The pure core of streaming recognition: turns frames and VAD probabilities into decisions.

One `Segmenter` per stream. It keeps the current utterance's audio (with a short pre-roll
before the speech onset) and says when a decode is worth running and when an utterance is
final. It never decodes, sleeps or reads a clock: time is media time, counted in frames.

The latency trick is the *speculative* decode: once the caller pauses
(`speculative_silence_ms` of non-speech after voiced audio) the core asks for a decode of
the utterance so far, trimmed to the last voiced frame plus that same tail. If the
utterance then ends (a Flush, the internal endpoint, the end of input) without new voiced
audio, the final's audio is byte-for-byte the speculative decode's audio, so `Finalize`
names that decode for reuse and the final costs no decode after the endpoint.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum

from voicemesh.audio.frames import FRAME_BYTES, FRAME_MS
from voicemesh.audio.vad import VoiceActivity


class DecodeKind(Enum):
    PARTIAL = "partial"
    SPECULATIVE = "speculative"
    FINAL = "final"


class FinalReason(Enum):
    FLUSH = "flush"
    ENDPOINT = "endpoint"
    MAX_LENGTH = "max_length"
    END_OF_INPUT = "end_of_input"


@dataclass(frozen=True)
class SegmenterConfig:
    """Segmentation settings; times in ms of media."""

    endpoint_silence_ms: int = 600
    """Non-speech that ends speech (SpeechEnded) and, with internal endpointing, the utterance."""
    internal_endpointing: bool = True
    partials: bool = True
    partial_interval_ms: int = 600
    """New voiced audio since the last decode that makes a partial worth decoding."""
    speculative_silence_ms: int = 160
    """Non-speech after voiced audio that triggers a speculative decode; also the tail of
    non-speech kept after the last voiced frame in every decode."""
    preroll_ms: int = 300
    max_utterance_ms: int = 28_000
    min_voiced_ms: int = 100
    """An utterance with less voiced audio than this is not decoded (its final is empty)."""
    speculative: bool = True
    """Take speculative decodes at pauses (off: every final decodes after the endpoint)."""
    speech_threshold: float = 0.5
    release_threshold: float = 0.35

    def __post_init__(self) -> None:
        if self.speculative_silence_ms > self.endpoint_silence_ms:
            raise ValueError(
                f"speculative_silence_ms ({self.speculative_silence_ms}) must not exceed "
                f"endpoint_silence_ms ({self.endpoint_silence_ms})"
            )
        if self.max_utterance_ms < 1000:
            raise ValueError(f"max_utterance_ms must be at least 1000, got {self.max_utterance_ms}")


def _frames(ms: int) -> int:
    return max(1, -(-ms // FRAME_MS))


@dataclass(frozen=True)
class SpeechStarted:
    audio_ms: int


@dataclass(frozen=True)
class SpeechEnded:
    audio_ms: int


@dataclass(frozen=True)
class DecodeRequest:
    """Decode `audio` (PCM16) of utterance `utterance`. Partials may be skipped by the caller;
    a skipped speculative decode only means the final decodes for itself."""

    request_id: int
    kind: DecodeKind
    utterance: int
    audio: bytes
    audio_start_ms: int
    audio_end_ms: int


@dataclass(frozen=True)
class Finalize:
    """Utterance `utterance` is over: emit exactly one final transcript for it.

    `audio` is empty when there is nothing to decode (no speech, or too little); otherwise
    the final's text comes from the decode `reuse` names when it is set, or else from a
    decode of `audio`.
    """

    utterance: int
    reason: FinalReason
    audio: bytes
    audio_start_ms: int
    audio_end_ms: int
    reuse: int | None
    flush_id: str | None


Decision = SpeechStarted | SpeechEnded | DecodeRequest | Finalize


@dataclass
class _Utterance:
    index: int
    start_frame: int
    audio: bytearray
    voiced_end: int = 0  # media frame index just past the last voiced frame
    voiced_frames: int = 0
    voiced_at_last_decode: int = 0
    reusable: tuple[int, int] | None = None  # (request id, audio end frame) of a full decode

    def end_frame(self) -> int:
        return self.start_frame + len(self.audio) // FRAME_BYTES


class Segmenter:
    """Feed every frame with `push`, and `flush` / `finish` when the client says so."""

    def __init__(self, config: SegmenterConfig) -> None:
        self.config = config
        self._activity = VoiceActivity(config.speech_threshold, config.release_threshold)
        self._preroll: deque[bytes] = deque(maxlen=config.preroll_ms // FRAME_MS)
        self._endpoint = _frames(config.endpoint_silence_ms)
        self._speculate = _frames(config.speculative_silence_ms)
        self._partial = _frames(config.partial_interval_ms)
        self._max = _frames(config.max_utterance_ms)
        self._min_voiced = _frames(config.min_voiced_ms)
        self._frame = 0  # media frame index of the next frame
        self._speaking = False  # between a SpeechStarted and its SpeechEnded
        self._utt: _Utterance | None = None
        self._next_utterance = 0
        self._next_request = 0

    @property
    def media_ms(self) -> int:
        """Media time of the audio received so far."""
        return self._frame * FRAME_MS

    @property
    def utterance(self) -> int | None:
        """Index of the open utterance, if any."""
        return self._utt.index if self._utt is not None else None

    def push(self, frame: bytes, prob: float, decoder_idle: bool = True) -> list[Decision]:
        """One 20 ms frame and its speech probability. `decoder_idle`: a partial decode would
        start now (partials are only asked for then; other decodes queue)."""
        if len(frame) != FRAME_BYTES:
            raise ValueError(f"frame must be {FRAME_BYTES} bytes, got {len(frame)}")
        index = self._frame
        self._frame += 1
        voiced = self._activity.update(prob)
        out: list[Decision] = []
        utt = self._utt
        if utt is None:
            if not voiced:
                self._preroll.append(frame)
                return out
            utt = self._open(index)
        utt.audio += frame
        if voiced:
            if not self._speaking:
                self._speaking = True
                out.append(SpeechStarted(index * FRAME_MS))
            utt.voiced_end = index + 1
            utt.voiced_frames += 1
            if (
                self.config.partials
                and decoder_idle
                and utt.voiced_frames - utt.voiced_at_last_decode >= self._partial
            ):
                out.append(self._request(utt, DecodeKind.PARTIAL))
        else:
            silence = self._frame - utt.voiced_end
            if (
                self.config.speculative
                and silence >= self._speculate
                and utt.voiced_frames >= self._min_voiced
                and (utt.reusable is None or utt.reusable[1] != self._audio_end(utt))
            ):
                out.append(self._request(utt, DecodeKind.SPECULATIVE))
            if self._speaking and silence >= self._endpoint:
                self._speaking = False
                out.append(SpeechEnded(utt.voiced_end * FRAME_MS))
            if self.config.internal_endpointing and silence >= self._endpoint:
                out.append(self._finalize(FinalReason.ENDPOINT, None))
                return out
        if len(utt.audio) // FRAME_BYTES >= self._max:
            out.append(self._finalize(FinalReason.MAX_LENGTH, None))
            if self._speaking:  # speech goes on: the next utterance starts right here
                self._open(self._frame).voiced_end = self._frame
        return out

    def flush(self, flush_id: str) -> list[Decision]:
        """The client asks for the final now: always exactly one `Finalize`."""
        return [*self._end_speech(), self._finalize(FinalReason.FLUSH, flush_id)]

    def finish(self) -> list[Decision]:
        """End of input: finalize pending speech (no `Finalize` if there is none)."""
        out = self._end_speech()
        if self._utt is not None:
            out.append(self._finalize(FinalReason.END_OF_INPUT, None))
        return out

    # -- internals ---------------------------------------------------------------------

    def _open(self, index: int) -> _Utterance:
        pre = b"".join(self._preroll)
        self._preroll.clear()
        utt = _Utterance(
            index=self._next_utterance,
            start_frame=index - len(pre) // FRAME_BYTES,
            audio=bytearray(pre),
        )
        self._next_utterance += 1
        self._utt = utt
        return utt

    def _end_speech(self) -> list[Decision]:
        if not self._speaking:
            return []
        self._speaking = False
        end = self._utt.voiced_end if self._utt is not None else self._frame
        return [SpeechEnded(end * FRAME_MS)]

    def _audio_end(self, utt: _Utterance) -> int:
        """End frame of what a decode covers: the last voiced frame plus the kept tail."""
        return min(utt.end_frame(), utt.voiced_end + self._speculate)

    def _audio(self, utt: _Utterance, end: int) -> bytes:
        return bytes(utt.audio[: (end - utt.start_frame) * FRAME_BYTES])

    def _request(self, utt: _Utterance, kind: DecodeKind) -> DecodeRequest:
        end = self._audio_end(utt)
        request = DecodeRequest(
            request_id=self._next_request,
            kind=kind,
            utterance=utt.index,
            audio=self._audio(utt, end),
            audio_start_ms=utt.start_frame * FRAME_MS,
            audio_end_ms=end * FRAME_MS,
        )
        self._next_request += 1
        utt.voiced_at_last_decode = utt.voiced_frames
        if kind is not DecodeKind.PARTIAL:
            utt.reusable = (request.request_id, end)
        return request

    def _finalize(self, reason: FinalReason, flush_id: str | None) -> Finalize:
        utt = self._utt
        self._utt = None
        self._preroll.clear()
        if utt is None:
            index = self._next_utterance
            self._next_utterance += 1
            now = self._frame * FRAME_MS
            return Finalize(index, reason, b"", now, now, None, flush_id)
        end = self._audio_end(utt)
        start_ms = utt.start_frame * FRAME_MS
        if utt.voiced_frames < self._min_voiced:
            return Finalize(utt.index, reason, b"", start_ms, end * FRAME_MS, None, flush_id)
        reuse = utt.reusable[0] if utt.reusable is not None and utt.reusable[1] == end else None
        return Finalize(utt.index, reason, self._audio(utt, end), start_ms, end * FRAME_MS, reuse, flush_id)
