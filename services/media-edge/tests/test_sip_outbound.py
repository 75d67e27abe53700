"""The messages a call we place needs beyond the library: the ACK of a refusal, and the
INVITE again with credentials (pure: no sockets)."""

from __future__ import annotations

from aiosipua.auth import SipDigestAuth
from aiosipua.message import SipMessage, SipRequest, SipResponse

from voicemesh.edge.sip.outbound import Dialling, ack_for_refusal, with_credentials

INVITE = (
    "INVITE sip:desk@192.0.2.10:5060 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bK-first;rport\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:voicemesh@198.51.100.1:5060>;tag=ours\r\n"
    "To: <sip:desk@192.0.2.10:5060>\r\n"
    "Call-ID: out-1@198.51.100.1\r\n"
    "CSeq: 1 INVITE\r\n"
    "Route: <sip:proxy.example.com;lr>\r\n"
    "Contact: <sip:voicemesh@198.51.100.1:5060>\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 4\r\n\r\nv=0\n"
)


def parse(text: str) -> SipRequest | SipResponse:
    return SipMessage.parse(text.encode())


def refusal(status: int, reason: str, extra: str = "") -> SipResponse:
    msg = parse(
        f"SIP/2.0 {status} {reason}\r\n"
        "Via: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bK-first;rport\r\n"
        "From: <sip:voicemesh@198.51.100.1:5060>;tag=ours\r\n"
        "To: <sip:desk@192.0.2.10:5060>;tag=theirs\r\n"
        "Call-ID: out-1@198.51.100.1\r\nCSeq: 1 INVITE\r\n" + extra + "Content-Length: 0\r\n\r\n"
    )
    assert isinstance(msg, SipResponse)
    return msg


def invite() -> SipRequest:
    msg = parse(INVITE)
    assert isinstance(msg, SipRequest)
    return msg


def test_the_ack_of_a_refusal_is_part_of_the_invites_transaction() -> None:
    ack = parse(bytes(ack_for_refusal(invite(), refusal(486, "Busy Here"))).decode())
    assert isinstance(ack, SipRequest) and ack.method == "ACK" and ack.uri == "sip:desk@192.0.2.10:5060"
    assert ack.get_header("Via") == "SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bK-first;rport"
    assert ack.get_header("To") == "<sip:desk@192.0.2.10:5060>;tag=theirs"  # the callee's tag
    assert ack.get_header("CSeq") == "1 ACK" and ack.get_header("Route") == "<sip:proxy.example.com;lr>"
    assert ack.get_header("From") == "<sip:voicemesh@198.51.100.1:5060>;tag=ours" and not ack.text


CHALLENGE = 'Digest realm="trunk.example.com", nonce="abc123", qop="auth", algorithm=SHA-256'


def test_a_proxys_challenge_is_answered_in_a_new_transaction_with_proxy_authorization() -> None:
    challenge = refusal(407, "Proxy Authentication Required", f"Proxy-Authenticate: {CHALLENGE}\r\n")
    retry = with_credentials(invite(), challenge, SipDigestAuth("agent", "s3cret"), cseq=2)
    assert retry is not None
    again = parse(bytes(retry).decode())
    assert again.get_header("CSeq") == "2 INVITE"
    branch = again.via[0].params["branch"]
    assert branch and branch.startswith("z9hG4bK") and branch != "z9hG4bK-first"
    creds = again.get_header("Proxy-Authorization") or ""
    assert 'username="agent"' in creds and 'realm="trunk.example.com"' in creds and "SHA-256" in creds
    assert "s3cret" not in bytes(retry).decode()
    # everything else is the INVITE as it was: our Contact, the route, the offer
    assert again.get_header("Contact") == "<sip:voicemesh@198.51.100.1:5060>"
    assert again.get_header("Route") == "<sip:proxy.example.com;lr>" and again.text == "v=0\n"


def test_a_challenge_we_cannot_answer_is_none() -> None:
    basic = refusal(401, "Unauthorized", 'WWW-Authenticate: Basic realm="x"\r\n')
    assert with_credentials(invite(), basic, SipDigestAuth("agent", "s3cret"), cseq=2) is None
    bare = refusal(401, "Unauthorized")
    assert with_credentials(invite(), bare, SipDigestAuth("agent", "s3cret"), cseq=2) is None


def test_dialling_knows_each_invite_by_cseq_and_the_latest() -> None:
    dialling = Dialling()
    first = invite()
    dialling.sent(first)
    retry = with_credentials(
        first,
        refusal(401, "Unauthorized", f"WWW-Authenticate: {CHALLENGE}\r\n"),
        SipDigestAuth("a", "b"),
        cseq=2,
    )
    assert retry is not None
    dialling.sent(retry)
    assert dialling.latest == 2 and dialling.invites[1] is first
