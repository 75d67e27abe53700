"""The agent's turn-taking settings, as reasoning sent them, for the call core.

Zero and absent fields keep the core's defaults, so an older reasoning service that sends
only the first fields still gets today's behaviour."""

from __future__ import annotations

from dataclasses import dataclass

from voicemesh.v1 import reasoning_pb2

from .echo import EchoConfig
from .fillers import FillerConfig
from .interruptions import DEFAULT_BACKCHANNELS, InterruptionRules, words
from .turns import SmartTurnConfig, TurnConfig


@dataclass(frozen=True)
class CallSettings:
    turns: TurnConfig
    interruptions: InterruptionRules
    echo: EchoConfig
    filler: FillerConfig | None = None


def smart_turn(profile: reasoning_pb2.AgentProfile) -> SmartTurnConfig | None:
    """The agent's end-of-turn model settings; None when off or not sent (an older reasoning)."""
    if not profile.HasField("smart_turn") or not profile.smart_turn.enabled:
        return None
    base, sent = SmartTurnConfig(), profile.smart_turn
    return SmartTurnConfig(
        check_after_ms=sent.check_after_ms or base.check_after_ms,
        min_probability=sent.min_probability or base.min_probability,
    )


def filler(profile: reasoning_pb2.AgentProfile) -> FillerConfig | None:
    """The agent's late-reply filler; None when off (no phrase) or not sent (an older reasoning)."""
    phrases = tuple(p for p in profile.filler.phrases if p.strip())
    if not profile.HasField("filler") or not phrases:
        return None
    return FillerConfig(after_ms=profile.filler.after_ms or 1000, phrases=phrases)


def call_settings(profile: reasoning_pb2.AgentProfile) -> CallSettings:
    base = TurnConfig()
    turns = TurnConfig(
        endpoint_silence_ms=profile.endpoint_silence_ms or base.endpoint_silence_ms,
        allow_barge_in=profile.allow_barge_in,
        idle_timeout_ms=profile.idle_timeout_ms,
        barge_in_min_speech_ms=profile.barge_in_min_speech_ms or base.barge_in_min_speech_ms,
        barge_in_min_words=(
            profile.barge_in_min_words if profile.HasField("barge_in_min_words") else base.barge_in_min_words
        ),
        smart_turn=smart_turn(profile),
    )
    backchannels = DEFAULT_BACKCHANNELS
    if profile.HasField("backchannels"):
        # "all right" in an agent file is two words as the caller's transcript is judged
        backchannels = frozenset(w for phrase in profile.backchannels.words for w in words(phrase))
    echo = EchoConfig()
    if profile.HasField("echo_margin_db"):
        echo = EchoConfig(margin_db=profile.echo_margin_db, tail_ms=echo.tail_ms)
    return CallSettings(turns, InterruptionRules(backchannels), echo, filler(profile))
