"""`voicemesh`: the one CLI in front of local use."""

from __future__ import annotations

import argparse
import os
import sys

from . import meshcmds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voicemesh", description="voicemesh: the voice layer for AI phone agents"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    meshcmds.register(sub)
    from . import (  # caller-side commands
        agent_cmd,
        call,
        calls_cmd,
        cluster_cmd,
        dial_cmd,
        events_cmd,
        token_cmd,
    )

    call.register(sub)
    events_cmd.register(sub)
    calls_cmd.register(sub)
    dial_cmd.register(sub)  # an agent calls out (SIP)
    cluster_cmd.register(sub)  # voicemesh on Kubernetes
    agent_cmd.register(sub)  # agent files: check, new, list
    token_cmd.register(sub)  # call tokens for browsers and apps
    return parser


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
