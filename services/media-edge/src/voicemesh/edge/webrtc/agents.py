"""The agents a softphone page may call: read from the same folder the reasoning service
serves (`VOICEMESH_AGENTS_DIR`), id and display name only. A file that does not load is
left out with a warning: the reasoning service is the one that refuses it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from voicemesh.agent.errors import AgentFileError
from voicemesh.agent.loader import load_agent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentChoice:
    id: str
    name: str


def agent_choices(agents_dir: Path | None) -> list[AgentChoice]:
    if agents_dir is None or not agents_dir.is_dir():
        return []
    choices: dict[str, AgentChoice] = {}
    for path in sorted([*agents_dir.glob("*.yaml"), *agents_dir.glob("*.yml")]):
        try:
            agent = load_agent(path)
        except (AgentFileError, OSError) as exc:
            log.warning("agent file left out of the softphone's list", extra={"file": str(path), "error": str(exc)})
            continue
        choices.setdefault(agent.id, AgentChoice(agent.id, str(agent.name)))
    return list(choices.values())
