from __future__ import annotations

import pytest

from voicemesh.stt.config import ConfigError, parse_config
from voicemesh.stt.segmenter import SegmenterConfig
from voicemesh.v1 import audio_pb2, stt_pb2

pytestmark = pytest.mark.unit

ENGLISH = frozenset({"en"})


def config(**overrides: object) -> stt_pb2.RecognitionConfig:
    fmt = {
        "encoding": audio_pb2.AUDIO_ENCODING_PCM16,
        "sample_rate_hz": 16000,
        "channels": 1,
        "frame_ms": 20,
    }
    fmt.update({k: v for k, v in overrides.items() if k in fmt})
    rest = {"session_id": "call-1", "language": "en", "partials": True}
    rest.update({k: v for k, v in overrides.items() if k not in fmt})
    return stt_pb2.RecognitionConfig(format=audio_pb2.AudioFormat(**fmt), **rest)  # type: ignore[arg-type]


def test_a_good_config_maps_onto_segmenter_settings() -> None:
    parsed = parse_config(
        config(
            language="en-US",
            endpointing=stt_pb2.ENDPOINTING_EXTERNAL,
            endpoint_silence_ms=800,
            partials=False,
        ),
        ENGLISH,
    )
    assert parsed.session_id == "call-1" and parsed.language == "en"
    assert parsed.segmenter.internal_endpointing is False
    assert parsed.segmenter.endpoint_silence_ms == 800
    assert parsed.segmenter.partials is False


def test_defaults_internal_endpointing_and_the_default_silence() -> None:
    parsed = parse_config(config(), None, SegmenterConfig(endpoint_silence_ms=700))
    assert parsed.segmenter.internal_endpointing is True
    assert parsed.segmenter.endpoint_silence_ms == 700


def test_a_short_endpoint_silence_caps_the_speculative_pause() -> None:
    parsed = parse_config(config(endpoint_silence_ms=200), ENGLISH)
    assert parsed.segmenter.speculative_silence_ms <= 200


@pytest.mark.parametrize(
    ("endpoint_ms", "speculative_ms"),
    [(1500, 160), (500, 160), (450, 130), (300, 80), (200, 80)],
)
def test_the_pause_decode_starts_early_enough_to_finish_before_the_endpoint(
    endpoint_ms: int, speculative_ms: int
) -> None:
    parsed = parse_config(config(endpoint_silence_ms=endpoint_ms), ENGLISH)
    assert parsed.segmenter.speculative_silence_ms == speculative_ms


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"encoding": audio_pb2.AUDIO_ENCODING_UNSPECIFIED}, "config.format.encoding"),
        ({"sample_rate_hz": 8000}, "config.format.sample_rate_hz"),
        ({"channels": 2}, "config.format.channels"),
        ({"frame_ms": 10}, "config.format.frame_ms"),
        ({"language": "fr"}, "config.language"),
        ({"language": ""}, "config.language"),
        ({"session_id": ""}, "config.session_id"),
        ({"session_id": "a b"}, "config.session_id"),
        ({"endpoint_silence_ms": 20_000}, "config.endpoint_silence_ms"),
        ({"endpointing": 7}, "config.endpointing"),
    ],
)
def test_bad_configs_name_the_field(overrides: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        parse_config(config(**overrides), ENGLISH)


def test_client_vad_is_off_unless_asked_for() -> None:
    assert parse_config(config(), ENGLISH).client_vad is False
    assert parse_config(config(client_vad=True), ENGLISH).client_vad is True


def test_a_multilingual_engine_takes_any_language() -> None:
    assert parse_config(config(language="de"), None).language == "de"
