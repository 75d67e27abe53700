from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from voicemesh.edge.twilio_signature import compute_signature, valid_signature

pytestmark = pytest.mark.unit

TOKEN = "12345"
STREAM_URL = "wss://voice.example.com/v1/twilio"
WEBHOOK_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}


def reference(token: str, data: str) -> str:
    """Computed independently of the module under test."""
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def test_a_websocket_upgrade_signs_the_url_alone() -> None:
    expected = reference(TOKEN, STREAM_URL)
    assert compute_signature(TOKEN, STREAM_URL) == expected
    assert compute_signature(TOKEN, STREAM_URL, {}) == expected
    assert valid_signature(TOKEN, STREAM_URL, expected)


def test_post_params_are_appended_sorted_by_name_as_name_then_value() -> None:
    signed = (
        WEBHOOK_URL
        + "CallSidCA1234567890ABCDE"
        + "Caller+12349013030"
        + "Digits1234"
        + "From+12349013030"
        + "To+18005551212"
    )
    expected = reference(TOKEN, signed)
    shuffled = dict(reversed(list(PARAMS.items())))
    assert compute_signature(TOKEN, WEBHOOK_URL, PARAMS) == expected
    assert compute_signature(TOKEN, WEBHOOK_URL, shuffled) == expected
    assert valid_signature(TOKEN, WEBHOOK_URL, expected, PARAMS)


def test_the_published_example_vector() -> None:
    # The worked example in Twilio's webhook-security guide: this token, URL and params.
    assert compute_signature(TOKEN, WEBHOOK_URL, PARAMS) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_a_mismatch_is_refused() -> None:
    good = compute_signature(TOKEN, STREAM_URL)
    assert not valid_signature("54321", STREAM_URL, good)  # wrong token
    assert not valid_signature(TOKEN, STREAM_URL + "/", good)  # altered URL
    assert not valid_signature(TOKEN, "ws://voice.example.com/v1/twilio", good)
    assert not valid_signature(TOKEN, "wss://voice.example.com:443/v1/twilio", good)
    assert not valid_signature(TOKEN, STREAM_URL, good, {"x": "y"})  # params that were not signed
    assert not valid_signature(TOKEN, STREAM_URL, good[:-1])


@pytest.mark.parametrize("signature", ["", " ", "not base64!", "é" * 28, "\udcff", None, b"bytes"])
def test_an_empty_or_malformed_signature_is_refused(signature: object) -> None:
    assert valid_signature(TOKEN, STREAM_URL, signature) is False  # type: ignore[arg-type]


def test_an_empty_token_authenticates_nothing() -> None:
    signature = reference("", STREAM_URL)
    assert valid_signature("", STREAM_URL, signature) is False
    with pytest.raises(ValueError, match="auth_token is empty"):
        compute_signature("", STREAM_URL)
