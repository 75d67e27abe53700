"""The agent file: schema, loader with line-numbered errors, reply templates.

from voicemesh.agent import load_agent, AgentFileError
agent = load_agent("agents/restaurant.yaml")
"""

from __future__ import annotations

from .checks import parse_clock
from .errors import AgentFileError, Problem
from .loader import load_agent, parse_agent
from .schema import (
    BUILTIN_INTENTS,
    Agent,
    Fallback,
    Flow,
    Intent,
    KnowledgeSource,
    LlmEndpoint,
    OpenAIBackendConfig,
    RulesBackendConfig,
    Slot,
    SlotType,
    State,
    Tool,
    ToolAuth,
    TurnSettings,
)
from .templates import render_template, template_fields

__all__ = [
    "BUILTIN_INTENTS",
    "Agent",
    "AgentFileError",
    "Fallback",
    "Flow",
    "Intent",
    "KnowledgeSource",
    "LlmEndpoint",
    "OpenAIBackendConfig",
    "Problem",
    "RulesBackendConfig",
    "Slot",
    "SlotType",
    "State",
    "Tool",
    "ToolAuth",
    "TurnSettings",
    "load_agent",
    "parse_agent",
    "parse_clock",
    "render_template",
    "template_fields",
]
