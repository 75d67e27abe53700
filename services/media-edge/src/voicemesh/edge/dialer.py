"""The edge's gRPC API for calls it places (`MediaEdge.Dial`): authenticated by the edge
token, refused while the edge drains or is full, carried out by the SIP transport."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable

import grpc

from voicemesh.mesh.metrics import ServiceMetrics
from voicemesh.v1 import edge_pb2, edge_pb2_grpc

from .sip.transport import DialFailed, SipCallTransport

log = logging.getLogger(__name__)
DEFAULT_ANSWER_TIMEOUT_S = 30
MAX_ANSWER_TIMEOUT_S = 120
# SIP final responses that mean "not here" rather than "not now".
_NOT_FOUND = {404, 410, 484, 604}


class Dialer(edge_pb2_grpc.MediaEdgeServicer):
    def __init__(
        self,
        sip: SipCallTransport | None,
        token: str,
        metrics: ServiceMetrics,
        can_take_call: Callable[[], bool],
    ) -> None:
        self._sip = sip
        self._token = token.encode()
        self._metrics = metrics
        self._can_take_call = can_take_call

    async def Dial(
        self, request: edge_pb2.DialRequest, context: grpc.aio.ServicerContext
    ) -> edge_pb2.DialResponse:
        metadata = dict(context.invocation_metadata() or ())
        supplied = str(metadata.get("authorization", ""))
        token = supplied[7:].strip() if supplied.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(token.encode(), self._token):
            self._metrics.error("unauthorized")
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong edge token")
        if self._sip is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "SIP is turned off on this edge")
        if not self._can_take_call():
            self._metrics.error("call_refused")
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "this edge is not taking new calls")
        timeout = min(request.answer_timeout_s or DEFAULT_ANSWER_TIMEOUT_S, MAX_ANSWER_TIMEOUT_S)
        assert self._sip is not None
        try:
            port = await self._sip.dial(
                request.target, agent=request.agent, caller=request.caller or "voicemesh", answer_timeout_s=timeout
            )
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except DialFailed as exc:
            self._metrics.error("dial_failed")
            code = grpc.StatusCode.NOT_FOUND if exc.status in _NOT_FOUND else grpc.StatusCode.UNAVAILABLE
            await context.abort(code, f"the call did not connect: {exc}")
        log.info("call placed", extra={"call": port.info.carrier_call_id})
        return edge_pb2.DialResponse(call_id=port.info.carrier_call_id)
