"""Malformed SIP, SDP and RTP/RTCP at the SIP edge (issue 7), through the real shell.

`Edge` is a real `SipCallTransport` on loopback ports, a call handler in place of the mesh.
Bytes go straight into its listeners: a datagram into the UDP listener's protocol, a TCP
stream into the TCP listener's `_handle_connection` (which frames it), both ending in
`_Counted._dispatch` with `_on_message`, admission, aiosipua and the call handler behind.
What the edge sends is recorded where it leaves (the UDP socket's `sendto`, the TCP
listener's `send`) and goes out only to the test's own sockets. A call's RTP port is fed
the same way, into its aiortp session's protocol with `SipPort`'s guards around it.

Each message the edge is given ends as one `Outcome` (its `Fate`):
- REPLIED: a response went out while the edge handled it (it may be counted too: a
  request that lacks a mandatory header gets its 400 and counts as `bad_sip_message`);
- COUNTED: nothing went out and a kind of `voicemesh_errors_total` or `_dropped_total` grew:
  `bad_sip_message` (it did not parse, lacks a header, or tripped the routing, which
  `_on_message` catches), `sip_unroutable_reply` (its Via names nowhere a reply can go),
  `sip_retransmission` (seen before and not answered yet), ...;
- ABSORBED: neither, which only an ACK or a response may be.
A reply goes to the IP address the message came from (not a `received` the caller wrote)
at a port that exists, over TCP back on its own connection. Nothing escapes `_dispatch` or
`datagram_received`; nothing reaches the event loop's exception handler. A TCP caller
stays connected until the calls it started are refused; a stream that ends short of a
message's Content-Length ends its connection, as framing must.

`through_the_edge` (one input, a fresh edge, judged) and `through_a_call` are what
`bench/fuzz_sip.py` runs under atheris. The eight bugs the first version of this file found
are regression tests on their minimal inputs, as are the three found since.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import gc
import random
import re
import socket
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from types import SimpleNamespace
from typing import Any

import pytest
from aiortp.packet import RtcpPacket, RtpPacket
from aiosipua.message import SipMessage, SipRequest, SipResponse
from aiosipua.sdp import parse_sdp
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from voicemesh.edge.port import EndReason, Frame, Hangup, MediaPort, PortEvent
from voicemesh.edge.sip.offer import G711, Answer, SdpRejected, answer_offer
from voicemesh.edge.sip.transport import SipCallTransport, SipSettings
from voicemesh.mesh.aio import cancel_and_wait
from voicemesh.mesh.localservers import free_port
from voicemesh.mesh.metrics import ServiceMetrics

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
ALLOWED = ("127.0.0.1", 5062)  # a caller in the allowed networks
OUTSIDE = ("192.0.2.7", 5062)  # one outside them, who must answer a digest challenge
Address = tuple[str, int]

# ---- the real shell, in this process ---------------------------------------------------


class Outcome(StrEnum):
    REPLIED = "replied"
    COUNTED = "counted"
    ABSORBED = "absorbed"


def status(data: bytes) -> int:
    """A response's status code (0 for a request)."""
    line = data.split(b"\r\n", 1)[0].split()
    return int(line[1]) if line[:1] == [b"SIP/2.0"] else 0


@dataclass
class Fate:
    """What became of one message the edge was given."""

    over: str  # "udp" or "tcp"
    source: Address
    message: SipRequest | SipResponse | None  # as the listener parsed it (None: it did not)
    sent: list[tuple[Address, bytes]]  # while the edge handled it
    counted: dict[str, float]  # the kinds of error (and "dropped:" drop) that grew
    caught: Exception | None  # what `_on_message` caught from the routing

    @property
    def what(self) -> str:
        if self.message is None:
            return "unreadable"
        return "response" if isinstance(self.message, SipResponse) else self.message.method.upper()

    @property
    def outcome(self) -> Outcome:
        return Outcome.REPLIED if self.sent else Outcome.COUNTED if self.counted else Outcome.ABSORBED

    @property
    def statuses(self) -> list[int]:
        return [status(data) for _, data in self.sent]

    def problems(self) -> list[str]:
        out = [
            f"a reply went to {to}: not back to {self.source[0] if self.over == 'udp' else self.source}"
            for to, _ in self.sent
            if (to != self.source if self.over == "tcp" else to[0] != self.source[0] or not 0 < to[1] < 65536)
        ]
        if self.outcome is Outcome.ABSORBED and self.what not in ("ACK", "response"):
            out.append(f"a {self.what} was neither answered nor counted")
        if isinstance(self.caught, RuntimeError) and "No TCP connection" in str(self.caught):
            out.append(f"its reply had no connection to go on: {self.caught}")
        return out


class EdgeFault(AssertionError):
    """The edge broke a promise about what it was given."""


def check(fates: list[Fate], loop_errors: list[dict[str, Any]]) -> None:
    problems = [f"{fate.what} from {fate.source}: {p}" for fate in fates for p in fate.problems()]
    problems += [
        f"the loop's exception handler got {c.get('exception') or c['message']!r}" for c in loop_errors
    ]
    if problems:
        raise EdgeFault("; ".join(problems))


@dataclass
class Callee:
    """Stands in for the mesh: answers the calls it `expect`s (by Call-ID), noting when their
    caller is heard and how they end, and refuses every other at once (503)."""

    ports: dict[str, MediaPort] = field(default_factory=dict)
    heard: dict[str, asyncio.Event] = field(default_factory=dict)
    done: dict[str, asyncio.Event] = field(default_factory=dict)
    ended: dict[str, PortEvent] = field(default_factory=dict)
    refusals: set[asyncio.Task[Any]] = field(default_factory=set)  # the calls' tasks, till `settle`

    def expect(self, call_id: str) -> None:
        self.heard[call_id], self.done[call_id] = asyncio.Event(), asyncio.Event()

    async def __call__(self, port: MediaPort) -> None:
        call_id = port.info.carrier_call_id
        self.ports[call_id] = port
        if call_id not in self.done:
            self.refusals.add(asyncio.current_task())  # type: ignore[arg-type]
            await port.close(EndReason.UNAVAILABLE)
            return
        try:
            while not isinstance(got := await port.receive(), Hangup):
                if isinstance(got, Frame) and max(map(abs, array.array("h", got.pcm))) > 2000:
                    self.heard[call_id].set()
            self.ended[call_id] = got
            await port.close(EndReason.CALLER)
        finally:
            self.done[call_id].set()


async def _nothing() -> None:
    pass


class Edge:
    """The real transport, fed bytes in this process: each message's `Fate` in `fates`,
    everything it sent in `sent`."""

    def __init__(self, transport: SipCallTransport, callee: Callee, metrics: ServiceMetrics) -> None:
        self.transport, self.callee, self.metrics = transport, callee, metrics
        self.udp, self.tcp = (uas.transport for uas in transport._uases)
        self.fates: list[Fate] = []
        self.sent: list[tuple[Address, bytes]] = []
        self.peers: set[Address] = set()  # the test's own sockets: what goes to them is sent
        self.loop_errors: list[dict[str, Any]] = []
        self.tags: dict[str, str] = {}  # Call-ID -> our To tag, for the calls `call` placed
        self._sent = asyncio.Event()
        self._routed: tuple[SipRequest | SipResponse | None, Exception | None] = (None, None)
        # wrapped on these instances, the real code running inside: what the UDP socket is given,
        # what the TCP listener sends, and what `_on_message` catches from `_route`
        wire = self.udp._udp_transport
        real_sendto, send, route = wire.sendto, self.tcp.send, transport._route

        def sendto(data: bytes, addr: Address) -> None:
            self._record(addr, bytes(data))
            if addr in self.peers:
                real_sendto(data, addr)

        def tcp_send(message: SipRequest | SipResponse, addr: Address) -> None:
            send(message, addr)  # raises when no connection from `addr` is open
            self._record(addr, bytes(message))

        def routed(uas: Any, msg: SipRequest | SipResponse, addr: Address) -> None:
            self._routed = (msg, None)
            try:
                route(uas, msg, addr)
            except Exception as exc:
                self._routed = (msg, exc)
                raise

        wire.sendto, self.tcp.send, transport._route = sendto, tcp_send, routed
        for listener, over in ((self.udp, "udp"), (self.tcp, "tcp")):
            listener._dispatch = self._watched(listener._dispatch, over)

    def _record(self, to: Address, data: bytes) -> None:
        self.sent.append((to, data))
        self._sent.set()

    def counts(self) -> dict[str, float]:
        return {
            ("dropped:" if "what" in s.labels else "") + (s.labels.get("kind") or s.labels["what"]): s.value
            for counter in (self.metrics.errors_total, self.metrics.dropped_total)
            for family in counter.collect()
            for s in family.samples
            if s.name.endswith("_total")
        }

    def _watched(self, dispatch: Callable[[bytes, Address], None], over: str) -> Callable[..., None]:
        def watched(data: bytes, addr: Address) -> None:
            first, before, self._routed = len(self.sent), self.counts(), (None, None)
            dispatch(data, addr)
            grew = {k: v - before.get(k, 0) for k, v in self.counts().items() if v > before.get(k, 0)}
            message, caught = self._routed
            self.fates.append(Fate(over, addr, message, self.sent[first:], grew, caught))

        return watched

    @property
    def port(self) -> int:
        return self.transport.port

    def datagram(self, data: bytes, source: Address = ALLOWED) -> Fate:
        self.udp._udp_transport.get_protocol().datagram_received(data, source)
        return self.fates[-1]

    async def stream(
        self, data: bytes, source: Address = ("127.0.0.1", 40001), *, stay: bool = True
    ) -> list[Fate]:
        """`data` as what one TCP connection from `source` brings (its writing end a stub),
        the caller staying connected till the calls it started are refused (unless not `stay`)."""
        reader, first = asyncio.StreamReader(), len(self.fates)
        reader.feed_data(data)
        if not stay:
            reader.feed_eof()
        writer = SimpleNamespace(  # (what the listener writes, its `send` records)
            get_extra_info={"peername": source}.get,
            write=lambda _data: None,
            drain=_nothing,
            close=lambda: None,
            wait_closed=_nothing,
        )
        connection = asyncio.create_task(self.tcp._handle_connection(reader, writer))  # type: ignore[arg-type]
        await asyncio.sleep(0)  # it reads every message that came whole, then waits for more
        await self.settle()
        reader.feed_eof()
        await connection
        return self.fates[first:]

    async def until(self, done: Callable[[], bool], within: float = 3.0) -> bool:
        """Whether `done()` holds once what the edge sends makes it so, within `within` s."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while not done():
                    self._sent.clear()
                    await self._sent.wait()
        return done()

    def replies(self, call_id: str, code: int) -> list[bytes]:
        return [
            data for _, data in self.sent if status(data) == code and f"Call-ID: {call_id}\r".encode() in data
        ]

    async def settle(self) -> None:
        """Until the calls the callee refuses (at once) have ended, tasks and all."""
        await asyncio.sleep(0)  # (a call's task starts on the loop's next turn)
        while self.callee.refusals:
            refusals, self.callee.refusals = self.callee.refusals, set()
            await asyncio.wait(refusals, timeout=5)
            del refusals  # (what one raised reaches the loop's exception handler as it goes)

    async def call(self, call_id: str, source: Address = ALLOWED) -> int:
        """A call answered and ACKed; the edge's RTP port for it."""
        self.callee.expect(call_id)
        self.datagram(request("INVITE", call_id, via(source[1], call_id), body=OFFER), source)
        assert await self.until(lambda: bool(self.replies(call_id, 200))), self.fates[-1]
        ok = SipMessage.parse(self.replies(call_id, 200)[0])
        self.tags[call_id] = ok.to_addr.tag if ok.to_addr and ok.to_addr.tag else ""
        self.datagram(
            request("ACK", call_id, via(source[1], call_id + "a"), to_tag=self.tags[call_id]), source
        )
        return parse_sdp(ok.text).audio.port  # type: ignore[union-attr]

    def rtp(self, call_id: str, data: bytes) -> None:
        """`data` into the call's RTP socket's protocol (RTCP is muxed on it too)."""
        session = self.callee.ports[call_id]._rtp.session  # type: ignore[attr-defined]
        session._rtp_transport.datagram_received(data, ("127.0.0.1", 4000))  # (aiortp 0.8.0)

    async def hang_up(self, call_id: str, source: Address = ALLOWED) -> list[int]:
        bye = request("BYE", call_id, via(source[1], call_id + "b"), cseq=9, to_tag=self.tags[call_id])
        fate = self.datagram(bye, source)
        if fate.statuses == [200]:
            await asyncio.wait_for(self.callee.done[call_id].wait(), 5)
        return fate.statuses


@contextlib.asynccontextmanager
async def edge_running(**options: Any) -> AsyncIterator[Edge]:
    """A real edge (options: SipSettings fields), its loop's exception handler recording."""
    loop, callee, metrics = asyncio.get_running_loop(), Callee(), ServiceMetrics.create("media-edge")
    low = 20000 + free_port() % 20000 // 2 * 2
    options = {
        "credentials": {"alice": "s3cret"},
        "nonce_secret": b"n" * 32,
        "rtp_ports": (low, low + 40),
    } | options
    for attempt in range(5):  # (port 0 is a free UDP port; now and then TCP's of that number is not)
        transport = SipCallTransport(SipSettings(port=0, **options), metrics)
        try:
            await transport.start(callee)
            break
        except OSError:
            await transport.stop()
            if attempt == 4:
                raise
    edge, previous = Edge(transport, callee, metrics), loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: edge.loop_errors.append(context))
    try:
        yield edge
    finally:
        await transport.stop()
        await cancel_and_wait(*transport._tasks)  # a call a test left up
        loop.set_exception_handler(previous)


async def through_the_edge(data: bytes, source: Address = ALLOWED, over: str = "udp") -> list[Fate]:
    """`data` (a datagram, or over "tcp" one connection's stream) through a fresh edge: its
    messages' fates; EdgeFault for a broken promise, and whatever escapes."""
    async with edge_running() as edge:
        fates = [edge.datagram(data, source)] if over == "udp" else await edge.stream(data, source)
        await edge.settle()
    check(fates, edge.loop_errors)
    return fates


async def through_a_call(datagrams: list[bytes]) -> None:
    """`datagrams` into a live call's RTP port, then the caller's voice, which the call must
    still hear; EdgeFault if not, and whatever escapes."""
    async with edge_running() as edge:
        await edge.call("rtp")
        for data in datagrams:
            edge.rtp("rtp", data)
        ssrc = 1 + max((int.from_bytes(d[8:12]) for d in datagrams), default=0) % 2**31  # a new one
        for n in range(6):
            edge.rtp("rtp", voice(n, ssrc))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(edge.callee.heard["rtp"].wait(), 2)
        assert await edge.hang_up("rtp") == [200]
    check([], edge.loop_errors)
    if not edge.callee.heard["rtp"].is_set():
        raise EdgeFault("the call no longer hears its caller")


def check_offer(body: str) -> Answer | SdpRejected:
    """`answer_offer` on `body`: an answer the edge can use, or a rejection with its status
    (400 or 488) and reason; anything else escapes."""
    try:
        answer = answer_offer(body, local_ip="127.0.0.1", rtp_port=40000)
    except SdpRejected as exc:
        assert exc.status in (400, 488) and exc.reason, exc
        return exc
    audio = parse_sdp(answer.sdp).audio
    assert answer.codec in G711 and 0 < answer.remote[1] < 65536 and audio and audio.port == 40000
    return answer


# ---- well-formed messages (the seeds) --------------------------------------------------

VOICE = bytes([0x80, 0x90, 0xA0, 0x90, 0x80, 0x10, 0x20, 0x10]) * 20  # 20 ms of loud μ-law
OFFER = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"
)
DIGEST = 'Digest username="alice", realm="voicemesh", nonce="1.0", uri="sip:x", response="0", qop=auth'
RESPONSE = "SIP/2.0 {} OK\r\nVia: {}\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: {}\r\nCSeq: 2 BYE\r\n\r\n"


def voice(n: int, ssrc: int = 0x5EED) -> bytes:
    return struct.pack("!BBHLL", 0x80, 0, n, 160 * n, ssrc) + VOICE


def request(method: str, call_id: str, via: str, *, cseq: int = 1, to_tag: str = "", body: str = "", extra: str = "") -> bytes:  # fmt: skip
    head = (
        f"{method} sip:restaurant@127.0.0.1 SIP/2.0\r\nVia: {via}\r\nFrom: <sip:caller@127.0.0.1>;tag=t1\r\n"
        f"To: <sip:restaurant@127.0.0.1>{';tag=' + to_tag if to_tag else ''}\r\nCall-ID: {call_id}\r\n"
        f"CSeq: {cseq} {method}\r\nContact: <sip:caller@127.0.0.1>\r\n{extra}Max-Forwards: 70\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(body.encode())}\r\n\r\n"
    )
    return head.encode() + body.encode()


def via(port: int, branch: str, transport: str = "UDP") -> str:
    return f"SIP/2.0/{transport} 127.0.0.1:{port};branch=z9hG4bK-{branch}"


def well_formed(call_id: str, port: int, transport: str = "UDP") -> list[bytes]:
    """One of each message a caller sends (and two responses), from `port`."""
    v = via(port, call_id, transport)
    return [
        request("INVITE", call_id, v, body=OFFER),
        request("INVITE", call_id, v, body=OFFER, extra=f"Authorization: {DIGEST}\r\nX-Room-ID: r1\r\n"),
        *(request(method, call_id, v) for method in ("OPTIONS", "CANCEL", "REGISTER")),
        request("ACK", call_id, v, to_tag="x"),
        request("BYE", call_id, v, cseq=2, to_tag="x"),
        request("INFO", call_id, v, cseq=3, to_tag="x", body="Signal=5\r\n"),
        *(RESPONSE.format(code, v, call_id).encode() for code in (180, 200)),
    ]


# ---- what the generated tests generate -------------------------------------------------

text = st.text(st.characters(codec="utf-8"), max_size=30)
junk = st.one_of(text, text, text, st.sampled_from([300, 30000]).map(lambda n: "a" * n))
METHODS = "INVITE ACK BYE CANCEL OPTIONS REGISTER PRACK UPDATE REFER NOTIFY INFO invite FOO".split()
URIS = "sip:restaurant@127.0.0.1 sip:+15551234567@edge sips:b@[::1]:5061;transport=tcp sip:@ tel:1 *".split()
uris = st.sampled_from(URIS) | st.just("sip:" + "a" * 300 + "@h") | junk
request_line = st.builds(
    "{} {} {}".format, st.sampled_from(METHODS), uris, st.sampled_from(["SIP/2.0", "SIP/3.0"])
)
codes = st.sampled_from(["100", "180", "200", "487"]) | st.integers(-1, 999).map(str) | junk
start_lines = st.one_of(*[request_line] * 6, st.builds("SIP/2.0 {} OK".format, codes), junk)
vias = (
    st.builds(
        "{} {}{}{}".format,
        st.sampled_from("SIP/2.0/UDP SIP/2.0/TCP SIP/2.0/udp SIP/2.0 SIP".split()),
        st.sampled_from("127.0.0.1|192.0.2.7|[::1]|[::1|edge.example|".split("|")),
        st.sampled_from(":5062|:0|:65535|:65536|:x|:-1|".split("|")),
        st.lists(
            st.sampled_from(
                ";branch=z9hG4bK-1 ;branch= ;rport ;rport=99999 ;received=edge.example ;;x=".split()
            )
        ).map("".join),
    )
    | junk
)
numbers = st.integers(-(2**40), 2**64).map(str) | st.sampled_from(["", "x", "1.5", "0x10", "٣", "9" * 5000])
cseqs = st.builds("{} {}".format, numbers, st.sampled_from(METHODS) | st.just("")) | numbers | junk
tags = st.sampled_from(["", ";tag=t1", ";tag=", ";tag", ";TAG=x"])
addresses = st.builds("{}<{}>{}".format, st.sampled_from(["", '"Alice" ', '"open ']), uris, tags) | junk
digests = (
    st.builds(
        'Digest username="{}", realm="voicemesh", nonce="{}", uri="sip:x", response="{}"{}'.format,
        st.sampled_from(["alice", "", 'a\\"b']),
        st.sampled_from(["1.0", "", "1700000000.000.ab"]),
        st.sampled_from(["0" * 32, ""]),
        st.sampled_from(["", ", qop=auth, nc=1, cnonce=x", ", algorithm=SHA-256", ', x="']),
    )
    | junk
)
headers = st.one_of(
    st.tuples(st.sampled_from(["Via", "v"]), vias),
    st.tuples(st.sampled_from(["CSeq", "cseq"]), cseqs),
    st.tuples(st.sampled_from("From f To t Contact m Record-Route".split()), addresses),
    st.tuples(st.sampled_from(["Content-Type", "c"]), st.sampled_from(["application/sdp", "text/plain", ""])),
    st.tuples(st.just("Authorization"), digests),
    st.tuples(st.sampled_from(["X-Room-ID", "x-" + "k" * 100, "Supported", "Require", "RAck"]) | junk, junk),
)
REQUIRED = (  # the mandatory headers, mostly well-formed, so most messages get far enough to judge
    ("Via", "SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-1", vias),
    ("From", "<sip:caller@127.0.0.1>;tag=t1", addresses),
    ("To", "<sip:restaurant@127.0.0.1>", addresses),
    ("Call-ID", "c1@h", junk),
    ("CSeq", "1 INVITE", cseqs),
)
OFFER_LINES = OFFER.replace("0 101", "0 8 101").splitlines()  # each kept, left out or swapped
OF_A_KIND = {
    "m": st.builds(
        "m={} {} {} {}".format,
        st.sampled_from("audio|video|AUDIO|".split("|")),
        st.sampled_from("4000|0|65536|x|4000/2|-1|²|５|".split("|")),
        st.sampled_from("RTP/AVP|RTP/SAVP|UDP/TLS/RTP/SAVPF|rtp/avp|".split("|")),
        st.lists(st.sampled_from("0 8 101 96 x ² 256 -1".split()), max_size=4).map(" ".join),
    ),
    "c": st.builds(
        "c={} {} {}".format,
        st.sampled_from(["IN", ""]),
        st.sampled_from(["IP4", "IP6", ""]),
        st.sampled_from("127.0.0.1|::1|0.0.0.0|edge.example|1.2.3.4/127|fe80::1%eth0|".split("|")),
    ),
    "a": st.sampled_from(
        "a=rtpmap:x PCMU/8000|a=rtpmap:101|a=rtpmap:101 telephone-event/x|a=fmtp:x y|a=sendonly|a=inactive|"
        "a=rtpmap:96 opus/48000/2|a=crypto:1 AES_CM_128_HMAC_SHA1_80 x".split("|")
    ),
}
other_lines = st.sampled_from("v=x|o=- x|o=|s=|t=x y|b=AS:x|x|=".split("|")) | st.builds(
    "{}={}".format, st.sampled_from("vosctmabkz"), text
)


@st.composite
def sdp_offers(draw: st.DrawFn) -> str:
    lines = []
    for line in OFFER_LINES:
        if (fate := draw(st.integers(0, 9))) > 1:
            lines.append(line)
        elif fate == 1:
            lines.append(draw(OF_A_KIND.get(line[0], other_lines)))
    for _ in range(draw(st.integers(0, 3))):
        lines.insert(draw(st.integers(0, len(lines))), draw(st.one_of(*OF_A_KIND.values(), other_lines)))
    return draw(st.sampled_from(["\r\n", "\n"])).join([*lines, ""])


@st.composite
def sip_messages(draw: st.DrawFn) -> bytes:
    """A SIP message as a grammar would have it, broken in places: any start line, the
    mandatory headers mostly there and well-formed (compact or not), more headers, an
    honest or lying Content-Length, an SDP-ish or binary body, NULs and bad UTF-8."""
    eol = draw(st.sampled_from(["\r\n", "\r\n", "\n", "\r"]))
    pairs = [
        (n, draw(st.just(good) | st.just(good) | bad)) for n, good, bad in REQUIRED if draw(st.integers(0, 9))
    ]
    pairs = draw(st.permutations(pairs + draw(st.lists(headers, max_size=4))))
    lines = [draw(start_lines)] + [name + draw(st.sampled_from([": ", ":", " :\t"])) + v for name, v in pairs]
    body = draw(sdp_offers().map(str.encode) | st.binary(max_size=200))
    length = draw(st.sampled_from(["honest", "honest", "none"]) | st.integers(-5, 10**6).map(str) | junk)
    if length != "none":
        lines.append(
            f"{draw(st.sampled_from(['Content-Length', 'l']))}: {len(body) if length == 'honest' else length}"
        )
    data = (eol.join(lines) + eol + eol).encode() + body
    breaks = st.sampled_from([b"\x00", b"\xff", b"\xc3(", b"\r\n", b"\r\n\r\n", b"\n ", b";", b","])
    for at, insert in draw(st.lists(st.tuples(st.integers(0, len(data)), breaks), max_size=2)):
        data = data[:at] + insert + data[at:]
    return data


@st.composite
def rtp_packets(draw: st.DrawFn) -> bytes:
    """An RTP packet with every header field drawn: version, padding, CSRCs, extensions, any
    payload type (0, 101 telephone-event, 13 comfort noise...), any payload."""
    padding, extension, cc = draw(st.booleans()), draw(st.booleans()), draw(st.integers(0, 15))
    first = draw(st.sampled_from([2, 2, 2, 0, 3])) << 6 | padding << 5 | extension << 4 | cc
    second = draw(st.booleans()) << 7 | draw(st.sampled_from([0, 8, 13, 101, 96]) | st.integers(0, 127))
    ints = st.integers(0, 2**32 - 1)
    data = struct.pack(
        "!BBHLL", first, second, draw(st.integers(0, 0xFFFF)), draw(ints), draw(st.just(1) | ints)
    )
    data += draw(st.binary(min_size=4 * cc, max_size=4 * cc) | st.binary(max_size=8))
    if extension:
        words = draw(st.integers(0, 4))
        data += struct.pack("!HH", draw(st.sampled_from([0xBEDE, 0x1000]) | st.integers(0, 0xFFFF)), words)
        data += draw(st.binary(min_size=4 * words, max_size=4 * words) | st.binary(max_size=8))
    data += draw(
        st.sampled_from([b"", b"\x05", b"\x05\x8a", bytes([5, 0x8A, 0, 160])]) | st.binary(max_size=200)
    )
    return data + (bytes([draw(st.integers(0, 255))]) if padding else b"")


@st.composite
def rtcp_packets(draw: st.DrawFn) -> bytes:
    """A compound RTCP packet: SR, RR, SDES, BYE, feedback and unknown types, honest sizes
    or lying ones."""
    data = b""
    for _ in range(draw(st.integers(1, 3))):
        pt = draw(st.sampled_from([200, 201, 202, 203, 205, 206]) | st.integers(192, 208))
        count, padding = draw(st.integers(0, 3) | st.integers(0, 31)), draw(st.booleans())
        size = {200: 24 + 24 * count, 201: 4 + 24 * count, 203: 4 * count}.get(pt, 8)
        body = draw(st.binary(min_size=size, max_size=size) | st.binary(max_size=120))
        words = draw(st.just(len(body) // 4) | st.integers(0, 40))
        data += (
            struct.pack("!BBH", draw(st.sampled_from([2, 2, 1])) << 6 | padding << 5 | count, pt, words)
            + body
        )
    return data


# ---- generated input: the parsers alone, then the real shell ---------------------------


@pytest.mark.unit
@FUZZ
@given(sdp_offers() | text)
def test_an_offer_gets_an_answer_or_a_rejection_with_its_status(body: str) -> None:
    verdict = check_offer(body)
    event(type(verdict).__name__ + (f" {verdict.status}" if isinstance(verdict, SdpRejected) else ""))


@pytest.mark.unit
@FUZZ
@given(rtp_packets() | rtcp_packets() | st.binary(max_size=64))
def test_rtp_and_rtcp_parsers_raise_only_value_error(data: bytes) -> None:
    with contextlib.suppress(ValueError):  # what aiortp's session catches and drops
        packet = RtpPacket.parse(data)
        assert packet.version == 2 and len(packet.csrc) == data[0] & 0x0F
    with contextlib.suppress(ValueError):
        RtcpPacket.parse(data)


def noted(fates: list[Fate]) -> None:
    for fate in fates:
        event(
            f"{fate.what if fate.what in {*METHODS, 'response', 'unreadable'} else 'other'}: {fate.outcome}"
        )
        event(f"caught: {type(fate.caught).__name__}")


@pytest.mark.integration
@FUZZ
@given(sip_messages() | st.binary(max_size=300), st.sampled_from([ALLOWED, OUTSIDE]))
async def test_malformed_sip_over_udp_is_answered_or_counted(data: bytes, source: Address) -> None:
    noted(await through_the_edge(data, source))


@pytest.mark.integration
@settings(FUZZ, max_examples=60)
@given(st.lists(sip_messages(), min_size=1, max_size=3), st.integers(1024, 65535))
async def test_malformed_sip_over_tcp_is_answered_on_its_connection_or_counted(
    messages: list[bytes], port: int
) -> None:
    noted(await through_the_edge(b"".join(messages), ("127.0.0.1", port), "tcp"))


@pytest.mark.integration
@settings(FUZZ, max_examples=40)
@given(st.lists(rtp_packets() | rtcp_packets() | st.binary(max_size=40), max_size=12))
async def test_a_calls_rtp_port_drops_what_it_cannot_read_and_the_call_goes_on(
    datagrams: list[bytes],
) -> None:
    await through_a_call(datagrams)


# ---- the eight bugs found, each on its minimal input (fixed) -----------------------------


@pytest.mark.integration
@pytest.mark.parametrize(
    "data", [b"A b c\nCSeq:x y", b"SIP/2.0 200\nCSeq:x BYE"], ids=["request", "response"]
)
async def test_a_cseq_that_is_not_a_number_is_counted_as_a_bad_message(data: bytes) -> None:
    (fate,) = await through_the_edge(data)
    assert fate.outcome is Outcome.COUNTED and fate.counted == {"bad_sip_message": 1}, fate


@pytest.mark.integration
async def test_an_offer_with_a_format_in_other_digits_gets_488() -> None:
    offer = "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 4000 RTP/AVP ²\r\n"
    (fate,) = await through_the_edge(request("INVITE", "sup-2", via(5062, "sup-2"), body=offer))
    assert fate.statuses == [488] and fate.counted == {"sip_no_acceptable_offer": 1}, fate


@pytest.mark.integration
@pytest.mark.parametrize("source", [ALLOWED, OUTSIDE], ids=["allowed", "outside"])
async def test_an_invite_with_a_to_tag_for_no_dialog_gets_481_and_no_call(source: Address) -> None:
    async with edge_running(allow=(), credentials={}) as edge:  # nobody may call
        fate = edge.datagram(request("INVITE", "tagged-1", via(5062, "t1"), to_tag="x", body=OFFER), source)
        await edge.settle()
    assert fate.statuses == [481] and edge.callee.ports == {}, fate


@pytest.mark.integration
async def test_a_reply_to_a_port_that_does_not_exist_is_dropped_and_counted_and_the_listener_stays() -> None:
    (fate,) = await through_the_edge(b"A b c\nv:x:65536")
    assert fate.sent == [] and fate.counted == {"bad_sip_message": 1, "sip_unroutable_reply": 1}, fate
    (fate,) = await through_the_edge(b"A b c\nv:x;rport=-1")  # rport is ours to fill: the source port
    assert [(to, status(data)) for to, data in fate.sent] == [(ALLOWED, 400)], fate
    async with edge_running() as edge:  # and from a real socket, the listener answers after it
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            edge.peers.add(me := sock.getsockname())
            sock.sendto(b"A b c\nv:x:65536", ("127.0.0.1", edge.port))
            sock.sendto(request("OPTIONS", "after-1", via(me[1], "after-1")), ("127.0.0.1", edge.port))
            reply = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 65535), 3)
    assert reply.startswith(b"SIP/2.0 200") and b"after-1" in reply and edge.loop_errors == [], reply


@pytest.mark.integration
async def test_a_reply_goes_to_the_source_address_not_to_a_received_the_caller_wrote() -> None:
    (fate,) = await through_the_edge(b"A b c\nv:SIP/2.0/UDP 127.0.0.1;received=sip.example.com", OUTSIDE)
    assert [to for to, _ in fate.sent] == [("192.0.2.7", 5060)], fate


@pytest.mark.integration
async def test_over_tcp_a_request_naming_its_listening_port_is_answered_on_its_connection() -> None:
    async with edge_running() as edge:  # a real connection
        reader, writer = await asyncio.open_connection("127.0.0.1", edge.port)
        writer.write(request("OPTIONS", "tcp-1", "SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bK-1"))
        reply = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        writer.close()
    assert reply.startswith(b"SIP/2.0 200") and edge.loop_errors == [], (reply, edge.fates)


@pytest.mark.integration
async def test_a_telephone_event_shorter_than_its_4_bytes_is_dropped_and_counted() -> None:
    async with edge_running() as edge:
        await edge.call("dtmf-1")
        edge.rtp("dtmf-1", bytes.fromhex("80650000 00000000 00000000"))
        assert edge.counts().get("dropped:bad_rtp") == 1
        for n in range(6):
            edge.rtp("dtmf-1", voice(n))
        await asyncio.wait_for(edge.callee.heard["dtmf-1"].wait(), 2)
        assert await edge.hang_up("dtmf-1") == [200]
    check([], edge.loop_errors)


@pytest.mark.integration
async def test_a_reinvite_with_a_broken_offer_gets_400_in_the_dialog_and_the_call_goes_on() -> None:
    async with edge_running() as edge:
        await edge.call("re-1")
        tag = edge.tags["re-1"]
        broken = "v=0\r\nm=audio x RTP/AVP 0\r\n"
        fate = edge.datagram(request("INVITE", "re-1", via(5062, "re-2"), cseq=2, to_tag=tag, body=broken))
        assert fate.statuses == [400] and f";tag={tag}".encode() in fate.sent[0][1], fate
        assert fate.counted == {"sip_bad_reoffer": 1} and await edge.hang_up("re-1") == [200]
    assert edge.callee.ended["re-1"] == Hangup("caller hung up")
    check(edge.fates, edge.loop_errors)


# ---- found since (fixed): a call its caller cannot end -------------------------------------------


@pytest.mark.integration
async def test_a_second_invite_for_a_ringing_call_id_makes_no_second_call() -> None:
    async with edge_running() as edge:
        edge.callee.expect("dup-1")
        edge.datagram(request("INVITE", "dup-1", via(5062, "first"), body=OFFER))
        second = edge.datagram(request("INVITE", "dup-1", via(5062, "second"), body=OFFER))  # before the answer
        await edge.until(lambda: len(edge.replies("dup-1", 200)) > 0, 1.0)
        # the 200 is sent again until ACKed: count the calls by their To tags
        tags = {SipMessage.parse(ok).to_addr.tag for ok in edge.replies("dup-1", 200)}  # type: ignore[union-attr]
        byes = [edge.datagram(request("BYE", "dup-1", via(5062, t), cseq=2, to_tag=t)).statuses for t in tags]
    assert second.statuses == [482], second.statuses  # a merged request (RFC 3261 §8.2.2.2)
    assert byes == [[200]], f"answered {len(tags)} times; the caller's BYEs got {byes}"


@pytest.mark.integration
async def test_a_cancel_that_crosses_the_200_leaves_the_call_up() -> None:
    async with edge_running() as edge:
        await edge.call("cancel-1")  # answered: the caller's CANCEL was on its way (RFC 3261 §9.2)
        assert edge.datagram(request("CANCEL", "cancel-1", via(5062, "cancel-1"))).statuses == [200]
        assert await edge.hang_up("cancel-1") == [200], "the call is gone, and the caller was not told"
    assert edge.callee.ended["cancel-1"] == Hangup("caller hung up")


@pytest.mark.integration
async def test_a_tcp_caller_gone_while_it_rings_leaves_no_rtp_port_taken() -> None:
    async with edge_running(rtp_ports=(30000, 30004)) as edge:  # two RTP ports
        for n in range(2):  # an INVITE, and the connection closes before the 503 can go back on it
            await edge.stream(request("INVITE", f"gone-{n}", via(40001, "g", "TCP"), body=OFFER), stay=False)
        fate = edge.datagram(request("INVITE", "after", via(5062, "after"), body=OFFER))
        await edge.settle()
    assert fate.statuses == [100, 180], f"{fate.statuses}: no RTP port is free"
    check([], edge.loop_errors)


# ---- the hammer: garbage over real sockets beside a live call ----------------------------


def mutate(rng: random.Random, data: bytes) -> bytes:
    """`data` broken one way (the grammar-aware breaking is `sip_messages`' job)."""
    at, lines = rng.randrange(len(data) + 1), data.split(b"\r\n")
    match rng.randrange(5):
        case 0:  # cut short
            return data[:at]
        case 1:  # junk inserted
            return data[:at] + rng.choice([b"\x00", b"\xff", b"\r\n", b":;<", rng.randbytes(8)]) + data[at:]
        case 2:  # a line left out
            lines.pop(rng.randrange(1, len(lines)) if len(lines) > 1 else 0)
            return b"\r\n".join(lines)
        case 3:  # Content-Length lies, or the CSeq is no number
            name, lie = rng.choice(
                [(b"Content-Length", b"-1"), (b"Content-Length", b"99999"), (b"CSeq", b"x")]
            )
            return re.sub(name + rb": \d+", name + b": " + lie, data)
        case _:  # other line ends
            return data.replace(b"\r\n", rng.choice([b"\n", b"\r"]))


def malformed(rng: random.Random, call_id: str, port: int, transport: str = "UDP") -> bytes:
    data = rng.choice(well_formed(call_id, port, transport))
    for _ in range(rng.randint(1, 3)):
        data = mutate(rng, data)
    return data[:60000]


@pytest.mark.integration
@pytest.mark.timeout(60)
async def test_garbage_beside_a_call_is_counted_and_every_call_completes() -> None:
    rng = random.Random(7)
    async with edge_running() as edge:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as junk:
            junk.bind(("127.0.0.1", 0))
            edge.peers.add(me := junk.getsockname())
            sip, rtp = ("127.0.0.1", edge.port), ("127.0.0.1", await edge.call("call-beside"))
            for n in range(200):  # the call's RTP and RTCP ports get garbage
                first, pt = (
                    rng.choice([0x80, 0x90, 0xA0, rng.randrange(256)]),
                    rng.choice([0, 13, 101, 200, 203]),
                )
                data = struct.pack("!BBHLL", first, pt, n, 0, 7) + rng.randbytes(rng.choice([0, 1, 4, 160]))
                junk.sendto(data[: rng.choice([2, 12, 16, 200])], (rtp[0], rtp[1] + rng.randrange(2)))
                await asyncio.sleep(0)
            for batch in range(12):  # the SIP port, over UDP, each batch followed by an OPTIONS it answers
                for i in range(25):
                    junk.sendto(malformed(rng, f"fuzz-{batch}-{i}", me[1]), sip)
                    await asyncio.sleep(0)
                junk.sendto(request("OPTIONS", f"probe-{batch}", via(me[1], f"probe-{batch}")), sip)
                assert await edge.until(lambda b=batch: bool(edge.replies(f"probe-{b}", 200))), batch
            for n in range(40):  # ... and over TCP, streams of broken messages
                reader, writer = await asyncio.open_connection(*sip)
                port = writer.get_extra_info("sockname")[1]
                writer.write(
                    b"".join(malformed(rng, f"tcp-{n}-{i}", port, "TCP") for i in range(rng.randint(1, 4)))
                )
                writer.write_eof()
                await asyncio.wait_for(reader.read(), 5)  # to the end: the edge closes after our EOF
                writer.close()
            for n in range(10):  # the call beside still hears its caller, and a new call is answered
                junk.sendto(voice(n), rtp)
            await asyncio.wait_for(edge.callee.heard["call-beside"].wait(), 5)
        await edge.call("call-after", ("127.0.0.1", 5064))
        assert {100, 180, 200} <= {status(data) for _, data in edge.sent if b"call-after" in data}
        assert await edge.hang_up("call-after", ("127.0.0.1", 5064)) == [200]
        assert await edge.hang_up("call-beside") == [200]
    assert edge.callee.ended["call-beside"] == Hangup("caller hung up")
    outcomes = {fate.outcome for fate in edge.fates}
    assert len(edge.fates) > 300 and outcomes == set(Outcome), outcomes  # garbage of every kind went in
    assert edge.counts()["bad_sip_message"] >= sum(fate.what == "unreadable" for fate in edge.fates) > 0
    gc.collect()  # a task that died unawaited is reported when it is collected
    check(edge.fates, edge.loop_errors)
