"""SDES-SRTP a SIP caller meets: the a=crypto lines we accept and answer, and the audio that
passes (or is dropped) between the caller's key and ours."""

from __future__ import annotations

import base64
import struct

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from voicemesh.edge.sip.srtp import (
    CryptoOffer,
    SrtpContext,
    Suite,
    answer_crypto,
    choose_crypto,
    new_key_salt,
    parse_crypto,
)

pytestmark = pytest.mark.unit

CALLER_KEY = bytes(range(30))
CALLER_B64 = base64.b64encode(CALLER_KEY).decode()
OUR_KEY = bytes(range(100, 130))
# RFC 4568 §4's own example lines: a 2^20 lifetime and a 32-byte MKI
RFC_80 = "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32"
RFC_32 = "1 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj|2^20|1:32"
PAYLOAD = bytes((i * 37) & 0xFF for i in range(160))  # 20 ms of PCMU, not silence
SSRC = 0x1234ABCD


def rtp(seq: int, *, ssrc: int = SSRC, payload: bytes = PAYLOAD) -> bytes:
    """V=2, no padding/extension/CSRC, PT 0 (PCMU), 160 samples a packet."""
    return struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, seq * 160, ssrc) + payload


def receiver_report(ssrc: int = SSRC) -> bytes:
    """An RTCP RR with no report blocks: V=2, RC=0, PT 201, length 1 (two 32-bit words)."""
    return struct.pack("!BBHI", 0x80, 201, 1, ssrc)


def call_ends(suite: Suite) -> tuple[SrtpContext, SrtpContext]:
    """(caller, edge): the caller offered CALLER_KEY, the edge answered OUR_KEY."""
    offer = parse_crypto(f"1 {suite} inline:{CALLER_B64}")
    answer = parse_crypto(answer_crypto(offer, OUR_KEY))
    edge = SrtpContext(remote=offer, local_key_salt=OUR_KEY)
    caller = SrtpContext(remote=answer, local_key_salt=CALLER_KEY)
    return caller, edge


# ---- a=crypto: what the offer says ---------------------------------------------------------


@pytest.mark.parametrize("suite", list(Suite))
def test_a_baresip_style_crypto_line_gives_the_callers_key(suite: Suite) -> None:
    offer = parse_crypto(f"a=crypto:7 {suite.value} inline:{CALLER_B64}")

    assert offer == CryptoOffer(7, suite, CALLER_KEY)


@pytest.mark.parametrize("lifetime", ["2^31", "2^48", "1048576"])
def test_a_key_lifetime_is_accepted(lifetime: str) -> None:
    offer = parse_crypto(f"1 AES_CM_128_HMAC_SHA1_32 inline:{CALLER_B64}|{lifetime}\r\n")

    assert (offer.suite, offer.key_salt) == (Suite.AES_CM_128_HMAC_SHA1_32, CALLER_KEY)


def test_the_window_size_hint_is_accepted() -> None:
    assert parse_crypto(f"2 AES_CM_128_HMAC_SHA1_80 inline:{CALLER_B64} WSH=128").tag == 2


@pytest.mark.parametrize("value", [RFC_80, RFC_32, f"1 AES_CM_128_HMAC_SHA1_80 inline:{CALLER_B64}|1:4"])
def test_a_key_with_an_mki_is_refused_by_name(value: str) -> None:
    # pylibsrtp cannot take an MKI: accepting one would fail every packet's authentication
    with pytest.raises(ValueError, match="MKI"):
        parse_crypto(value)


KEY = f"inline:{CALLER_B64}"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "needs a tag"),
        ("1 AES_CM_128_HMAC_SHA1_80", "needs a tag"),
        (f"x {Suite.AES_CM_128_HMAC_SHA1_80} {KEY}", "tag"),
        (f"1234567890 AES_CM_128_HMAC_SHA1_80 {KEY}", "tag"),
        (f"1 AEAD_AES_256_GCM {KEY}", "unknown crypto suite 'AEAD_AES_256_GCM'"),
        (f"1 F8_128_HMAC_SHA1_80 {KEY}", "unknown crypto suite"),
        (f"1 AES_CM_128_HMAC_SHA1_80 uri:{CALLER_B64}", "not given as inline"),
        (f"1 AES_CM_128_HMAC_SHA1_80 {CALLER_B64}", "not given as inline"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:not*base64!", "base64"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:", "0 bytes"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{base64.b64encode(bytes(16)).decode()}", "16 bytes"),
        (f"1 AES_CM_128_HMAC_SHA1_80 {KEY}|2^49", "lifetime"),
        (f"1 AES_CM_128_HMAC_SHA1_80 {KEY}|0", "lifetime"),
        (f"1 AES_CM_128_HMAC_SHA1_80 {KEY}|forever", "lifetime"),
        (f"1 AES_CM_128_HMAC_SHA1_80 {KEY}|2^20|2^20", "more than one lifetime"),
        (f"1 AES_CM_128_HMAC_SHA1_80 {KEY}|2^20|1:4;{KEY}|2^20|2:4", "more than one key"),
        (f"1 AES_CM_128_HMAC_SHA1_80 {KEY} UNENCRYPTED_SRTP", "UNENCRYPTED_SRTP"),
        (f"1 AES_CM_128_HMAC_SHA1_80 {KEY} KDR=1", "KDR=1"),
        (f"1 AES_CM_128_HMAC_SHA1_80 {KEY} WSH=10", "WSH=10"),
    ],
)
def test_a_malformed_line_is_refused_naming_the_problem(value: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem.replace("^", r"\^")):
        parse_crypto(value)


def test_the_error_does_not_echo_the_key() -> None:
    with pytest.raises(ValueError) as caught:
        parse_crypto(f"1 AES_CM_128_HMAC_SHA1_80 {CALLER_B64}")

    assert CALLER_B64[:8] not in str(caught.value)
    assert CALLER_B64[:8] not in repr(CryptoOffer(1, Suite.AES_CM_128_HMAC_SHA1_80, CALLER_KEY))


_TOKENS = st.sampled_from(
    ["1", " ", "\t", "AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32", "inline:", CALLER_B64,
     "|", "2^", "48", ":", ";", "=", "WSH=", "a=crypto:", "١", "²", "ſ", "=="]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(), st.lists(_TOKENS, max_size=12).map("".join)))
def test_any_text_is_parsed_or_refused_with_value_error(value: str) -> None:
    try:
        offer = parse_crypto(value)
    except ValueError:
        return
    assert len(offer.key_salt) == 30


# ---- choosing and answering ----------------------------------------------------------------


def test_the_first_line_this_edge_supports_is_chosen() -> None:
    chosen = choose_crypto(
        [
            f"1 AEAD_AES_256_GCM inline:{base64.b64encode(bytes(44)).decode()}",
            "2 AES_CM_128_HMAC_SHA1_80 inline:junk",
            RFC_80.replace("1 ", "3 ", 1),  # has an MKI
            f"4 AES_CM_128_HMAC_SHA1_32 {KEY}",
            f"5 AES_CM_128_HMAC_SHA1_80 inline:{base64.b64encode(OUR_KEY).decode()}",
        ]
    )

    assert chosen == CryptoOffer(4, Suite.AES_CM_128_HMAC_SHA1_32, CALLER_KEY)


@pytest.mark.parametrize("values", [[], ["garbage"], [RFC_80, f"1 AEAD_AES_128_GCM {KEY}"]])
def test_no_supported_line_chooses_nothing(values: list[str]) -> None:
    assert choose_crypto(values) is None


@pytest.mark.parametrize("suite", list(Suite))
def test_the_answer_carries_the_offers_tag_and_suite_with_our_key(suite: Suite) -> None:
    offer = parse_crypto(f"9 {suite} {KEY}|2^31")

    answer = parse_crypto(answer_crypto(offer, OUR_KEY))

    assert answer == CryptoOffer(9, suite, OUR_KEY)


def test_our_keys_are_fresh_and_the_right_size() -> None:
    first, second = new_key_salt(), new_key_salt()

    assert len(first) == len(second) == 30
    assert first != second
    with pytest.raises(ValueError, match="30 bytes"):
        answer_crypto(CryptoOffer(1, Suite.AES_CM_128_HMAC_SHA1_80, CALLER_KEY), bytes(16))


# ---- SRTP: the audio ---------------------------------------------------------------------


@pytest.mark.parametrize("suite", list(Suite))
def test_audio_crosses_the_call_byte_identical_both_ways(suite: Suite) -> None:
    caller, edge = call_ends(suite)

    for seq in range(65530, 65540):  # across the sequence-number wrap
        assert edge.unprotect(caller.protect(rtp(seq))) == rtp(seq)
        assert caller.unprotect(edge.protect(rtp(seq, ssrc=7))) == rtp(seq, ssrc=7)
    assert edge.dropped == caller.dropped == 0


@pytest.mark.parametrize("suite", list(Suite))
def test_the_protected_packet_is_encrypted_and_carries_the_tag(suite: Suite) -> None:
    _, edge = call_ends(suite)
    plain = rtp(1)

    protected = edge.protect(plain)

    assert len(protected) == len(plain) + suite.tag_bytes
    assert protected[:12] == plain[:12]  # the header stays readable
    assert protected[12 : 12 + len(PAYLOAD)] != PAYLOAD


def test_a_tampered_packet_is_dropped_and_counted_and_the_call_goes_on() -> None:
    caller, edge = call_ends(Suite.AES_CM_128_HMAC_SHA1_80)
    tampered = bytearray(caller.protect(rtp(1)))
    tampered[40] ^= 0x01

    assert edge.unprotect(bytes(tampered)) is None
    assert (edge.dropped, edge.unauthentic, edge.replayed) == (1, 1, 0)
    assert edge.unprotect(caller.protect(rtp(2))) == rtp(2)


def test_packets_under_the_wrong_key_are_all_dropped() -> None:
    _, edge = call_ends(Suite.AES_CM_128_HMAC_SHA1_32)
    stranger = SrtpContext(
        remote=CryptoOffer(1, Suite.AES_CM_128_HMAC_SHA1_32, OUR_KEY), local_key_salt=bytes(30)
    )

    assert [edge.unprotect(stranger.protect(rtp(seq))) for seq in range(5)] == [None] * 5
    assert edge.unauthentic == 5


def test_a_replayed_packet_is_dropped_and_counted() -> None:
    caller, edge = call_ends(Suite.AES_CM_128_HMAC_SHA1_80)
    first = caller.protect(rtp(1))
    assert edge.unprotect(first) == rtp(1)

    assert edge.unprotect(first) is None  # sent again at once
    for seq in range(2, 300):
        assert edge.unprotect(caller.protect(rtp(seq))) == rtp(seq)
    assert edge.unprotect(first) is None  # sent again, now behind the replay window
    assert (edge.dropped, edge.replayed, edge.unauthentic) == (2, 2, 0)


def test_a_caller_that_changes_ssrc_is_still_heard() -> None:
    caller, edge = call_ends(Suite.AES_CM_128_HMAC_SHA1_80)
    assert edge.unprotect(caller.protect(rtp(10))) == rtp(10)

    assert edge.unprotect(caller.protect(rtp(500, ssrc=99))) == rtp(500, ssrc=99)


def test_we_never_send_two_packets_under_one_sequence_number() -> None:
    _, edge = call_ends(Suite.AES_CM_128_HMAC_SHA1_80)
    edge.protect(rtp(1))

    with pytest.raises(ValueError, match="cannot protect"):
        edge.protect(rtp(1))
    with pytest.raises(ValueError, match="cannot protect"):
        edge.protect(b"\x80\x00")


@pytest.mark.parametrize("suite", list(Suite))
def test_rtcp_crosses_the_call_and_a_replay_is_dropped(suite: Suite) -> None:
    caller, edge = call_ends(suite)
    report = receiver_report()

    first, second = caller.protect_rtcp(report), caller.protect_rtcp(report)

    assert first != second  # each carries its own SRTCP index
    assert len(first) == len(report) + 4 + 10  # E+index, and an 80-bit tag in both suites
    assert edge.unprotect_rtcp(first) == edge.unprotect_rtcp(second) == report
    assert caller.unprotect_rtcp(edge.protect_rtcp(receiver_report(7))) == receiver_report(7)
    assert edge.unprotect_rtcp(second) is None
    assert (edge.dropped, edge.replayed) == (1, 1)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000), st.booleans())
@example(b"", False)
@example(bytes(1600), True)  # longer than pylibsrtp's 1500-byte buffer
def test_garbage_is_dropped_never_raised(packet: bytes, header: bool) -> None:
    _, edge = call_ends(Suite.AES_CM_128_HMAC_SHA1_80)
    if header:  # looks like RTP/RTCP from the caller, so it reaches authentication
        packet = rtp(3)[:12] + packet

    assert edge.unprotect(packet) is None
    assert edge.unprotect_rtcp(packet) is None
    assert edge.dropped == 2
