"""A minimal SIP caller over UDP, for tests and benchmarks that must place calls at the
edge from inside their own event loop (SIPp and baresip run as processes, on their own
clocks).

Just enough SIP to place a call and hang it up: INVITE (retransmitted on T1 doubling while
nothing answers), ACK, BYE both ways, with the request-URI's user naming the agent. No
authentication (the edge admits 127.0.0.1 without a digest), no TCP, no forking, no
re-INVITE. RTP is the caller's own business: `SipUac.call` takes the address its offer
names and returns where the answer wants RTP sent.

    uac = SipUac(("127.0.0.1", 5060), agent="restaurant")
    await uac.start()
    dialog, edge_rtp = await uac.call(0, rtp_socket_address)
    ...
    await uac.bye(dialog)
    uac.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

Address = tuple[str, int]
HOST = "127.0.0.1"
T1_S = 0.5  # RFC 3261 T1: the INVITE's first retransmission interval, doubling
T2_S = 4.0  # the most a non-INVITE request (our BYE) waits between retransmissions
ANSWER_TIMEOUT_S = 15.0
BYE_TIMEOUT_S = 8.0


class SipCallFailed(RuntimeError):
    """The call was refused, never answered, or answered without an audio address; `status`
    is the refusal's status code (a 503 may be worth trying again), 0 if there was none."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


_COMPACT = {"i": "call-id", "f": "from", "t": "to", "v": "via", "m": "contact", "l": "content-length"}


@dataclass(frozen=True)
class SipMessage:
    """One SIP message as text: its first line, headers (names lower-cased, in order), body."""

    first_line: str
    headers: list[tuple[str, str]]
    body: str

    @classmethod
    def parse(cls, data: bytes) -> SipMessage:
        head, _, body = data.decode(errors="replace").partition("\r\n\r\n")
        lines = head.split("\r\n")
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                key = name.strip().lower()
                headers.append((_COMPACT.get(key, key), value.strip()))
        return cls(lines[0], headers, body)

    def header(self, name: str) -> str:
        return next((v for n, v in self.headers if n == name), "")

    @property
    def status(self) -> int:
        """The response's status code; 0 for a request."""
        parts = self.first_line.split()
        if self.first_line.startswith("SIP/2.0") and len(parts) > 1 and parts[1].isdigit():
            return int(parts[1])
        return 0

    @property
    def method(self) -> str:
        """A request's method, or the method in a response's CSeq."""
        if self.status:
            return (self.header("cseq").split() or [""])[-1].upper()
        return (self.first_line.split() or [""])[0].upper()

    def response(self, status: int, reason: str) -> str:
        """Our response to this request (the edge's BYE, say)."""
        keep = [f"{n}: {v}" for n, v in self.headers if n in ("via", "from", "to", "call-id", "cseq")]
        return "\r\n".join([f"SIP/2.0 {status} {reason}", *keep, "Content-Length: 0"]) + "\r\n\r\n"


def sdp_offer(rtp: Address) -> str:
    """PCMU and telephone-event at 20 ms, received on `rtp`."""
    host, port = rtp
    return (
        f"v=0\r\no=caller {secrets.randbits(31)} 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
    )


def answered_rtp(sdp: str) -> Address | None:
    """Where the answer wants our RTP: its `c=` host and `m=audio` port (None if it names none)."""
    host = re.search(r"^c=IN IP4 (\S+)", sdp, re.MULTILINE)
    port = re.search(r"^m=audio (\d+) ", sdp, re.MULTILINE)
    if host is None or port is None or port.group(1) == "0":
        return None
    return host.group(1), int(port.group(1))


class SipDialog:
    """One call's SIP state on the caller's side, fed by `SipUac` (no I/O of its own)."""

    def __init__(self, local: Address, uri: str, index: int, user_agent: str = "voicemesh-sipcaller") -> None:
        self.local = local
        self.user_agent = user_agent
        self.uri = uri  # the INVITE's request-URI
        self.target = ""  # the request-URI once answered: the edge's Contact
        self.call_id = f"call-{index}-{secrets.token_hex(6)}"
        self.user = f"caller{index}"
        self.from_tag = secrets.token_hex(4)
        self.to_tag = ""
        self.heard = asyncio.Event()  # any response to the INVITE: stop retransmitting it
        self.final: asyncio.Future[SipMessage] = asyncio.get_running_loop().create_future()
        self.bye_answered = asyncio.Event()
        self.remote_bye = asyncio.Event()  # the edge hung up
        self.on_remote_bye: Callable[[], None] | None = None

    def request(self, method: str, cseq: int, body: str = "", branch: str = "", to: str = "") -> str:
        host, port = self.local
        to = to or f"<{self.uri}>" + (f";tag={self.to_tag}" if self.to_tag else "")
        lines = [
            f"{method} {self.target or self.uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {host}:{port};rport;branch={branch or 'z9hG4bK' + secrets.token_hex(8)}",
            "Max-Forwards: 70",
            f"From: <sip:{self.user}@{host}:{port}>;tag={self.from_tag}",
            f"To: {to}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: <sip:{self.user}@{host}:{port}>",
            f"User-Agent: {self.user_agent}",
        ]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        return "\r\n".join(lines) + "\r\n\r\n" + body

    def answered(self, ok: SipMessage) -> None:
        """The 200 OK: the dialog's remote tag and where in-dialog requests go."""
        self.to_tag = ok.header("to").partition(";tag=")[2].split(";")[0].strip()
        contact = re.search(r"<([^>]+)>", ok.header("contact"))
        self.target = contact.group(1) if contact else self.uri


class SipUac(asyncio.DatagramProtocol):
    """A SIP user agent client: one UDP socket placing every call at `edge` for `agent`,
    messages routed to their call by Call-ID."""

    def __init__(self, edge: Address, agent: str, user_agent: str = "voicemesh-sipcaller") -> None:
        self.edge = edge
        self.agent = agent
        self.user_agent = user_agent
        self.dialogs: dict[str, SipDialog] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self.stray = 0  # messages for no call we have

    async def start(self) -> None:
        await asyncio.get_running_loop().create_datagram_endpoint(lambda: self, local_addr=(HOST, 0))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    @property
    def local(self) -> Address:
        assert self.transport is not None
        return self.transport.get_extra_info("sockname")[:2]

    def send(self, text: str, to: Address | None = None) -> None:
        assert self.transport is not None
        self.transport.sendto(text.encode(), to or self.edge)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP from the edge not listening (it stopped): the timeouts say so

    def datagram_received(self, data: bytes, addr: Address) -> None:
        msg = SipMessage.parse(data)
        dialog = self.dialogs.get(msg.header("call-id"))
        if msg.status == 0:  # a request from the edge
            if msg.method == "ACK":
                return
            if dialog is None or msg.method != "BYE":
                self.stray += dialog is None
                no = (481, "Call/Transaction Does Not Exist") if dialog is None else (501, "Not Implemented")
                self.send(msg.response(*no), addr)
                return
            self.send(msg.response(200, "OK"), addr)
            if not dialog.remote_bye.is_set():
                dialog.remote_bye.set()
                if dialog.on_remote_bye is not None:
                    dialog.on_remote_bye()
            return
        if dialog is None:
            self.stray += 1
        elif msg.method == "INVITE":
            dialog.heard.set()
            if msg.status >= 200 and not dialog.final.done():
                dialog.final.set_result(msg)
            elif 200 <= msg.status < 300:  # the 200 again: our ACK went missing
                self.send(dialog.request("ACK", 1))
        elif msg.method == "BYE" and msg.status >= 200:
            dialog.bye_answered.set()

    async def call(self, index: int, rtp: Address) -> tuple[SipDialog, Address]:
        """Place call `index` with an offer naming `rtp`; its dialog (the 200 ACKed) and
        where its RTP goes. SipCallFailed on a final non-2xx, no 200 within ANSWER_TIMEOUT_S,
        or an answer that names no audio address."""
        loop = asyncio.get_running_loop()
        dialog = SipDialog(
            self.local, f"sip:{self.agent}@{self.edge[0]}:{self.edge[1]}", index, self.user_agent
        )
        self.dialogs[dialog.call_id] = dialog
        branch = "z9hG4bK" + secrets.token_hex(8)
        invite = dialog.request("INVITE", 1, sdp_offer(rtp), branch=branch)
        deadline = loop.time() + ANSWER_TIMEOUT_S
        interval = T1_S
        try:
            while not dialog.final.done():
                left = deadline - loop.time()
                if left <= 0:
                    heard = "only provisional responses" if dialog.heard.is_set() else "no response"
                    raise SipCallFailed(
                        f"no final response to the INVITE in {ANSWER_TIMEOUT_S:.0f} s ({heard})"
                    )
                if not dialog.heard.is_set():
                    self.send(invite)
                await asyncio.wait([dialog.final], timeout=min(interval, left))
                interval *= 2
            final = dialog.final.result()
            if final.status >= 300:  # its ACK is part of the INVITE's transaction (§17.1.1.3)
                self.send(dialog.request("ACK", 1, branch=branch, to=final.header("to")))
                raise SipCallFailed(f"the INVITE was refused: {final.first_line}", final.status)
            dialog.answered(final)
            self.send(dialog.request("ACK", 1))
            remote = answered_rtp(final.body)
            if remote is None:
                await self.bye(dialog)
                raise SipCallFailed(f"the 200 OK's SDP names no audio address: {final.body[:200]!r}")
        except BaseException:
            self.dialogs.pop(dialog.call_id, None)
            raise
        return dialog, remote

    async def bye(self, dialog: SipDialog) -> bool:
        """Hang up (BYE, retransmitted until answered); True once answered or the edge's BYE
        crossed ours."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BYE_TIMEOUT_S
        request = dialog.request("BYE", 2)
        interval = T1_S
        try:
            while not (dialog.bye_answered.is_set() or dialog.remote_bye.is_set()):
                if loop.time() >= deadline:
                    return False
                self.send(request)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(interval, deadline - loop.time())):
                        await dialog.bye_answered.wait()
                interval = min(2 * interval, T2_S)
            return True
        finally:
            self.dialogs.pop(dialog.call_id, None)
