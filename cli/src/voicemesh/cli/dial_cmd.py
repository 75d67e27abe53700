"""`voicemesh dial sip:user@host`: the agent calls out, through the edge's `MediaEdge.Dial`."""

from __future__ import annotations

import argparse
import asyncio
import sys

import grpc

from voicemesh.mesh.grpcutil import channel
from voicemesh.mesh.mtls import MeshTls
from voicemesh.v1 import edge_pb2, edge_pb2_grpc

from .state import StateError, read_state

PROG = "voicemesh dial"


async def dial(
    address: str, token: str, request: edge_pb2.DialRequest, tls: MeshTls | None = None
) -> edge_pb2.DialResponse:
    async with channel(address, tls, "media-edge") as ch:
        stub = edge_pb2_grpc.MediaEdgeStub(ch)
        wait = (request.answer_timeout_s or 30) + 10
        response: edge_pb2.DialResponse = await stub.Dial(
            request, metadata=[("authorization", f"Bearer {token}")], timeout=wait
        )
        return response


def run(args: argparse.Namespace) -> int:
    try:
        state = read_state()
        address = args.edge or state.service("media-edge").grpc_address
        token = args.token or state.edge_token
        tls = state.tls()
    except StateError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    request = edge_pb2.DialRequest(
        target=args.target, agent=args.agent or "", caller=args.caller or "", answer_timeout_s=args.timeout
    )
    try:
        response = asyncio.run(dial(address, token, request, tls))
    except grpc.aio.AioRpcError as exc:
        print(f"{PROG}: error: {exc.details() or exc.code().name}", file=sys.stderr)
        return 1
    print(f"answered: {args.target} (SIP Call-ID {response.call_id}); follow it with `voicemesh calls`")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "dial",
        help="have an agent call a SIP URI",
        description=(
            "Place a call from an agent to a SIP URI (over UDP) through the local mesh's edge; "
            "returns once the callee answered, and the call goes on as any caller's."
        ),
    )
    p.add_argument("target", metavar="SIP_URI", help="e.g. sip:alice@192.0.2.10:5060")
    p.add_argument("--agent", help="agent id (default: the mesh's default agent)")
    p.add_argument("--caller", help="the user part of our From, as the callee sees it (default: voicemesh)")
    p.add_argument("--timeout", type=int, default=30, help="seconds to wait for an answer (default 30)")
    p.add_argument("--edge", help="the edge's gRPC address (default: the local mesh's)")
    p.add_argument("--token", help="the edge token (default: the local mesh's)")
    p.set_defaults(func=run)
