"""Fixtures shared by every package's tests: real Valkey and NATS servers on free ports."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from voicemesh.mesh.localservers import LocalServer, nats_server, valkey_server

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO_ROOT = Path(__file__).resolve().parent
ASSETS = REPO_ROOT.parent / "shared" / "assets"


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
    return f"redis://{valkey.host}:{valkey.port}/0"


@pytest.fixture(scope="session")
def nats_url(nats: LocalServer) -> str:
    return f"nats://{nats.host}:{nats.port}"


@pytest.fixture(scope="session")
def jfk_wav() -> Path:
    path = ASSETS / "audio" / "jfk16k.wav"
    if not path.exists():
        pytest.fail(f"test audio missing: {path} (the shared assets sit beside the repository)")
    return path
