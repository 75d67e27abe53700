"""The agents a reasoning instance serves: every agent file of one folder, loaded at start."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from voicemesh.agent import Agent, AgentFileError, Problem, load_agent


class CatalogError(ValueError):
    """The agents folder cannot be used (missing, empty, no such default agent)."""


class UnknownAgentError(KeyError):
    """No agent with this id. `str()` names the id and the known ones."""

    def __init__(self, agent_id: str, known: list[str]) -> None:
        super().__init__(agent_id)
        self.agent_id = agent_id
        self.known = known

    def __str__(self) -> str:
        return f"unknown agent {self.agent_id!r}; known agents: {', '.join(self.known)}"


class AgentCatalog:
    """Loads every `*.yaml` / `*.yml` in `agents_dir` (sorted by name) when built.

    Raises AgentFileError (file:line of the first bad file's problems) for a bad file or
    two files with the same id, and CatalogError for a missing or empty folder or a
    `default_agent` that no file defines.
    """

    def __init__(self, agents_dir: Path, default_agent: str) -> None:
        agents_dir = Path(agents_dir)
        if not agents_dir.is_dir():
            raise CatalogError(f"agents folder {str(agents_dir)!r} does not exist")
        files = sorted([*agents_dir.glob("*.yaml"), *agents_dir.glob("*.yml")])
        if not files:
            raise CatalogError(f"agents folder {str(agents_dir)!r} has no *.yaml agent files")
        agents: dict[str, Agent] = {}
        sources: dict[str, Path] = {}
        for path in files:
            agent = load_agent(path)
            if agent.id in agents:
                raise AgentFileError(
                    str(path),
                    [
                        Problem(
                            _id_line(path), "id", f"agent id {agent.id!r} is also used by {sources[agent.id]}"
                        )
                    ],
                )
            agents[agent.id] = agent
            sources[agent.id] = path
        if default_agent not in agents:
            raise CatalogError(
                f"default agent {default_agent!r} is not defined in {str(agents_dir)!r}; "
                f"agents there: {', '.join(agents)}"
            )
        self.agents_dir = agents_dir
        self.default_agent = default_agent
        self._agents = agents
        self._sources = sources

    @property
    def ids(self) -> list[str]:
        return list(self._agents)

    @property
    def agents(self) -> Mapping[str, Agent]:
        return dict(self._agents)

    def source(self, agent_id: str) -> Path:
        return self._sources[agent_id]

    def get(self, agent_id: str) -> Agent:
        """The agent with this id; an empty id means the default agent."""
        agent = self._agents.get(agent_id or self.default_agent)
        if agent is None:
            raise UnknownAgentError(agent_id, self.ids)
        return agent


def _id_line(path: Path) -> int | None:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("id:"):
            return number
    return None
