"""The tts service process: piper loaded at start, `TextToSpeech` served."""

from __future__ import annotations

import asyncio

import grpc
from pydantic import Field

from voicemesh.mesh.service import Factory, MeshContext, MeshService, run_main
from voicemesh.mesh.settings import MeshSettings
from voicemesh.v1 import tts_pb2_grpc

from .engine import DEFAULT_VOICE, PiperEngine
from .servicer import TtsServicer


class TtsSettings(MeshSettings):
    grpc_port: int = Field(default=50054, ge=0, le=65535)
    tts_default_voice: str = DEFAULT_VOICE
    # onnxruntime threads for piper (2 suits a 2-core machine).
    tts_threads: int = Field(default=2, ge=1, le=64)


class TtsService(MeshService):
    name = "tts"
    health_names = ("voicemesh.v1.TextToSpeech",)

    def __init__(self, ctx: MeshContext, settings: TtsSettings) -> None:
        self.ctx = ctx
        self.engine = PiperEngine(default_voice=settings.tts_default_voice, threads=settings.tts_threads)

    async def start(self) -> None:
        await asyncio.to_thread(self.engine.load)

    def add_to_server(self, server: grpc.aio.Server) -> None:
        servicer = TtsServicer(self.engine, self.ctx.metrics, self.ctx.events, self.ctx.tracer)
        tts_pb2_grpc.add_TextToSpeechServicer_to_server(servicer, server)

    async def close(self) -> None:
        self.engine.close()


def _factory(settings: TtsSettings) -> Factory:
    return lambda ctx: TtsService(ctx, settings)


def main() -> None:
    run_main("tts", TtsSettings, _factory)
