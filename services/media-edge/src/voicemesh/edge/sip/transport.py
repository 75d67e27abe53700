"""The SIP transport: a user agent server on UDP and TCP (aiosipua), each call a `SipPort`.

What this layer adds to the library, in front of its dialog logic:
- every request is authenticated (`auth.SipAccess`: the allowed networks, else digest) and
  a refused one is answered and counted;
- a retransmitted request is answered with the response already sent, not taken twice
  (`transactions.ServerTransactions`);
- an INVITE's offer is checked before anything rings: `400` with the reason for an offer
  that cannot be read, `488` for one with nothing acceptable;
- messages that do not parse are counted and dropped, and every other call goes on;
- our BYE is retransmitted over UDP until it is answered (timers E/F).

The request-URI's user picks the agent (`sip:restaurant@edge`) when it is an agent name;
a number there is the number called, which picks the agent as Twilio's `to` does.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from aiosipua import IncomingCall, SipUAC, SipUAS
from aiosipua.auth import SipDigestAuth
from aiosipua.dialog import DialogState
from aiosipua.message import SipMessage, SipRequest, SipResponse, missing_required_headers
from aiosipua.sdp import parse_sdp, serialize_sdp

from voicemesh.mesh.metrics import ServiceMetrics

from ..port import CallHandler, CallInfo, CallTransport, EndReason
from .auth import Admit, Challenge, SipAccess
from .listeners import Tcp, Tls, Udp, server_context
from .offer import Answer, SdpRejected, SrtpPolicy, answer_offer, make_offer
from .outbound import CHALLENGES, Dialling, ack_for_refusal, with_credentials
from .port import BIND_TRIES, LABEL, SipPort
from .srtp import new_key_salt
from .transactions import ServerTransactions, TransactionKey, retransmit_offsets

log = logging.getLogger(__name__)
USER_AGENT = "voicemesh"
_AGENT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_URI_USER = re.compile(r"^sips?:([^@;>]+)@", re.IGNORECASE)
MAX_METADATA = 16  # X- headers carried into the session's metadata
# How long a transfer waits for the caller's side to report (NOTIFY) before the call's BYE.
TRANSFER_WAIT_S = 10.0
# How long a call we placed remembers its INVITEs, to ACK a refusal the callee retransmits
# (RFC 3261 timer H: 64·T1).
DIAL_MEMORY_S = 32.0


@dataclass(frozen=True)
class SipSettings:
    host: str = "127.0.0.1"
    port: int = 5060
    advertised_host: str = ""  # what SDP and Contact name; the bind host when empty
    rtp_ports: tuple[int, int] = (40000, 40999)
    allow: tuple[str, ...] = ("127.0.0.1/32", "::1/128")
    credentials: dict[str, str] = field(default_factory=dict)
    realm: str = "voicemesh"
    nonce_secret: bytes = b""
    jitter_ms: tuple[int, int] = (20, 200)  # the caller's jitter buffer: its depth's bounds
    srtp: SrtpPolicy = SrtpPolicy.ALLOW
    tls_port: int = 5061  # SIP over TLS, when a certificate is given
    tls_cert: str = ""
    tls_key: str = ""
    dial_auth: tuple[str, str] | None = None  # (user, password) for a callee's or trunk's digest


class RtpPorts:
    """Even RTP ports from a range (RTCP takes the odd one above), handed out in turn so a
    port just released is the last to be reused."""

    def __init__(self, low: int, high: int) -> None:
        first = low + (low % 2)
        self._ports = list(range(first, high, 2))
        if not self._ports:
            raise ValueError(f"the RTP port range {low}-{high} holds no even port with its odd pair")
        self._free: dict[int, None] = dict.fromkeys(self._ports)

    def take(self) -> int:
        if not self._free:
            raise OSError("every RTP port in the range is in use")
        port = next(iter(self._free))
        del self._free[port]
        return port

    def release(self, port: int) -> None:
        self._free[port] = None  # to the back of the line


def transaction_key(msg: SipMessage) -> TransactionKey | None:
    """(Call-ID, branch, CSeq, method) of a message; None when it lacks one (or its CSeq
    or Via cannot be read)."""
    try:
        vias = msg.via
        cseq = msg.cseq
    except ValueError:
        return None
    branch = vias[0].branch if vias else None
    if not branch or cseq is None or not msg.call_id:
        return None
    return TransactionKey(msg.call_id, branch, cseq.seq, cseq.method.upper())


def _user_of(uri: str) -> str:
    m = _URI_USER.match(uri)
    return m.group(1) if m else ""


def call_info(request: SipRequest, transport: str) -> CallInfo:
    user = _user_of(request.uri)
    is_agent = bool(_AGENT_NAME.fullmatch(user)) and not user.isdigit()
    from_addr = request.from_addr
    caller = (from_addr.uri.user or "") if from_addr else ""
    metadata: dict[str, str] = {}
    for name, values in request.headers.items():
        if name.lower().startswith("x-") and values and len(metadata) < MAX_METADATA:
            metadata[name.lower()[2:][:64]] = values[0][:256]
    return CallInfo(
        transport=transport,
        agent=user if is_agent else "",
        caller=caller,
        callee="" if is_agent else user,
        carrier_call_id=request.call_id or "",
        metadata=metadata,
    )


class SipCallTransport(CallTransport):
    name = "sip"
    transport_label = LABEL

    def __init__(
        self, settings: SipSettings, metrics: ServiceMetrics, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.host = settings.host
        self.advertised_host = settings.advertised_host or settings.host
        self.jitter_ms = settings.jitter_ms
        metrics.prepare_jitter_buffer(LABEL)
        self._clock = clock
        self._access = SipAccess(
            allow=settings.allow,
            credentials=settings.credentials,
            realm=settings.realm,
            secret=settings.nonce_secret,
        )
        self._ports = RtpPorts(*settings.rtp_ports)
        self._transactions: ServerTransactions[SipResponse] = ServerTransactions()
        self._uases: list[SipUAS] = []
        self._calls: dict[str, SipPort] = {}
        # Sends repeated over UDP until answered: our BYEs (until a response, timers E/F) and
        # our final refusals of an INVITE (until its ACK, timers G/H), by (Call-ID, CSeq, method).
        self._resends: dict[tuple[str, int, str], list[asyncio.TimerHandle]] = {}
        self._transfers: dict[str, asyncio.Future[str]] = {}  # Call-ID -> the REFER's outcome
        self._accepted: set[str] = set()  # Call-IDs whose REFER got its 202
        self._dialling: dict[str, Dialling] = {}  # Call-ID -> the INVITEs of a call we placed
        self._handler: CallHandler | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._bound_port = settings.port

    def describe(self) -> str:
        tls = f", tls {self.settings.tls_port}" if self.settings.tls_cert else ""
        return (
            f"sip:{self.advertised_host}:{self._bound_port} (udp, tcp{tls}; srtp {self.settings.srtp.value})"
        )

    @property
    def port(self) -> int:
        return self._bound_port

    async def start(self, handler: CallHandler) -> None:
        self._handler = handler
        host, settings = self.settings.host, self.settings
        context = server_context(settings.tls_cert, settings.tls_key) if settings.tls_cert else None
        port = settings.port
        try:
            for attempt in range(BIND_TRIES):
                udp = Udp(local_addr=(host, settings.port))
                await self._listen(udp, settings.port)
                self._bound_port = port = udp.bound_port  # 0: a free one, and TCP takes the same number
                try:
                    await self._listen(Tcp(local_addr=(host, port)), port)
                    break
                except OSError:
                    if settings.port or attempt == BIND_TRIES - 1:
                        raise
                    await self._uases.pop().stop()  # that number is taken for TCP: another one
            if context is not None:
                port = settings.tls_port
                await self._listen(Tls(local_addr=(host, port), ssl_context=context), port)
        except OSError as exc:
            raise OSError(f"cannot listen for SIP on {host}:{port}: {exc.strerror or exc}") from None

    async def _listen(self, transport: Udp | Tcp | Tls, port: int) -> None:
        transport.metrics = self.metrics
        transport.contact_host = self.advertised_host
        kind = transport.kind
        uas = SipUAS(transport, user_agent=USER_AGENT, advertised_addr=(self.advertised_host, port))
        uas.uac = SipUAC(transport)
        uas.on_invite = lambda call: self._on_invite(call, kind)
        uas.on_bye = lambda call, _req: self._gone(call.call_id, "caller hung up")
        uas.on_cancel = lambda req, _addr: self._gone(req.call_id or "", "caller cancelled")
        uas.on_ack_timeout = lambda call: self._gone(call.call_id, "no ACK for the answer")
        uas.on_reinvite = self._on_reinvite
        uas.on_transfer_progress = self._transfer_progress
        await uas.start()
        if isinstance(transport, Udp):
            transport.contact_port = transport.bound_port
        else:
            transport.contact_port = port
        transport.on_message = lambda msg, addr: self._on_message(uas, msg, addr)
        self._record_responses(uas)
        self._uases.append(uas)

    async def stop(self) -> None:
        for handles in self._resends.values():
            for handle in handles:
                handle.cancel()
        for uas in self._uases:
            await uas.stop()

    # ---- in front of the library -------------------------------------------------------

    def _on_message(self, uas: SipUAS, msg: SipRequest | SipResponse, addr: tuple[str, int]) -> None:
        """Every message that parsed. Whatever in it trips this code or the library is that
        message's problem alone: counted and dropped, and the edge goes on."""
        try:
            self._route(uas, msg, addr)
        except Exception as exc:
            self.metrics.error("bad_sip_message")
            log.warning("sip message dropped", extra={"error": f"{type(exc).__name__}: {exc}"[:200]})

    def _route(self, uas: SipUAS, msg: SipRequest | SipResponse, addr: tuple[str, int]) -> None:
        key = transaction_key(msg)
        if isinstance(msg, SipResponse):
            self._answered(msg, key)
            if key is not None and msg.status_code >= 300 and self._dial_refused(uas, msg, key, addr):
                return
            if uas.uac is not None:  # a call we placed: its dialog lives in the UAC
                uas.uac.handle_response(msg, addr)
            return
        method = msg.method.upper()
        if key is not None and method != "ACK":
            seen = self._transactions.received(key, self._clock())
            if seen is not None:
                self.metrics.error("sip_retransmission")
                if seen.response is not None:
                    uas.transport.send_reply(seen.response)
                return
        if method == "ACK" and key is not None:
            self._stop_resending((key.call_id, key.cseq, "INVITE"))
        if missing_required_headers(msg):
            self.metrics.error("bad_sip_message")
        elif method == "CANCEL" and self._answered_call(msg):
            # it crossed our 200: too late to cancel (RFC 3261 §9.2); the call stays up
            self._refuse(uas, msg, 200, "OK")
            return
        elif (
            method == "INVITE"
            and not (msg.to_addr and msg.to_addr.tag)
            and (msg.call_id or "") in self._calls
        ):
            # a second INVITE (another branch) for a call we have: a merged request (§8.2.2.2)
            self._refuse(uas, msg, 482, "Loop Detected")
            return
        elif method == "INVITE":
            known = self._known_dialog(uas, msg)
            if known is None and msg.to_addr is not None and msg.to_addr.tag:
                # a re-INVITE for no dialog we have: not a way in past the admission below
                self._refuse(uas, msg, 481, "Call/Transaction Does Not Exist")
                return
            if known is None and not self._admit(uas, msg, addr):
                return
            if known is not None and not self._readable_reoffer(uas, known, msg):
                return
        uas._on_message(msg, addr)  # (aiosipua 0.7.1: the library's dispatch)

    def _answered_call(self, msg: SipRequest) -> bool:
        port = self._calls.get(msg.call_id or "")
        return port is not None and port.call._answered

    def _known_dialog(self, uas: SipUAS, msg: SipRequest) -> IncomingCall | None:
        """The call an in-dialog INVITE belongs to (its Call-ID and both tags), if any."""
        call_id = msg.call_id or ""
        call = uas.get_call(call_id)
        if call is None and call_id in self._calls:  # a call we placed: wrapped the same way
            call = self._calls[call_id].call
        if call is None or call.dialog.state != DialogState.CONFIRMED:
            return None
        return call if msg.to_addr is not None and msg.to_addr.tag == call.dialog.local_tag else None

    def _readable_reoffer(self, uas: SipUAS, call: IncomingCall, msg: SipRequest) -> bool:
        """The library parses a re-INVITE's SDP before it asks us: one it cannot read gets
        its 400 here, in the dialog."""
        if not (msg.body and (msg.content_type or "").lower().startswith("application/sdp")):
            return True
        try:
            parse_sdp(msg.text)
        except Exception as exc:
            self.metrics.error("sip_bad_reoffer")
            response = call.dialog.create_response(msg, 400, f"bad SDP: {exc}"[:100])
            response.headers.set_single("User-Agent", USER_AGENT)
            uas.transport.send_reply(response)
            return False
        return True

    def _record_responses(self, uas: SipUAS) -> None:
        """Every response the library sends is remembered for the retransmissions of its
        request (wrapped once per transport)."""
        transport = uas.transport
        send_reply = transport.send_reply

        def recorded(response: SipResponse) -> None:
            key = transaction_key(response)
            if key is not None:
                self._transactions.responded(key, response, self._clock())
                if key.method == "INVITE" and response.status_code >= 300 and not transport.reliable:
                    self._resend(
                        (key.call_id, key.cseq, "INVITE"), lambda: send_reply(response), "sip_refusal_unacked"
                    )
            send_reply(response)

        transport.send_reply = recorded  # type: ignore[method-assign]

    def _admit(self, uas: SipUAS, request: SipRequest, addr: tuple[str, int]) -> bool:
        """A new INVITE: who sent it, and whether its offer can be answered at all."""
        decision = self._access.check(
            source_ip=addr[0],
            method="INVITE",
            authorization=request.get_header("authorization"),
            now=time.time(),
        )
        if isinstance(decision, Challenge):
            self.metrics.error("sip_challenged")
            self._refuse(uas, request, 401, "Unauthorized", {"WWW-Authenticate": decision.header})
            return False
        if not isinstance(decision, Admit):
            self.metrics.error("unauthorized")
            log.warning("sip call refused", extra={"status": decision.status, "reason": decision.reason})
            self._refuse(uas, request, decision.status, decision.reason[:120])
            return False
        kind = (request.content_type or "").split(";", 1)[0].strip().lower()
        if request.body and kind != "application/sdp":
            self.metrics.error("sip_bad_offer")
            self._refuse(uas, request, 415, "Unsupported Media Type", {"Accept": "application/sdp"})
            return False
        try:
            self.answer(request.text if request.body else "", self.settings.rtp_ports[0], bytes(30))
        except SdpRejected as exc:
            self.metrics.error("sip_bad_offer" if exc.status == 400 else "sip_no_acceptable_offer")
            log.warning("sip offer refused", extra={"status": exc.status, "reason": exc.reason})
            self._refuse(uas, request, exc.status, exc.reason[:120])
            return False
        return True

    def _refuse(
        self,
        uas: SipUAS,
        request: SipRequest,
        status: int,
        reason: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        uas._send_error(request, status, reason.replace("\r", " ").replace("\n", " "), extra_headers=headers)

    # ---- calls -------------------------------------------------------------------------

    def _on_invite(self, call: IncomingCall, kind: str) -> None:
        assert self._handler is not None
        try:
            port_number = self._ports.take()
        except OSError:
            self.metrics.error("sip_no_rtp_port")
            call.reject(503, "No RTP port free")
            return
        body = call.invite.text if call.invite.body else ""
        answer = self.answer(body, port_number, new_key_salt())  # checked in _admit
        port = SipPort(call, answer, port_number, call_info(call.invite, kind), self, self._clock)
        self._calls[call.call_id] = port
        call.ringing()
        task = asyncio.get_running_loop().create_task(self._run(port))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, port: SipPort) -> None:
        assert self._handler is not None
        try:
            await self._handler(port)
        finally:
            await port.close(EndReason.ERROR_INTERNAL, "the call handler ended")  # no-op after its own close

    def _gone(self, call_id: str, why: str) -> None:
        port = self._calls.get(call_id)
        if port is not None:
            port.caller_gone(why)

    def _on_reinvite(self, call: IncomingCall) -> None:
        port = self._calls.get(call.call_id)
        if port is None:
            self.respond(call, 481, "Call/Transaction Does Not Exist")
            return
        port.reoffer(call)

    # ---- what ports ask of the transport (SipSignalling) -------------------------------

    def answer(self, body: str, rtp_port: int, key_salt: bytes) -> Answer:
        return answer_offer(
            body, local_ip=self.advertised_host, rtp_port=rtp_port, srtp=self.settings.srtp, key_salt=key_salt
        )

    def bind_port(self) -> int:
        return self._ports.take()

    def release_port(self, port: int) -> None:
        self._ports.release(port)

    def forget(self, port: SipPort) -> None:
        call_id = port.call.call_id
        if self._calls.get(call_id) is port:
            del self._calls[call_id]
        for uas in self._uases:  # the library keeps a call until the caller's BYE: ours too
            if uas.get_call(call_id) is port.call:
                uas._calls.pop(call_id, None)  # (aiosipua 0.7.1)
                uas._remove_invite_transaction(port.call.invite)
            if uas.uac is not None:  # a call we placed
                uas.uac._calls.pop(call_id, None)

    def respond(self, call: IncomingCall, status: int, reason: str, sdp: str = "") -> None:
        """A final response to the call's current INVITE: a refusal before the answer, or
        the answer to a re-INVITE (which keeps the dialog)."""
        if not call._answered and status >= 300:
            call.reject(status, reason)
            return
        resp = call.dialog.create_response(call.invite, status, reason, contact="<sip:placeholder>")
        if sdp:
            resp.text = sdp
            resp.headers.set_single("Content-Type", "application/sdp")
        resp.headers.set_single("User-Agent", USER_AGENT)
        assert call.transport is not None
        call.transport.send_reply(resp)  # the listener writes its own Contact

    def _in_dialog(self, call: IncomingCall, method: str) -> tuple[SipRequest, Udp | Tcp | Tls] | None:
        """A request of ours in the call's confirmed dialog, its Via naming the transport it
        goes over; None when the call is not up."""
        transport = call.transport
        if call.dialog.state != DialogState.CONFIRMED or not isinstance(transport, Udp | Tcp | Tls):
            return None
        request = call.dialog.create_request(
            method,
            via_host=self.advertised_host,
            via_port=transport.contact_port,
            via_transport=transport.via,
        )
        request.headers.set_single("User-Agent", USER_AGENT)
        return request, transport

    def hang_up(self, call: IncomingCall) -> None:
        """BYE from our side, with a Via naming the transport it goes over; retransmitted
        over UDP until answered."""
        made = self._in_dialog(call, "BYE")
        if made is None:
            return
        bye, transport = made
        call.dialog.terminate()
        try:
            transport.send(bye, call.source_addr)
        except RuntimeError:  # the caller's TCP/TLS connection is gone: nothing to carry it
            self.metrics.error("sip_bye_unsent")
            return
        if transport.reliable:
            return
        cseq = bye.cseq
        assert cseq is not None
        self._resend(
            (call.call_id, cseq.seq, "BYE"),
            lambda: transport.send(bye, call.source_addr),
            "sip_bye_unanswered",
        )

    def _resend(self, key: tuple[str, int, str], send: Callable[[], None], unanswered: str) -> None:
        """`send` again at T1, 2·T1, … (at most T2 apart) until `_stop_resending(key)`;
        counted as `unanswered` when 64·T1 pass without."""
        self._stop_resending(key)
        loop = asyncio.get_running_loop()
        offsets = retransmit_offsets()

        def again(last: bool) -> None:
            send()
            if last:
                self._resends.pop(key, None)
                self.metrics.error(unanswered)

        self._resends[key] = [loop.call_later(at, again, at == offsets[-1]) for at in offsets]

    def _stop_resending(self, key: tuple[str, int, str]) -> None:
        for handle in self._resends.pop(key, []):
            handle.cancel()

    def _answered(self, response: SipResponse, key: TransactionKey | None) -> None:
        """A response to a request of ours: a BYE is done with; a REFER refused ends its
        transfer, one accepted waits for the NOTIFY that says how the transfer went."""
        if key is None:
            return
        method, call_id = key.method, key.call_id
        if method == "INVITE":  # ours: any response stops its timer A
            self._stop_resending((call_id, key.cseq, method))
        if response.status_code < 200:
            return
        self._stop_resending((call_id, key.cseq, method))
        if method == "REFER":
            pending = self._transfers.get(call_id)
            if pending is not None and not pending.done():
                if response.status_code >= 300:
                    pending.set_result(f"refused: {response.status_code} {response.reason_phrase}"[:120])
                else:
                    self._accepted.add(call_id)

    def _dial_refused(
        self, uas: SipUAS, refusal: SipResponse, key: TransactionKey, addr: tuple[str, int]
    ) -> bool:
        """A final refusal of an INVITE of a call we are placing: ACKed (the library does
        not), and a digest challenge answered once with the dial credentials. True when it
        is handled here; False when the library should take it as the call's refusal."""
        dialling = self._dialling.get(key.call_id) if key.method == "INVITE" else None
        invite = dialling.invites.get(key.cseq) if dialling is not None else None
        if dialling is None or invite is None:
            return False
        uas.transport.send(ack_for_refusal(invite, refusal), addr)
        if key.cseq != dialling.latest:
            return True  # sent again, for an INVITE we have since retried
        outgoing = uas.uac.get_call(key.call_id) if uas.uac is not None else None
        if refusal.status_code not in CHALLENGES or outgoing is None or dialling.challenged:
            return False
        auth = self.settings.dial_auth
        # none when we have no credentials, or the challenge is one we cannot answer (no
        # digest, an algorithm or qop we do not speak)
        retry = (
            None
            if auth is None
            else with_credentials(invite, refusal, SipDigestAuth(*auth), outgoing.dialog.next_cseq())
        )
        if retry is None:
            self.metrics.error("sip_dial_unauthorized")
            return False
        dialling.challenged = True
        dialling.sent(retry)
        outgoing.invite = retry  # (aiosipua 0.7.1: what its 2xx handling ACKs and answers)
        remote = outgoing.remote_addr
        uas.transport.send(retry, remote)
        self._resend(
            (key.call_id, dialling.latest, "INVITE"),
            lambda: uas.transport.send(retry, remote),
            "sip_invite_unanswered",
        )
        return True

    def _transfer_progress(self, call_id: str, status: int, reason: str) -> None:
        pending = self._transfers.get(call_id)
        if status >= 200 and pending is not None and not pending.done():
            pending.set_result("connected" if status < 300 else f"failed: {status} {reason}"[:120])

    async def refer(self, call: IncomingCall, target: str) -> str:
        """Ask the caller's side to call `target` (RFC 3515); what it reported: "connected"
        (its NOTIFY said 2xx), "accepted" (202, and no final NOTIFY within the wait),
        "refused: …", "failed: …", "no answer"."""
        made = self._in_dialog(call, "REFER")
        if made is None:
            return "not sent: the call is not up"
        refer, transport = made
        refer.headers.set_single("Refer-To", f"<{refer_uri(target, call.invite)}>")
        refer.headers.set_single("Referred-By", transport.contact())
        refer.headers.set_single("Contact", transport.contact())
        outcome: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._transfers[call.call_id] = outcome
        cseq = refer.cseq
        assert cseq is not None
        try:
            transport.send(refer, call.source_addr)
            if not transport.reliable:
                self._resend(
                    (call.call_id, cseq.seq, "REFER"),
                    lambda: transport.send(refer, call.source_addr),
                    "sip_refer_unanswered",
                )
            return await asyncio.wait_for(asyncio.shield(outcome), TRANSFER_WAIT_S)
        except TimeoutError:
            return "accepted" if call.call_id in self._accepted else "no answer"
        except RuntimeError:  # the caller's TCP/TLS connection is gone
            return "not sent: the connection is gone"
        finally:
            self._stop_resending((call.call_id, cseq.seq, "REFER"))
            self._transfers.pop(call.call_id, None)
            self._accepted.discard(call.call_id)

    async def dial(
        self, target: str, *, agent: str = "", caller: str = "voicemesh", answer_timeout_s: float = 30.0
    ) -> SipPort:
        """Place a call from the agent to `target` (a SIP URI, over UDP); the answered call
        is handed to the call handler like any caller's. DialFailed if it does not connect."""
        assert self._handler is not None, "start() first"
        user, host, port = dial_target(target)
        uas = next(u for u in self._uases if isinstance(u.transport, Udp))
        assert uas.uac is not None
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except OSError as exc:
            raise DialFailed(0, f"cannot resolve {host}: {exc}") from None
        remote = (str(infos[0][4][0]), int(infos[0][4][1]))
        rtp_port = self._ports.take()
        key_salt = new_key_salt()
        offer = make_offer(
            local_ip=self.advertised_host, rtp_port=rtp_port, srtp=self.settings.srtp, key_salt=key_salt
        )
        contact = uas.transport.contact() if isinstance(uas.transport, Udp) else ""
        outgoing = uas.uac.send_invite(
            f"sip:{caller}@{self.advertised_host}:{self._bound_port}",
            target.split(";", 1)[0],
            remote,
            sdp_offer=parse_sdp(offer),
            user_agent=USER_AGENT,
            extra_headers={"Contact": contact},
        )
        first = outgoing.invite
        dialling = self._dialling[outgoing.call_id] = Dialling()
        dialling.sent(first)
        self._resend(
            (outgoing.call_id, dialling.latest, "INVITE"),
            lambda: uas.transport.send(first, remote),
            "sip_invite_unanswered",
        )
        try:
            await outgoing.wait_answered(answer_timeout_s)
        except TimeoutError:
            outgoing.cancel(uas.uac)
            self._ports.release(rtp_port)
            raise DialFailed(0, f"no answer from {target} in {answer_timeout_s:.0f} s") from None
        except RuntimeError:
            self._ports.release(rtp_port)
            status, reason = outgoing._reject_code, outgoing._reject_reason  # (aiosipua 0.7.1)
            if status in CHALLENGES and self.settings.dial_auth is None:
                reason += " (the callee asks for credentials: set VOICEMESH_SIP_DIAL_AUTH=user:password)"
            elif status in CHALLENGES:
                reason += " (the dial credentials were not accepted)"
            raise DialFailed(status, reason) from None
        finally:
            for cseq in dialling.invites:
                self._stop_resending((outgoing.call_id, cseq, "INVITE"))
            loop = asyncio.get_running_loop()
            loop.call_later(DIAL_MEMORY_S, self._dialling.pop, outgoing.call_id, None)
        theirs = serialize_sdp(outgoing.sdp_answer) if outgoing.sdp_answer is not None else ""
        try:
            answer = replace(self.answer(theirs, rtp_port, key_salt), sdp=offer)
        except SdpRejected as exc:  # an answer we cannot use: hang up at once
            outgoing.hangup(uas.uac)
            self._ports.release(rtp_port)
            raise DialFailed(0, f"the callee's answer cannot be used: {exc.reason}") from None
        dialog = IncomingCall(
            dialog=outgoing.dialog, invite=outgoing.invite, transport=uas.transport, source_addr=remote
        )
        dialog._answered = True  # (aiosipua 0.7.1: no CANCEL/487 on a call we placed)
        info = CallInfo(
            transport=uas.transport.kind,
            agent=agent,
            callee=user,
            carrier_call_id=outgoing.call_id,
            metadata={"direction": "outbound"},
        )
        port_ = SipPort(dialog, answer, rtp_port, info, self, self._clock)
        self._calls[outgoing.call_id] = port_
        try:
            await port_.connected()
        except OSError as exc:
            await port_.close(EndReason.ERROR_INTERNAL)
            raise DialFailed(0, f"cannot receive RTP on port {rtp_port}: {exc}") from None
        task = asyncio.get_running_loop().create_task(self._run(port_))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return port_


def refer_uri(target: str, invite: SipRequest) -> str:
    """Where a REFER sends the caller: a SIP or tel URI as it is; a number on the caller's
    own SIP domain (its carrier or PBX routes it)."""
    if target.lower().startswith(("sip:", "sips:", "tel:")):
        return target
    host = invite.from_addr.uri.host if invite.from_addr is not None else ""
    return f"sip:{target}@{host}" if host else f"tel:{target}"


class DialFailed(Exception):
    """A call we placed did not connect: `status` is the SIP final response (0: none came)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}" if status else reason)
        self.status = status
        self.reason = reason


_TARGET = re.compile(
    r"^sips?:(?:(?P<user>[^@;>]+)@)?(?P<host>\[[0-9a-fA-F:.]+\]|[^:;>]+)(?::(?P<port>\d+))?(?P<params>;[^>]*)?$"
)


def dial_target(uri: str) -> tuple[str, str, int]:
    """(user, host, port) of a SIP URI we call over UDP; ValueError naming what is wrong."""
    m = _TARGET.match(uri.strip())
    if m is None:
        raise ValueError(f"{uri!r} is not a SIP URI (sip:user@host[:port])")
    params = (m.group("params") or "").lower()
    if "transport=" in params and "transport=udp" not in params:
        raise ValueError("only UDP is dialled yet: drop the ;transport= parameter")
    port = int(m.group("port") or 5060)
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range")
    return m.group("user") or "", m.group("host").strip("[]"), port
