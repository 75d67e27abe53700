from __future__ import annotations

import numpy as np
import pytest

from voicemesh.audio import (
    FRAME_BYTES,
    VAD_KINDS,
    SileroModel,
    SileroVad,
    VoiceActivity,
    WebRtcVad,
    create_vad,
    split_frames,
)
from voicemesh.audio.vad import QUIET_FRAMES, Vad

pytestmark = pytest.mark.unit

FRAMES_PER_SECOND = 50


def _probabilities(vad: Vad, pcm: bytes) -> np.ndarray:
    return np.array([vad.process(frame) for frame in split_frames(pcm)])


def test_silero_hears_the_speech_and_not_the_lead_in(silero_model: SileroModel, jfk_pcm: bytes) -> None:
    probs = _probabilities(SileroVad(silero_model), jfk_pcm)
    lead_in = probs[: int(0.3 * FRAMES_PER_SECOND)]
    assert lead_in.max() < 0.5
    # the recording is speech from ~0.35 s to ~10.5 s with short pauses between phrases
    speech = probs[int(0.5 * FRAMES_PER_SECOND) : int(10.4 * FRAMES_PER_SECOND)]
    assert np.mean(speech >= 0.5) > 0.6
    assert probs.max() > 0.9


def test_silero_says_digital_silence_is_not_speech(silero_model: SileroModel) -> None:
    vad = SileroVad(silero_model)
    probs = [vad.process(bytes(FRAME_BYTES)) for _ in range(FRAMES_PER_SECOND)]
    assert probs[0] == 0.0  # no full 512-sample window yet
    assert max(probs) < 0.1
    assert probs[-1] < 0.01


def test_silero_streaming_matches_one_batched_inference(silero_model: SileroModel, jfk_pcm: bytes) -> None:
    """20 ms frames in, 512-sample windows with 64 samples of context, state carried."""
    vad = SileroVad(silero_model)
    window_probs = []
    for i, frame in enumerate(split_frames(jfk_pcm)):
        prob = vad.process(frame)
        if ((i + 1) * 320) // 512 > (i * 320) // 512:  # this frame completed a window
            window_probs.append(prob)
    x = np.frombuffer(jfk_pcm, dtype="<i2").astype(np.float32) / 32768
    windows = x[: len(x) // 512 * 512].reshape(-1, 512)
    context = np.vstack([np.zeros((1, 64), np.float32), windows[:-1, -64:]])
    state = np.zeros((1, 1, 128), np.float32)
    batched, _, _ = silero_model.session.run(
        None, {"input": np.hstack([context, windows]), "h": state, "c": state}
    )
    assert len(window_probs) == len(windows)
    np.testing.assert_allclose(window_probs, np.asarray(batched).reshape(-1), atol=1e-4)


def test_silero_decisions_do_not_depend_on_how_much_silence_came_first(
    silero_model: SileroModel, jfk_pcm: bytes
) -> None:
    """The same speech after 50..57 frames of silence (every phase of 20 ms frames against
    512-sample windows) is voiced on the same frames, counted from the speech's start; and
    so is speech that follows other speech and a quiet gap."""
    speech = split_frames(jfk_pcm)
    decisions = set()
    for lead in range(50, 58):
        vad, activity = SileroVad(silero_model), VoiceActivity()
        voiced = [activity.update(vad.process(frame)) for frame in [bytes(FRAME_BYTES)] * lead + speech]
        decisions.add(tuple(voiced[lead:]))
        again = [activity.update(vad.process(frame)) for frame in [bytes(FRAME_BYTES)] * lead + speech]
        decisions.add(tuple(again[lead:]))
    assert len(decisions) == 1


def test_silero_skips_inference_in_digital_silence(silero_model: SileroModel) -> None:
    calls = 0
    real = silero_model.infer

    def counting(*args):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        return real(*args)

    silero_model.infer = counting  # type: ignore[method-assign]
    try:
        vad = SileroVad(silero_model)
        probs = [vad.process(bytes(FRAME_BYTES)) for _ in range(100)]
    finally:
        del silero_model.infer
    assert max(probs) < 0.1
    assert max(probs[QUIET_FRAMES - 1 :]) == 0.0
    assert calls <= 3  # the windows completed before the quiet run counted


def test_calls_sharing_one_model_keep_their_own_state(silero_model: SileroModel, jfk_pcm: bytes) -> None:
    alone = _probabilities(SileroVad(silero_model), jfk_pcm[: 2 * 32000])
    talker, quiet = SileroVad(silero_model), SileroVad(silero_model)
    interleaved = []
    for frame in split_frames(jfk_pcm[: 2 * 32000]):
        interleaved.append(talker.process(frame))
        quiet.process(bytes(FRAME_BYTES))
    np.testing.assert_allclose(interleaved, alone, atol=1e-6)


def test_silero_reset_forgets_the_call(silero_model: SileroModel, jfk_pcm: bytes) -> None:
    vad = SileroVad(silero_model)
    first = _probabilities(vad, jfk_pcm[:32000])
    vad.reset()
    assert vad.process(bytes(FRAME_BYTES)) == 0.0
    vad.reset()
    np.testing.assert_allclose(_probabilities(vad, jfk_pcm[:32000]), first, atol=1e-6)


@pytest.mark.parametrize("kind", VAD_KINDS)
def test_frames_of_the_wrong_size_are_refused(kind: str, silero_model: SileroModel) -> None:
    vad = create_vad(kind, silero_model=silero_model)
    with pytest.raises(ValueError, match="640 bytes"):
        vad.process(bytes(320))


def test_webrtc_hears_the_speech(jfk_pcm: bytes) -> None:
    probs = _probabilities(WebRtcVad(3), jfk_pcm)
    assert set(np.unique(probs)) <= {0.0, 1.0}
    assert np.mean(probs[int(0.5 * FRAMES_PER_SECOND) : int(10.4 * FRAMES_PER_SECOND)]) > 0.6
    assert _probabilities(WebRtcVad(3), bytes(FRAME_BYTES * 20)).max() == 0.0


def test_webrtc_aggressiveness_is_checked() -> None:
    with pytest.raises(ValueError, match="0, 1, 2 or 3"):
        WebRtcVad(4)


def test_create_vad_builds_each_kind(silero_model: SileroModel) -> None:
    assert isinstance(create_vad(silero_model=silero_model), SileroVad)
    webrtc = create_vad("webrtc", aggressiveness=1)
    assert isinstance(webrtc, WebRtcVad) and webrtc.aggressiveness == 1


def test_create_vad_names_the_choices_for_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match=r"unknown VAD kind 'energy' \(choose one of: silero, webrtc\)"):
        create_vad("energy")


def test_voice_activity_hysteresis() -> None:
    activity = VoiceActivity(threshold=0.5, release=0.35)
    probs = [0.1, 0.49, 0.5, 0.4, 0.36, 0.34, 0.45, 0.6, 0.2]
    assert [activity.update(p) for p in probs] == [False, False, True, True, True, False, False, True, False]
    activity.update(0.9)
    activity.reset()
    assert activity.update(0.4) is False


def test_voice_activity_thresholds_are_checked() -> None:
    with pytest.raises(ValueError, match="release <= threshold"):
        VoiceActivity(threshold=0.3, release=0.5)


def test_voice_activity_over_silero_finds_the_phrases(silero_model: SileroModel, jfk_pcm: bytes) -> None:
    activity = VoiceActivity()
    voiced = [activity.update(p) for p in _probabilities(SileroVad(silero_model), jfk_pcm)]
    starts = sum(1 for a, b in zip([False, *voiced], voiced, strict=False) if b and not a)
    assert 2 <= starts <= 8  # a handful of phrases, not a flicker per syllable
    assert voiced[-1] is False  # the recording ends in silence
