"""WebRTC calls on the edge's HTTP port, WHIP-style (non-trickle; RFC 9725's shape):

- `POST /v1/whip?agent=ID`, `Content-Type: application/sdp`, the offer as body: `201` with
  the answer and `Location: /v1/whip/<resource>`. The offer must carry audio; a data
  channel named `voicemesh` in it carries the call's observer messages.
- `DELETE /v1/whip/<resource>` hangs up.
- `GET /v1/softphone/config`: the agents the page may pick, the ICE servers to use (TURN
  credentials minted for this answer when the edge has a TURN secret) and the ICE policy.
- `POST /v1/tokens` (with the edge's API token): a short-lived call token for a page or app.

Every request but the token issue carries a call token (`Authorization: Bearer`, or
`?token=` for pages); a refusal says why. The call starts (the handler runs) once ICE and
DTLS are up, so nothing the agent says is lost to a connection still being made.

With ICE policy "relay" the edge offers only TURN relay candidates; if its TURN server
grants none (down, or refusing the edge's credentials) the offer is refused at once (503)
with the reason counted (`webrtc_no_relay`) and logged, instead of a call that never
connects.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

from aioice import stun, turn
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtcicetransport import connection_kwargs

from voicemesh.mesh.metrics import ServiceMetrics

from ..ingress import HttpRequest, HttpResponse, WebSocketIngress
from ..port import CallHandler, CallInfo, CallTransport
from .agents import AgentChoice
from .ice import IceConfig, IcePolicy, relay_candidates, unusable_offer
from .port import LABEL, WebRtcPort

log = logging.getLogger(__name__)
PATH = "/v1/whip"
CONFIG_PATH = "/v1/softphone/config"
TOKENS_PATH = "/v1/tokens"
SOFTPHONE_DIR = Path(__file__).resolve().parent.parent / "softphone"
CONNECT_TIMEOUT_S = 15.0
CHANNEL_WAIT_S = 2.0
MAX_OFFER_BYTES = 32_768
# aiortc 1.16's audio jitter buffer releases a packet only once 4 later ones are in (80 ms);
# 1 is the least that still knows a frame is whole (the next timestamp has arrived).
AUDIO_PREFETCH = 1
# The label in the TURN usernames the edge mints ("<expiry>:<label>"): its own, the page's.
EDGE_TURN_LABEL = "voicemesh-edge"
PAGE_TURN_LABEL = "voicemesh-softphone"
TURN_PROBE_S = 5.0


class Claims(Protocol):
    agent: str


class TokenCheck(Protocol):
    def verify(self, token: str, now: float, *, agent: str | None = None) -> Claims: ...
    def issue(self, now: float, ttl_s: float, agent: str = "") -> str: ...


def _text(status: HTTPStatus, reason: str) -> HttpResponse:
    return HttpResponse(status, reason + "\n")


def supplied_token(request: HttpRequest) -> str:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return parse_qs(urlsplit(request.path).query).get("token", [""])[0]


def tune_audio_receiver(pc: RTCPeerConnection) -> None:
    """Shorten aiortc's fixed audio prefetch (see AUDIO_PREFETCH), where its receiver has it."""
    for transceiver in pc.getTransceivers():
        receiver = transceiver.receiver
        name = "_RTCRtpReceiver__jitter_buffer"
        if transceiver.kind == "audio" and isinstance(getattr(receiver, name, None), JitterBuffer):
            setattr(receiver, name, JitterBuffer(capacity=16, prefetch=AUDIO_PREFETCH))


def selected_pair(pc: RTCPeerConnection) -> tuple[str, str] | None:
    """(local, remote) candidate types ("host", "srflx", "relay", ...) of the pair ICE
    nominated, where aioice shows it; None before that."""
    for transceiver in pc.getTransceivers():
        dtls = transceiver.receiver.transport
        connection = getattr(getattr(dtls, "transport", None), "_connection", None)
        pair = getattr(connection, "_nominated", {}).get(1)
        if pair is not None:
            return str(pair.local_candidate.type), str(pair.remote_candidate.type)
    return None


async def turn_refusal(config: IceConfig, now: float) -> str | None:
    """Why the TURN server aiortc would use grants the edge no relay: one allocation tried
    with the credentials a call would present (None: it grants one now). Never names a
    credential."""
    kwargs = connection_kwargs(config.servers_at(now, EDGE_TURN_LABEL))
    if "turn_server" not in kwargs:
        return "no TURN server aiortc can use (turn: over udp/tcp, or turns: over tcp)"
    host, port = kwargs["turn_server"]
    try:
        async with asyncio.timeout(TURN_PROBE_S):
            relayed, _ = await turn.create_turn_endpoint(
                asyncio.DatagramProtocol,
                server_addr=(host, port),
                username=kwargs["turn_username"],
                password=kwargs["turn_password"],
                ssl=kwargs["turn_ssl"],
                transport=kwargs["turn_transport"],
            )
    except stun.TransactionFailed as exc:
        code, reason = exc.response.attributes.get("ERROR-CODE", (0, "no error code"))
        if code == 401:
            return f"TURN server {host}:{port} refused the credentials (401 {reason})"
        return f"TURN server {host}:{port} refused the allocation ({code} {reason})"
    except (TimeoutError, stun.TransactionTimeout):
        return f"no answer from TURN server {host}:{port}"
    except OSError as exc:
        return f"TURN server {host}:{port} unreachable: {exc.strerror or exc}"
    relayed.close()
    return None


class WebRtcTransport(CallTransport):
    name = "webrtc"
    transport_label = LABEL

    def __init__(
        self,
        ingress: WebSocketIngress,
        metrics: ServiceMetrics,
        *,
        tokens: TokenCheck | None,
        edge_token: str,
        token_ttl_s: float,
        ice: IceConfig | None = None,
        agents: Sequence[AgentChoice] = (),
        default_agent: str = "",
        can_take_call: Callable[[], bool] = lambda: True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ingress = ingress
        self._metrics = metrics
        self._tokens = tokens
        self._edge_token = edge_token.encode()
        self._token_ttl_s = token_ttl_s
        self._ice = ice or IceConfig()
        self._agents = list(agents)
        self._default_agent = default_agent or (self._agents[0].id if self._agents else "")
        self._can_take_call = can_take_call
        self._clock = clock
        self._calls: dict[str, WebRtcPort] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._handler: CallHandler | None = None

    def describe(self) -> str:
        return self._ingress.url(PATH, scheme="http")

    async def start(self, handler: CallHandler) -> None:
        self._handler = handler
        self._ingress.add_http(PATH, self._authorize, self._whip, methods=("POST", "DELETE"), prefix=True)
        self._ingress.add_http(CONFIG_PATH, self._authorize, self._config)
        self._ingress.add_http(TOKENS_PATH, self._authorize_issuer, self._issue, methods=("POST",))
        self._ingress.add_static("/", SOFTPHONE_DIR, index="index.html")

    async def stop(self) -> None:
        return None  # live calls end through the call; the ingress stops accepting

    # ---- access ------------------------------------------------------------------------

    def _authorize(self, request: HttpRequest) -> tuple[HTTPStatus, str] | None:
        if self._tokens is None:
            return HTTPStatus.UNAUTHORIZED, "call tokens are not configured (VOICEMESH_CALL_TOKEN_SECRET)"
        token = supplied_token(request)
        if not token:
            return HTTPStatus.UNAUTHORIZED, "a call token is required (Authorization: Bearer, or ?token=)"
        try:
            self._tokens.verify(token, self._clock())
        except ValueError as exc:
            return HTTPStatus.UNAUTHORIZED, f"call token refused: {exc}"
        return None

    def _authorize_issuer(self, request: HttpRequest) -> tuple[HTTPStatus, str] | None:
        if self._tokens is None:
            return HTTPStatus.SERVICE_UNAVAILABLE, "call tokens are not configured (VOICEMESH_CALL_TOKEN_SECRET)"
        header = request.headers.get("Authorization", "")
        supplied = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(supplied.encode(), self._edge_token):
            return HTTPStatus.UNAUTHORIZED, "missing or wrong access token"
        return None

    async def _issue(self, request: HttpRequest) -> HttpResponse:
        assert self._tokens is not None
        agent, ttl = "", self._token_ttl_s
        if request.body.strip():
            try:
                asked = json.loads(request.body)
                if not isinstance(asked, dict):
                    raise ValueError("the body must be a JSON object")
                agent = str(asked.get("agent", ""))
                ttl = float(asked.get("ttl_s", ttl))
            except (ValueError, TypeError) as exc:
                return _text(HTTPStatus.BAD_REQUEST, f"bad token request: {exc}")
        now = self._clock()
        try:
            token = self._tokens.issue(now, ttl, agent)
        except ValueError as exc:
            return _text(HTTPStatus.BAD_REQUEST, f"bad token request: {exc}")
        body = json.dumps({"token": token, "expires_at": now + ttl})
        return HttpResponse(HTTPStatus.CREATED, body, "application/json")

    async def _config(self, request: HttpRequest) -> HttpResponse:
        body = {
            "agents": [{"id": a.id, "name": a.name} for a in self._agents],
            "default_agent": self._default_agent,
            **self._ice.page(self._clock(), PAGE_TURN_LABEL),
        }
        return HttpResponse(HTTPStatus.OK, json.dumps(body), "application/json")

    # ---- WHIP ----------------------------------------------------------------------------

    async def _whip(self, request: HttpRequest) -> HttpResponse:
        path = urlsplit(request.path).path
        if request.method == "DELETE":
            port = self._calls.get(path.removeprefix(PATH + "/"))
            if port is None:
                return _text(HTTPStatus.NOT_FOUND, "no such call (it has ended, or never was)")
            port.caller_gone("caller hung up")
            return _text(HTTPStatus.OK, "hung up")
        if path != PATH:
            return _text(HTTPStatus.METHOD_NOT_ALLOWED, f"offers go to {PATH}")
        return await self._offer(request)

    async def _offer(self, request: HttpRequest) -> HttpResponse:
        assert self._tokens is not None and self._handler is not None
        agent = parse_qs(urlsplit(request.path).query).get("agent", [""])[0]
        try:
            claims = self._tokens.verify(supplied_token(request), self._clock(), agent=agent or None)
        except ValueError as exc:
            return _text(HTTPStatus.FORBIDDEN, f"call token refused: {exc}")
        agent = agent or claims.agent or self._default_agent
        if self._agents and agent and agent not in {a.id for a in self._agents}:
            known = ", ".join(a.id for a in self._agents)
            return _text(HTTPStatus.NOT_FOUND, f"unknown agent {agent!r}; known agents: {known}")
        if not self._can_take_call():
            self._metrics.error("call_refused")
            return _text(HTTPStatus.SERVICE_UNAVAILABLE, "this edge is not taking new calls")
        if request.headers.get("Content-Type", "").split(";")[0].strip().lower() != "application/sdp":
            return _text(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "the offer must be sent as application/sdp")
        if len(request.body) > MAX_OFFER_BYTES:
            return _text(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"an offer is at most {MAX_OFFER_BYTES} bytes")
        try:
            sdp = request.body.decode("utf-8")
        except UnicodeDecodeError:
            return self._bad_offer("the offer is not UTF-8 text")
        if "m=audio" not in sdp:
            return self._bad_offer("the offer has no audio (m=audio)")
        pc = RTCPeerConnection(self._ice.rtc(self._clock(), EDGE_TURN_LABEL))
        info = CallInfo(transport=self.name, agent=agent, metadata={"remote": request.remote} if request.remote else {})
        port = WebRtcPort(pc, info, self._metrics)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            tune_audio_receiver(pc)
            pc.addTrack(port.track)
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:  # aiortc raises many kinds for a bad offer
            await pc.close()
            return self._bad_offer(f"the offer cannot be answered: {exc}")
        answer = pc.localDescription.sdp
        if self._ice.policy is IcePolicy.RELAY and not relay_candidates(answer):
            await pc.close()
            return await self._no_relay(unusable_offer(sdp, answer))
        unusable = unusable_offer(sdp, answer)
        if unusable is not None:
            await pc.close()
            return self._bad_offer(unusable)
        resource = secrets.token_urlsafe(16)
        self._calls[resource] = port
        task = asyncio.get_running_loop().create_task(self._run(resource, port))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return HttpResponse(
            HTTPStatus.CREATED,
            pc.localDescription.sdp,
            "application/sdp",
            headers={"Location": f"{PATH}/{resource}"},
        )

    async def _no_relay(self, offer_problem: str | None) -> HttpResponse:
        """The answer holds no relay: the TURN server's fault when it refuses the edge now,
        else the offer's when it is unusable (aioice then drops its candidates, relay too)."""
        reason = await turn_refusal(self._ice, self._clock())
        if reason is None and offer_problem is not None:
            return self._bad_offer(offer_problem)
        reason = reason or "the TURN server granted no relay in time for the call (it does now)"
        self._metrics.error("webrtc_no_relay")
        log.warning("webrtc call refused: no relay candidate", extra={"reason": reason})
        return _text(HTTPStatus.SERVICE_UNAVAILABLE, f"this edge has no TURN relay for the call: {reason}")

    def _bad_offer(self, reason: str) -> HttpResponse:
        self._metrics.error("webrtc_bad_offer")
        return _text(HTTPStatus.BAD_REQUEST, reason)

    async def _run(self, resource: str, port: WebRtcPort) -> None:
        """The call, once its media is up; a caller whose ICE/DTLS never completes is let go."""
        assert self._handler is not None
        try:
            gone = asyncio.ensure_future(port.hung_up.wait())  # hung up before it connected
            connected = asyncio.ensure_future(port.connected.wait())
            await asyncio.wait({gone, connected}, timeout=CONNECT_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
            for fut in (gone, connected):
                fut.cancel()
            if not port.connected.is_set():
                self._metrics.error("webrtc_not_connected")
                log.info("webrtc caller never connected", extra={"resource": resource})
                await port.pc.close()
                return
            local, remote = selected_pair(port.pc) or ("unknown", "unknown")
            log.info("webrtc media connected", extra={"resource": resource, "ice_local": local, "ice_remote": remote})
            try:
                await asyncio.wait_for(port.channel_open.wait(), CHANNEL_WAIT_S)
            except TimeoutError:
                pass  # no data channel: audio only, nothing shown
            await self._handler(port)
        finally:
            self._calls.pop(resource, None)
