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
        by_number: dict[str, str] = {}
        for agent_id, agent in agents.items():
            for number in agent.numbers:
                if number in by_number:
                    raise CatalogError(
                        f"number {number} is claimed by agents {by_number[number]!r} and {agent_id!r} "
                        f"({sources[by_number[number]]}, {sources[agent_id]})"
                    )
                by_number[number] = agent_id
        if default_agent not in agents:
            raise CatalogError(
                f"default agent {default_agent!r} is not defined in {str(agents_dir)!r}; "
                f"agents there: {', '.join(agents)}"
            )
        self.agents_dir = agents_dir
        self.default_agent = default_agent
        self._agents = agents
        self._sources = sources
        self._by_number = by_number

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

    def for_call(self, agent_id: str, called: str = "") -> Agent:
        """The agent a call reaches: the one it names, else the one whose `numbers` hold
        the called number (written with or without spaces, dashes or a `tel:`/`sip:`
        prefix), else the default agent. UnknownAgentError for a named agent that does
        not exist."""
        if agent_id:
            return self.get(agent_id)
        number = normalize_number(called)
        if number and number in self._by_number:
            return self._agents[self._by_number[number]]
        return self.get("")


def normalize_number(called: str) -> str:
    """`+1 (212) 555-0187`, `tel:+12125550187`, `sip:+12125550187@trunk`, a SIP header's
    `"Desk" <sip:+12125550187@trunk>;tag=1` -> `+12125550187`; empty when `called` is not a
    number in E.164 form."""
    text = called.strip()
    if "<" in text and ">" in text.partition("<")[2]:  # a name-addr: the URI is in <>
        text = text.partition("<")[2].partition(">")[0].strip()
    for prefix in ("tel:", "sip:", "sips:"):
        if text.lower().startswith(prefix):
            text = text[len(prefix) :]
    text = text.split("@", 1)[0].split(";", 1)[0]
    digits = "".join(ch for ch in text if ch.isdigit())
    if not text.startswith("+") or text.count("+") != 1 or not 8 <= len(digits) <= 15:
        return ""
    if any(not (ch.isdigit() or ch in " -().+") for ch in text):
        return ""
    return "+" + digits


def _id_line(path: Path) -> int | None:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("id:"):
            return number
    return None
