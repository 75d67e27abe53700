"""The held speech the short-decode tests and `bench/stt_decode.py` decode, with what is said.

- the e2e caller turns (`tests/e2e/fixtures/*.wav`, espeak at 16 kHz); what each says is
  read from `make_fixtures.sh`, which made them;
- JFK's 11 s at 16 kHz, and the same recording as 8 kHz G.711 μ-law phone audio, decoded and
  upsampled to 16 kHz the way the edge does (what is said: the assets' README);
- cuts of JFK's first 1, 2, 3 and 5 s: the lengths of a short turn or a partial; a cut ends
  mid-word, so it has no reference text (compare it with the full window's transcript).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import jiwer
import numpy as np

from voicemesh.audio import pcm16_to_float, read_wav
from voicemesh.audio.frames import SAMPLE_RATE
from voicemesh.audio.g711 import ulaw_decode
from voicemesh.audio.resample import resample

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "e2e" / "fixtures"
CUTS_S = (1, 2, 3, 5)
_NUMBERS = {"zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "seven": "7"}


@dataclass(frozen=True)
class Utterance:
    name: str
    audio: np.ndarray  # float32, 16 kHz mono
    text: str | None  # what is said; None for a cut

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE


def fixture_texts(script: Path = FIXTURES / "make_fixtures.sh") -> dict[str, str]:
    """`gen name "text"` lines of the fixtures' script: file stem -> what is said."""
    texts = {}
    for line in script.read_text().splitlines():
        words = shlex.split(line) if re.match(r"\s*gen(_\w+)? caller_", line) else []
        if len(words) == 3:
            texts[words[1]] = words[2]
    return texts


def asset_text(assets: Path, file_name: str) -> str:
    """The "what is said" column of the assets' README for `file_name`."""
    for line in (assets / "audio" / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == f"`{file_name}`":
            return cells[-1].strip('"')
    raise LookupError(f"{file_name} is not described in {assets / 'audio' / 'README.md'}")


def phone_to_16k(ulaw: bytes) -> np.ndarray:
    """8 kHz μ-law bytes -> float32 16 kHz, with the edge's own decoder and resampler."""
    pcm8 = np.frombuffer(ulaw_decode(ulaw), dtype=np.int16)
    pcm16 = resample(pcm8, 8000, SAMPLE_RATE)
    return pcm16_to_float(pcm16.astype(np.int16).tobytes())


def held_names() -> list[str]:
    """The names `held_utterances` returns, in its order (known without the audio)."""
    cuts = [f"jfk_first_{s}s" for s in CUTS_S]
    return [*sorted(fixture_texts()), "jfk16k", "jfk8k_ulaw", *cuts]


def held_utterances(assets: Path) -> list[Utterance]:
    out = []
    for name, text in sorted(fixture_texts().items()):
        pcm, _ = read_wav(FIXTURES / f"{name}.wav")
        out.append(Utterance(name, pcm16_to_float(pcm), text))
    jfk_text = asset_text(assets, "jfk16k.wav")
    jfk, _ = read_wav(assets / "audio" / "jfk16k.wav")
    jfk16 = pcm16_to_float(jfk)
    out.append(Utterance("jfk16k", jfk16, jfk_text))
    out.append(
        Utterance("jfk8k_ulaw", phone_to_16k((assets / "audio" / "jfk8k.ulaw").read_bytes()), jfk_text)
    )
    for s in CUTS_S:
        out.append(Utterance(f"jfk_first_{s}s", jfk16[: s * SAMPLE_RATE], None))
    return out


def normalise(text: str) -> str:
    """Lower case, no punctuation, hyphenated digits apart, small numbers as digits ("four"
    and "4" are the same word to a caller)."""
    words = re.sub(r"[^a-z0-9' ]", " ", text.lower().replace("-", " ")).split()
    return " ".join(_NUMBERS.get(w, w) for w in words)


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate of `hypothesis` against `reference`, both normalised."""
    ref, hyp = normalise(reference), normalise(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return float(jiwer.wer(ref, hyp))
