"""The session stream's keeper: the container `stream` beside nats-server in the built-in
NATS pod (templates/nats.yaml), logged in as the `mesh` user, the one user access.py lets
create and update the stream. It makes the stream with its retention
(VOICEMESH_EVENTS_MAX_AGE_S) once NATS answers, and checks it again every CHECK_S seconds:
a NATS that lost its store (an emptyDir, a new volume) gets it back, and a retention changed
by hand is set back to the chart's. The services only publish (VOICEMESH_EVENTS_CREATE_STREAM
=false); until the stream exists their events wait in each service's bounded backlog.

`--once`: make sure of the stream once and exit (0: done, 1: it could not), for tests.
"""

import argparse
import asyncio
import logging
import os
import sys

from voicemesh.mesh.events import connect_nats, ensure_stream

CHECK_S = 30.0
log = logging.getLogger("voicemesh.nats.stream")


async def ensure_once(url: str, max_age_s: float) -> None:
    nc = await connect_nats(url, 5.0)
    try:
        await ensure_stream(nc.jetstream(), max_age_s)
    finally:
        await nc.close()


async def keep(url: str, max_age_s: float, check_s: float) -> None:
    ok = False
    while True:
        try:
            await ensure_once(url, max_age_s)
        except Exception as exc:  # NATS not up yet, or refusing: say so, try again
            log.warning("session stream not ensured: %s", exc or type(exc).__name__)
            ok = False
        else:
            if not ok:
                log.info("session stream ensured (max age %g s)", max_age_s)
            ok = True
        await asyncio.sleep(check_s if ok else 2.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--once", action="store_true", help="ensure the stream once and exit")
    ns = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    url = os.environ["VOICEMESH_NATS_URL"]
    max_age_s = float(os.environ.get("VOICEMESH_EVENTS_MAX_AGE_S", "3600"))
    if ns.once:
        try:
            asyncio.run(ensure_once(url, max_age_s))
        except Exception as exc:
            log.error("session stream not ensured: %s", exc or type(exc).__name__)
            return 1
        return 0
    asyncio.run(keep(url, max_age_s, float(os.environ.get("CHECK_S", CHECK_S))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
