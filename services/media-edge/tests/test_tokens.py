"""Call tokens: what a page or app holds instead of the edge's API token."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voicemesh.edge.tokens import CallTokens, TokenError

pytestmark = pytest.mark.unit

TOKENS = CallTokens("k" * 32)


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


def test_an_expired_token_says_how_long_ago() -> None:
    with pytest.raises(TokenError, match="expired 40 s ago"):
        TOKENS.verify(TOKENS.issue(0, 60), 100.0)


def test_a_token_bound_to_another_agent_is_refused() -> None:
    with pytest.raises(TokenError, match="issued for agent 'clinic'"):
        TOKENS.verify(TOKENS.issue(0, 60, "clinic"), 1.0, agent="restaurant")


def test_a_tampered_payload_fails_its_signature() -> None:
    prefix, _payload, signature = TOKENS.issue(0, 60, "clinic").split(".")
    other = TOKENS.issue(0, 3600, "restaurant").split(".")[1]
    with pytest.raises(TokenError, match="bad signature"):
        TOKENS.verify(f"{prefix}.{other}.{signature}", 1.0)


def test_a_signed_token_cannot_live_longer_than_tokens_are_issued_for() -> None:
    long_lived = CallTokens("k" * 32, max_ttl_s=10**9).issue(0, 10**8)
    with pytest.raises(TokenError, match="lives longer"):
        TOKENS.verify(long_lived, 1.0)


def test_ttl_and_secret_bounds() -> None:
    with pytest.raises(ValueError, match="ttl_s"):
        TOKENS.issue(0, 0)
    with pytest.raises(ValueError, match="ttl_s"):
        TOKENS.issue(0, 86401)
    with pytest.raises(ValueError, match="32 characters"):
        CallTokens("short")


@given(st.text(max_size=300))
def test_any_string_is_refused_only_with_token_error(text: str) -> None:
    with pytest.raises(TokenError):
        TOKENS.verify(text, 0.0)
