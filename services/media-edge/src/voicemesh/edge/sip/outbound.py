"""What a call we place needs beyond aiosipua 0.7.1's UAC, as pure message building:

- the ACK of a non-2xx final response to our INVITE (RFC 3261 §17.1.1.3). The library sends
  none, so a phone that refuses us (486, 603) would retransmit its refusal for 32 s;
- the INVITE again with credentials, answering a digest challenge (401 from the callee,
  407 from a trunk's proxy). The library's own retry drops the INVITE's extra headers (our
  Contact) and sits outside our retransmission timers, so the transport retries itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiosipua.auth import SipDigestAuth, answer_challenge
from aiosipua.header_codec import parse_via, stringify_cseq, stringify_via
from aiosipua.headers import CSeq
from aiosipua.message import SipMessage, SipRequest, SipResponse
from aiosipua.utils import generate_branch

CHALLENGES = (401, 407)


def ack_for_refusal(invite: SipRequest, refusal: SipResponse) -> SipRequest:
    """The ACK of `refusal` (a final response of 300 or above to `invite`): the INVITE's
    request-URI, top Via (its branch: the ACK is part of the INVITE's transaction), From,
    Call-ID and Route; the response's To, with the tag the callee gave; CSeq n ACK."""
    ack = SipRequest(method="ACK", uri=invite.uri)
    vias = invite.get_header_values("Via")
    if vias:
        ack.headers.append("Via", vias[0])
    for name in ("From", "Call-ID"):
        value = invite.get_header(name)
        if value is not None:
            ack.headers.set_single(name, value)
    to = refusal.get_header("To") or invite.get_header("To")
    if to is not None:
        ack.headers.set_single("To", to)
    cseq = invite.cseq
    ack.headers.set_single("CSeq", stringify_cseq(CSeq(seq=cseq.seq if cseq else 1, method="ACK")))
    for route in invite.get_header_values("Route"):
        ack.headers.append("Route", route)
    ack.headers.set_single("Max-Forwards", "70")
    ack.headers.set_single("Content-Length", "0")
    return ack


def with_credentials(
    invite: SipRequest, challenge: SipResponse, auth: SipDigestAuth, cseq: int
) -> SipRequest | None:
    """`invite` again (a new transaction: a fresh branch, CSeq `cseq`) with the
    Authorization (401) or Proxy-Authorization (407) that answers `challenge`; None when
    it cannot be answered (no digest challenge, an algorithm or qop we do not speak)."""
    answered = answer_challenge(auth, challenge, challenge.status_code, "INVITE", invite.uri)
    if answered is None:
        return None
    retry = SipMessage.parse(bytes(invite))
    assert isinstance(retry, SipRequest)
    vias = retry.get_header_values("Via")
    if vias:
        top = parse_via(vias[0])
        top.params["branch"] = generate_branch()
        retry.remove_header("Via")
        for value in [stringify_via(top), *vias[1:]]:
            retry.headers.append("Via", value)
    retry.headers.set_single("CSeq", stringify_cseq(CSeq(seq=cseq, method="INVITE")))
    retry.headers.set_single(*answered)
    return retry


@dataclass
class Dialling:
    """A call we are placing: each INVITE sent, by CSeq (what a final response answers),
    and whether a challenge has been answered already (once: a second is a refusal)."""

    invites: dict[int, SipRequest] = field(default_factory=dict)
    challenged: bool = False

    def sent(self, invite: SipRequest) -> None:
        cseq = invite.cseq
        assert cseq is not None
        self.invites[cseq.seq] = invite

    @property
    def latest(self) -> int:
        return max(self.invites)
