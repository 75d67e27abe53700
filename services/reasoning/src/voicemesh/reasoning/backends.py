"""The backends a reasoning process offers, built once at start from its agent catalog.

    backends = Backends.build(catalog, os.environ)   # AgentSetupError names agent and field
    check_llm_setup(agent, source, os.environ)       # the same checks for one agent file
    backend = backends(agent, session)               # per call: RulesBackend or LlmBackend
    await backends.aclose()                          # at shutdown: HTTP sessions

Everything that can be wrong with an agent's LLM setup (a key variable not set, a knowledge
file that cannot be read, a tool whose schema is invalid, a bad privacy pattern) is found
here, when the process starts, not on the first call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from voicemesh.agent import Agent, OpenAIBackendConfig
from voicemesh.agent.checks import Loc
from voicemesh.mesh.pii import Redactor

from .backend import BackendUnavailable, ConversationBackend, SessionInfo
from .catalog import AgentCatalog
from .knowledge import KnowledgeIndex
from .llm_backend import LlmAgent, LlmBackend, Target
from .openai_client import ApiKeyError, ChatClient, ChatEndpoint, endpoint_from_config
from .rules_backend import FlowTools, RulesBackend
from .tools import ToolBox


class AgentSetupError(ValueError):
    """An agent's LLM setup cannot be used. The message names the agent file, the agent,
    the field and what is wrong: `agents/x.yaml: agent 'x': backend.api_key_env: ...`.

    `loc` is the field's location in the file (`("backend", "fallback", 0, "api_key_env")`),
    for a caller that wants its line; `field` is the same, written as in the message."""

    def __init__(self, source: Path, agent_id: str, loc: Loc, detail: str) -> None:
        self.source = source
        self.agent_id = agent_id
        self.loc = loc
        self.field = _dotted(loc)
        self.detail = detail
        super().__init__(f"{source}: agent {agent_id!r}: {self.field}: {detail}")


def _dotted(loc: Loc) -> str:
    out = ""
    for item in loc:
        out += f"[{item}]" if isinstance(item, int) else (f".{item}" if out else str(item))
    return out


@dataclass(frozen=True)
class LlmSetup:
    """An agent's LLM setup once checked: its endpoints with their keys read (primary first,
    then the fallbacks; each with its model), its tools, its knowledge index, its redactor.
    Nothing here has opened a connection."""

    endpoints: tuple[tuple[ChatEndpoint, str], ...]
    toolbox: ToolBox
    knowledge: KnowledgeIndex | None
    redactor: Redactor | None

    @property
    def knowledge_chunks(self) -> int:
        return len(self.knowledge) if self.knowledge is not None else 0


def redactor_for(agent: Agent) -> Redactor | None:
    """The agent's redactor, or None when its `privacy.redact` is off."""
    if not agent.privacy.redact:
        return None
    return Redactor(kinds=agent.privacy.kinds, extra=agent.privacy.patterns)


class _ToolHttp:
    """One pooled HTTP session for every tool call of the process, opened on first use
    (inside the event loop)."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def __call__(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=5))
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class _ErrorSink:
    """Where backends count their errors (`voicemesh_errors_total` kinds): set once the
    service's metrics exist, after the agents were built and checked."""

    def __init__(self, target: Callable[[str], None] | None = None) -> None:
        self.target = target

    def __call__(self, kind: str) -> None:
        if self.target is not None:
            self.target(kind)


class Backends:
    """The default backend factory: the rule engine, or the OpenAI-compatible LLM."""

    def __init__(
        self,
        llm_agents: Mapping[str, LlmAgent],
        http: _ToolHttp,
        clients: list[ChatClient],
        errors: _ErrorSink,
        flow_tools: Mapping[str, FlowTools] | None = None,
    ) -> None:
        self._llm = dict(llm_agents)
        # A rule-engine agent's tools, for its flow's `call` states (built once per agent).
        self._flow_tools = dict(flow_tools or {})
        self._http = http
        self._clients = clients
        self._errors = errors

    @classmethod
    def build(
        cls,
        catalog: AgentCatalog,
        environ: Mapping[str, str],
        *,
        on_error: Callable[[str], None] | None = None,
    ) -> Backends:
        http = _ToolHttp()
        errors = _ErrorSink(on_error)
        clients: dict[tuple[str, str | None], ChatClient] = {}
        llm: dict[str, LlmAgent] = {}
        flow_tools: dict[str, FlowTools] = {}
        for agent_id, agent in catalog.agents.items():
            source = catalog.source(agent_id)
            if isinstance(agent.backend, OpenAIBackendConfig):
                llm[agent_id] = _llm_agent(agent, agent.backend, source, environ, clients, http)
            elif agent.tools:
                mask = (redactor_for(agent) or Redactor()).mask
                flow_tools[agent_id] = FlowTools(
                    _toolbox(agent, source, environ), http, mask, errors
                )
        return cls(llm, http, list(clients.values()), errors, flow_tools)

    @property
    def llm_agents(self) -> Mapping[str, LlmAgent]:
        return dict(self._llm)

    def __call__(self, agent: Agent, session: SessionInfo) -> ConversationBackend:
        if agent.backend.kind == "rules":
            return RulesBackend(agent, session, tools=self._flow_tools.get(agent.id))
        shared = self._llm.get(agent.id)
        if shared is None or shared.agent is not agent:
            raise BackendUnavailable(f"agent {agent.id!r} was not set up for its {agent.backend.kind} backend")
        return LlmBackend(shared, session, clock=time.monotonic, on_error=self._errors)

    def count_errors(self, target: Callable[[str], None]) -> None:
        """Count every backend's errors with `target` from now on (`metrics.error`)."""
        self._errors.target = target

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()
        await self._http.aclose()


def check_llm_setup(agent: Agent, source: Path, environ: Mapping[str, str]) -> LlmSetup | None:
    """Check an agent's LLM setup as the service does at start, without a network
    connection: the API key variables (or files) of every endpoint, the tools' JSON schemas
    and auth variables, the knowledge files (read and chunked), the privacy patterns.

    Raises AgentSetupError naming `source` and the field. Returns what the checks built
    (None for an agent without an LLM backend: there is nothing to check)."""
    if not isinstance(agent.backend, OpenAIBackendConfig):
        if agent.tools:
            _toolbox(agent, source, environ)  # a flow calls them (`State.call`)
        return None
    return _llm_setup(agent, agent.backend, source, environ)


def _toolbox(agent: Agent, source: Path, environ: Mapping[str, str]) -> ToolBox:
    try:
        return ToolBox.from_agent(agent, environ)
    except ValueError as e:
        raise AgentSetupError(source, agent.id, ("tools",), str(e)) from None


def _llm_setup(
    agent: Agent, config: OpenAIBackendConfig, source: Path, environ: Mapping[str, str]
) -> LlmSetup:
    endpoints: list[tuple[ChatEndpoint, str]] = []
    for position, endpoint in enumerate([config, *config.fallback]):
        loc: Loc = ("backend",) if position == 0 else ("backend", "fallback", position - 1)
        try:
            chat = endpoint_from_config(endpoint, environ, source.parent)
        except ApiKeyError as e:
            # With a file configured, an unset variable falls back to it: the file is at fault.
            key_field = "api_key_file" if endpoint.api_key_file else "api_key_env"
            raise AgentSetupError(source, agent.id, (*loc, key_field), str(e)) from None
        except ValueError as e:
            raise AgentSetupError(source, agent.id, (*loc, "base_url"), str(e)) from None
        endpoints.append((chat, endpoint.model))
    toolbox = _toolbox(agent, source, environ)
    try:
        knowledge = KnowledgeIndex.for_agent(agent, source.parent) if agent.knowledge else None
    except ValueError as e:
        raise AgentSetupError(source, agent.id, ("knowledge",), str(e)) from None
    try:
        redactor = redactor_for(agent)
    except ValueError as e:
        raise AgentSetupError(source, agent.id, ("privacy",), str(e)) from None
    return LlmSetup(tuple(endpoints), toolbox, knowledge, redactor)


def _llm_agent(
    agent: Agent,
    config: OpenAIBackendConfig,
    source: Path,
    environ: Mapping[str, str],
    clients: dict[tuple[str, str | None], ChatClient],
    http: Callable[[], aiohttp.ClientSession],
) -> LlmAgent:
    setup = _llm_setup(agent, config, source, environ)
    targets: list[Target] = []
    for chat, model in setup.endpoints:
        key = (chat.base_url, chat.api_key)
        if key not in clients:
            clients[key] = ChatClient(chat)
        targets.append(Target(clients[key], model))
    return LlmAgent(agent, config, tuple(targets), setup.toolbox, setup.knowledge, setup.redactor, http)
