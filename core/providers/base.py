"""The provider seam: one streaming call to a model, in provider-neutral terms."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.conversation import Message


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ProviderRequest:
    model: str  # the provider's own model name (no "anthropic:" prefix)
    system: str
    messages: Sequence[Message]
    tools: Sequence[ToolSpec] = ()
    max_tokens: int = 4096


@dataclass(frozen=True, slots=True)
class TextChunk:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallChunk:
    """A complete tool call. `input` is None when the model's arguments were not a JSON object."""

    id: str
    name: str
    input: dict[str, Any] | None
    raw_arguments: str = ""


@dataclass(frozen=True, slots=True)
class UsageChunk:
    input_tokens: int = 0  # uncached input tokens
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


@dataclass(frozen=True, slots=True)
class StopChunk:
    reason: str  # "end_turn", "tool_use", "max_tokens", ...


ProviderChunk = TextChunk | ToolCallChunk | UsageChunk | StopChunk


def append_text(out: list[TextChunk] | list[ProviderChunk], text: str) -> None:
    """Add `text` to the chunks decoded from one network read, merged into a text chunk just before.
    A read holds one token at light load but many when the bot is busy, and each chunk costs every
    layer above (agent, router, presenter) the same: merging what arrived together keeps the cost per
    read, not per token, exactly when it matters."""
    if out and type(last := out[-1]) is TextChunk:
        out[-1] = TextChunk(last.text + text)
    else:
        out.append(TextChunk(text))


@dataclass
class ProviderError(Exception):
    """A failed provider call. `message` is safe to show a user (no keys, no request bodies)."""

    message: str
    retryable: bool = False
    retry_after: float | None = None
    status: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message


class Provider(Protocol):
    name: str

    def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderChunk]:
        """Stream one model call. Raises ProviderError (never an SDK exception) on failure."""
        ...

    async def aclose(self) -> None: ...
