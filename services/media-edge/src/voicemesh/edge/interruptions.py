"""Is the caller really cutting in, or only saying "uh-huh" over the agent?

Pure: a transcript of what the caller said over the agent, and the text the agent was
saying, in; a verdict out. The call core pauses the agent at the caller's speech onset and
asks this once words arrive (a partial, or the final of the overlap): a real interruption
stops the reply, anything else lets it resume.

- backchannel: every word is a listening noise ("uh-huh", "okay", "yeah, right");
- echo: the words are the agent's own, heard back on the caller's line (a speakerphone,
  a carrier's hybrid): two or more words found in order in what the agent was saying;
- too_few_words: fewer words than the agent's `barge_in_min_words` (no words: a cough).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

# Listening noises and short acknowledgements that do not take the floor (English).
DEFAULT_BACKCHANNELS: frozenset[str] = frozenset(
    {
        "uh-huh", "uh", "huh", "um", "umm", "hmm", "hm", "mm", "mhm", "mm-hmm", "uh-hum",
        "ah", "oh", "okay", "ok", "yeah", "yep", "yes", "yup", "right", "sure", "alright",
        "all", "i", "see", "got", "it", "cool", "great", "nice", "wow", "exactly", "true",
        "really", "fine", "good",
    }
)  # fmt: skip
# "all right", "i see", "got it" are pairs of listed words.

_WORD = re.compile(r"[^\W_]+(?:['-][^\W_]+)*")  # letters and digits of any script


class Verdict(StrEnum):
    REAL = "real"
    BACKCHANNEL = "backchannel"
    ECHO = "echo"
    TOO_FEW_WORDS = "too_few_words"


def words(text: str) -> list[str]:
    """Lower-case words, punctuation dropped ("Uh-huh, OK." -> ["uh-huh", "ok"])."""
    return _WORD.findall(text.lower())


def _in_order(needle: list[str], haystack: list[str]) -> bool:
    """Every word of `needle` occurs in `haystack`, in the same order (gaps allowed)."""
    it = iter(haystack)
    return all(any(w == h for h in it) for w in needle)


@dataclass(frozen=True)
class InterruptionRules:
    backchannels: frozenset[str] = DEFAULT_BACKCHANNELS

    def judge(self, caller_text: str, agent_text: str, min_words: int = 1) -> Verdict:
        said = words(caller_text)
        if not said:
            return Verdict.TOO_FEW_WORDS
        content = [w for w in said if w not in self.backchannels]
        if not content:
            return Verdict.BACKCHANNEL
        if len(said) >= 2 and _in_order(said, words(agent_text)):
            return Verdict.ECHO
        if len(content) < min_words:
            return Verdict.TOO_FEW_WORDS
        return Verdict.REAL
