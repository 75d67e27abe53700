"""`python -m voicemesh.edge`: run a media-edge instance (settings from VOICEMESH_*)."""

from __future__ import annotations

from voicemesh.mesh.service import Factory, run_main

from .service import EdgeService
from .settings import EdgeSettings


def _factory(settings: EdgeSettings) -> Factory:
    return lambda ctx: EdgeService(ctx, settings)


def main() -> None:
    run_main("media-edge", EdgeSettings, _factory)


if __name__ == "__main__":
    main()
