"""Semantic end of turn: has the caller finished what they were saying?

Pipecat's Smart Turn v3.2 (CPU build, BSD-2-Clause; `scripts/models.sh` fetches it into
`.tools/models`) hears the last 8 s of an utterance and returns the probability that the
turn is complete, from the audio alone (intonation, rhythm, the words). It is a second
opinion beside the VAD's fixed silence, not a replacement for it.

The model's input contract (learnt from the reference, `transformers`'
`WhisperFeatureExtractor(chunk_length=8)` as Pipecat calls it):

- 16 kHz mono, the *last* 8 s (128 000 samples) of the utterance; a shorter one is
  zero-padded at the *start*, so the audio always ends where the window ends;
- the window normalised to zero mean and unit variance (in float32);
- Whisper's log-mel spectrogram of it: 25 ms periodic Hann frames (400-point FFT) every
  10 ms, centred (reflect padding), power spectrum onto 80 Slaney mel bands over
  0..8 kHz, log10 floored at 1e-10, clamped to 8 decades below the window's peak, then
  `(x + 4) / 4`; the frame centred on the very end is dropped, leaving 800 frames;
- input `input_features` float32 [batch, 80, 800]; output [batch, 1], already a sigmoid.

One `SmartTurnModel` is loaded per process and shared: `predict` holds no state, and the
onnxruntime session may be run from several threads at once.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from voicemesh.audio.frames import SAMPLE_RATE, pcm16_to_float

if TYPE_CHECKING:
    import onnxruntime

MODEL_FILE = "smart-turn-v3.2-cpu.onnx"
MODEL_ENV = "VOICEMESH_SMART_TURN_MODEL"
"""Environment variable naming another copy of the model file."""

WINDOW_SECONDS = 8
WINDOW_SAMPLES = WINDOW_SECONDS * SAMPLE_RATE  # 128 000
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 80
N_FRAMES = WINDOW_SAMPLES // HOP  # 800
INPUT_NAME = "input_features"

_NORM_EPS = 1e-7
_LOG_FLOOR = 1e-10
_DYNAMIC_RANGE = 8.0  # decades of log10 power kept below the window's loudest bin


def smart_turn_model_path() -> Path:
    """The model file: $VOICEMESH_SMART_TURN_MODEL, else `.tools/models/` of the repository
    this package sits in. FileNotFoundError, naming the path, when it is not there."""
    override = os.environ.get(MODEL_ENV)
    if override:
        path = Path(override)
        where = f"{MODEL_ENV}={override}"
    else:
        path = _repository() / ".tools" / "models" / MODEL_FILE
        where = str(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Smart Turn model not found at {where}: run `make env` (scripts/models.sh fetches it)"
        )
    return path


def _repository() -> Path:
    """The workspace root: the nearest directory above this file holding uv.lock."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "uv.lock").is_file():
            return parent
    return here.parents[5]  # libs/audio/src/voicemesh/audio/smart_turn.py


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear (3 mels per 200 Hz) below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    log_step = np.log(6.4) / 27.0
    return np.where(hz < 1000.0, hz * 3.0 / 200.0, 15.0 + np.log(np.maximum(hz, 1e-12) / 1000.0) / log_step)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    log_step = np.log(6.4) / 27.0
    return np.where(mel < 15.0, mel * 200.0 / 3.0, 1000.0 * np.exp((mel - 15.0) * log_step))


@cache
def mel_filterbank() -> np.ndarray:
    """Whisper's mel filters, float64 [80, 201]: triangles evenly spaced on Slaney's scale
    from 0 Hz to Nyquist, each scaled to unit area (Slaney normalisation)."""
    lowest, highest = _hz_to_mel(np.array([0.0, SAMPLE_RATE / 2]))
    edges = _mel_to_hz(np.linspace(lowest, highest, N_MELS + 2))
    bins = np.linspace(0.0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lower) / (centre - lower)
    falling = (upper - bins[None, :]) / (upper - centre)
    triangles = np.clip(np.minimum(rising, falling), 0.0, None)
    filters = np.asarray(triangles * (2.0 / (upper - lower)), dtype=np.float64)
    filters.flags.writeable = False  # cached: shared by every caller
    return filters


@cache
def _hann() -> np.ndarray:
    """Periodic Hann window of N_FFT points (the DFT-even one, as torch.hann_window)."""
    n = np.arange(N_FFT, dtype=np.float64)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / N_FFT)
    window.flags.writeable = False
    return window


def _window(samples: np.ndarray) -> np.ndarray:
    """The last WINDOW_SAMPLES samples, zero-padded at the start when shorter."""
    if samples.size >= WINDOW_SAMPLES:
        return samples[-WINDOW_SAMPLES:]
    return np.concatenate([np.zeros(WINDOW_SAMPLES - samples.size, dtype=samples.dtype), samples])


def log_mel(samples: np.ndarray) -> np.ndarray:
    """Whisper log-mel features, float32 [80, 800], of exactly WINDOW_SAMPLES float samples."""
    x = np.asarray(samples, dtype=np.float32)
    if x.shape != (WINDOW_SAMPLES,):
        raise ValueError(f"need {WINDOW_SAMPLES} samples, got shape {x.shape}")
    x = (x - x.mean()) / np.sqrt(x.var() + np.float32(_NORM_EPS))
    padded = np.pad(x.astype(np.float64), N_FFT // 2, mode="reflect")
    # Frame i is centred on sample i * HOP; the one centred on the last sample is not used.
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[: N_FRAMES * HOP : HOP]
    power = np.abs(np.fft.rfft(frames * _hann(), axis=-1)) ** 2  # [800, 201]
    mel = np.log10(np.maximum(mel_filterbank() @ power.T, _LOG_FLOOR))  # [80, 800]
    mel = np.maximum(mel, mel.max() - _DYNAMIC_RANGE)
    return np.asarray((mel + 4.0) / 4.0, dtype=np.float32)


class SmartTurnModel:
    """The loaded Smart Turn session. Load once per process; share across calls and threads."""

    def __init__(self, session: onnxruntime.InferenceSession) -> None:
        self.session = session

    @classmethod
    def load(cls, path: str | Path | None = None, threads: int = 1) -> SmartTurnModel:
        """Open the model (`smart_turn_model_path()` when no path is given), running each
        inference on `threads` threads. FileNotFoundError when the file is missing,
        ValueError when it is not this model."""
        import onnxruntime

        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        model_path = Path(path) if path is not None else smart_turn_model_path()
        if not model_path.is_file():
            raise FileNotFoundError(
                f"Smart Turn model not found at {model_path}: run `make env` (scripts/models.sh fetches it)"
            )
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = threads
        opts.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 4
        try:
            session = onnxruntime.InferenceSession(
                str(model_path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime raises its own types for a corrupt file
            raise ValueError(
                f"{model_path} is not a loadable ONNX model ({type(err).__name__}): "
                "run `make env` to fetch it again"
            ) from err
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if (
            len(inputs) != 1
            or inputs[0].name != INPUT_NAME
            or list(inputs[0].shape)[1:] != [N_MELS, N_FRAMES]
            or len(outputs) != 1
        ):
            shapes = [(i.name, i.shape) for i in inputs]
            raise ValueError(
                f"{model_path} is not the Smart Turn v3 model: inputs {shapes}, "
                f"expected one {INPUT_NAME!r} of [batch, {N_MELS}, {N_FRAMES}]"
            )
        return cls(session)

    def features(self, pcm16: bytes) -> np.ndarray:
        """The model's input for an utterance, float32 [80, 800]: log-mel of its last 8 s.
        `pcm16` is 16 kHz mono PCM16 LE of any length; ValueError on an odd byte count."""
        return log_mel(_window(pcm16_to_float(pcm16)))

    def predict(self, pcm16: bytes) -> float:
        """P(the turn is complete), 0..1, for the utterance so far (16 kHz mono PCM16 LE,
        any length; only its last 8 s are heard). ValueError on an odd byte count."""
        batch = self.features(pcm16)[np.newaxis]
        (out,) = self.session.run(None, {INPUT_NAME: batch})
        return float(np.clip(np.asarray(out).reshape(-1)[0], 0.0, 1.0))
