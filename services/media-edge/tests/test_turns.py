from __future__ import annotations

import pytest

from voicemesh.edge.turns import (
    BargeIn,
    EndOfTurn,
    IdleTimeout,
    Resumed,
    SpeechStarted,
    StateChange,
    TurnConfig,
    TurnState,
    TurnTaker,
)

pytestmark = pytest.mark.unit


def feed(tt: TurnTaker, start: int, pattern: str) -> list[object]:
    """Feed frames from index `start`: '#' voiced, '.' silent."""
    out: list[object] = []
    for i, ch in enumerate(pattern):
        out.extend(tt.on_frame(start + i, ch == "#"))
    return out


def kinds(decisions: list[object]) -> list[type]:
    return [type(d) for d in decisions if not isinstance(d, StateChange)]


def test_speech_then_silence_ends_the_turn_after_the_endpoint_silence() -> None:
    tt = TurnTaker(TurnConfig(endpoint_silence_ms=200))
    out = feed(tt, 0, "..####" + "#" * 20 + "." * 9)
    assert kinds(out) == [SpeechStarted]
    assert tt.state is TurnState.USER_SPEAKING
    out = feed(tt, 35, ".")  # the 10th silent frame = 200 ms
    end = [d for d in out if isinstance(d, EndOfTurn)]
    assert end == [EndOfTurn("t1", last_voiced_ms=25 * 20, last_voiced_frame=25)]
    assert tt.state is TurnState.THINKING


def test_a_click_shorter_than_min_speech_is_not_a_turn() -> None:
    tt = TurnTaker(TurnConfig(min_speech_ms=60))
    assert feed(tt, 0, "..##....##....") == []
    assert tt.state is TurnState.LISTENING


def test_pauses_shorter_than_the_endpoint_keep_the_turn() -> None:
    tt = TurnTaker(TurnConfig(endpoint_silence_ms=500))
    out = feed(tt, 0, "#" * 10 + "." * 20 + "#" * 10 + "." * 24)
    assert kinds(out) == [SpeechStarted]


def test_speaking_again_before_the_reply_supersedes_the_turn() -> None:
    tt = TurnTaker(TurnConfig(endpoint_silence_ms=100))
    out = feed(tt, 0, "#" * 5 + "." * 5)
    assert kinds(out) == [SpeechStarted, EndOfTurn]
    out = feed(tt, 10, "###")
    assert [d for d in out if isinstance(d, Resumed)] == [Resumed("t1", "t2")]
    assert tt.state is TurnState.USER_SPEAKING and tt.turn_id == "t2"


def test_barge_in_needs_longer_speech_and_can_be_disabled() -> None:
    tt = TurnTaker(TurnConfig(barge_in_min_speech_ms=200, barge_in_min_words=0))
    tt.on_reply_started()
    assert tt.state is TurnState.AGENT_SPEAKING
    assert feed(tt, 0, "#" * 9) == []  # 180 ms: not yet
    out = feed(tt, 9, "#")
    assert kinds(out) == [BargeIn, SpeechStarted]
    off = TurnTaker(TurnConfig(allow_barge_in=False))
    off.on_reply_started()
    assert feed(off, 0, "#" * 50) == []


def test_reply_lifecycle_returns_to_listening() -> None:
    tt = TurnTaker(TurnConfig(endpoint_silence_ms=100))
    feed(tt, 0, "#" * 5 + "." * 5)
    assert [d.state for d in tt.on_reply_started() if isinstance(d, StateChange)] == [
        TurnState.AGENT_SPEAKING
    ]
    assert [d.state for d in tt.on_reply_finished() if isinstance(d, StateChange)] == [TurnState.LISTENING]
    assert tt.on_nothing_to_say() == []


def test_a_turn_with_no_words_goes_back_to_listening() -> None:
    tt = TurnTaker(TurnConfig(endpoint_silence_ms=100))
    feed(tt, 0, "#" * 5 + "." * 5)
    assert tt.state is TurnState.THINKING
    tt.on_nothing_to_say()
    assert tt.state is TurnState.LISTENING


def test_silence_while_listening_gives_the_agent_an_empty_turn_once() -> None:
    tt = TurnTaker(TurnConfig(idle_timeout_ms=1000))
    out = feed(tt, 0, "." * 49)
    assert out == []
    out = feed(tt, 49, ".")
    assert [d for d in out if isinstance(d, IdleTimeout)] == [IdleTimeout("t1")]
    assert tt.state is TurnState.THINKING
    assert feed(tt, 50, "." * 100) == []  # no second nudge while the agent answers
    tt.on_reply_started()
    tt.on_reply_finished()
    assert kinds(feed(tt, 150, "." * 50)) == [IdleTimeout]


def test_speech_resets_the_idle_clock_and_zero_disables_it() -> None:
    tt = TurnTaker(TurnConfig(idle_timeout_ms=1000))
    assert kinds(feed(tt, 0, "." * 40 + "#" + "." * 40)) == []
    off = TurnTaker(TurnConfig(idle_timeout_ms=0))
    assert feed(off, 0, "." * 1000) == []
