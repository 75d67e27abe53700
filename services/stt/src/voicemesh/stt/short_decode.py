"""The pure rules of the short decode (issue 11): how much silence an utterance is padded
with, how many tokens its decode may produce, and when its transcript is not to be trusted,
so the engine decodes again over Whisper's full 30 s window.

faster-whisper pads every input to a 30 s window, so a decode costs about the same for 1 s
of speech as for 30 s. The short decode gives the encoder the utterance plus a few seconds
of digital silence instead. Whisper was trained on 30 s windows, and on a short one it
sometimes loops ("My name is Alice. My name is Alice. My name is Alice.") or runs on; the
rules here catch that from the output alone, and the engine falls back to the full window.
A fallback costs a short decode more than the full one would have, and gives exactly the
full window's transcript.

No model, no clock, no I/O: the engine asks `ShortDecodeRules` what to do and acts on it.
"""

from __future__ import annotations

import math
import string
import zlib
from dataclasses import dataclass
from enum import StrEnum

from voicemesh.audio.frames import SAMPLE_RATE

_EDGE_PUNCTUATION = string.punctuation + "…¿¡“”‘’«»"
# Whisper's text context is 448 positions; a decode generates at most half of them.
MAX_NEW_TOKENS = 224


class Fallback(StrEnum):
    """Why a short decode's transcript was dropped for a full-window decode."""

    TOKEN_CAP = "token_cap"  # generation stopped at the cap, not at end-of-text
    REPETITION = "repetition"  # a run of words repeats back to back
    COMPRESSION = "compression"  # the text compresses like a loop (Whisper's gzip ratio)
    TOO_LONG = "too_long"  # more words than the audio can hold
    NO_SPEECH = "no_speech"  # the model calls the audio silence: the full window's guard decides


@dataclass(frozen=True)
class ShortDecodeRules:
    """When the short decode runs and when its output is dropped.

    Defaults are measured on tiny.en (docs/performance.md, "Short decodes"): over 131 held
    and synthetic utterances and cuts, 4 s of silence loops (and falls back) on 6, 3 s on
    10, 1 s on a third of the 41 held ones; 6 s on none, but then a held turn is misheard
    with no loop to catch it. Kept transcripts are as good as the full window's against
    what was said.
    """

    pad_s: float = 4.0
    """Digital silence after the utterance: the encoder sees the utterance plus this much."""
    max_audio_s: float = 25.0
    """Longer utterances take the full window (the short window saves little there)."""
    tokens_per_s: float = 6.0
    token_slack: int = 6
    """Tokens the decode may produce: `tokens_per_s` a second of audio plus the slack. The
    held speech reads at 2-3.5 tokens a second (digits included); a decode that reaches the
    cap is looping, and the cap also bounds what a loop costs before the fallback."""
    words_per_s: float = 5.0
    word_slack: int = 3
    """More words than this a second (plus the slack) is more than anyone says."""
    compression_ratio: float = 2.4
    """Whisper's own loop guard: gzip ratio of the text above this is a loop."""
    max_no_speech_prob: float = 0.6
    """Above this (Whisper's no-speech threshold) the model thinks the audio is silence. On a
    short window it then still writes a confident "you" on digital silence, which the full
    window's silence guard drops; so the full window decides."""

    def __post_init__(self) -> None:
        checks = {
            "pad_s": self.pad_s >= 0,
            "max_audio_s": 0 < self.max_audio_s + self.pad_s <= 30,
            "tokens_per_s": self.tokens_per_s > 0,
            "token_slack": self.token_slack >= 1,
            "words_per_s": self.words_per_s > 0,
            "word_slack": self.word_slack >= 0,
            "compression_ratio": self.compression_ratio > 1,
            "max_no_speech_prob": 0 < self.max_no_speech_prob <= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(
                f"ShortDecodeRules: invalid {', '.join(bad)} (pad_s >= 0, max_audio_s + pad_s "
                f"<= 30, positive rates, token_slack >= 1, compression_ratio > 1, "
                f"0 < max_no_speech_prob <= 1)"
            )

    def applies(self, samples: int) -> bool:
        """Whether audio of `samples` 16 kHz samples takes the short decode at all."""
        return 0 < samples <= self.max_audio_s * SAMPLE_RATE

    @property
    def pad_samples(self) -> int:
        return round(self.pad_s * SAMPLE_RATE)

    def max_new_tokens(self, samples: int) -> int:
        """The cap on generated tokens (the prompt not counted) for `samples` of audio."""
        return min(MAX_NEW_TOKENS, math.ceil(self.tokens_per_s * samples / SAMPLE_RATE) + self.token_slack)

    def verdict(self, text: str, tokens: int, samples: int, no_speech_prob: float) -> Fallback | None:
        """None when the short decode's `text` (`tokens` generated, the model's no-speech
        probability) can stand for `samples` of audio; else why the full window must decode
        it again."""
        if tokens >= self.max_new_tokens(samples):
            return Fallback.TOKEN_CAP
        if no_speech_prob > self.max_no_speech_prob:
            return Fallback.NO_SPEECH
        words = normalized_words(text)
        if has_loop(words):
            return Fallback.REPETITION
        if text and compression_ratio(text) > self.compression_ratio:
            return Fallback.COMPRESSION
        if len(words) > self.words_per_s * samples / SAMPLE_RATE + self.word_slack:
            return Fallback.TOO_LONG
        return None


def normalized_words(text: str) -> list[str]:
    """Lower-case words with the punctuation around them stripped ("Car?" -> "car")."""
    words = (w.strip(_EDGE_PUNCTUATION).lower() for w in text.split())
    return [w for w in words if w]


def has_loop(words: list[str]) -> bool:
    """A unit of words repeated back to back beyond what speech does: one word said four
    times in a row, a pair two and a half times, three or more words twice ("my name is
    alice my name is alice"). Speech does that rarely, and then the fallback only costs
    time: the full window decodes it again."""
    n = len(words)
    for period in range(1, n // 2 + 1):
        need = max(period, 3)
        run = 0
        for i in range(n - period):
            run = run + 1 if words[i] == words[i + period] else 0
            if run >= need:
                return True
    return False


def compression_ratio(text: str) -> float:
    """Bytes of `text` over bytes of its zlib compression (Whisper's loop measure)."""
    raw = text.encode("utf-8")
    return len(raw) / len(zlib.compress(raw))


def ct2_max_length(prompt_tokens: int, new_tokens: int) -> int:
    """The `max_length` to give CTranslate2's `Whisper.generate` for at most `new_tokens`
    generated tokens after a prompt of `prompt_tokens`. CTranslate2 (4.x, whisper.cc)
    decodes at most min(max_length / 2, max_length - (prompt_tokens - 1)) steps, so
    "prompt plus cap" would cut the decode at half the cap."""
    if prompt_tokens < 1 or new_tokens < 1:
        raise ValueError(f"need a prompt and a cap, got {prompt_tokens} and {new_tokens}")
    return max(2 * new_tokens, new_tokens + prompt_tokens - 1)
