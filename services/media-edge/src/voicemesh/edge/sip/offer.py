"""SDP offer/answer for the SIP edge (RFC 3264): pure, no sockets.

`answer_offer` reads the caller's offer and either returns the answer (one audio stream,
PCMU or PCMA at 20 ms, telephone-event when offered, under the payload type the offer used)
or raises `SdpRejected` with the SIP status that says why: `400` for an offer that cannot
be read, `488` for one that can be read but offers nothing this edge can take.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum

from aiosipua.sdp import MediaDescription, SdpMessage, parse_sdp

from .srtp import CryptoOffer, Suite, answer_crypto, choose_crypto

PTIME_MS = 20
DTMF_RATE = 8000


class G711(StrEnum):
    PCMU = "PCMU"
    PCMA = "PCMA"

    @property
    def payload_type(self) -> int:
        return 0 if self is G711.PCMU else 8


_BY_PT = {c.payload_type: c for c in G711}


class Direction(StrEnum):
    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @property
    def answer(self) -> Direction:
        """The direction the answerer takes (RFC 3264 §6.1)."""
        return {
            Direction.SENDONLY: Direction.RECVONLY,
            Direction.RECVONLY: Direction.SENDONLY,
        }.get(self, self)

    @property
    def held(self) -> bool:
        """The caller has put the call on hold: it sends no audio (or wants none)."""
        return self in (Direction.SENDONLY, Direction.INACTIVE)


class SrtpPolicy(StrEnum):
    OFF = "off"  # plain RTP only
    ALLOW = "allow"  # SRTP when the caller offers it, plain RTP otherwise
    REQUIRE = "require"  # RTP/SAVP only


class SdpRejected(Exception):
    """An offer this edge cannot answer; `status` is the SIP response to send."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Answer:
    sdp: str
    codec: G711
    dtmf_payload_type: int | None  # None: the offer had no telephone-event
    remote: tuple[str, int]  # where the offer says to send RTP (until packets arrive)
    direction: Direction  # the offer's
    offer_version: str  # o= session version: a re-offer that repeats it changes nothing
    crypto: CryptoOffer | None = None  # the caller's SRTP key (RTP/SAVP), None for plain RTP
    key_salt: bytes | None = None  # ours, as the answer gives it


def answer_offer(
    body: str,
    *,
    local_ip: str,
    rtp_port: int,
    codecs: tuple[G711, ...] = (G711.PCMU, G711.PCMA),
    srtp: SrtpPolicy = SrtpPolicy.ALLOW,
    key_salt: bytes = bytes(30),
    session_id: int = 0,
    version: int = 0,
) -> Answer:
    """The answer to `body` (an SDP offer), or SdpRejected naming what is wrong with it.
    An RTP/SAVP offer is answered with SDES-SRTP (RFC 4568) under our `key_salt`."""
    if not body.strip():
        raise SdpRejected(488, "an SDP offer is required in the INVITE")
    try:
        offer = parse_sdp(body)
    except (ValueError, IndexError, TypeError) as exc:
        raise SdpRejected(400, f"bad SDP: {exc}") from None
    _check_lines(body)
    audio_index = next((i for i, m in enumerate(offer.media) if m.media == "audio"), None)
    if audio_index is None:
        raise SdpRejected(488, "the offer has no audio stream")
    audio = offer.media[audio_index]
    if audio.port == 0:
        raise SdpRejected(488, "the offer's audio stream is disabled (port 0)")
    crypto = _crypto(audio, srtp)
    remote = _remote(offer, audio)
    codec = _choose(audio, codecs)
    dtmf = _telephone_event(audio)
    direction = _direction(offer, audio)
    lines = [
        "v=0",
        f"o=voicemesh {session_id} {version} IN {_ip_kind(local_ip)} {local_ip}",
        "s=voicemesh",
        f"c=IN {_ip_kind(local_ip)} {local_ip}",
        "t=0 0",
    ]
    for index, media in enumerate(offer.media):
        if index != audio_index:  # every other stream is declined, in its place (§6)
            lines.append(f"m={media.media} 0 {media.proto} {' '.join(media.formats) or '0'}")
            continue
        formats = [str(codec.payload_type)] + ([str(dtmf)] if dtmf is not None else [])
        lines.append(f"m=audio {rtp_port} {'RTP/SAVP' if crypto else 'RTP/AVP'} {' '.join(formats)}")
        lines.append(f"a=rtpmap:{codec.payload_type} {codec.value}/8000")
        if dtmf is not None:
            lines += [f"a=rtpmap:{dtmf} telephone-event/{DTMF_RATE}", f"a=fmtp:{dtmf} 0-16"]
        lines += [f"a=ptime:{PTIME_MS}", f"a={direction.answer.value}"]
        if crypto is not None:
            lines.append(f"a=crypto:{answer_crypto(crypto, key_salt)}")
    return Answer(
        sdp="\r\n".join(lines) + "\r\n",
        codec=codec,
        dtmf_payload_type=dtmf,
        remote=remote,
        direction=direction,
        offer_version=offer.origin.session_version,
        crypto=crypto,
        key_salt=key_salt if crypto is not None else None,
    )


def _crypto(audio: MediaDescription, policy: SrtpPolicy) -> CryptoOffer | None:
    """The caller's SDES key for an RTP/SAVP offer; None for plain RTP/AVP."""
    proto = audio.proto.upper()
    if proto == "RTP/AVP":
        if policy is SrtpPolicy.REQUIRE:
            raise SdpRejected(488, "this edge requires SRTP: offer RTP/SAVP with a=crypto")
        return None
    if proto != "RTP/SAVP":
        raise SdpRejected(488, f"media profile {audio.proto} is not accepted here (RTP/AVP or RTP/SAVP)")
    if policy is SrtpPolicy.OFF:
        raise SdpRejected(488, "SRTP is turned off on this edge: offer RTP/AVP")
    crypto = choose_crypto(audio.attributes.get("crypto", []))
    if crypto is None:
        suites = ", ".join(s.value for s in Suite)
        raise SdpRejected(488, f"no a=crypto line this edge can use (it takes {suites}, inline keys, no MKI)")
    return crypto


def _check_lines(body: str) -> None:
    """What the lenient parser would quietly default: a missing v=, a c= without its
    address, an m= without port, profile and format."""
    lines = [line.strip() for line in body.splitlines()]
    if not any(line.startswith("v=") for line in lines):
        raise SdpRejected(400, "bad SDP: no v= line")
    for line in lines:
        if line.startswith("c=") and len(line[2:].split()) != 3:
            raise SdpRejected(400, f"bad SDP: {line[:40]!r} must be c=<nettype> <addrtype> <address>")
        if line.startswith("m="):
            parts = line[2:].split()
            port = parts[1].split("/")[0] if len(parts) >= 4 else ""
            if not (port.isascii() and port.isdigit()):
                raise SdpRejected(400, f"bad SDP: {line[:40]!r} must be m=<media> <port> <proto> <format>...")


def _direction(offer: SdpMessage, audio: MediaDescription) -> Direction:
    """The audio stream's direction: its own attribute, else the session's (RFC 4566 §6)."""
    for attributes in (audio.attributes, offer.attributes):
        for direction in Direction:
            if direction.value in attributes:
                return direction
    return Direction.SENDRECV


def _remote(offer: SdpMessage, audio: MediaDescription) -> tuple[str, int]:
    conn = audio.connection or offer.connection
    if conn is None:
        raise SdpRejected(400, "bad SDP: no c= connection address for the audio stream")
    try:
        ipaddress.ip_address(conn.address)
    except ValueError:
        raise SdpRejected(400, f"bad SDP: c= address {conn.address!r} is not an IP address") from None
    if not 0 < audio.port < 65536:
        raise SdpRejected(400, f"bad SDP: audio port {audio.port} is out of range")
    return conn.address, audio.port


def _choose(audio: MediaDescription, codecs: tuple[G711, ...]) -> G711:
    """The offerer's first choice among the codecs this edge takes (static payload types)."""
    for fmt in audio.formats:
        if fmt.isascii() and fmt.isdigit() and int(fmt) in _BY_PT and _BY_PT[int(fmt)] in codecs:
            return _BY_PT[int(fmt)]
    offered = ", ".join(c.encoding_name or str(c.payload_type) for c in audio.codecs) or " ".join(
        audio.formats
    )
    raise SdpRejected(488, f"no acceptable codec: offered {offered}; this edge takes {', '.join(codecs)}")


def _telephone_event(audio: MediaDescription) -> int | None:
    for codec in audio.codecs:
        if codec.encoding_name.lower() == "telephone-event" and codec.clock_rate in (DTMF_RATE, 0):
            if str(codec.payload_type) in audio.formats:
                return codec.payload_type
    return None


def _ip_kind(ip: str) -> str:
    return "IP6" if ":" in ip else "IP4"


def make_offer(
    *,
    local_ip: str,
    rtp_port: int,
    codecs: tuple[G711, ...] = (G711.PCMU, G711.PCMA),
    srtp: SrtpPolicy = SrtpPolicy.ALLOW,
    key_salt: bytes = bytes(30),
    dtmf_payload_type: int = 101,
    session_id: int = 0,
) -> str:
    """Our offer for a call we place: the codecs in our order, telephone-event, 20 ms, and
    SDES-SRTP (RTP/SAVP) when the policy requires it (an offer cannot be both)."""
    ip = _ip_kind(local_ip)
    secure = srtp is SrtpPolicy.REQUIRE
    formats = [str(c.payload_type) for c in codecs] + [str(dtmf_payload_type)]
    lines = [
        "v=0",
        f"o=voicemesh {session_id} 0 IN {ip} {local_ip}",
        "s=voicemesh",
        f"c=IN {ip} {local_ip}",
        "t=0 0",
        f"m=audio {rtp_port} {'RTP/SAVP' if secure else 'RTP/AVP'} {' '.join(formats)}",
        *(f"a=rtpmap:{c.payload_type} {c.value}/8000" for c in codecs),
        f"a=rtpmap:{dtmf_payload_type} telephone-event/{DTMF_RATE}",
        f"a=fmtp:{dtmf_payload_type} 0-16",
        f"a=ptime:{PTIME_MS}",
        "a=sendrecv",
    ]
    if secure:
        lines.append(f"a=crypto:{answer_crypto(CryptoOffer(1, Suite.AES_CM_128_HMAC_SHA1_80, key_salt), key_salt)}")
    return "\r\n".join(lines) + "\r\n"
