"""The agent file's schema: one YAML file describes one agent (voice, timing, greeting,
slots, intents, the conversation flow, fallbacks, and what the LLM backend will use).

Field-level rules live here; rules that relate fields to each other (a state naming an
unknown slot, ...) live in `checks.py` so every problem can be reported with its line.
docs/agents.md documents every field; keep the two in step.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*")
AGENT_ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]*")
LANGUAGE_PATTERN = re.compile(r"[a-z]{2,3}(-[A-Z]{2})?")

# Intents every agent understands without declaring them (an agent may add keywords to them).
BUILTIN_INTENTS = ("yes", "no")


def _check_name(value: str) -> str:
    if not NAME_PATTERN.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid name: use lowercase letters, digits and underscores, "
            "starting with a letter (like party_size)"
        )
    return value


def _check_agent_id(value: str) -> str:
    if not AGENT_ID_PATTERN.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid agent id: use lowercase letters, digits, '-' and '_' "
            "(like bella-vista)"
        )
    return value


def _check_language(value: str) -> str:
    if not LANGUAGE_PATTERN.fullmatch(value):
        raise ValueError(f"{value!r} is not a language code like 'en' or 'en-US'")
    return value


def _check_timezone(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}: use an IANA name like Europe/Rome") from None
    return value


def _check_url(value: str) -> str:
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
        raise ValueError(f"{value!r} is not an http:// or https:// URL")
    return value


def _backend_kind(value: Any) -> Any:
    if isinstance(value, dict) and "kind" not in value:
        raise ValueError("backend needs `kind`: rules or openai")
    return value


Name = Annotated[str, AfterValidator(_check_name)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Url = Annotated[str, AfterValidator(_check_url)]
SlotType = Literal["number", "time", "date", "name", "text", "yes_no", "choice"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SmartTurnSettings(_Model):
    """The end-of-turn model (Smart Turn v3.2 at the edge): asked once, `check_after_ms`
    into a pause, whether the caller's utterance reads complete; at `min_probability` or
    above the turn ends then instead of after `endpoint_silence_ms`. It only ever shortens
    the wait (an edge without the model ends turns on silence alone)."""

    # Off unless an agent asks: with it on, callers who pause before "please" were cut off.
    enabled: bool = False
    min_probability: float = Field(0.8, ge=0.5, le=1.0)
    check_after_ms: int = Field(200, ge=100, le=2_000)


FILLER_MAX_CHARS = 80


def _check_fillers(phrases: list[str]) -> list[str]:
    seen: set[str] = set()
    for phrase in phrases:
        if len(phrase) > FILLER_MAX_CHARS:
            raise ValueError(
                f"filler {phrase[:30]!r}... is {len(phrase)} characters: keep a filler short "
                f'(at most {FILLER_MAX_CHARS}), like "Let me check that."'
            )
        if phrase.casefold() in seen:
            raise ValueError(f"filler {phrase!r} is listed twice")
        seen.add(phrase.casefold())
    return phrases


class FillerSettings(_Model):
    """A short phrase ("Let me check that.") the edge plays when no reply audio is ready
    `after_ms` after the caller's turn ended; the reply follows it without overlap. The
    phrases are synthesized once per edge process, in the agent's voice, and rotate (never
    the same one twice in a row). The filler is not part of the conversation: reasoning
    never hears it as something the agent said."""

    after_ms: int = Field(1_000, ge=200, le=10_000)
    phrases: Annotated[list[Text], AfterValidator(_check_fillers)] = Field(min_length=1, max_length=10)


class TurnSettings(_Model):
    """Turn-taking at the edge: when the caller's turn ends, barge-in, the idle nudge (an
    empty turn after `idle_timeout_ms` of silence; see `Fallback` for what repeated silence does)."""

    endpoint_silence_ms: int = Field(500, ge=200, le=10_000)
    allow_barge_in: bool = True
    idle_timeout_ms: int = Field(15_000, ge=1_000, le=600_000)
    # Speech over the agent for this long pauses its audio while its words are judged.
    barge_in_min_speech_ms: int = Field(100, ge=40, le=2_000)
    # Words (not backchannels, not the agent's own echo) that make it a barge-in; 0: any
    # speech over the agent is one, at once.
    barge_in_min_words: int = Field(1, ge=0, le=10)
    # Words that never interrupt; unset: the edge's English list ("uh-huh", "okay", "yeah"...).
    backchannels: list[Text] | None = None
    # Caller audio this many dB below the agent's own is taken for its echo; 0 turns it off.
    echo_margin_db: float = Field(25.0, ge=0.0, le=60.0)
    # End a turn early when the edge's end-of-turn model reads the utterance complete.
    smart_turn: SmartTurnSettings = SmartTurnSettings()
    # Said when the reply is late (no reply audio `after_ms` after the turn ended); unset: off.
    filler: FillerSettings | None = None


class Slot(_Model):
    """One piece of information the agent collects (party size, a date, a name, ...)."""

    type: SlotType
    prompt: Text
    reprompt: Text | None = None
    invalid: Text | None = None
    aliases: list[Text] = []
    choices: list[Text] | None = None
    min: int | float | str | None = None
    max: int | float | str | None = None


class Intent(_Model):
    """Something the caller may want, recognised by keywords, example phrases or regexes."""

    keywords: list[Text] = []
    examples: list[Text] = []
    patterns: list[Text] = []


class State(_Model):
    """One step of the flow."""

    say: Text | None = None
    collect: list[Name] = []
    change: list[Name] = []
    on: dict[Name, Name] = {}
    next: Name | None = None
    action: Literal["hangup", "transfer"] | None = None
    transfer_to: Text | None = None
    reprompt: Text | None = None
    # Hand the caller's turn to the LLM with these instructions ("answer from the menu"),
    # then take it back: go `next`, or without `next` back to the state the flow was in.
    llm: Text | None = None
    # Call this HTTP tool (after `say`) with the collected slots as its arguments, by
    # parameter name; then go `next` when it answered, `on_failure` when it did not.
    call: Name | None = None
    on_failure: Name | None = None


class Flow(_Model):
    """The conversation as a small state machine."""

    start: Name
    on: dict[Name, Name] = {}
    states: dict[Name, State] = Field(min_length=1)


class Fallback(_Model):
    """What the agent says when it did not understand, or heard nothing."""

    not_understood: Text = "Sorry, I didn't catch that."
    no_input: Text = "Are you still there?"
    max_misses: int = Field(3, ge=1, le=20)
    after_max_misses: Name | None = None
    # A turn the flow does not understand goes to the LLM instead of `not_understood`
    # (an agent with a flow and the openai backend); the flow then asks its question again.
    to_llm: bool = False
    # Said when the LLM backend (and every fallback endpoint) fails to answer a turn.
    unavailable: Text = "Sorry, I'm having trouble answering right now. Could you say that again?"


class KnowledgeSource(_Model):
    """A document the LLM backend may retrieve from (RAG). The rule engine ignores it."""

    name: Text | None = None
    path: Text | None = None
    text: Text | None = None


EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Z_][A-Z0-9_]*$")]


class ToolAuth(_Model):
    """A header the tool request carries, its secret read from the environment (never the file)."""

    header: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9-]+$")] = "Authorization"
    env: EnvName
    # Written before the secret, e.g. "Bearer" gives `Authorization: Bearer <secret>`.
    scheme: str = "Bearer"


class Tool(_Model):
    """An HTTP tool the LLM backend may call. The rule engine ignores it."""

    name: Name
    description: Text
    url: Url
    method: Literal["GET", "POST"] = "POST"
    parameters: dict[str, Any] = {}
    timeout_ms: int = Field(5_000, ge=100, le=60_000)
    auth: ToolAuth | None = None
    # Said while the tool runs, if it has not answered within `filler_after_ms`.
    filler: Text | None = None
    filler_after_ms: int = Field(400, ge=0, le=10_000)
    # Fields of the tool's JSON answer that a flow may say after calling it, as {field}.
    answer: list[Name] = []


PiiKindName = Literal["phone", "email", "card", "ssn", "nino", "sin"]


class Privacy(_Model):
    """Redaction of personal data: before text leaves for an LLM (typed placeholders the
    reply is restored from), and in log lines and session events (a one-way mask)."""

    redact: bool = True
    # The built-in kinds to redact (default: all of them).
    kinds: list[PiiKindName] = ["phone", "email", "card", "ssn", "nino", "sin"]
    # More kinds: name -> regular expression, e.g. {booking_ref: "\\bBK-\\d{6}\\b"}.
    patterns: dict[Name, Text] = {}


E164_PATTERN = re.compile(r"\+[1-9][0-9]{7,14}")


def _check_phone_number(value: Any) -> Any:
    # Unquoted, `+12125550187` is an integer to YAML: the `+` is gone before pydantic sees it.
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(
            f'write the number in quotes, like "+{value}" (unquoted, YAML reads it as an integer)'
        )
    if isinstance(value, str) and not E164_PATTERN.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a number in E.164 form: '+', the country code and the number, "
            "digits only (like +12125550187)"
        )
    return value


# A number callers dial to reach the agent, in E.164 form (+ and 8-15 digits).
PhoneNumber = Annotated[str, BeforeValidator(_check_phone_number)]


class RulesBackendConfig(_Model):
    """The embedded rule/flow engine: needs no model server."""

    kind: Literal["rules"] = "rules"


class LlmEndpoint(_Model):
    """Where an OpenAI-compatible model is served, and how to authenticate to it."""

    base_url: Url
    model: Text
    # The *name* of the variable (or file) holding the API key: keys never go in agent files.
    api_key_env: EnvName | None = None
    api_key_file: Text | None = None


class OpenAIBackendConfig(LlmEndpoint):
    """Any OpenAI-compatible streaming chat endpoint (vLLM, Ollama, llama.cpp server, ...)."""

    kind: Literal["openai"]
    temperature: float = Field(0.3, ge=0.0, le=2.0)
    max_tokens: int = Field(200, ge=1, le=4_096)
    # Give up on an endpoint when its first token is later than this, or the reply longer.
    first_token_timeout_ms: int = Field(4_000, ge=100, le=120_000)
    response_timeout_ms: int = Field(20_000, ge=500, le=600_000)
    # Further tries of the same endpoint after a transient error (connect, 429, 5xx, timeout).
    retries: int = Field(1, ge=0, le=5)
    # Tried in order when the endpoint above fails for good.
    fallback: list[LlmEndpoint] = []
    # The most recent messages sent as context (older ones are left out).
    history_messages: int = Field(20, ge=2, le=200)
    # Offer the model the agent's tools and the built-in actions (hang up, transfer, DTMF).
    # Turn off for a server that cannot stream a tool choice (llama-cpp-python's server).
    offer_tools: bool = True


BackendConfig = Annotated[
    RulesBackendConfig | OpenAIBackendConfig,
    BeforeValidator(_backend_kind),
    Field(discriminator="kind"),
]


class Agent(_Model):
    """One agent, as loaded from one YAML file."""

    id: Annotated[str, AfterValidator(_check_agent_id)]
    name: Text
    description: str = ""
    language: Annotated[str, AfterValidator(_check_language)] = "en"
    voice: Text = "en_US-joe-medium"
    timezone: Annotated[str | None, AfterValidator(_check_timezone)] = None
    prompt: str = ""
    greeting: str = ""
    turn: TurnSettings = TurnSettings()
    slots: dict[Name, Slot] = {}
    intents: dict[Name, Intent] = {}
    flow: Flow | None = None
    fallback: Fallback = Fallback()
    knowledge: list[KnowledgeSource] = []
    tools: list[Tool] = []
    backend: BackendConfig = RulesBackendConfig()
    privacy: Privacy = Privacy()
    # Calls to these numbers reach this agent (the SIP To, Twilio's `to` parameter).
    numbers: list[PhoneNumber] = []

    def intent_names(self) -> list[str]:
        """Every intent a transition may name: the built-in ones and the declared ones."""
        return [*BUILTIN_INTENTS, *(n for n in self.intents if n not in BUILTIN_INTENTS)]
