"""The edge's SIP settings, as an operator writes them in the environment."""

from __future__ import annotations

import pytest

from voicemesh.edge.settings import EdgeSettings
from voicemesh.mesh.settings import SettingsError, load_settings

pytestmark = pytest.mark.unit
TOKEN = "a-token-of-sixteen-chars"


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEMESH_EDGE_TOKEN", TOKEN)


def test_the_defaults_listen_on_the_loopback_and_let_only_local_callers_in() -> None:
    sip = load_settings(EdgeSettings).sip()
    assert (sip.host, sip.port, sip.rtp_ports) == ("127.0.0.1", 5060, (40000, 40999))
    assert sip.allow == ("127.0.0.1/32", "::1/128") and sip.credentials == {}


def test_users_networks_and_ports_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEMESH_SIP_USERS", "alice:pw-one, bob:pw:with:colons")
    monkeypatch.setenv("VOICEMESH_SIP_ALLOW", "10.1.0.0/16,2001:db8::/32")
    monkeypatch.setenv("VOICEMESH_SIP_HOST", "0.0.0.0")
    monkeypatch.setenv("VOICEMESH_SIP_PUBLIC_HOST", "203.0.113.7")
    monkeypatch.setenv("VOICEMESH_RTP_PORT_MIN", "10000")
    monkeypatch.setenv("VOICEMESH_RTP_PORT_MAX", "10019")
    sip = load_settings(EdgeSettings).sip()
    assert sip.credentials == {"alice": "pw-one", "bob": "pw:with:colons"}
    assert sip.allow == ("10.1.0.0/16", "2001:db8::/32")
    assert (sip.host, sip.advertised_host, sip.rtp_ports) == ("0.0.0.0", "203.0.113.7", (10000, 10019))
    assert sip.dial_auth is None
    monkeypatch.setenv("VOICEMESH_SIP_DIAL_AUTH", "agent:pw:with:colons")
    assert load_settings(EdgeSettings).sip().dial_auth == ("agent", "pw:with:colons")


@pytest.mark.parametrize(
    ("env", "value", "named"),
    [
        ("VOICEMESH_SIP_ALLOW", "10.0.0.0/8,not-a-net", "not-a-net"),
        ("VOICEMESH_SIP_USERS", "alice:hunter2,bob", "entry 2 must be user:password"),
        ("VOICEMESH_SIP_DIAL_AUTH", "agent:hunter2,other:hunter2", "must be one user:password"),
        ("VOICEMESH_SIP_DIAL_AUTH", "hunter2", "entry 1 must be user:password"),
        ("VOICEMESH_SIP_HOST", "0.0.0.0", "VOICEMESH_SIP_PUBLIC_HOST: Value error, must name the address"),
        ("VOICEMESH_SIP_PUBLIC_HOST", "edge.example.com", "VOICEMESH_SIP_PUBLIC_HOST"),
        ("VOICEMESH_RTP_PORT_MAX", "39000", "VOICEMESH_RTP_PORT_MAX: Value error, must be above rtp_port_min"),
    ],
)
def test_a_bad_setting_is_named_and_no_password_is_shown(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, named: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError) as info:
        load_settings(EdgeSettings)
    assert named in str(info.value)
    assert "hunter2" not in str(info.value)


def test_edges_with_the_same_token_accept_each_others_nonces(monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_settings(EdgeSettings).sip().nonce_secret
    assert load_settings(EdgeSettings).sip().nonce_secret == first
    monkeypatch.setenv("VOICEMESH_EDGE_TOKEN", "another-token-sixteen")
    assert load_settings(EdgeSettings).sip().nonce_secret != first
    assert TOKEN.encode() not in first
