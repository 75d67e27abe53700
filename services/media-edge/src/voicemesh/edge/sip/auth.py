"""Who may place a call to the edge over SIP: by source network, else by digest.

A request from an allowed network (`allow`, CIDRs) is admitted as is. Otherwise, with SIP
credentials configured, it must carry a digest Authorization (RFC 3261 §22, RFC 2617; MD5 or
the SHA-256 of RFC 8760; `qop=auth` or none). `check` returns a decision for the user agent
server to act on: `Admit`, `Challenge` (answer 401 with its WWW-Authenticate header) or
`Refuse` (answer with its status).

Nonces are stateless: the issue time and an HMAC-SHA256 of it under `secret`, so every edge
process holding the same secret accepts the others' nonces. `now` must then come from a clock
they share (wall time, not `time.monotonic`). Without server state a nonce is not bound to
one request: a captured Authorization can be replayed until its nonce goes stale.

Pure: no I/O, no clock. Reasons never carry a password, a hash or a header's values.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Admit", "Challenge", "ChallengeReason", "Decision", "Refuse", "SipAccess"]

_FUTURE_SKEW_S = 5.0  # a nonce issued this far ahead of `now` (clock skew) is still fresh
_ALGORITHMS = {"MD5": "md5", "SHA-256": "sha256"}  # Authorization `algorithm` -> hashlib name
_REQUIRED = ("username", "realm", "nonce", "uri", "response")
_KNOWN = frozenset((*_REQUIRED, "algorithm", "qop", "nc", "cnonce", "opaque"))
_SCHEME = re.compile(r"\s*([A-Za-z]+)(?=\s|\Z)")
_SEPARATOR = re.compile(r"[\s,]*")
_NAME = re.compile(r"([A-Za-z0-9_-]+)\s*=\s*")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"', re.DOTALL)
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_BARE = re.compile(r'[^\s,"]+')


class ChallengeReason(StrEnum):
    NO_CREDENTIALS = "no credentials"
    STALE_NONCE = "stale nonce"
    UNKNOWN_NONCE = "unknown nonce"
    WRONG_CREDENTIALS = "wrong credentials"


@dataclass(frozen=True)
class Admit:
    user: str | None  # the digest user, or None when admitted by source network


@dataclass(frozen=True)
class Challenge:
    header: str  # the value for a WWW-Authenticate header (status 401)
    reason: str  # a ChallengeReason: short, for logs and metrics


@dataclass(frozen=True)
class Refuse:
    status: int  # 400 malformed Authorization, 403 not allowed
    reason: str  # names what is wrong; never a password, a hash or a header's values


Decision = Admit | Challenge | Refuse


class _Malformed(ValueError):
    """The Authorization header cannot be read; the message says why (no header values)."""


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # header text may hold lone surrogates


def _hash(algorithm: str, *parts: str) -> str:
    return hashlib.new(_ALGORITHMS[algorithm], _bytes(":".join(parts))).hexdigest()


def _network(entry: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(entry.strip())  # strict: host bits set is a typo, say so
    except ValueError as exc:
        raise ValueError(f"allowed SIP network {entry!r} is not a CIDR network: {exc}") from None


@dataclass(frozen=True)
class _Digest:
    """The parameters of a `Digest` Authorization header that the response depends on."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str  # a key of _ALGORITHMS
    qop: str | None  # as sent (it enters the hash); None for RFC 2069 style
    nc: str
    cnonce: str

    @classmethod
    def parse(cls, header: str) -> _Digest:
        params = _scan(header)
        missing = [key for key in _REQUIRED if key not in params]
        if missing:
            raise _Malformed(f"missing {', '.join(missing)}")
        algorithm, qop = params.get("algorithm", "MD5").upper(), params.get("qop")
        if algorithm not in _ALGORITHMS:
            raise _Malformed("algorithm is not MD5 or SHA-256")
        if qop is not None and qop.lower() != "auth":
            raise _Malformed("qop is not auth")
        if qop is not None and not {"nc", "cnonce"} <= params.keys():
            raise _Malformed("qop=auth without nc and cnonce")
        fields = {key: params.get(key, "") for key in (*_REQUIRED, "nc", "cnonce")}
        return cls(algorithm=algorithm, qop=qop, **fields)


def _scan(header: str) -> dict[str, str]:
    """`Digest name=token, name="quoted \\" string", …` -> the known parameters, names lowered."""
    scheme = _SCHEME.match(header)
    if scheme is None or scheme[1].lower() != "digest":
        raise _Malformed("the scheme is not Digest")
    params: dict[str, str] = {}
    pos, first = scheme.end(), True
    while (separator := _SEPARATOR.match(header, pos)) and (pos := separator.end()) < len(header):
        if not first and "," not in separator[0]:
            raise _Malformed(f"expected a comma between parameters at character {pos}")
        name = _NAME.match(header, pos)
        if name is None:
            raise _Malformed(f"expected name=value at character {pos}")
        key, pos, first = name[1].lower(), name.end(), False
        if header.startswith('"', pos):
            if (quoted := _QUOTED.match(header, pos)) is None:
                raise _Malformed(f"unbalanced quotes in {key}")
            value, pos = _ESCAPE.sub(r"\1", quoted[1]), quoted.end()
        elif bare := _BARE.match(header, pos):
            value, pos = bare[0], bare.end()
        else:
            raise _Malformed(f"{key} has no value")
        if key in _KNOWN:  # others are ignored (RFC 2617 §3.2.2)
            if key in params:
                raise _Malformed(f"{key} appears twice")
            params[key] = value
    return params


class SipAccess:
    """The SIP user agent server's access rule (see the module docstring)."""

    def __init__(
        self,
        *,
        allow: Sequence[str] = (),
        credentials: Mapping[str, str] | None = None,
        realm: str = "voicemesh",
        secret: bytes,
        nonce_ttl_s: float = 300.0,
    ) -> None:
        if isinstance(allow, str):
            raise TypeError("allow is a sequence of networks: parse text with SipAccess.parse_allow")
        if not realm or any(c in realm for c in '"\\') or not realm.isprintable():
            raise ValueError(f"SIP realm {realm!r} must be printable text without quotes or backslashes")
        if not nonce_ttl_s > 0:
            raise ValueError(f"nonce_ttl_s must be positive, not {nonce_ttl_s}")
        self._allow = tuple(_network(entry) for entry in allow)
        self._credentials = dict(credentials or {})
        if self._credentials and not secret:
            raise ValueError("secret is empty: nonces keyed on nothing prove nothing")
        empty = sorted(user for user, password in self._credentials.items() if not password)
        if empty:
            raise ValueError(f"SIP users without a password: {', '.join(map(repr, empty))}")
        self._realm, self._secret, self._ttl = realm, secret, nonce_ttl_s

    @classmethod
    def parse_allow(cls, text: str) -> tuple[str, ...]:
        """ "127.0.0.1, 10.0.0.0/8" -> ("127.0.0.1/32", "10.0.0.0/8"); ValueError names a bad entry."""
        return tuple(str(_network(entry)) for entry in map(str.strip, text.split(",")) if entry)

    def check(self, *, source_ip: str, method: str, authorization: str | None, now: float) -> Decision:
        """Whether a request with SIP `method` from `source_ip` may proceed."""
        try:
            address = ipaddress.ip_address(source_ip)
        except ValueError:
            return Refuse(403, f"source address {source_ip!r} is not an IP address")
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self._allow):
            return Admit(None)
        if not self._credentials:
            why = "is not in the allowed networks and no SIP credentials are configured"
            return Refuse(403, f"{source_ip} {why}")
        if authorization is None:
            return self.challenge(now)
        try:
            digest = _Digest.parse(authorization)
        except _Malformed as exc:
            return Refuse(400, f"malformed Authorization header: {exc}")
        return self._verify(digest, method, now)

    def challenge(
        self, now: float, *, stale: bool = False, reason: str = ChallengeReason.NO_CREDENTIALS
    ) -> Challenge:
        """A 401 challenge with a fresh nonce issued at `now`; `reason` is a ChallengeReason."""
        header = f'Digest realm="{self._realm}", nonce="{self._nonce(now)}", algorithm=MD5, qop="auth"'
        return Challenge(header + (", stale=TRUE" if stale else ""), reason)

    def _verify(self, digest: _Digest, method: str, now: float) -> Decision:
        issued = self._issued(digest.nonce)
        if issued is None:
            return self.challenge(now, reason=ChallengeReason.UNKNOWN_NONCE)
        password = self._credentials.get(digest.username)
        ha1 = _hash(digest.algorithm, digest.username, digest.realm, password or "")
        ha2 = _hash(digest.algorithm, method, digest.uri)
        qop = (digest.nc, digest.cnonce, digest.qop) if digest.qop is not None else ()
        expected = _hash(digest.algorithm, ha1, digest.nonce, *qop, ha2)
        right = hmac.compare_digest(_bytes(expected), _bytes(digest.response.lower()))
        if not right or password is None or digest.realm != self._realm:
            return self.challenge(now, reason=ChallengeReason.WRONG_CREDENTIALS)
        # Stale only once the digest is right (RFC 2617 §3.2.1): the client retries silently.
        if not -_FUTURE_SKEW_S <= now - issued <= self._ttl:
            return self.challenge(now, stale=True, reason=ChallengeReason.STALE_NONCE)
        return Admit(digest.username)

    def _mac(self, stamp: str) -> str:
        return hmac.new(self._secret, _bytes(stamp), hashlib.sha256).hexdigest()

    def _nonce(self, now: float) -> str:
        stamp = f"{now:.3f}"
        return f"{stamp}.{self._mac(stamp)}"

    def _issued(self, nonce: str) -> float | None:
        """When this process (or one with the same secret) issued `nonce`; None if none did."""
        stamp, _, mac = nonce.rpartition(".")
        if not stamp or not hmac.compare_digest(_bytes(self._mac(stamp)), _bytes(mac)):
            return None
        return float(stamp)  # our own "%.3f" text: always parses
