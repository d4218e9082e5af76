"""What a tool is: an async function with a JSON-schema'd input."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from core.inbound import ConversationRef


@dataclass(frozen=True, slots=True)
class ToolContext:
    """Who asked and where, for tools that care (none of the built-ins leak it anywhere)."""

    ref: ConversationRef
    user_id: str


ToolHandler = Callable[[dict[str, Any], ToolContext], Awaitable[str]]


class ToolError(Exception):
    """Raised by a tool for an expected failure; the message goes back to the model as an error result."""


@dataclass(frozen=True, slots=True)
class Tool:
    name: str  # ^[a-zA-Z0-9_-]{1,64}$ (both providers accept this)
    description: str
    input_schema: dict[str, Any]
    handler: ToolHandler = field(compare=False)
    timeout_s: float = 30.0
    # True when the tool only reads (safe to run again, e.g. when a turn is resumed after a crash);
    # a tool that acts on anything (posts, writes, orders) must leave it False.
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    output: str
    is_error: bool
    duration_s: float
