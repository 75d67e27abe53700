"""ICE policy and ephemeral TURN credentials (the TURN REST API coturn implements with
`use-auth-secret`): the pure minting against vectors computed outside it, and the settings
that refuse a configuration that cannot work, naming the variables and never the secret."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from aiortc import RTCIceServer, RTCIceTransportPolicy

from voicemesh.edge.settings import EdgeSettings
from voicemesh.edge.webrtc.ice import (
    IceConfig,
    IcePolicy,
    mint_turn_username,
    parse_ice_servers,
    relay_candidates,
    turn_credential,
    unusable_offer,
    with_turn_credentials,
)
from voicemesh.mesh.settings import SettingsError, load_settings

pytestmark = pytest.mark.unit

SECRET = "north-wind-turn-secret"
TURN = '[{"urls": "stun:stun.example.net:3478"}, {"urls": ["turn:turn.example.net:3478?transport=udp"]}]'


def test_the_credential_is_coturns_hmac_of_the_username() -> None:
    # printf '%s' '1700003600:voicemesh-edge' | openssl dgst -sha1 -hmac 'north-wind-turn-secret' -binary | base64
    assert turn_credential(SECRET, "1700003600:voicemesh-edge") == "0LmrUQxtAZOs4cL2HV0Poq+sUgc="
    # printf '%s' '1700000000:alice' | openssl dgst -sha1 -hmac 'coturn' -binary | base64
    assert turn_credential("coturn", "1700000000:alice") == "3jCmHvLqAEjOkdnSDnI9THJhp8U="


def test_the_username_is_the_expiry_time_then_the_label() -> None:
    assert mint_turn_username(1_700_000_000.7, 3600, "voicemesh-edge") == "1700003600:voicemesh-edge"


def test_only_turn_entries_without_a_username_get_fresh_credentials() -> None:
    static = RTCIceServer(urls=["turns:static.example.net:443?transport=tcp"], username="u", credential="p")
    servers = [*parse_ice_servers(TURN), static]
    minted = with_turn_credentials(servers, SECRET, now=1_700_000_000, ttl_s=3600, label="voicemesh-edge")
    stun, turn, kept = minted
    assert stun == servers[0] and stun.username is None  # STUN takes no credentials
    assert kept is static  # a static TURN user stays as configured
    assert turn.urls == ["turn:turn.example.net:3478?transport=udp"]
    assert turn.username == "1700003600:voicemesh-edge"
    expected = base64.b64encode(hmac.new(SECRET.encode(), turn.username.encode(), hashlib.sha1).digest()).decode()
    assert turn.credential == expected == "0LmrUQxtAZOs4cL2HV0Poq+sUgc="
    # a later call gets a later expiry; without a secret nothing changes
    later = with_turn_credentials(servers, SECRET, now=1_700_000_100, ttl_s=3600, label="voicemesh-edge")[1]
    assert later.username == "1700003700:voicemesh-edge" and later.credential != turn.credential
    assert with_turn_credentials(servers, "", now=0, ttl_s=60, label="x") == servers


def test_the_config_for_a_peer_and_for_the_page_carry_the_policy_and_minted_credentials() -> None:
    ice = IceConfig(tuple(parse_ice_servers(TURN)), IcePolicy.RELAY, SECRET, 600)
    rtc = ice.rtc(1_700_000_000, "voicemesh-edge")
    assert rtc.iceTransportPolicy is RTCIceTransportPolicy.RELAY
    assert rtc.iceServers is not None and rtc.iceServers[1].username == "1700000600:voicemesh-edge"
    page = ice.page(1_700_000_000, "voicemesh-softphone")
    assert page["ice_transport_policy"] == "relay"
    assert page["ice_servers"][0] == {"urls": ["stun:stun.example.net:3478"]}
    assert page["ice_servers"][1]["username"] == "1700000600:voicemesh-softphone"
    assert page["ice_servers"][1]["credential"] == turn_credential(SECRET, "1700000600:voicemesh-softphone")
    assert SECRET not in repr(ice)
    assert IceConfig().page(0, "x") == {"ice_servers": [], "ice_transport_policy": "all"}


def test_relay_candidates_are_counted_in_an_answer() -> None:
    sdp = (
        "v=0\r\n"
        "a=candidate:1 1 udp 2130706431 10.0.0.5 50000 typ host\r\n"
        "a=candidate:2 1 udp 16777215 198.51.100.7 49170 typ relay raddr 0.0.0.0 rport 9\r\n"
    )
    assert relay_candidates(sdp) == 1
    assert relay_candidates(sdp.replace("typ relay", "typ srflx")) == 0


def test_an_offer_that_leaves_the_answer_without_candidates_is_named() -> None:
    offer = "v=0\r\na=candidate:1 1 udp 2130706431 10.0.0.5 50000 typ host\r\n"
    hidden = offer.replace("10.0.0.5", "4f1c2a7e-9b1d-4c3e-8f00-5a6b7c8d9e0f.local")
    answer, empty = "v=0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\n", "v=0\r\n"
    assert unusable_offer(hidden, answer) is None  # the edge has candidates: nothing to say
    assert "mDNS" in (unusable_offer(hidden, empty) or "")
    assert "no ICE candidates" in (unusable_offer("v=0\r\n", empty) or "")
    assert unusable_offer(offer, empty) is None  # not the offer's fault (a missing relay, say)


def _load(monkeypatch: pytest.MonkeyPatch, **env: str) -> EdgeSettings:
    monkeypatch.setenv("VOICEMESH_EDGE_TOKEN", "t" * 32)
    for name, value in env.items():
        monkeypatch.setenv(f"VOICEMESH_{name}", value)
    return load_settings(EdgeSettings)


def test_the_defaults_are_all_candidates_and_no_minting(monkeypatch: pytest.MonkeyPatch) -> None:
    ice = _load(monkeypatch).ice()
    assert ice.policy is IcePolicy.ALL and ice.servers == () and ice.turn_secret == ""
    assert ice.turn_ttl_s == 3600


def test_relay_without_a_turn_server_is_refused_naming_both_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError) as refused:
        _load(monkeypatch, WEBRTC_ICE_POLICY="relay", WEBRTC_ICE_SERVERS='[{"urls": "stun:stun.example.net"}]')
    assert "VOICEMESH_WEBRTC_ICE_POLICY" in str(refused.value)
    assert "VOICEMESH_WEBRTC_ICE_SERVERS" in str(refused.value)
    with pytest.raises(SettingsError) as refused:
        _load(monkeypatch, WEBRTC_ICE_POLICY="relay")
    assert "VOICEMESH_WEBRTC_ICE_SERVERS" in str(refused.value)


def test_an_unknown_policy_is_refused_with_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError) as refused:
        _load(monkeypatch, WEBRTC_ICE_POLICY="turn-only")
    assert "VOICEMESH_WEBRTC_ICE_POLICY" in str(refused.value)
    assert "'all'" in str(refused.value) and "'relay'" in str(refused.value)


def test_relay_with_a_secret_for_minting(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _load(
        monkeypatch, WEBRTC_ICE_POLICY="relay", WEBRTC_ICE_SERVERS=TURN, WEBRTC_TURN_SECRET=SECRET, WEBRTC_TURN_TTL_S="900"
    )
    ice = settings.ice()
    assert ice.policy is IcePolicy.RELAY and ice.turn_ttl_s == 900
    assert ice.servers_at(1_700_000_000, "voicemesh-edge")[1].username == "1700000900:voicemesh-edge"


def test_a_turn_server_without_credentials_or_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError) as refused:
        _load(monkeypatch, WEBRTC_ICE_SERVERS=TURN)
    text = str(refused.value)
    assert "VOICEMESH_WEBRTC_TURN_SECRET" in text and "VOICEMESH_WEBRTC_ICE_SERVERS item 1" in text


def test_errors_never_show_a_secret_or_a_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    half = '[{"urls": "turn:turn.example.net", "credential": "hunter2-credential"}]'
    with pytest.raises(SettingsError) as refused:
        _load(monkeypatch, WEBRTC_ICE_SERVERS=half, WEBRTC_TURN_SECRET=SECRET, WEBRTC_TURN_TTL_S="5")
    text = str(refused.value)
    assert "username and credential go together" in text and "VOICEMESH_WEBRTC_TURN_TTL_S" in text
    assert "hunter2" not in text and SECRET not in text


def test_the_secret_is_not_in_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _load(monkeypatch, WEBRTC_ICE_SERVERS=TURN, WEBRTC_TURN_SECRET=SECRET)
    assert SECRET not in repr(settings) and SECRET not in repr(settings.ice())
