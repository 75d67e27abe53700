"""Load an agent file: YAML -> node tree (with line marks) -> `Agent`, with every problem
reported as `file:line: field.path: message`.

YAML is read with YAML 1.2-style scalars: only `true`/`false` are booleans (so `yes:`,
`no:` and `on:` stay words — they are intent names in a flow) and `19:30` stays a string
(YAML 1.1 would read it as the base-60 number 1170).
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Sequence
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .checks import Loc, check_agent
from .errors import AgentFileError, Problem
from .schema import Agent


class _AgentYamlLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema scalars."""


_AgentYamlLoader.yaml_implicit_resolvers = {}
for _tag, _pattern, _first in (
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("int", r"^[-+]?(?:0|[1-9][0-9_]*)$", "-+0123456789"),
    (
        "float",
        r"^(?:[-+]?(?:[0-9][0-9_]*)?\.[0-9_]+(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+0123456789.",
    ),
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("merge", r"^(?:<<)$", "<"),
):
    _AgentYamlLoader.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(_pattern), list(_first))


def load_agent(path: str | Path) -> Agent:
    """Load and validate one agent file. Raises AgentFileError naming the file and line."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AgentFileError(source, [Problem(None, "", "no such agent file")]) from None
    except UnicodeDecodeError:
        raise AgentFileError(source, [Problem(None, "", "not UTF-8 text")]) from None
    except OSError as exc:
        raise AgentFileError(source, [Problem(None, "", f"cannot read: {exc.strerror}")]) from None
    return parse_agent(text, source, base_dir=Path(path).parent)


def parse_agent(text: str, source_name: str, base_dir: Path | None = None) -> Agent:
    """Validate agent YAML `text`; `source_name` names it in errors. `base_dir` (the file's
    folder) is where knowledge paths are looked up; None skips that check."""
    root, data = _compose(text, source_name)
    problems = _duplicate_keys(root)
    if problems:
        raise AgentFileError(source_name, problems)
    try:
        agent = Agent.model_validate(data)
    except ValidationError as exc:
        raise AgentFileError(source_name, _pydantic_problems(root, exc)) from None
    found = check_agent(agent, base_dir)
    if found:
        raise AgentFileError(source_name, _sorted([_problem(root, loc, msg) for loc, msg in found]))
    return agent


def _compose(text: str, source: str) -> tuple[Node, object]:
    loader = _AgentYamlLoader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        reason = " ".join(p for p in (exc.context, exc.problem) if p)
        raise AgentFileError(source, [Problem(line, "", f"invalid YAML: {reason}")]) from None
    except yaml.YAMLError as exc:
        raise AgentFileError(source, [Problem(None, "", f"invalid YAML: {exc}")]) from None
    finally:
        loader.dispose()
    if root is None:
        raise AgentFileError(source, [Problem(None, "", "the file is empty; an agent needs id and name")])
    if not isinstance(root, MappingNode) or not isinstance(data, dict):
        raise AgentFileError(
            source,
            [Problem(root.start_mark.line + 1, "", "an agent file is a YAML mapping of `key: value` lines")],
        )
    return root, data


def _duplicate_keys(root: Node) -> list[Problem]:
    problems: list[Problem] = []

    def walk(node: Node, path: Loc) -> None:
        if isinstance(node, MappingNode):
            first: dict[str, int] = {}
            for key, value in node.value:
                name = key.value if isinstance(key, ScalarNode) else str(key.value)
                line = key.start_mark.line + 1
                if name in first and name != "<<":
                    problems.append(
                        Problem(line, _display((*path, name)), f"duplicate key (first on line {first[name]})")
                    )
                first.setdefault(name, line)
                walk(value, (*path, name))
        elif isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, i))

    walk(root, ())
    return problems


def _child(node: Node, item: str | int) -> tuple[Node | None, Node] | None:
    if isinstance(node, MappingNode):
        for key, value in node.value:
            if isinstance(key, ScalarNode) and key.value == str(item):
                return key, value
    elif isinstance(node, SequenceNode) and isinstance(item, int) and 0 <= item < len(node.value):
        return None, node.value[item]
    return None


def _locate(root: Node, loc: Sequence[str | int]) -> tuple[int, list[str | int], Node]:
    """The line of the deepest node `loc` reaches, the loc items that matched a node, and
    that node. Items without a node (a union member's tag, a missing key) are skipped."""
    node, line, matched = root, root.start_mark.line + 1, []
    for item in loc:
        found = _child(node, item)
        if found is None:
            continue
        key, value = found
        line = (key or value).start_mark.line + 1
        node = value
        matched.append(item)
    return line, matched, node


def field_line(path: Path, loc: Sequence[str | int]) -> int | None:
    """The line of the field `loc` in the agent file at `path` (of the deepest part of it
    that is there), for problems found after loading (an LLM setup check); None when the
    file cannot be read or parsed."""
    try:
        root, _ = _compose(path.read_text(encoding="utf-8"), str(path))
    except (OSError, UnicodeDecodeError, AgentFileError):
        return None
    return _locate(root, loc)[0]


def _display(loc: Sequence[str | int]) -> str:
    out = ""
    for item in loc:
        out += f"[{item}]" if isinstance(item, int) else (f".{item}" if out else str(item))
    return out


def _problem(root: Node, loc: Loc, message: str) -> Problem:
    line, _, _ = _locate(root, loc)
    return Problem(line, _display(loc), message)


def _pydantic_problems(root: Node, exc: ValidationError) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[tuple[int, str]] = set()
    for error in exc.errors():
        loc = tuple(error["loc"])
        line, matched, _ = _locate(root, loc)
        path = list(matched)
        kind = error["type"]
        message = str(error["msg"]).removeprefix("Value error, ")
        if kind == "missing":
            path.append(loc[-1])
            message = "required, but missing"
        elif kind in ("model_type", "model_attributes_type", "dict_type"):
            message = "should be a mapping of `key: value` lines"
        elif kind == "list_type":
            message = "should be a list, like [a, b] or lines starting with '- '"
        elif kind == "extra_forbidden":
            message = _unknown_key_message(str(loc[-1]), _allowed_keys(loc[:-1]))
        key = (line, _display(path))
        if key in seen:
            continue
        seen.add(key)
        problems.append(Problem(line, _display(path), message))
    return _sorted(problems)


def _sorted(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.line or 0, p.path))


def _unknown_key_message(key: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1) or [
        a for a in allowed if len(key) >= 3 and (a.startswith(key) or key.startswith(a))
    ]
    if close:
        return f"unknown key; did you mean {close[0]!r}?"
    return f"unknown key; allowed: {', '.join(allowed)}" if allowed else "unknown key"


def _allowed_keys(loc: Sequence[str | int]) -> list[str]:
    """The field names of the model that `loc` points into (best effort, for messages)."""
    current: object = Agent
    for item in loc:
        current = _step(current, item)
        if current is None:
            return []
    model = _model_of(current, None)
    return list(model.model_fields) if model is not None else []


def _step(annotation: object, item: str | int) -> object | None:
    model = _model_of(annotation, item)
    if model is not None:
        field = model.model_fields.get(str(item))
        if field is not None:
            return field.annotation
        return model if _is_tag(model, item) else None
    for arg in _members(annotation):
        origin = typing.get_origin(arg)
        if origin is dict:
            return typing.get_args(arg)[1]
        if origin is list:
            return typing.get_args(arg)[0]
    return None


def _members(annotation: object) -> list[object]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    if origin is typing.Union or isinstance(annotation, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _members(arg)]
    return [annotation]


def _model_of(annotation: object, item: str | int | None) -> type[BaseModel] | None:
    models = [m for m in _members(annotation) if isinstance(m, type) and issubclass(m, BaseModel)]
    for model in models:
        if item is None or str(item) in model.model_fields or _is_tag(model, item):
            return model
    return models[0] if models else None


def _is_tag(model: type[BaseModel], item: str | int) -> bool:
    kind = model.model_fields.get("kind")
    return kind is not None and item in typing.get_args(kind.annotation)
