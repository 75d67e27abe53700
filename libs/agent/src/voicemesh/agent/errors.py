"""Errors of an agent file: each problem names the file, the line and the field."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an agent file.

    `line` is 1-based (None when the problem is not tied to a line, e.g. a missing file);
    `path` is the dotted field path (`flow.states.confirm.on.yes`), empty for the whole file.
    """

    line: int | None
    path: str
    message: str

    def format(self, source: str) -> str:
        where = source if self.line is None else f"{source}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class AgentFileError(ValueError):
    """An agent file that cannot be used. The message has one line per problem, e.g.
    `agents/x.yaml:12: turn.endpoint_silence_ms: Input should be a valid integer`."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        if not problems:
            raise ValueError("an AgentFileError needs at least one problem")
        self.source = source
        self.problems = tuple(problems)
        super().__init__("\n".join(p.format(source) for p in self.problems))

    @property
    def line(self) -> int | None:
        """The line of the first problem."""
        return self.problems[0].line
