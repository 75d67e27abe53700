"""The reasoning process: agents loaded at start, `Reasoning.Converse` served."""

from __future__ import annotations

import os
from pathlib import Path

import grpc
from pydantic import Field

from voicemesh.mesh.service import Factory, MeshContext, MeshService, run_main
from voicemesh.mesh.settings import MeshSettings
from voicemesh.v1 import reasoning_pb2_grpc

from .backends import Backends
from .catalog import AgentCatalog
from .servicer import ReasoningServicer


class ReasoningSettings(MeshSettings):
    grpc_port: int = Field(default=50053, ge=0, le=65535)
    # Folder of agent YAML files (every *.yaml is loaded and validated at start).
    agents_dir: Path = Path("agents")
    # Agent id used when a call names none.
    default_agent: str = "restaurant"


class ReasoningService(MeshService):
    name = "reasoning"
    health_names = ("voicemesh.v1.Reasoning",)

    def __init__(self, ctx: MeshContext, servicer: ReasoningServicer, backends: Backends) -> None:
        self.ctx = ctx
        self.servicer = servicer
        self.backends = backends

    async def start(self) -> None:
        return None  # agents were loaded and validated before the process started serving

    def add_to_server(self, server: grpc.aio.Server) -> None:
        reasoning_pb2_grpc.add_ReasoningServicer_to_server(self.servicer, server)

    async def close(self) -> None:
        await self.backends.aclose()


def _factory(settings: ReasoningSettings) -> Factory:
    # Agent files are validated first, before the process touches the network: a broken
    # file is the one line the operator sees (with file and line), whatever else is wrong.
    # The LLM agents' keys, knowledge and tools are checked here too, for the same reason.
    # Built once: knowledge indexes are read and indexed here, not again per process step.
    catalog = AgentCatalog(settings.agents_dir, settings.default_agent)
    backends = Backends.build(catalog, os.environ)

    def make(ctx: MeshContext) -> MeshService:
        backends.count_errors(ctx.metrics.error)
        servicer = ReasoningServicer(catalog, ctx.metrics, ctx.events, ctx.tracer, backend_factory=backends)
        return ReasoningService(ctx, servicer, backends)

    return make


def main() -> None:
    run_main("reasoning", ReasoningSettings, _factory)
