"""X-Twilio-Signature: how Twilio signs its requests with the account's auth token.

The signature is base64(HMAC-SHA1(auth_token, url + k1 + v1 + k2 + v2 + …)) where the POST
parameters are sorted by name and appended as name then value, with nothing in between.

For the WebSocket upgrade of a Media Stream (a GET, no POST parameters) the signed string is
the stream URL exactly as Twilio requested it: the `url` of `<Stream>` in the TwiML, e.g.
`wss://voice.example.com/v1/twilio`. Behind a load balancer or TLS proxy the edge cannot
rebuild that from the request it sees, so it checks against its configured public stream URL
(`VOICEMESH_TWILIO_STREAM_URL`); that value must match the TwiML character for character
(scheme, host, port if written, path, no trailing slash unless the TwiML has one).

Pure: no I/O, no clock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

__all__ = ["compute_signature", "valid_signature"]


def _signed_string(url: str, params: Mapping[str, str] | None) -> str:
    if not params:
        return url
    return url + "".join(name + params[name] for name in sorted(params))


def compute_signature(auth_token: str, url: str, params: Mapping[str, str] | None = None) -> str:
    """The X-Twilio-Signature value Twilio sends for a request to `url` with POST `params`."""
    if not auth_token:
        raise ValueError("auth_token is empty: a signature keyed on nothing proves nothing")
    digest = hmac.new(
        auth_token.encode("utf-8"), _signed_string(url, params).encode("utf-8"), hashlib.sha1
    ).digest()
    return base64.b64encode(digest).decode("ascii")


def valid_signature(
    auth_token: str, url: str, signature: str, params: Mapping[str, str] | None = None
) -> bool:
    """Whether `signature` (the X-Twilio-Signature header) is Twilio's for this request.

    Compared in constant time. False for an empty or malformed signature and for an empty
    auth token (never authenticate against an empty key).
    """
    if not auth_token or not isinstance(signature, str) or not signature:
        return False
    expected = compute_signature(auth_token, url, params)
    return hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8", "surrogatepass"))
