"""The edge's call-token settings, as an operator writes them in the environment."""

from __future__ import annotations

import pytest

from voicemesh.edge.settings import EdgeSettings
from voicemesh.mesh.settings import SettingsError, load_settings

pytestmark = pytest.mark.unit
SECRET = "a-call-token-secret-of-32-chars!!"


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEMESH_EDGE_TOKEN", "a-token-of-sixteen-chars")
    monkeypatch.delenv("VOICEMESH_CALL_TOKEN_SECRET", raising=False)
    monkeypatch.delenv("VOICEMESH_CALL_TOKEN_TTL_S", raising=False)


def test_by_default_no_secret_and_five_minute_tokens() -> None:
    settings = load_settings(EdgeSettings)
    assert (settings.call_token_secret, settings.call_token_ttl_s) == ("", 300.0)


def test_the_secret_and_ttl_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEMESH_CALL_TOKEN_SECRET", SECRET)
    monkeypatch.setenv("VOICEMESH_CALL_TOKEN_TTL_S", "86400")
    settings = load_settings(EdgeSettings)
    assert (settings.call_token_secret, settings.call_token_ttl_s) == (SECRET, 86400.0)


@pytest.mark.parametrize(
    ("env", "value", "named"),
    [
        (
            "VOICEMESH_CALL_TOKEN_SECRET",
            "hunter2-is-short",
            "VOICEMESH_CALL_TOKEN_SECRET: Value error, must be a secret of at least 32",
        ),
        ("VOICEMESH_CALL_TOKEN_SECRET", SECRET[:31], "VOICEMESH_CALL_TOKEN_SECRET"),
        ("VOICEMESH_CALL_TOKEN_TTL_S", "0", "VOICEMESH_CALL_TOKEN_TTL_S"),
        ("VOICEMESH_CALL_TOKEN_TTL_S", "-1", "VOICEMESH_CALL_TOKEN_TTL_S"),
        ("VOICEMESH_CALL_TOKEN_TTL_S", "86400.5", "VOICEMESH_CALL_TOKEN_TTL_S"),
        ("VOICEMESH_CALL_TOKEN_TTL_S", "soon", "VOICEMESH_CALL_TOKEN_TTL_S"),
    ],
)
def test_a_bad_setting_is_named_and_the_secret_is_not_shown(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, named: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError) as info:
        load_settings(EdgeSettings)
    assert named in str(info.value)
    assert "hunter2" not in str(info.value) and SECRET[:31] not in str(info.value)
