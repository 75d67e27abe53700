"""reasoning: agent conversations over `Reasoning.Converse` (embedded rule/flow engine;
OpenAI-compatible LLM, RAG and tool backends plug in behind `ConversationBackend`).

    from voicemesh.reasoning import build
    servicer = build(Path("agents"), "restaurant", metrics, events, tracer)
    reasoning_pb2_grpc.add_ReasoningServicer_to_server(servicer, server)
"""

from __future__ import annotations

from .backend import (
    AgentAction,
    BackendFactory,
    BackendUnavailable,
    ConversationBackend,
    ResponseItem,
    SessionInfo,
    TextChunk,
    ToolCall,
)
from .catalog import AgentCatalog, CatalogError, UnknownAgentError
from .history import History, Message
from .rules import Action, FlowEngine, Reply
from .rules_backend import RulesBackend, default_backend_factory, word_groups
from .servicer import ReasoningServicer, build
from .snapshot import ConversationSnapshot, FlowState, SnapshotError

__all__ = [
    "Action",
    "AgentAction",
    "AgentCatalog",
    "BackendFactory",
    "BackendUnavailable",
    "CatalogError",
    "ConversationBackend",
    "ConversationSnapshot",
    "FlowEngine",
    "FlowState",
    "History",
    "Message",
    "ReasoningServicer",
    "Reply",
    "ResponseItem",
    "RulesBackend",
    "SessionInfo",
    "SnapshotError",
    "TextChunk",
    "ToolCall",
    "UnknownAgentError",
    "build",
    "default_backend_factory",
    "word_groups",
]
