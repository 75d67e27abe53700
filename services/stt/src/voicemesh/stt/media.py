"""Caller frames checked and placed on the stream's media timeline (pure).

Media time counts 20 ms frames from the stream's first frame; every transcript and speech
event time is media time. `AudioFrame.sequence` says where a frame belongs: the first
frame's sequence is the base, a jump ahead by k means k frames were lost upstream, and a
repeat or a step back is out of order (the frame is dropped). `Timeline` numbers each
frame it accepts with its media frame index, leaving room for the lost ones; whoever feeds
the segmenter fills every index it has no frame for with silence, whether the frame was
lost upstream or dropped by stt's own bounded intake, so media time stays true.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from voicemesh.audio.frames import FRAME_BYTES
from voicemesh.v1 import audio_pb2

SILENCE = bytes(FRAME_BYTES)
"""What fills a frame's place on the timeline when the frame never arrived."""

MAX_FILL_FRAMES = 50
"""Silence filled for one sequence gap at most (1 s): a wild jump allocates nothing more.
Beyond it, media time falls behind the sender's by the frames not filled."""


class FrameError(ValueError):
    """A frame this stream cannot take; the message names the offending field."""


@dataclass(frozen=True)
class Frame:
    """One accepted caller frame: its media frame index, audio, and the client's speech
    probability (None when stt runs its own VAD for the stream)."""

    index: int
    pcm: bytes
    speech_probability: float | None


def check_frame(audio: audio_pb2.AudioFrame, client_vad: bool) -> float | None:
    """Raise FrameError on a frame of the wrong size or, with `client_vad`, a speech
    probability outside 0..1; return that probability (None without `client_vad`)."""
    if len(audio.pcm) != FRAME_BYTES:
        raise FrameError(
            f"audio.pcm must be {FRAME_BYTES} bytes (20 ms of PCM16 16 kHz mono), got {len(audio.pcm)}"
        )
    if not client_vad:
        return None
    prob = audio.speech_probability
    if math.isnan(prob) or not 0.0 <= prob <= 1.0:
        raise FrameError(f"audio.speech_probability must be between 0 and 1, got {prob}")
    return prob


@dataclass(frozen=True)
class Placement:
    index: int
    """Media frame index of the frame."""
    lost: int
    """Frames missing just before it (its sequence jumped ahead by this many)."""
    unfilled: int
    """Of those, the ones beyond MAX_FILL_FRAMES: no media time is kept for them."""


class Timeline:
    """Turns each frame's sequence number into its media frame index."""

    def __init__(self, max_fill: int = MAX_FILL_FRAMES) -> None:
        if max_fill < 0:
            raise ValueError(f"max_fill must not be negative, got {max_fill}")
        self._max_fill = max_fill
        self._next_sequence: int | None = None  # None until the first frame sets the base
        self._next_index = 0

    def place(self, sequence: int) -> Placement | None:
        """Where the frame numbered `sequence` goes; None for a repeat or a step back."""
        expected = sequence if self._next_sequence is None else self._next_sequence
        if sequence < expected:
            return None
        lost = sequence - expected
        kept = min(lost, self._max_fill)
        index = self._next_index + kept
        self._next_index = index + 1
        self._next_sequence = sequence + 1
        return Placement(index=index, lost=lost, unfilled=lost - kept)
