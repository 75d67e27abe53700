"""Fixtures shared by every package's tests: real Valkey and NATS servers on free ports, and
mesh mTLS certificates."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from voicemesh.mesh import localservers
from voicemesh.mesh.certs import write_mesh_tls
from voicemesh.mesh.localservers import LocalServer, nats_server, valkey_server

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO_ROOT = Path(__file__).resolve().parent


def _find_assets() -> Path:
    """The team's shared test assets: $VOICEMESH_ASSETS, else shared/assets beside the clone."""
    candidates = [os.environ.get("VOICEMESH_ASSETS", ""), REPO_ROOT.parent / "shared" / "assets"]
    candidates.append(Path("/work/shared/assets"))
    for candidate in candidates:
        if candidate and (Path(candidate) / "audio" / "jfk16k.wav").exists():
            return Path(candidate)
    return REPO_ROOT.parent / "shared" / "assets"


ASSETS = _find_assets()


@pytest.fixture(scope="session")
def valkey() -> Iterator[LocalServer]:
    with valkey_server() as server:
        yield server


@pytest.fixture(scope="session")
def nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    with nats_server(tmp_path_factory.mktemp("jetstream")) as server:
        yield server


@pytest.fixture(scope="session")
def redis_url(valkey: LocalServer) -> str:
    return localservers.redis_url(valkey)


@pytest.fixture(scope="session")
def nats_url(nats: LocalServer) -> str:
    return localservers.nats_url(nats)


@pytest.fixture(scope="session")
def assets_dir() -> Path:
    if not (ASSETS / "audio").is_dir():
        pytest.fail(f"shared test assets missing: {ASSETS} (set VOICEMESH_ASSETS)")
    return ASSETS


@pytest.fixture(scope="session")
def jfk_wav() -> Path:
    path = ASSETS / "audio" / "jfk16k.wav"
    if not path.exists():
        pytest.fail(f"test audio missing: {path} (the shared assets sit beside the repository)")
    return path


@pytest.fixture(scope="session")
def mesh_tls_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One mesh CA's credentials (ca.crt, tls.crt, tls.key) for every service, `cli`, and
    `dummy` (the runner tests' service), each in its own directory."""
    identities = ("session-router", "stt", "reasoning", "tts", "media-edge", "cli", "dummy")
    return write_mesh_tls(tmp_path_factory.mktemp("mesh-tls"), identities, dt.datetime.now(dt.UTC))
