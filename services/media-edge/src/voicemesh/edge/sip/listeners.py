"""The SIP edge's sockets: aiosipua's UDP and TCP transports, and TLS (which it lacks), each
counting what does not parse instead of only logging it, and each knowing how it names
itself in Via and Contact (`;transport=tls`, or a peer sends its ACK and BYE over UDP)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from dataclasses import dataclass, field
from typing import Any, ClassVar

from aiosipua.headers import parse_via, stringify_via
from aiosipua.message import SipMessage, SipRequest, SipResponse
from aiosipua.transport import TcpSipTransport, UdpSipTransport, _response_destination, _UdpProtocol

from voicemesh.mesh.metrics import ServiceMetrics

log = logging.getLogger(__name__)


class _Counted:
    """Parse failures counted and dropped (aiosipua only logs them), then our filter."""

    metrics: ServiceMetrics
    on_message: Any
    via: ClassVar[str]  # the transport token of our Via
    kind: ClassVar[str]  # the CallInfo transport of its calls
    contact_host: str = ""  # what Contact names: the public host ...
    contact_port: int = 0  # ... and this listener's port

    def _dispatch(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            msg = SipMessage.parse(data)
            if isinstance(msg, SipRequest):
                stamp_via(msg, addr, reliable=self.reliable)  # type: ignore[attr-defined]
        except Exception as exc:  # (the library raises what it likes on garbage)
            self.metrics.error("bad_sip_message")
            log.warning("unreadable sip message dropped", extra={"error": str(exc)[:200]})
            return
        if self.on_message is not None:
            self.on_message(msg, addr)

    contact_params: ClassVar[str] = ""

    def contact(self) -> str:
        host = f"[{self.contact_host}]" if ":" in self.contact_host else self.contact_host
        return f"<sip:{host}:{self.contact_port}{self.contact_params}>"

    def send_reply(self, response: SipResponse) -> None:
        # the library writes its bind address, without the transport: ours instead
        if response.headers.get_first("contact"):
            response.headers.set_single("Contact", self.contact())
        try:
            destination = _response_destination(response)
        except ValueError:
            destination = None
        if destination is None or not _routable(destination):
            self.metrics.error("sip_unroutable_reply")  # a Via no reply can go to: dropped
            return
        super().send_reply(response)  # type: ignore[misc]


def stamp_via(request: SipRequest, source: tuple[str, int], *, reliable: bool) -> None:
    """Where the reply to `request` goes (RFC 3261 §18.2.1, RFC 3581): `received` is always
    the address it came from (one the sender wrote is not believed), `rport` its port when
    asked for and, over TCP/TLS, always: the reply goes back on the connection it came on."""
    vias = request.headers.get("via")
    if not vias:
        return
    top = parse_via(vias[0])
    top.params["received"] = source[0]
    if reliable or "rport" in top.params:
        top.params["rport"] = str(source[1])
    request.headers.remove("Via")
    for value in (stringify_via(top), *vias[1:]):
        request.headers.append("Via", value)


def _routable(destination: tuple[str, int]) -> bool:
    host, port = destination
    if not 0 < port < 65536:
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False  # a name: never resolved on the event loop, and never one a caller chose
    return True


class _UdpListener(_UdpProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # aiosipua asserts a DatagramTransport, which Python 3.11's selector transport is not
        self._owner._udp_transport = transport  # type: ignore[assignment]


@dataclass
class Udp(_Counted, UdpSipTransport):
    via: ClassVar[str] = "UDP"
    kind: ClassVar[str] = "sip-udp"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _UdpListener(self), local_addr=self.local_addr)
        self._udp_transport = transport

    @property
    def bound_port(self) -> int:
        assert self._udp_transport is not None
        return int(self._udp_transport.get_extra_info("sockname")[1])


@dataclass
class Tcp(_Counted, TcpSipTransport):
    via: ClassVar[str] = "TCP"
    kind: ClassVar[str] = "sip-tcp"
    contact_params: ClassVar[str] = ";transport=tcp"


@dataclass
class Tls(_Counted, TcpSipTransport):
    """SIP over TLS (RFC 3261 §26): TCP framing, Python's ssl underneath."""

    via: ClassVar[str] = "TLS"
    kind: ClassVar[str] = "sip-tls"
    contact_params: ClassVar[str] = ";transport=tls"
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False)

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle_connection, host=self.local_addr[0], port=self.local_addr[1], ssl=self.ssl_context
        )


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """TLS 1.2 or later with the edge's certificate; ValueError naming the file that fails."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot load the SIP TLS certificate {cert} / key {key}: {exc}") from None
    return context
