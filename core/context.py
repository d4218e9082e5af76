"""What a turn sends to the model, and compaction when history outgrows the context budget.

Older turns are summarised by the model into the session's summary (tool call/result pairs are never
split), rather than silently dropped; the caller tells the user it happened.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from core.conversation import Message, TextBlock, ToolResultBlock, ToolUseBlock
from core.sessions import SessionState
from core.storage.base import StoredMessage

log = logging.getLogger(__name__)

SUMMARY_PREFIX = "[Summary of the earlier conversation]\n"
SUMMARY_ACK = "Understood; I will continue from that summary."
SUMMARISE_INSTRUCTIONS = (
    "You compress chat history. Summarise the conversation below for your own later use: keep facts, "
    "decisions, names, numbers, open questions, and what tools returned that still matters. Write plain "
    "prose, at most 300 words. Do not address the user."
)
_TRANSCRIPT_FIELD_LIMIT = 2_000  # chars per text/tool field fed to the summariser


@dataclass(frozen=True, slots=True)
class ContextBudget:
    window_tokens: int
    reserve_output_tokens: int
    keep_fraction: float = 0.5  # after compaction, recent history uses at most this share of the budget

    @property
    def input_tokens(self) -> int:
        return max(self.window_tokens - self.reserve_output_tokens, 1_000)


def build_messages(state: SessionState) -> list[Message]:
    """The history to send: summary first (if any), then live messages, with roles alternating."""
    messages = state.messages()
    if state.alternating and not state.record.summary:
        return messages  # the common case: nothing to merge, no walk over the history
    if state.record.summary:
        text = SUMMARY_PREFIX + state.record.summary
        if state.summary_messages is None or state.summary_messages[0].text != text:
            # An exchange, not a lone user message, so roles keep alternating before the next user turn.
            state.summary_messages = (Message.user(text), Message.assistant(SUMMARY_ACK))
        messages = [*state.summary_messages, *messages]
    return merge_same_role(messages)


def merge_same_role(messages: list[Message]) -> list[Message]:
    """Join consecutive messages of one role (e.g. after a failed turn left two user messages)."""
    if all(messages[i].role != messages[i - 1].role for i in range(1, len(messages))):
        return messages  # the common case: no copies, so per-message wire caches stay valid
    merged: list[Message] = []
    for message in messages:
        if merged and merged[-1].role == message.role:
            previous = merged.pop()
            merged.append(Message(message.role, previous.blocks + message.blocks))
        else:
            merged.append(message)
    return merged


def needs_compaction(state: SessionState, budget: ContextBudget) -> bool:
    return state.total_tokens > budget.input_tokens


def split_point(history: list[StoredMessage], keep_tokens: int) -> int:
    """Index of the first message to keep: the latest turn boundary with at most keep_tokens after it.

    A boundary is a user message that is not a tool result, so a tool_use and its result stay together.
    Always keeps at least the last turn.
    """
    boundaries = [i for i, s in enumerate(history) if s.message.role == "user" and not s.message.tool_results]
    if not boundaries:
        return 0
    kept = 0
    choice = boundaries[-1]
    suffix = [0] * (len(history) + 1)
    for i in range(len(history) - 1, -1, -1):
        suffix[i] = suffix[i + 1] + history[i].tokens
    for index in reversed(boundaries):
        kept = suffix[index]
        if kept > keep_tokens:
            break
        choice = index
    return choice


def transcript(previous_summary: str, messages: list[Message]) -> str:
    def clip(text: str) -> str:
        limit = _TRANSCRIPT_FIELD_LIMIT
        return text if len(text) <= limit else text[:limit] + " [...]"

    lines = [f"Earlier summary: {previous_summary}"] if previous_summary else []
    for message in messages:
        for block in message.blocks:
            if isinstance(block, TextBlock):
                lines.append(f"{message.role}: {clip(block.text)}")
            elif isinstance(block, ToolUseBlock):
                lines.append(f"assistant called {block.name}({clip(json.dumps(block.input))})")
            elif isinstance(block, ToolResultBlock):
                status = "error" if block.is_error else "result"
                lines.append(f"tool {status}: {clip(block.content)}")
            else:
                lines.append(f"{message.role}: [image]")
    return "\n".join(lines)


Summariser = Callable[[str], Awaitable[str]]


async def summarise(state: SessionState, keep_from: int, summariser: Summariser) -> tuple[str, bool]:
    """Summary text of history[:keep_from] (and any earlier summary); bool = made by the model."""
    older = [s.message for s in state.history[:keep_from]]
    try:
        text = (await summariser(transcript(state.record.summary, older))).strip()
        if text:
            return text, True
    except Exception:  # the summary is best effort; the fallback below still tells the truth
        log.warning("summarising history failed; keeping a marker instead", exc_info=True)
    marker = f"{len(older)} earlier messages were removed to fit the model's context."
    previous = f"{state.record.summary}\n" if state.record.summary else ""
    return previous + marker, False
