"""Pure audio cores for voicemesh: framing, G.711, resampling, WAV input and VAD."""

from __future__ import annotations

from voicemesh.audio.frames import (
    FRAME_BYTES,
    FRAME_MS,
    FRAME_SAMPLES,
    SAMPLE_RATE,
    SILENCE_DBFS,
    Framer,
    float_to_pcm16,
    pcm16_to_float,
    rms_dbfs,
    split_frames,
)
from voicemesh.audio.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from voicemesh.audio.resample import StreamResampler, resample
from voicemesh.audio.vad import (
    VAD_KINDS,
    SileroModel,
    SileroVad,
    Vad,
    VoiceActivity,
    WebRtcVad,
    create_vad,
)
from voicemesh.audio.wav import SUPPORTED_RATES, AudioFormatError, WavInfo, read_wav, write_wav

__all__ = [
    "FRAME_BYTES",
    "FRAME_MS",
    "FRAME_SAMPLES",
    "SAMPLE_RATE",
    "SILENCE_DBFS",
    "SUPPORTED_RATES",
    "VAD_KINDS",
    "AudioFormatError",
    "Framer",
    "SileroModel",
    "SileroVad",
    "StreamResampler",
    "Vad",
    "VoiceActivity",
    "WavInfo",
    "WebRtcVad",
    "alaw_decode",
    "alaw_encode",
    "create_vad",
    "float_to_pcm16",
    "pcm16_to_float",
    "read_wav",
    "resample",
    "rms_dbfs",
    "split_frames",
    "ulaw_decode",
    "ulaw_encode",
    "write_wav",
]
