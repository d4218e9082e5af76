"""Provider-neutral conversation model.

A session's history is a list of `Message`s made of typed blocks, so the same history can be sent to
Anthropic or OpenAI models and a session can switch between them mid-conversation. Messages are
immutable; providers cache their wire form per message (see `Message.cache`) so preparing turn N
does not convert turns 1..N-1 again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["user", "assistant"]


@dataclass(frozen=True, slots=True)
class TextBlock:
    text: str


@dataclass(frozen=True, slots=True)
class ImageBlock:
    """An image, either inline (base64 data) or by URL."""

    media_type: str
    data_b64: str | None = None
    url: str | None = None


@dataclass(frozen=True, slots=True)
class ToolUseBlock:
    id: str
    name: str
    input: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolResultBlock:
    tool_use_id: str
    content: str
    is_error: bool = False


Block = TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    blocks: tuple[Block, ...]
    # Per-message memo (token count, provider wire forms). Not part of equality.
    cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @staticmethod
    def user(text: str) -> Message:
        return Message("user", (TextBlock(text),))

    @staticmethod
    def assistant(text: str) -> Message:
        return Message("assistant", (TextBlock(text),))

    @property
    def text(self) -> str:
        return "".join(b.text for b in self.blocks if isinstance(b, TextBlock))

    @property
    def tool_uses(self) -> list[ToolUseBlock]:
        return [b for b in self.blocks if isinstance(b, ToolUseBlock)]

    @property
    def tool_results(self) -> list[ToolResultBlock]:
        return [b for b in self.blocks if isinstance(b, ToolResultBlock)]


def block_to_dict(block: Block) -> dict[str, Any]:
    if isinstance(block, TextBlock):
        return {"type": "text", "text": block.text}
    if isinstance(block, ImageBlock):
        return {"type": "image", "media_type": block.media_type, "data_b64": block.data_b64, "url": block.url}
    if isinstance(block, ToolUseBlock):
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    return {
        "type": "tool_result",
        "tool_use_id": block.tool_use_id,
        "content": block.content,
        "is_error": block.is_error,
    }


def block_from_dict(data: dict[str, Any]) -> Block:
    kind = data.get("type")
    if kind == "text":
        return TextBlock(str(data["text"]))
    if kind == "image":
        return ImageBlock(str(data["media_type"]), data.get("data_b64"), data.get("url"))
    if kind == "tool_use":
        return ToolUseBlock(str(data["id"]), str(data["name"]), dict(data["input"]))
    if kind == "tool_result":
        return ToolResultBlock(str(data["tool_use_id"]), str(data["content"]), bool(data.get("is_error")))
    raise ValueError(f"unknown block type {kind!r}")


def message_to_json(message: Message) -> str:
    return json.dumps({"role": message.role, "blocks": [block_to_dict(b) for b in message.blocks]})


def message_from_json(raw: str) -> Message:
    data = json.loads(raw)
    role = data["role"]
    if role not in ("user", "assistant"):
        raise ValueError(f"unknown role {role!r}")
    return Message(role, tuple(block_from_dict(b) for b in data["blocks"]))


def repair_tool_pairs(
    history: list[Message], note: str = "interrupted before the tool finished"
) -> list[Message]:
    """Return history where every tool_use has a matching tool_result in the next message.

    Providers reject a tool_use without its result. Normal operation never stores one (the agent
    persists a tool call and its results together), but this keeps history valid whatever happened.
    """
    history = list(history)
    repaired: list[Message] = []
    for index, message in enumerate(history):
        repaired.append(message)
        uses = message.tool_uses if message.role == "assistant" else []
        if not uses:
            continue
        following = history[index + 1] if index + 1 < len(history) else None
        answered = {r.tool_use_id for r in following.tool_results} if following else set()
        missing = [u for u in uses if u.id not in answered]
        if not missing:
            continue
        fillers = tuple(ToolResultBlock(u.id, note, is_error=True) for u in missing)
        if following is not None and following.role == "user" and following.tool_results:
            history[index + 1] = Message("user", following.blocks + fillers)
        else:
            repaired.append(Message("user", fillers))
    # Drop tool_results whose tool_use is not directly before them (e.g. after compaction).
    cleaned: list[Message] = []
    for message in repaired:
        results = message.tool_results
        if results:
            prev = cleaned[-1] if cleaned else None
            known = {u.id for u in prev.tool_uses} if prev and prev.role == "assistant" else set()
            kept = tuple(
                b for b in message.blocks if not isinstance(b, ToolResultBlock) or b.tool_use_id in known
            )
            if not kept:
                continue
            if len(kept) != len(message.blocks):
                cleaned.append(Message(message.role, kept))
                continue
        cleaned.append(message)
    return cleaned


def tool_names_since_last_question(history: list[Message]) -> list[str]:
    """The tools called after the newest user message that is a question (not tool results): what an
    interrupted turn had already run."""
    names: list[str] = []
    for message in reversed(history):
        if message.role == "user" and not message.tool_results:
            break
        names.extend(use.name for use in message.tool_uses)
    return names
