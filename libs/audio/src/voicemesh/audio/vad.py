"""Voice activity detection over 20 ms PCM16 16 kHz frames.

A `Vad` turns each frame into a speech probability; `VoiceActivity` turns probabilities
into a voiced/unvoiced decision with hysteresis. Two detectors:

- `SileroVad`: the Silero v6 ONNX model bundled with faster-whisper. One `SileroModel`
  (the loaded onnxruntime session, safe to call from several threads) is shared by many
  per-call `SileroVad` instances, each holding its own recurrent state. After a stretch
  of near-digital silence it starts afresh (grid of windows and state), so speech that
  follows quiet is judged the same wherever it falls in the stream.
- `WebRtcVad`: the WebRTC GMM detector; cheap, returns 1.0 or 0.0.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from voicemesh.audio.frames import FRAME_BYTES, SAMPLE_RATE

if TYPE_CHECKING:
    import onnxruntime

VAD_KINDS = ("silero", "webrtc")

_WINDOW = 512  # new samples per Silero inference (32 ms)
_CONTEXT = 64  # samples of the previous window prepended to each inference
_STATE_SHAPE = (1, 1, 128)
# A frame this quiet (RMS in PCM16 units, about -60 dBFS) holds no speech. After
# QUIET_FRAMES of them in a row the detector starts afresh at the next frame that is not.
QUIET_RMS = 32.0
QUIET_FRAMES = 5


@runtime_checkable
class Vad(Protocol):
    """Speech probability for each 20 ms frame of one call's audio."""

    def process(self, frame: bytes) -> float:
        """Speech probability 0..1 for one 640-byte frame; ValueError on another size."""
        ...

    def reset(self) -> None:
        """Forget everything heard so far (a new call or a new utterance)."""
        ...


def _check_frame(frame: bytes) -> None:
    if len(frame) != FRAME_BYTES:
        raise ValueError(
            f"VAD frame must be {FRAME_BYTES} bytes (20 ms PCM16 at {SAMPLE_RATE} Hz), got {len(frame)}"
        )


def silero_model_path() -> Path:
    """Where faster-whisper keeps its bundled Silero VAD model."""
    spec = importlib.util.find_spec("faster_whisper")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("faster-whisper is not installed; it carries the Silero VAD model")
    return Path(spec.origin).parent / "assets" / "silero_vad_v6.onnx"


class SileroModel:
    """The loaded Silero ONNX session. Load once per process; share across calls."""

    def __init__(self, session: onnxruntime.InferenceSession) -> None:
        self.session = session

    @classmethod
    def load(cls, path: str | Path | None = None) -> SileroModel:
        import onnxruntime

        model_path = Path(path) if path is not None else silero_model_path()
        if not model_path.is_file():
            raise FileNotFoundError(f"Silero VAD model not found at {model_path}")
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 4
        session = onnxruntime.InferenceSession(
            str(model_path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        return cls(session)

    def infer(self, window: np.ndarray, h: np.ndarray, c: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """One step: `window` is float32 [1, 576] (64 context + 512 new samples)."""
        probs, hn, cn = self.session.run(None, {"input": window, "h": h, "c": c})
        return float(np.asarray(probs).reshape(-1)[-1]), hn, cn


class SileroVad:
    """Per-call Silero detector; buffers 20 ms frames into 512-sample windows (the step the
    model was trained on).

    `process` returns the probability of the most recent complete window (0.0 before the
    first), so it lags the audio by up to one window (32 ms).

    The grid of 512-sample windows falls against 20 ms frames in one of 8 phases, and the
    phase changes a window's probability: the same utterance would be voiced on slightly
    different frames depending on how many frames came before it (and so be decoded over a
    different span, and transcribed differently). So after `QUIET_FRAMES` frames of
    near-digital silence (no speech can hide there) the detector resets: probability 0
    without inference until a frame is louder, which then starts a new grid and a fresh
    state. Speech after quiet is judged exactly as if the call had begun with it.
    """

    def __init__(self, session: SileroModel | None = None) -> None:
        self.model = session if session is not None else SileroModel.load()
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._c = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._context = np.zeros(_CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        self._prob = 0.0
        self._quiet = 0

    def process(self, frame: bytes) -> float:
        _check_frame(frame)
        pcm = np.frombuffer(frame, dtype="<i2").astype(np.float32)
        if float(np.mean(pcm * pcm)) < QUIET_RMS * QUIET_RMS:
            self._quiet += 1
            if self._quiet == QUIET_FRAMES:
                self.reset()
                self._quiet = QUIET_FRAMES
            if self._quiet >= QUIET_FRAMES:
                return 0.0
        else:
            self._quiet = 0
        samples = pcm / np.float32(32768.0)
        self._pending = np.concatenate([self._pending, samples])
        while self._pending.size >= _WINDOW:
            new, self._pending = self._pending[:_WINDOW], self._pending[_WINDOW:]
            window = np.concatenate([self._context, new])[np.newaxis, :]
            self._prob, self._h, self._c = self.model.infer(window, self._h, self._c)
            self._context = new[-_CONTEXT:]
        return self._prob


class WebRtcVad:
    """WebRTC's detector: 1.0 for speech, 0.0 otherwise. `aggressiveness` 0 (lenient)..3."""

    def __init__(self, aggressiveness: int = 2) -> None:
        if aggressiveness not in (0, 1, 2, 3):
            raise ValueError(f"webrtc VAD aggressiveness must be 0, 1, 2 or 3, got {aggressiveness}")
        import webrtcvad

        self.aggressiveness = aggressiveness
        self._vad: Any = webrtcvad.Vad(aggressiveness)

    def process(self, frame: bytes) -> float:
        _check_frame(frame)
        return 1.0 if self._vad.is_speech(frame, SAMPLE_RATE) else 0.0

    def reset(self) -> None:
        """WebRTC's detector adapts per frame; a fresh one is equivalent to a reset."""
        import webrtcvad

        self._vad = webrtcvad.Vad(self.aggressiveness)


def create_vad(
    kind: str = "silero",
    *,
    silero_model: SileroModel | None = None,
    aggressiveness: int = 2,
) -> Vad:
    """A per-call detector of `kind` ("silero" or "webrtc")."""
    if kind == "silero":
        return SileroVad(silero_model)
    if kind == "webrtc":
        return WebRtcVad(aggressiveness)
    raise ValueError(f"unknown VAD kind {kind!r} (choose one of: {', '.join(VAD_KINDS)})")


class VoiceActivity:
    """Hysteresis over per-frame speech probabilities.

    Becomes voiced when a probability reaches `threshold` and stays voiced until one
    falls below `release`, so a word's quiet tail does not flap the decision.
    """

    def __init__(self, threshold: float = 0.5, release: float = 0.35) -> None:
        if not 0.0 <= release <= threshold <= 1.0:
            raise ValueError(
                f"need 0 <= release <= threshold <= 1, got threshold={threshold} release={release}"
            )
        self.threshold = threshold
        self.release = release
        self.voiced = False

    def update(self, prob: float) -> bool:
        self.voiced = bool(prob >= (self.release if self.voiced else self.threshold))
        return self.voiced

    def reset(self) -> None:
        self.voiced = False
