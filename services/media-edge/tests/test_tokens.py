"""Call tokens: what a page or app holds instead of the edge's API token."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voicemesh.edge.tokens import CallTokens, TokenError, _b64

pytestmark = pytest.mark.unit

TOKENS = CallTokens("k" * 32)


def signed(payload: bytes) -> str:
    """A token correctly signed under TOKENS' secret, whatever its payload."""
    body = _b64(payload)
    return f"vm1.{body}.{TOKENS._sign(f'vm1.{body}')}"


def test_a_token_round_trips_its_claims() -> None:
    token = TOKENS.issue(1000.0, 60, "clinic", token_id="abc")
    claims = TOKENS.verify(token, 1030.0, agent="clinic")
    assert (claims.agent, claims.expires_at, claims.token_id) == ("clinic", 1060.0, "abc")
    assert TOKENS.verify(TOKENS.issue(1000.0, 60), 1000.0, agent="any").agent == ""


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("", "malformed"),
        ("vm2.a.b", "malformed"),
        ("vm1.a", "malformed"),
        ("vm1." + "a" * 3000 + ".b", "too long"),
        (TOKENS.issue(0, 60) + "x", "bad signature"),
        (CallTokens("o" * 32).issue(0, 60), "bad signature"),
    ],
)
def test_what_is_not_our_token_is_refused_with_a_reason(token: str, reason: str) -> None:
    with pytest.raises(TokenError, match=reason):
        TOKENS.verify(token, 10.0)


def test_the_format_is_prefix_payload_signature_in_base64url() -> None:
    token = TOKENS.issue(1000.0, 60, "clinic", token_id="abc")
    prefix, payload, signature = token.split(".")
    assert prefix == "vm1" and "=" not in payload + signature
    assert TOKENS.issue(0, 60) != TOKENS.issue(0, 60)  # a fresh jti each time
    jti = TOKENS.verify(TOKENS.issue(0, 60), 1.0).token_id
    assert len(jti) == 32 and int(jti, 16) >= 0  # 16 random bytes, hex


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe", "not base64url JSON"),
        (b"not json", "not base64url JSON"),
        (b"[1, 2]", "not an object"),
        (b'{"exp": 60, "jti": "a"}', "agent and jti must be strings"),
        (b'{"agent": "", "exp": 60, "jti": 7}', "agent and jti must be strings"),
        (b'{"agent": "", "jti": "a"}', "exp must be a number"),
        (b'{"agent": "", "exp": "60", "jti": "a"}', "exp must be a number"),
        (b'{"agent": "", "exp": true, "jti": "a"}', "exp must be a number"),
        (b'{"agent": "", "exp": NaN, "jti": "a"}', "finite"),
        (b'{"agent": "", "exp": Infinity, "jti": "a"}', "finite"),
        (b'{"agent": "", "exp": 1' + b"0" * 400 + b', "jti": "a"}', "out of range"),
        (b"[" * 1400, "not base64url JSON"),
    ],
)
def test_signed_but_ill_formed_claims_are_refused(payload: bytes, reason: str) -> None:
    with pytest.raises(TokenError, match=reason):
        TOKENS.verify(signed(payload), 10.0)


def test_a_payload_outside_the_base64url_alphabet_is_refused() -> None:
    body = _b64(b'{"agent":"","exp":60,"jti":"a"}')
    for bad in (body + "!", body[:5] + "+" + body[5:], body + "=="):
        with pytest.raises(TokenError, match="malformed"):
            TOKENS.verify(f"vm1.{bad}.{TOKENS._sign(f'vm1.{bad}')}", 10.0)


def test_non_ascii_is_malformed_not_a_crash() -> None:
    for token in ("vm1.é.x", "vm1.a.é", "é" * 1500):
        with pytest.raises(TokenError, match="malformed"):
            TOKENS.verify(token, 0.0)


def test_an_expired_token_says_how_long_ago() -> None:
    with pytest.raises(TokenError, match="expired 40 s ago"):
        TOKENS.verify(TOKENS.issue(0, 60), 100.0)


def test_a_token_expires_at_exp_itself() -> None:
    token = TOKENS.issue(0, 60)
    assert TOKENS.verify(token, 59.999).expires_at == 60.0
    with pytest.raises(TokenError, match="expired 0 s ago"):
        TOKENS.verify(token, 60.0)


def test_a_token_bound_to_another_agent_is_refused() -> None:
    with pytest.raises(TokenError, match="issued for agent 'clinic'"):
        TOKENS.verify(TOKENS.issue(0, 60, "clinic"), 1.0, agent="restaurant")
    # no agent asked for (e.g. the page's own default) and an unbound token: both accepted
    assert TOKENS.verify(TOKENS.issue(0, 60, "clinic"), 1.0).agent == "clinic"


def test_a_tampered_payload_fails_its_signature() -> None:
    prefix, _payload, signature = TOKENS.issue(0, 60, "clinic").split(".")
    other = TOKENS.issue(0, 3600, "restaurant").split(".")[1]
    with pytest.raises(TokenError, match="bad signature"):
        TOKENS.verify(f"{prefix}.{other}.{signature}", 1.0)


def test_a_signed_token_cannot_live_longer_than_tokens_are_issued_for() -> None:
    long_lived = CallTokens("k" * 32, max_ttl_s=10**9).issue(0, 10**8)
    with pytest.raises(TokenError, match="lives longer"):
        TOKENS.verify(long_lived, 1.0)


@given(st.floats(min_value=1e9, max_value=4e9, allow_nan=False))
def test_a_token_issued_for_the_longest_ttl_is_accepted_at_once(now: float) -> None:
    # exp is rounded to the millisecond, which may put it a hair past now + max_ttl_s
    assert TOKENS.verify(TOKENS.issue(now, 86400), now).agent == ""


def test_ttl_and_secret_bounds() -> None:
    with pytest.raises(ValueError, match="ttl_s"):
        TOKENS.issue(0, 0)
    with pytest.raises(ValueError, match="ttl_s"):
        TOKENS.issue(0, -5)
    with pytest.raises(ValueError, match="ttl_s"):
        TOKENS.issue(0, 86401)
    with pytest.raises(ValueError, match="ttl_s"):
        CallTokens("k" * 32, max_ttl_s=60).issue(0, 61)
    assert CallTokens("k" * 32, max_ttl_s=60).issue(0, 60)
    assert CallTokens("s" * 32)  # 32 characters is enough
    with pytest.raises(ValueError, match="32 characters"):
        CallTokens("short")


@given(st.text(max_size=300))
def test_any_string_is_refused_only_with_token_error(text: str) -> None:
    with pytest.raises(TokenError):
        TOKENS.verify(text, 0.0)


@given(st.lists(st.text(max_size=120), min_size=2, max_size=2), st.sampled_from(["vm1", "vm2", ""]))
def test_any_three_part_string_is_refused_only_with_token_error(parts: list[str], prefix: str) -> None:
    # random strings seldom look like a token: this one reaches the signature check
    with pytest.raises(TokenError):
        TOKENS.verify(".".join([prefix, *parts]), 0.0)


@given(st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
def test_any_signed_payload_is_accepted_or_refused_with_token_error(payload: bytes) -> None:
    # what only the secret's holder could send: still no other exception
    try:
        TOKENS.verify(signed(payload), 0.0)
    except TokenError:
        pass
