"""The conversation as the caller experienced it: who said what, in order.

When the caller barges in, the edge reports what they actually heard of the agent's
response; the history then keeps only that, so an LLM backend never believes it said
something the caller did not hear.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from typing import Literal

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Message:
    role: Role
    text: str
    # The turn (user) or response (assistant) this message is; empty for system messages.
    ref: str = ""
    # An assistant message cut short by the caller (its text is what they heard).
    interrupted: bool = False


class History:
    """Messages of one session, oldest first, bounded to `max_messages` (oldest dropped)."""

    def __init__(self, max_messages: int = 200) -> None:
        if max_messages < 2:
            raise ValueError("max_messages must be at least 2")
        self._messages: deque[Message] = deque(maxlen=max_messages)

    def __len__(self) -> int:
        return len(self._messages)

    @property
    def messages(self) -> tuple[Message, ...]:
        return tuple(self._messages)

    def restore(self, messages: tuple[Message, ...]) -> None:
        """Replace the messages (a snapshot's), keeping the bound."""
        self._messages.clear()
        self._messages.extend(messages)

    def add_user(self, text: str, turn_id: str = "") -> None:
        self._messages.append(Message("user", text, turn_id))

    def add_assistant(self, text: str, response_id: str) -> None:
        self._messages.append(Message("assistant", text, response_id))

    def assistant(self, response_id: str) -> Message | None:
        for message in reversed(self._messages):
            if message.role == "assistant" and message.ref == response_id:
                return message
        return None

    def heard(self, response_id: str, heard_text: str) -> bool:
        """Keep only what the caller heard of a response; drop it if they heard nothing.
        Returns False when the response is not in the history."""
        for i in range(len(self._messages) - 1, -1, -1):
            message = self._messages[i]
            if message.role == "assistant" and message.ref == response_id:
                heard = heard_text.strip()
                if heard:
                    self._messages[i] = replace(message, text=heard, interrupted=True)
                else:
                    del self._messages[i]
                return True
        return False
