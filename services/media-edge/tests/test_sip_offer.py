"""The SDP answer a SIP caller gets for its offer, or the status that says why it gets none."""

from __future__ import annotations

import base64

import pytest
from aiosipua.sdp import parse_sdp
from hypothesis import given, settings
from hypothesis import strategies as st

from voicemesh.edge.sip.offer import G711, Answer, Direction, SdpRejected, SrtpPolicy, answer_offer
from voicemesh.edge.sip.srtp import Suite, parse_crypto

pytestmark = pytest.mark.unit

LOCAL_IP = "10.0.0.5"
LOCAL_PORT = 40002
RTP_PORT = 40_000
SIPP_SESSION = [
    "v=0",
    "o=user1 53655765 2353687637 IN IP4 192.168.1.2",
    "s=-",
    "c=IN IP4 192.168.1.2",
    "t=0 0",
]
SIPP_AUDIO = [
    "m=audio 6000 RTP/AVP 0 8 101",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-16",
    "a=ptime:20",
    "a=sendrecv",
]


def sdp(*lines: str) -> str:
    return "\r\n".join(lines) + "\r\n"


def sipp_offer(*, audio: list[str] = SIPP_AUDIO, session: list[str] = SIPP_SESSION) -> str:
    return sdp(*session, *audio)


def answer(
    body: str,
    *,
    local_ip: str = LOCAL_IP,
    codecs: tuple[G711, ...] = (G711.PCMU, G711.PCMA),
    session_id: int = 0,
    version: int = 0,
) -> Answer:
    return answer_offer(
        body, local_ip=local_ip, rtp_port=RTP_PORT, codecs=codecs, session_id=session_id, version=version
    )


def rejected(body: str) -> SdpRejected:
    with pytest.raises(SdpRejected) as caught:
        answer(body)
    return caught.value


def m_lines(answer_sdp: str) -> list[str]:
    return [line for line in answer_sdp.split("\r\n") if line.startswith("m=")]


# ---- a real-world offer ------------------------------------------------------------------


def test_a_sipp_offer_gets_pcmu_and_telephone_event_at_our_address() -> None:
    result = answer(sipp_offer())

    assert result.codec is G711.PCMU
    assert result.dtmf_payload_type == 101
    assert result.remote == ("192.168.1.2", 6000)
    assert result.direction is Direction.SENDRECV
    assert result.offer_version == "2353687637"

    assert result.sdp.endswith("\r\n")
    assert "\n" not in result.sdp.replace("\r\n", "")  # every line ends in CRLF, none in a bare LF
    lines = result.sdp.split("\r\n")
    assert lines[0] == "v=0"
    assert f"c=IN IP4 {LOCAL_IP}" in lines
    assert m_lines(result.sdp) == [f"m=audio {RTP_PORT} RTP/AVP 0 101"]
    assert "a=rtpmap:0 PCMU/8000" in lines
    assert "a=rtpmap:101 telephone-event/8000" in lines
    assert "a=fmtp:101 0-16" in lines
    assert "a=ptime:20" in lines
    assert "a=sendrecv" in lines
    assert not any("PCMA" in line for line in lines)


def test_the_answer_reads_back_as_one_audio_stream_to_our_address() -> None:
    parsed = parse_sdp(answer(sipp_offer()).sdp)

    assert parsed.rtp_address == (LOCAL_IP, RTP_PORT)
    assert parsed.origin.address == LOCAL_IP
    assert [m.media for m in parsed.media] == ["audio"]
    audio = parsed.media[0]
    assert audio.proto == "RTP/AVP"
    assert audio.direction == "sendrecv"
    assert [(c.payload_type, c.encoding_name, c.clock_rate) for c in audio.codecs] == [
        (0, "PCMU", 8000),
        (101, "telephone-event", 8000),
    ]
    assert audio.attributes["ptime"] == ["20"]


def test_the_origin_carries_the_session_id_and_version_given() -> None:
    lines = answer(sipp_offer(), session_id=4242, version=7).sdp.split("\r\n")
    assert f"o=voicemesh 4242 7 IN IP4 {LOCAL_IP}" in lines


def test_telephone_event_is_answered_under_the_offers_payload_type() -> None:
    offer = sipp_offer(
        audio=[
            "m=audio 6000 RTP/AVP 0 96",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:96 telephone-event/8000",
            "a=fmtp:96 0-16",
            "a=sendrecv",
        ]
    )
    result = answer(offer)

    assert result.dtmf_payload_type == 96
    lines = result.sdp.split("\r\n")
    assert m_lines(result.sdp) == [f"m=audio {RTP_PORT} RTP/AVP 0 96"]
    assert "a=rtpmap:96 telephone-event/8000" in lines
    assert "a=fmtp:96 0-16" in lines
    assert not any("101" in line for line in lines)


def test_an_offer_without_telephone_event_gets_none() -> None:
    result = answer(sipp_offer(audio=["m=audio 6000 RTP/AVP 0", "a=rtpmap:0 PCMU/8000"]))

    assert result.dtmf_payload_type is None
    assert m_lines(result.sdp) == [f"m=audio {RTP_PORT} RTP/AVP 0"]
    assert "telephone-event" not in result.sdp


def test_a_pcma_first_offer_gets_pcma() -> None:
    offer = sipp_offer(
        audio=[
            "m=audio 6000 RTP/AVP 8 0 101",
            "a=rtpmap:8 PCMA/8000",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:101 telephone-event/8000",
        ]
    )
    result = answer(offer)

    assert result.codec is G711.PCMA
    assert m_lines(result.sdp) == [f"m=audio {RTP_PORT} RTP/AVP 8 101"]
    assert "a=rtpmap:8 PCMA/8000" in result.sdp.split("\r\n")
    assert "PCMU" not in result.sdp


def test_the_offerers_first_choice_among_the_codecs_this_edge_takes() -> None:
    result = answer(sipp_offer(), codecs=(G711.PCMA,))
    assert result.codec is G711.PCMA
    assert m_lines(result.sdp) == [f"m=audio {RTP_PORT} RTP/AVP 8 101"]


def test_static_payload_types_need_no_rtpmap() -> None:
    result = answer(sipp_offer(audio=["m=audio 6000 RTP/AVP 18 8"]))
    assert result.codec is G711.PCMA


def test_a_media_level_connection_is_where_rtp_goes() -> None:
    offer = sdp(
        "v=0",
        "o=- 1 1 IN IP4 192.168.1.2",
        "s=-",
        "c=IN IP4 192.168.1.2",
        "t=0 0",
        "m=audio 7078 RTP/AVP 0",
        "c=IN IP4 198.51.100.9",
    )
    assert answer(offer).remote == ("198.51.100.9", 7078)


def test_an_ipv6_offer_and_local_address() -> None:
    offer = sdp(
        "v=0",
        "o=- 1 1 IN IP6 2001:db8::2",
        "s=-",
        "c=IN IP6 2001:db8::2",
        "t=0 0",
        *SIPP_AUDIO,
    )
    result = answer(offer, local_ip="2001:db8::5")

    assert result.remote == ("2001:db8::2", 6000)
    lines = result.sdp.split("\r\n")
    assert "c=IN IP6 2001:db8::5" in lines
    assert "o=voicemesh 0 0 IN IP6 2001:db8::5" in lines
    assert not any("IP4" in line for line in lines)


# ---- direction and hold ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offered", "answered", "held"),
    [
        ("sendrecv", "sendrecv", False),
        ("sendonly", "recvonly", True),
        ("recvonly", "sendonly", False),
        ("inactive", "inactive", True),
    ],
)
def test_the_answer_takes_the_opposite_direction(offered: str, answered: str, held: bool) -> None:
    audio = [line for line in SIPP_AUDIO if line != "a=sendrecv"] + [f"a={offered}"]
    result = answer(sipp_offer(audio=audio))

    assert result.direction is Direction(offered)
    assert result.direction.held is held
    lines = result.sdp.split("\r\n")
    assert f"a={answered}" in lines
    assert [d for d in ("sendrecv", "sendonly", "recvonly", "inactive") if f"a={d}" in lines] == [answered]
    assert parse_sdp(result.sdp).media[0].direction == answered


def test_no_direction_attribute_means_sendrecv() -> None:
    audio = [line for line in SIPP_AUDIO if line != "a=sendrecv"]
    result = answer(sipp_offer(audio=audio))
    assert result.direction is Direction.SENDRECV
    assert "a=sendrecv" in result.sdp.split("\r\n")


def test_a_session_level_sendonly_is_a_hold() -> None:
    audio = [line for line in SIPP_AUDIO if line != "a=sendrecv"]
    result = answer(sipp_offer(session=[*SIPP_SESSION, "a=sendonly"], audio=audio))

    assert result.direction is Direction.SENDONLY
    assert result.direction.held
    assert "a=recvonly" in result.sdp.split("\r\n")


# ---- other streams -----------------------------------------------------------------------


def test_a_video_stream_is_declined_in_its_place() -> None:
    result = answer(sipp_offer(audio=[*SIPP_AUDIO, "m=video 6002 RTP/AVP 96", "a=rtpmap:96 H264/90000"]))

    answered = m_lines(result.sdp)
    assert len(answered) == 2
    assert answered[0] == f"m=audio {RTP_PORT} RTP/AVP 0 101"
    assert answered[1] == "m=video 0 RTP/AVP 96"
    assert [(m.media, m.port) for m in parse_sdp(result.sdp).media] == [("audio", RTP_PORT), ("video", 0)]


def test_a_video_stream_before_the_audio_is_declined_in_its_place() -> None:
    result = answer(sipp_offer(audio=["m=video 6002 RTP/AVP 96", "a=rtpmap:96 H264/90000", *SIPP_AUDIO]))

    assert [(m.media, m.port) for m in parse_sdp(result.sdp).media] == [("video", 0), ("audio", RTP_PORT)]
    assert result.remote == ("192.168.1.2", 6000)
    # the audio attributes follow the audio m-line, not the declined video one
    after_audio = result.sdp.split(f"m=audio {RTP_PORT}")[1]
    assert "a=rtpmap:0 PCMU/8000" in after_audio


# ---- 488: readable, but nothing this edge takes ------------------------------------------


def test_an_offer_of_only_g729_is_488_naming_what_was_offered() -> None:
    error = rejected(sipp_offer(audio=["m=audio 6000 RTP/AVP 18", "a=rtpmap:18 G729/8000"]))
    assert error.status == 488
    assert "G729" in error.reason


def test_an_offer_of_only_unknown_dynamic_codecs_is_488_naming_the_payload_types() -> None:
    error = rejected(sipp_offer(audio=["m=audio 6000 RTP/AVP 97 98"]))
    assert error.status == 488
    assert "97" in error.reason
    assert "98" in error.reason


BARESIP_KEY = "1 AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(bytes(range(30))).decode()
SAVP_AUDIO = ["m=audio 6000 RTP/SAVP 0 8 101", *SIPP_AUDIO[1:], f"a=crypto:{BARESIP_KEY}"]


def test_an_srtp_offer_is_answered_with_our_own_key_under_its_tag_and_suite() -> None:
    ours = bytes(range(100, 130))
    result = answer_offer(sipp_offer(audio=SAVP_AUDIO), local_ip=LOCAL_IP, rtp_port=LOCAL_PORT, key_salt=ours)
    assert m_lines(result.sdp)[0].startswith(f"m=audio {LOCAL_PORT} RTP/SAVP 0")
    (line,) = [x for x in result.sdp.split("\r\n") if x.startswith("a=crypto:")]
    mine = parse_crypto(line)
    assert (mine.tag, mine.suite, mine.key_salt) == (1, Suite.AES_CM_128_HMAC_SHA1_80, ours)
    assert result.crypto is not None and result.crypto.key_salt == bytes(range(30))
    assert result.key_salt == ours


def test_a_plain_offer_gets_no_crypto() -> None:
    result = answer_offer(sipp_offer(), local_ip=LOCAL_IP, rtp_port=LOCAL_PORT, key_salt=bytes(30))
    assert "a=crypto" not in result.sdp and result.crypto is None and result.key_salt is None


def test_an_srtp_offer_without_a_usable_key_is_488_naming_what_we_take() -> None:
    audio = ["m=audio 6000 RTP/SAVP 0", "a=crypto:1 AEAD_AES_256_GCM inline:" + "A" * 60]
    error = rejected(sipp_offer(audio=audio))
    assert error.status == 488 and "AES_CM_128_HMAC_SHA1_80" in error.reason


@pytest.mark.parametrize(
    ("policy", "audio", "reason"),
    [
        (SrtpPolicy.REQUIRE, SIPP_AUDIO, "requires SRTP"),
        (SrtpPolicy.OFF, SAVP_AUDIO, "SRTP is turned off"),
    ],
)
def test_the_srtp_policy_refuses_the_other_kind_with_488(policy: SrtpPolicy, audio: list[str], reason: str) -> None:
    with pytest.raises(SdpRejected) as caught:
        answer_offer(sipp_offer(audio=audio), local_ip=LOCAL_IP, rtp_port=LOCAL_PORT, srtp=policy)
    assert caught.value.status == 488 and reason in caught.value.reason


def test_another_media_profile_is_488_naming_it() -> None:
    error = rejected(sipp_offer(audio=["m=audio 6000 UDP/TLS/RTP/SAVPF 0", *SIPP_AUDIO[1:]]))
    assert error.status == 488 and "UDP/TLS/RTP/SAVPF" in error.reason


def test_an_offer_without_audio_is_488() -> None:
    error = rejected(sipp_offer(audio=["m=video 6002 RTP/AVP 96", "a=rtpmap:96 H264/90000"]))
    assert error.status == 488
    assert "audio" in error.reason


def test_a_disabled_audio_stream_is_488() -> None:
    audio = ["m=audio 0 RTP/AVP 0 8 101", *SIPP_AUDIO[1:]]
    error = rejected(sipp_offer(audio=audio))
    assert error.status == 488
    assert "port 0" in error.reason


@pytest.mark.parametrize("body", ["", "\r\n", "   \n\t"])
def test_an_empty_body_is_488(body: str) -> None:
    assert rejected(body).status == 488


# ---- 400: an offer that cannot be read ---------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "hello, this is not SDP",
        "INVITE sip:agent@edge.example.com SIP/2.0\r\n",
        sdp(*SIPP_SESSION[1:], *SIPP_AUDIO),  # a whole offer but no v= line
        sdp("v=zero", *SIPP_SESSION[1:], *SIPP_AUDIO),
        sipp_offer(audio=["m=audio six RTP/AVP 0"]),
        sipp_offer(audio=["m=audio 6000 RTP/AVP 0", "a=rtpmap:x PCMU/8000"]),
    ],
)
def test_garbage_is_400(body: str) -> None:
    assert rejected(body).status == 400


def test_no_connection_address_is_400() -> None:
    session = [line for line in SIPP_SESSION if not line.startswith("c=")]
    error = rejected(sipp_offer(session=session))
    assert error.status == 400
    assert "c=" in error.reason


def test_a_connection_address_that_is_not_an_ip_is_400_naming_it() -> None:
    session = [line if not line.startswith("c=") else "c=IN IP4 pbx.example.com" for line in SIPP_SESSION]
    error = rejected(sipp_offer(session=session))
    assert error.status == 400
    assert "pbx.example.com" in error.reason


def test_a_connection_line_without_an_address_is_400() -> None:
    session = [line if not line.startswith("c=") else "c=IN IP4" for line in SIPP_SESSION]
    error = rejected(sipp_offer(session=session))
    assert error.status == 400
    assert "c=" in error.reason


def test_a_truncated_second_m_line_never_gives_an_unreadable_answer() -> None:
    body = sipp_offer(audio=[*SIPP_AUDIO, "m=video 6002"])
    try:
        result = answer(body)
    except SdpRejected as exc:
        assert exc.status == 400
        return
    assert [m.media for m in parse_sdp(result.sdp).media] == ["audio", "video"]


def test_an_audio_port_out_of_range_is_400() -> None:
    audio = ["m=audio 70000 RTP/AVP 0 8 101", *SIPP_AUDIO[1:]]
    error = rejected(sipp_offer(audio=audio))
    assert error.status == 400
    assert "70000" in error.reason


# ---- any text ----------------------------------------------------------------------------

FIELDS = st.sampled_from(["v=", "o=", "s=", "c=", "t=", "m=", "a=", "b=", "m=audio ", "c=IN IP4 "])
SDPISH_LINE = st.one_of(
    st.sampled_from([*SIPP_SESSION, *SIPP_AUDIO, "m=video 6002 RTP/AVP 96", "a=sendonly", "a=rtpmap:"]),
    st.builds(lambda f, v: f + v, FIELDS, st.text(max_size=30)),
    st.text(max_size=30),
)
SDPISH = st.builds(
    lambda lines, sep: sep.join(lines), st.lists(SDPISH_LINE, max_size=14), st.sampled_from(["\r\n", "\n"])
)


@settings(max_examples=500, deadline=None)
@given(body=st.text() | SDPISH)
def test_any_text_gets_an_answer_or_a_400_or_488(body: str) -> None:
    try:
        result = answer(body)
    except SdpRejected as exc:
        assert exc.status in (400, 488)
        assert exc.reason
        return
    assert isinstance(result, Answer)
    assert result.sdp.startswith("v=0\r\n")
    assert f"c=IN IP4 {LOCAL_IP}\r\n" in result.sdp
    assert result.sdp.count(f"m=audio {RTP_PORT} RTP/AVP ") == 1
