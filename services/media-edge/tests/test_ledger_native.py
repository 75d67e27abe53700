from __future__ import annotations

import pytest

from voicemesh.edge.ledger import Response, Turn, turn_timing
from voicemesh.edge.native import BadMessage, parse_client_message

pytestmark = pytest.mark.unit


def test_what_the_caller_heard_is_the_clauses_whose_marks_came_back() -> None:
    resp = Response("r1", "t1", clauses=[(0, "Sorry,"), (600, "I didn't catch that."), (1900, "How many?")])
    assert resp.heard_text() == ""
    resp.heard = {0, 1}
    assert resp.heard_text() == "Sorry, I didn't catch that."


def test_turn_timing_splits_voice_to_voice_into_its_stages() -> None:
    turn = Turn("t1", last_voiced_frame=99, last_voiced_at=10.0, endpoint_at=10.5, final_at=10.502)
    resp = Response("r1", "t1", first_token_at=10.504, first_audio_at=10.550)
    timing = turn_timing(turn, resp, first_frame_sent_at=10.551)
    assert timing.endpoint_ms == pytest.approx(500)
    assert timing.stt_final_ms == pytest.approx(2)
    assert timing.first_token_ms == pytest.approx(2)
    assert timing.tts_first_audio_ms == pytest.approx(46)
    assert timing.edge_voice_to_voice_ms == pytest.approx(551)
    parts = timing.endpoint_ms + timing.stt_final_ms + timing.first_token_ms + timing.tts_first_audio_ms
    assert parts <= timing.edge_voice_to_voice_ms


def test_a_stage_done_before_the_one_ahead_of_it_lasts_nothing_instead_of_less() -> None:
    # the final transcript was ready before the endpoint was decided (a decode that ran
    # ahead): the stages still stack, and none is negative (the wire's fields are unsigned)
    turn = Turn("t1", last_voiced_frame=99, last_voiced_at=10.0, endpoint_at=10.3, final_at=10.25)
    resp = Response("r1", "t1", first_token_at=10.31, first_audio_at=10.4)
    timing = turn_timing(turn, resp, first_frame_sent_at=10.41)
    stages = (timing.endpoint_ms, timing.stt_final_ms, timing.first_token_ms, timing.tts_first_audio_ms)
    assert stages == pytest.approx((300, 0, 10, 90))
    assert sum(stages) <= timing.edge_voice_to_voice_ms == pytest.approx(410)


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("not json", "not a ClientMessage"),
        ('{"start": {"sample_rate_hz": "fast"}}', "not a ClientMessage"),
        ('{"dial": {}}', "not a ClientMessage"),
        ("{}", "none of: start, stop"),
    ],
)
def test_malformed_client_messages_name_the_problem(text: str, complaint: str) -> None:
    with pytest.raises(BadMessage, match=complaint):
        parse_client_message(text)


def test_a_valid_start_parses() -> None:
    msg = parse_client_message('{"start": {"agent": "restaurant", "sample_rate_hz": 8000}}')
    assert msg.start.agent == "restaurant" and msg.start.sample_rate_hz == 8000
