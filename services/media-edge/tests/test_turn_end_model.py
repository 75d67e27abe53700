"""Endpointing beyond silence: the end-of-turn model may end a turn early, never late.

Scripted frames (media time only): a check is asked once, `check_after_ms` into a pause; a
confident "complete" about that same pause ends the turn then; anything else leaves the
silence rule to end it at `endpoint_silence_ms`."""

from __future__ import annotations

import pytest

from voicemesh.edge import decisions as d
from voicemesh.edge.core import CallCore
from voicemesh.edge.turns import (
    CheckTurnEnd,
    EndOfTurn,
    EndpointBy,
    Resumed,
    SmartTurnConfig,
    TurnConfig,
    TurnState,
    TurnTaker,
)

pytestmark = pytest.mark.unit

SMART = TurnConfig(endpoint_silence_ms=500, smart_turn=SmartTurnConfig(check_after_ms=200, min_probability=0.8))


def feed(tt: TurnTaker, start: int, pattern: str) -> list[object]:
    """Frames from index `start`: '#' voiced, '.' silent."""
    out: list[object] = []
    for i, ch in enumerate(pattern):
        out.extend(tt.on_frame(start + i, ch == "#"))
    return out


def of(kind: type, out: list[object]) -> list:  # type: ignore[type-arg]
    return [x for x in out if isinstance(x, kind)]


def test_the_model_is_asked_once_200_ms_into_the_pause_about_the_whole_utterance() -> None:
    tt = TurnTaker(SMART)
    out = feed(tt, 0, "..." + "#" * 20 + "." * 9)  # speech in frames 3..22; 180 ms of pause
    assert of(CheckTurnEnd, out) == []
    out = feed(tt, 32, ".")  # the 10th silent frame: 200 ms
    assert of(CheckTurnEnd, out) == [CheckTurnEnd("t1", start_frame=3, last_voiced_frame=22, at_frame=32)]
    assert of(CheckTurnEnd, feed(tt, 33, "." * 10)) == []  # once per pause


def test_a_confident_complete_ends_the_turn_at_once_marked_as_the_models() -> None:
    tt = TurnTaker(SMART)
    feed(tt, 0, "#" * 20 + "." * 10)
    out = feed(tt, 30, "...")  # the model answers 60 ms later
    assert of(EndOfTurn, out) == []
    out = tt.on_turn_complete_hint("t1", 19, 0.93)
    assert of(EndOfTurn, out) == [EndOfTurn("t1", 19 * 20, 19, EndpointBy.MODEL)]
    assert tt.state is TurnState.THINKING
    # 260 ms after the last voiced frame instead of 500: the silence rule has nothing left
    assert of(EndOfTurn, feed(tt, 33, "." * 30)) == []


def test_an_unsure_answer_waits_for_the_silence() -> None:
    tt = TurnTaker(SMART)
    feed(tt, 0, "#" * 20 + "." * 12)
    assert tt.on_turn_complete_hint("t1", 19, 0.79) == []
    assert tt.state is TurnState.USER_SPEAKING
    out = feed(tt, 32, "." * 13)  # silent frames 20..44: the 25th is 500 ms
    assert of(EndOfTurn, out) == [EndOfTurn("t1", 19 * 20, 19, EndpointBy.SILENCE)]


def test_a_hint_after_the_caller_spoke_again_is_ignored() -> None:
    tt = TurnTaker(SMART)
    feed(tt, 0, "#" * 20 + "." * 10)  # asked about the pause after frame 19
    feed(tt, 30, "####..")  # ...but the caller went on
    assert tt.on_turn_complete_hint("t1", 19, 0.99) == []
    assert tt.state is TurnState.USER_SPEAKING
    out = feed(tt, 36, "." * 8)  # the new pause is asked about in its turn
    assert of(CheckTurnEnd, out) == [CheckTurnEnd("t1", 0, 33, 43)]
    assert of(EndOfTurn, tt.on_turn_complete_hint("t1", 33, 0.99)) == [EndOfTurn("t1", 660, 33, EndpointBy.MODEL)]


def test_a_hint_for_an_earlier_turn_is_ignored() -> None:
    tt = TurnTaker(SMART)
    feed(tt, 0, "#" * 20 + "." * 25)  # t1 ended on silence (the model never answered)
    feed(tt, 45, "#" * 10)  # the caller resumed: t2
    assert tt.turn_id == "t2"
    assert tt.on_turn_complete_hint("t1", 19, 0.99) == []
    assert tt.state is TurnState.USER_SPEAKING


def test_no_answer_leaves_the_silence_rule() -> None:
    tt = TurnTaker(SMART)
    out = feed(tt, 0, "#" * 20 + "." * 25)
    assert len(of(CheckTurnEnd, out)) == 1
    assert of(EndOfTurn, out) == [EndOfTurn("t1", 19 * 20, 19, EndpointBy.SILENCE)]
    assert tt.on_turn_complete_hint("t1", 19, 0.99) == []  # too late: already over


def test_a_resumed_turn_asks_about_the_whole_utterance() -> None:
    tt = TurnTaker(SMART)
    feed(tt, 0, "." * 5 + "#" * 20 + "." * 25)  # t1 from frame 5, over on silence
    out = feed(tt, 50, "#" * 10 + "." * 10)
    assert of(Resumed, out) == [Resumed("t1", "t2")]
    assert of(CheckTurnEnd, out) == [CheckTurnEnd("t2", 5, 59, 69)]


def test_without_the_model_nothing_changes() -> None:
    pattern = "." * 3 + "#" * 20 + "." * 12 + "#" * 5 + "." * 30 + "#" * 8 + "." * 30
    plain = TurnTaker(TurnConfig(endpoint_silence_ms=500))
    assert of(CheckTurnEnd, feed(plain, 0, pattern)) == []
    with_model = TurnTaker(SMART)
    assert [x for x in feed(TurnTaker(TurnConfig(endpoint_silence_ms=500)), 0, pattern)] == [
        x for x in feed(with_model, 0, pattern) if not isinstance(x, CheckTurnEnd)
    ]
    assert plain.on_turn_complete_hint("t1", 22, 1.0) == []


def test_a_check_after_the_endpoint_never_comes() -> None:
    tt = TurnTaker(TurnConfig(endpoint_silence_ms=200, smart_turn=SmartTurnConfig(check_after_ms=200)))
    out = feed(tt, 0, "#" * 10 + "." * 10)
    assert of(CheckTurnEnd, out) == [] and len(of(EndOfTurn, out)) == 1


# ---- the call core: the model's endpoint flushes stt and is timed like the silence's --------


def test_the_core_passes_the_check_on_and_ends_the_turn_on_the_answer() -> None:
    core = CallCore(SMART)
    now, out = 0.0, []
    for i in range(30):
        now = i * 0.02
        out += core.on_frame(i, i < 20, now)
    checks = [x for x in out if isinstance(x, CheckTurnEnd)]
    assert checks == [CheckTurnEnd("t1", 0, 19, 29)]
    out = core.on_turn_complete_hint("t1", 19, 0.9, now + 0.06)
    assert [x for x in out if isinstance(x, d.SttFlush)] == [d.SttFlush("t1")]
    ended = [x for x in out if isinstance(x, d.TurnEndedEvent)]
    assert len(ended) == 1 and ended[0].by is EndpointBy.MODEL
    assert ended[0].endpoint_ms == pytest.approx((now + 0.06 - 19 * 0.02) * 1000)
    assert core.state == "thinking"
    assert core.on_turn_complete_hint("t1", 19, 0.9, now + 0.1) == []  # once


def test_the_core_ignores_a_hint_once_the_call_is_over() -> None:
    core = CallCore(SMART)
    for i in range(30):
        core.on_frame(i, i < 20, i * 0.02)
    core.on_hangup()
    assert core.on_turn_complete_hint("t1", 19, 0.99, 1.0) == []
