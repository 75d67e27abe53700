"""Short-lived signed call tokens, for browsers and apps that must not hold the edge's API
token. Pure: time comes in as a parameter.

Format: `vm1.<payload>.<signature>`, both base64url without padding; the payload is JSON
{"agent": str, "exp": unix seconds, "jti": hex}, the signature HMAC-SHA256 of
`vm1.<payload>` under the configured secret. `agent` empty: any agent.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import secrets
from dataclasses import dataclass

PREFIX = "vm1"
MAX_TOKEN_BYTES = 2048
MIN_SECRET = 32
# exp is written to the millisecond (rounded): a token issued for max_ttl_s may end up to
# half a millisecond, plus float error, past now + max_ttl_s.
_ROUNDING_S = 0.001


class TokenError(ValueError):
    """Why a token is refused; the text is safe to show the caller."""


@dataclass(frozen=True)
class CallClaims:
    agent: str
    expires_at: float
    token_id: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _unb64(text: str) -> bytes:
    """Strict: a character outside the base64url alphabet (padding included) is an error,
    where the standard decoder would skip it or take '+' and '/' too."""
    if not _B64URL.issuperset(text):
        raise binascii.Error("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CallTokens:
    def __init__(self, secret: str, *, max_ttl_s: float = 86400) -> None:
        if len(secret) < MIN_SECRET:
            raise ValueError(f"a call-token secret must be at least {MIN_SECRET} characters")
        self._key = secret.encode()
        self._max_ttl_s = max_ttl_s

    def _sign(self, signed: str) -> str:
        return _b64(hmac.new(self._key, signed.encode("ascii"), hashlib.sha256).digest())

    def issue(self, now: float, ttl_s: float, agent: str = "", token_id: str | None = None) -> str:
        if not 0 < ttl_s <= self._max_ttl_s:
            raise ValueError(f"ttl_s must be in (0, {self._max_ttl_s:g}], got {ttl_s:g}")
        claims = {"agent": agent, "exp": round(now + ttl_s, 3), "jti": token_id or secrets.token_hex(16)}
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        signed = f"{PREFIX}.{payload}"
        return f"{signed}.{self._sign(signed)}"

    def verify(self, token: str, now: float, *, agent: str | None = None) -> CallClaims:
        """The token's claims; TokenError if it is not one of ours, is expired, or is bound
        to another agent than `agent` (the one the call asks for)."""
        if len(token) > MAX_TOKEN_BYTES:
            raise TokenError("malformed: too long")
        if not token.isascii():  # what we issue is ASCII; HMAC and compare_digest need it
            raise TokenError("malformed: not ASCII")
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != PREFIX:
            raise TokenError(f"malformed: not a {PREFIX} call token")
        if not hmac.compare_digest(self._sign(f"{parts[0]}.{parts[1]}"), parts[2]):
            raise TokenError("bad signature")
        try:
            claims = json.loads(_unb64(parts[1]))
        except (binascii.Error, UnicodeDecodeError, ValueError, RecursionError):
            raise TokenError("malformed: the payload is not base64url JSON") from None
        if not isinstance(claims, dict):
            raise TokenError("malformed: the payload is not an object")
        bound, exp, jti = claims.get("agent"), claims.get("exp"), claims.get("jti")
        if not isinstance(bound, str) or not isinstance(jti, str):
            raise TokenError("malformed: agent and jti must be strings")
        if isinstance(exp, bool) or not isinstance(exp, int | float):
            raise TokenError("malformed: exp must be a number")
        try:
            exp = float(exp)  # an int past float's range overflows
        except OverflowError:
            raise TokenError("malformed: exp out of range") from None
        if not math.isfinite(exp):  # json.loads takes NaN and Infinity
            raise TokenError("malformed: exp must be a finite number")
        if exp <= now:
            raise TokenError(f"expired {now - exp:.0f} s ago")
        if exp - now > self._max_ttl_s + _ROUNDING_S:
            raise TokenError("lives longer than any token this edge issues")
        if agent is not None and bound and bound != agent:
            raise TokenError(f"issued for agent {bound!r}")
        return CallClaims(bound, exp, jti)
