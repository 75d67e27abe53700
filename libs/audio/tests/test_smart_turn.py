"""Smart Turn: the semantic end-of-turn model the media-edge asks for a second opinion.

Needs the model in .tools/models (`make env` fetches it; scripts/models.sh): without it
these tests fail with the loader's message, they do not skip.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from voicemesh.audio.frames import SAMPLE_RATE
from voicemesh.audio.smart_turn import (
    MODEL_ENV,
    N_FRAMES,
    N_MELS,
    WINDOW_SAMPLES,
    SmartTurnModel,
    smart_turn_model_path,
)
from voicemesh.audio.wav import read_wav

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "e2e" / "fixtures"
BYTES_PER_SECOND = 2 * SAMPLE_RATE


def _seconds(pcm: bytes, start: float | None = None, end: float | None = None) -> bytes:
    lo = 0 if start is None else int(start * SAMPLE_RATE) * 2
    hi = len(pcm) if end is None else int(end * SAMPLE_RATE) * 2
    return pcm[lo:hi]


def _silence(seconds: float) -> bytes:
    return bytes(int(seconds * SAMPLE_RATE) * 2)


@pytest.fixture(scope="module")
def model() -> SmartTurnModel:
    try:
        return SmartTurnModel.load(smart_turn_model_path())
    except FileNotFoundError as err:
        pytest.fail(str(err))


# --- what the edge relies on: complete reads complete, cut mid-phrase reads unfinished -----


def test_a_finished_sentence_reads_complete(model: SmartTurnModel, jfk_pcm: bytes) -> None:
    """The whole recording ends "... ask what you can do for your country." and 0.5 s of
    the room; the model hears its last 8 s."""
    assert model.predict(jfk_pcm) > 0.7
    # Just after the last word, as the VAD's silence starts.
    assert model.predict(_seconds(jfk_pcm, end=10.5) + _silence(0.2)) > 0.9


@pytest.mark.parametrize("cut", [6.4, 6.5])
def test_the_same_speech_cut_mid_phrase_reads_unfinished(
    model: SmartTurnModel, jfk_pcm: bytes, cut: float
) -> None:
    """Cut after "ask not what your country" (faster-whisper's word timings put "country"
    at 6.04-6.36 s, "can" from 6.36 s; the level dips at 6.4 s)."""
    unfinished = _seconds(jfk_pcm, end=cut) + _silence(0.2)
    p_cut = model.predict(unfinished)
    assert p_cut < 0.3
    assert model.predict(jfk_pcm) - p_cut > 0.5


@pytest.mark.parametrize("name", ["caller_name.wav", "caller_yes.wav", "caller_when.wav"])
def test_short_complete_answers_read_complete(model: SmartTurnModel, name: str) -> None:
    """Complete turns from the e2e calls ("My name is Alice.", "Yes, that's right.",
    "Tomorrow at seven thirty in the evening.") followed by 0.2 s of silence. (Other
    espeak-ng fixtures, complete as text, read unfinished: see bench/smart_turn.py.)"""
    pcm, _ = read_wav(FIXTURES / name)
    assert model.predict(pcm + _silence(0.2)) > 0.8


# --- the window: the last 8 s, zero-padded at the start ------------------------------------


def test_only_the_last_eight_seconds_are_heard(model: SmartTurnModel, jfk_pcm: bytes) -> None:
    assert len(jfk_pcm) > WINDOW_SAMPLES * 2
    tail = jfk_pcm[-WINDOW_SAMPLES * 2 :]
    np.testing.assert_array_equal(model.features(jfk_pcm), model.features(tail))
    assert model.predict(jfk_pcm) == model.predict(tail)


def test_short_input_is_padded_with_silence_before_it(model: SmartTurnModel, jfk_pcm: bytes) -> None:
    short = _seconds(jfk_pcm, end=3.0)
    np.testing.assert_array_equal(model.features(short), model.features(_silence(5.0) + short))


def test_any_length_is_accepted(model: SmartTurnModel) -> None:
    for pcm in (b"", b"\x01\x00", _silence(0.02), _silence(12.0)):
        features = model.features(pcm)
        assert features.shape == (N_MELS, N_FRAMES)
        assert features.dtype == np.float32
        assert np.isfinite(features).all()
        assert 0.0 <= model.predict(pcm) <= 1.0


def test_odd_byte_count_is_refused(model: SmartTurnModel, jfk_pcm: bytes) -> None:
    with pytest.raises(ValueError, match="PCM16"):
        model.predict(jfk_pcm[:-1])
    with pytest.raises(ValueError, match="PCM16"):
        model.features(b"\x00")


def test_predict_is_safe_from_several_threads(model: SmartTurnModel, jfk_pcm: bytes) -> None:
    inputs = [_seconds(jfk_pcm, end=end) for end in (3.0, 6.4, 8.0, 11.0)] * 2
    expected = [model.predict(pcm) for pcm in inputs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(model.predict, inputs)) == expected


# --- features against the reference ---------------------------------------------------------

# Computed once, outside this project (in a scratch venv), with the reference that Smart
# Turn's inference follows: transformers 5.24.0 `WhisperFeatureExtractor(chunk_length=8)`
# called on `window` with sampling_rate=16000, padding="max_length", max_length=128000,
# truncation=True, do_normalize=True (as Pipecat 1.14's Smart Turn v3 calls it). `window` is
# the last 8 s of jfk16k.wav as float32 (PCM16 / 32768), zero-padded at the start; for
# "first_3s" the recording's first 3.0 s. Kept: frames 0 and 799 (all 80 mel bands), each
# band's mean over the 800 frames, and the extremes, printed with 7 significant digits.


def _floats(text: str) -> np.ndarray:
    return np.array(text.split(), dtype=np.float64)


REFERENCE: dict[str, dict[str, Any]] = {
    "whole": {
        "max": 1.892119,
        "min": -0.1078812,
        "frame_0": _floats(
            """
            0.8207674 0.9154999 1.00445 0.9403616 0.7944821 0.6026575 0.6892164 0.6844654
            0.6761438 0.7656574 0.7079273 0.1871183 0.3189688 0.6749344 0.7711678 0.6275565
            0.5063872 0.6095448 0.5930978 0.4833343 0.2540942 0.2211232 0.3481483 0.4228136
            0.4234474 0.1108061 0.1987675 -0.09146154 0.1878596 0.4230374 0.4934484 0.4368035
            0.4243087 0.2643052 0.3095647 0.4248801 0.3010198 0.3974065 0.4583017 0.3167147
            0.3514972 0.1986681 0.363831 0.4955863 0.3937848 0.3023778 0.3100509 0.3155732
            0.1771596 0.07756817 0.09113473 0.2956828 0.1640942 0.01184833 0.1036682 0.02323896
            0.1044214 0.1013768 0.1849903 0.1511701 0.100319 0.01479518 0.04655886 -0.07419789
            -0.09250188 -0.1078812 -0.02199137 -0.03921306 -0.1078812 -0.1014426 -0.1078812
            -0.1078812 -0.1078812 -0.1078812 -0.1078812 -0.1078812 -0.1078812 -0.1078812
            -0.1078812 -0.1078812
            """
        ),
        "frame_799": _floats(
            """
            0.6127087 0.649828 0.4851163 0.9486886 1.119451 1.165147 1.159384 1.136115 1.098801
            1.02716 1.018975 1.0082 0.9993957 1.166741 1.324398 1.456263 1.422348 1.274812
            1.071407 1.097343 1.157496 1.113916 0.896606 0.928125 1.087557 1.193284 1.117022
            0.9461957 1.022587 1.127912 1.145069 0.9787171 0.8101799 1.001576 0.9592959
            0.7136063 0.9347813 0.9573459 1.150249 1.20947 1.0887 0.8265339 0.855159 0.8209838
            0.8483361 0.7282424 0.6442889 0.6793385 0.6630209 0.5921249 0.6382291 0.6093403
            0.662607 0.672071 0.425905 0.5379553 0.4064865 0.5064077 0.499092 0.3548848
            0.3599873 0.2977915 0.3477157 0.2229053 0.1723318 0.08358055 0.1154719 0.1040887
            0.0415374 -0.07920146 -0.1078812 -0.1078812 -0.1078812 -0.1078812 -0.1078812
            -0.1078812 -0.1078812 -0.1078812 -0.1078812 -0.1078812
            """
        ),
        "mel_means": _floats(
            """
            0.5874372 0.7105715 0.8449764 0.9852978 1.075168 1.082538 1.028457 0.9801318
            0.9458501 0.9495826 0.9720267 0.997529 1.002205 1.010289 0.9941416 0.9534275 0.93913
            0.9359485 0.9270851 0.9194601 0.9164881 0.8989493 0.8636999 0.8186877 0.7642072
            0.7428178 0.7379249 0.7410169 0.7565583 0.7608795 0.7456559 0.7055743 0.6863556
            0.7168828 0.7233454 0.7188437 0.7399045 0.7079979 0.7245839 0.704044 0.7040631
            0.6873676 0.7116935 0.7191769 0.6949355 0.6454313 0.64466 0.6696431 0.6537747
            0.6287971 0.6062346 0.5772095 0.5310314 0.4887247 0.4574139 0.4858619 0.4981468
            0.4954433 0.4848397 0.4238174 0.3592127 0.3063746 0.2620739 0.1889365 0.1141108
            0.1128131 0.0740698 0.03032621 -0.01368878 -0.05150546 -0.07472924 -0.09522437
            -0.09982385 -0.1025871 -0.1026427 -0.09786748 -0.0993986 -0.1044231 -0.104471
            -0.1062119
            """
        ),
    },
    "first_3s": {
        "max": 1.939558,
        "min": -0.06044173,
        "frame_799": _floats(
            """
            0.3978344 0.52994 0.8399271 1.029771 1.083443 1.044456 0.9478226 0.8938912 0.8756767
            0.79433 0.8067862 0.8340011 0.6830614 0.4704391 0.4689521 0.4911422 0.6156781
            0.6697139 0.7167202 0.6652773 0.5723854 0.4758466 0.4001937 0.5128529 0.5303729
            0.4211671 0.1715783 0.4320072 0.5667872 0.5463488 0.4094992 0.3288997 0.2917026
            0.2854737 0.3107287 0.4721977 0.4950376 0.3953679 0.1686632 0.1891129 0.4113619
            0.3850374 0.3253414 0.3176694 0.2390823 0.4353569 0.4414269 0.3540167 0.3745071
            0.2433581 0.1779847 0.1135496 0.2924507 0.2987015 0.1094382 0.09146309 0.1111596
            0.1606006 0.1378004 -0.02509296 -0.03783476 -0.06044173 0.04273248 0.03220314
            -0.01188421 -0.06044173 -0.00609386 -0.03290153 -0.06044173 -0.06044173 -0.06044173
            -0.06044173 -0.06044173 -0.06044173 -0.06044173 -0.06044173 -0.06044173 -0.06044173
            -0.06044173 -0.06044173
            """
        ),
        "mel_means": _floats(
            """
            0.1567071 0.2487702 0.3013752 0.3094942 0.3280223 0.3453722 0.3444719 0.3328414
            0.3003324 0.2768494 0.2829641 0.305719 0.3305235 0.3483205 0.3465827 0.3413238
            0.327961 0.3281571 0.3337717 0.3330393 0.3249302 0.3038101 0.2916374 0.2790274
            0.276491 0.2712188 0.2556133 0.2457885 0.2385492 0.2399104 0.2489849 0.2498861
            0.2403796 0.2391483 0.2330351 0.2439438 0.2592215 0.2427992 0.2436268 0.2339021
            0.2285046 0.2189539 0.2302539 0.2308008 0.2003927 0.1849862 0.19966 0.1973885
            0.1812524 0.2104353 0.2091973 0.183366 0.178232 0.1518918 0.1444518 0.1542853
            0.1631435 0.1600343 0.1491025 0.1261451 0.1015787 0.08789427 0.06751884 0.0454152
            0.0139658 0.01402286 0.009187606 -0.01103727 -0.02253928 -0.02791537 -0.04189893
            -0.05422781 -0.05833807 -0.05914084 -0.05838229 -0.05426761 -0.05577262 -0.06026647
            -0.06033827 -0.06044173
            """
        ),
    },
}

# On the same input the reference pipeline's probability was 0.798758 (onnxruntime 1.32.0).
# The model is int8-quantised: a feature one float32 step away can move P by ~1e-3.
REFERENCE_P_WHOLE = 0.798758
TOLERANCE = 1e-5  # measured: at most 1.2e-7 (one float32 step) from the reference


@pytest.mark.parametrize("case", ["whole", "first_3s"])
def test_features_match_the_reference(model: SmartTurnModel, jfk_pcm: bytes, case: str) -> None:
    pcm = jfk_pcm if case == "whole" else _seconds(jfk_pcm, end=3.0)
    ref = REFERENCE[case]
    features = model.features(pcm).astype(np.float64)
    assert features.shape == (N_MELS, N_FRAMES)
    np.testing.assert_allclose(features[:, -1], ref["frame_799"], atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(features.mean(axis=1), ref["mel_means"], atol=TOLERANCE, rtol=0)
    assert features.max() == pytest.approx(ref["max"], abs=TOLERANCE)
    assert features.min() == pytest.approx(ref["min"], abs=TOLERANCE)
    if case == "whole":
        np.testing.assert_allclose(features[:, 0], ref["frame_0"], atol=TOLERANCE, rtol=0)
    else:  # 5 s of padding: the first frames are all the floor, 8 decades below the peak
        np.testing.assert_allclose(features[:, :400], ref["min"], atol=TOLERANCE, rtol=0)


def test_probability_matches_the_reference_pipeline(model: SmartTurnModel, jfk_pcm: bytes) -> None:
    assert model.predict(jfk_pcm) == pytest.approx(REFERENCE_P_WHOLE, abs=0.01)


# --- the model file ---------------------------------------------------------------------------


def test_missing_model_says_run_make_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "smart-turn.onnx"
    monkeypatch.setenv(MODEL_ENV, str(missing))
    with pytest.raises(FileNotFoundError, match="make env") as err:
        smart_turn_model_path()
    assert str(missing) in str(err.value)
    with pytest.raises(FileNotFoundError, match="make env") as err:
        SmartTurnModel.load(missing)
    assert str(missing) in str(err.value)


def test_model_path_defaults_to_the_repository_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MODEL_ENV, raising=False)
    repo = Path(__file__).resolve().parents[3]
    assert smart_turn_model_path() == repo / ".tools" / "models" / "smart-turn-v3.2-cpu.onnx"


def test_a_file_that_is_not_the_model_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "smart-turn-v3.2-cpu.onnx"
    bad.write_bytes(b"<html>not found</html>")
    with pytest.raises(ValueError, match="not a loadable ONNX model"):
        SmartTurnModel.load(bad)


def test_threads_must_be_positive() -> None:
    with pytest.raises(ValueError, match="threads"):
        SmartTurnModel.load(smart_turn_model_path(), threads=0)
