"""`voicemesh agent check | new | list`: agent files before a service loads them.

- `check FILE...` runs what the reasoning service runs at start, file by file: the schema
  and its cross-checks (`load_agent`), and for an `openai` agent the LLM setup too (the
  API key variable, the tools' schemas, the knowledge files, the privacy patterns; no
  network connection). Each file gets one `FILE: ok (...)` line or its problems as
  `file:line: field: message`.
- `new` writes a commented starter agent that passes `check` as written.
- `list` loads a folder as the service does (so two files with one id or one number are
  found too) and prints one row per agent.

Exit codes: 0 all fine, 1 a bad agent file, 2 a usage error (a file that is not there).
Key values are never printed: the messages name variables and files only.
"""

from __future__ import annotations

import argparse
import os
import string
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from voicemesh.agent import Agent, AgentFileError, Problem, load_agent
from voicemesh.agent.loader import field_line
from voicemesh.agent.schema import AGENT_ID_PATTERN

PROG = "voicemesh agent"
BACKENDS = ("rules", "openai")
DEFAULT_ID = "my-agent"


# -- check ------------------------------------------------------------------------------------


def check_file(path: Path, environ: Mapping[str, str]) -> tuple[bool, list[str]]:
    """Whether the agent file is fine, and the lines to print for it."""
    from voicemesh.reasoning.backends import AgentSetupError, check_llm_setup

    try:
        agent = load_agent(path)
    except AgentFileError as exc:
        return False, str(exc).splitlines()
    try:
        setup = check_llm_setup(agent, path, environ)
    except AgentSetupError as exc:
        return False, [Problem(field_line(path, exc.loc), exc.field, exc.detail).format(str(path))]
    chunks = setup.knowledge_chunks if setup is not None else 0
    return True, [f"{path}: ok ({summary(agent, chunks)})"]


def summary(agent: Agent, knowledge_chunks: int) -> str:
    """`agent restaurant, 7 states, 0 tools, 0 knowledge chunks`."""
    states = len(agent.flow.states) if agent.flow is not None else 0
    return (
        f"agent {agent.id}, {_count(states, 'state')}, {_count(len(agent.tools), 'tool')}, "
        f"{_count(knowledge_chunks, 'knowledge chunk')}"
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def cmd_check(args: argparse.Namespace) -> int:
    paths: list[Path] = args.files
    missing = [p for p in paths if not p.is_file()]
    for path in missing:
        _error(f"no such file: {path}" if not path.exists() else f"not a file: {path}")
    if missing:
        return 2
    all_ok = True
    for path in paths:
        ok, lines = check_file(path, os.environ)
        all_ok = all_ok and ok
        for line in lines:
            print(line)
    return 0 if all_ok else 1


# -- new --------------------------------------------------------------------------------------


def starter(backend: str, agent_id: str = DEFAULT_ID) -> str:
    """A commented starter agent for `backend` (rules or openai) that passes `check`."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; backends: {', '.join(BACKENDS)}")
    if not AGENT_ID_PATTERN.fullmatch(agent_id):
        raise ValueError(
            f"{agent_id!r} is not a valid agent id: use lowercase letters, digits, '-' and '_' "
            "(like bella-vista)"
        )
    name = " ".join(word.capitalize() for word in agent_id.replace("_", "-").split("-") if word)
    rules = backend == "rules"
    parts = [
        _HEAD,
        _PROMPT_RULES if rules else _PROMPT_OPENAI,
        _TURN,
        _FLOW if rules else _NO_FLOW,
        _FALLBACK_RULES if rules else _FALLBACK_OPENAI,
        _PRIVACY,
        _NUMBERS,
        _KNOWLEDGE,
        _TOOLS,
        _BACKEND_RULES if rules else _BACKEND_OPENAI,
    ]
    written_id = f'"{agent_id}"' if agent_id[0].isdigit() else agent_id  # `id: 42` would be a number
    return string.Template("\n".join(parts)).substitute(id=written_id, name=name)


def cmd_new(args: argparse.Namespace) -> int:
    output: Path | None = args.output
    agent_id = args.id
    if agent_id is None:
        stem = output.stem if output is not None else ""
        agent_id = stem if AGENT_ID_PATTERN.fullmatch(stem) else DEFAULT_ID
    try:
        text = starter(args.backend, agent_id)
    except ValueError as exc:
        return _error(str(exc), 2)
    if output is None:
        sys.stdout.write(text)
        return 0
    if output.exists() and not args.force:
        return _error(f"{output} already exists; pass --force to overwrite it", 1)
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        return _error(f"cannot write {output}: {exc.strerror or exc}", 1)
    print(
        f"wrote {output} (agent {agent_id}, {args.backend} backend); check it with: voicemesh agent check {output}"
    )
    return 0


# -- list -------------------------------------------------------------------------------------


def agent_rows(catalog_dir: Path, default_agent: str) -> list[tuple[str, str, str, str, str]]:
    """(id, name, backend, numbers, file) per agent of the folder, the default id marked
    with `*`. Raises AgentFileError and CatalogError as the service would at start."""
    from voicemesh.reasoning.catalog import AgentCatalog

    catalog = AgentCatalog(catalog_dir, default_agent)
    rows = []
    for agent_id, agent in catalog.agents.items():
        mark = "*" if agent_id == catalog.default_agent else ""
        numbers = ", ".join(agent.numbers) or "-"
        rows.append((agent_id + mark, agent.name, agent.backend.kind, numbers, str(catalog.source(agent_id))))
    return rows


def format_rows(rows: Sequence[tuple[str, ...]]) -> list[str]:
    table = [("ID", "NAME", "BACKEND", "NUMBERS", "FILE"), *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    return ["  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]]) for row in table]


def cmd_list(args: argparse.Namespace) -> int:
    from voicemesh.reasoning.catalog import CatalogError

    folder: Path = args.dir
    if not folder.is_dir():
        return _error(f"agents folder {folder} does not exist", 2)
    try:
        rows = agent_rows(folder, args.default_agent)
    except AgentFileError as exc:
        print(exc)
        return 1
    except CatalogError as exc:
        hint = " (set --default-agent or VOICEMESH_DEFAULT_AGENT)" if "default agent" in str(exc) else ""
        return _error(f"{exc}{hint}", 1)
    for line in format_rows(rows):
        print(line)
    print("* the default agent: calls that name no agent and dial none of the numbers reach it")
    return 0


# -- the parser -------------------------------------------------------------------------------


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "agent",
        help="check, create or list agent files",
        description="Work with agent YAML files: check them as the reasoning service does, "
        "write a commented starter, list a folder's agents.",
    )
    commands = p.add_subparsers(dest="agent_command", required=True, metavar="SUBCOMMAND")

    check = commands.add_parser(
        "check",
        help="validate agent files (schema, cross-checks, and an openai agent's LLM setup)",
        description="Validate each agent file as the reasoning service does at start: one "
        "'FILE: ok (...)' line, or its problems as 'file:line: field: message'. For an openai "
        "agent the API key variables, tools and knowledge are checked too (no network). "
        "Exit 0 when all are fine, 1 when any is bad, 2 for a missing file.",
    )
    check.add_argument("files", nargs="+", type=Path, metavar="FILE")
    check.set_defaults(func=cmd_check)

    new = commands.add_parser(
        "new",
        help="write a commented starter agent",
        description="Write a starter agent YAML with a comment on every key (to stdout, or to "
        "FILE with -o). It passes `voicemesh agent check` as written.",
    )
    new.add_argument("--backend", choices=BACKENDS, default="rules", help="the engine (default: rules)")
    new.add_argument(
        "--id", help=f"the agent id (default: FILE's name if it is a valid id, else {DEFAULT_ID})"
    )
    new.add_argument("-o", "--output", type=Path, metavar="FILE", help="write to FILE instead of stdout")
    new.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    new.set_defaults(func=cmd_new)

    ls = commands.add_parser(
        "list",
        help="list the agents of a folder",
        description="Load every agent file of a folder as the reasoning service does and print "
        "id, name, backend, numbers and file per agent.",
    )
    ls.add_argument(
        "--dir",
        type=Path,
        default=Path(os.environ.get("VOICEMESH_AGENTS_DIR") or "agents"),
        help="folder of agent YAML files (default: $VOICEMESH_AGENTS_DIR, else agents)",
    )
    ls.add_argument(
        "--default-agent",
        default=os.environ.get("VOICEMESH_DEFAULT_AGENT") or "restaurant",
        metavar="ID",
        help="the service's default agent (default: $VOICEMESH_DEFAULT_AGENT, else restaurant)",
    )
    ls.set_defaults(func=cmd_list)


def _error(message: str, code: int = 2) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


# -- the starter agent, in sections -----------------------------------------------------------
# `$id` and `$name` are filled in; every other `$` would have to be written `$$`.

_HEAD = r"""# $name: a voicemesh agent. Check it with `voicemesh agent check FILE`; every field is
# documented in docs/agents.md.

# How calls name the agent: lowercase letters, digits, '-' and '_'. Unique in the agents
# folder; by convention the file name.
id: $id
# The display name: sent to the edge and shown in events.
name: "$name"
# One line for people reading the catalog.
description: "Answers the phone for $name."
# The language code (en, en-US, de). The rules backend understands English.
language: en
# The tts voice id.
voice: en_US-joe-medium
# The IANA time zone in which "today" and "tomorrow" are meant (default: the server's).
# timezone: Europe/Rome
"""

_PROMPT_RULES = r"""# The system prompt of an LLM backend. The rules backend does not use it; it is here for
# the day you switch.
prompt: |
  You are the phone assistant of $name. Keep every reply to one or two short sentences.
  Never use lists or markdown: everything you write is spoken.

# Said when the call starts, before the start state speaks. Like every text the agent
# says it is a template: it may name slots as {slot_name}.
greeting: "Hello, thanks for calling $name."
"""

_PROMPT_OPENAI = r"""# The system prompt: who the agent is and what it does. Everything it writes is spoken,
# so ask for short sentences and no lists or markdown.
prompt: |
  You are the phone assistant of $name. You answer questions about the opening hours.
  Keep every reply to one or two short sentences. Never use lists or markdown:
  everything you write is spoken.

# Said when the call starts, before the model's first reply.
greeting: "Hello, thanks for calling $name. How can I help?"
"""

_TURN = r"""# Turn-taking at the edge.
turn:
  # Silence after the caller's last word that ends their turn (200-10000 ms). Lower
  # answers sooner but may cut slow speakers off.
  endpoint_silence_ms: 500
  # Whether the caller can interrupt the agent by speaking.
  allow_barge_in: true
  # Speech over the agent pauses it; this many words (not "uh-huh", "okay", nor the
  # agent's own echo) stop it, fewer let it go on. 0: any speech stops it at once.
  barge_in_min_words: 1
  # After this long without speech the agent says fallback.no_input and asks again
  # (1000-600000 ms).
  idle_timeout_ms: 15000
"""

_FLOW = r"""# What the agent finds out, by name; texts use the values as {name}.
slots:
  name:
    # number, time, date, name, text, yes_no or choice.
    type: name
    # The question that asks for it.
    prompt: "May I have your name, please?"
    # Asked instead of the prompt after an answer that was not understood.
    reprompt: "Sorry, could you tell me your name?"

# What a caller may want, by name: keywords, examples or patterns (regular expressions).
# yes and no are built in.
intents:
  goodbye:
    keywords: [bye, goodbye, never mind, that's all]

# The conversation, as a small state machine.
flow:
  # The first state.
  start: ask_name
  # Transitions valid in every state: intent: state.
  on:
    goodbye: bye
  states:
    ask_name:
      # The slots to fill here, asked in turn; then the flow goes to `next`.
      collect: [name]
      next: bye
    bye:
      # Said on entering the state.
      say: "Thank you for calling $name. Goodbye!"
      # hangup, or transfer (with transfer_to: a number or SIP URI), once `say` was heard.
      action: hangup
"""

_NO_FLOW = r"""# slots, intents and flow drive the rules backend; an LLM agent follows its prompt and
# needs none of them. An LLM agent may also have a flow: the flow leads, and a state with
# `llm: "instructions"` hands one caller turn to the model and takes the call back (see
# "Flows that hand a turn to the LLM" in docs/agents.md).
"""

_FALLBACK_RULES = r"""# What the agent says when it did not understand, heard nothing, or cannot answer.
fallback:
  # Said before the question is asked again.
  not_understood: "Sorry, I didn't catch that."
  # Said when a turn arrives with no words (see turn.idle_timeout_ms).
  no_input: "Are you still there?"
  # Misses in a row before after_max_misses (1-20).
  max_misses: 3
  # A state to go to after max_misses misses in a row; without it the agent keeps asking.
  # after_max_misses: bye
  # Said when an LLM backend (and every fallback endpoint) fails to answer a turn.
  unavailable: "Sorry, I'm having trouble answering right now. Could you say that again?"
"""

_FALLBACK_OPENAI = r"""# What the agent says when it heard nothing, or cannot answer.
fallback:
  # Said before the question is asked again (the rules backend; an LLM answers by itself).
  not_understood: "Sorry, I didn't catch that."
  # Said when a turn arrives with no words (see turn.idle_timeout_ms).
  no_input: "Are you still there?"
  # Misses in a row before after_max_misses (1-20); after_max_misses names a flow state,
  # so it is for agents with a flow.
  max_misses: 3
  # With a flow: a turn the flow does not understand goes to the model instead of
  # not_understood, and the flow then asks its question again.
  to_llm: false
  # Said when the model (and every backend.fallback endpoint) fails to answer a turn.
  unavailable: "Sorry, I'm having trouble answering right now. Could you say that again?"
"""

_PRIVACY = r"""# Personal data the caller says (phone numbers, e-mail addresses, payment cards, national
# ID numbers) becomes placeholders like [PHONE_1] before any text goes to an LLM; when the
# agent says a placeholder back, the caller hears the value. The rules backend sends
# nothing anywhere, so this is for LLM backends.
privacy:
  # false sends the caller's words to the LLM as they were said.
  redact: true
  # The built-in kinds to redact: phone, email, card, ssn (US), nino (UK), sin (Canada).
  kinds: [phone, email, card, ssn, nino, sin]
  # More kinds, name: regular expression (in single quotes, so \b stays a backslash),
  # e.g. {booking_ref: '\bBK-\d{6}\b'}; its placeholders are [BOOKING_REF_1], ...
  patterns: {}
"""

_NUMBERS = r"""# The numbers that reach this agent when a call names none, in E.164 form and in quotes
# (unquoted, YAML reads +12125550187 as an integer), e.g. ["+12125550187"]. A number
# belongs to one agent of the folder.
numbers: []
"""

_KNOWLEDGE = r"""# Documents an LLM backend retrieves from: each entry has a `path` (Markdown, text or PDF,
# relative to this file; it must exist) or inline `text`, and an optional `name`.
knowledge:
  - name: opening hours
    text: Open Monday to Friday from 9 AM to 5 PM. Closed at weekends.
  # - path: faq.md
"""

_TOOLS = r"""# HTTP tools an LLM backend may call. To add one, replace `tools: []` with a list like:
# tools:
#   - name: check_availability
#     description: Whether a table is free on a day at a time.
#     url: https://booking.example.com/availability
#     method: POST
#     # The arguments, as a JSON schema of type object.
#     parameters:
#       type: object
#       properties:
#         date: {type: string, description: "the day, YYYY-MM-DD"}
#         time: {type: string, description: "the time, HH:MM (24-hour)"}
#       required: [date, time]
#     timeout_ms: 5000
#     # A header with a secret from an environment variable (the file holds only its name).
#     auth: {header: Authorization, env: BOOKING_API_TOKEN, scheme: Bearer}
#     # Said if the tool has not answered within filler_after_ms.
#     filler: "One moment while I check."
#     filler_after_ms: 400
tools: []
"""

_BACKEND_RULES = r"""# Which engine answers: rules (the flow above, no model server needed) or openai (an
# OpenAI-compatible chat endpoint; see `voicemesh agent new --backend openai`).
backend:
  kind: rules
"""

_BACKEND_OPENAI = r"""# Which engine answers: an OpenAI-compatible streaming chat endpoint (vLLM, Ollama,
# llama.cpp's server, a hosted API).
backend:
  kind: openai
  # The endpoint as OpenAI clients take it, ending in /v1.
  base_url: http://127.0.0.1:8000/v1
  # The model name the server serves (vLLM: its --served-model-name; Ollama: llama3.2, ...).
  model: my-model
  # The *name* of the environment variable holding the API key (keys never go in agent
  # files). Uncomment it only for a server that needs a key: while the variable is unset
  # the agent does not start and `voicemesh agent check` fails.
  # api_key_env: LLM_API_KEY
  # Sampling temperature (0-2), and the longest reply in tokens.
  temperature: 0.3
  max_tokens: 200
  # Give up on an endpoint whose first token is later than this, or whose reply is longer.
  first_token_timeout_ms: 4000
  response_timeout_ms: 20000
  # Further tries of the same endpoint after a transient error (connect, 429, 5xx, timeout).
  retries: 1
  # Endpoints tried in order when the one above fails for good: base_url, model, api_key_env.
  fallback: []
  # The most recent messages sent as context.
  history_messages: 20
"""
