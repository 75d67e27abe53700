"""SDES-SRTP for the SIP edge: the `a=crypto` attribute (RFC 4568) and SRTP (RFC 3711).

- `parse_crypto` / `choose_crypto` / `answer_crypto`: pure SDP, no I/O. A crypto line this edge
  cannot honour raises `ValueError` naming what is wrong. Refused, not ignored: an MKI or a
  list of keys (pylibsrtp 1.0.0 cannot set an MKI, so every packet would fail to
  authenticate), and every session parameter but the `WSH=` hint (RFC 4568 §6.3: an answerer
  must not accept a crypto line whose parameters it does not support).
- `SrtpContext`: one call's packets, bytes in and bytes out, over pylibsrtp. The caller's key
  checks and decrypts what arrives; our key protects what we send. A packet that does not
  authenticate, is replayed or is malformed comes back as None and is counted.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import pylibsrtp

KEY_SALT_BYTES = 30  # AES_CM_128: a 16-byte master key, then a 14-byte master salt
MAX_LIFETIME = 1 << 48  # RFC 4568 §6.2.1: the most SRTP packets one key may protect
_TAG = re.compile(r"[0-9]{1,9}")
_LIFETIME = re.compile(r"(?:2\^([0-9]{1,2})|([0-9]{1,15}))")
_WSH = re.compile(r"WSH=([0-9]{1,9})", re.IGNORECASE)
_WS = re.compile(r"[ \t]+")
_PREFIX = re.compile(r"(?:a=)?crypto:", re.IGNORECASE)
# pylibsrtp 1.0.0 raises `Error(message)` and nothing else tells the failures apart.
_UNAUTHENTIC = {"authentication failure"}
_REPLAYED = {"replay check failed (bad index)", "replay check failed (index too old)"}


class Suite(StrEnum):
    AES_CM_128_HMAC_SHA1_80 = "AES_CM_128_HMAC_SHA1_80"
    AES_CM_128_HMAC_SHA1_32 = "AES_CM_128_HMAC_SHA1_32"

    @property
    def profile(self) -> int:
        if self is Suite.AES_CM_128_HMAC_SHA1_80:
            return int(pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80)
        return int(pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32)

    @property
    def tag_bytes(self) -> int:
        """The SRTP authentication tag. SRTCP takes a 10-byte tag (and a 4-byte index) in
        both suites (RFC 4568 §6.2.1)."""
        return 10 if self is Suite.AES_CM_128_HMAC_SHA1_80 else 4


_SUITES = {suite.value: suite for suite in Suite}


@dataclass(frozen=True)
class CryptoOffer:
    tag: int
    suite: Suite
    key_salt: bytes = field(repr=False)  # a secret: kept out of logs and reprs


def parse_crypto(value: str) -> CryptoOffer:
    """One `a=crypto` value ("1 AES_CM_128_HMAC_SHA1_80 inline:KEY[|2^20] [params]"), with or
    without its "a=crypto:" prefix; ValueError naming what is wrong with it."""
    text = _PREFIX.sub("", value.strip(" \t\r\n"), count=1)
    fields = _WS.split(text)
    if len(fields) < 3:
        raise ValueError("a=crypto needs a tag, a crypto suite and a key")
    tag, suite_name, keys, *params = fields
    if not _TAG.fullmatch(tag):
        raise ValueError(f"crypto tag {tag[:20]!r} is not a number of 1 to 9 digits")
    suite = _SUITES.get(suite_name.upper()) if suite_name.isascii() else None
    if suite is None:
        raise ValueError(f"unknown crypto suite {suite_name[:40]!r}")
    if ";" in keys:
        raise ValueError("more than one key (an MKI key list) is not supported")
    method, _, info = keys.partition(":")
    if method.lower() != "inline":
        raise ValueError("the key is not given as inline:<base64>")  # (not echoed: a secret)
    key_b64, *extras = info.split("|")
    if any(":" in extra for extra in extras):
        raise ValueError("a key with an MKI is not supported (offer one without |MKI:length)")
    if len(extras) > 1:
        raise ValueError("the key has more than one lifetime")
    if extras and _lifetime(extras[0]) is None:
        raise ValueError(f"key lifetime {extras[0][:20]!r} must be 2^n or a number of packets, at most 2^48")
    try:
        key_salt = base64.b64decode(key_b64, validate=True)
    except ValueError:  # (binascii.Error, and non-ASCII text)
        raise ValueError("key is not valid base64") from None
    if len(key_salt) != KEY_SALT_BYTES:
        raise ValueError(f"key is {len(key_salt)} bytes; {suite} takes {KEY_SALT_BYTES} (key + salt)")
    for param in params:
        wsh = _WSH.fullmatch(param)
        if wsh is None or int(wsh.group(1)) < 64:
            raise ValueError(f"session parameter {param[:30]!r} is not supported")
    return CryptoOffer(int(tag), suite, key_salt)


def _lifetime(text: str) -> int | None:
    match = _LIFETIME.fullmatch(text)
    if match is None:
        return None
    packets = 1 << int(match.group(1)) if match.group(1) else int(match.group(2))
    return packets if 0 < packets <= MAX_LIFETIME else None


def choose_crypto(values: Sequence[str]) -> CryptoOffer | None:
    """The offerer's first crypto line this edge supports (the rest are skipped); None if
    there is none (answer 488, or plain RTP when the offer allows it)."""
    for value in values:
        try:
            return parse_crypto(value)
        except ValueError:
            continue
    return None


def answer_crypto(offer: CryptoOffer, key_salt: bytes) -> str:
    """Our answer's a=crypto value: the chosen line's tag and suite, with our own key."""
    if len(key_salt) != KEY_SALT_BYTES:
        raise ValueError(f"our key must be {KEY_SALT_BYTES} bytes, not {len(key_salt)}")
    return f"{offer.tag} {offer.suite} inline:{base64.b64encode(key_salt).decode('ascii')}"


def new_key_salt() -> bytes:
    return secrets.token_bytes(KEY_SALT_BYTES)


class SrtpContext:
    """One call's SRTP: inbound with the caller's key, outbound with ours.

    Two pylibsrtp sessions (one session holds one wildcard-SSRC policy only); each learns
    the SSRCs it meets, so a caller that changes SSRC mid-call is still heard. Not
    thread-safe: pylibsrtp reuses one buffer per session.
    """

    def __init__(self, *, remote: CryptoOffer, local_key_salt: bytes) -> None:
        if len(local_key_salt) != KEY_SALT_BYTES:
            raise ValueError(f"our key must be {KEY_SALT_BYTES} bytes, not {len(local_key_salt)}")
        self.suite = remote.suite
        self._in = _session(remote.key_salt, remote.suite, pylibsrtp.Policy.SSRC_ANY_INBOUND)
        self._out = _session(local_key_salt, remote.suite, pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
        self.dropped = 0  # every packet unprotect refused, for whatever reason
        self.unauthentic = 0  # of which: failed authentication (wrong key, tampered)
        self.replayed = 0  # of which: seen before, or older than the replay window

    def protect(self, rtp: bytes) -> bytes:
        """ValueError for a packet libsrtp will not protect: not RTP, over 1356 bytes, or a
        sequence number already sent (libsrtp never reuses its keystream)."""
        return self._protect(self._out.protect, rtp, "RTP")

    def protect_rtcp(self, rtcp: bytes) -> bytes:
        """Appends the SRTCP index (libsrtp counts it per SSRC) and a 10-byte tag."""
        return self._protect(self._out.protect_rtcp, rtcp, "RTCP")

    def unprotect(self, srtp: bytes) -> bytes | None:
        return self._unprotect(self._in.unprotect, srtp)

    def unprotect_rtcp(self, srtcp: bytes) -> bytes | None:
        return self._unprotect(self._in.unprotect_rtcp, srtcp)

    @staticmethod
    def _protect(protect: Callable[[bytes], bytes], packet: bytes, kind: str) -> bytes:
        try:
            return protect(packet)
        except (pylibsrtp.Error, ValueError) as exc:
            raise ValueError(f"cannot protect this {kind} packet: {exc}") from None

    def _unprotect(self, unprotect: Callable[[bytes], bytes], packet: bytes) -> bytes | None:
        try:
            return unprotect(packet)
        except (pylibsrtp.Error, ValueError, TypeError) as exc:  # ValueError: over 1500 bytes
            self.dropped += 1
            if str(exc) in _UNAUTHENTIC:
                self.unauthentic += 1
            elif str(exc) in _REPLAYED:
                self.replayed += 1
            return None


def _session(key_salt: bytes, suite: Suite, ssrc_type: int) -> pylibsrtp.Session:
    return pylibsrtp.Session(
        policy=pylibsrtp.Policy(key=key_salt, ssrc_type=ssrc_type, srtp_profile=suite.profile)
    )
